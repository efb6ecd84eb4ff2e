// File formats: PNG (taken apart chunk by chunk and inflated by hand), SVG plots, .npy files.
#include <doctest/doctest.h>

#include <cfloat>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <sys/wait.h>
#include <unistd.h>

#include "tensor/formats/io.h"
#include "tensor/formats/npy.h"
#include "tensor/formats/png.h"
#include "tensor/rng.h"
#include "ddpm/report/svg.h"

using namespace dl;

namespace {
const uint8_t* bytes_of(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }
uint32_t be32(const std::string& s, size_t at) {
    return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 | uint32_t(uint8_t(s[at + 2])) << 8 |
           uint32_t(uint8_t(s[at + 3]));
}
std::string temp_dir() {
    std::string d = (std::filesystem::temp_directory_path() / ("dl_formats_" + std::to_string(getpid()))).string();
    make_dirs(d);
    return d;
}

struct Chunk {
    std::string type, data;
};

// Splits a PNG into chunks, checking the signature, every length and every CRC on the way.
std::vector<Chunk> parse_png(const std::string& png) {
    REQUIRE(png.size() >= 8);
    REQUIRE(png.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) == 0);
    std::vector<Chunk> chunks;
    size_t at = 8;
    while (at < png.size()) {
        REQUIRE(at + 12 <= png.size());
        uint32_t len = be32(png, at);
        REQUIRE(at + 12 + len <= png.size());
        Chunk c{png.substr(at + 4, 4), png.substr(at + 8, len)};
        CHECK(be32(png, at + 8 + len) == crc32(bytes_of(png) + at + 4, 4 + len));
        chunks.push_back(c);
        at += 12 + len;
    }
    CHECK(at == png.size());
    return chunks;
}

}  // namespace

TEST_CASE("crc32 and adler32 known answers") {
    std::string digits = "123456789", wiki = "Wikipedia";
    CHECK(crc32(bytes_of(digits), digits.size()) == 0xCBF43926u);
    CHECK(adler32(bytes_of(wiki), wiki.size()) == 0x11E60398u);
    CHECK(crc32(nullptr, 0) == 0u);
    CHECK(adler32(nullptr, 0) == 1u);
    // Past the 5552-byte block where adler32 reduces its sums: compare with the plain definition.
    std::string big(100000, '\0');
    for (size_t i = 0; i < big.size(); i++) big[i] = char(255 - i % 7);
    uint64_t s1 = 1, s2 = 0;
    for (unsigned char c : big) s1 = (s1 + c) % 65521, s2 = (s2 + s1) % 65521;
    CHECK(adler32(bytes_of(big), big.size()) == uint32_t(s2 << 16 | s1));
}

TEST_CASE("png: chunks, IHDR, the zlib stream and pixels") {
    int w = 300, h = 250;
    std::vector<uint8_t> px(size_t(w * h));
    for (size_t i = 0; i < px.size(); i++) px[i] = uint8_t(i * 31 % 251);
    std::string png = encode_png_gray(px.data(), w, h);
    std::vector<Chunk> chunks = parse_png(png);
    REQUIRE(chunks.size() == 3);
    CHECK(chunks[0].type == "IHDR");
    CHECK(chunks[1].type == "IDAT");
    CHECK(chunks[2].type == "IEND");
    CHECK(chunks[2].data.empty());

    const std::string& ihdr = chunks[0].data;
    REQUIRE(ihdr.size() == 13);
    CHECK(be32(ihdr, 0) == uint32_t(w));
    CHECK(be32(ihdr, 4) == uint32_t(h));
    CHECK(ihdr.substr(8) == std::string("\x08\x00\x00\x00\x00", 5));  // depth 8, gray, deflate, no interlace

    const std::string& z = chunks[1].data;
    uint8_t cmf = uint8_t(z[0]), flg = uint8_t(z[1]);
    CHECK((cmf & 0x0F) == 8);            // deflate
    CHECK((cmf >> 4) <= 7);              // window at most 32K
    CHECK((cmf * 256 + flg) % 31 == 0);  // FCHECK
    CHECK((flg & 0x20) == 0);            // no preset dictionary
    std::string raw = zlib_inflate(z);   // tensor/formats/png_decode.cpp, checks the Adler-32
    REQUIRE(raw.size() == size_t(h * (w + 1)));
    for (int y = 0; y < h; y++) {
        CHECK(raw[size_t(y * (w + 1))] == 0);  // filter type None
        CHECK(std::memcmp(raw.data() + y * (w + 1) + 1, px.data() + y * w, size_t(w)) == 0);
    }

    CHECK_THROWS_WITH(encode_png_gray(px.data(), 0, 5), "encode_png_gray: expected width and height in 1..2^24, got 0x5");
}

