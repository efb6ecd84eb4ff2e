// The whole command-line and file surface, table-driven, as a user who types the wrong thing or
// feeds a damaged file would meet it:
//   - every numeric flag of every program in apps/, read from the program's own declarations
//     (`--help-flags`), at -1, 0, 2^31, 2^32 + 8, 2^63 - 1 and a 20-digit number (reals also at
//     1e39 and 1e308);
//   - every file a program reads, truncated at several points and with bytes appended.
// Each run has a memory limit (ulimit -v, except under AddressSanitizer, which reserves terabytes
// of address space) and a time limit. It must exit 0, or exit 1 with a message naming the flag
// (or the file); a crash, a hang or running out of memory is a failure.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "ddpm/data.h"
#include "tests/programs.h"

using namespace dl;
using namespace dl::test;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
// A run's limits: 4 GiB of address space (the programs at these settings need a few hundred MB),
// and seconds enough for the slowest valid setting below under the sanitizers on a busy machine.
constexpr long kMemoryKiB = 4L << 20;
const int kSeconds = kSanitized ? 240 : 60;

struct Outcome {
    int rc;
    std::string output;
};

// `cmd` in folder `cwd` under the limits; its output is kept in cwd/log (runs may go in parallel).
Outcome run_limited(const std::string& cwd, const std::string& cmd) {
    make_dirs(cwd);
    std::string limits = kSanitized ? "" : "ulimit -v " + std::to_string(kMemoryKiB) + " && ";
    int rc = std::system(("cd " + cwd + " && " + limits + "timeout -s KILL " + std::to_string(kSeconds) + " " + cmd + " > log 2>&1").c_str());
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, read_file(cwd + "/log")};
}

// Runs every command on two threads (the machine's cores), each in its own folder under `dir`.
std::vector<Outcome> run_all(const std::string& dir, const std::vector<std::string>& cmds) {
    std::vector<Outcome> out(cmds.size());
    std::atomic<size_t> next{0};
    auto worker = [&] {
        for (size_t i; (i = next++) < cmds.size();) out[i] = run_limited(dir + "/case" + std::to_string(i), cmds[i]);
    };
    std::thread a(worker), b(worker);
    a.join(), b.join();
    return out;
}

// A tiny trained run that the programs read: 80 synthetic 28x28 digits with labels, a ch-8 U-Net
// with T = 20 (so that even the ancestral sampler is quick), two steps.
struct Fixture {
    std::string dir, data, run, ckpt;
    Fixture() : dir(temp_dir("cli")), data(dir + "/data"), run(dir + "/run"), ckpt(dir + "/run/checkpoint.safetensors") {
        ddpm::write_synthetic_idx(data, 80, 1);  // 64 train, 16 test: a judge trains on one batch of 64
        std::string out;
        REQUIRE_MESSAGE(test::run(build_dir() + "/train --data " + data + " --out " + run +
                                      " --ch 8 --batch 4 --samples 4 --ddim-steps 2 --T 20 --steps 2 --every 2 --threads 1", &out) == 0, out);
        // the judges, trained once and cached beside the data, so that the runs below only load them
        REQUIRE_MESSAGE(test::run("cd " + dir + " && " + build_dir() + "/eval --data " + data + " --checkpoint " + ckpt +
                                      " --n 4 --ddim-steps 2 --bpd-n 0 --threads 2", &out) == 0, out);
    }
    ~Fixture() { std::filesystem::remove_all(dir); }
};

