// PNG decoder and zlib inflater, from scratch. See png.h for what is accepted.
// References: PNG spec (ISO/IEC 15948, W3C 2nd edition; RFC 2083 is the older 1.0 text)
// sections 5.2-5.4 (signature, chunk layout, chunk types), 11.2 (IHDR, PLTE, IDAT, IEND),
// 11.3.2.1 (tRNS), 9 (filters); zlib format RFC 1950 (header, Adler-32); deflate RFC 1951
// section 3.2 (stored, fixed and dynamic Huffman blocks). The inflater follows
// Mark Adler's puff.c (zlib's contrib/puff): canonical Huffman codes decoded a bit at a time,
// which is slower than zlib's table lookups but short enough to read against the RFC.
#include "tensor/formats/png.h"

#include <array>
#include <cstdlib>
#include <cstring>

#include "tensor/formats/io.h"

namespace dl {

namespace {
std::string hex32(uint32_t v) {
    const char* digits = "0123456789abcdef";
    std::string s = "0x";
    for (int shift = 28; shift >= 0; shift -= 4) s.push_back(digits[(v >> shift) & 0xF]);
    return s;
}

uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]); }

// ---- inflate (RFC 1951) -------------------------------------------------------------------
// The input as a stream of bits, least significant bit of each byte first (RFC 1951 3.1.1).
struct BitReader {
    const uint8_t* data;
    size_t size;
    const std::string& what;
    size_t pos = 0;       // next byte to load
    uint32_t buf = 0;     // loaded bits not yet used, the next one lowest
    int count = 0;        // how many bits buf holds (0..7 between calls)

    // The next n bits (n <= 16) as a number, the first bit lowest.
    uint32_t bits(int n) {
        while (count < n) {
            if (pos == size) fail(what, ": truncated deflate data (expected more bits at byte ", pos, ")");
            buf |= uint32_t(data[pos++]) << count;
            count += 8;
        }
        uint32_t v = buf & ((1u << n) - 1);
        buf >>= n;
        count -= n;
        return v;
    }
    // Drops the rest of the current byte (stored blocks and the Adler-32 start on a byte).
    void align() {
        buf = 0;
        count = 0;
    }
};

// A canonical Huffman code (RFC 1951 3.2.2): count[len] codes of each length, and the symbols
// in code order (by length, then by symbol value).
struct Huffman {
    std::array<int, 16> count{};
    std::array<int, 288> symbol{};
};

enum class Code { COMPLETE, INCOMPLETE, EMPTY };

// Builds h from the code lengths of symbols 0..n-1 (0 = unused). An over-subscribed set (more
// codes than the lengths leave room for) is always refused; the caller decides about incomplete.
Code build_huffman(Huffman& h, const int* lengths, int n, const std::string& what, const char* which) {
    h.count.fill(0);
    for (int s = 0; s < n; s++) h.count[lengths[s]]++;
    if (h.count[0] == n) return Code::EMPTY;
    // left = codes of the current length still free; each length doubles what is left.
    int left = 1;
    for (int len = 1; len < 16; len++) {
        left = 2 * left - h.count[len];
        if (left < 0) fail(what, ": over-subscribed Huffman code (", which, " code lengths)");
    }
    std::array<int, 16> offset{};  // where the symbols of each length start in h.symbol
    for (int len = 1; len < 15; len++) offset[len + 1] = offset[len] + h.count[len];
    for (int s = 0; s < n; s++)
        if (lengths[s] != 0) h.symbol[offset[lengths[s]]++] = s;
    return left == 0 ? Code::COMPLETE : Code::INCOMPLETE;
}

// One symbol: reads bits until they form a code of h. Canonical codes of one length are
// consecutive numbers starting at `first`, so after each bit a code of that length is just a
// range check (puff.c's decode()).
int decode_symbol(BitReader& in, const Huffman& h) {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len < 16; len++) {
        code |= int(in.bits(1));  // Huffman codes are packed most significant bit first
        int n = h.count[len];
        if (code - first < n) return h.symbol[index + (code - first)];
        index += n;
        first = (first + n) << 1;
        code <<= 1;
    }
    fail(in.what, ": invalid Huffman code in the deflate data");
}

