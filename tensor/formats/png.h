// PNG output, written from scratch: 8-bit grayscale images and image grids, with no zlib.
//
// A PNG (RFC 2083 / ISO 15948) is an 8-byte signature followed by chunks, each
// [length (4, big-endian)] [type (4)] [data] [CRC-32 of type+data (4)].
// We write three: IHDR (size, bit depth 8, color type 0 = grayscale), one IDAT, IEND.
// IDAT holds a zlib stream (RFC 1950) of the filtered rows (each row is prefixed by filter
// byte 0, "None"), compressed by zlib_deflate: one deflate block (RFC 1951) with the fixed
// Huffman codes and greedy LZ77 matches, which is short to write and shrinks a 64-digit sample
// grid from 245 KB stored to 43 KB (a noisy figure 3x); a dynamic Huffman code would gain more.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.h"

namespace dl {

// CRC-32 as PNG and zlib's gzip use it (reflected polynomial 0xEDB88320, init and final xor
// 0xFFFFFFFF). crc32("123456789") == 0xCBF43926. Pass the CRC of the bytes before as `crc` to
// continue it, as zlib's crc32(crc, buf, len): crc32(b, nb, crc32(a, na)) == crc32 of a then b.
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

// Adler-32 (RFC 1950 section 8.2): two sums modulo 65521. adler32("Wikipedia") == 0x11E60398.
uint32_t adler32(const uint8_t* data, size_t n);

// A zlib stream of raw: one deflate block with the fixed Huffman codes, LZ77 matches found
// greedily through a hash of the next 3 bytes within the 32K window. zlib_inflate undoes it.
std::string zlib_deflate(std::string_view raw);

// pixels: (height, width) row-major, one byte per pixel (0 black, 255 white).
std::string encode_png_gray(const uint8_t* pixels, int width, int height);
void write_png_gray(const std::string& path, const uint8_t* pixels, int width, int height);

// Tiles images (N, 1, H, W) or (N, H, W), float32 or float64 with values in [-1, 1], into one
// picture: nrow images per row, `pad` pixels of pad_value between images and around the edge.
// A value x maps to round((x + 1) * 127.5), clamped to 0..255 (NaN -> 0).
// Returns the (out_h, out_w) pixels.
std::vector<uint8_t> image_grid(const Tensor& images, int nrow, int pad, int& out_w, int& out_h,
                                uint8_t pad_value = 128);

constexpr int kGridPad = 2;  // write_png_grid's border around and between images, in image pixels

// Text drawn above a grid (tensor/formats/font.h): a title line and/or one label per column.
struct GridLabels {
    std::string title;                 // e.g. "step 1500"; "" for none
    std::vector<std::string> columns;  // none, or one per column (nrow of them)
    bool empty() const { return title.empty() && columns.empty(); }
};

// image_grid with a 2-pixel gray border, each pixel drawn as a scale x scale block (28-pixel
// digits are small on a modern screen), under a black band holding `labels` in white: the
// title centred on its own line, then each column's label centred above it. No labels, no band.
// Text is drawn at font scale `scale` (7 * scale pixels tall), smaller when the widest label
// would not fit its column's width less one blank character (or the title the grid). At font
// scale 1 a label may come within 1 pixel of its neighbour; a longer one is cut short, so that
// labels never overlap. Returns the (out_h, out_w) pixels.
std::vector<uint8_t> labeled_grid(const Tensor& images, int nrow, int scale, const GridLabels& labels,
                                  int& out_w, int& out_h);

// labeled_grid written as a PNG.
void write_png_grid(const std::string& path, const Tensor& images, int nrow, int scale = 2,
                    const GridLabels& labels = {});

// ---- decoding (tensor/formats/png_decode.cpp) -----------------------------------------------------
// A PNG reader for the project's own files (stored deflate blocks) and ordinary ones (zlib-
// compressed, e.g. a browser's screenshot): 8 bits per sample, color types 0 (gray),
// 2 (RGB), 3 (palette, expanded to RGB, or RGBA when a tRNS chunk gives alphas), 4 (gray+alpha),
// 6 (RGBA), not interlaced. Ancillary chunks are skipped (tRNS too, except for palettes).
struct PngImage {
    int width = 0, height = 0, channels = 0;  // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    std::vector<uint8_t> pixels;              // (height, width, channels) row-major, 8 bits
};

// Decodes a PNG file's bytes: checks the signature and every chunk's CRC, reads IHDR, PLTE and
// tRNS, inflates the IDAT chunks end to end and undoes the per-row filters (None, Sub, Up,
// Average, Paeth). Throws dl::Error naming `what` (a file name) and the problem for anything
// malformed or unsupported: truncated data, a bad CRC or length, a chunk out of order, bytes
// after IEND, an image over 2^26 pixels, image data longer or shorter than IHDR says...
PngImage decode_png(const std::string& bytes, const std::string& what = "png");
PngImage read_png(const std::string& path);  // read_file, then decode_png naming the path

// The bytes of a zlib stream (RFC 1950: header, deflate data, Adler-32), inflated (RFC 1951:
// stored, fixed and dynamic Huffman blocks). Throws dl::Error naming `what` on a bad header, a
// truncated stream, an invalid or incomplete Huffman code, a distance before the start of the
// output, an Adler-32 mismatch, trailing bytes, or more than max_output bytes of output (which
// bounds the memory a small hostile stream can ask for).
std::string zlib_inflate(const std::string& zlib_stream, const std::string& what = "zlib",
                         size_t max_output = size_t(1) << 28);

}  // namespace dl
