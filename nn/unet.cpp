#include "nn/unet.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include "autograd/ops.h"
#include "tensor/parse.h"

namespace dl::nn {

// ---- the configuration --------------------------------------------------------------------
static std::string list_str(const std::vector<int64_t>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); i++) s += cat(i ? "," : "", v[i]);
    return s;
}

std::string UNetConfig::str() const {
    char drop[32];
    *std::to_chars(drop, drop + sizeof drop - 1, dropout).ptr = 0;  // shortest text that reads back exactly
    return cat("in_ch=", in_ch, " ch=", ch, " ch_mult=", list_str(ch_mult), " num_res_blocks=", num_res_blocks,
               " attn_res=", list_str(attn_res), " groups=", groups, " dropout=", drop, " resolution=", resolution,
               num_classes > 0 ? cat(" num_classes=", num_classes) : std::string());
}

UNetConfig UNetConfig::reference() {
    UNetConfig c;
    c.ch = 32;
    c.num_res_blocks = 2;
    c.dropout = 0.1;
    return c;
}

void UNetConfig::validate() const {
    const int64_t L = int64_t(ch_mult.size());
    if (in_ch < 1 || in_ch > 16) fail("UNetConfig: in_ch must be in [1, 16], got ", in_ch);
    if (!kCh.contains(ch) || ch % 2) fail("UNetConfig: ch (--ch) must be even and in [", kCh.lo, ", ", kCh.hi, "], got ", ch);
    if (L < 1 || L > 5) fail("UNetConfig: ch_mult must have 1 to 5 levels, got ", L, " (", list_str(ch_mult), ")");
    for (int64_t m : ch_mult)
        if (m < 1 || m > 64 || ch * m > 1024)
            fail("UNetConfig: each ch_mult must be in [1, 64] and ch (--ch) times it at most 1024 channels, got ch ", ch, " and ch_mult ",
                 list_str(ch_mult));
    if (!kResBlocks.contains(num_res_blocks))
        fail("UNetConfig: num_res_blocks (--res-blocks) must be in [", kResBlocks.lo, ", ", kResBlocks.hi, "], got ", num_res_blocks);
    if (!kDropout.contains(dropout)) fail("UNetConfig: dropout (--dropout) must be in [", kDropout.lo, ", ", kDropout.hi, "], got ", dropout);
    if (resolution < 1 || resolution > 1024) fail("UNetConfig: resolution must be in [1, 1024], got ", resolution);
    if (resolution % (int64_t(1) << (L - 1)))
        fail("UNetConfig: resolution ", resolution, " does not halve ", L - 1, " times evenly (ch_mult ", list_str(ch_mult), ")");
    if (!kClasses.contains(num_classes))
        fail("UNetConfig: num_classes (--classes) must be in [", kClasses.lo, ", ", kClasses.hi, "] (0: unconditional), got ", num_classes);
}

UNetConfig UNetConfig::parse(const std::string& s) {
    UNetConfig c = reference();
    std::istringstream in(s);
    std::string item;
    auto bad = [&](const std::string& key, const std::string& text) {
        fail("UNetConfig::parse: ", key, "=", text, ": expected a number, in \"", s, "\"");
    };
    auto integer = [&](const std::string& key, const std::string& text, int64_t& out) {
        if (!read_integer(text, out)) bad(key, text);
    };
    auto list = [&](const std::string& key, const std::string& text) {
        std::vector<int64_t> v;
        std::istringstream parts(text);
        std::string part;
        while (std::getline(parts, part, ',')) integer(key, part, v.emplace_back());
        return v;
    };
    while (in >> item) {
        size_t eq = item.find('=');
        if (eq == std::string::npos) fail("UNetConfig::parse: expected key=value, found \"", item, "\" in \"", s, "\"");
        std::string key = item.substr(0, eq), val = item.substr(eq + 1);
        if (key == "in_ch") integer(key, val, c.in_ch);
        else if (key == "ch") integer(key, val, c.ch);
        else if (key == "ch_mult") c.ch_mult = list(key, val);
        else if (key == "num_res_blocks") integer(key, val, c.num_res_blocks);
        else if (key == "attn_res") c.attn_res = list(key, val);
        else if (key == "groups") integer(key, val, c.groups);
        else if (key == "dropout") {
            auto [end, ec] = std::from_chars(val.data(), val.data() + val.size(), c.dropout);
            if (ec != std::errc() || end != val.data() + val.size()) bad(key, val);
        } else if (key == "resolution") integer(key, val, c.resolution);
        else if (key == "num_classes") integer(key, val, c.num_classes);
        else fail("UNetConfig::parse: unknown key \"", key, "\" in \"", s, "\"");
    }
    return c;
}

