// libFuzzer: an incoming MsgHead with a Dialogmelding 1.0/1.1 body (hardened parse, schema
// validation, field extraction) and the header peek used to answer unreadable messages.
#include "nhn_codec.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)fuzz_codec();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view xml(reinterpret_cast<const char*>(data), size);
    (void)fuzz_codec().parse(xml);
    (void)fuzz_codec().peek(xml);
    return 0;
}
