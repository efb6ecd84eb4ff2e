// What every program here shares: flag parsing with --help, and a progress line with ETA.
// Header-only, so each apps/<name>.cpp stays a single linear main().
#pragma once
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>
#ifdef _OPENMP
#include <omp.h>  // tests/fuzz builds these headers without OpenMP where clang has no libomp
#endif

#include "tensor/parse.h"
#include "tensor/cpu.h"
#include "tensor/tensor.h"

namespace dl::cli {

// Flags are declared in the order --help lists them, every number with its range (tensor/parse.h):
//   Args args(argc, argv, "train", "Trains the DDPM on MNIST.");
//   int64_t every = args.integer("--every", 500, {1, 1000000}, "write a checkpoint every N steps");
//   args.field("--ch", cfg.model.ch, UNetConfig::kCh, "U-Net base channels");  // a config's field: its value is the default
//   args.done();  // prints --help and exits, or throws on an unknown flag
// field() shows the field's value as the default and writes the flag's value into it, so that a
// config's defaults are the ones --help shows. A value that is not what the flag takes is a
// dl::Error naming the flag, the value and the range: integer() reads 64 bits and checks the range
// before anyone narrows the value, real() refuses nan, inf and values outside its range (a range
// within which the program's output stays finite). `--help-flags` prints every numeric flag with
// its range, one per line ("--n integer 1 100000"), for tests that try each one
// (tests/test_cli.cpp).
class Args {
public:
    Args(int argc, char** argv, std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {
        for (int i = 1; i < argc; i++) {
            std::string a = argv[i];
            if (a == "-h" || a == "--help") { help_ = true; continue; }
            if (a == "--help-flags") { help_flags_ = true; continue; }
            if (a.rfind("--", 0) != 0) {
                positional_.push_back(a);  // taken by positional(), else refused by done()
                continue;
            }
            size_t eq = a.find('=');
            if (eq != std::string::npos) values_[a.substr(0, eq)] = a.substr(eq + 1);
            else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) values_[a] = argv[++i];
            else {
                values_[a] = "";
                bare_.insert(a);  // given without a value (unlike --png '' or --png=)
            }
        }
    }

    std::string str(const std::string& name, const std::string& def, const std::string& help) {
        declare(name, "S", def, help);
        auto it = values_.find(name);
        return it == values_.end() ? def : take(it);
    }
    int64_t integer(const std::string& name, int64_t def, Range range, const std::string& help) {
        declare(name, "N", std::to_string(def), help, range_str(range.lo, range.hi));
        numeric_.push_back(cat(name, " integer ", range.lo, " ", range.hi));
        auto it = values_.find(name);
        if (it == values_.end()) return def;
        std::string v = take(it);
        int64_t n = 0;
        if (parse_integer(v, n) == IntegerParse::NotAnInteger) fail(program_, ": ", name, " expects an integer, got '", v, "'");
        if (parse_integer(v, n, range.lo, range.hi) != IntegerParse::Ok)
            fail(program_, ": ", name, " expects an integer in ", range_str(range.lo, range.hi), ", got '", v, "'");
        return n;
    }
    double real(const std::string& name, double def, RealRange range, const std::string& help) {
        declare(name, "X", fmt(def), help, range_str(range.lo, range.hi));
        numeric_.push_back(cat(name, " real ", fmt(range.lo), " ", fmt(range.hi)));
        auto it = values_.find(name);
        if (it == values_.end()) return def;
        std::string v = take(it);
        char* end = nullptr;
        errno = 0;
        double x = std::strtod(v.c_str(), &end);
        if (v.empty() || *end) fail(program_, ": ", name, " expects a number, got '", v, "'");
        // nan and inf parse, and so does 1e999 (as inf) or 1e-400 (as 0): none is a setting.
        if (!std::isfinite(x) || errno == ERANGE || !range.contains(x))
            fail(program_, ": ", name, " expects a number in ", range_str(range.lo, range.hi), ", got '", v, "'");
        return x;
    }
    bool flag(const std::string& name, const std::string& help) {
        declare(name, "", "", help);
        auto it = values_.find(name);
        if (it == values_.end()) return false;
        if (!bare_.count(name)) fail(program_, ": ", name, " takes no value, got '", it->second, "'");
        values_.erase(it);
        return true;
    }
    // A config's field as a flag: its value is the default, and the flag's value is written into it.
    void field(const std::string& name, std::string& f, const std::string& help) { f = str(name, f, help); }
    void field(const std::string& name, int64_t& f, Range range, const std::string& help) { f = integer(name, f, range, help); }
    // A seed: any 64-bit integer, -1 being 2^64 - 1.
    void field(const std::string& name, uint64_t& f, const std::string& help) { f = uint64_t(integer(name, int64_t(f), kAnyInteger, help)); }
    void field(const std::string& name, double& f, RealRange range, const std::string& help) { f = real(name, f, range, help); }
    void field(const std::string& name, bool& f, const std::string& help) { f = flag(name, help) || f; }
    // An enum field as a word: parse (which throws on a word it does not know) and its inverse, name_of.
    template <class E>
    void field(const std::string& name, E& f, E (*parse)(const std::string&), const char* (*name_of)(E), const std::string& help) {
        const std::string word = str(name, name_of(f), help);
        try {
            f = parse(word);
        } catch (const Error& e) {
            fail(program_, ": ", name, ": ", e.what());
        }
    }

