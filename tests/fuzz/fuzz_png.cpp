// libFuzzer target: decode_png, and zlib_inflate over the same bytes.
// What it does with the bytes is dl::fuzz::png in tests/fuzz/readers.h; `make fuzz` runs it.
#include "tests/fuzz/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dl::fuzz::png(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
