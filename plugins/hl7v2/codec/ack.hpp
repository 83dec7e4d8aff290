// HL7 v2 acknowledgements: building ACK messages (original and enhanced mode) and reading them.
#pragma once

#include "hl7v2/codec/message.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace samband::hl7v2 {

// Acknowledgement codes (table 0008).
enum class ack_code { AA, AE, AR, CA, CE, CR };
std::string_view to_string(ack_code c);
std::optional<ack_code> ack_code_from(std::string_view s);

// Whether an inbound message asks for enhanced-mode acknowledgements (MSH-15 or MSH-16 given).
bool enhanced_mode(const message& in);

// The code to answer with: `ok` (stored) / `rejected` (the message can never be taken: AR/CR)
// / otherwise an error (AE/CE: try again or fix), in original or enhanced mode.
enum class outcome { accepted, error, rejected };
ack_code ack_code_for(const message& in, outcome o);

// Whether the sender asked for this accept acknowledgement at all (MSH-15: AL, NE, ER, SU).
bool ack_wanted(const message& in, outcome o);

struct ack_options {
    std::string sending_application = "SAMBAND";
    std::string sending_facility;
    std::string timestamp;  // MSH-7 (YYYYMMDDHHMMSS); empty: now, UTC
};

// Builds the ACK for `in` (or for an unreadable message: `in` may be null). MSA-3 carries `text`
// (cut to 80 characters); on an error the ERR segment names the field (ERR-1 before v2.5, ERR-2,
// ERR-3, ERR-4 and ERR-8 from v2.5).
message build_ack(const message* in, ack_code code, std::string_view text, const parse_error* err,
                  const ack_options& opt = {});

// An ACK as a sink reads it: MSA-1, MSA-2, MSA-3 and ERR text.
struct ack_info {
    ack_code code;
    std::string control_id;  // MSA-2: the acknowledged message's MSH-10
    std::string text;        // MSA-3 and any ERR user text
};
result<ack_info> read_ack(const message& ack);

}  // namespace samband::hl7v2
