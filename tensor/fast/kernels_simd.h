// The float32 kernels of kernels.cpp (GroupNorm, SiLU, softmax), written once in V16 (simd.h)
// and included into one namespace per instruction set. No include guard. Each function does one
// task (a group of one image, a row, a chunk); kernels.cpp spreads the tasks over threads.
//
// Sums: float vectors over blocks of at most 4096 values, the block totals added in double, so a
// group of 12544 values (16 channels of 28x28) keeps about float precision.

inline int64_t kmin(int64_t a, int64_t b) { return a < b ? a : b; }

// sum of x[0:n] and of (x - c)^2
inline void sums(const float* x, int64_t n, float c, double* s, double* ss) {
    double ts = 0, tss = 0;
    const V16 vc = vset(c);
    for (int64_t b0 = 0; b0 < n; b0 += 4096) {
        const int64_t b1 = kmin(n, b0 + 4096);
        V16 a0 = vzero(), a1 = vzero(), q0 = vzero(), q1 = vzero();
        int64_t k = b0;
        for (; k + 32 <= b1; k += 32) {
            V16 x0 = vload(x + k), x1 = vload(x + k + 16);
            a0 = vadd(a0, x0), a1 = vadd(a1, x1);
            x0 = vsub(x0, vc), x1 = vsub(x1, vc);
            q0 = vfma(x0, x0, q0), q1 = vfma(x1, x1, q1);
        }
        for (; k < b1; k += 16) {
            const int m = int(kmin(16, b1 - k));
            a0 = vadd(a0, vload_n(x + k, m));
            const V16 x0 = vsub(vload_n_or(x + k, m, c), vc);  // lanes past m: c - c = 0
            q0 = vfma(x0, x0, q0);
        }
        ts += vsum(vadd(a0, a1)), tss += vsum(vadd(q0, q1));
    }
    *s = ts, *ss = tss;
}

// y = silu(v) = v / (1 + exp(-v)) and its derivative s (1 + v (1 - s)), s = sigmoid(v)
inline V16 vsigmoid(V16 v) { return vrcp(vadd(vset(1.f), vexp(vsub(vzero(), v)))); }
inline V16 vsilu(V16 v) { return vmul(v, vsigmoid(v)); }
inline V16 vsilu_grad_s(V16 v, V16 s) { return vmul(s, vfma(v, vsub(vset(1.f), s), vset(1.f))); }  // s = sigmoid(v) given
inline V16 vsilu_grad(V16 v) { return vsilu_grad_s(v, vsigmoid(v)); }

// One group of one image: x, y (cg, HW) contiguous. y = gamma xhat + beta, or silu of it.
void gn_forward_group(const float* x, const float* gamma, const float* beta, int64_t cg, int64_t HW, double eps,
                      float* y, float* mean, float* rstd, bool silu) {
    const int64_t n = cg * HW;
    double s, ss;
    sums(x, n, 0.f, &s, &ss);
    const double mu = s / double(n);
    // second pass (from L2): squares about c = float(mu), so no cancellation; the small correction
    // (mean - c)^2 accounts for c being mu rounded to float
    const float c = float(mu);
    sums(x, n, c, &s, &ss);
    const double d = s / double(n) - double(c), var = ss / double(n) - d * d;
    const double r = 1.0 / std::sqrt((var > 0 ? var : 0) + eps);
    *mean = float(mu), *rstd = float(r);
    for (int64_t c = 0; c < cg; c++) {
        const float scale = float(r) * gamma[c], shift = beta[c] - float(mu) * scale;
        const V16 vs = vset(scale), vb = vset(shift);
        const float* xc = x + c * HW;
        float* yc = y + c * HW;
        for (int64_t k = 0; k < HW; k += 16) {
            const int m = int(kmin(16, HW - k));
            const V16 z = vfma(vload_n(xc + k, m), vs, vb);
            vstore_n(yc + k, silu ? vsilu(z) : z, m);
        }
    }
}

