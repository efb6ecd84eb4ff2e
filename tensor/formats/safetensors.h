// The safetensors file format (Hugging Face), read and written from scratch.
//
//   bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
//   bytes [8, 8 + N)    a JSON object, UTF-8, possibly padded with trailing spaces:
//                         {"__metadata__": {"key": "value", ...},          optional, strings only
//                          "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//   bytes [8 + N, ...)  the data: each tensor's raw little-endian values, row-major, at
//                       [begin, end) counted from the first byte after the header
//
// This reader knows the dtypes F32, F64 and I64. Tensor has only float32 and float64, so int64
// entries (timesteps, RNG state, the step counter) go in and out as std::vector<int64_t>.
// The writer pads the header with spaces so the data starts 8-byte aligned, as the reference
// implementation does, and lays the tensors out back to back in the order they were added.
// Every malformed file is a dl::Error naming the file and what was expected and found.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tensor/tensor.h"

namespace dl {

struct SafetensorsEntry {
    std::string name;
    std::string dtype;  // "F32", "F64" or "I64"
    Shape shape;
    std::string data;   // the raw little-endian bytes: numel(shape) * 4 or 8
};

class Safetensors {
public:
    // Free-form string -> string pairs, written as "__metadata__".
    std::map<std::string, std::string> metadata;

    // Adding copies the values; names must be unique and not "__metadata__".
    void add(const std::string& name, const Tensor& t);  // F32 or F64, as the tensor's dtype
    void add_i64(const std::string& name, const std::vector<int64_t>& values, Shape shape);
    void add_i64(const std::string& name, const std::vector<int64_t>& values) {
        add_i64(name, values, {int64_t(values.size())});
    }

    bool contains(const std::string& name) const { return index_.count(name) != 0; }
    const SafetensorsEntry& entry(const std::string& name) const;  // throws naming the file and the key
    Tensor tensor(const std::string& name) const;                  // an F32 or F64 entry, copied out
    std::vector<int64_t> i64(const std::string& name) const;       // an I64 entry
    const std::vector<SafetensorsEntry>& entries() const { return entries_; }

    std::string serialize() const;
    // `source` names the bytes in error messages (the file path).
    static Safetensors parse(std::string_view bytes, const std::string& source = "<memory>");

    void save(const std::string& path) const;  // atomic (tensor/formats/io.h)
    static Safetensors load(const std::string& path);

    std::string source = "<memory>";  // where it was read from, for error messages

private:
    void add_raw(const std::string& name, const char* dtype, Shape shape, const void* data, size_t bytes);
    std::vector<SafetensorsEntry> entries_;
    std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
};

}  // namespace dl
