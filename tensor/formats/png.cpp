// PNG encoder: grayscale, 8 bits, deflate with the fixed Huffman codes. See png.h for the layout.
// References: PNG spec (RFC 2083, ISO/IEC 15948) sections 3 (chunk layout, CRC), 4.1.1 (IHDR),
// 6 (filters); zlib format RFC 1950 (header, Adler-32); deflate RFC 1951 section 3.2.4 (stored
// blocks).
#include "tensor/formats/png.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "tensor/formats/font.h"
#include "tensor/formats/io.h"

namespace dl {

// ---- checksums ----------------------------------------------------------------------------
namespace {
// crc_table[b] is the CRC of the single byte b, so the CRC advances a byte per table lookup
// (PNG spec, "Sample CRC implementation").
std::array<uint32_t, 256> make_crc_table() {
    std::array<uint32_t, 256> table{};
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[b] = c;
    }
    return table;
}
const std::array<uint32_t, 256> crc_table = make_crc_table();

uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
    return crc;
}
}  // namespace

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc) { return crc32_update(crc ^ 0xFFFFFFFFu, data, n) ^ 0xFFFFFFFFu; }

uint32_t adler32(const uint8_t* data, size_t n) {
    // s1 = 1 + sum of bytes, s2 = sum of the s1's, both mod 65521 (the largest prime < 2^16).
    // 5552 bytes is the most that can be summed before s2 could overflow 32 bits (RFC 1950's
    // reference code uses the same bound), so the modulo runs once per 5552 bytes.
    const uint32_t mod = 65521;
    uint32_t s1 = 1, s2 = 0;
    while (n > 0) {
        size_t chunk = std::min<size_t>(n, 5552);
        for (size_t i = 0; i < chunk; i++) {
            s1 += data[i];
            s2 += s1;
        }
        s1 %= mod;
        s2 %= mod;
        data += chunk;
        n -= chunk;
    }
    return (s2 << 16) | s1;
}

// ---- encoder ------------------------------------------------------------------------------
namespace {
void put_u32_be(std::string& out, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(char((v >> shift) & 0xFF));
}

// A chunk: length, type, data, CRC-32 over type and data (not the length).
void put_chunk(std::string& out, const char type[4], const std::string& data) {
    put_u32_be(out, uint32_t(data.size()));
    size_t start = out.size();
    out.append(type, 4);
    out += data;
    put_u32_be(out, crc32(reinterpret_cast<const uint8_t*>(out.data() + start), out.size() - start));
}

// Bits into bytes as deflate packs them: the first bit in the lowest bit of a byte (RFC 1951
// section 3.1.1). Huffman codes go most significant bit first, so they are reversed on the way in.
struct BitWriter {
    std::string& out;
    uint64_t acc = 0;
    int n = 0;
    void bits(uint32_t value, int count) {  // value's low `count` bits, lowest first
        acc |= uint64_t(value) << n;
        n += count;
        for (; n >= 8; n -= 8, acc >>= 8) out.push_back(char(acc & 0xFF));
    }
    void code(uint32_t code, int length) {  // a Huffman code, most significant bit first
        uint32_t rev = 0;
        for (int i = 0; i < length; i++) rev |= ((code >> i) & 1) << (length - 1 - i);
        bits(rev, length);
    }
    void flush() {
        if (n > 0) out.push_back(char(acc & 0xFF));
        acc = 0, n = 0;
    }
};

// Deflate's fixed literal/length code (RFC 1951 section 3.2.6): 0-143 in 8 bits from 0x30,
// 144-255 in 9 bits from 0x190, 256-279 in 7 bits from 0, 280-287 in 8 bits from 0xC0.
void put_literal(BitWriter& w, int v) {
    if (v < 144) w.code(0x30 + v, 8);
    else if (v < 256) w.code(0x190 + v - 144, 9);
    else if (v < 280) w.code(v - 256, 7);
    else w.code(0xC0 + v - 280, 8);
}

// A match of `length` (3..258) bytes `distance` (1..32768) back: a length code with its extra
// bits, then one of the 30 distance codes (5 bits each in the fixed code) with its extra bits
// (RFC 1951 section 3.2.5's tables).
void put_match(BitWriter& w, int length, int distance) {
    static const int len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const int len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    static const int dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769,
                                      1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
    static const int dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
    int l = 28;
    while (len_base[l] > length) l--;
    put_literal(w, 257 + l);
    w.bits(uint32_t(length - len_base[l]), len_extra[l]);
    int d = 29;
    while (dist_base[d] > distance) d--;
    w.code(uint32_t(d), 5);
    w.bits(uint32_t(distance - dist_base[d]), dist_extra[d]);
}
}  // namespace