// Each program's flags for a quick run on the fixture: a hostile value of one flag is appended to
// these (the later value wins), so that a valid one ends in seconds. Every program in apps/ has a
// line: a new program fails this test until it is given one.
std::map<std::string, std::string> base_args(const Fixture& f) {
    const std::string tiny = " --ddim-steps 2 --batch 4 --threads 1";
    return {
        {"train", "--data " + f.data + " --out out --ch 8 --samples 4 --T 20 --steps 2 --every 1 --minutes 0.05" + tiny},
        {"sample", "--checkpoint " + f.ckpt + " --n 4 --out s.npy --png s.png" + tiny},
        {"eval", "--data " + f.data + " --checkpoint " + f.ckpt + " --n 4 --bpd-n 0 --out ." + tiny},
        {"figures", "--data " + f.data + " --checkpoint " + f.ckpt + " --out fig --rows 1 --t 10 --ddim-steps 2 --threads 1"},
        {"inspect", "--data " + f.data + " --checkpoint " + f.ckpt + " --batch 2 --no-table --threads 1"},
        {"bench", "--kernels --batch 1 --reps 1 --threads 1"},
        {"report", f.run},
        {"grad_norm_example", ""},
        {"mnist_json_to_idx", ""},
    };
}

std::vector<std::string> programs() {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator("apps"))  // the tests run from the repository root
        if (e.path().extension() == ".cpp") names.push_back(e.path().stem().string());
    std::sort(names.begin(), names.end());
    return names;
}

// A failure's verdict: "" when the run is one of the two allowed outcomes.
std::string verdict(const Outcome& o, const std::string& must_name) {
    if (o.rc == 0) return "";
    if (o.rc == 1 && o.output.find(must_name) != std::string::npos) return "";
    if (o.rc == 1) return "exit 1 without naming " + must_name;
    return o.rc == 137 || o.rc == -1 ? "killed (time limit) or crashed" : "exit " + std::to_string(o.rc);
}

}  // namespace

TEST_CASE("every numeric flag of every program at -1, 0, 2^31, 2^32 + 8, 2^63 - 1 and 20 digits: exit 0, or 1 naming the flag") {
    Fixture f;
    const std::map<std::string, std::string> base = base_args(f);
    const std::vector<std::string> ints = {"-1", "0", "2147483648", "4294967304", "9223372036854775807", "12345678901234567890"};
    std::vector<std::string> reals = ints;
    reals.insert(reals.end(), {"1e39", "1e308"});
    struct Case { std::string program, flag, value; };
    std::vector<Case> cases;
    std::vector<std::string> cmds;
    int declared = 0;
    for (const std::string& p : programs()) {
        INFO(p);
        REQUIRE_MESSAGE(base.count(p), "apps/", p, ".cpp has no line in base_args(): give it flags for a quick run");
        std::string listing;
        REQUIRE(test::run(build_dir() + "/" + p + " --help-flags", &listing) == 0);
        std::istringstream lines(listing);
        for (std::string name, kind, lo, hi; lines >> name >> kind >> lo >> hi;) {
            REQUIRE((kind == "integer" || kind == "real"));
            declared++;
            for (const std::string& v : kind == "integer" ? ints : reals) {
                cases.push_back({p, name, v});
                cmds.push_back(build_dir() + "/" + p + " " + base.at(p) + " " + name + " " + v);
            }
        }
    }
    CHECK(declared >= 40);  // train, sample, eval, figures, inspect, bench have as many between them
    const std::vector<Outcome> outcomes = run_all(f.dir + "/flags", cmds);
    int accepted = 0;
    for (size_t i = 0; i < cases.size(); i++) {
        const Case& c = cases[i];
        INFO(cmds[i], "\n", outcomes[i].output);
        CHECK(verdict(outcomes[i], c.flag) == "");
        accepted += outcomes[i].rc == 0;
    }
    // Seeds and counts that may be 0 are accepted: the table does run programs, not only refuse.
    CHECK(accepted >= 10);
    MESSAGE(cases.size(), " runs of ", declared, " numeric flags: ", accepted, " accepted, the rest refused naming the flag");
}

