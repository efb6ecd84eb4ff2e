// The SGEMM microkernel, written once in V16 (simd.h) and included by gemm.cpp into one
// namespace per instruction set, after that set's V16. No include guard, on purpose.
//
// c[0:m, 0:n] = alpha * sum_k a[k][0:MR] (x) b[k][0:NR] + beta * c[0:m, 0:n]   (beta == 0: c not read)
// a: (kc, MR) and b: (kc, NR = 16 NV), both packed k-major. The whole MR x NR tile is computed
// (packing zero-fills past the edges); only rows < m and columns < n are stored.
template <int MR, int NV>
void ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n, float alpha,
             float beta) {
    V16 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = vzero();
    for (int64_t k = 0; k < kc; k++) {
        V16 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) bv[v] = vload(b + 16 * v);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            const V16 ai = vset(a[i]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][v] = vfma(ai, bv[v], acc[i][v]);
        }
        a += MR;
        b += 16 * NV;
    }
    const V16 va = vset(alpha), vb = vset(beta);
    if (m == MR && n == 16 * NV) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                float* p = c + i * ldc + 16 * v;
                V16 r = vmul(acc[i][v], va);
                if (beta != 0.f) r = vfma(vload(p), vb, r);
                vstore(p, r);
            }
        return;
    }
    for (int i = 0; i < MR && i < m; i++)
        for (int v = 0; v < NV && 16 * v < n; v++) {
            const int nl = n - 16 * v < 16 ? n - 16 * v : 16;
            float* p = c + i * ldc + 16 * v;
            V16 r = vmul(acc[i][v], va);
            if (beta != 0.f) r = vfma(vload_n(p, nl), vb, r);
            vstore_n(p, r, nl);
        }
}
