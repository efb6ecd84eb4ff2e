// What the fuzz targets feed their bytes to, shared by tests/fuzz/fuzz_<name>.cpp (libFuzzer,
// `make fuzz`) and tests/test_fuzz_corpus.cpp (every reader over every corpus file, in make test).
//
// Each function hands the bytes to one reader the way a user's file or command line reaches it,
// and then uses what came back the way the library's callers do. A dl::Error is the expected
// answer to bad input and is swallowed here; anything else (a crash, a sanitizer report, another
// exception, a hang, an allocation far beyond the input's size) is a finding. The functions
// return how many of their readers accepted the input, so a corpus seed can be checked to parse.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "apps/cli.h"
#include "ddpm/data.h"
#include "tensor/formats/io.h"
#include "tensor/formats/json.h"
#include "tensor/formats/npy.h"
#include "tensor/formats/png.h"
#include "tensor/formats/safetensors.h"

namespace dl::fuzz {

// 1 when f returns, 0 when it throws dl::Error; anything else propagates.
template <class F>
int accepted(F f) {
    try {
        f();
        return 1;
    } catch (const Error&) {
        return 0;
    }
}

// A property a parsed input must have; breaking it is a finding, not bad input.
inline void require(bool ok, const char* what) {
    if (!ok) throw std::logic_error(std::string("fuzz: ") + what);
}

// IDX images and labels (ddpm/data.h), then the images as a Dataset hands them out.
inline int idx(std::string_view bytes) {
    int n = accepted([&] {
        ddpm::IdxImages im = ddpm::parse_idx_images(bytes, "fuzz.idx");
        if (im.n == 0) return;
        ddpm::Dataset ds(im);
        Tensor last = ds.image(im.n - 1);  // (1, 1, H, W)
        require(last.numel() == im.rows * im.cols, "the last image has rows x cols pixels");
    });
    n += accepted([&] { ddpm::parse_idx_labels(bytes, "fuzz.idx"); });
    return n;
}

// Safetensors::parse, every entry read out as its dtype, and a round trip through serialize().
inline int safetensors(std::string_view bytes) {
    return accepted([&] {
        Safetensors st = Safetensors::parse(bytes, "fuzz.safetensors");
        for (const SafetensorsEntry& e : st.entries()) {
            if (e.dtype == "I64") {
                require(st.i64(e.name).size() * 8 == e.data.size(), "an I64 entry reads out as many values as it holds");
                continue;
            }
            Tensor t = st.tensor(e.name);
            require(t.nbytes() == e.data.size(), "a tensor reads out as many bytes as its entry holds");
            if (t.numel() > 0)  // its last value, as a model loading it would read it
                require(std::memcmp(static_cast<const char*>(t.raw()) + t.nbytes() - dtype_size(t.dtype()),
                                    e.data.data() + e.data.size() - dtype_size(t.dtype()), dtype_size(t.dtype())) == 0,
                        "a tensor's last value is its entry's last bytes");
        }
        Safetensors back = Safetensors::parse(st.serialize(), "fuzz.safetensors (written back)");
        require(back.metadata == st.metadata && back.entries().size() == st.entries().size(), "the round trip keeps every entry");
        for (size_t i = 0; i < st.entries().size(); i++) {
            const SafetensorsEntry &a = st.entries()[i], &b = back.entries()[i];
            require(a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.data == b.data, "the round trip keeps each entry");
        }
    });
}

// tensor/formats/json.h's DOM and its fast numbers() path, and ddpm::parse_json_numbers over them.
inline int json(std::string_view bytes) {
    int n = accepted([&] {
        JsonReader r(bytes, "fuzz.json", "file");
        r.value();
        r.finish();
    });
    n += accepted([&] {
        JsonReader r(bytes, "fuzz.json", "file");
        r.numbers();
        r.finish();
    });
    n += accepted([&] { ddpm::parse_json_numbers(std::string(bytes), "fuzz.json"); });
    return n;
}

// The CSV log reader under the training log's header, each step cast as TrainLog::read_csv does.
inline int csv(std::string_view bytes) {
    return accepted([&] {
        const std::string header = "step,loss,grad_norm,lr,seconds";
        for (const std::vector<double>& row : parse_csv_numbers(bytes, "fuzz.csv", header, 5, "the header '" + header + "'"))
            require(int64_t(row[0]) >= 0, "a step is not negative");
    });
}

// decode_npy, and the tensor written back with encode_npy reading back the same.
inline int npy(std::string_view bytes) {
    return accepted([&] {
        Tensor t = decode_npy(std::string(bytes), "fuzz.npy");
        Tensor back = decode_npy(encode_npy(t), "fuzz.npy (written back)");
        require(back.shape() == t.shape() && back.dtype() == t.dtype() &&
                    std::string_view(static_cast<const char*>(back.raw()), back.nbytes()) ==
                        std::string_view(static_cast<const char*>(t.raw()), t.nbytes()),
                "the round trip keeps shape, dtype and values");
    });
}

// cli::Args over argv = "fuzz" then the input split at NUL bytes, with flags of each kind
// declared as the programs declare theirs. -h and --help are left out: done() would print the
// usage and exit(0).
inline int flags(std::string_view bytes) {
    std::vector<std::string> words{"fuzz"};
    for (size_t at = 0; at <= bytes.size();) {
        size_t nul = std::min(bytes.find('\0', at), bytes.size());
        words.emplace_back(bytes.substr(at, nul - at));
        at = nul + 1;
    }
    for (const std::string& w : words)
        if (w == "-h" || w == "--help" || w == "--help-flags") return 0;
    std::vector<char*> argv;
    for (std::string& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    return accepted([&] {
        cli::Args args(int(words.size()), argv.data(), "fuzz", "flags from fuzzed bytes");
        args.str("--data", "data/mnist", "a folder");
        args.str("--out", "", "a file or folder");
        args.integer("--steps", 3000, {0, int64_t(1) << 40}, "an integer");
        args.integer("--threads", 0, kThreads, "another");
        args.real("--lr", 2e-4, {1e-9, 1}, "a real");
        args.real("--ema", 0.9999, {0, 0.999999}, "another");
        args.flag("--resume", "a flag");
        args.given("--steps");
        args.done();
    });
}

// decode_png, and zlib_inflate over the same bytes (a PNG's signature is not a zlib header, so
// the fuzzer grows inputs for each). A gray image that decodes must read back the same through
// encode_png_gray.
inline int png(std::string_view view) {
    const std::string bytes(view);
    int n = accepted([&] {
        PngImage im = decode_png(bytes, "fuzz.png");
        require(im.pixels.size() == size_t(im.width) * size_t(im.height) * size_t(im.channels), "pixels are width x height x channels");
        if (im.channels == 1) {
            PngImage back = decode_png(encode_png_gray(im.pixels.data(), im.width, im.height), "fuzz.png (written back)");
            require(back.pixels == im.pixels, "a gray image reads back the same");
        }
    });
    return n + accepted([&] { zlib_inflate(bytes, "fuzz.zlib", size_t(1) << 20); });
}

struct Target {
    const char* name;  // its corpus folder: tests/fuzz/corpus/<name>/
    int (*run)(std::string_view bytes);
};
inline const Target targets[] = {{"idx", idx}, {"safetensors", safetensors}, {"json", json},
                                 {"csv", csv}, {"npy", npy},                 {"flags", flags},
                                 {"png", png}};

}  // namespace dl::fuzz
