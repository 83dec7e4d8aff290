// libFuzzer: the one JSON entry point (samband::json::parse), strict and relaxed; what parses must
// serialise to JSON that parses again.
#include "codec/json.hpp"

#include <samband/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (bool relaxed : {false, true}) {
        samband::json::limits lim;
        lim.relaxed = relaxed;
        rapidjson::Document doc;
        if (!samband::json::parse(text, doc, lim).empty()) continue;
        const std::string out = samband::codec::to_json(doc);
        rapidjson::Document again;
        if (std::string err = samband::json::parse(out, again); !err.empty()) {
            std::fprintf(stderr, "re-parsing our own output failed: %s\n%s\n", err.c_str(),
                         out.c_str());
            std::abort();
        }
    }
    return 0;
}