    // The program's next argument that is not a flag ("build/report RUN_DIR"), or def when absent.
    std::string positional(const std::string& name, const std::string& def, const std::string& help) {
        positional_name_ += (positional_name_.empty() ? "" : " ") + name;  // "RUN_DIR", or "IN OUT" for two
        options_.push_back({name, "", def, help, ""});
        if (positional_.empty()) return def;
        std::string v = positional_.front();
        positional_.erase(positional_.begin());
        return v;
    }

    // After all declarations: --help prints the usage and exits 0; a leftover flag or argument is an error.
    void done() {
        if (help_flags_) {
            for (const std::string& line : numeric_) std::printf("%s\n", line.c_str());
            std::exit(0);
        }
        if (help_) {
            std::printf("%s: %s\n\nusage: %s%s%s [flags]\n\n", program_.c_str(), summary_.c_str(), program_.c_str(),
                        positional_name_.empty() ? "" : " ", positional_name_.c_str());
            for (const auto& o : options_) {
                std::string left = o.name + (o.meta.empty() ? "" : " " + o.meta);
                std::string tail = o.def.empty() ? "" : " (default " + o.def + (o.range.empty() ? "" : "; " + o.range) + ")";
                std::printf("  %-24s %s%s\n", left.c_str(), o.help.c_str(), tail.c_str());
            }
            std::printf("  %-24s %s\n", "-h, --help", "this text");
            std::printf("  %-24s %s\n", "--help-flags", "the numeric flags and their ranges, one per line");
            std::exit(0);
        }
        if (!values_.empty()) fail(program_, ": unknown flag ", values_.begin()->first, " (see --help)");
        if (!positional_.empty()) fail(program_, ": unexpected argument '", positional_.front(), "' (flags start with --; see --help)");
    }
    bool given(const std::string& name) const { return given_.count(name) > 0; }

private:
    struct Option { std::string name, meta, def, help, range; };
    void declare(const std::string& name, const char* meta, const std::string& def, const std::string& help, std::string range = "") {
        options_.push_back({name, meta, def, help, std::move(range)});
        if (values_.count(name)) given_[name] = true;
    }
    std::string take(std::map<std::string, std::string>::iterator it) {
        if (bare_.count(it->first)) fail(program_, ": ", it->first, " needs a value");
        std::string v = it->second;
        values_.erase(it);
        return v;
    }
    static std::string range_str(int64_t lo, int64_t hi) {
        auto end = [](int64_t v) {
            return v == std::numeric_limits<int64_t>::min()   ? std::string("-2^63")
                   : v == std::numeric_limits<int64_t>::max() ? std::string("2^63 - 1")
                                                              : std::to_string(v);
        };
        return cat("[", end(lo), ", ", end(hi), "]");
    }
    static std::string range_str(double lo, double hi) { return cat("[", fmt(lo), ", ", fmt(hi), "]"); }
    static std::string fmt(double x) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", x);
        return buf;
    }
    std::string program_, summary_;
    std::map<std::string, std::string> values_;
    std::map<std::string, bool> given_;
    std::set<std::string> bare_;
    std::vector<Option> options_;
    std::vector<std::string> positional_;
    std::vector<std::string> numeric_;  // "--n integer 1 100000": what --help-flags prints
    std::string positional_name_;
    bool help_ = false, help_flags_ = false;
};

