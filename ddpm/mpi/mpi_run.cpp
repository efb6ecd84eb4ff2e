// ddpm/parallel.h's hooks over MPI (see mpi_run.h). Compiled only by `make MPI=1`.
#include "ddpm/mpi/mpi_run.h"

#define OMPI_SKIP_MPICXX 1   // the C API alone: no C++ bindings (deprecated, and they warn)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdio>
#include <exception>
#include <vector>

#include "ddpm/trainer.h"
#include "tensor/formats/io.h"

namespace dl::ddpm {
namespace {

// FNV-1a, 64 bits: a fingerprint to compare ranks' bytes, not a defence against tampering.
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
uint64_t fnv1a(const std::string& s, uint64_t h = 0xcbf29ce484222325ull) { return fnv1a(s.data(), s.size(), h); }

void check(int rc, const char* call) {  // MPI_ERRORS_ARE_FATAL aborts first; this is for a changed handler
    if (rc != MPI_SUCCESS) fail("MPI: ", call, " failed with error ", rc);
}

// Every rank's `mine` (k values), rank after rank.
std::vector<uint64_t> all_gather(const std::vector<uint64_t>& mine, int size) {
    std::vector<uint64_t> all(mine.size() * size_t(size));
    check(MPI_Allgather(mine.data(), int(mine.size()), MPI_UINT64_T, all.data(), int(mine.size()), MPI_UINT64_T, MPI_COMM_WORLD),
          "MPI_Allgather");
    return all;
}

void broadcast(Tensor& x) {  // rank 0's values into every rank's x (float32, contiguous)
    check(MPI_Bcast(x.data<float>(), int(x.numel()), MPI_FLOAT, 0, MPI_COMM_WORLD), "MPI_Bcast");
}

}  // namespace

MpiRun::MpiRun(int argc, char** argv) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        fail("MPI: this MPI library offers no MPI_THREAD_FUNNELED (OpenMP threads beside MPI calls from the main thread)");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    std::string line;  // the arguments, each ended by a NUL so that "a b" and "ab" differ
    for (int i = 1; i < argc; i++) line += std::string(argv[i]) + '\0';
    argv_hash_ = fnv1a(line);
}

MpiRun::~MpiRun() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && std::uncaught_exceptions() == 0) MPI_Finalize();
}

