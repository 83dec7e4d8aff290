// libFuzzer target for the FHIR source's parser (fhir/inbound.hpp): hostile JSON must be refused
// with an error, never crash; what is accepted must be envelopes that parse and map back out.
// Build: clang++ -fsanitize=fuzzer,address,undefined (cmake -DSAMBAND_FUZZ=ON with clang).
#include "fhir/bundle.hpp"
#include "fhir/inbound.hpp"

#include <samband/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace samband::fhir;
    if (size == 0) return 0;
    static constexpr std::string_view targets[] = {"", "/$process-message",
                                                   "/QuestionnaireResponse", "/Observation"};
    const std::string_view target = targets[data[0] % 4];
    std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
    inbound_options opt;
    opt.allow_synthetic_ids = true;
    auto r = parse_incoming(target, body, opt);
    if (!r) {
        if (r.error().message.empty()) __builtin_trap();  // every refusal says why
        (void)operation_outcome(r.error());
        return 0;
    }
    for (const auto& e : *r) {
        rapidjson::Document d;
        if (!samband::json::parse(e.envelope_json, d).empty() || !d.IsObject()) __builtin_trap();
        // What came in maps back out as an Observation Bundle.
        std::string env = e.envelope_json;
        env.insert(1, "\"id\":\"0192f7c8-0000-7000-8000-000000000001\",");
        auto b = build_bundle(env, {});
        if (!b) __builtin_trap();
    }
    return 0;
}