// ---- timestep embedding -------------------------------------------------------------------
Tensor timestep_embedding(const std::vector<int64_t>& t, int64_t dim) {
    if (dim < 4 || dim % 2) fail("timestep_embedding: dim must be even and at least 4, got ", dim);
    int64_t B = int64_t(t.size()), half = dim / 2;
    // float32 throughout, as torch: arange(half, float32) * (-log(10000) / (half - 1)), then exp
    float scale = float(-std::log(10000.0) / double(half - 1));
    std::vector<float> freqs(static_cast<size_t>(half));  // (half)
    for (int64_t i = 0; i < half; i++) freqs[size_t(i)] = std::exp(float(i) * scale);
    Tensor emb({B, dim});  // (B, dim) = [sin | cos]
    float* e = emb.data<float>();
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < half; i++) {
            float arg = float(t[size_t(b)]) * freqs[size_t(i)];
            e[b * dim + i] = std::sin(arg);
            e[b * dim + half + i] = std::cos(arg);
        }
    return emb;
}

// ---- blocks -------------------------------------------------------------------------------
ResBlock::ResBlock(int64_t cin, int64_t cout, int64_t tdim, int64_t groups, double p, Philox& gen)
    : norm1(groups, cin), conv1(cin, cout, 3, 1, 1, gen), temb_proj(tdim, cout, gen), norm2(groups, cout), dropout(p),
      conv2(cout, cout, 3, 1, 1, gen) {
    register_module("norm1", norm1);
    register_module("conv1", conv1);
    register_module("temb_proj", temb_proj);
    register_module("norm2", norm2);
    register_module("dropout", dropout);
    register_module("conv2", conv2);
    if (cin != cout) {
        skip = std::make_unique<Conv2d>(cin, cout, 1, 1, 0, gen);
        register_module("skip", *skip);
    }
}

Variable ResBlock::forward(const Variable& x, const Variable& temb, Philox* dropout_gen) const {
    auto scope = name_scope();
    Variable h = conv1.forward(norm1.forward_silu(x));  // (B, cout, H, W)
    Variable tp = temb_proj.forward(silu(temb));        // (B, cout)
    h = h + reshape(tp, {tp.shape()[0], tp.shape()[1], 1, 1});  // the same shift at every position
    h = conv2.forward(dropout.forward(norm2.forward_silu(h), dropout_gen));
    return (skip ? skip->forward(x) : x) + h;
}

Attention::Attention(int64_t c, int64_t groups, Philox& gen) : norm(groups, c), qkv(c, 3 * c, 1, 1, 0, gen), proj(c, c, 1, 1, 0, gen) {
    register_module("norm", norm);
    register_module("qkv", qkv);
    register_module("proj", proj);
}

Variable Attention::forward(const Variable& x) const {
    auto scope = name_scope();
    const Shape& s = x.shape();
    if (s.size() != 4) fail("Attention ", name(), ": expected x (B, C, H, W), got ", shape_str(s));
    int64_t B = s[0], C = s[1], H = s[2], W = s[3], HW = H * W;
    Variable heads = reshape(qkv.forward(norm.forward(x)), {B, 3, C, HW});  // (B, 3, C, HW)
    Variable q = named(reshape(slice(heads, 1, 0, 1), {B, C, HW}), "q");   // (B, C, HW) each
    Variable k = named(reshape(slice(heads, 1, 1, 2), {B, C, HW}), "k");
    Variable v = named(reshape(slice(heads, 1, 2, 3), {B, C, HW}), "v");
    // w[b,i,j] = sum_c q[b,c,i] k[b,c,j] / sqrt(C): q stored (C, HW) is used transposed.
    // (The reference divides by sqrt(C); multiplying by its reciprocal differs only in rounding.)
    Variable w = softmax(bmm(q, k, true, false) * (1.0 / std::sqrt(double(C))));  // (B, HW, HW)
    // out[b,c,i] = sum_j v[b,c,j] w[b,i,j] = (v w^T)[c,i]
    Variable a = reshape(bmm(v, w, false, true), {B, C, H, W});  // (B, C, H, W)
    return x + proj.forward(a);
}

