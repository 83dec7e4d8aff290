// The source's parser: FHIR R4 JSON posted to Samband (a resource, a transaction/batch/collection
// Bundle, or a message Bundle to $process-message) → RPH event envelopes, or an error naming the
// element (FHIRPath-like, e.g. "Bundle.entry[1].resource.item[3].answer[0]").
#pragma once

#include "fhir/common.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace samband::fhir {

struct inbound_options {
    std::size_t max_depth = 32;                // JSON nesting
    std::size_t max_bytes = 4u * 1024 * 1024;  // the request body
    std::size_t max_entries = 100;             // Bundle entries
    bool allow_synthetic_ids = false;  // synthetic test fødselsnummer (never in production)
};

struct inbound_event {
    std::string envelope_json;  // samband.event/1, type rph.assessment.scored
    std::string path;           // where it came from, e.g. "Bundle.entry[0].resource"
};

// `target` is the request path below the endpoint's base: "" or "/" (a resource or a Bundle),
// "/$process-message" (a message Bundle), or "/<ResourceType>" (that type only).
//
// Accepted: QuestionnaireResponse for PHQ-9 (questionnaire naming LOINC 44249-1 or "PHQ-9") or
// GAD-7 (69737-5 or "GAD-7"), status completed or amended, every item answered 0–3 (valueInteger,
// or valueCoding whose code is the number), scored by the item sum; Observation with LOINC 44261-6
// or 70274-6 and a whole valueInteger in range. The patient comes from subject.identifier
// (fødselsnummer or D-number system) or from a Patient the subject references in the same
// Bundle; the treatment id from basedOn or encounter (identifier value, or the reference's id).
// Patient and MessageHeader entries are read, not turned into events. Anything else, an unknown
// element, or a value out of range is an error; nothing is half accepted.
result<std::vector<inbound_event>> parse_incoming(std::string_view target, std::string_view body,
                                                  const inbound_options& options = {});

// The answer to an accepted $process-message: a message Bundle whose MessageHeader answers the
// request's (response.identifier = its id, code ok, the same event), with `text` in an
// informational OperationOutcome. `request_body` must be a message Bundle parse_incoming accepted.
std::string message_response(std::string_view request_body, std::string_view text);

// An OperationOutcome (severity error, code `code`) with the error's text and expression.
std::string operation_outcome(const mapping_error& e, std::string_view code = "invalid");
// An OperationOutcome with one information issue.
std::string operation_outcome_info(std::string_view text);

}  // namespace samband::fhir
