// The record of a training run: one row per step (loss, gradient norm, learning rate, time),
// written as CSV and drawn as an SVG loss curve. A resumed run reads the CSV back and keeps the
// rows up to the checkpoint's step, so the curve continues where the checkpoint left off.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dl::ddpm {

struct LogRow {
    int64_t step;      // 1-based: the row of the step-th update
    double loss;       // the batch's training loss
    double grad_norm;  // global gradient norm before clipping
    double lr;         // learning rate used
    double seconds;    // wall time of the run so far (across resumes)
};

class TrainLog {
public:
    std::vector<LogRow> rows;

    void add(const LogRow& r) { rows.push_back(r); }
    // Reads path (as written by write_csv) keeping rows with step <= max_step; a missing file is
    // an empty log. A malformed row is a dl::Error naming the file and the line.
    void read_csv(const std::string& path, int64_t max_step);
    void write_csv(const std::string& path) const;  // atomic
    // The loss per step and smoothed_loss() of each step, log y axis.
    void write_svg(const std::string& path, const std::string& title) const;
    std::string svg(const std::string& title) const;     // that plot's SVG text
    std::string lr_svg(const std::string& title) const;  // the learning rate per step
    // The loss as people read it (the progress line, the curve, the report): the mean of the
    // kSmoothing rows that end at row i (fewer near the start); NaN when there is no such row.
    static constexpr size_t kSmoothing = 100;
    double smoothed_loss(size_t i) const;
    double smoothed_loss() const { return smoothed_loss(rows.size() - 1); }  // of the last row
};

// Sample quality during a run (build/train --eval-every N, ddpm/eval/eval.h): one row per evaluation,
// eval.csv and eval.svg (FID on a log axis; precision and recall, in [0, 1], on a second plot).
struct EvalRow {
    int64_t step, n;                          // the step, and how many samples
    double fid, precision, recall;
    double class_entropy, confidence;
};

class EvalLog {
public:
    std::vector<EvalRow> rows;

    void add(const EvalRow& r) { rows.push_back(r); }
    void read_csv(const std::string& path, int64_t max_step);  // as TrainLog::read_csv
    void write_csv(const std::string& path) const;             // atomic
    // <stem>.svg: FID against the step; <stem>_pr.svg: precision and recall.
    void write_svg(const std::string& stem, const std::string& title) const;
    std::string fid_svg(const std::string& title) const;  // the two plots' SVG text
    std::string pr_svg(const std::string& title) const;
};

}  // namespace dl::ddpm
