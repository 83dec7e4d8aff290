// Internal: small helpers to walk a libxml2 tree by namespace and local name.
#pragma once

#include <libxml/tree.h>

#include <cstring>
#include <string>
#include <string_view>

namespace samband::nhn::detail {

inline bool is_element(const xmlNode* n, std::string_view local, std::string_view ns) {
    if (n == nullptr || n->type != XML_ELEMENT_NODE) return false;
    if (local != reinterpret_cast<const char*>(n->name)) return false;
    const char* href = n->ns != nullptr ? reinterpret_cast<const char*>(n->ns->href) : "";
    return ns == href;
}

inline const xmlNode* child(const xmlNode* parent, std::string_view local, std::string_view ns) {
    if (parent == nullptr) return nullptr;
    for (const xmlNode* c = parent->children; c != nullptr; c = c->next)
        if (is_element(c, local, ns)) return c;
    return nullptr;
}

inline const xmlNode* next_sibling(const xmlNode* n, std::string_view local, std::string_view ns) {
    for (const xmlNode* c = n->next; c != nullptr; c = c->next)
        if (is_element(c, local, ns)) return c;
    return nullptr;
}

// Iterate: for (auto* c = child(p, "X", ns); c; c = next_sibling(c, "X", ns))

inline std::string text(const xmlNode* n) {
    if (n == nullptr) return {};
    xmlChar* s = xmlNodeGetContent(n);
    if (s == nullptr) return {};
    std::string out(reinterpret_cast<const char*>(s));
    xmlFree(s);
    return out;
}

inline std::string trimmed(std::string s) {
    auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    std::size_t b = 0, e = s.size();
    while (b < e && ws(s[b])) ++b;
    while (e > b && ws(s[e - 1])) --e;
    return s.substr(b, e - b);
}

inline std::string child_text(const xmlNode* parent, std::string_view local, std::string_view ns) {
    return trimmed(text(child(parent, local, ns)));
}

// An unqualified attribute (V, DN, S, OT).
inline std::string attr(const xmlNode* n, const char* name) {
    if (n == nullptr) return {};
    for (const xmlAttr* a = n->properties; a != nullptr; a = a->next) {
        if (a->ns == nullptr && std::strcmp(reinterpret_cast<const char*>(a->name), name) == 0) {
            xmlChar* v = xmlNodeListGetString(n->doc, a->children, 1);
            if (v == nullptr) return {};
            std::string out(reinterpret_cast<const char*>(v));
            xmlFree(v);
            return out;
        }
    }
    return {};
}

inline const xmlChar* x(const char* s) {
    return reinterpret_cast<const xmlChar*>(s);
}

}  // namespace samband::nhn::detail
