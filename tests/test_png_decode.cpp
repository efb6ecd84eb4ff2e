// PNG decoding (tensor/formats/png_decode.cpp): the project's own files read back, zlib-compressed files
// checked pixel by pixel, and hostile input (corrupt chunks, crafted deflate streams) refused
// with a dl::Error that names the problem.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>

#include "tensor/formats/io.h"
#include "tensor/formats/png.h"
#include "tests/programs.h"

using namespace dl;
using dl::test::message_of;

// The fixtures in tests/fixtures/png/ were written by this Python 3 script (run in that folder),
// Python's zlib being the compressor. Every pixel sample is value(x, y, k) below, except the
// palette image's, whose index is value(x, y, 0) % 4. Row y uses filter type y % 5, so each file
// has all five. The first zlib block is of type `btype`; in the files as written the blocks are:
// rgb_fixed, gray_fixed, palette_trns: one fixed Huffman block; rgba_dynamic: dynamic, empty
// stored (the sync flush, starting mid-byte), dynamic; graya_blocks_3idat: stored, dynamic,
// fixed, dynamic, cut across three IDAT chunks.
//
// import struct, zlib
// def value(x, y, k): return (7 * x + 13 * y + 61 * k + (x * x * y) % 23) % 256
// def paeth(a, b, c):
//     p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
//     return a if pa <= pb and pa <= pc else (b if pb <= pc else c)
// def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
// def png(name, w, h, color, ch, btype, mem_level=9, idat_parts=1, palette=None, trns=None, sync_flush=False):
//     rows, prev = b"", bytes(w * ch)
//     for y in range(h):
//         cur = bytes(value(x, y, 0) % 4 if palette else value(x, y, k) for x in range(w) for k in range(ch))
//         f, out = y % 5, bytearray()  # row y uses filter type y % 5
//         for i in range(len(cur)):
//             a = cur[i - ch] if i >= ch else 0; b = prev[i]; c = prev[i - ch] if i >= ch else 0
//             out.append((cur[i] - [0, a, b, (a + b) // 2, paeth(a, b, c)][f]) % 256)
//         rows, prev = rows + bytes([f]) + out, cur
//     co = zlib.compressobj(9, zlib.DEFLATED, 15, mem_level, zlib.Z_FIXED if btype == 1 else zlib.Z_DEFAULT_STRATEGY)
//     half = len(rows) // 2 if sync_flush else len(rows)  # a sync flush ends a block with an empty stored one
//     z = co.compress(rows[:half]) + (co.flush(zlib.Z_SYNC_FLUSH) if sync_flush else b"") + co.compress(rows[half:]) + co.flush()
//     assert (z[2] >> 1) & 3 == btype  # the first block type: 0 stored, 1 fixed, 2 dynamic
//     s = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
//     s += chunk(b"tEXt", b"Comment\0an ancillary chunk, skipped")
//     if palette: s += chunk(b"PLTE", bytes(palette))
//     if trns: s += chunk(b"tRNS", bytes(trns))
//     cut = [len(z) * i // idat_parts for i in range(idat_parts + 1)]
//     for i in range(idat_parts): s += chunk(b"IDAT", z[cut[i]:cut[i + 1]])
//     open(name, "wb").write(s + chunk(b"IEND", b""))
// png("rgb_fixed.png", 9, 7, 2, 3, 1)
// png("rgba_dynamic.png", 40, 16, 6, 4, 2, sync_flush=True)
// png("graya_blocks_3idat.png", 40, 10, 4, 2, 0, mem_level=1, idat_parts=3)  # many small blocks
// png("gray_fixed.png", 11, 5, 0, 1, 1)
// png("palette_trns.png", 6, 5, 3, 1, 1, palette=[255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 99, 199], trns=[0, 128])

