#include "ddpm/report/train_log.h"

#include <cmath>
#include <cstdio>

#include "tensor/formats/io.h"
#include "ddpm/report/svg.h"
#include "tensor/tensor.h"

namespace dl::ddpm {

static const char* kHeader = "step,loss,grad_norm,lr,seconds";

void TrainLog::read_csv(const std::string& path, int64_t max_step) {
    rows.clear();
    for (const auto& v : read_csv_numbers(path, kHeader, 5, cat("the header '", kHeader, "'"), true))
        if (int64_t(v[0]) <= max_step) rows.push_back({int64_t(v[0]), v[1], v[2], v[3], v[4]});
}

void TrainLog::write_csv(const std::string& path) const {
    std::string out = std::string(kHeader) + "\n";
    char buf[160];
    for (const LogRow& r : rows) {
        std::snprintf(buf, sizeof buf, "%lld,%.6g,%.6g,%.6g,%.3f\n", (long long)r.step, r.loss, r.grad_norm, r.lr, r.seconds);
        out += buf;
    }
    write_file_atomic(path, out);
}

void TrainLog::write_svg(const std::string& path, const std::string& title) const { write_file_atomic(path, svg(title)); }

std::string TrainLog::svg(const std::string& title) const {
    Series raw{"loss", {}, {}}, smooth{cat("moving average (", kSmoothing, " steps)"), {}, {}};
    for (size_t i = 0; i < rows.size(); i++) {
        raw.x.push_back(double(rows[i].step));
        raw.y.push_back(rows[i].loss);
        smooth.x.push_back(double(rows[i].step));
        smooth.y.push_back(smoothed_loss(i));
    }
    return svg_plot(title, "step", "loss (MSE of the noise)", {raw, smooth}, true);
}

std::string TrainLog::lr_svg(const std::string& title) const {
    Series lr{"learning rate", {}, {}};
    for (const LogRow& r : rows) {
        lr.x.push_back(double(r.step));
        lr.y.push_back(r.lr);
    }
    return svg_plot(title, "step", "learning rate", {lr}, false);
}

double TrainLog::smoothed_loss(size_t i) const {
    if (i >= rows.size()) return NAN;  // also i = -1 of an empty log
    const size_t first = i + 1 > kSmoothing ? i + 1 - kSmoothing : 0;
    double s = 0;
    for (size_t k = first; k <= i; k++) s += rows[k].loss;
    return s / double(i + 1 - first);
}

// ---- EvalLog ------------------------------------------------------------------------------
static const char* kEvalHeader = "step,n,fid_mean,fid_sd,fid_min,fid_max,kid_mean,kid_se,precision,recall,class_entropy,confidence";
static const char* kSingleJudgeHeader = "step,n,fid,precision,recall,class_entropy,confidence";

bool EvalLog::single_judge_csv(const std::string& path) {
    if (!file_exists(path)) return false;
    const std::string text = read_file(path);
    return text.compare(0, text.find('\n'), kSingleJudgeHeader) == 0;
}

void EvalLog::read_csv(const std::string& path, int64_t max_step) {
    rows.clear();
    if (single_judge_csv(path))
        fail(path, ": the single judge's columns (", kSingleJudgeHeader, "), written before train's evaluations used the ruler; expected '",
             kEvalHeader, "' (build/train --resume keeps the old file as eval_single_judge.csv and starts a new one)");
    for (const auto& v : read_csv_numbers(path, kEvalHeader, 12, cat("the header '", kEvalHeader, "'"), true))
        if (int64_t(v[0]) <= max_step) rows.push_back({int64_t(v[0]), int64_t(v[1]), v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]});
}

void EvalLog::write_csv(const std::string& path) const {
    std::string out = std::string(kEvalHeader) + "\n";
    char buf[400];
    for (const EvalRow& r : rows) {
        std::snprintf(buf, sizeof buf, "%lld,%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", (long long)r.step, (long long)r.n,
                      r.fid_mean, r.fid_sd, r.fid_min, r.fid_max, r.kid_mean, r.kid_se, r.precision, r.recall, r.class_entropy, r.confidence);
        out += buf;
    }
    write_file_atomic(path, out);
}

void EvalLog::write_svg(const std::string& stem, const std::string& title) const {
    write_file_atomic(stem + ".svg", fid_svg(title));
    write_file_atomic(stem + "_pr.svg", pr_svg(title));
}

std::string EvalLog::fid_svg(const std::string& title) const {
    Series mean{"FID, mean over the judges", {}, {}}, lo{"the judges' lowest", {}, {}}, hi{"the judges' highest", {}, {}};
    for (const EvalRow& r : rows) {
        for (Series* s : {&mean, &lo, &hi}) s->x.push_back(double(r.step));
        mean.y.push_back(std::max(r.fid_mean, 1e-6));
        lo.y.push_back(std::max(r.fid_min, 1e-6));
        hi.y.push_back(std::max(r.fid_max, 1e-6));
    }
    return svg_plot(title, "step", "FID (judge features)", {mean, lo, hi}, true);
}

std::string EvalLog::pr_svg(const std::string& title) const {
    Series precision{"precision", {}, {}}, recall{"recall", {}, {}};
    for (const EvalRow& r : rows) {
        precision.x.push_back(double(r.step));
        precision.y.push_back(r.precision);
        recall.x.push_back(double(r.step));
        recall.y.push_back(r.recall);
    }
    return svg_plot(title, "step", "precision, recall", {precision, recall}, false);
}

}  // namespace dl::ddpm
