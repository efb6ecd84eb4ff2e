// Data-parallel training's hooks into Trainer::run(): what N processes ("ranks") must do together
// so that they train the same run as one process with the same global batch. The interface has no
// MPI in it; ddpm/mpi/ implements it over MPI in the `make MPI=1` build, and a Trainer without one
// (the default build, and every program but build-mpi/train) is the one-process run, unchanged.
//
// The shape of a data-parallel step (N ranks, global batch B, share b = B / N, rank r):
//   every rank draws the whole global batch's x0, t, eps (and labels) from the same streams as
//   one process does, and keeps rows [r b, (r + 1) b): the data order, the cursor and the random
//   streams stay those of the one-process run, so where a checkpoint stands (step, cursor,
//   streams) does not depend on the N that wrote it, and a resume works with any N;
//   loss_r = mean over its share of ||eps - eps_theta||^2 and g_r = d loss_r / d theta;
//   the mean loss L = (1/N) sum_r loss_r over the shares, each b images, is the global batch's
//   mean, so dL/dtheta = (1/N) sum_r g_r: one all-reduce (sum) of the flat gradient, then / N;
//   every rank then clips, steps Adam and the EMA on the same gradient, and stays in lockstep.
// B batch, b = B / N each rank's share, P parameters.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/rng.h"
#include "tensor/tensor.h"

namespace dl::ddpm {

class Trainer;

class DataParallel {
public:
    virtual ~DataParallel() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    bool lead() const { return rank() == 0; }  // rank 0 alone writes files and prints

    // Before the first step: the ranks compare their flags and checkpoint (refusing to start,
    // naming the rank that differs), then take rank 0's parameters, Adam moments and EMA.
    virtual void start(Trainer& run) = 0;
    // grads (P) summed over the ranks and divided by N, in place; returns the mean of `loss`.
    virtual double average(Tensor& grads, double loss) = 0;
    // After a step, the decisions every rank must take alike. In: this rank's; out: the agreed
    // ones (steps, timed_out: rank 0's; stop: any rank's).
    struct Decisions {
        int64_t steps;
        bool timed_out, stop;
    };
    virtual Decisions agree(Decisions mine) = 0;
    // At each checkpoint: throws when the ranks' parameters have drifted apart (they must not).
    virtual void check_in_step(Trainer& run) = 0;
};

// Rank r's rows [r b, (r + 1) b) of a global batch's tensors (dim 0) and per-image values.
inline Tensor share_of(const Tensor& x, int rank, int size) {
    const int64_t b = x.dim(0) / size;
    return x.rows(rank * b, b).clone();
}
inline std::vector<int64_t> share_of(const std::vector<int64_t>& v, int rank, int size) {
    if (v.empty()) return v;
    const size_t b = v.size() / size_t(size);
    return {v.begin() + ptrdiff_t(b * size_t(rank)), v.begin() + ptrdiff_t(b * size_t(rank + 1))};
}

// Dropout masks. One process draws the whole batch's masks layer by layer from dropout_gen; a
// share's forward draws b images' worth per layer, so rank r's masks are not rank r's rows of
// the one-process masks (that would need the layer sizes inside the U-Net). Instead rank r
// draws from the same stream 2^48 r blocks ahead (no step draws nearly that many), so the ranks'
// masks are independent (rank 0 starts where one process starts), and afterwards the
// stream moves on N times what one share drew: the same amount a one-process step draws (up to
// rounding to a block of four per draw). With dropout 0 (make train's recipe) nothing is drawn
// and the run is the one-process run exactly; with dropout > 0 it is the same in distribution.
constexpr uint64_t kRankDropoutStride = uint64_t(1) << 48;
inline Philox share_dropout(const Philox& gen, int rank) { return Philox(gen.seed, gen.offset + kRankDropoutStride * uint64_t(rank)); }
inline void advance_dropout(Philox& gen, const Philox& share, int rank, int size) {
    const uint64_t drawn = share.offset - (gen.offset + kRankDropoutStride * uint64_t(rank));
    gen.offset += drawn * uint64_t(size);
}

}  // namespace dl::ddpm