Level::Level() {
    register_module("res", res);
    register_module("attn", attn);
}

void Level::set_resample(std::unique_ptr<Conv2d> conv, bool down) {
    std::unique_ptr<Conv2d>& slot = down ? downsample : upsample;
    slot = std::move(conv);
    register_module(down ? "downsample" : "upsample", *slot);
}

UNet::TimeEmbed::TimeEmbed(int64_t ch, int64_t tdim, Philox& gen) : fc1(ch, tdim, gen), fc2(tdim, tdim, gen) {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
}

UNet::Mid::Mid(int64_t c, int64_t tdim, int64_t groups, double dropout, Philox& gen)
    : res1(c, c, tdim, groups, dropout, gen), attn(c, groups, gen), res2(c, c, tdim, groups, dropout, gen) {
    register_module("res1", res1);
    register_module("attn", attn);
    register_module("res2", res2);
}

// ---- the U-Net ----------------------------------------------------------------------------
UNet::UNet(const UNetConfig& cfg, uint64_t seed) : config_(cfg) {
    cfg.validate();
    const int64_t L = int64_t(cfg.ch_mult.size());
    Philox gen(seed);
    const int64_t ch = cfg.ch, tdim = 4 * ch;
    auto attention_at = [&](int64_t r) { return std::find(cfg.attn_res.begin(), cfg.attn_res.end(), r) != cfg.attn_res.end(); };
    auto res_block = [&](int64_t cin, int64_t cout) { return std::make_unique<ResBlock>(cin, cout, tdim, cfg.groups, cfg.dropout, gen); };

    temb_ = std::make_unique<TimeEmbed>(ch, tdim, gen);
    register_module("temb", *temb_);
    if (cfg.num_classes > 0) {
        label_emb_ = std::make_unique<Embedding>(cfg.num_classes + 1, tdim, gen);
        register_module("label_emb", *label_emb_);
    }
    conv_in_ = std::make_unique<Conv2d>(cfg.in_ch, ch, 3, 1, 1, gen);
    register_module("conv_in", *conv_in_);

    // The channel count of every kept activation, for the skip connections of the up path.
    std::vector<int64_t> skips{ch};
    int64_t c = ch, r = cfg.resolution;
    register_module("down", down_);
    for (int64_t i = 0; i < L; i++) {
        Level& lv = down_.append(std::make_unique<Level>());
        for (int64_t j = 0; j < cfg.num_res_blocks; j++) {
            lv.res.append(res_block(c, ch * cfg.ch_mult[size_t(i)]));
            c = ch * cfg.ch_mult[size_t(i)];
            if (attention_at(r)) lv.attn.append(std::make_unique<Attention>(c, cfg.groups, gen));
            skips.push_back(c);
        }
        if (i != L - 1) {
            lv.set_resample(std::make_unique<Conv2d>(c, c, 3, 2, 1, gen), /*down=*/true);
            skips.push_back(c);
            r /= 2;
        }
    }
    mid_ = std::make_unique<Mid>(c, tdim, cfg.groups, cfg.dropout, gen);
    register_module("mid", *mid_);

    // Built from the last level back to 0 (the order they run), listed by level index.
    std::vector<std::unique_ptr<Level>> up(static_cast<size_t>(L));
    for (int64_t i = L - 1; i >= 0; i--) {
        up[size_t(i)] = std::make_unique<Level>();
        Level& lv = *up[size_t(i)];
        for (int64_t j = 0; j < cfg.num_res_blocks + 1; j++) {
            lv.res.append(res_block(c + skips.back(), ch * cfg.ch_mult[size_t(i)]));
            skips.pop_back();
            c = ch * cfg.ch_mult[size_t(i)];
            if (attention_at(r)) lv.attn.append(std::make_unique<Attention>(c, cfg.groups, gen));
        }
        if (i != 0) {
            lv.set_resample(std::make_unique<Conv2d>(c, c, 3, 1, 1, gen), /*down=*/false);
            r *= 2;
        }
    }
    register_module("up", up_);
    for (auto& lv : up) up_.append(std::move(lv));
    norm_out_ = std::make_unique<GroupNorm>(cfg.groups, c);
    register_module("norm_out", *norm_out_);
    conv_out_ = std::make_unique<Conv2d>(c, cfg.in_ch, 3, 1, 1, gen);
    register_module("conv_out", *conv_out_);
    pack_parameters();
}

