// libFuzzer target: decode_npy and a round trip through encode_npy.
// What it does with the bytes is dl::fuzz::npy in tests/fuzz/readers.h; `make fuzz` runs it.
#include "tests/fuzz/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dl::fuzz::npy(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
