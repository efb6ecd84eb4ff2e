#include "nn/classifier.h"

#include "autograd/ops.h"

namespace dl::nn {

std::string ClassifierConfig::str() const {
    if (arch == "mlp") return cat("arch=mlp side=", side, " classes=", classes, " hidden=", hidden, " features=", features);
    return cat("side=", side, " classes=", classes, " ch=", ch, " features=", features);
}

namespace {
ClassifierConfig checked(const ClassifierConfig& c) {
    if (c.arch != "conv" && c.arch != "mlp") fail("Classifier: arch must be 'conv' or 'mlp', got '", c.arch, "'");
    if (c.side < 4 || (c.arch == "conv" && c.side % 4) || c.classes < 2 || c.ch < 1 || c.features < 1 || c.hidden < 1)
        fail("Classifier: expected a side of at least 4 (divisible by 4 for conv), at least 2 classes and positive widths, got ", c.str());
    return c;
}
}  // namespace

Classifier::Classifier(const ClassifierConfig& c, uint64_t seed) : init_(seed), config_(checked(c)) {
    if (c.arch == "conv") {
        conv1 = std::make_unique<Conv2d>(1, c.ch, 3, 1, 1, init_);
        conv2 = std::make_unique<Conv2d>(c.ch, 2 * c.ch, 3, 1, 1, init_);
        fc1 = std::make_unique<Linear>(2 * c.ch * (c.side / 4) * (c.side / 4), c.features, init_);
        register_module("conv1", *conv1);
        register_module("conv2", *conv2);
    } else {
        fc0 = std::make_unique<Linear>(c.side * c.side, c.hidden, init_);
        fc1 = std::make_unique<Linear>(c.hidden, c.features, init_);
        register_module("fc0", *fc0);
    }
    fc2 = std::make_unique<Linear>(c.features, c.classes, init_);
    register_module("fc1", *fc1);
    register_module("fc2", *fc2);
    pack_parameters();
}

Variable Classifier::features(const Variable& x) const {
    const Shape& s = x.shape();
    if (s.size() != 4 || s[1] != 1 || s[2] != config_.side || s[3] != config_.side)
        fail("Classifier: expected images (B, 1, ", config_.side, ", ", config_.side, "), got ", shape_str(s));
    if (config_.arch == "mlp") return silu(fc1->forward(silu(fc0->forward(reshape(x, {s[0], s[2] * s[3]})))));
    Variable h = avg_pool2d(silu(conv1->forward(x)), 2);  // (B, ch, R/2, R/2)
    h = avg_pool2d(silu(conv2->forward(h)), 2);           // (B, 2ch, R/4, R/4)
    h = reshape(h, {s[0], h.numel() / s[0]});              // (B, 2ch (R/4)^2)
    return silu(fc1->forward(h));                         // (B, F)
}

Variable Classifier::logits(const Variable& features) const { return fc2->forward(features); }

Variable Classifier::forward(const Variable& x) const { return logits(features(x)); }

}  // namespace dl::nn
