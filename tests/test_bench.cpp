// bench --ladder as a user runs it: on a tiny shape its table has a reference row and a row per
// algorithm this build and CPU have (direct SIMD tiles at each level, Winograd, bf16 on AMX), each
// pass with a finite error against the float64 reference below the rung's tolerance.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/cpu.h"
#include "tests/programs.h"

using namespace dl;
using namespace dl::test;

namespace {

// The table's rows: rung -> pass -> err (the last column). A row is a line of 8 columns whose
// second names a pass.
std::map<std::string, std::map<std::string, double>> ladder_rows(const std::string& out) {
    std::map<std::string, std::map<std::string, double>> rows;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream cols(line);
        std::vector<std::string> c;
        for (std::string w; cols >> w;) c.push_back(w);
        if (c.size() != 8 || (c[1] != "forward" && c[1] != "bwd_data" && c[1] != "bwd_weight")) continue;
        rows[c[0]][c[1]] = std::strtod(c[7].c_str(), nullptr);  // "nan" parses as NaN
    }
    return rows;
}

}  // namespace

TEST_CASE("bench --ladder: a reference row and one per available rung, each pass within its tolerance of float64") {
    // --simd at the detected level, so that a DL_SIMD in the environment does not cap the ladder
    const SimdLevel top = simd_detected();
    const std::string cmd = build_dir() + "/bench --ladder --ladder-shape 2,4,5,8 --reps 2 --simd " + simd_name(top);
    std::string out;
    REQUIRE(run(cmd, &out) == 0);
    INFO(out);

    // expected rungs and their tolerances: relative to the output's largest value, float32 sums of
    // 36-45 products are good to about 1e-7, Winograd's transforms to about 1e-6; bf16 operands
    // (8 bits of mantissa) to about 1e-3
    std::map<std::string, double> expected{{"reference", 1e-4}};
#ifndef DL_REF
    for (int l = 0; l <= int(top); l++) expected[std::string("direct-") + simd_name(SimdLevel(l))] = 1e-4;
    expected[std::string("winograd-") + simd_name(top)] = 1e-4;
    if (bf16_available()) expected["bf16-amx"] = 1e-2;
    else CHECK(out.find("bf16-amx: not available on this CPU") != std::string::npos);
#else
    CHECK(out.find("not in this build") != std::string::npos);
#endif

    const auto rows = ladder_rows(out);
    std::set<std::string> got, want;
    for (const auto& [rung, passes] : rows) got.insert(rung);
    for (const auto& [rung, tol] : expected) want.insert(rung);
    CHECK(got == want);
    for (const auto& [rung, tol] : expected) {
        REQUIRE(rows.count(rung));
        for (const char* pass : {"forward", "bwd_data", "bwd_weight"}) {
            INFO(rung, " ", pass);
            REQUIRE(rows.at(rung).count(pass));
            const double err = rows.at(rung).at(pass);
            CHECK(std::isfinite(err));
            CHECK(err >= 0);
            CHECK(err < tol);
        }
    }
    // the float32 rungs are not exact either: a zero error would mean the comparison compared nothing
    CHECK(rows.at("reference").at("forward") > 0);
}

TEST_CASE("bench --ladder-shape: a malformed or out-of-range shape is refused") {
    std::string out;
    for (const char* shape : {"2,4,5", "2,1,5,8", "0,4,5,8", "2,4,5,8x", "a,b,c,d"}) {
        INFO(shape);
        CHECK(run(build_dir() + "/bench --ladder --ladder-shape " + shape, &out) != 0);
        CHECK(out.find("bench: --ladder-shape expects B,Cin,Cout,H") != std::string::npos);
    }
    CHECK(run(build_dir() + "/bench --ladder --json", &out) != 0);
    CHECK(out.find("--ladder prints a table only") != std::string::npos);
}