TEST_CASE("zlib_deflate: inflates back to its input, and compresses what repeats") {
    Philox gen{3};
    Tensor u = rand({70000}, gen);
    std::vector<std::string> inputs = {"", "a", "abc", std::string(1000, 'x'), std::string(70000, '\0')};
    std::string noise, runs, text;
    for (int64_t i = 0; i < 70000; i++) noise.push_back(char(int(u.data<float>()[i] * 256)));  // no repeats to find
    for (int i = 0; i < 5000; i++) runs += std::string(size_t(1 + i % 300), char(i % 7));  // matches of every length and distance
    for (int i = 0; i < 3000; i++) text += "the quick brown fox " + std::to_string(i * 7919 % 1000) + " ";
    inputs.insert(inputs.end(), {noise, runs, text});
    for (const std::string& in : inputs) {
        INFO("input of ", in.size(), " bytes");
        std::string z = zlib_deflate(in);
        CHECK(zlib_inflate(z) == in);
        if (in.size() >= 1000 && in != noise) CHECK(z.size() < in.size() / 3);
    }
    CHECK(zlib_deflate(noise).size() < noise.size() * 9 / 8 + 16);  // literals cost 8 or 9 bits
    // a digit grid as train writes it: mostly black, each row twice (scale 2)
    Tensor digits = Tensor::full({16, 1, 28, 28}, -1.0);
    for (int64_t i = 0; i < 16; i++) digits.rows(i, 1).copy_from(Tensor::full({1, 1, 28, 28}, double(i) / 8 - 1));
    int gw = 0, gh = 0;
    std::vector<uint8_t> grid = image_grid(digits, 4, 2, gw, gh);
    CHECK(encode_png_gray(grid.data(), gw, gh).size() < grid.size() / 10);
}

TEST_CASE("png: image grid layout and value mapping") {
    // Three 2x2 images, two per row, pad 1: a 7 x 7 picture.
    Tensor imgs = Tensor::from_vector(std::vector<float>{-1, 1, 0, 2, 1, 1, 1, 1, -1, -1, -1, NAN}, {3, 1, 2, 2});
    int w = 0, h = 0;
    std::vector<uint8_t> g = image_grid(imgs, 2, 1, w, h, 77);
    CHECK(w == 7);
    CHECK(h == 7);
    auto at = [&](int x, int y) { return int(g[size_t(y * w + x)]); };
    CHECK(at(0, 0) == 77);
    CHECK(at(1, 1) == 0);    // -1
    CHECK(at(2, 1) == 255);  // 1
    CHECK(at(1, 2) == 128);  // 0 -> round(127.5)
    CHECK(at(2, 2) == 255);  // 2, clamped
    CHECK(at(4, 1) == 255);  // image 1
    CHECK(at(1, 4) == 0);    // image 2, row 2
    CHECK(at(2, 5) == 0);    // NaN
    CHECK(at(4, 4) == 77);   // no image 3: padding
    CHECK_THROWS_WITH(image_grid(Tensor::zeros({2, 3, 4, 4}), 2, 1, w, h),
                      "image_grid: expected images of shape (N, 1, H, W) or (N, H, W) with N >= 1, got (2, 3, 4, 4)");

    std::string dir = temp_dir();
    write_png_grid(dir + "/grid.png", Tensor::zeros({5, 28, 28}, DType::F64), 4, 1);
    std::vector<Chunk> chunks = parse_png(read_file(dir + "/grid.png"));
    CHECK(be32(chunks[0].data, 0) == 4 * 30 + 2);
    CHECK(be32(chunks[0].data, 4) == 2 * 30 + 2);
    write_png_grid(dir + "/grid2.png", Tensor::zeros({5, 28, 28}, DType::F64), 4);  // scale 2 by default
    chunks = parse_png(read_file(dir + "/grid2.png"));
    CHECK(be32(chunks[0].data, 0) == 2 * (4 * 30 + 2));
    CHECK(be32(chunks[0].data, 4) == 2 * (2 * 30 + 2));
    CHECK_THROWS_WITH(write_png_grid(dir + "/bad.png", Tensor::zeros({1, 2, 2}), 1, 0), "write_png_grid: scale must be in [1, 16], got 0");
    std::filesystem::remove_all(dir);
}

