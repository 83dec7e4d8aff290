// Serialiser: a rendered note (+ attachment bytes) → MsgHead 1.2 with a Dialogmelding 1.1 body,
// validated against the official schemas before it is returned.
#pragma once

#include "nhn/codec/error.hpp"
#include "nhn/codec/rendered_note.hpp"
#include "nhn/codec/xml.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace samband::nhn {

// One attachment to send. OWNERSHIP: `bytes` is borrowed for the call.
struct outgoing_attachment {
    std::string id;        // the envelope attachment id; if it matches one, sha256/size are checked
    std::string filename;  // RefDoc/Description; defaults to the envelope's filename
    std::string media_type;  // RefDoc/MimeType; defaults to the envelope's media_type
    std::span<const std::uint8_t> bytes;
};

struct serialize_options {
    // MsgInfo/MsgId. Required. Must stay the same across the retries of one delivery: derive it
    // from the delivery id (derive_uuid(delivery_id)), never generate it per attempt.
    std::string msg_id;
    // MsgInfo/GenDate (xs:dateTime). Empty: the note's issued_at, or now (UTC) without one.
    std::string gen_date;
    // Per-receiver message type (configured for receivers that take only some types). Wins over
    // the note's message_type, which wins over the default for the note's kind.
    std::string receiver_message_type;
    bool request_apprec = true;  // MsgInfo/Ack V="J"
    std::vector<std::string> allowed_media_types{"application/pdf", "image/jpeg", "image/png"};
    // One attachment, decoded. libxml2 without XML_PARSE_HUGE keeps a text node under 10 MB, so a
    // receiver parsing safely cannot take much more than 7 MB in one Base64Container.
    std::size_t max_attachment_bytes = 7 * 1000 * 1000;
};

struct serialized_message {
    std::string xml;           // UTF-8, validated
    std::string msg_id;        // as given
    std::string message_type;  // the MsgInfo/Type chosen
};

// The message type for a note: receiver override, else note.message_type, else by kind
// (foresporsel → DIALOG_FORESPORSEL, svar → DIALOG_SVAR, anything else → DIALOG_HELSEFAGLIG).
codec_result<std::string> choose_message_type(const rendered_note& note,
                                              std::string_view receiver_message_type = {});

// Builds the message and validates the exact bytes (hardened parse + schema). An invalid message
// is never returned: the error is schema_invalid with the validator's line and message.
// Thread-safe.
codec_result<serialized_message> serialize_note(const schema_set& schemas,
                                                const rendered_note& note,
                                                std::span<const outgoing_attachment> attachments,
                                                const serialize_options& options,
                                                const parse_limits& limits = {});

// Builds the message without validating it (for tests and `samband preview`).
codec_result<serialized_message> build_note_xml(const rendered_note& note,
                                                std::span<const outgoing_attachment> attachments,
                                                const serialize_options& options);

// Hardened parse of `xml` and validation against `schemas` (what every outgoing message goes
// through). not_well_formed/dtd_forbidden/... or schema_invalid, with line and message.
codec_result<void> validate_xml(const schema_set& schemas, std::string_view xml,
                                const parse_limits& limits = {});

// Current UTC time as xs:dateTime ("2026-11-24T09:15:00Z").
std::string utc_now();

}  // namespace samband::nhn
