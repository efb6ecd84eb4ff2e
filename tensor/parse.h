// The library's one integer parser, for flags, checkpoint metadata, configs and file names.
// Header-only, so that the fuzzed flag reader (tests/fuzz) builds without the library.
#pragma once
#include <charconv>
#include <cstdint>
#include <limits>
#include <string_view>
#include <type_traits>

namespace dl {

enum class IntegerParse { Ok, NotAnInteger, OutOfRange };

// Reads all of `text` as a decimal integer in [lo, hi]: digits with an optional leading '-'
// (for a signed T), nothing else (no spaces, no '+', no trailing characters). On Ok `value` is
// set; otherwise it is left as it was. NotAnInteger: the text is not one; OutOfRange: it is one,
// but outside [lo, hi] or beyond what T holds. T is int64_t or uint64_t.
template <class T = int64_t>
IntegerParse parse_integer(std::string_view text, T& value, T lo = std::numeric_limits<T>::min(), T hi = std::numeric_limits<T>::max()) {
    static_assert(std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t>, "parse_integer reads 64-bit integers");
    T v{};
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ptr != end || ec == std::errc::invalid_argument) return IntegerParse::NotAnInteger;
    if (ec == std::errc::result_out_of_range || v < lo || v > hi) return IntegerParse::OutOfRange;
    value = v;
    return IntegerParse::Ok;
}

// A numeric setting's allowed values, both ends included: what a program's flag states in its
// --help (apps/cli.h) and what the config field it writes checks (TrainConfig::validate, say).
// The upper ends are limits on what a setting may ask of the machine, so that a count that sizes
// an allocation is refused before anything is allocated.
struct Range {
    int64_t lo, hi;
    bool contains(int64_t v) const { return v >= lo && v <= hi; }
};
struct RealRange {
    double lo, hi;
    bool contains(double v) const { return v >= lo && v <= hi; }  // false for NaN
};
constexpr Range kAnyInteger{std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};  // seeds
constexpr int64_t kMaxThreads = 1024;  // OpenMP would try to start every one of 2^31 - 1 threads
constexpr Range kThreads{0, kMaxThreads};  // --threads: 0 leaves OMP_NUM_THREADS (or all cores) in charge

// The same, for callers with one message for every failure: true when `text` is an integer in [lo, hi].
template <class T = int64_t>
bool read_integer(std::string_view text, T& value, T lo = std::numeric_limits<T>::min(), T hi = std::numeric_limits<T>::max()) {
    return parse_integer(text, value, lo, hi) == IntegerParse::Ok;
}

}  // namespace dl
