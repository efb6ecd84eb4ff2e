// libFuzzer target: the programs themselves, end to end. The first byte picks a program of
// build-san/ (or $DL_FUZZ_PROGRAMS); the rest, split at NUL bytes, are words appended to flags
// that make a quick run on a tiny fixture (a ch-8 U-Net with T = 20 trained for two steps on 80
// synthetic digits, made once at start-up), so that a word reaches the program's flag parsing,
// its config checks, the files it reads and, when all of that passes, the work itself.
//
// Each run is a child process in its own empty folder, with a memory limit (ulimit -v, or under
// AddressSanitizer its allocator's limits: the child's counterpart of -malloc_limit_mb, so that an
// allocation no flag's range justifies fails there) and a time limit. A finding is a child that dies of a signal, a sanitizer report (exit 86), or
// an exit status other than 0 and 1. A child still running at the time limit is killed and not
// counted: in-range settings may ask for minutes of work (tests/test_cli.cpp checks the values
// that must be quick). Words that name an absolute path or climb out of the folder ("/", "..")
// are skipped: a program given --out / would write there.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "ddpm/data.h"
#include "tensor/formats/io.h"

namespace {

std::string g_bin, g_dir;  // the programs' folder; the fixture's folder
int g_case = 0;

constexpr long kMemoryBytes = 4L << 30;  // a program at the fixture's settings needs a few hundred MB
constexpr int kSeconds = 8;  // under libFuzzer's -timeout=10

struct Program { const char* name; std::string base; };
std::vector<Program> g_programs;

void setup() {
    const char* bin = std::getenv("DL_FUZZ_PROGRAMS");
    g_bin = std::filesystem::absolute(bin ? bin : "build-san").string();  // the children run in other folders
    char tmpl[] = "/tmp/dl_fuzz_programs_XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    g_dir = tmpl;
    const std::string data = g_dir + "/data", run = g_dir + "/run", ckpt = run + "/checkpoint.safetensors";
    dl::ddpm::write_synthetic_idx(data, 80, 1);
    const std::string tiny = " --ddim-steps 2 --batch 4 --threads 1";
    const std::string quiet = " > " + g_dir + "/setup.log 2>&1";
    if (std::system((g_bin + "/train --data " + data + " --out " + run + " --ch 8 --samples 4 --T 20 --steps 2 --every 2" + tiny + quiet).c_str()) ||
        std::system(("cd " + g_dir + " && " + g_bin + "/eval --data " + data + " --checkpoint " + ckpt + " --n 4 --bpd-n 0" + tiny + quiet).c_str())) {
        std::fprintf(stderr, "fuzz_programs: could not make the fixture with %s/train and eval (see %s/setup.log)\n", g_bin.c_str(), g_dir.c_str());
        std::abort();
    }
    g_programs = {
        {"train", "--data " + data + " --out out --ch 8 --samples 4 --T 20 --steps 2 --every 1 --minutes 0.05" + tiny},
        {"sample", "--checkpoint " + ckpt + " --n 4 --out s.npy --png s.png" + tiny},
        {"eval", "--data " + data + " --checkpoint " + ckpt + " --n 4 --bpd-n 0 --out ." + tiny},
        {"figures", "--data " + data + " --checkpoint " + ckpt + " --out fig --rows 1 --t 10 --ddim-steps 2 --threads 1"},
        {"inspect", "--data " + data + " --checkpoint " + ckpt + " --batch 2 --no-table --threads 1"},
        {"report", run},
        {"bench", "--kernels --batch 1 --reps 1 --threads 1"},
    };
}

// Runs argv in `cwd` under the limits; returns the wait status, or -1 when it ran out of time.
int run_child(const std::vector<std::string>& words, const std::string& cwd) {
    pid_t pid = fork();
    if (pid < 0) std::abort();
    if (pid == 0) {
        if (chdir(cwd.c_str()) != 0) _exit(125);
        // AddressSanitizer reserves terabytes of address space, so a sanitized child gets its
        // allocator's limits instead of RLIMIT_AS: one allocation past 4 GiB, or a resident set past
        // 8 GiB, is a report (exit 86).
        const bool sanitized = g_bin.find("san") != std::string::npos;
        if (!sanitized) {
            rlimit as{kMemoryBytes, kMemoryBytes};
            setrlimit(RLIMIT_AS, &as);
        }
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1), dup2(null, 2);
        setenv("ASAN_OPTIONS", "exitcode=86:detect_leaks=0:max_allocation_size_mb=4096:hard_rss_limit_mb=8192", 1);
        setenv("UBSAN_OPTIONS", "exitcode=86:halt_on_error=1", 1);
        setenv("OMP_NUM_THREADS", "1", 1);
        std::vector<char*> argv;
        for (const std::string& w : words) argv.push_back(const_cast<char*>(w.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kSeconds);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return status;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    setup();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const Program& p = g_programs[data[0] % g_programs.size()];
    std::vector<std::string> words{g_bin + "/" + p.name};
    for (size_t at = 0, end; at < p.base.size(); at = end + 1) {  // the base flags, split at spaces
        end = std::min(p.base.find(' ', at), p.base.size());
        if (end > at) words.push_back(p.base.substr(at, end - at));
    }
    const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    for (size_t at = 0; at <= bytes.size();) {
        size_t nul = std::min(bytes.find('\0', at), bytes.size());
        std::string w(bytes.substr(at, nul - at));
        if (w.find('/') != std::string::npos || w.find("..") != std::string::npos) return 0;  // stays in its folder
        words.push_back(w);
        at = nul + 1;
    }
    const std::string cwd = g_dir + "/case" + std::to_string(g_case++ % 4);
    std::system(("rm -rf " + cwd).c_str());
    dl::make_dirs(cwd);
    const int status = run_child(words, cwd);
    if (status == -1) return 0;  // ran out of time: not counted (see the top of this file)
    const bool finding = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) > 1);
    if (finding) {
        std::string cmd;
        for (const std::string& w : words) cmd += w + " ";
        std::fprintf(stderr, "fuzz_programs: %s in %s: %s\n",
                     WIFSIGNALED(status) ? ("signal " + std::to_string(WTERMSIG(status))).c_str()
                                         : ("exit " + std::to_string(WEXITSTATUS(status))).c_str(),
                     cwd.c_str(), cmd.c_str());
        std::abort();  // libFuzzer saves the input
    }
    return 0;
}
