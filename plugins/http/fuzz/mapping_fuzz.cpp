// libFuzzer target for the http source's JSON Pointer mapping: any body either maps to an
// envelope that parses back as a JSON object, or is refused with a reason; nothing else.
#include "mapping.hpp"

#include <samband/json.hpp>

#include <cstdlib>

namespace {

const samband::http_map::mapping& rules() {
    static const samband::http_map::mapping m = [] {
        rapidjson::Document d;
        samband::json::parse(R"({"path":"/v1/acme","type":"rph.treatment.started",
            "idempotency_key":"/id","occurred_at":"/at",
            "fields":{"/subject/fnr":"/p/ssn","/data/treatment_id":"/e/id",
                      "/data/goals":{"from":"/e/goals","optional":true},
                      "/data/list/0":{"from":"/x","optional":true},
                      "/data/consent_gp":{"value":"given"}}})",
                             d);
        return samband::http_map::parse_mapping(d, "mappings[0]");
    }();
    return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    std::string_view body(reinterpret_cast<const char*>(data), size);
    auto r = samband::http_map::map_body(rules(), body, "", "2026-12-01T00:00:00Z");
    if (r.envelope.empty() == r.error.empty()) std::abort();  // exactly one of the two
    if (!r.envelope.empty()) {
        rapidjson::Document d;
        if (!samband::json::parse(r.envelope, d).empty() || !d.IsObject()) std::abort();
    }
    return 0;
}
