// libFuzzer target: JsonReader::value() and numbers(), ddpm::parse_json_numbers.
// What it does with the bytes is dl::fuzz::json in tests/fuzz/readers.h; `make fuzz` runs it.
#include "tests/fuzz/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dl::fuzz::json(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
