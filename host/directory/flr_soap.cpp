// Fastlegeregisteret's SOAP text: the GetPatientGPDetails request and the reader of its answer
// (apart from the client, so the parser's fuzz target needs no HTTP client).
#include "directory/fastlegeregisteret.hpp"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "codec/xml.hpp"

#include <cctype>
#include <cstring>
#include <memory>

namespace samband::directory {

namespace {

constexpr std::size_t kMaxAnswer = 1024 * 1024;

const xmlNode* find(const xmlNode* n, const char* local) {
    for (; n; n = n->next) {
        if (n->type == XML_ELEMENT_NODE &&
            std::strcmp(reinterpret_cast<const char*>(n->name), local) == 0)
            return n;
        if (const xmlNode* c = find(n->children, local)) return c;
    }
    return nullptr;
}

std::string text_of(const xmlNode* n) {
    if (!n) return {};
    xmlChar* t = xmlNodeGetContent(n);
    std::string s = t ? reinterpret_cast<const char*>(t) : "";
    xmlFree(t);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    std::size_t b = 0;
    while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    return s.substr(b);
}

struct doc_deleter {
    void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};

}  // namespace

std::string flr_request(std::string_view patient_nin) {
    return std::string(
               "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
               "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>"
               "<GetPatientGPDetails xmlns=\"http://schemas.nhn.no/reg/flr\"><patientNin>") +
           codec::xml_escape(patient_nin) +
           "</patientNin></GetPatientGPDetails></s:Body></s:Envelope>";
}

namespace {
boost::system::result<flr_answer, std::string> flr_fail(std::string msg) {
    return boost::system::result<flr_answer, std::string>(boost::system::in_place_error,
                                                          std::move(msg));
}
}  // namespace

boost::system::result<flr_answer, std::string> parse_flr_response(std::string_view xml) {
    if (xml.size() > kMaxAnswer) return flr_fail(std::string("answer too large"));
    // Hostile input is normal input: no DTD, no entities, no network.
    if (xml.find("<!DOCTYPE") != std::string_view::npos ||
        xml.find("<!ENTITY") != std::string_view::npos)
        return flr_fail(std::string("answer has a DTD (refused)"));
    std::unique_ptr<xmlDoc, doc_deleter> doc(xmlReadMemory(
        xml.data(), static_cast<int>(xml.size()), "flr.xml", nullptr,
        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOBLANKS));
    if (!doc) return flr_fail(std::string("answer is not well-formed XML"));
    const xmlNode* root = xmlDocGetRootElement(doc.get());
    if (!root || std::strcmp(reinterpret_cast<const char*>(root->name), "Envelope") != 0)
        return flr_fail(std::string("answer is not a SOAP envelope"));
    if (const xmlNode* fault = find(root, "Fault")) {
        std::string msg = text_of(find(fault, "Message"));
        if (msg.empty()) msg = text_of(find(fault, "Text"));
        if (msg.empty()) msg = text_of(find(fault, "faultstring"));
        if (msg.find("ikke tilknyttet fastlegekontrakt") != std::string::npos) return flr_answer{};
        return flr_fail("fault: " + (msg.empty() ? std::string("(no text)") : msg));
    }
    const xmlNode* result = find(root, "GetPatientGPDetailsResult");
    if (!result) return flr_fail(std::string("answer has no GetPatientGPDetailsResult"));
    std::string her = text_of(find(result->children, "GPHerId"));
    if (her.empty()) return flr_answer{};
    if (her.find_first_not_of("0123456789") != std::string::npos)
        return flr_fail("GPHerId \"" + her + "\" is not a number");
    return flr_answer{her};
}

}  // namespace samband::directory
