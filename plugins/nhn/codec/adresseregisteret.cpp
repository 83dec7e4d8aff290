#include "nhn/codec/adresseregisteret.hpp"

#include "nhn/codec/names.hpp"
#include "nhn/codec/xml_nav.hpp"

#include <rapidjson/document.h>

#include <libxml/tree.h>

namespace samband::nhn::ar {

namespace {

using namespace samband::nhn::detail;

constexpr std::string_view soap_ns = "http://www.w3.org/2003/05/soap-envelope";
constexpr std::string_view xsi_ns = "http://www.w3.org/2001/XMLSchema-instance";

std::string field(const xmlNode* n, std::string_view local) {
    return trimmed(text(child(n, local, party_ns)));
}

std::string her_or_empty(std::string v) {
    return v.empty() || v == "-1" || v == "0" ? "" : v;
}

bool has_active_edi_address(const xmlNode* result) {
    const xmlNode* list = child(result, "ElectronicAddresses", party_ns);
    for (auto* a = child(list, "ElectronicAddress", common_ns); a;
         a = next_sibling(a, "ElectronicAddress", common_ns)) {
        const xmlNode* type = child(a, "Type", common_ns);
        std::string code = trimmed(text(child(a, "TypeCodeValue", common_ns)));
        if (code.empty()) code = trimmed(text(child(type, "CodeValue", common_ns)));
        std::string active = trimmed(text(child(type, "Active", common_ns)));
        if (code == "E_EDI" && active != "false" &&
            !trimmed(text(child(a, "Address", common_ns))).empty())
            return true;
    }
    return false;
}

}  // namespace

bool communication_party::can_receive(std::string* reason) const {
    const char* why = !active                      ? "is not active in the Adresseregisteret"
                      : !valid_communication_party ? "is not a valid communication party"
                      : !has_edi_address           ? "has no EDI address"
                                                   : nullptr;
    if (why != nullptr && reason != nullptr) {
        std::string who = name.empty() ? type : name;
        *reason = "HER-id " + her_id + (who.empty() ? "" : " (" + who + ")") + " " + why;
    }
    return why == nullptr;
}

std::string details_request(std::string_view her_id) {
    return R"(<?xml version="1.0" encoding="utf-8"?>)"
           R"(<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" )"
           R"(xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header>)"
           R"(<a:Action s:mustUnderstand="1">)" +
           std::string(soap_action) +
           R"(</a:Action></s:Header><s:Body>)"
           R"(<GetCommunicationPartyDetails xmlns="http://register.nhn.no/CommunicationParty">)"
           R"(<herId>)" +
           std::string(her_id) + R"(</herId></GetCommunicationPartyDetails></s:Body></s:Envelope>)";
}

codec_result<lookup_answer> parse_details_response(std::string_view xml,
                                                   const parse_limits& limits) {
    auto doc = parse_xml(xml, limits);
    if (!doc) return doc.error();
    const xmlNode* env = xmlDocGetRootElement(doc->get());
    if (!is_element(env, "Envelope", soap_ns))
        return make_error(codec_errc::wrong_root, "not a SOAP 1.2 envelope");
    const xmlNode* body = child(env, "Body", soap_ns);
    if (const xmlNode* fault = child(body, "Fault", soap_ns)) {
        const xmlNode* generic = child(child(fault, "Detail", soap_ns), "GenericFault", common_ns);
        std::string code = trimmed(text(child(generic, "ErrorCode", common_ns)));
        if (code == "InvalidHerIdSupplied") {
            lookup_answer a;
            a.fault_code = code;
            return a;
        }
        std::string reason = trimmed(text(child(child(fault, "Reason", soap_ns), "Text", soap_ns)));
        if (reason.size() > 300) reason.resize(300);
        return make_error(
            codec_errc::unsupported_message,
            "Adresseregisteret fault " + (code.empty() ? "(no code)" : code) + ": " + reason);
    }
    const xmlNode* result = child(child(body, "GetCommunicationPartyDetailsResponse", party_ns),
                                  "GetCommunicationPartyDetailsResult", party_ns);
    if (result == nullptr)
        return make_error(codec_errc::missing_field,
                          "no GetCommunicationPartyDetailsResult in the answer");
    lookup_answer a;
    a.found = true;
    communication_party& p = a.party;
    p.her_id = her_or_empty(field(result, "HerId"));
    if (p.her_id.empty()) return make_error(codec_errc::missing_field, "the answer names no HerId");
    xmlChar* t = xmlGetNsProp(result, reinterpret_cast<const xmlChar*>("type"),
                              reinterpret_cast<const xmlChar*>(xsi_ns.data()));
    if (t != nullptr) {
        p.type = reinterpret_cast<const char*>(t);
        xmlFree(t);
        if (auto colon = p.type.find(':'); colon != std::string::npos) p.type.erase(0, colon + 1);
    }
    if (p.type.empty()) p.type = field(result, "Type");
    p.display_name = field(result, "DisplayName");
    p.name = field(result, "Name");
    if (p.name.empty()) p.name = p.display_name;
    p.active = field(result, "Active") == "true";
    p.valid_communication_party = field(result, "IsValidCommunicationParty") == "true";
    p.has_edi_address = has_active_edi_address(result);
    p.parent_her_id = her_or_empty(field(result, "ParentHerId"));
    p.parent_name = field(result, "ParentName");
    return a;
}

codec_result<std::map<std::string, file_party>> parse_parties_file(std::string_view json) {
    rapidjson::Document doc;
    doc.Parse(json.data(), json.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("parties") ||
        !doc["parties"].IsArray())
        return make_error(codec_errc::invalid_input, "expected {\"parties\": [{\"her_id\": …}]}");
    std::map<std::string, file_party> out;
    const auto& parties = doc["parties"];
    for (rapidjson::SizeType i = 0; i < parties.Size(); ++i) {
        const auto& p = parties[i];
        std::string at = "parties[" + std::to_string(i) + "]";
        if (!p.IsObject() || !p.HasMember("her_id") || !p["her_id"].IsString())
            return make_error(codec_errc::invalid_input, at + " needs a string her_id");
        file_party f;
        communication_party& c = f.party;
        c.her_id = p["her_id"].GetString();
        if (p.HasMember("name") && p["name"].IsString()) c.name = p["name"].GetString();
        for (auto [key, flag] :
             {std::pair{"active", &c.active}, std::pair{"valid", &c.valid_communication_party},
              std::pair{"edi_address", &c.has_edi_address}}) {
            if (!p.HasMember(key)) continue;
            if (!p[key].IsBool())
                return make_error(codec_errc::invalid_input,
                                  at + "." + key + " must be true or false");
            *flag = p[key].GetBool();
        }
        if (p.HasMember("message_types")) {
            const auto& types = p["message_types"];
            if (!types.IsArray())
                return make_error(codec_errc::invalid_input,
                                  at + ".message_types must be a list of message types");
            for (const auto& m : types.GetArray()) {
                std::string type = m.IsString() ? m.GetString() : "";
                if (type != names::dialog_helsefaglig && type != names::dialog_foresporsel &&
                    type != names::dialog_svar)
                    return make_error(codec_errc::invalid_input,
                                      at + ".message_types: \"" + type +
                                          "\" is not one of DIALOG_HELSEFAGLIG, "
                                          "DIALOG_FORESPORSEL, DIALOG_SVAR");
                f.message_types.push_back(type);
            }
        }
        out[c.her_id] = std::move(f);
    }
    return out;
}

}  // namespace samband::nhn::ar