// Length codes 257..285 and distance codes 0..29: base value and extra bits (RFC 1951 3.2.5).
const int length_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                             35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
const int length_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
const int dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
                           257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
const int dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

void check_room(const std::string& out, size_t n, size_t max_output, const std::string& what) {
    if (n > max_output - out.size())
        fail(what, ": inflated data exceed the limit of ", max_output, " bytes");
}

// Stored block (RFC 1951 3.2.4): LEN and NLEN = ~LEN, 16-bit little-endian, then LEN bytes.
void inflate_stored(BitReader& in, std::string& out, size_t max_output) {
    in.align();
    if (in.size - in.pos < 4) fail(in.what, ": truncated stored block header");
    const uint8_t* p = in.data + in.pos;
    uint32_t len = p[0] | uint32_t(p[1]) << 8, nlen = p[2] | uint32_t(p[3]) << 8;
    if (len != (~nlen & 0xFFFF)) fail(in.what, ": stored block length ", len, " does not match its complement ", nlen);
    in.pos += 4;
    if (in.size - in.pos < len)
        fail(in.what, ": stored block of ", len, " bytes, but only ", in.size - in.pos, " bytes are left");
    check_room(out, len, max_output, in.what);
    out.append(reinterpret_cast<const char*>(in.data + in.pos), len);
    in.pos += len;
}

// A Huffman-coded block (RFC 1951 3.2.5): literals, end of block (256), and <length, distance>
// pairs that copy bytes from earlier in the output (possibly overlapping what they write).
void inflate_codes(BitReader& in, std::string& out, const Huffman& lit, const Huffman& dist, size_t max_output) {
    for (;;) {
        int sym = decode_symbol(in, lit);
        if (sym < 256) {
            check_room(out, 1, max_output, in.what);
            out.push_back(char(sym));
            continue;
        }
        if (sym == 256) return;
        sym -= 257;
        if (sym >= 29) fail(in.what, ": invalid length code ", sym + 257);
        size_t len = size_t(length_base[sym]) + in.bits(length_extra[sym]);
        int dsym = decode_symbol(in, dist);
        if (dsym >= 30) fail(in.what, ": invalid distance code ", dsym);
        size_t d = size_t(dist_base[dsym]) + in.bits(dist_extra[dsym]);
        if (d > out.size())
            fail(in.what, ": distance ", d, " is before the start of the output (", out.size(), " bytes so far)");
        check_room(out, len, max_output, in.what);
        size_t from = out.size() - d;
        for (size_t i = 0; i < len; i++) out.push_back(out[from + i]);  // byte by byte: may overlap
    }
}

