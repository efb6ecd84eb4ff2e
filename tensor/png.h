// PNG output, written from scratch: 8-bit grayscale images and image grids, with no zlib.
//
// A PNG (RFC 2083 / ISO 15948) is an 8-byte signature followed by chunks, each
// [length (4, big-endian)] [type (4)] [data] [CRC-32 of type+data (4)].
// We write three: IHDR (size, bit depth 8, color type 0 = grayscale), one IDAT, IEND.
// IDAT holds a zlib stream (RFC 1950) of the filtered rows (each row is prefixed by filter
// byte 0, "None"). The deflate data (RFC 1951) are *stored* blocks: no compression at all, so
// the encoder stays a page long. Files are larger than a compressing encoder's (a 28x28 digit
// grid of 8x8 is ~60 KB) but every viewer reads them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dl {

// CRC-32 as PNG and zlib's gzip use it (reflected polynomial 0xEDB88320, init and final xor
// 0xFFFFFFFF). crc32("123456789") == 0xCBF43926. Pass the CRC of the bytes before as `crc` to
// continue it, as zlib's crc32(crc, buf, len): crc32(b, nb, crc32(a, na)) == crc32 of a then b.
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

// Adler-32 (RFC 1950 section 8.2): two sums modulo 65521. adler32("Wikipedia") == 0x11E60398.
uint32_t adler32(const uint8_t* data, size_t n);

// pixels: (height, width) row-major, one byte per pixel (0 black, 255 white).
std::string encode_png_gray(const uint8_t* pixels, int width, int height);
void write_png_gray(const std::string& path, const uint8_t* pixels, int width, int height);

// Tiles images (N, 1, H, W) or (N, H, W), float32 or float64 with values in [-1, 1], into one
// picture: nrow images per row, `pad` pixels of pad_value between images and around the edge.
// A value x maps to round((x + 1) * 127.5), clamped to 0..255 (NaN -> 0).
// Returns the (out_h, out_w) pixels.
std::vector<uint8_t> image_grid(const Tensor& images, int nrow, int pad, int& out_w, int& out_h,
                                uint8_t pad_value = 128);

// image_grid with a 2-pixel gray border, each pixel drawn as a scale x scale block (28-pixel
// digits are small on a modern screen), written as a PNG.
void write_png_grid(const std::string& path, const Tensor& images, int nrow, int scale = 2);

}  // namespace dl
