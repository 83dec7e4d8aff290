// libFuzzer: the rendered note in an envelope, as the nhn plugin reads it, and its serialisation
// to a schema-valid MsgHead + Dialogmelding.
#include "nhn_codec.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)fuzz_codec();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto note = samband::nhn::parse_rendered_note(
        std::string_view(reinterpret_cast<const char*>(data), size));
    if (!note) return 0;
    samband::nhn::serialize_options o;
    o.msg_id = "0b6d9c4e-6f0f-4c1e-9f3a-2f1c8e7d5a10";
    (void)fuzz_codec().serialize(*note, {}, o);
    return 0;
}