std::string zlib_deflate(std::string_view raw) {
    std::string z;
    // CMF = 0x78: method 8 (deflate), window 2^(7+8) = 32K. FLG = 0x01: no preset dictionary,
    // and FCHECK chosen so that (CMF*256 + FLG) % 31 == 0 (0x7801 = 30721 = 31 * 991).
    z.push_back(char(0x78));
    z.push_back(char(0x01));
    BitWriter w{z};
    w.bits(1, 1);  // BFINAL: one block
    w.bits(1, 2);  // BTYPE = 01: the fixed Huffman codes

    // Greedy LZ77: at each position, the longest earlier match of 3 or more bytes within the
    // 32K window among the last kChain positions whose next 3 bytes hash alike.
    const auto* d = reinterpret_cast<const uint8_t*>(raw.data());
    const size_t n = raw.size();
    constexpr size_t kWindow = 32768, kMaxLen = 258, kChain = 32;
    constexpr uint32_t kHashBits = 15;
    std::vector<int64_t> head(size_t(1) << kHashBits, -1), prev(kWindow, -1);  // the latest position of a hash; the one before
    auto hash = [&](size_t i) { return ((uint32_t(d[i]) << 16 | uint32_t(d[i + 1]) << 8 | d[i + 2]) * 2654435761u) >> (32 - kHashBits); };
    auto insert = [&](size_t i) {
        if (i + 3 > n) return;
        uint32_t h = hash(i);
        prev[i % kWindow] = head[h];
        head[h] = int64_t(i);
    };
    for (size_t i = 0; i < n;) {
        size_t best = 0, best_dist = 0;
        if (i + 3 <= n) {
            int64_t cand = head[hash(i)];
            for (size_t k = 0; k < kChain && cand >= 0 && i - size_t(cand) <= kWindow; k++, cand = prev[size_t(cand) % kWindow]) {
                size_t len = 0, most = std::min(kMaxLen, n - i);
                while (len < most && d[size_t(cand) + len] == d[i + len]) len++;
                if (len > best) best = len, best_dist = i - size_t(cand);
                if (len == most) break;
            }
        }
        if (best >= 3) {
            put_match(w, int(best), int(best_dist));
            for (size_t k = 0; k < best; k++) insert(i + k);
            i += best;
        } else {
            put_literal(w, d[i]);
            insert(i);
            i++;
        }
    }
    put_literal(w, 256);  // end of block
    w.flush();
    put_u32_be(z, adler32(d, n));
    return z;
}

std::string encode_png_gray(const uint8_t* pixels, int width, int height) {
    if (width <= 0 || height <= 0 || width > (1 << 24) || height > (1 << 24))
        fail("encode_png_gray: expected width and height in 1..2^24, got ", width, "x", height);

    // The image data before compression: every row is preceded by its filter type (0 = None).
    std::string raw;
    raw.reserve(size_t(height) * (size_t(width) + 1));
    for (int y = 0; y < height; y++) {
        raw.push_back(0);
        raw.append(reinterpret_cast<const char*>(pixels) + size_t(y) * width, size_t(width));
    }

    std::string png("\x89PNG\r\n\x1a\n", 8);  // the signature (RFC 2083 section 3.1)
    std::string ihdr;
    put_u32_be(ihdr, uint32_t(width));
    put_u32_be(ihdr, uint32_t(height));
    ihdr.push_back(8);  // bit depth
    ihdr.push_back(0);  // color type 0: grayscale
    ihdr.push_back(0);  // compression method 0: deflate
    ihdr.push_back(0);  // filter method 0: adaptive, five filter types
    ihdr.push_back(0);  // interlace method 0: none
    put_chunk(png, "IHDR", ihdr);
    put_chunk(png, "IDAT", zlib_deflate(raw));
    put_chunk(png, "IEND", "");
    return png;
}

void write_png_gray(const std::string& path, const uint8_t* pixels, int width, int height) {
    write_file_atomic(path, encode_png_gray(pixels, width, height));
}

// ---- image grid ---------------------------------------------------------------------------
std::vector<uint8_t> image_grid(const Tensor& images, int nrow, int pad, int& out_w, int& out_h,
                                uint8_t pad_value) {
    const Shape& s = images.shape();
    bool ok = (s.size() == 4 && s[1] == 1) || s.size() == 3;
    if (!ok || images.numel() == 0)
        fail("image_grid: expected images of shape (N, 1, H, W) or (N, H, W) with N >= 1, got ", shape_str(s));
    if (nrow < 1 || pad < 0) fail("image_grid: expected nrow >= 1 and pad >= 0, got nrow ", nrow, ", pad ", pad);
    int64_t n = s[0], h = s[s.size() - 2], w = s[s.size() - 1];
    int64_t cols = std::min<int64_t>(nrow, n), rows = (n + nrow - 1) / nrow;
    int64_t gw = cols * (w + pad) + pad, gh = rows * (h + pad) + pad;
    if (gw > (1 << 24) || gh > (1 << 24)) fail("image_grid: grid of ", gw, "x", gh, " pixels is too large");
    out_w = int(gw);
    out_h = int(gh);

    std::vector<uint8_t> grid(size_t(gw * gh), pad_value);  // (gh, gw)
    dispatch(images.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* src = images.data<T>();  // (N, H, W) whatever the input's layout
        for (int64_t i = 0; i < n; i++) {
            int64_t x0 = pad + (i % nrow) * (w + pad), y0 = pad + (i / nrow) * (h + pad);
            for (int64_t y = 0; y < h; y++)
                for (int64_t x = 0; x < w; x++) {
                    double v = double(src[(i * h + y) * w + x]);
                    double p = std::isnan(v) ? 0.0 : std::clamp(std::round((v + 1.0) * 127.5), 0.0, 255.0);
                    grid[size_t((y0 + y) * gw + x0 + x)] = uint8_t(p);
                }
        }
    });
    return grid;
}

