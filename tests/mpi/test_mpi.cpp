// Data-parallel training over MPI (ddpm/mpi/), as a user runs it: build-mpi/train under mpirun
// beside build-mpi/train alone, on a tiny synthetic IDX set, every rank on one OpenMP thread.
// Built and run by `make test-mpi` only (build-mpi/run_mpi_tests), which says "skipped" where
// Open MPI is not installed. About 30 s on a 2-core machine.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ddpm/data.h"
#include "nn/checkpoint.h"
#include "tensor/formats/io.h"
#include "tensor/ops.h"
#include "tests/programs.h"

using namespace dl;
using namespace dl::test;

namespace {

// Open MPI refuses to run as root unless told that it is meant (containers, CI); everything else
// it is given as flags: 2 ranks on a 2-core machine that may also run other jobs (--oversubscribe).
std::string mpirun(int n) {
    if (getuid() == 0) setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1), setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    return "mpirun --oversubscribe -np " + std::to_string(n) + " ";
}

// A tiny run: U-Net ch 8 (71,033 parameters), batch 8, no dropout, one thread per process.
std::string tiny(const std::string& dir) {
    return build_dir() + "/train --data " + dir + "/data --ch 8 --batch 8 --samples 4 --ddim-steps 2 --threads 1 --seed 5 --dropout 0";
}

// Column `col` of loss.csv (step,loss,grad_norm,lr,seconds), by step: 1 the loss, 2 the gradient's
// norm before clipping.
std::vector<double> logged(const std::string& run, int col = 1) {
    std::istringstream in(read_file(run + "/loss.csv"));
    std::string line;
    std::getline(in, line);  // header
    std::vector<double> out;
    while (std::getline(in, line)) {
        size_t at = 0;
        for (int i = 0; i < col; i++) at = line.find(',', at) + 1;
        out.push_back(std::stod(line.substr(at)));
    }
    return out;
}
// The largest relative difference of two logged columns.
double worst_relative(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (size_t i = 0; i < a.size(); i++) worst = std::max(worst, std::abs(a[i] - b[i]) / std::abs(a[i]));
    return worst;
}

// How far two checkpoints' tensors (weights, EMA or Adam's first moment) lie apart: the largest
// difference of one value, and the share of values that differ by more than `small`.
struct Difference {
    double max = 0, share_over = 0;
};
Difference difference(const nn::StateDict& a, const nn::StateDict& b, double small) {
    REQUIRE(a.size() == b.size());
    Difference d;
    int64_t n = 0, over = 0;
    for (size_t i = 0; i < a.size(); i++) {
        Tensor x = a[i].value.to(DType::F64), y = b[i].value.to(DType::F64);
        REQUIRE(x.shape() == y.shape());
        const double *p = x.data<double>(), *q = y.data<double>();
        for (int64_t k = 0; k < x.numel(); k++, n++) {
            const double e = std::abs(p[k] - q[k]);
            d.max = std::max(d.max, e);
            over += e > small;
        }
    }
    d.share_over = double(over) / double(std::max<int64_t>(n, 1));
    return d;
}

// What must be equal exactly whatever N wrote the checkpoint: the step, the data cursor, the
// random streams (the ranks draw the global batch as one process does).
void check_same_position(const nn::Checkpoint& a, const nn::Checkpoint& b) {
    CHECK(a.step == b.step);
    CHECK(a.adam_t == b.adam_t);
    CHECK(a.meta("data_cursor") == b.meta("data_cursor"));
    for (const char* s : {"data", "noise", "dropout"}) {
        CHECK(a.rngs.at(s).seed == b.rngs.at(s).seed);
        CHECK(a.rngs.at(s).offset == b.rngs.at(s).offset);
    }
}

