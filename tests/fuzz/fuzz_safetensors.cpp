// libFuzzer target: Safetensors::parse, its entries and a round trip.
// What it does with the bytes is dl::fuzz::safetensors in tests/fuzz/readers.h; `make fuzz` runs it.
#include "tests/fuzz/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dl::fuzz::safetensors(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