TEST_CASE("every file a program reads, truncated or with bytes appended: exit 0, or 1 naming the file") {
    Fixture f;
    const std::string bin = build_dir();
    // Each program with the files it reads (a copy of the file is damaged, in its own folder).
    struct Reader { std::string what, cmd, file; };  // cmd with {} for the damaged file's folder
    const std::string data_files[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    std::vector<Reader> readers;
    for (const char* p : {"sample --n 2 --ddim-steps 2 --out s.npy --png ''", "inspect --batch 2 --no-table"})
        readers.push_back({p, bin + "/" + p + " --threads 1 --checkpoint {}/checkpoint.safetensors", "checkpoint.safetensors"});
    for (const std::string& d : {data_files[0], data_files[1]})  // train reads the training split alone
        readers.push_back({"train " + d, bin + "/train --data {} --out out --ch 8 --batch 4 --samples 4 --ddim-steps 2 --T 20 --steps 1 --threads 1", d});
    for (const std::string& d : data_files)
        readers.push_back({"eval " + d, bin + "/eval --data {} --checkpoint " + f.ckpt + " --n 4 --ddim-steps 2 --bpd-n 4 --out . --threads 1", d});
    // a resumed run reads its checkpoint and its logs; report reads the logs
    for (const char* log : {"checkpoint.safetensors", "loss.csv", "grad_norms.csv"})
        readers.push_back({cat("train --resume ", log), bin + "/train --data " + f.data + " --out {} --resume --ch 8 --batch 4 --samples 4 --ddim-steps 2 --T 20 --steps 3 --threads 1", log});
    for (const char* log : {"loss.csv", "grad_norms.csv"}) readers.push_back({cat("report ", log), bin + "/report {}", log});
    // eval --samples reads a .npy
    {
        std::string out;
        make_dirs(f.dir + "/npy");
        REQUIRE(test::run("cd " + f.dir + " && " + bin + "/sample --checkpoint " + f.ckpt + " --n 4 --ddim-steps 2 --out " + f.dir +
                              "/npy/s.npy --png '' --threads 1", &out) == 0);
        readers.push_back({"eval --samples", bin + "/eval --data " + f.data + " --samples {}/s.npy --n 4 --threads 1", "s.npy"});
    }
    std::vector<std::string> cmds, names;
    std::vector<Reader> of;
    std::vector<size_t> variant;  // which damage: the index into `damaged` below
    int k = 0;
    for (const Reader& r : readers) {
        const std::string source = r.file == "s.npy" ? f.dir + "/npy" : r.file.find("idx") != std::string::npos ? f.data : f.run;
        const std::string bytes = read_file(source + "/" + r.file);
        const size_t n = bytes.size();
        REQUIRE(n > 16);
        // cut at 0, 1, the middle and one byte short; then 1 and 1000 bytes appended
        const std::vector<std::string> damaged = {"", bytes.substr(0, 1), bytes.substr(0, n / 2), bytes.substr(0, n - 1), bytes + "\n",
                                                  bytes + std::string(1000, '\x7f')};
        for (size_t d = 0; d < damaged.size(); d++) {
            std::string folder = f.dir + "/files/" + std::to_string(k++);
            std::filesystem::create_directories(folder);
            std::filesystem::copy(source, folder, std::filesystem::copy_options::recursive);
            write_file_atomic(folder + "/" + r.file, damaged[d]);
            std::string cmd = r.cmd;
            cmd.replace(cmd.find("{}"), 2, folder);
            cmds.push_back(cmd);
            names.push_back(folder + "/" + r.file);
            of.push_back(r);
            variant.push_back(d);
        }
    }
    const std::vector<Outcome> outcomes = run_all(f.dir + "/runs", cmds);
    size_t refused = 0;
    for (size_t i = 0; i < cmds.size(); i++) {
        INFO(of[i].what, ": ", cmds[i], "\n", outcomes[i].output);
        CHECK(verdict(outcomes[i], names[i].substr(names[i].rfind('/') + 1)) == "");
        refused += outcomes[i].rc == 1;
        // Binary files refuse every cut and every appended byte. A CSV cut at its last byte (its
        // final newline) or with a newline appended reads the same rows: those two may run.
        const bool csv = names[i].size() > 4 && names[i].substr(names[i].size() - 4) == ".csv";
        if (outcomes[i].rc == 0) CHECK((csv && (variant[i] == 3 || variant[i] == 4)));
    }
    MESSAGE(cmds.size(), " runs over ", readers.size(), " (program, file) pairs: ", refused, " refused naming the file");
}
