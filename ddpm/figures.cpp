// build/figures' column labels (ddpm/figures.h).
#include "ddpm/figures.h"

#include <cstdio>

namespace dl::ddpm {

void show_columns(const char* name, const std::vector<int64_t>& ts, bool ends_clean) {
    std::printf("%-18s columns at t =", name);
    for (size_t i = 0; i < ts.size(); i++)
        if (ends_clean && i + 1 == ts.size()) std::printf(", then x_0");
        else std::printf(" %lld", (long long)ts[i]);
    std::printf("\n");
}

std::vector<std::string> column_labels(const std::vector<int64_t>& ts, bool ends_clean) {
    std::vector<std::string> labels;
    for (size_t i = 0; i < ts.size(); i++) labels.push_back(ends_clean && i + 1 == ts.size() ? "x_0" : "t=" + std::to_string(ts[i]));
    return labels;
}

}  // namespace dl::ddpm
