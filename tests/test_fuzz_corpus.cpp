// Nothing a user feeds the readers crashes them. Every reader of tests/fuzz/readers.h runs over
// every file of tests/fuzz/corpus/*/ (the seeds of `make fuzz` and the inputs its findings were
// fixed for, named crash-<what>): each file parses or is refused with a dl::Error, nothing else.
// Then the cases a corpus file cannot hold: read_file on a FIFO, a folder or a device, flag values
// out of range, and the CSV step and safetensors size checks the fuzzing led to.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <sys/stat.h>

#include "tests/fuzz/readers.h"
#include "tests/programs.h"

using namespace dl;
using dl::test::message_of;

namespace {

// cli::Args over argv = {"prog", words...}, then declare() on it and done().
std::string flags_error(std::vector<std::string> words, const std::function<void(cli::Args&)>& declare) {
    words.insert(words.begin(), "prog");
    std::vector<char*> argv;
    for (std::string& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    return message_of([&] {
        cli::Args args(int(words.size()), argv.data(), "prog", "a test");
        declare(args);
        args.done();
    });
}

std::string csv_error(const std::string& rows) {
    return message_of([&] { parse_csv_numbers("step,a\n" + rows, "log.csv", "step,a", 2, "the header 'step,a'"); });
}
}  // namespace

TEST_CASE("fuzz corpus: every reader over every file parses it or throws dl::Error") {
    const std::filesystem::path root = "tests/fuzz/corpus";  // the tests run from the repository root
    REQUIRE(std::filesystem::is_directory(root));
    int files = 0;
    for (const fuzz::Target& own : fuzz::targets) {
        const std::filesystem::path dir = root / own.name;
        REQUIRE_MESSAGE(std::filesystem::is_directory(dir), dir.string());
        for (const auto& f : std::filesystem::directory_iterator(dir)) {
            const std::string bytes = read_file(f.path().string()), name = f.path().filename().string();
            for (const fuzz::Target& reader : fuzz::targets) {
                INFO(std::string(reader.name), " reading ", f.path().string());
                int accepted = 0;
                CHECK_NOTHROW(accepted = reader.run(bytes));
                if (&reader == &own && name.rfind("crash-", 0) != 0) CHECK_MESSAGE(accepted > 0, "a seed parses with its own reader");
            }
            files++;
        }
    }
    CHECK(files >= 6);
}

TEST_CASE("read_file: a FIFO, a folder or a device is refused at once, naming the path") {
    std::string dir = test::temp_dir("fuzz_read_file"), fifo = dir + "/pipe";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto t0 = std::chrono::steady_clock::now();
    CHECK(message_of([&] { read_file(fifo); }) == fifo + ": expected a regular file, found a FIFO (named pipe)");
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));  // no wait for a writer
    // The readers that take a path go through read_file.
    CHECK(message_of([&] { ddpm::read_idx_images(fifo); }) == fifo + ": expected a regular file, found a FIFO (named pipe)");
    CHECK(message_of([&] { read_csv_numbers(fifo, "step", 1, "step"); }) == fifo + ": expected a regular file, found a FIFO (named pipe)");
    CHECK(message_of([&] { Safetensors::load(dir); }) == dir + ": expected a regular file, found a folder");
    CHECK(message_of([&] { read_npy("/dev/null"); }) == "/dev/null: expected a regular file, found a character device");
    CHECK(message_of([&] { read_file(dir + "/none"); }) == dir + "/none: cannot open for reading: No such file or directory");
    write_file_atomic(dir + "/plain", std::string("a\0b", 3));
    CHECK(read_file(dir + "/plain") == std::string("a\0b", 3));
    std::filesystem::remove_all(dir);
}

TEST_CASE("cli: a number outside its flag's stated range is refused before anyone narrows it, naming the flag, the value and the range") {
    auto steps = [](cli::Args& a) { a.integer("--steps", 1, {0, int64_t(1) << 40}, "steps"); };
    auto seed = [](cli::Args& a) { a.integer("--seed", 1, kAnyInteger, "seed"); };
    auto lr = [](cli::Args& a) { a.real("--lr", 1e-3, {1e-9, 1}, "lr"); };
    CHECK(flags_error({"--steps", "99999999999999999999"}, steps) ==
          "prog: --steps expects an integer in [0, 1099511627776], got '99999999999999999999'");
    // 2^32 + 8 is not 8: the range is checked on all 64 bits
    CHECK(flags_error({"--steps=4294967304"}, steps) == "(no error)");
    CHECK(flags_error({"--steps=1099511627777"}, steps) == "prog: --steps expects an integer in [0, 1099511627776], got '1099511627777'");
    CHECK(flags_error({"--steps", "-1"}, steps) == "prog: --steps expects an integer in [0, 1099511627776], got '-1'");
    CHECK(flags_error({"--seed=-9223372036854775809"}, seed) == "prog: --seed expects an integer in [-2^63, 2^63 - 1], got '-9223372036854775809'");
    CHECK(flags_error({"--seed", "9223372036854775807"}, seed) == "(no error)");
    CHECK(flags_error({"--steps", "12x"}, steps) == "prog: --steps expects an integer, got '12x'");
    for (const char* v : {"nan", "-nan", "inf", "-Infinity", "1e999", "1e-400", "0", "1.5", "1e39"})
        CHECK(flags_error({"--lr", v}, lr) == cat("prog: --lr expects a number in [1e-09, 1], got '", v, "'"));
    CHECK(flags_error({"--lr=1e-9"}, lr) == "(no error)");
    CHECK(flags_error({"--lr", "0.5x"}, lr) == "prog: --lr expects a number, got '0.5x'");
    // Only refusals here: a valid count would change the threads of the tests that follow.
    CHECK(message_of([] { cli::set_threads("prog", 2147483647); }) == "prog: --threads must be in [0, 1024] (0: all), got 2147483647");
    CHECK(message_of([] { cli::set_threads("prog", -2); }) == "prog: --threads must be in [0, 1024] (0: all), got -2");
}

