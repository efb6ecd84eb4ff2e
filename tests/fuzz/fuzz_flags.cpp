// libFuzzer target: cli::Args over a NUL-separated argv.
// What it does with the bytes is dl::fuzz::flags in tests/fuzz/readers.h; `make fuzz` runs it.
#include "tests/fuzz/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dl::fuzz::flags(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