namespace {
const std::string fixtures = "tests/fixtures/png/";  // the tests run from the repository root

int value(int x, int y, int k) { return (7 * x + 13 * y + 61 * k + (x * x * y) % 23) % 256; }

std::string be32(uint32_t v) {
    return {char(v >> 24), char((v >> 16) & 0xFF), char((v >> 8) & 0xFF), char(v & 0xFF)};
}

std::string chunk(const std::string& type, const std::string& data) {
    std::string td = type + data;
    return be32(uint32_t(data.size())) + td + be32(crc32(reinterpret_cast<const uint8_t*>(td.data()), td.size()));
}

// A zlib stream of one final stored block (raw up to 65535 bytes).
std::string zlib_stored(const std::string& raw) {
    REQUIRE(raw.size() <= 65535);
    uint16_t len = uint16_t(raw.size()), nlen = uint16_t(~len);
    std::string z = {'\x78', '\x01', '\x01', char(len & 0xFF), char(len >> 8), char(nlen & 0xFF), char(nlen >> 8)};
    return z + raw + be32(adler32(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
}

std::string ihdr(uint32_t w, uint32_t h, int color, int depth = 8, int interlace = 0) {
    return chunk("IHDR", be32(w) + be32(h) + std::string{char(depth), char(color), 0, 0, char(interlace)});
}

const std::string signature("\x89PNG\r\n\x1a\n", 8);

// A PNG of the given IHDR and the filtered rows `raw` (filter byte first in each row).
std::string png_of(const std::string& ihdr_chunk, const std::string& raw, const std::string& before_idat = "") {
    return signature + ihdr_chunk + before_idat + chunk("IDAT", zlib_stored(raw)) + chunk("IEND", "");
}

std::string decode_error(const std::string& bytes) { return message_of([&] { decode_png(bytes, "t.png"); }); }
std::string inflate_error(const std::string& z) { return message_of([&] { zlib_inflate(z, "z"); }); }

// Deflate bits as RFC 1951 3.1.1 packs them: numbers least significant bit first, Huffman codes
// most significant bit first.
struct BitWriter {
    std::string bytes;
    int used = 8;  // bits used in the last byte
    void bit(int b) {
        if (used == 8) {
            bytes.push_back(0);
            used = 0;
        }
        bytes.back() = char(uint8_t(bytes.back()) | (b << used++));
    }
    void number(uint32_t v, int n) {
        for (int i = 0; i < n; i++) bit((v >> i) & 1);
    }
    void code(uint32_t c, int n) {
        for (int i = n - 1; i >= 0; i--) bit((c >> i) & 1);
    }
    // The zlib stream around these deflate bits, with the Adler-32 of `expected`.
    std::string zlib(const std::string& expected = "") const {
        return std::string("\x78\x01", 2) + bytes + be32(adler32(reinterpret_cast<const uint8_t*>(expected.data()), expected.size()));
    }
};
}  // namespace

TEST_CASE("png decode: the project's own PNGs (zlib_deflate) read back to the same pixels") {
    auto check = [](int w, int h) {
        std::vector<uint8_t> pixels(size_t(w) * size_t(h));
        for (size_t i = 0; i < pixels.size(); i++) pixels[i] = uint8_t((i * 2654435761u) >> 13);
        PngImage im = decode_png(encode_png_gray(pixels.data(), w, h));
        CHECK(im.width == w);
        CHECK(im.height == h);
        CHECK(im.channels == 1);
        CHECK(im.pixels == pixels);
    };
    check(1, 1);
    check(3, 7);
    check(300, 2);
    check(300, 300);  // 90,300 bytes of rows, matches up to 32K back

    // A grid as write_png_grid lays it out, through a file.
    Tensor images = Tensor::zeros({5, 1, 4, 3});
    float* v = images.data<float>();
    for (int64_t i = 0; i < images.numel(); i++) v[i] = float(i % 17) / 8.0f - 1.0f;
    int w = 0, h = 0;
    std::vector<uint8_t> grid = image_grid(images, 2, 1, w, h);
    const std::string path = (std::filesystem::temp_directory_path() / ("dl_png_decode_" + std::to_string(getpid()) + ".png")).string();
    write_png_gray(path, grid.data(), w, h);
    PngImage im = read_png(path);
    std::filesystem::remove(path);
    CHECK(im.width == w);
    CHECK(im.height == h);
    CHECK(im.pixels == grid);
}

TEST_CASE("png decode: zlib-compressed fixtures (fixed and dynamic Huffman, filters 0-4) pixel by pixel") {
    struct Fixture {
        const char* name;
        int w, h, channels;
    };
    for (Fixture f : {Fixture{"rgb_fixed.png", 9, 7, 3}, Fixture{"rgba_dynamic.png", 40, 16, 4},
                      Fixture{"graya_blocks_3idat.png", 40, 10, 2}, Fixture{"gray_fixed.png", 11, 5, 1}}) {
        INFO(f.name);
        PngImage im = read_png(fixtures + f.name);
        REQUIRE(im.width == f.w);
        REQUIRE(im.height == f.h);
        REQUIRE(im.channels == f.channels);
        REQUIRE(im.pixels.size() == size_t(f.w * f.h * f.channels));
        int wrong = 0;
        for (int y = 0; y < f.h; y++)
            for (int x = 0; x < f.w; x++)
                for (int k = 0; k < f.channels; k++) wrong += im.pixels[size_t((y * f.w + x) * f.channels + k)] != value(x, y, k);
        CHECK(wrong == 0);
    }

    // The palette image: index value(x, y, 0) % 4 into 4 colors, the first two with tRNS alphas.
    const uint8_t rgba[4][4] = {{255, 0, 0, 0}, {0, 255, 0, 128}, {0, 0, 255, 255}, {9, 99, 199, 255}};
    PngImage im = read_png(fixtures + "palette_trns.png");
    REQUIRE(im.width == 6);
    REQUIRE(im.height == 5);
    REQUIRE(im.channels == 4);
    int wrong = 0;
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 6; x++)
            for (int k = 0; k < 4; k++) wrong += im.pixels[size_t((y * 6 + x) * 4 + k)] != rgba[value(x, y, 0) % 4][k];
    CHECK(wrong == 0);
}

TEST_CASE("png decode: zlib_inflate on its own") {
    // Python: zlib.compress(d, 9) for d = b"", b"a" * 20, b"abc" * 8 + b"!" (fixed Huffman; the
    // last two copy with distances shorter than their lengths: overlapping matches).
    CHECK(zlib_inflate(std::string("\x78\xda\x03\x00\x00\x00\x00\x01", 8)) == "");
    const std::string a20("\x78\xda\x4b\x4c\xc4\x04\x00\x4f\xa6\x07\x95", 11);
    CHECK(zlib_inflate(a20) == std::string(20, 'a'));
    CHECK(zlib_inflate(std::string("\x78\xda\x4b\x4c\x4a\x4e\xc4\x86\x14\x01\x7c\x32\x09\x52", 14)) ==
          "abcabcabcabcabcabcabcabc!");

    // The output limit: exactly enough passes, one byte less is refused.
    CHECK(zlib_inflate(a20, "z", 20).size() == 20);
    CHECK(message_of([&] { zlib_inflate(a20, "z", 19); }).find("exceed the limit of 19 bytes") != std::string::npos);

    // Header, checksum and framing.
    CHECK(inflate_error("").find("truncated zlib header") != std::string::npos);
    CHECK(inflate_error(std::string("\x78\xdb", 2) + a20.substr(2)).find("header check") != std::string::npos);
    CHECK(inflate_error(std::string("\x79\x18", 2)).find("compression method 8 (deflate), found 9") != std::string::npos);  // 0x7918 = 31 * 1000
    CHECK(inflate_error(std::string("\x78\xbb", 2)).find("preset dictionaries") != std::string::npos);
    std::string bad_adler = a20;
    bad_adler.back() ^= 1;
    CHECK(inflate_error(bad_adler).find("Adler-32 mismatch") != std::string::npos);
    CHECK(inflate_error(a20.substr(0, a20.size() - 2)).find("no Adler-32") != std::string::npos);
    CHECK(inflate_error(a20 + "x").find("1 trailing bytes") != std::string::npos);
    for (size_t n = 0; n < a20.size(); n++) {  // every cut is refused
        INFO(n);
        CHECK(inflate_error(a20.substr(0, n)) != "(no error)");
    }

    // Stored blocks: NLEN must be ~LEN, and LEN bytes must follow.
    CHECK(inflate_error(std::string("\x78\x01\x01\x03\x00\xfc\xfe" "abc", 10)).find("does not match its complement") != std::string::npos);
    CHECK(inflate_error(std::string("\x78\x01\x01\x10\x00\xef\xff" "abc", 10)).find("stored block of 16 bytes, but only 3") !=
          std::string::npos);
}

TEST_CASE("png decode: crafted deflate streams are refused with the reason") {
    // A fixed Huffman block (BFINAL 1, BTYPE 01) of literal 'a' (code 0x30 + 'a', 8 bits) then
    // end of block (code 0, 7 bits) decodes; the same with a match first has nothing to copy.
    BitWriter ok;
    ok.number(1, 1);
    ok.number(1, 2);
    ok.code(0x30 + 'a', 8);
    ok.code(0, 7);
    CHECK(zlib_inflate(ok.zlib("a")) == "a");

    BitWriter far;
    far.number(1, 1);
    far.number(1, 2);
    far.code(1, 7);  // length code 257: length 3
    far.code(0, 5);  // distance code 0: distance 1
    CHECK(inflate_error(far.zlib()).find("distance 1 is before the start of the output") != std::string::npos);

    BitWriter length286;  // fixed codes 280..287 are 8 bits from 0xC0: 286 is 0xC6
    length286.number(1, 1);
    length286.number(1, 2);
    length286.code(0xC6, 8);
    CHECK(inflate_error(length286.zlib()).find("invalid length code 286") != std::string::npos);

    BitWriter dist30;
    dist30.number(1, 1);
    dist30.number(1, 2);
    dist30.code(0x30 + 'a', 8);
    dist30.code(1, 7);
    dist30.code(30, 5);
    CHECK(inflate_error(dist30.zlib()).find("invalid distance code 30") != std::string::npos);

    BitWriter type3;
    type3.number(1, 1);
    type3.number(3, 2);
    CHECK(inflate_error(type3.zlib()).find("block type 3") != std::string::npos);

    // Dynamic blocks (BTYPE 10): HLIT - 257, HDIST - 1, HCLEN - 4, then 3-bit code length code
    // lengths in the order 16, 17, 18, 0, 8, 7, ...
    auto dynamic = [](int hlit, int hdist, std::vector<int> clens) {
        BitWriter b;
        b.number(1, 1);
        b.number(2, 2);
        b.number(uint32_t(hlit - 257), 5);
        b.number(uint32_t(hdist - 1), 5);
        b.number(uint32_t(clens.size() - 4), 4);
        for (int l : clens) b.number(uint32_t(l), 3);
        return b;
    };
    CHECK(inflate_error(dynamic(287, 1, {0, 0, 0, 0}).zlib()).find("at most 286 and 30") != std::string::npos);
    CHECK(inflate_error(dynamic(257, 1, {1, 1, 1, 0}).zlib()).find("over-subscribed Huffman code (code length") != std::string::npos);
    CHECK(inflate_error(dynamic(257, 1, {0, 0, 2, 0}).zlib()).find("incomplete Huffman code (code length") != std::string::npos);

    // Code length code: symbols 8 and 18 of length 1 (canonical: 8 -> "0", 18 -> "1").
    const std::vector<int> clen_8_18 = {0, 0, 1, 0, 1};
    // Literals 0..127 of length 8, 128 zeros (18 with 7 extra bits 117), end of block (256) of
    // length 8, and one distance code of length 8: 129 codes of 8 bits, far from complete.
    BitWriter incomplete = dynamic(257, 1, clen_8_18);
    for (int i = 0; i < 128; i++) incomplete.code(0, 1);
    incomplete.code(1, 1);
    incomplete.number(117, 7);
    incomplete.code(0, 1);  // 256
    incomplete.code(0, 1);  // the distance code
    CHECK(inflate_error(incomplete.zlib()).find("incomplete Huffman code (literal/length") != std::string::npos);

    // 258 lengths of zero: no end-of-block code.
    BitWriter no_end = dynamic(257, 1, clen_8_18);
    no_end.code(1, 1);
    no_end.number(138 - 11, 7);
    no_end.code(1, 1);
    no_end.number(120 - 11, 7);
    CHECK(inflate_error(no_end.zlib()).find("no end-of-block code") != std::string::npos);

    // A zero run past the 258 lengths.
    BitWriter overrun = dynamic(257, 1, clen_8_18);
    for (int i = 0; i < 2; i++) {
        overrun.code(1, 1);
        overrun.number(138 - 11, 7);
    }
    CHECK(inflate_error(overrun.zlib()).find("runs past the 258 code lengths") != std::string::npos);

    // Repeat the previous length (16) with no previous one: code length code of 16 and 8.
    BitWriter repeat16 = dynamic(257, 1, {1, 0, 0, 0, 1});
    repeat16.code(1, 1);  // 16 (symbols 8 -> "0", 16 -> "1")
    repeat16.number(0, 2);
    CHECK(inflate_error(repeat16.zlib()).find("repeat (16) with no previous length") != std::string::npos);
}

TEST_CASE("png decode: corrupt and unsupported files are refused with the reason") {
    const std::string raw_2x2 = std::string("\0\1\2\0\3\4", 6);  // two rows, filter None
    const std::string good = png_of(ihdr(2, 2, 0), raw_2x2);
    PngImage im = decode_png(good);
    CHECK(im.pixels == std::vector<uint8_t>{1, 2, 3, 4});

    // Signature, CRC, truncation, bytes after IEND.
    CHECK(decode_error("GIF89a").find("t.png: expected the PNG signature") != std::string::npos);
    std::string bad_crc = good;
    bad_crc[8 + 8 + 13] ^= 0x40;  // the IHDR's CRC
    CHECK(decode_error(bad_crc).find("bad CRC in chunk IHDR at byte 8") != std::string::npos);
    std::string bad_data = good;
    bad_data[8 + 8 + 3] ^= 1;  // the width, CRC left alone
    CHECK(decode_error(bad_data).find("bad CRC in chunk IHDR") != std::string::npos);
    CHECK(decode_error(good.substr(0, good.size() - 12)).find("no IEND chunk") != std::string::npos);
    CHECK(decode_error(good.substr(0, 50)).find("truncated chunk IDAT") != std::string::npos);
    CHECK(decode_error(good + "x").find("1 bytes after the IEND chunk") != std::string::npos);
    std::string long_chunk = good;
    long_chunk[33] = '\x80';  // the IDAT's length, now over 2^31
    CHECK(decode_error(long_chunk).find("(at most 2^31 - 1)") != std::string::npos);

    // IHDR fields.
    CHECK(decode_error(png_of(ihdr(0, 2, 0), raw_2x2)).find("image of 0x2 pixels") != std::string::npos);
    CHECK(decode_error(png_of(ihdr(1 << 16, 1 << 11, 0), raw_2x2)).find("over the limit of 2^26 pixels") != std::string::npos);
    CHECK(decode_error(png_of(ihdr(2, 2, 0, 16), raw_2x2)).find("bit depth 16 is not supported") != std::string::npos);
    CHECK(decode_error(png_of(ihdr(2, 2, 5), raw_2x2)).find("invalid color type 5") != std::string::npos);
    CHECK(decode_error(png_of(ihdr(2, 2, 0, 8, 1), raw_2x2)).find("interlaced") != std::string::npos);
    CHECK(decode_error(signature + chunk("IHDR", "short") + chunk("IEND", "")).find("IHDR of 5 bytes") != std::string::npos);

    // Chunk order and kinds.
    CHECK(decode_error(signature + chunk("IEND", "")).find("expected IHDR as the first chunk, found IEND") != std::string::npos);
    CHECK(decode_error(signature + ihdr(2, 2, 0) + chunk("IEND", "")).find("no image data") != std::string::npos);
    CHECK(decode_error(png_of(ihdr(2, 2, 0), raw_2x2, chunk("ABCD", ""))).find("unknown critical chunk ABCD") != std::string::npos);
    CHECK(decode_png(png_of(ihdr(2, 2, 0), raw_2x2, chunk("abCD", "skipped"))).pixels.size() == 4);  // ancillary
    CHECK(decode_error(png_of(ihdr(2, 2, 0), raw_2x2, chunk("A1CD", ""))).find("invalid chunk type") != std::string::npos);
    std::string split = signature + ihdr(2, 2, 0) + chunk("IDAT", "") + chunk("tEXt", "a\0b") + chunk("IDAT", zlib_stored(raw_2x2)) +
                        chunk("IEND", "");
    CHECK(decode_error(split).find("IDAT chunks are not consecutive") != std::string::npos);

    // Image data: the zlib stream's Adler-32, its length against IHDR, the filter types.
    std::string z = zlib_stored(raw_2x2);
    z.back() ^= 1;
    CHECK(decode_error(signature + ihdr(2, 2, 0) + chunk("IDAT", z) + chunk("IEND", "")).find("t.png: IDAT: Adler-32 mismatch") !=
          std::string::npos);
    CHECK(decode_error(png_of(ihdr(2, 3, 0), raw_2x2)).find("expected 9 bytes after inflating") != std::string::npos);
    CHECK(decode_error(png_of(ihdr(2, 1, 0), raw_2x2)).find("exceed the limit of 3 bytes") != std::string::npos);
    CHECK(decode_error(png_of(ihdr(2, 2, 0), std::string("\0\1\2\5\3\4", 6))).find("row 1 has filter type 5") != std::string::npos);

    // Palettes: a PLTE is needed, and every index must be in it.
    const std::string plte = chunk("PLTE", std::string("\1\2\3\4\5\6", 6));  // 2 colors
    PngImage pal = decode_png(png_of(ihdr(2, 2, 3), std::string("\0\0\1\0\1\0", 6), plte));
    CHECK(pal.channels == 3);
    CHECK(pal.pixels == std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 4, 5, 6, 1, 2, 3});
    CHECK(decode_error(png_of(ihdr(2, 2, 3), std::string("\0\0\1\0\1\0", 6))).find("without a PLTE") != std::string::npos);
    CHECK(decode_error(png_of(ihdr(2, 2, 3), std::string("\0\0\1\0\2\0", 6), plte)).find("palette index 2") != std::string::npos);
    CHECK(decode_error(png_of(ihdr(2, 2, 3), raw_2x2, chunk("PLTE", "ab"))).find("PLTE of 2 bytes") != std::string::npos);
}

