// One page per run: RUN_DIR/report.html, written by build/report and by build/train at every
// checkpoint. A single self-contained file (PNGs as data: URIs, SVG and CSS inline, no script, no
// network), so it opens offline in any browser and can be mailed. From the run folder's files
// (ddpm/trainer.h's RunFolder):
//
//   checkpoint.safetensors   the configuration, the step, and each parameter's norm |x|
//   loss.csv                 steps, images/s, wall time; the loss and learning-rate curves
//   samples_<step>.png       one row of the grid of each checkpoint, stacked into a strip (the same
//                            noise each time, so a digit can be followed as it forms)
//   eval.csv                 FID, precision and recall over the run (train --eval-every)
//   per_t.csv                loss and gradient norm against t (inspect --per-t)
//   figures/*.png            the forward and reverse processes (build/figures)
//   grad_norms.csv           the gradient map: the U-Net drawn as its blocks, each parameter
//                            tensor a cell coloured by its gradient norm |g| at the latest row
//                            (and a second map by |g| / |x|), the numbers in a table below
//
// What is missing is said on the page, not an error; only the checkpoint is required.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "nn/unet.h"

namespace dl::ddpm {

// The page, from the files in run_dir. Throws dl::Error naming the file when the checkpoint is
// missing or unreadable, or a log is malformed.
std::string run_report_html(const std::string& run_dir);
// run_dir/report.html, written atomically; returns its path.
std::string write_run_report(const std::string& run_dir);

// One parameter tensor on the gradient map.
struct GradMapCell {
    std::string name;   // state_dict key, e.g. "down.0.res.1.conv2.weight"
    double grad = 0;    // |g|, the L2 norm of its gradient
    double weight = 0;  // |x|, the L2 norm of its values
};
// The gradient map as SVG: the U-Net of `config` in its arrangement (the down path left to
// right and down a row per level, the middle at the bottom, the up path back up, skip
// connections as arcs from each kept output to the ResBlock that concatenates it), each block a
// column of cells, one per parameter tensor, coloured on a log scale by |g| or, with relative,
// by |g| / |x|; a zero gradient is grey. Each cell's <title> holds its name and numbers (hover).
// Cells whose name is not a block of this config are listed under "other".
std::string gradient_map_svg(const nn::UNetConfig& config, const std::vector<GradMapCell>& cells, bool relative);

// RFC 4648 base64, for data: URIs.
std::string base64(std::string_view bytes);

}  // namespace dl::ddpm