// --threads N: 0 leaves OMP_NUM_THREADS (or all cores) in charge. At most 1024: OpenMP would try
// to start every one of 2^31 - 1 threads (and int(n) wraps past that).
inline void set_threads(const std::string& program, int64_t n) {
    if (!kThreads.contains(n)) fail(program, ": --threads must be in [", kThreads.lo, ", ", kThreads.hi, "] (0: all), got ", n);
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(int(n));
#endif
}

// --precision fp32|winograd|bf16 (tensor/cpu.h). bf16 where the CPU lacks AMX-BF16 falls back to
// fp32 with a one-line notice on stderr (the run still works, only slower); anything else is an error.
constexpr const char* kPrecisionHelp =
    "conv2d's multiplies: fp32; winograd (fp32, Winograd F(4x4,3x3) for the 3x3 convolutions: 4x fewer multiplies); "
    "or bf16 (bf16 operands, fp32 sums, on AMX; fp32 with a notice where the CPU lacks it)";
inline void set_precision(const std::string& program, const std::string& v) {
    if (v == "fp32") return dl::set_precision(Precision::FP32);
    if (v == "winograd") return dl::set_precision(Precision::WINOGRAD);
    if (v != "bf16") fail(program, ": --precision expects fp32, winograd or bf16, got '", v, "'");
    if (bf16_available()) return dl::set_precision(Precision::BF16);
    std::fprintf(stderr, "%s: --precision bf16 needs AMX-BF16 (Intel Sapphire Rapids or later), which this CPU or OS lacks; using fp32\n",
                 program.c_str());
    dl::set_precision(Precision::FP32);
}

// A progress line: "step 1200/3000 [=====>     ] 40% | loss 0.0412 | 92.3 img/s | ETA 05:12".
// On a terminal it redraws one line; otherwise (a log file, CI) it prints a plain line every
// `period` seconds.
class Progress {
public:
    explicit Progress(int64_t total, int64_t start = 0, double period = 10.0)
        : total_(total), start_(start), period_(period), tty_(isatty(fileno(stdout))), t0_(now()), last_(-1e9) {}

    void update(int64_t done, const std::string& fields, bool force = false) {
        double t = now() - t0_;
        if (!force && !tty_ && t - last_ < period_) return;
        if (!force && tty_ && t - last_ < 0.2) return;
        last_ = t;
        double rate = done > start_ ? double(done - start_) / t : 0;  // units per second this session
        std::string eta = done >= total_ ? clock(0) : rate > 0 ? clock(double(total_ - done) / rate) : "--:--";  // unknown until a step is timed
        int width = 24, fill = total_ > 0 ? int(double(width) * double(done) / double(total_)) : 0;
        std::string bar(size_t(fill), '=');
        if (fill < width) bar += '>' + std::string(size_t(width - fill - 1), ' ');
        std::printf("%s%lld/%lld [%s] %3.0f%% | %s | ETA %s%s", tty_ ? "\r\033[K" : "", (long long)done, (long long)total_,
                    bar.c_str(), total_ > 0 ? 100.0 * double(done) / double(total_) : 100.0, fields.c_str(), eta.c_str(),
                    tty_ ? "" : "\n");
        std::fflush(stdout);
    }
    void finish() {
        if (tty_) std::printf("\n");
        std::fflush(stdout);
    }
    void set_total(int64_t total) { total_ = total; }
    double elapsed() const { return now() - t0_; }
    bool tty() const { return tty_; }

    static std::string clock(double seconds) {
        long s = long(seconds + 0.5);
        char buf[32];
        if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
        else std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
        return buf;
    }

private:
    static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
    int64_t total_, start_;
    double period_;
    bool tty_;
    double t0_, last_;
};

// A progress callback (done, total) for library calls that report their own count: the line is
// made at the first call and finished at the last.
inline std::function<void(int64_t, int64_t)> progress_callback(std::string label) {
    auto line = std::make_shared<std::unique_ptr<Progress>>();
    return [line, label](int64_t done, int64_t total) {
        if (!*line) *line = std::make_unique<Progress>(total);
        (*line)->update(done, label, done == total);
        if (done == total) {
            (*line)->finish();
            line->reset();
        }
    };
}

}  // namespace dl::cli
