// Adresseregisteret (NHN's address register, SOAP): the request for one communication party and
// a hardened reader of its GetCommunicationPartyDetails answer.
#pragma once

#include "nhn/codec/error.hpp"
#include "nhn/codec/xml.hpp"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace samband::nhn::ar {

inline constexpr std::string_view party_ns = "http://register.nhn.no/CommunicationParty";
inline constexpr std::string_view common_ns = "http://register.nhn.no/Common";
inline constexpr std::string_view soap_action =
    "http://register.nhn.no/CommunicationParty/ICommunicationPartyService/"
    "GetCommunicationPartyDetails";

// One communication party as the register describes it.
struct communication_party {
    std::string her_id;
    std::string
        type;  // Organization | OrganizationPerson | Service (the result's i:type, else Type)
    std::string name;  // Name (else DisplayName)
    std::string display_name;
    bool active = false;
    bool valid_communication_party = false;  // IsValidCommunicationParty
    bool has_edi_address = false;            // an active ElectronicAddress of type E_EDI
    std::string parent_her_id;               // empty when the register says -1 or nothing
    std::string parent_name;

    // Whether messages can be addressed to it: active, a valid communication party, with an EDI
    // address. `reason` says what is missing.
    bool can_receive(std::string* reason = nullptr) const;
};

// The answer: a party, or not_found (the register's InvalidHerIdSupplied fault), or an error.
struct lookup_answer {
    bool found = false;
    communication_party party;
    std::string fault_code;  // e.g. InvalidHerIdSupplied
};

// The SOAP 1.2 envelope asking for `her_id` (digits only; checked by the caller).
std::string details_request(std::string_view her_id);

// Reads an answer (hardened parse_xml; no schema: the register's own WSDL types are not
// validated). A SOAP fault naming InvalidHerIdSupplied is `found = false`; any other fault or an
// unreadable answer is an error naming it.
codec_result<lookup_answer> parse_details_response(std::string_view xml,
                                                   const parse_limits& limits = {});

// One entry of the local parties file, the fallback when the register cannot be reached.
struct file_party {
    communication_party party;
    std::vector<std::string> message_types;  // Dialogmelding 1.1 types it takes; empty = unknown
};

// Reads the local parties file's text:
//   {"parties": [{"her_id": "9900101", "name": "…", "active": true, "valid": true,
//                 "edi_address": true, "message_types": ["DIALOG_HELSEFAGLIG"]}]}
// A missing flag is false. An error names the entry and the field ("parties[0] needs a string
// her_id", "parties[1].active must be true or false", an unknown message type).
codec_result<std::map<std::string, file_party>> parse_parties_file(std::string_view json);

}  // namespace samband::nhn::ar
