// A vendor's JSON mapped to a Samband envelope by JSON Pointer rules from the endpoint's config.
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace samband::http_map {

// One rule: the envelope's `target` pointer gets the vendor's value at `from`, or a constant.
struct field_rule {
    std::string target;                   // e.g. "/subject/fnr"
    std::string from;                     // e.g. "/patient/nationalId"; empty with `constant`
    std::optional<std::string> constant;  // the JSON text of a fixed value
    bool optional = false;                // a missing `from` leaves the target out
};

// One vendor endpoint: requests to `path` become events of `type`.
struct mapping {
    std::string path;              // the URL path, e.g. "/v1/vendor/treatment-started"
    std::string type;              // e.g. "rph.treatment.started"
    std::string key_from;          // pointer to the vendor's id (used when no Idempotency-Key)
    std::string occurred_at_from;  // pointer to the time (else the time of receipt)
    std::vector<field_rule> fields;
};

// Reads one entry of the config's "mappings" array; throws std::invalid_argument naming the
// JSON path (`where`, e.g. "mappings[0]") and the problem.
mapping parse_mapping(const rapidjson::Value& v, const std::string& where);

struct result {
    std::string envelope;  // the envelope JSON; empty on error
    std::string error;     // names the vendor's field (a JSON Pointer) and the problem
};

// Maps `body` (the vendor's JSON) by `m`. `idempotency_key` (the request's header, may be empty)
// wins over `key_from`; `now_iso` is used when the rule has no occurred_at_from. The body is
// parsed with samband::json's depth and size limits.
result map_body(const mapping& m, std::string_view body, std::string_view idempotency_key,
                std::string_view now_iso);

}  // namespace samband::http_map