// The fixed codes (RFC 1951 3.2.6), built once. All 288 literal/length and 32 distance symbols
// get codes, so both codes are complete; the unused symbols (286, 287, distances 30, 31) are
// refused when they are decoded.
struct FixedCodes {
    Huffman lit, dist;
    FixedCodes() {
        int lengths[288];
        for (int s = 0; s < 288; s++) lengths[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
        build_huffman(lit, lengths, 288, "fixed codes", "literal/length");
        for (int s = 0; s < 32; s++) lengths[s] = 5;
        build_huffman(dist, lengths, 32, "fixed codes", "distance");
    }
};

// Codes must be complete, except (as zlib and puff.c allow) a code of one symbol, of length 1,
// whose other 1-bit code is unused; and an empty distance code in a block with no <length,
// distance> pairs (using it would be an invalid code).
void check_complete(Code c, const Huffman& h, const std::string& what, const char* which) {
    int codes = 0;
    for (int len = 1; len < 16; len++) codes += h.count[len];
    if (c == Code::INCOMPLETE && !(codes == 1 && h.count[1] == 1))
        fail(what, ": incomplete Huffman code (", which, " code lengths)");
}

// Dynamic block header (RFC 1951 3.2.7): the code lengths of the literal/length and distance
// codes, themselves Huffman-coded with a code whose 3-bit lengths come first.
void dynamic_codes(BitReader& in, Huffman& lit, Huffman& dist) {
    const std::string& what = in.what;
    int nlit = int(in.bits(5)) + 257, ndist = int(in.bits(5)) + 1, nclen = int(in.bits(4)) + 4;
    if (nlit > 286 || ndist > 30) fail(what, ": dynamic block with ", nlit, " literal/length and ", ndist, " distance codes (at most 286 and 30)");

    static const int order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    int lengths[286 + 30] = {};
    for (int i = 0; i < nclen; i++) lengths[order[i]] = int(in.bits(3));
    Huffman clen;
    if (build_huffman(clen, lengths, 19, what, "code length") != Code::COMPLETE)
        fail(what, ": incomplete Huffman code (code length code lengths)");

    // 0..15 are lengths; 16 repeats the previous length 3..6 times, 17 and 18 repeat zero
    // 3..10 and 11..138 times.
    std::memset(lengths, 0, sizeof lengths);
    for (int i = 0; i < nlit + ndist;) {
        int sym = decode_symbol(in, clen);
        if (sym < 16) {
            lengths[i++] = sym;
            continue;
        }
        int value = 0, repeat = 0;
        if (sym == 16) {
            if (i == 0) fail(what, ": code length repeat (16) with no previous length");
            value = lengths[i - 1];
            repeat = 3 + int(in.bits(2));
        } else if (sym == 17) {
            repeat = 3 + int(in.bits(3));
        } else {
            repeat = 11 + int(in.bits(7));
        }
        if (i + repeat > nlit + ndist) fail(what, ": code length repeat runs past the ", nlit + ndist, " code lengths");
        for (int k = 0; k < repeat; k++) lengths[i++] = value;
    }
    if (lengths[256] == 0) fail(what, ": dynamic block with no end-of-block code (literal 256 has length 0)");
    check_complete(build_huffman(lit, lengths, nlit, what, "literal/length"), lit, what, "literal/length");
    check_complete(build_huffman(dist, lengths + nlit, ndist, what, "distance"), dist, what, "distance");
}

}  // namespace

// ---- zlib stream (RFC 1950) ---------------------------------------------------------------
std::string zlib_inflate(const std::string& zlib_stream, const std::string& what, size_t max_output) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(zlib_stream.data());
    if (zlib_stream.size() < 2) fail(what, ": truncated zlib header (", zlib_stream.size(), " bytes)");
    // CMF: method (low 4 bits, 8 = deflate) and log2(window) - 8; FLG: FCHECK makes CMF*256+FLG
    // a multiple of 31, FDICT (bit 5) asks for a preset dictionary, which PNG never uses.
    int cmf = p[0], flg = p[1];
    if ((cmf * 256 + flg) % 31 != 0) fail(what, ": bad zlib header check (", cmf, ", ", flg, " is not a multiple of 31)");
    if ((cmf & 15) != 8) fail(what, ": expected zlib compression method 8 (deflate), found ", cmf & 15);
    if ((cmf >> 4) > 7) fail(what, ": zlib window of 2^", (cmf >> 4) + 8, " bytes (at most 2^15)");
    if (flg & 0x20) fail(what, ": zlib preset dictionaries are not supported");

    static const FixedCodes fixed;
    BitReader in{p + 2, zlib_stream.size() - 2, what};
    std::string out;
    bool last = false;
    while (!last) {
        last = in.bits(1) == 1;  // BFINAL, then BTYPE
        uint32_t type = in.bits(2);
        if (type == 0) {
            inflate_stored(in, out, max_output);
        } else if (type == 1) {
            inflate_codes(in, out, fixed.lit, fixed.dist, max_output);
        } else if (type == 2) {
            Huffman lit, dist;
            dynamic_codes(in, lit, dist);
            inflate_codes(in, out, lit, dist, max_output);
        } else {
            fail(what, ": invalid deflate block type 3");
        }
    }

    // Adler-32 of the uncompressed data, big-endian, on the next byte boundary.
    in.align();
    if (in.size - in.pos < 4) fail(what, ": truncated zlib stream (no Adler-32 after the last block)");
    uint32_t stored = be32(in.data + in.pos), computed = adler32(reinterpret_cast<const uint8_t*>(out.data()), out.size());
    if (stored != computed) fail(what, ": Adler-32 mismatch (stored ", hex32(stored), ", computed ", hex32(computed), ")");
    in.pos += 4;
    if (in.pos != in.size) fail(what, ": ", in.size - in.pos, " trailing bytes after the zlib stream");
    return out;
}