// Tolerances. The ranks sum their shares' gradients in another order than one process's kernels
// sum the batch, so the gradient differs by float rounding: Adam's first moment (a running mean of
// the gradient) agrees to 1.7e-8 here, held to 1e-6. Adam then divides each coordinate's step by
// its own RMS, so where a gradient is near zero a rounding difference can flip the step's sign:
// in the first steps m_hat / sqrt(v_hat) = g / |g| = +-1 whatever |g| is. Such a coordinate moves
// by up to 2 lr per step; the warmup's lr is 2e-5 k at step k, so after 6 steps no parameter may be
// further than 2 * 2e-5 * (1 + ... + 6) = 8.4e-4 from the one-process run's (measured: 8.2e-5),
// and few may differ at all: measured 0.44% by more than 1e-6, held to 2%. The loss agrees to the
// 6 digits loss.csv keeps (held to 1e-5 relative), and so does the gradient's norm.
constexpr double kLossTol = 1e-5, kMomentTol = 1e-6, kParamBound = 8.4e-4, kParamShare = 0.02;

}  // namespace

TEST_CASE("mpi: 2 ranks of one thread train the same run as one process with the same global batch") {
    std::string dir = temp_dir("mpi_same"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    const std::string flags = " --steps 6 --every 3";
    REQUIRE(run(tiny(dir) + flags + " --out " + dir + "/one", &out) == 0);
    INFO(out);
    REQUIRE(run(mpirun(2) + tiny(dir) + flags + " --out " + dir + "/two", &out) == 0);
    CHECK(out.find("data-parallel over 2 ranks, 4 images each per step") != std::string::npos);
    CHECK(out.find("done:") != std::string::npos);
    // rank 0 alone prints: one progress line's worth, one "done"
    CHECK(out.find("done:") == out.rfind("done:"));

    REQUIRE(logged(dir + "/one").size() == 6);
    const double worst_loss = worst_relative(logged(dir + "/one"), logged(dir + "/two"));
    // the global batch's gradient, before clipping: the mean of the shares' (a sum alone would be N times it)
    const double worst_norm = worst_relative(logged(dir + "/one", 2), logged(dir + "/two", 2));
    nn::Checkpoint a = nn::load_checkpoint(dir + "/one/checkpoint.safetensors");
    nn::Checkpoint b = nn::load_checkpoint(dir + "/two/checkpoint.safetensors");
    check_same_position(a, b);
    const Difference dp = difference(a.model, b.model, 1e-6), de = difference(a.ema, b.ema, 1e-6), dm = difference(a.adam_m, b.adam_m, 1e-7);
    MESSAGE("2 ranks vs 1 process after 6 steps: loss differs by ", worst_loss, ", gradient norm by ", worst_norm, " (relative); parameters by at most ", dp.max, ", ",
            100 * dp.share_over, "% of them by more than 1e-6; EMA ", de.max, ", ", 100 * de.share_over, "%; Adam's m ", dm.max, ", ",
            100 * dm.share_over, "% by more than 1e-7");
    CHECK(worst_loss <= kLossTol);
    CHECK(worst_norm <= kLossTol);
    CHECK(dm.max <= kMomentTol);
    CHECK(dp.max <= kParamBound);
    CHECK(dp.share_over <= kParamShare);
    CHECK(de.max <= kParamBound);
    CHECK(dp.max > 0);  // not the same bits: the ranks' sums run in another order (or the ranks took no part)
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("mpi: a 2-rank checkpoint resumes in 1 process and back, and the run ends where one process's does") {
    std::string dir = temp_dir("mpi_resume"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    // no decay, so that --steps only says where to stop: 2 steps on 2 ranks, to 4 in 1 process, to 6 on 2 ranks
    const std::string flags = tiny(dir) + " --lr-decay none --every 2";
    REQUIRE(run(flags + " --steps 6 --out " + dir + "/straight", &out) == 0);
    REQUIRE(run(mpirun(2) + flags + " --steps 2 --out " + dir + "/hop", &out) == 0);
    REQUIRE(run(flags + " --steps 4 --resume --out " + dir + "/hop", &out) == 0);
    INFO(out);
    CHECK(out.find("resumed") != std::string::npos);
    REQUIRE(run(mpirun(2) + flags + " --steps 6 --resume --out " + dir + "/hop", &out) == 0);
    CHECK(out.find("resumed") != std::string::npos);
    nn::Checkpoint a = nn::load_checkpoint(dir + "/straight/checkpoint.safetensors");
    nn::Checkpoint b = nn::load_checkpoint(dir + "/hop/checkpoint.safetensors");
    check_same_position(a, b);
    CHECK(a.step == 6);
    const Difference dp = difference(a.model, b.model, 1e-6);
    MESSAGE("2 ranks, 1 process, 2 ranks vs 1 process straight, after 6 steps: parameters differ by at most ", dp.max, ", ",
            100 * dp.share_over, "% of them by more than 1e-6");
    CHECK(difference(a.adam_m, b.adam_m, 1).max <= kMomentTol);
    CHECK(dp.max <= kParamBound);
    CHECK(dp.share_over <= kParamShare);
    CHECK(logged(dir + "/hop").size() == 6);  // the log continued across the hops
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("mpi: ranks that disagree on the flags or the batch refuse to start, saying how") {
    std::string dir = temp_dir("mpi_refuse"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    // MPMD: rank 0 and rank 1 get different --seed
    CHECK(run(mpirun(1) + tiny(dir) + " --steps 2 --out " + dir + "/x : -np 1 " + tiny(dir) + " --steps 2 --seed 6 --out " + dir + "/x", &out) != 0);
    INFO(out);
    CHECK(out.find("rank 1's command line differs from rank 0's") != std::string::npos);
    CHECK(!file_exists(dir + "/x/checkpoint.safetensors"));
    CHECK(run(mpirun(2) + tiny(dir) + " --steps 2 --batch 7 --out " + dir + "/y", &out) != 0);
    CHECK(out.find("--batch 7 does not split over the 2 ranks") != std::string::npos);
    // one rank resumes a checkpoint the other does not see: refused before any step
    REQUIRE(run(tiny(dir) + " --steps 2 --out " + dir + "/z", &out) == 0);
    const std::string before = read_file(dir + "/z/checkpoint.safetensors");
    CHECK(run(mpirun(1) + tiny(dir) + " --steps 4 --resume --out " + dir + "/z : -np 1 " + tiny(dir) + " --steps 4 --resume --out " + dir +
                  "/w",
              &out) != 0);
    CHECK(out.find("refuse to start") != std::string::npos);
    CHECK(read_file(dir + "/z/checkpoint.safetensors") == before);
    // a rank that fails alone names itself, and its MPI_Abort ends the rank waiting for it
    std::string lost = tiny(dir);
    lost.replace(lost.find(dir + "/data"), (dir + "/data").size(), dir + "/nowhere");
    CHECK(run("timeout 120 " + mpirun(1) + tiny(dir) + " --steps 2 --out " + dir + "/v : -np 1 " + lost + " --steps 2 --out " + dir + "/v", &out) == 1);
    CHECK(out.find("train (rank 1 of 2): " + dir + "/nowhere/train-images-idx3-ubyte: not found") != std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("mpi: a rank killed mid-run ends the job non-zero with a message, and the last checkpoint stays whole") {
    std::string dir = temp_dir("mpi_kill"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    const std::string log = dir + "/log.txt";
    const pid_t sh = spawn_shell("exec " + mpirun(2) + tiny(dir) + " --steps 100000 --every 2 --out " + dir + "/run > " + log + " 2>&1");
    const std::string ck = dir + "/run/checkpoint.safetensors";
    for (int i = 0; i < 600 && !file_exists(ck); i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    REQUIRE(file_exists(ck));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a few more checkpoints
    // the ranks are mpirun's children (sh exec'd into mpirun): kill the youngest, rank 1 or 0
    pid_t victim = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
        std::ifstream stat(e.path() / "stat");
        std::string pid, comm, state;
        long ppid = 0;
        if (stat >> pid >> comm >> state >> ppid && ppid == sh && comm == "(train)") victim = std::max<pid_t>(victim, pid_t(std::stol(pid)));
    }
    REQUIRE(victim > 0);
    kill(victim, SIGKILL);
    int status = 0;
    waitpid(sh, &status, 0);
    out = read_file(log);
    INFO(out);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) != 0);
    CHECK(out.find("signal 9") != std::string::npos);  // mpirun names the rank and the signal
    nn::Checkpoint c = nn::load_checkpoint(ck);  // whole: it loads, checksums and all
    CHECK(c.step % 2 == 0);
    CHECK(c.step >= 2);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("mpi: SIGUSR1 to mpirun stops every rank after the same step, and rank 0 saves there") {
    std::string dir = temp_dir("mpi_stop");
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    const std::string log = dir + "/log.txt", ck = dir + "/run/checkpoint.safetensors";
    const pid_t sh = spawn_shell("exec " + mpirun(2) + tiny(dir) + " --steps 100000 --every 1000 --out " + dir + "/run > " + log + " 2>&1");
    // some steps (the first checkpoint would come at step 1000)
    std::this_thread::sleep_for(std::chrono::seconds(3));
    REQUIRE(!file_exists(ck));
    kill(sh, SIGUSR1);  // mpirun forwards it to every rank
    int status = 0;
    waitpid(sh, &status, 0);
    const std::string out = read_file(log);
    INFO(out);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 130);  // rank 0's status: interrupted, saved
    REQUIRE(out.find("interrupted: saved") != std::string::npos);
    nn::Checkpoint c = nn::load_checkpoint(ck);
    CHECK(c.step > 0);
    CHECK(out.find(cat("at step ", c.step, ";")) != std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("mpi: --steps 0 is sized by rank 0's clock and every rank stops with it; --minutes stops them together") {
    std::string dir = temp_dir("mpi_sizing"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    // a rank that missed the agreement would wait for the other forever: timeout ends the test instead
    REQUIRE(run("timeout 120 " + mpirun(2) + tiny(dir) + " --steps 0 --minutes 0.1 --out " + dir + "/run", &out) == 0);
    INFO(out);
    const size_t so = out.find(", so ");
    REQUIRE(so != std::string::npos);  // rank 0 told the count it sized
    nn::Checkpoint ck = nn::load_checkpoint(dir + "/run/checkpoint.safetensors");
    const int64_t sized = std::stoll(ck.meta("steps"));
    CHECK(ck.step >= 12);  // past the probe
    CHECK(ck.step <= sized);
    CHECK(int64_t(logged(dir + "/run").size()) == ck.step);
    // a fixed count that --minutes cuts short: rank 0's time-out stops both ranks, and rank 0 saves
    REQUIRE(run("timeout 120 " + mpirun(2) + tiny(dir) + " --steps 100000 --every 100000 --minutes 0.05 --out " + dir + "/cut", &out) == 0);
    CHECK(out.find("stopped after 0.05 minutes at step ") != std::string::npos);
    nn::Checkpoint cut = nn::load_checkpoint(dir + "/cut/checkpoint.safetensors");
    CHECK(cut.step > 0);
    CHECK(out.find(cat("at step ", cut.step, " of 100000")) != std::string::npos);
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("mpi: with dropout the ranks draw their own masks, and the dropout stream ends where one process's does") {
    std::string dir = temp_dir("mpi_dropout"), out;
    ddpm::write_synthetic_idx(dir + "/data", 24, 3);
    const std::string flags = tiny(dir) + " --dropout 0.1 --steps 3 --every 3";  // the later --dropout is the one taken
    REQUIRE(run(flags + " --out " + dir + "/one", &out) == 0);
    INFO(out);
    REQUIRE(run(mpirun(2) + flags + " --out " + dir + "/two", &out) == 0);
    nn::Checkpoint a = nn::load_checkpoint(dir + "/one/checkpoint.safetensors");
    nn::Checkpoint b = nn::load_checkpoint(dir + "/two/checkpoint.safetensors");
    CHECK(a.meta("model").find("dropout=0.1") != std::string::npos);
    // each share draws b C H W values per layer, N shares N times that: the one-process amount when
    // every draw fills whole blocks of four (28 x 28 images do), so a resume finds the same stream
    check_same_position(a, b);
    CHECK(a.rngs.at("dropout").offset > 0);
    // other masks: the weights part more than the rounding of the dropout-free test does
    CHECK(difference(a.model, b.model, 1e-6).share_over > kParamShare);
    std::system(("rm -rf " + dir).c_str());
}
