// Hardened XML parsing (DESIGN §9) and the compiled, shared set of official NHN schemas.
#pragma once

#include "nhn/codec/error.hpp"

#include <libxml/tree.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

struct _xmlSchema;

namespace samband::nhn {

// Limits applied to every document we parse. The defaults suit MsgHead messages with attachments.
struct parse_limits {
    std::size_t max_bytes = 20 * 1024 * 1024;  // whole document, checked before parsing
    unsigned max_depth = 64;                   // element nesting (MsgHead needs about 12)
    std::size_t max_attribute_bytes = 64 * 1024;
    // Elements + attributes: bounds the tree's memory (20 MB of "<a/>" would be 5 million nodes).
    std::size_t max_nodes = 200 * 1000;
    // Attributes on one element, counted in a linear pre-scan before libxml2 sees the bytes:
    // libxml2 checks each new attribute of a start tag against all earlier ones (quadratic), so
    // without this one element with 200,000 attributes takes minutes to refuse.
    std::size_t max_attributes_per_element = 256;
};

struct xml_doc_free {
    void operator()(xmlDoc* doc) const noexcept { xmlFreeDoc(doc); }
};
using xml_doc_ptr = std::unique_ptr<xmlDoc, xml_doc_free>;

// Parses `bytes` with libxml2 the hardened way: XML_PARSE_NONET and never NOENT, DTDLOAD,
// DTDATTR, HUGE or XInclude; a DOCTYPE stops the parser at once (dtd_forbidden), so no entity is
// ever declared or expanded; size, depth and attribute-length limits; declared encoding must be
// UTF-8 or ISO-8859-1 (a UTF-16/32 byte-order mark is refused). Errors carry libxml2's first
// message and line. Thread-safe; no libxml2 global state is touched.
codec_result<xml_doc_ptr> parse_xml(std::string_view bytes, const parse_limits& limits = {});

// The official schemas, compiled once (xmlSchemaParse of all-messages.xsd) and shared read-only.
// validate() is thread-safe: each call uses its own xmlSchemaValidCtxt.
class schema_set {
public:
    // Loads `dir`/`root_file`. Before libxml2 compiles anything, every XSD reachable through
    // import/include/redefine is parsed with parse_xml() and each schemaLocation must be a plain
    // file name inside `dir` (no scheme, no path): libxml2 2.9.14 loads schema documents without
    // XML_PARSE_NONET, so this check is what keeps schema loading off the network.
    // Throws std::runtime_error naming the file and the problem.
    explicit schema_set(const std::filesystem::path& dir,
                        const std::string& root_file = "all-messages.xsd");
    ~schema_set();
    schema_set(const schema_set&) = delete;
    schema_set& operator=(const schema_set&) = delete;

    // schema_invalid with the first error's line and message (and how many errors there were).
    codec_result<void> validate(xmlDoc* doc) const;

    const std::filesystem::path& dir() const noexcept { return dir_; }

private:
    std::filesystem::path dir_;
    _xmlSchema* schema_ = nullptr;
};

}  // namespace samband::nhn
