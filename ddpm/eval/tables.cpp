// The text of build/eval's tables and JSON: the judges, the ruler's verdict, a row per sample set.
#include "ddpm/eval/tables.h"

#include <cmath>
#include <cstdio>
#include <numeric>

namespace dl::ddpm {

std::string json_metrics(const char* prefix, const ddpm::SampleMetrics& m) {
    std::string hist;
    for (size_t k = 0; k < m.histogram.size(); k++) hist += cat(k ? ", " : "", m.histogram[k]);
    return cat("\"", prefix, "n\": ", m.n, ", \"", prefix, "fid\": ", m.fid, ", \"", prefix, "precision\": ", m.precision, ", \"", prefix,
               "recall\": ", m.recall, ", \"", prefix, "class_entropy\": ", m.class_entropy, ", \"", prefix, "confidence\": ", m.confidence,
               ", \"", prefix, "histogram\": [", hist, "]");
}

static std::string range(double lo, double hi) {  // "[lo, hi]" to two decimals
    char buf[64];
    std::snprintf(buf, sizeof buf, "[%.2f, %.2f]", lo, hi);
    return buf;
}

std::string json_number(double v) { return std::isfinite(v) ? cat(v) : std::string("null"); }  // JSON has no NaN

// The ruler's figures as JSON members, each name prefixed: fid_mean, fid_sd, kid, kid_se, precision, recall.
std::string json_ruler(const char* p, const ddpm::RulerMetrics& r) {
    return cat(", \"", p, "fid_mean\": ", json_number(r.fid_mean), ", \"", p, "fid_sd\": ", json_number(r.fid_sd), ", \"", p,
               "kid\": ", json_number(r.kid_mean), ", \"", p, "kid_se\": ", json_number(r.kid_se), ", \"", p,
               "precision\": ", json_number(r.precision), ", \"", p, "recall\": ", json_number(r.recall));
}

// A line per judge: its file, whether it was trained now, its size and its held-out accuracy.
void print_judges(const ddpm::Ruler& ruler, int64_t test_images) {
    for (const ddpm::Judge& j : ruler.judges)
        std::printf("judge %s: %s (%s, %lld parameters), test accuracy %.2f%% on %lld images\n", j.name.c_str(), j.cache.c_str(),
                    j.trained_now ? "trained now" : "cached", (long long)j.net->num_parameters(), 100 * j.test_accuracy,
                    (long long)test_images);
}

// The ruler's table: the samples and the real digits by every judge at once.
void print_ruler(const ddpm::Ruler& ruler, const ddpm::RulerMetrics& rm, const ddpm::RulerMetrics& rfloor) {
    std::printf("\nthe ruler, %zu judges (ddpm/eval/ruler.h): FID mean, sd and range over them, KID (x 1000) with its standard error\n",
                ruler.judges.size());
    std::printf("  %-20s %9s %7s %17s %15s %10s %7s\n", "", "FID mean", "sd", "range", "KID x 1000", "precision", "recall");
    for (const auto& [name, r] : {std::pair{"samples", &rm}, std::pair{"real training digits", &rfloor}})
        std::printf("  %-20s %9.3f %7.3f %17s %8.3f +- %5.3f %10.3f %7.3f\n", name, r->fid_mean, r->fid_sd,
                    range(r->fid_min, r->fid_max).c_str(), 1e3 * r->kid_mean,
                    1e3 * r->kid_se, r->precision, r->recall);
    std::printf("  every judge ranks the samples below the real digits: %s (%lld of %zu)\n",
                rfloor.judges_better_than(rm) == int64_t(ruler.judges.size()) ? "yes" : "no", (long long)rfloor.judges_better_than(rm),
                ruler.judges.size());
}

void print_row(const char* name, const ddpm::SampleMetrics& m) {
    std::string hist;
    for (int64_t h : m.histogram) hist += cat(" ", h);
    std::printf("  %-20s %6lld %9.3f %10.3f %7.3f %14.3f %11.3f   %s\n", name, (long long)m.n, m.fid, m.precision, m.recall, m.class_entropy,
                m.confidence, hist.c_str());
}


}  // namespace dl::ddpm
