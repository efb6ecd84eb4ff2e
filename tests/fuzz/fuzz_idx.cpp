// libFuzzer target: IDX images and labels (ddpm::parse_idx_images, parse_idx_labels).
// What it does with the bytes is dl::fuzz::idx in tests/fuzz/readers.h; `make fuzz` runs it.
#include "tests/fuzz/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dl::fuzz::idx(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