// ---- labeled grid -------------------------------------------------------------------------
namespace {
// The largest font scale in 1..max_scale at which every text fits in `width` pixels less
// `blanks` blank characters of that scale (1 when none does: fit_text may then cut them).
int fitting_scale(const std::vector<std::string>& texts, int width, int blanks, int max_scale) {
    for (int fs = max_scale; fs > 1; fs--) {
        int room = width - blanks * kGlyphAdvance * fs;
        if (std::all_of(texts.begin(), texts.end(), [&](const std::string& t) { return text_width(t, fs) <= room; }))
            return fs;
    }
    return 1;
}

// The longest prefix of text at most `room` pixels wide at font scale fs: n glyphs take
// (6n - 1) * fs pixels.
std::string fit_text(const std::string& text, int room, int fs) {
    int n = room < 0 ? 0 : (room / fs + 1) / kGlyphAdvance;
    return text.substr(0, std::min(text.size(), size_t(n)));
}
}  // namespace

std::vector<uint8_t> labeled_grid(const Tensor& images, int nrow, int scale, const GridLabels& labels,
                                  int& out_w, int& out_h) {
    if (scale < 1 || scale > 16) fail("labeled_grid: expected scale in [1, 16], got ", scale);
    if (!labels.columns.empty() && labels.columns.size() != size_t(std::max(nrow, 0)))
        fail("labeled_grid: expected 0 or nrow = ", nrow, " column labels, got ", labels.columns.size());
    int gw = 0, gh = 0;
    std::vector<uint8_t> grid = image_grid(images, nrow, kGridPad, gw, gh);
    const int img_w = int(images.shape().back()), cols = (gw - kGridPad) / (img_w + kGridPad);
    const int W = gw * scale, gap = kGridPad * scale;

    // Font scales: at most the image scale (text 7/28 of a digit's height), smaller if a label
    // would not fit. A column label has its column's pitch less one blank character, so that
    // two labels side by side read as two ("t=142 t=285", not "t=142t=285"); the title has the
    // width inside the border.
    const int pitch = (img_w + kGridPad) * scale, title_room = W - 2 * gap;
    const int col_fs = fitting_scale(labels.columns, pitch, 1, scale);
    const int title_fs = fitting_scale({labels.title}, title_room, 0, scale);
    // Still too wide at font scale 1, a label may come within a pixel of its neighbour; only a
    // longer one is cut (labels that run together mislead less than "t=99" for t=999).
    const int col_room = pitch - 1;

    // The band: gap, [title line, gap], [column labels line, gap]; no labels, no band.
    int band = 0, title_y = 0, col_y = 0;
    if (!labels.empty()) {
        band = gap;
        if (!labels.title.empty()) {
            title_y = band;
            band += text_height(title_fs) + gap;
        }
        if (!labels.columns.empty()) {
            col_y = band;
            band += text_height(col_fs) + gap;
        }
    }
    out_w = W;
    out_h = band + gh * scale;

    std::vector<uint8_t> out(size_t(out_w) * size_t(out_h), 0);  // (out_h, out_w): black band, then the grid
    for (int y = 0; y < gh * scale; y++)
        for (int x = 0; x < W; x++)
            out[size_t(band + y) * size_t(W) + size_t(x)] = grid[size_t(y / scale) * size_t(gw) + size_t(x / scale)];

    const uint8_t white = 255;
    if (!labels.title.empty()) {
        std::string t = fit_text(labels.title, title_room, title_fs);
        draw_text(out, out_w, out_h, (W - text_width(t, title_fs)) / 2, title_y, t, white, title_fs);
    }
    for (int c = 0; c < int(labels.columns.size()) && c < cols; c++) {  // no label past the last image (nrow > N)
        std::string t = fit_text(labels.columns[size_t(c)], col_room, col_fs);
        int centre = (kGridPad + c * (img_w + kGridPad)) * scale + img_w * scale / 2;  // of column c's images
        draw_text(out, out_w, out_h, centre - text_width(t, col_fs) / 2, col_y, t, white, col_fs);
    }
    return out;
}

void write_png_grid(const std::string& path, const Tensor& images, int nrow, int scale, const GridLabels& labels) {
    if (scale < 1 || scale > 16) fail("write_png_grid: scale must be in [1, 16], got ", scale);
    int w = 0, h = 0;
    std::vector<uint8_t> pixels = labeled_grid(images, nrow, scale, labels, w, h);
    write_png_gray(path, pixels.data(), w, h);
}

}  // namespace dl
