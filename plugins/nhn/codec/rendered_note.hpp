// The rendered note (docs/rendered-note.md) as a C++ value, read from the event envelope JSON.
#pragma once

#include "nhn/codec/error.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace samband::nhn {

struct organisation_ref {
    std::string name;
    std::string her_id;
    std::string org_nr;  // optional
};

struct person_ref {
    std::string given_name;
    std::string family_name;
    std::string title;   // optional (therapist)
    std::string her_id;  // optional
    std::string hpr;     // optional
    std::string phone;   // optional
};

struct patient_ref {
    std::string id;
    std::string id_type;  // "FNR" or "DNR"
    std::string given_name;
    std::string family_name;
};

struct conversation_ref {
    std::string ref_to_parent;
    std::string ref_to_conversation;
};

struct note_section {
    std::string heading;
    std::string text;
};

struct attachment_meta {  // envelope "attachments" entry
    std::string id;
    std::string filename;
    std::string media_type;
    std::string sha256;  // hex; optional
    std::optional<std::uint64_t> size;
};

struct rendered_note {
    std::string event_id;    // envelope id
    std::string event_type;  // envelope type
    std::string kind;        // oppstartsnotat | avslutningsnotat | foresporsel | svar | henvisning
    std::string title;
    std::string message_type;  // optional; see serialize_options for the precedence
    std::optional<conversation_ref> conversation;
    std::vector<note_section> sections;
    std::string text;
    std::string issued_at;
    organisation_ref sender_organisation;
    organisation_ref sender_service;
    std::optional<person_ref> therapist;
    organisation_ref receiver_organisation;
    std::optional<person_ref> receiver_person;
    patient_ref patient;
    std::vector<attachment_meta> attachments;
};

// Reads the envelope JSON (UTF-8 validated; RapidJSON iterative parser, so no recursion limit is
// needed; size bounded by `max_bytes`). Missing required fields give missing_field with the JSON
// path, e.g. "note.receiver.organisation.her_id". A missing patient.id_type is derived from the
// number (D-number: first digit 4-7); a given one must agree with it.
codec_result<rendered_note> parse_rendered_note(std::string_view envelope_json,
                                                std::size_t max_bytes = 4 * 1024 * 1024);

}  // namespace samband::nhn
