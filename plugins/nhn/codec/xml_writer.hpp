// Internal: RAII document and small builders over the libxml2 tree API (content is escaped).
#pragma once

#include "nhn/codec/error.hpp"
#include "nhn/codec/xml.hpp"
#include "nhn/codec/xml_nav.hpp"

#include <string>
#include <string_view>

namespace samband::nhn::detail {

// Replaces characters XML 1.0 cannot carry (C0 controls other than tab, LF, CR) with a space.
inline std::string xml_safe(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 && u != '\t' && u != '\n' && u != '\r') c = ' ';
    }
    return out;
}

inline xmlNodePtr add(xmlNodePtr parent, xmlNsPtr ns, const char* name) {
    return xmlNewChild(parent, ns, x(name), nullptr);
}

inline xmlNodePtr add_text(xmlNodePtr parent, xmlNsPtr ns, const char* name,
                           std::string_view text) {
    std::string safe = xml_safe(text);
    return xmlNewTextChild(parent, ns, x(name), x(safe.c_str()));
}

inline void set_attr(xmlNodePtr node, const char* name, std::string_view value) {
    std::string safe = xml_safe(value);
    xmlNewProp(node, x(name), x(safe.c_str()));
}

// <name V=".." [S=".."] [DN=".."]/>
inline xmlNodePtr add_code(xmlNodePtr parent, xmlNsPtr ns, const char* name, std::string_view v,
                           std::string_view dn = {}, std::string_view s = {}) {
    xmlNodePtr n = add(parent, ns, name);
    set_attr(n, "V", v);
    if (!s.empty()) set_attr(n, "S", s);
    if (!dn.empty()) set_attr(n, "DN", dn);
    return n;
}

inline codec_result<std::string> dump(xmlDoc* doc, bool format = true) {
    xmlChar* mem = nullptr;
    int size = 0;
    xmlDocDumpFormatMemoryEnc(doc, &mem, &size, "UTF-8", format ? 1 : 0);
    if (mem == nullptr || size <= 0) {
        if (mem != nullptr) xmlFree(mem);
        return make_error(codec_errc::internal, "libxml2: cannot serialise the document");
    }
    std::string out(reinterpret_cast<const char*>(mem), static_cast<std::size_t>(size));
    xmlFree(mem);
    return out;
}

}  // namespace samband::nhn::detail