void MpiRun::barrier() { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

void MpiRun::check_batch(int64_t batch) const {
    if (batch % size_ != 0)
        throw RanksDisagree(cat("--batch ", batch, " does not split over the ", size_, " ranks (mpirun -np ", size_,
                                "): each rank takes --batch / N images, so --batch must be a multiple of N"));
}

// The ranks compare what must be the same before they train together: the command line, the
// checkpoint they resumed from (its bytes: all ranks must read the same run folder, a shared
// file system or a copy) and the data (its pixels). Then rank 0's parameters, moments and EMA go
// to every rank, so that nothing but the shares of the batch differs from here on.
void MpiRun::start(Trainer& run) {
    check_batch(run.state.config.batch);
    const std::string ck = run.folder.checkpoint();
    const uint64_t ck_hash = run.folder.has_checkpoint() ? fnv1a(read_file(ck)) : 0;
    const IdxImages& px = run.state.data.raw();
    const uint64_t data_hash = fnv1a(px.pixels.data(), px.pixels.size(), fnv1a(cat(px.n, "x", px.rows, "x", px.cols)));
    const std::vector<uint64_t> all = all_gather({argv_hash_, ck_hash, data_hash}, size_);
    std::string why;
    for (int r = 1; r < size_; r++) {
        const uint64_t* h = &all[size_t(3 * r)];
        if (h[0] != all[0]) why += cat("; rank ", r, "'s command line differs from rank 0's (every rank must get the same flags)");
        if (h[1] != all[1])
            why += cat("; rank ", r, h[1] == 0 ? cat(" sees no ", ck, ", which rank 0 resumes from")
                                     : all[1] == 0 ? cat(" sees a ", ck, " where rank 0 sees none")
                                                   : cat("'s ", ck, " differs from rank 0's"),
                       " (every rank must read the same --out: a shared folder or a copy)");
        if (h[2] != all[2])
            why += cat("; rank ", r, "'s images in ", run.state.config.data_dir, " differ from rank 0's (every rank must read the same --data)");
    }
    if (!why.empty()) throw RanksDisagree(cat("train: the ", size_, " ranks refuse to start", why));
    broadcast(run.state.model.flat_parameters());
    broadcast(run.state.adam.m);
    broadcast(run.state.adam.v);
    broadcast(run.state.ema.shadow);
}

// dL/dtheta of the global batch = (1/N) sum_r g_r (ddpm/parallel.h): the sum in place, then the
// scale. The loss likewise, in double.
double MpiRun::average(Tensor& grads, double loss) {
    float* g = grads.data<float>();
    const int64_t P = grads.numel();
    check(MPI_Allreduce(MPI_IN_PLACE, g, int(P), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce (gradient)");
    const float inv = 1.0f / float(size_);
    for (int64_t i = 0; i < P; i++) g[i] *= inv;
    double sum = 0;
    check(MPI_Allreduce(&loss, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce (loss)");
    return sum / size_;
}

// Rank 0's steps and time-out, any rank's stop: a sum where the other ranks add 0 to rank 0's
// values, so one all-reduce of integers carries all three exactly.
DataParallel::Decisions MpiRun::agree(Decisions mine) {
    const int64_t in[3] = {rank_ == 0 ? mine.steps : 0, rank_ == 0 && mine.timed_out, mine.stop ? 1 : 0};
    int64_t out[3] = {0, 0, 0};
    check(MPI_Allreduce(in, out, 3, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce (decisions)");
    return {out[0], out[1] != 0, out[2] != 0};
}

// The ranks apply the same update to the same parameters, so they stay equal bit for bit as long
// as the all-reduce hands every rank the same sum (MPI advises it; Open MPI's algorithms do).
// Checked at each checkpoint: a drift would make rank 0's checkpoint speak for ranks it no
// longer matches.
void MpiRun::check_in_step(Trainer& run) {
    Tensor& p = run.state.model.flat_parameters();
    const uint64_t h = fnv1a(p.data<float>(), size_t(p.numel()) * sizeof(float), uint64_t(run.state.step) + 0xcbf29ce484222325ull);
    const std::vector<uint64_t> all = all_gather({h}, size_);
    for (int r = 1; r < size_; r++)
        if (all[size_t(r)] != all[0])
            throw RanksDisagree(cat("train: at step ", run.state.step, " rank ", r, "'s parameters differ from rank 0's; the ranks no longer train "
                                    "the same model (the all-reduce did not give every rank the same sum). The last checkpoint is kept"));
}

int mpi_exit(const std::exception& e, const char* program) {
    int init = 0, finalized = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&finalized);
    const bool running = init && !finalized;
    int rank = 0, size = 1;
    if (running) MPI_Comm_rank(MPI_COMM_WORLD, &rank), MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (dynamic_cast<const RanksDisagree*>(&e)) {  // every rank threw it: rank 0 says it, all end together
        if (rank == 0) std::fprintf(stderr, "\n%s\n", e.what());
        if (running) MPI_Finalize();
        return 1;
    }
    if (size > 1) std::fprintf(stderr, "\n%s (rank %d of %d): %s\n", program, rank, size, e.what());
    else std::fprintf(stderr, "\n%s\n", e.what());
    std::fflush(stderr);
    if (running && size > 1) MPI_Abort(MPI_COMM_WORLD, 1);  // the other ranks would wait for this one forever
    if (running) MPI_Finalize();
    return 1;
}

}  // namespace dl::ddpm
