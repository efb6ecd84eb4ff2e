// Per-parameter gradient norms over a training run (see grad_norm_log.h).
#include "ddpm/report/grad_norm_log.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "tensor/formats/io.h"
#include "ddpm/report/svg.h"

namespace dl::ddpm {

using nn::ParamSlot;

GradNormLog::GradNormLog(const nn::Module& model) : slots(model.layout()) {}

void GradNormLog::record(int64_t step, const Tensor& flat_grads) {
    int64_t total = slots.empty() ? 0 : slots.back().offset + slots.back().numel;
    if (flat_grads.ndim() != 1 || flat_grads.numel() != total)
        fail("GradNormLog::record: expected the flat gradient buffer of ", total, " values, got ", shape_str(flat_grads.shape()));
    Row row{step, std::vector<double>(slots.size(), 0.0)};
    dispatch(flat_grads.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* g = flat_grads.data<T>();
        const int64_t n = int64_t(slots.size());
#pragma omp parallel for schedule(dynamic)
        for (int64_t k = 0; k < n; k++) {
            double sq = 0;
            const ParamSlot& slot = slots[size_t(k)];
            for (int64_t i = 0; i < slot.numel; i++) sq += double(g[slot.offset + i]) * double(g[slot.offset + i]);
            row.norms[size_t(k)] = std::sqrt(sq);
        }
    });
    if (!rows.empty() && rows.back().step == step) rows.back() = std::move(row);  // a step retried after a skipped one
    else rows.push_back(std::move(row));
}

static std::string header_of(const std::vector<ParamSlot>& slots) {
    std::string h = "step";
    for (const ParamSlot& s : slots) h += "," + s.name;
    return h;
}

void GradNormLog::read_csv(const std::string& path, int64_t max_step) {
    rows.clear();
    const std::string what = cat("the header 'step' and the ", slots.size(), " parameter keys of this model");
    for (const auto& v : read_csv_numbers(path, header_of(slots), 1 + slots.size(), what))
        if (int64_t(v[0]) <= max_step) rows.push_back({int64_t(v[0]), std::vector<double>(v.begin() + 1, v.end())});
}

void GradNormLog::write_csv(const std::string& path) const {
    std::string out = header_of(slots) + "\n";
    char buf[32];
    for (const Row& r : rows) {
        out += std::to_string(r.step);
        for (double v : r.norms) {
            std::snprintf(buf, sizeof buf, ",%.6g", v);
            out += buf;
        }
        out += "\n";
    }
    write_file_atomic(path, out);
}

void GradNormLog::write_svg(const std::string& path, const std::string& title, size_t top) const {
    std::vector<std::pair<double, size_t>> peak;  // (largest norm over the run, parameter)
    for (size_t k = 0; k < slots.size(); k++) {
        double m = 0;
        for (const Row& r : rows)
            if (std::isfinite(r.norms[k])) m = std::max(m, r.norms[k]);
        peak.push_back({m, k});
    }
    std::sort(peak.begin(), peak.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<Series> series;
    for (size_t i = 0; i < std::min(top, peak.size()); i++) {
        Series s{slots[peak[i].second].name, {}, {}};
        for (const Row& r : rows) {
            s.x.push_back(double(r.step));
            s.y.push_back(r.norms[peak[i].second]);
        }
        series.push_back(std::move(s));
    }
    write_svg_plot(path, title, "step", "gradient L2 norm (before clipping)", series, true);
}

}  // namespace dl::ddpm