TEST_CASE("svg plot holds the series, skips bad points, and checks lengths") {
    std::string dir = temp_dir();
    Series loss{"train loss", {1, 2, 3, 4}, {1.0, 0.5, NAN, 0.25}};
    Series lr{"lr & <warmup>", {1, 2, 3, 4}, {0, 1e-4, 2e-4, 2e-4}};
    write_svg_plot(dir + "/plot.svg", "Loss", "step", "value", {loss, lr}, true);
    std::string svg = read_file(dir + "/plot.svg");
    CHECK(svg.rfind("<svg", 0) == 0);
    CHECK(svg.find("</svg>") != std::string::npos);
    CHECK(svg.find("train loss") != std::string::npos);
    CHECK(svg.find("lr &amp; &lt;warmup&gt;") != std::string::npos);  // escaped
    CHECK(svg.find("nan") == std::string::npos);
    CHECK(svg.find("inf") == std::string::npos);
    CHECK(svg.find("#1f77b4") != std::string::npos);
    CHECK(svg.find("#ff7f0e") != std::string::npos);
    CHECK(svg.find("(log scale)") != std::string::npos);
    CHECK(svg.find("<circle") != std::string::npos);  // the loss point after the NaN stands alone
    std::string lin = svg_plot("t", "x", "y", {Series{"flat", {0, 1}, {3, 3}}}, false);
    CHECK(lin.find("<polyline") != std::string::npos);
    CHECK_THROWS_WITH(svg_plot("t", "x", "y", {Series{"bad", {1, 2}, {1}}}, false),
                      "svg_plot: series 'bad' has 2 x values but 1 y values");
    std::filesystem::remove_all(dir);
}

TEST_CASE("svg plot draws any finite data: values near 2^53, spans past the largest double, and says what it left out") {
    auto ticks = [](const std::string& svg) {  // grid lines, one per tick on either axis
        size_t n = 0;
        for (size_t at = svg.find("stroke=\"#e0e0e0\""); at != std::string::npos; at = svg.find("stroke=\"#e0e0e0\"", at + 1)) n++;
        return n;
    };
    const double big = 9007199254740992.0;  // 2^53: consecutive doubles 2 apart
    const std::vector<std::pair<Series, bool>> cases = {
        {Series{"steps near 2^53", {big, big + 2, big + 4}, {big, big + 2, big + 8}}, false},
        {Series{"flat at 2^53", {big, big}, {big, big}}, false},
        {Series{"the whole double range", {-DBL_MAX, DBL_MAX}, {-DBL_MAX, DBL_MAX}}, false},
        {Series{"denormals", {0, 1}, {4.9e-324, 1e-320}}, true},
        {Series{"1e-300 to 1e300", {0, 1}, {1e-300, 1e300}}, true},
    };
    for (const auto& [series, log_y] : cases) {
        INFO(series.name);
        std::string svg = svg_plot("t", "x", "y", {series}, log_y);  // returns: no tick loop that never ends
        CHECK(svg.find("</svg>") != std::string::npos);
        CHECK(svg.find("nan") == std::string::npos);
        CHECK(svg.find("inf") == std::string::npos);
        CHECK(ticks(svg) >= 4);   // at least the two ends of each axis
        CHECK(ticks(svg) <= 60);  // a bounded count
        CHECK(svg.find("not drawn") == std::string::npos);
    }
    std::string svg = svg_plot("t", "x", "y", {Series{"some bad", {1, 2, 3, 4}, {1, NAN, -2, INFINITY}}}, true);
    CHECK(svg.find("3 points not drawn: not finite, or not positive on the log axis") != std::string::npos);
    svg = svg_plot("t", "x", "y", {Series{"one bad", {1, 2, 3}, {1, NAN, 2}}}, false);
    CHECK(svg.find(">1 point not drawn: not finite<") != std::string::npos);
}

