#include "nn/optim.h"

#include <algorithm>
#include <cmath>

#include "tensor/ops.h"

namespace dl::nn {

static void check_flat(const Tensor& a, const Tensor& b, const char* op, const char* what_a, const char* what_b) {
    if (a.ndim() != 1 || a.shape() != b.shape() || a.dtype() != b.dtype())
        fail(op, ": expected ", what_a, " and ", what_b, " as flat tensors of one shape and dtype, got ", dtype_name(a.dtype()), " ",
             shape_str(a.shape()), " and ", dtype_name(b.dtype()), " ", shape_str(b.shape()));
}

// ---- Adam ---------------------------------------------------------------------------------
Adam::Adam(int64_t n, DType dtype, AdamConfig cfg) : config(cfg), m(Tensor::zeros({n}, dtype)), v(Tensor::zeros({n}, dtype)) {}

void Adam::step(Tensor& params, const Tensor& grads, double lr) {
    check_flat(params, grads, "Adam::step", "params", "grads");
    check_flat(params, m, "Adam::step", "params", "the moments");
    t++;
    // The scalars in double, as torch: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps.
    const double bc1 = 1 - std::pow(config.beta1, double(t)), bc2 = 1 - std::pow(config.beta2, double(t));
    const double step_size = lr / bc1, sqrt_bc2 = std::sqrt(bc2);
    const double b1 = config.beta1, b2 = config.beta2, eps = config.eps, wd = config.weight_decay;
    const double l2 = config.decoupled ? 0 : wd;              // Adam: g += wd * p
    const double shrink = config.decoupled ? 1 - lr * wd : 1;  // AdamW: p *= 1 - lr * wd
    const int64_t n = params.numel();
    dispatch(params.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T *p = params.data<T>(), *mm = m.data<T>(), *vv = v.data<T>();
        const T* g = grads.data<T>();
        const T cb1 = T(b1), cb2 = T(b2), c1b1 = T(1 - b1), c1b2 = T(1 - b2), cl2 = T(l2), cshrink = T(shrink);
        const T cstep = T(step_size), csqrt_bc2 = T(sqrt_bc2), ceps = T(eps);
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) {
            T gi = g[i] + cl2 * p[i];
            mm[i] = cb1 * mm[i] + c1b1 * gi;
            vv[i] = cb2 * vv[i] + c1b2 * gi * gi;
            p[i] = cshrink * p[i] - cstep * (mm[i] / (std::sqrt(vv[i]) / csqrt_bc2 + ceps));
        }
    });
}

// ---- clipping ------------------------------------------------------------------------
double clip_grad_norm(Tensor& grads, double max_norm) {
    if (grads.ndim() != 1) fail("clip_grad_norm: expected flat gradients, got ", shape_str(grads.shape()));
    const int64_t n = grads.numel();
    double norm = dispatch(grads.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* g = grads.data<T>();
        double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) s += double(g[i]) * double(g[i]);
        return std::sqrt(s);
    });
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1) {
        Tensor g = grads;  // a handle: scale in place
        dispatch(g.dtype(), [&](auto tag) {
            using T = decltype(tag);
            T* d = g.data<T>();
            const T c = T(coef);
#pragma omp parallel for simd schedule(static) if (n > 32768)
            for (int64_t i = 0; i < n; i++) d[i] *= c;
        });
    }
    return norm;
}

// ---- the learning-rate schedule -----------------------------------------------------------
LrDecay parse_lr_decay(const std::string& name) {
    if (name == "cosine") return LrDecay::Cosine;
    if (name == "none") return LrDecay::None;
    fail("learning-rate decay: expected 'cosine' or 'none', got '", name, "'");
}

const char* lr_decay_name(LrDecay decay) { return decay == LrDecay::Cosine ? "cosine" : "none"; }

double LrSchedule::at(int64_t step, int64_t total) const {
    double lr = warmup <= 0 ? base : base * std::min(1.0, double(step) / double(warmup));
    if (decay == LrDecay::Cosine && step > warmup)
        lr *= 0.5 * (1 + std::cos(M_PI * double(step - warmup) / double(std::max<int64_t>(1, total - warmup))));
    return lr;
}

// ---- EMA ----------------------------------------------------------------------------------
Ema::Ema(const Tensor& params, double decay_) : decay(decay_), shadow(params.clone()) {
    if (decay < 0 || decay > 1) fail("Ema: decay must be in [0, 1], got ", decay);
    if (params.ndim() != 1) fail("Ema: expected flat parameters, got ", shape_str(params.shape()));
}

void Ema::update(const Tensor& params) {
    check_flat(shadow, params, "Ema::update", "the shadow", "params");
    const int64_t n = params.numel();
    dispatch(params.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T* s = shadow.data<T>();
        const T* p = params.data<T>();
        const T d = T(decay), c = T(1 - decay);
#pragma omp parallel for simd schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) s[i] = d * s[i] + c * p[i];
    });
    updates++;
}

double power_ema_decay(int64_t t, double gamma) {
    if (t < 1 || !(gamma > 0)) fail("power_ema_decay: need update t >= 1 and gamma > 0, got ", t, ", ", gamma);
    return std::pow(1 - 1 / double(t), gamma + 1);
}

}  // namespace dl::nn
