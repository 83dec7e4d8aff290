// libFuzzer: an event envelope as the file source, the admin API and every other source submit
// it: ingest's validation against the shipped event schemas.
#include "codec/json.hpp"
#include "ingest/ingest.hpp"

#include <cstdint>
#include <memory>
#include <string_view>

namespace {
const samband::codec::schema_set* schemas = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    static auto set = samband::codec::schema_set::load_dir(SAMBAND_SOURCE_DIR "/config/schemas");
    schemas = &set;
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (bool synthetic : {true, false}) {
        samband::ingest::options opts;
        opts.allow_synthetic_ids = synthetic;
        std::vector<samband::store::attachment_input> atts;
        auto r = samband::ingest::validate_envelope(*schemas, opts, "fuzz", text, &atts);
        if (r) (void)samband::codec::to_json(*r);
    }
    return 0;
}
