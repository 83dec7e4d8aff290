// HL7 v2 ↔ Samband events: the RPH mappings (REF^I12, ORU^R01, MDM^T02 in; MDM^T02, ORU^R01 out).
#pragma once

#include "hl7v2/codec/message.hpp"

#include <string>
#include <vector>

namespace samband::hl7v2 {

struct inbound_attachment {
    std::string filename;
    std::string media_type;
    std::string bytes;
};

// One event a message becomes (an ORU^R01 with PHQ-9 and GAD-7 becomes two).
struct inbound_event {
    std::string envelope_json;  // without id and source
    std::vector<inbound_attachment> attachments;
};

struct inbound_options {
    bool allow_synthetic_ids = false;          // test fødselsnummer (month + 40/80)
    std::string session_kind = "individuell";  // rph.session.attended kind for MDM^T02
    std::size_t max_attachment_bytes = 64u * 1024 * 1024;
};

// The error's code says how to answer: unsupported_message_type/event/version/processing id →
// AR/CR; everything else → AE/CE.
result<std::vector<inbound_event>> map_inbound(const message& m, const inbound_options& opt = {});

// HL7 DTM (YYYY[MM[DD[HHMM[SS[.S…]]]]][±ZZZZ]) → ISO-8601; empty on a malformed value.
std::string iso_from_dtm(std::string_view dtm);
// ISO-8601 date or date-time → HL7 DTM; empty on a malformed value.
std::string dtm_from_iso(std::string_view iso);

struct outbound_options {
    std::string sending_application = "SAMBAND";
    std::string sending_facility;
    std::string receiving_application;
    std::string receiving_facility;
    std::string version = "2.5";
    charset chars = charset::utf8;
    std::string processing_id = "P";
};

struct outbound_attachment {
    std::string filename;
    std::string media_type;
    std::string bytes;
};

// Builds the message for an event: rph.assessment.scored → ORU^R01, other rph.* events → MDM^T02
// with the event's text in OBX TX and attachments as OBX ED (base64). `control_id` becomes MSH-10
// (stable across retries). Errors name what the event lacks.
result<message> map_outbound(std::string_view envelope_json,
                             const std::vector<outbound_attachment>& attachments,
                             std::string_view control_id, std::string_view timestamp,
                             const outbound_options& opt = {});

}  // namespace samband::hl7v2
