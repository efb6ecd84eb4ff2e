// The pieces of build/figures' pictures: a strip of chain snapshots and its column labels.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/formats/png.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace dl::ddpm {

// Snapshots of a chain: rows x columns images, filled column by column.
struct Strip {
    int64_t rows, cols, H, W;
    Tensor images;  // (rows * cols, 1, H, W), row-major: row r, column c at r * cols + c
    Strip(int64_t r, int64_t c, int64_t h, int64_t w) : rows(r), cols(c), H(h), W(w), images(Tensor::zeros({r * c, 1, h, w})) {}
    void set_column(int64_t c, const Tensor& x) {  // x (rows, 1, H, W)
        for (int64_t r = 0; r < rows; r++) images.rows(r * cols + c, 1).copy_from(x.rows(r, 1).to(DType::F32));
    }
    void write(const std::string& path, const std::vector<std::string>& labels) const {
        // a figure of NaN (a checkpoint whose weights went bad) is an error, not a black picture
        if (int64_t bad = -1; !all_finite(images, &bad)) fail("figures: ", path, ": image ", bad / (H * W), " holds NaN or Inf");
        write_png_grid(path, images, int(cols), 2, GridLabels{"", labels});
    }
};

// Prints a figure's column labels; the reverse chains end in the clean x_0, one step past t = 0.
void show_columns(const char* name, const std::vector<int64_t>& ts, bool ends_clean = false);
// The same labels, to be drawn above the columns: "t=999" ... ("x_0" for the clean end).
std::vector<std::string> column_labels(const std::vector<int64_t>& ts, bool ends_clean = false);

}  // namespace dl::ddpm
