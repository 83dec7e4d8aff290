// Mapping of a parsed incoming message to a Samband event envelope (samband.event/1, DESIGN §4).
#pragma once

#include "nhn/codec/error.hpp"
#include "nhn/codec/parser.hpp"

#include <optional>
#include <string>

namespace samband::nhn {

struct event_context {
    // The EPJ's treatment id, found by the caller from the conversation (the request it answers).
    // Required for rph.info.replied; optional for rph.referral.received.
    std::string treatment_id;
    // Overrides the GP detection (RoleToPatient 6 in the message), e.g. from a Fastlegeregisteret
    // lookup of the sender's HER-id.
    std::optional<bool> sender_is_gp;
    std::string received_at;  // ISO-8601; empty: the message's GenDate
};

// Which event type a message maps to: DIALOG_SVAR → "rph.info.replied"; HENVISNING, or
// DIALOG_HELSEFAGLIG / DIALOG_NOTAT from a GP → "rph.referral.received"; anything else →
// unsupported_message (the caller keeps it for a person).
codec_result<std::string> event_type_for(const incoming_message& m, const event_context& ctx = {});

// The envelope JSON (no "id"/"source": the host assigns them): idempotency_key "nhn:" + MsgId,
// occurred_at = GenDate, subject {fnr|dnr, name}, data per type, attachments metadata
// (id "att-N", filename, media_type, size, sha256); the bytes travel beside it.
codec_result<std::string> to_event_json(const incoming_message& m, const event_context& ctx = {});

}  // namespace samband::nhn
