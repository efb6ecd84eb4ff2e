#include "nn/checkpoint.h"

#include "tensor/ops.h"
#include "tensor/parse.h"
#include "tensor/formats/png.h"
#include "tensor/formats/safetensors.h"

namespace dl::nn {

static const char* kFormat =
    "dl checkpoint 1: <key> model parameters (ref_unet state_dict keys), ema.<key>, adam.m.<key>, adam.v.<key>, "
    "adam.t, step, rng.<name> = [seed, offset]";

Checkpoint capture(const Module& model, const Adam* adam, const Ema* ema, int64_t step) {
    Checkpoint ck;
    ck.step = step;
    ck.model = model.state_dict();
    if (!model.config_string().empty()) ck.metadata["model"] = model.config_string();
    if (ema) ck.ema = model.views(ema->shadow);
    if (adam) {
        ck.adam_m = model.views(adam->m);
        ck.adam_v = model.views(adam->v);
        ck.adam_t = adam->t;
    }
    return ck;
}

void restore(const Checkpoint& ck, Module& model, Adam* adam, Ema* ema) {
    model.load_state_dict(ck.model);
    if (ema) {
        if (ck.ema.empty()) fail("restore: the checkpoint has no EMA parameters (ema.<key>)");
        load_named(model.views(ema->shadow), ck.ema, "restore: ema");
    }
    if (adam) {
        if (ck.adam_m.empty() || ck.adam_v.empty()) fail("restore: the checkpoint has no Adam state (adam.m.<key>, adam.v.<key>)");
        load_named(model.views(adam->m), ck.adam_m, "restore: adam.m");
        load_named(model.views(adam->v), ck.adam_v, "restore: adam.v");
        adam->t = ck.adam_t;
    }
}

// CRC-32 of every entry's bytes, in the order the header lists them: safetensors has no checksum
// of its own, and a flipped bit in a weight would otherwise be trained on.
static uint32_t data_crc32(const Safetensors& st) {
    uint32_t crc = 0;
    for (const SafetensorsEntry& e : st.entries()) crc = crc32(reinterpret_cast<const uint8_t*>(e.data.data()), e.data.size(), crc);
    return crc;
}

static bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

void save_checkpoint(const std::string& path, const Checkpoint& ck) {
    Safetensors st;
    st.metadata = ck.metadata;
    st.metadata["format"] = kFormat;
    st.add_i64("step", {ck.step}, {});
    for (const auto& e : ck.model) {
        if (starts_with(e.name, "ema.") || starts_with(e.name, "adam.") || starts_with(e.name, "rng.") || starts_with(e.name, "avg.") ||
            e.name == "step")
            fail("save_checkpoint: model key \"", e.name, "\" collides with the checkpoint's own keys");
        st.add(e.name, e.value);
    }
    for (const auto& e : ck.ema) st.add("ema." + e.name, e.value);
    for (const auto& e : ck.adam_m) st.add("adam.m." + e.name, e.value);
    for (const auto& e : ck.adam_v) st.add("adam.v." + e.name, e.value);
    for (size_t i = 0; i < ck.averages.size(); i++)
        for (const auto& e : ck.averages[i]) st.add(cat("avg.", i, ".", e.name), e.value);
    if (!ck.adam_m.empty()) st.add_i64("adam.t", {ck.adam_t}, {});
    for (const auto& [name, gen] : ck.rngs) st.add_i64("rng." + name, {int64_t(gen.seed), int64_t(gen.offset)});
    st.metadata["data_crc32"] = std::to_string(data_crc32(st));
    st.save(path);
}

const std::string& Checkpoint::meta(const std::string& key) const {
    auto it = metadata.find(key);
    if (it == metadata.end()) fail(source, ": metadata has no '", key, "' (not a checkpoint written by build/train?)");
    return it->second;
}

const StateDict& Checkpoint::weights(bool use_ema) const {
    if (use_ema && ema.empty()) fail(source, ": no EMA weights in the checkpoint");
    return use_ema ? ema : model;
}

Checkpoint load_checkpoint(const std::string& path) {
    Safetensors st = Safetensors::load(path);
    if (auto it = st.metadata.find("data_crc32"); it != st.metadata.end()) {  // optional: a file without it loads unchecked
        std::string computed = std::to_string(data_crc32(st));
        if (it->second != computed)
            fail(path, ": the tensor data do not match their checksum (metadata 'data_crc32' is ", it->second, ", the data give ", computed,
                 "): the file is damaged");
    }
    Checkpoint ck;
    ck.source = path;
    ck.metadata = st.metadata;
    auto scalar = [&](const std::string& name) {
        std::vector<int64_t> v = st.i64(name);
        if (v.size() != 1) fail(path, ": \"", name, "\" has ", v.size(), " values, expected 1");
        return v[0];
    };
    for (const SafetensorsEntry& e : st.entries()) {
        const std::string& n = e.name;
        if (n == "step") ck.step = scalar(n);
        else if (n == "adam.t") ck.adam_t = scalar(n);
        else if (starts_with(n, "rng.")) {
            std::vector<int64_t> v = st.i64(n);
            if (v.size() != 2) fail(path, ": \"", n, "\" has ", v.size(), " values, expected 2 (seed, offset)");
            ck.rngs[n.substr(4)] = Philox(uint64_t(v[0]), uint64_t(v[1]));
        } else if (starts_with(n, "ema.")) ck.ema.push_back({n.substr(4), st.tensor(n)});
        else if (starts_with(n, "adam.m.")) ck.adam_m.push_back({n.substr(7), st.tensor(n)});
        else if (starts_with(n, "adam.v.")) ck.adam_v.push_back({n.substr(7), st.tensor(n)});
        else if (starts_with(n, "avg.")) {  // avg.<i>.<key>, i counting from 0 in the order written
            const size_t dot = n.find('.', 4);
            size_t i = 0;
            if (dot == std::string::npos || !read_integer<size_t>(std::string_view(n).substr(4, dot - 4), i, 0, ck.averages.size()))
                fail(path, ": tensor \"", n, "\": expected avg.<i>.<key> with i at most ", ck.averages.size());
            if (i == ck.averages.size()) ck.averages.emplace_back();
            ck.averages[i].push_back({n.substr(dot + 1), st.tensor(n)});
        }
        else ck.model.push_back({n, st.tensor(n)});
    }
    if (!st.contains("step")) fail(path, ": not a checkpoint: no \"step\" entry");
    // What training would use must be finite and in range; each failure names the tensor.
    for (const auto& [prefix, sd] : {std::pair<std::string, const StateDict*>{"", &ck.model}, {"ema.", &ck.ema}, {"adam.m.", &ck.adam_m},
                                     {"adam.v.", &ck.adam_v}})
        for (const NamedTensor& e : *sd) {
            int64_t bad = 0;
            if (!all_finite(e.value, &bad)) fail(path, ": tensor \"", prefix, e.name, "\" has a non-finite value at element ", bad, " (", e.value.flat(bad), ")");
            if (prefix == "adam.v.")
                for (int64_t i = 0; i < e.value.numel(); i++)
                    if (e.value.flat(i) < 0) fail(path, ": tensor \"adam.v.", e.name, "\" has a negative second moment at element ", i, " (", e.value.flat(i), ")");
        }
    for (size_t i = 0; i < ck.averages.size(); i++)
        for (const NamedTensor& e : ck.averages[i]) {
            int64_t bad = 0;
            if (!all_finite(e.value, &bad)) fail(path, ": tensor \"avg.", i, ".", e.name, "\" has a non-finite value at element ", bad);
        }
    if (ck.step < 0) fail(path, ": \"step\" is ", ck.step, ", expected a count of updates (>= 0)");
    if (!ck.adam_m.empty() && (ck.adam_t < 0 || (ck.step > 0 && ck.adam_t == 0)))
        fail(path, ": \"adam.t\" is ", ck.adam_t, ", expected a positive count of updates for a checkpoint at step ", ck.step);
    return ck;
}

}  // namespace dl::nn