Variable UNet::forward(const Variable& x, const std::vector<int64_t>& t, Philox* dropout_gen, const std::vector<int64_t>* labels) const {
    const Shape& s = x.shape();
    int64_t L = int64_t(config_.ch_mult.size()), f = int64_t(1) << (L - 1);
    if (s.size() != 4 || s[1] != config_.in_ch || s[2] % f || s[3] % f)
        fail("UNet::forward: expected x (B, ", config_.in_ch, ", H, W) with H and W multiples of ", f, ", got ", shape_str(s));
    if (int64_t(t.size()) != s[0]) fail("UNet::forward: ", t.size(), " timesteps for a batch of ", s[0]);
    if (label_emb_ && (!labels || int64_t(labels->size()) != s[0]))
        fail("UNet::forward: a class-conditional model (num_classes=", config_.num_classes, ") needs one label per image, got ",
             labels ? cat(labels->size(), " for a batch of ", s[0]) : std::string("none"));
    if (!label_emb_ && labels) fail("UNet::forward: labels given to an unconditional model (num_classes=0)");
    NodeRecorder recorded;  // this forward's nodes, in creation order, for make_names_unique

    Tensor e = timestep_embedding(t, config_.ch);  // (B, ch), float32 as in the reference
    Variable emb(x.dtype() == DType::F32 ? e : e.to(x.dtype()), false, "temb.sinusoidal");
    Variable temb;  // (B, tdim)
    {
        auto scope = temb_->name_scope();
        temb = temb_->fc2.forward(silu(temb_->fc1.forward(emb)));
    }
    if (label_emb_) temb = temb + label_emb_->forward(*labels);  // (B, tdim)

    std::vector<Variable> hs{conv_in_->forward(x)};  // the kept activations, (B, c, r, r) each
    Variable h = hs.back();
    {
        auto s_down = down_.name_scope();
        for (size_t i = 0; i < down_.size(); i++) {
            const Level& lv = down_[i];
            auto s_level = lv.name_scope();
            for (size_t j = 0; j < lv.res.size(); j++) {
                {
                    auto s_res = lv.res.name_scope();
                    h = lv.res[j].forward(h, temb, dropout_gen);
                }
                if (!lv.attn.empty()) {
                    auto s_attn = lv.attn.name_scope();
                    h = lv.attn[j].forward(h);
                }
                hs.push_back(h);
            }
            if (lv.downsample) {
                h = lv.downsample->forward(h);
                hs.push_back(h);
            }
        }
    }
    {
        auto s_mid = mid_->name_scope();
        h = mid_->res2.forward(mid_->attn.forward(mid_->res1.forward(h, temb, dropout_gen)), temb, dropout_gen);
    }
    {
        auto s_up = up_.name_scope();
        for (size_t i = up_.size(); i-- > 0;) {
            const Level& lv = up_[i];
            auto s_level = lv.name_scope();
            for (size_t j = 0; j < lv.res.size(); j++) {
                {
                    auto s_res = lv.res.name_scope();
                    Variable in = named(concat({h, hs.back()}, 1), cat(j, ".concat"));  // (B, c + c_skip, r, r)
                    hs.pop_back();
                    h = lv.res[j].forward(in, temb, dropout_gen);
                }
                if (!lv.attn.empty()) {
                    auto s_attn = lv.attn.name_scope();
                    h = lv.attn[j].forward(h);
                }
            }
            if (lv.upsample) h = lv.upsample->forward(upsample_nearest2d(h));  // (B, c, 2r, 2r)
        }
    }
    Variable out = conv_out_->forward(norm_out_->forward_silu(h));  // (B, in_ch, H, W)
    std::vector<Variable> nodes = recorded.nodes();  // renaming makes no Variable, but read a copy all the same
    make_names_unique(nodes);
    return out;
}

}  // namespace dl::nn
