// A small image classifier, the evaluation's judge (ddpm/eval/eval.h): trained on the real digits, its
// penultimate features are the space in which FID and precision/recall compare samples with real
// images, and its predictions give the class histogram of a set of samples.
// B batch, R side (a multiple of 4), K classes, F features.
//
//   conv1 3x3 1 -> ch, SiLU, 2x2 average pool      (B, ch, R/2, R/2)
//   conv2 3x3 ch -> 2ch, SiLU, 2x2 average pool    (B, 2ch, R/4, R/4)
//   fc1 2ch (R/4)^2 -> F, SiLU                     (B, F)   features()
//   fc2 F -> K                                     (B, K)   forward(): the logits
#pragma once
#include <string>

#include "nn/layers.h"

namespace dl::nn {

struct ClassifierConfig {
    int64_t side = 28, classes = 10, ch = 32, features = 128;
    std::string str() const;  // "side=28 classes=10 ch=32 features=128", for the cache's metadata
    bool operator==(const ClassifierConfig&) const = default;
};

class Classifier : public Module {
    Philox init_;              // first: the layers below draw their initial weights from it, in order
    ClassifierConfig config_;

public:
    explicit Classifier(const ClassifierConfig& config = {}, uint64_t seed = 0);
    Variable features(const Variable& x) const;  // (B, 1, R, R) in [-1, 1] -> (B, F)
    Variable forward(const Variable& x) const;   // -> logits (B, K)
    const ClassifierConfig& config() const { return config_; }
    std::string config_string() const override { return config_.str(); }

    Conv2d conv1, conv2;
    Linear fc1, fc2;
};

}  // namespace dl::nn