TEST_CASE("png decode: every cut and every one-byte change of a fixture is refused, never a crash") {
    const std::string png = read_file(fixtures + "rgb_fixed.png");
    for (size_t n = 0; n < png.size(); n++) {
        INFO("cut at ", n);
        CHECK(decode_error(png.substr(0, n)) != "(no error)");
    }
    for (size_t at = 0; at < png.size(); at++) {
        std::string changed = png;
        changed[at] = char(changed[at] ^ 0x5A);
        INFO("byte ", at, " changed");
        CHECK(decode_error(changed) != "(no error)");  // the signature, a length, or a CRC catches it
    }

    // Past the CRC: each byte of the zlib stream changed and the chunk's CRC made right again.
    // Most are caught by the inflater or the Adler-32; what matters is that nothing else happens.
    const std::string dyn = read_file(fixtures + "rgba_dynamic.png");
    const size_t idat_at = dyn.find("IDAT") - 4;
    size_t idat_len = 0;
    for (int i = 0; i < 4; i++) idat_len = idat_len << 8 | uint8_t(dyn[idat_at + i]);
    const std::string head = dyn.substr(0, idat_at), tail = dyn.substr(idat_at + 12 + idat_len);
    const std::string zdyn = dyn.substr(idat_at + 8, idat_len);
    const std::vector<uint8_t> pixels = decode_png(dyn).pixels;
    int refused = 0;
    for (size_t at = 0; at < zdyn.size(); at++) {
        std::string z = zdyn;
        z[at] = char(z[at] ^ 0x5A);
        try {
            PngImage im = decode_png(head + chunk("IDAT", z) + tail);
            CHECK(im.pixels == pixels);  // accepted: a change that means nothing
        } catch (const Error&) {
            refused++;
        }
    }
    // One byte holds only the sync flush's stored block header (3 bits, all 0 before and after)
    // and the padding after it, which RFC 1951 3.2.4 says to ignore; zlib accepts that change too.
    CHECK(refused == int(zdyn.size()) - 1);
}