// silu(gamma xhat + beta)'s backward to the GroupNorm output: dz = dy * silu'(z), one group, with
// silu'(z) = s (1 + z (1 - s)). The sigmoid s comes from the forward's output y = z s as y / z, a
// reciprocal where recomputing it took an exp (z is recomputed with the forward's own scale and
// shift, so it is the z that y was made from). Near z = 0 that quotient is 0/0 in the limit (and
// y may be flushed to zero), so for |z| < 2^-10, s = 1/2 + z/4, the sigmoid's series to within
// |z|^3/48 < 2e-11.
void gn_silu_grad_group(const float* x, const float* gamma, const float* beta, float mean, float rstd, const float* dy,
                        const float* y, int64_t cg, int64_t HW, float* dz) {
    const V16 half = vset(0.5f), quarter = vset(0.25f), small = vset(1.f / 1024);
    for (int64_t c = 0; c < cg; c++) {
        const float scale = rstd * gamma[c], shift = beta[c] - mean * scale;
        const V16 vs = vset(scale), vb = vset(shift);
        for (int64_t k = c * HW; k < (c + 1) * HW; k += 16) {
            const int m = int(kmin(16, (c + 1) * HW - k));
            const V16 z = vfma(vload_n(x + k, m), vs, vb);
            const V16 s = vwhere_lt(vmax(z, vsub(vzero(), z)), small, vfma(z, quarter, half), vmul(vload_n(y + k, m), vrcp(z)));
            vstore_n(dz + k, vmul(vload_n(dy + k, m), vsilu_grad_s(z, s)), m);
        }
    }
}

// One group of one image, backward: dy is the gradient of the GroupNorm output. Writes dx += ...,
// and per channel
//   s1[c] = sum dy,  s2[c] = sum dy * xhat     (for dbeta and dgamma)
void gn_backward_group(const float* x, const float* gamma, float mean, float rstd, const float* dy, int64_t cg,
                       int64_t HW, float* dx, float* s1, float* s2, bool accumulate) {
    const V16 vmu = vset(mean), vr = vset(rstd);
    double g1 = 0, g2 = 0;  // sum dxhat, sum dxhat * xhat over the group
    for (int64_t c = 0; c < cg; c++) {
        const float* xc = x + c * HW;
        const float* dyc = dy + c * HW;
        double t1 = 0, t2 = 0;
        for (int64_t b0 = 0; b0 < HW; b0 += 4096) {
            V16 a1 = vzero(), a2 = vzero();
            for (int64_t k = b0; k < kmin(HW, b0 + 4096); k += 16) {
                const int m = int(kmin(16, HW - k));
                const V16 xv = vload_n(xc + k, m), d = vload_n(dyc + k, m);
                a1 = vadd(a1, d);
                a2 = vfma(d, vmul(vsub(xv, vmu), vr), a2);  // lanes past m: d is zero
            }
            t1 += vsum(a1), t2 += vsum(a2);
        }
        s1[c] = float(t1), s2[c] = float(t2);
        g1 += t1 * gamma[c], g2 += t2 * gamma[c];
    }
    const double N = double(cg * HW);
    const float m1 = float(g1 / N), m2 = float(g2 / N);
    for (int64_t c = 0; c < cg; c++) {
        const float* xc = x + c * HW;
        const float* dyc = dy + c * HW;
        float* dxc = dx + c * HW;
        // dx = rstd (gamma dy - m1 - xhat m2) = a dy + b x + k
        const float ga = rstd * gamma[c], bx = -rstd * rstd * m2, k0 = rstd * (-m1 + mean * rstd * m2);
        const V16 va = vset(ga), vbx = vset(bx), vk = vset(k0);
        for (int64_t k = 0; k < HW; k += 16) {
            const int m = int(kmin(16, HW - k));
            V16 v = vfma(vload_n(dyc + k, m), va, vfma(vload_n(xc + k, m), vbx, vk));
            vstore_n(dxc + k, accumulate ? vadd(vload_n(dxc + k, m), v) : v, m);
        }
    }
}

void silu_forward_chunk(const float* x, float* y, int64_t n) {
    for (int64_t k = 0; k < n; k += 16) {
        const int m = int(kmin(16, n - k));
        vstore_n(y + k, vsilu(vload_n(x + k, m)), m);
    }
}

