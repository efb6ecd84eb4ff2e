// Checkpoints: everything a training run needs to resume bit for bit, in one safetensors file.
//
//   <key>             the model's parameters under their state_dict keys, so that the file's
//                     model entries load into a PyTorch implementation of the same U-Net with
//                     load_state_dict (tests/check_checkpoint.py checks it)
//   ema.<key>         the EMA of the parameters (nn/optim.h)
//   adam.m.<key>      Adam's first and second moments, and adam.t, its update count
//   adam.v.<key>
//   avg.<i>.<key>     further averages of the parameters, i = 0, 1, ... (post-hoc EMA's: ddpm/posthoc_ema.h)
//   step              the training step (I64)
//   rng.<name>        a Philox generator's state, I64 [seed, offset] (the uint64 bits)
//   __metadata__      strings: "format" (this layout), "model" (UNetConfig::str()), "data_crc32"
//                     (CRC-32 of all the tensor bytes, checked on load when present), and whatever
//                     the trainer adds (its configuration, the data cursor, ...)
//
// A Checkpoint is plain data; capture() fills one from the live objects without copying (its
// tensors are views of the model's and optimizers' state), restore() copies one back with the
// strict key and shape checks of load_state_dict. Saving is atomic (tensor/formats/io.h).
#pragma once
#include <map>
#include <string>

#include "nn/module.h"
#include "nn/optim.h"
#include "tensor/rng.h"

namespace dl::nn {

struct Checkpoint {
    int64_t step = 0;
    StateDict model;           // state_dict keys
    StateDict ema;             // the same keys (written with the "ema." prefix); empty: no EMA
    StateDict adam_m, adam_v;  // the same keys; empty: no optimizer state
    std::vector<StateDict> averages;  // each with the same keys (written as "avg.<i>."); what they are, the trainer's metadata say
    int64_t adam_t = 0;
    std::map<std::string, Philox> rngs;          // by name, e.g. "data", "dropout"
    std::map<std::string, std::string> metadata;  // "model", the training config, ...
    std::string source = "<memory>";              // the file it was loaded from, for messages

    // metadata[key]; throws dl::Error naming the file and the key when it is missing.
    const std::string& meta(const std::string& key) const;
    // The EMA weights when asked and present, else the trained ones (throws if EMA is asked
    // for and absent).
    const StateDict& weights(bool ema) const;
};

// A checkpoint of the model and, when given, the optimizer and the EMA (views, not copies);
// metadata "model" is the model's config_string() (UNetConfig::str() for the U-Net).
Checkpoint capture(const Module& model, const Adam* adam, const Ema* ema, int64_t step);
// Copies the checkpoint's state into the model and, when given, the optimizer and the EMA;
// throws dl::Error naming the key when a key is missing, unexpected, or of another shape.
void restore(const Checkpoint& ck, Module& model, Adam* adam, Ema* ema);

void save_checkpoint(const std::string& path, const Checkpoint& ck);
// Reads and checks: the data checksum when the file has one, every weight, EMA and Adam moment
// finite, Adam's v not negative, step and adam.t counts in range; errors name the file and tensor.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace dl::nn
