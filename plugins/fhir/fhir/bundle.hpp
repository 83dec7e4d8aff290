// The sink's mapping: an RPH event (with the rph transform's note or journal entry) → one FHIR R4
// transaction Bundle whose entries are conditional creates, so a repeat never duplicates.
#pragma once

#include "fhir/common.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace samband::fhir {

struct outbound_attachment {
    std::string filename;
    std::string media_type;
    std::string bytes;
};

struct bundle_options {
    // The system of the identifier every resource gets (its value is derived from the event id
    // and the resource's role); the conditional create searches on it.
    std::string identifier_system = "urn:samband:id";
};

struct built_bundle {
    std::string json;                     // the transaction Bundle
    std::vector<std::string> entry_urls;  // "Communication", "DocumentReference", … in order
    std::string primary_identifier;       // the first entry's identifier value
};

// Maps the envelope. Errors name the envelope field (e.g. "/subject: fnr or dnr is required").
//   note (oppstartsnotat, avslutningsnotat, foresporsel, svar) → Communication
//   note kind henvisning, or rph.referral.received             → ServiceRequest + DocumentReference
//   rph.assessment.scored → Observation (LOINC total + band) and QuestionnaireResponse (items)
//   journal, or rph.session.attended                           → DocumentReference
// Attachments (in the envelope's order) travel inline as base64 with size and SHA-1 hash.
result<built_bundle> build_bundle(std::string_view envelope_json,
                                  const std::vector<outbound_attachment>& attachments,
                                  const bundle_options& options = {});

}  // namespace samband::fhir
