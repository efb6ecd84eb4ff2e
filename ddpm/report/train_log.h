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

// Sample quality during a run (build/train --eval-every N, scored by the ruler of ddpm/eval/ruler.h):
// one row per evaluation, eval.csv, eval.svg (the judges' mean FID with their range, log axis) and
// eval_pr.svg (precision and recall, in [0, 1]).
//   eval.csv  step,n,fid_mean,fid_sd,fid_min,fid_max,kid_mean,kid_se,precision,recall,class_entropy,confidence
// A run's eval.csv of before the ruler (step,n,fid,precision,recall,class_entropy,confidence: the
// first judge alone, whose FID is not the ruler's mean) is not read as this one: read_csv refuses it,
// naming the file, and single_judge_csv() tells it apart.
struct EvalRow {
    int64_t step, n;                                // the step, and how many samples
    double fid_mean, fid_sd, fid_min, fid_max;     // over the judges
    double kid_mean, kid_se;                        // the judges' mean KID and its standard error
    double precision, recall;                       // the means over the judges
    double class_entropy, confidence;               // the first judge's
};

class EvalLog {
public:
    std::vector<EvalRow> rows;

    void add(const EvalRow& r) { rows.push_back(r); }
    void read_csv(const std::string& path, int64_t max_step);  // as TrainLog::read_csv
    void write_csv(const std::string& path) const;             // atomic
    // Whether path is an eval.csv written before the ruler (by its header).
    static bool single_judge_csv(const std::string& path);
    // <stem>.svg: FID against the step; <stem>_pr.svg: precision and recall.
    void write_svg(const std::string& stem, const std::string& title) const;
    std::string fid_svg(const std::string& title) const;  // the two plots' SVG text
    std::string pr_svg(const std::string& title) const;
};

}  // namespace dl::ddpm
