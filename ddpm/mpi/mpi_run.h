// Data-parallel training over MPI (the `make MPI=1` build only; README.md beside this file):
// ddpm/parallel.h's hooks carried out with MPI collectives on MPI_COMM_WORLD. One object per
// process, made after the flags are read (so --help needs no MPI) and living until main returns.
//
// Per step: one MPI_Allreduce (sum) of the flat gradient (P floats; 1.1 MB for make train's
// U-Net), one of the loss (a double), and one of three integers that carry rank 0's step count
// and time-out and any rank's stop. At the start: an all-gather of each rank's hashes of its
// command line, checkpoint file and data, then broadcasts of rank 0's parameters, Adam moments
// and EMA. At each checkpoint: an all-gather of each rank's hash of its parameters.
// P parameters, N ranks.
#pragma once
#include <string>

#include "ddpm/parallel.h"

namespace dl::ddpm {

// Thrown alike on every rank when the ranks disagree (flags, checkpoint, data, parameters): each
// rank knows it, so the job ends cleanly, with rank 0's message alone.
struct RanksDisagree : Error {
    using Error::Error;
};

class MpiRun : public DataParallel {
public:
    // MPI_Init_thread (funneled: OpenMP threads compute, the main thread alone calls MPI). `argv`
    // (the program's whole command line) is hashed for start()'s comparison.
    MpiRun(int argc, char** argv);
    // MPI_Finalize, unless an exception is unwinding: a rank that failed alone must not wait in
    // MPI_Finalize for ranks that are waiting for it in a collective; mpi_exit() ends that job.
    ~MpiRun() override;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void start(Trainer& run) override;
    double average(Tensor& grads, double loss) override;
    Decisions agree(Decisions mine) override;
    void check_in_step(Trainer& run) override;

    // --batch must split into N equal shares; throws (every rank alike) naming the flag.
    void check_batch(int64_t batch) const;
    // For bench: average() without a Trainer, and a barrier that measures how long this rank
    // waits for the slowest one (so that the all-reduce's own time can be told from the wait).
    void average_gradients(Tensor& grads) { average(grads, 0); }
    void barrier();

private:
    int rank_ = 0, size_ = 1;
    uint64_t argv_hash_ = 0;
};

// main()'s catch under MPI: prints `what` (rank 0 alone for RanksDisagree, which every rank
// threw; otherwise every rank that failed, naming itself), then ends the job: MPI_Finalize for a
// disagreement, MPI_Abort (which ends every rank, so no rank waits forever for a dead one)
// otherwise. Returns the exit code where it returns at all (1). `program` names the program.
int mpi_exit(const std::exception& e, const char* program);

}  // namespace dl::ddpm
