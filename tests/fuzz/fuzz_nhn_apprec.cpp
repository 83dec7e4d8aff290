// libFuzzer: an incoming Apprec 1.0/1.1 (application receipt).
#include "nhn_codec.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)fuzz_codec();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    (void)fuzz_codec().parse_receipt(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