// ---- PNG ----------------------------------------------------------------------------------
namespace {
// The Paeth predictor (PNG spec 9.4): whichever of left, up, upper-left is closest to
// left + up - upper-left, ties going in that order.
int paeth(int a, int b, int c) {
    int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

// Undoes the filters (PNG spec 9.2): raw is `height` rows of a filter type byte and `stride`
// bytes; a pixel is `bpp` bytes. Filters predict each byte from the byte bpp to the left (a),
// the one above (b) and above-left (c), all 0 outside the image, and store the difference mod 256.
std::vector<uint8_t> unfilter(const std::string& raw, size_t height, size_t stride, size_t bpp, const std::string& what) {
    std::vector<uint8_t> img(height * stride), zero_row(stride, 0);
    for (size_t y = 0; y < height; y++) {
        const uint8_t* src = reinterpret_cast<const uint8_t*>(raw.data()) + y * (stride + 1);
        int filter = *src++;
        if (filter > 4) fail(what, ": row ", y, " has filter type ", filter, " (expected 0..4)");
        uint8_t* cur = img.data() + y * stride;
        const uint8_t* prev = y > 0 ? cur - stride : zero_row.data();
        for (size_t x = 0; x < stride; x++) {
            int a = x >= bpp ? cur[x - bpp] : 0, b = prev[x], c = x >= bpp ? prev[x - bpp] : 0;
            int predicted = filter == 0 ? 0 : filter == 1 ? a : filter == 2 ? b : filter == 3 ? (a + b) / 2 : paeth(a, b, c);
            cur[x] = uint8_t(src[x] + predicted);
        }
    }
    return img;
}

bool is_letter(uint8_t ch) { return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z'); }
}  // namespace

PngImage decode_png(const std::string& bytes, const std::string& what) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(bytes.data());
    const size_t n = bytes.size();
    static const char signature[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
    if (n < 8 || std::memcmp(p, signature, 8) != 0)
        fail(what, ": expected the PNG signature \\x89PNG\\r\\n\\x1a\\n, found \"", excerpt(bytes.substr(0, 8)), "\"");

    // IHDR fields, the palette as RGBA, and the IDAT chunks' data end to end.
    uint32_t width = 0, height = 0;
    int color_type = -1;
    std::vector<uint8_t> palette;  // 4 bytes per entry
    bool has_trns = false, seen_idat = false, idat_ended = false, iend = false;
    std::string idat;

    size_t at = 8;
    while (!iend) {
        // A chunk (PNG spec 5.3): length (< 2^31), type (4 letters), data, CRC-32 of type and data.
        if (n - at < 12) fail(what, ": truncated: expected a chunk at byte ", at, ", found ", n - at, " bytes (no IEND chunk)");
        uint32_t len = be32(p + at);
        const uint8_t* type_bytes = p + at + 4;
        const std::string type(reinterpret_cast<const char*>(type_bytes), 4);
        if (!(is_letter(type_bytes[0]) && is_letter(type_bytes[1]) && is_letter(type_bytes[2]) && is_letter(type_bytes[3])))
            fail(what, ": invalid chunk type \"", excerpt(type), "\" at byte ", at);
        if (len > 0x7FFFFFFFu) fail(what, ": chunk ", type, " at byte ", at, " has length ", len, " (at most 2^31 - 1)");
        if (n - at - 12 < len)
            fail(what, ": truncated chunk ", type, " at byte ", at, ": length ", len, ", only ", n - at - 12, " bytes left");
        const uint8_t* data = p + at + 8;
        uint32_t stored = be32(data + len), computed = crc32(type_bytes, 4 + size_t(len));
        if (stored != computed)
            fail(what, ": bad CRC in chunk ", type, " at byte ", at, " (stored ", hex32(stored), ", computed ", hex32(computed), ")");
        at += 12 + size_t(len);

        if (color_type < 0 && type != "IHDR") fail(what, ": expected IHDR as the first chunk, found ", type);
        if (seen_idat && type != "IDAT") idat_ended = true;
        if (type == "IHDR") {
            if (color_type >= 0) fail(what, ": a second IHDR chunk");
            if (len != 13) fail(what, ": IHDR of ", len, " bytes (expected 13)");
            width = be32(data);
            height = be32(data + 4);
            int depth = data[8];
            color_type = data[9];
            if (width == 0 || height == 0 || width > 0x7FFFFFFFu || height > 0x7FFFFFFFu)
                fail(what, ": image of ", width, "x", height, " pixels (width and height must be 1..2^31-1)");
            if (uint64_t(width) * height > (uint64_t(1) << 26))
                fail(what, ": image of ", width, "x", height, " pixels is over the limit of 2^26 pixels");
            if (color_type != 0 && color_type != 2 && color_type != 3 && color_type != 4 && color_type != 6)
                fail(what, ": invalid color type ", color_type, " (expected 0, 2, 3, 4 or 6)");
            if (depth != 8) fail(what, ": bit depth ", depth, " is not supported (only 8)");
            if (data[10] != 0) fail(what, ": compression method ", int(data[10]), " (expected 0, deflate)");
            if (data[11] != 0) fail(what, ": filter method ", int(data[11]), " (expected 0)");
            if (data[12] == 1) fail(what, ": interlaced (Adam7) images are not supported");
            if (data[12] != 0) fail(what, ": invalid interlace method ", int(data[12]));
        } else if (type == "PLTE") {
            if (len == 0 || len % 3 != 0 || len > 3 * 256) fail(what, ": PLTE of ", len, " bytes (expected 3 x 1..256 entries)");
            if (seen_idat) fail(what, ": PLTE after IDAT");
            palette.clear();
            for (uint32_t i = 0; i < len; i += 3) palette.insert(palette.end(), {data[i], data[i + 1], data[i + 2], 255});
        } else if (type == "tRNS" && color_type == 3) {
            // Alpha of the first len palette entries (PNG spec 11.3.2.1); the others stay opaque.
            if (palette.empty() || len > palette.size() / 4) fail(what, ": tRNS of ", len, " entries for a palette of ", palette.size() / 4);
            for (uint32_t i = 0; i < len; i++) palette[4 * i + 3] = data[i];
            has_trns = true;
        } else if (type == "IDAT") {
            if (idat_ended) fail(what, ": IDAT chunks are not consecutive");
            seen_idat = true;
            idat.append(reinterpret_cast<const char*>(data), len);
        } else if (type == "IEND") {
            iend = true;
        } else if (!(type_bytes[0] & 0x20)) {
            // Bit 5 of the first letter (lower case) marks an ancillary chunk, which can be skipped.
            fail(what, ": unknown critical chunk ", type);
        }
    }
    if (at != n) fail(what, ": ", n - at, " bytes after the IEND chunk");
    if (idat.empty()) fail(what, ": no image data (no IDAT chunk, or only empty ones)");
    if (color_type == 3 && palette.empty()) fail(what, ": palette image without a PLTE chunk");

    // Bytes per pixel in the filtered data, at 8 bits per sample; a palette index is one byte.
    static const int samples[7] = {1, 0, 3, 1, 2, 0, 4};
    const size_t bpp = size_t(samples[color_type]), stride = size_t(width) * bpp;
    const size_t expected = size_t(height) * (stride + 1);
    std::string raw = zlib_inflate(idat, what + ": IDAT", expected);
    if (raw.size() != expected)
        fail(what, ": IDAT: expected ", expected, " bytes after inflating (", height, " rows of 1 + ", stride, "), found ", raw.size());
    std::vector<uint8_t> img = unfilter(raw, height, stride, bpp, what);

    PngImage out;
    out.width = int(width);
    out.height = int(height);
    if (color_type != 3) {
        out.channels = int(bpp);
        out.pixels = std::move(img);
        return out;
    }
    // Palette indices to RGB, or RGBA when a tRNS chunk gave alphas.
    out.channels = has_trns ? 4 : 3;
    out.pixels.resize(img.size() * size_t(out.channels));
    const size_t entries = palette.size() / 4;
    for (size_t i = 0; i < img.size(); i++) {
        if (img[i] >= entries) fail(what, ": palette index ", int(img[i]), " at pixel ", i, " (palette of ", entries, " entries)");
        std::memcpy(out.pixels.data() + i * size_t(out.channels), palette.data() + 4 * img[i], size_t(out.channels));
    }
    return out;
}

PngImage read_png(const std::string& path) { return decode_png(read_file(path), path); }

}  // namespace dl
