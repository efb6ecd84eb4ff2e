// NumPy .npy files, so tensors (samples, activations, dumps) open in numpy with np.load.
//
// Format version 1.0 (numpy/lib/format.py, "NEP 1"): the magic "\x93NUMPY", version bytes 1 0,
// a little-endian uint16 header length, then an ASCII Python dict literal
//   {'descr': '<f4', 'fortran_order': False, 'shape': (N, 28, 28), }
// padded with spaces and ended by '\n' so that the data start at a multiple of 64 bytes, then
// the array's bytes in C (row-major) order. This machine is little-endian, as '<' says.
#pragma once
#include <string>

#include "tensor/tensor.h"

namespace dl {

// Writes t ('<f4' for float32, '<f8' for float64) atomically.
void write_npy(const std::string& path, const Tensor& t);

// The bytes write_npy would write.
std::string encode_npy(const Tensor& t);

// Reads a C-order '<f4' or '<f8' array, version 1.0, 2.0 or 3.0. Throws dl::Error naming the
// file, what was expected and what was found when the magic, version, header, dtype, order,
// shape (its non-zero dimensions multiply to at most 2^60) or file length is wrong.
Tensor read_npy(const std::string& path);
Tensor decode_npy(const std::string& bytes, const std::string& name);  // name: for errors

}  // namespace dl
