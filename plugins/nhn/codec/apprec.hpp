// Apprec (application receipt) 1.0/1.1: parse an incoming one into a receipt, build our own 1.1.
#pragma once

#include "nhn/codec/apprec_codes.hpp"
#include "nhn/codec/error.hpp"
#include "nhn/codec/parser.hpp"
#include "nhn/codec/xml.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace samband::nhn {

enum class apprec_status {
    ok = 1,              // "OK"
    rejected = 2,        // "Avvist"
    ok_with_errors = 3,  // "OK, feil i delmelding"
};

std::string_view status_text(apprec_status s) noexcept;  // the Norwegian DN

struct apprec_error {
    std::string code;         // Error/@V, e.g. "E21"
    std::string text;         // Error/@DN
    std::string code_system;  // Error/@S (8221; other lists such as 8223 occur)
    std::string detail;       // Error/@OT
};

struct apprec_party {  // Sender/HCP/Inst (and its first Dept and HCPerson)
    std::string name;
    std::string her_id;   // Inst/Id when Inst/TypeId V="HER"
    std::string id;       // Inst/Id whatever its type
    std::string id_type;  // Inst/TypeId/@V (HER, ENH, ...)
    std::string dept_name;
    std::string dept_her_id;
    std::string person_name;    // Inst/HCPerson/Name (e.g. the GP)
    std::string person_her_id;  // Inst/HCPerson/Id when its TypeId V="HER"

    // Whether `her` is one of this party's HER-ids (institution, department or person).
    bool has_her_id(std::string_view her) const {
        return !her.empty() && (her == her_id || her == dept_her_id || her == person_her_id);
    }
};

struct receipt {
    std::string version;  // "1.0" or "1.1"
    std::string id;       // the Apprec's own Id
    std::string gen_date;
    apprec_party sender;    // who sends the receipt (the receiver of the original)
    apprec_party receiver;  // who gets it (the original's sender)
    apprec_status status = apprec_status::ok;
    std::string status_dn;
    std::vector<apprec_error> errors;
    std::string original_msg_id;  // OriginalMsgId/Id: correlates with our MsgId
    std::string original_msg_type;
    std::string original_issue_date;
};

// Hardened parse, root check (AppRec in the 1.0 or 1.1 namespace), schema validation, then
// extraction. A Status outside 1-3 is refused (unsupported_message naming the value). Thread-safe.
codec_result<receipt> parse_apprec(const schema_set& schemas, std::string_view xml,
                                   const parse_limits& limits = {});

// What goes into an Apprec 1.1 that we send.
struct apprec_request {
    std::string id;        // empty: derive_uuid("apprec:" + original_msg_id), stable across retries
    std::string gen_date;  // empty: now (UTC)
    apprec_party sender;   // us: name + her_id (Inst), optional dept_name + dept_her_id (Dept)
    apprec_party receiver;  // the original's sender
    apprec_status status = apprec_status::ok;
    std::vector<apprec_error> errors;  // required when rejected; empty when ok
    std::string original_msg_id;
    std::string original_msg_type;     // e.g. DIALOG_SVAR
    std::string original_msg_type_dn;  // optional
    std::string original_issue_date;   // xs:dateTime; empty: gen_date
};

// An Apprec request answering `header` (sender and receiver swapped, each with organisation,
// unit and person as the MsgHead named them: the GP as well as the office), with status and
// errors.
apprec_request apprec_for(const message_header& header, apprec_status status,
                          std::vector<apprec_error> errors = {});

// The 8221 error for a codec error that made an incoming message unusable:
// not_well_formed/dtd_forbidden/too_deep/attribute_too_large/unsupported_encoding/too_large → T01,
// schema_invalid → T02, wrong_root/unsupported_message → T10, bad_base64 → T99, else X99.
// The detail (OT) carries the codec's message.
apprec_error apprec_error_for(const codec_error& e);

apprec_error make_apprec_error(const apprec_codes::code& c, std::string detail = {});

// Builds an Apprec 1.1 and validates it against the schemas (never returns an invalid one).
codec_result<std::string> build_apprec(const schema_set& schemas, const apprec_request& request,
                                       const parse_limits& limits = {});

}  // namespace samband::nhn
