// A small image classifier, the evaluation's judge (ddpm/eval/eval.h): trained on the real digits, its
// penultimate features are the space in which FID, KID and precision/recall compare samples with real
// images, and its predictions give the class histogram of a set of samples. Two architectures, so
// that the ruler (ddpm/eval/ruler.h) can ask judges that see the digits differently:
// B batch, R side, K classes, F features, H hidden.
//
// arch "conv" (R a multiple of 4):
//   conv1 3x3 1 -> ch, SiLU, 2x2 average pool      (B, ch, R/2, R/2)
//   conv2 3x3 ch -> 2ch, SiLU, 2x2 average pool    (B, 2ch, R/4, R/4)
//   fc1 2ch (R/4)^2 -> F, SiLU                     (B, F)   features()
//   fc2 F -> K                                     (B, K)   forward(): the logits
// arch "mlp" (the pixels alone, no notion of neighbourhood or translation):
//   fc0 R^2 -> H, SiLU                             (B, H)
//   fc1 H -> F, SiLU                               (B, F)   features()
//   fc2 F -> K                                     (B, K)   forward(): the logits
#pragma once
#include <memory>
#include <string>

#include "nn/layers.h"

namespace dl::nn {

struct ClassifierConfig {
    std::string arch = "conv";  // "conv" or "mlp"
    int64_t side = 28, classes = 10, ch = 32, features = 128;
    int64_t hidden = 512;       // mlp only
    // For the cache's metadata. "conv": "side=28 classes=10 ch=32 features=128" (the string before
    // "mlp" existed, so caches written then still match); "mlp": "arch=mlp side=28 classes=10 hidden=512 features=128".
    std::string str() const;
    bool operator==(const ClassifierConfig&) const = default;
};

class Classifier : public Module {
    Philox init_;              // first: the layers below draw their initial weights from it, in order
    ClassifierConfig config_;

public:
    explicit Classifier(const ClassifierConfig& config = {}, uint64_t seed = 0);
    Variable features(const Variable& x) const;        // (B, 1, R, R) in [-1, 1] -> (B, F)
    Variable logits(const Variable& features) const;   // (B, F) -> (B, K)
    Variable forward(const Variable& x) const;         // -> logits (B, K)
    const ClassifierConfig& config() const { return config_; }
    std::string config_string() const override { return config_.str(); }

    // The layers of the config's arch (the others are null). The conv net draws its weights in the
    // order conv1, conv2, fc1, fc2, as before the mlp existed, so a seed gives the same network.
    std::unique_ptr<Conv2d> conv1, conv2;  // conv
    std::unique_ptr<Linear> fc0;           // mlp
    std::unique_ptr<Linear> fc1, fc2;      // both
};

}  // namespace dl::nn
