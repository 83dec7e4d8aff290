// Parser: an incoming MsgHead with a Dialogmelding 1.0/1.1 body (a GP's answer, a referral with
// attachments) → incoming_message, after hardened parsing and schema validation.
#pragma once

#include "nhn/codec/error.hpp"
#include "nhn/codec/xml.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace samband::nhn {

struct party {                  // MsgInfo/Sender or /Receiver
    std::string name;           // Organisation/OrganisationName
    std::string her_id;         // Organisation/Ident (TypeId V="HER")
    std::string org_nr;         // Organisation/Ident (TypeId V="ENH")
    std::string unit_name;      // Organisation/Organisation/OrganisationName
    std::string unit_her_id;    // Organisation/Organisation/Ident HER
    std::string person_name;    // HealthcareProfessional "Given Family" (either level)
    std::string person_her_id;  // HealthcareProfessional Ident HER
    std::string person_hpr;     // HealthcareProfessional Ident HPR
    bool person_is_gp = false;  // RoleToPatient V="6" (Fastlege, 9034)

    // The most specific HER-id: person, else unit, else organisation.
    const std::string& most_specific_her_id() const;
};

// The fields needed to answer a message with an Apprec. Readable from any well-formed MsgHead,
// even one that does not validate (see peek_header).
struct message_header {
    std::string msg_id;
    std::string msg_type;     // MsgInfo/Type/@V
    std::string msg_type_dn;  // MsgInfo/Type/@DN
    std::string gen_date;     // MsgInfo/GenDate
    party sender;
    party receiver;
};

struct incoming_attachment {
    std::string filename;   // RefDoc/Description (or Id)
    std::string mime_type;  // RefDoc/MimeType
    std::vector<std::uint8_t> bytes;
    std::string sha256;  // lower-case hex of bytes
};

struct incoming_message {
    message_header header;
    std::string dialog_version;                // "1.0" or "1.1"
    bool ack_requested = false;                // MsgInfo/Ack V="J"
    std::optional<std::string> ref_to_parent;  // MsgInfo/ConversationRef
    std::optional<std::string> ref_to_conversation;
    std::string patient_id;       // Patient/Ident FNR or DNR
    std::string patient_id_type;  // "FNR" / "DNR"
    std::string patient_given_name;
    std::string patient_family_name;
    std::string body_kind;   // "Notat" or "Foresporsel"
    std::string topic_code;  // Notat/TemaKodet/@V or Foresporsel/TypeForesp/@V
    std::string topic_code_system;
    std::string topic_text;   // TemaKodet/@DN
    std::string topic;        // Notat/Tema or Foresporsel/EmneSporsmal
    std::string text;         // TekstNotatInnhold or Sporsmal (text content)
    std::string note_date;    // Notat/DatoNotat
    std::string author_name;  // RollerRelatertNotat/HealthcareProfessional
    std::string author_hpr;
    bool author_is_gp = false;
    std::vector<incoming_attachment> attachments;

    // The sender is a GP: a HealthcareProfessional with RoleToPatient 6 (Fastlege) in the header
    // or in the body.
    bool from_gp() const { return header.sender.person_is_gp || author_is_gp; }
};

// Hardened parse, root check (MsgHead in the MsgHead 1.2 namespace), schema validation, then
// extraction. Refuses: a body that is not Dialogmelding 1.0/1.1 (unsupported_message), bad base64
// (bad_base64, naming the attachment), an attachment given as FileReference. Thread-safe.
codec_result<incoming_message> parse_message(const schema_set& schemas, std::string_view xml,
                                             const parse_limits& limits = {});

// Hardened parse and root check only: the header of a message that may not validate, so that a
// negative Apprec (T02) can still name the MsgId it answers. Fields it cannot find stay empty.
codec_result<message_header> peek_header(std::string_view xml, const parse_limits& limits = {});

// Like peek_header, but also reads the header of a MsgHead root in another namespace (a wrong or
// outdated MsgHead version), so the sender can be told T10 "Støtter ikke meldingsformatet".
// `foreign_namespace` is set to that namespace, empty when it was the right one.
codec_result<message_header> peek_header_any_namespace(std::string_view xml,
                                                       std::string& foreign_namespace,
                                                       const parse_limits& limits = {});

}  // namespace samband::nhn