TEST_CASE("csv: a row is exactly its columns' numbers, the first a step: a whole number in [0, 2^53]") {
    auto rows = parse_csv_numbers("step,a\n0,nan\n\n9007199254740992,-1e300\n3,2.5", "log.csv", "step,a", 2, "h");
    REQUIRE(rows.size() == 3);  // the empty line skipped
    CHECK(rows[0][0] == 0);
    CHECK(std::isnan(rows[0][1]));  // a non-finite loss is logged as nan
    CHECK(rows[1] == std::vector<double>{9007199254740992.0, -1e300});
    CHECK(rows[2] == std::vector<double>{3, 2.5});
    for (const char* step : {"nan", "inf", "-1", "2.5", "1e300", "9007199254740994"})
        CHECK(csv_error(cat(step, ",0\n")) ==
              cat("log.csv: line 2: expected a step (a whole number from 0 to 2^53) first, found '", step, ",0'"));
    CHECK(csv_error("1,2,\n") == "log.csv: line 2: expected 2 comma-separated numbers, found '1,2,'");
    // A NUL byte would cut the message short (what() is a C string): shown as \x00.
    CHECK(csv_error(std::string("1,2\0x\r\n", 7)) == "log.csv: line 2: expected 2 comma-separated numbers, found '1,2\\x00x\\x0d'");
    CHECK(csv_error(std::string(100, '7') + "\n") == cat("log.csv: line 2: expected 2 comma-separated numbers, found '",
                                                        std::string(80, '7'), "...'"));
    CHECK(message_of([] { parse_csv_numbers("step,b\n", "log.csv", "step,a", 2, "the header 'step,a'"); }) ==
          "log.csv: line 1: expected the header 'step,a', found 'step,b'");
}

TEST_CASE("safetensors: a shape whose byte count would wrap 64 bits is refused; an empty I64 entry reads as empty") {
    auto file = [](const std::string& header) {
        uint64_t n = header.size();
        return std::string(reinterpret_cast<const char*>(&n), 8) + header;
    };
    CHECK(message_of([&] {
              Safetensors::parse(file(R"({"w":{"dtype":"F64","shape":[1099511627776,2097152],"data_offsets":[0,0]}})"), "w.st");
          }) == "w.st: \"w\": shape (1099511627776, 2097152) is too large: its non-zero dimensions multiply past 2^60");
    CHECK(message_of([&] {
              Safetensors::parse(file(R"({"w":{"dtype":"F32","shape":[0,1099511627776,1099511627776],"data_offsets":[0,0]}})"), "w.st");
          }) == "w.st: \"w\": shape (0, 1099511627776, 1099511627776) is too large: its non-zero dimensions multiply past 2^60");
    CHECK(message_of([&] {
              Safetensors::parse(file(R"({"w":{"dtype":"F32","shape":[1099511627777],"data_offsets":[0,0]}})"), "w.st");
          }) == "w.st: \"w\": shape dimension 1099511627777 is too large (above 2^40)");
    Safetensors st = Safetensors::parse(file(R"({"e":{"dtype":"I64","shape":[0,4],"data_offsets":[0,0]}})"), "e.st");
    CHECK(st.i64("e").empty());
    // Names and dtypes from the file reach messages with their control bytes escaped.
    CHECK(message_of([&] { Safetensors::parse(file(R"({"a\u0000b":{"dtype":"F\r16","shape":[],"data_offsets":[0,2]}})"), "x.st"); }) ==
          "x.st: \"a\\x00b\": unknown dtype \"F\\x0d16\", expected F32, F64 or I64");
}

TEST_CASE("npy: a shape past 2^60 values (zeros aside) is refused; control bytes of a bad magic are escaped") {
    Tensor t({0, 3});
    std::string empty = encode_npy(t), huge = empty;
    huge.replace(huge.find("(0, 3)"), 6, "(0, 1099511627776, 1099511627776)");
    CHECK(decode_npy(empty, "e.npy").shape() == Shape{0, 3});
    CHECK(message_of([&] { decode_npy(huge, "h.npy"); }) ==
          "h.npy: expected a shape whose non-zero dimensions multiply to at most 2^60, found (0, 1099511627776, 1099511627776)");
    CHECK(message_of([] { decode_npy(std::string("\x93NUM\0Y\x01\0\0\0", 10), "a.npy"); }) ==
          "a.npy: expected the npy magic \"\\x93NUMPY\", found \"\x93NUM\\x00Y\"");
}