TEST_CASE("npy: header layout, round trip, and errors") {
    Tensor t = Tensor::arange(0, 2 * 28 * 28).reshape({2, 28, 28});
    std::string bytes = encode_npy(t);
    std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 28, 28), }";
    size_t hlen = size_t(uint8_t(bytes[8])) | size_t(uint8_t(bytes[9])) << 8;
    CHECK(bytes.compare(0, 8, std::string("\x93NUMPY\x01\x00", 8)) == 0);
    CHECK((10 + hlen) % 64 == 0);
    CHECK(bytes.compare(10, dict.size(), dict) == 0);
    CHECK(bytes[10 + hlen - 1] == '\n');
    CHECK(bytes.size() == 10 + hlen + t.nbytes());
    CHECK(encode_npy(Tensor::zeros({5})).find("'shape': (5,)") != std::string::npos);

    std::string dir = temp_dir(), path = dir + "/x.npy";
    write_npy(path, t);
    Tensor r = read_npy(path);
    CHECK(r.shape() == t.shape());
    CHECK(r.dtype() == DType::F32);
    CHECK(std::memcmp(r.raw(), t.raw(), t.nbytes()) == 0);
    Tensor d = Tensor::from_vector(std::vector<double>{1.5, -2}, {2, 1});
    write_npy(path, d);
    CHECK(read_npy(path).to_vector() == d.to_vector());
    CHECK(read_npy(path).dtype() == DType::F64);

    CHECK_THROWS_WITH(decode_npy(bytes.substr(0, bytes.size() - 4), "cut.npy"),
                      "cut.npy: expected 6400 bytes (header 128 + values of <f4 for shape (2, 28, 28)), found 6396");
    std::string bad = bytes;
    bad[1] = 'X';
    CHECK_THROWS_WITH(decode_npy(bad, "bad.npy"), "bad.npy: expected the npy magic \"\\x93NUMPY\", found \"\x93XUMPY\"");
    std::string f2 = bytes;
    f2.replace(f2.find("<f4"), 3, ">f4");
    CHECK_THROWS_WITH(decode_npy(f2, "be.npy"), "be.npy: expected dtype '<f4' or '<f8' (little-endian float32/float64), found '>f4'");
    CHECK_THROWS_WITH(read_npy(dir + "/missing.npy"), doctest::Contains("missing.npy: cannot open"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("remove_stale_temporaries: a dead writer's <name>.tmp.<pid> goes; a live one's, and other files, stay") {
    std::string dir = temp_dir();
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, nullptr, 0);  // reaped: no process has this pid now
    const std::string dead = "checkpoint.safetensors.tmp." + std::to_string(child);
    const std::string live = "samples.png.tmp." + std::to_string(getpid());
    for (const std::string& name : {dead, live, std::string("notes.tmp.x"), std::string(".tmp.1"), std::string("loss.csv")})
        write_file_atomic(dir + "/" + name, "bytes");
    CHECK(remove_stale_temporaries(dir) == std::vector<std::string>{dead});
    CHECK(!file_exists(dir + "/" + dead));
    for (const char* kept : {"samples.png.tmp.", "notes.tmp.x", ".tmp.1", "loss.csv"}) {
        INFO(kept);
        CHECK(file_exists(dir + "/" + kept + (std::string(kept) == "samples.png.tmp." ? std::to_string(getpid()) : "")));
    }
    CHECK(remove_stale_temporaries(dir + "/no such folder").empty());
    std::filesystem::remove_all(dir);
}