void silu_backward_chunk(const float* x, const float* dy, float* dx, int64_t n, bool accumulate) {
    for (int64_t k = 0; k < n; k += 16) {
        const int m = int(kmin(16, n - k));
        V16 g = vmul(vload_n(dy + k, m), vsilu_grad(vload_n(x + k, m)));
        vstore_n(dx + k, accumulate ? vadd(vload_n(dx + k, m), g) : g, m);
    }
}

void softmax_forward_row(const float* x, float* y, int64_t n) {
    V16 mx = vset(-3.4e38f);
    for (int64_t k = 0; k < n; k += 16) {
        const int m = int(kmin(16, n - k));
        mx = vmax(mx, vload_n_or(x + k, m, -3.4e38f));
    }
    const float m0 = vhmax(mx);
    V16 s = vzero();
    for (int64_t k = 0; k < n; k += 16) {
        const int m = int(kmin(16, n - k));
        const V16 e = vkeep_n(vexp(vsub(vload_n(x + k, m), vset(m0))), m);
        vstore_n(y + k, e, m);
        s = vadd(s, e);
    }
    const V16 inv = vset(1.f / vsum(s));
    for (int64_t k = 0; k < n; k += 16) {
        const int m = int(kmin(16, n - k));
        vstore_n(y + k, vmul(vload_n(y + k, m), inv), m);
    }
}

void softmax_backward_row(const float* y, const float* dy, float* dx, int64_t n) {
    V16 d = vzero();
    for (int64_t k = 0; k < n; k += 16) {
        const int m = int(kmin(16, n - k));
        d = vfma(vload_n(y + k, m), vload_n(dy + k, m), d);
    }
    const V16 dot = vset(vsum(d));
    for (int64_t k = 0; k < n; k += 16) {
        const int m = int(kmin(16, n - k));
        V16 g = vmul(vload_n(y + k, m), vsub(vload_n(dy + k, m), dot));
        vstore_n(dx + k, vadd(vload_n(dx + k, m), g), m);
    }
}

// Nearest 2x upsampling of one plane: each input row, its values doubled, written to two output rows.
void upsample_forward_plane(const float* x, float* y, int64_t H, int64_t W) {
    for (int64_t i = 0; i < H; i++) {
        const float* xr = x + i * W;
        float* y0 = y + 2 * i * 2 * W;
        float* y1 = y0 + 2 * W;
        for (int64_t j = 0; j < W; j += 16) {
            const int m = int(kmin(16, W - j));  // input values; 2m outputs
            V16 lo, hi;
            vdup2(vload_n(xr + j, m), lo, hi);
            const int n0 = 2 * m < 16 ? 2 * m : 16, n1 = 2 * m - n0;
            vstore_n(y0 + 2 * j, lo, n0), vstore_n(y1 + 2 * j, lo, n0);
            if (n1 > 0) vstore_n(y0 + 2 * j + 16, hi, n1), vstore_n(y1 + 2 * j + 16, hi, n1);
        }
    }
}

// Backward: dx[i][j] += the 2x2 block of dy it was copied to (sum of two rows, then of pairs).
void upsample_backward_plane(const float* dy, float* dx, int64_t H, int64_t W) {
    for (int64_t i = 0; i < H; i++) {
        const float* r0 = dy + 2 * i * 2 * W;
        const float* r1 = r0 + 2 * W;
        float* d = dx + i * W;
        for (int64_t j = 0; j < W; j += 16) {
            const int m = int(kmin(16, W - j));
            const int n0 = 2 * m < 16 ? 2 * m : 16, n1 = 2 * m - n0;
            const V16 a = vadd(vload_n(r0 + 2 * j, n0), vload_n(r1 + 2 * j, n0));
            const V16 b = vadd(vload_n(r0 + 2 * j + 16, n1), vload_n(r1 + 2 * j + 16, n1));
            vstore_n(d + j, vadd(vload_n(d + j, m), vpairsum(a, b)), m);
        }
    }
}
