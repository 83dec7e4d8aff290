#include "nhn/codec/xml.hpp"

#include "nhn/codec/xml_nav.hpp"

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlschemas.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace samband::nhn {

namespace {

constexpr const char* xsd_ns = "http://www.w3.org/2001/XMLSchema";

// Never XML_PARSE_NOENT, XML_PARSE_DTDLOAD, XML_PARSE_DTDATTR, XML_PARSE_DTDVALID,
// XML_PARSE_HUGE or XML_PARSE_XINCLUDE.
constexpr int hardened_options = XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_BIG_LINES |
                                 XML_PARSE_COMPACT | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;

std::string clean_message(const char* msg) {
    std::string s = msg != nullptr ? msg : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

struct parse_state {
    const parse_limits* limits = nullptr;
    unsigned depth = 0;
    std::size_t nodes = 0;
    std::optional<codec_error> refused;      // our own reason to stop
    std::optional<codec_error> first_error;  // libxml2's first error
    int last_line = 0;
};

parse_state* state_of(void* ctx) {
    return static_cast<parse_state*>(static_cast<xmlParserCtxtPtr>(ctx)->_private);
}

void refuse(void* ctx, codec_errc code, std::string message) {
    auto* ctxt = static_cast<xmlParserCtxtPtr>(ctx);
    parse_state* st = state_of(ctx);
    if (!st->refused)
        st->refused = make_error(code, std::move(message), xmlSAX2GetLineNumber(ctxt));
    xmlStopParser(ctxt);
}

void on_start(void* ctx, const xmlChar* localname, const xmlChar* prefix, const xmlChar* uri,
              int nb_namespaces, const xmlChar** namespaces, int nb_attributes, int nb_defaulted,
              const xmlChar** attributes) {
    parse_state* st = state_of(ctx);
    if (st->refused) return;
    if (++st->depth > st->limits->max_depth) {
        refuse(ctx, codec_errc::too_deep,
               "element nesting deeper than " + std::to_string(st->limits->max_depth));
        return;
    }
    st->nodes += 1 + static_cast<std::size_t>(nb_attributes);
    if (st->nodes > st->limits->max_nodes) {
        refuse(ctx, codec_errc::too_large,
               "more than " + std::to_string(st->limits->max_nodes) + " elements and attributes");
        return;
    }
    for (int i = 0; i < nb_attributes; ++i) {
        const xmlChar* value = attributes[i * 5 + 3];
        const xmlChar* end = attributes[i * 5 + 4];
        auto len = static_cast<std::size_t>(end - value);
        if (len > st->limits->max_attribute_bytes) {
            refuse(ctx, codec_errc::attribute_too_large,
                   "attribute '" + std::string(reinterpret_cast<const char*>(attributes[i * 5])) +
                       "' is " + std::to_string(len) + " bytes, over the limit of " +
                       std::to_string(st->limits->max_attribute_bytes));
            return;
        }
    }
    xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                          nb_defaulted, attributes);
}

void on_end(void* ctx, const xmlChar* localname, const xmlChar* prefix, const xmlChar* uri) {
    parse_state* st = state_of(ctx);
    if (st->depth > 0) --st->depth;
    xmlSAX2EndElementNs(ctx, localname, prefix, uri);
}

void on_doctype(void* ctx, const xmlChar* name, const xmlChar*, const xmlChar*) {
    refuse(ctx, codec_errc::dtd_forbidden,
           "document type declaration (<!DOCTYPE " +
               std::string(name != nullptr ? reinterpret_cast<const char*>(name) : "") +
               ">) is not allowed");
}

void on_entity_decl(void* ctx, const xmlChar* name, int, const xmlChar*, const xmlChar*, xmlChar*) {
    refuse(ctx, codec_errc::dtd_forbidden,
           "entity declaration '" + std::string(reinterpret_cast<const char*>(name)) +
               "' is not allowed");
}

void on_error(void* ctx, xmlErrorPtr err) {
    if (err == nullptr || err->level < XML_ERR_ERROR) return;
    parse_state* st = state_of(ctx);
    if (!st->first_error) {
        st->first_error =
            make_error(codec_errc::not_well_formed, clean_message(err->message), err->line);
    }
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// Looks at the XML declaration before libxml2 does: only UTF-8 and ISO-8859-1 are accepted.
std::optional<codec_error> check_encoding(std::string_view bytes) {
    if (bytes.size() >= 2 && ((static_cast<unsigned char>(bytes[0]) == 0xFE &&
                               static_cast<unsigned char>(bytes[1]) == 0xFF) ||
                              (static_cast<unsigned char>(bytes[0]) == 0xFF &&
                               static_cast<unsigned char>(bytes[1]) == 0xFE)))
        return make_error(codec_errc::unsupported_encoding,
                          "UTF-16/UTF-32 byte-order mark: only UTF-8 and ISO-8859-1 are accepted");
    if (bytes.size() >= 4 && bytes[0] == '\0')
        return make_error(codec_errc::unsupported_encoding,
                          "document does not start as UTF-8 (NUL byte): only UTF-8 and "
                          "ISO-8859-1 are accepted");
    if (bytes.substr(0, 3) == "\xEF\xBB\xBF") bytes.remove_prefix(3);
    if (bytes.substr(0, 5) != "<?xml") return std::nullopt;
    std::size_t end = bytes.find("?>");
    if (end == std::string_view::npos) return std::nullopt;  // libxml2 reports it
    std::string_view decl = bytes.substr(0, end);
    std::size_t at = decl.find("encoding");
    if (at == std::string_view::npos) return std::nullopt;
    std::size_t q = decl.find_first_of("\"'", at);
    if (q == std::string_view::npos) return std::nullopt;
    std::size_t q2 = decl.find(decl[q], q + 1);
    if (q2 == std::string_view::npos) return std::nullopt;
    std::string_view enc = decl.substr(q + 1, q2 - q - 1);
    if (iequals(enc, "UTF-8") || iequals(enc, "UTF8") || iequals(enc, "ISO-8859-1") ||
        iequals(enc, "ISO_8859-1") || iequals(enc, "LATIN1"))
        return std::nullopt;
    return make_error(codec_errc::unsupported_encoding,
                      "declared encoding '" + std::string(enc.substr(0, 40)) +
                          "' is not accepted (only UTF-8 and ISO-8859-1)",
                      1);
}

// Counts the attributes of every start tag in one linear pass over the raw bytes (an '=' outside
// a quoted value inside a tag), skipping comments, processing instructions and CDATA sections.
// Only refuses: a document it lets through is still parsed and checked in full by libxml2.
std::optional<codec_error> check_attribute_counts(std::string_view b, std::size_t max) {
    const std::size_t n = b.size();
    std::size_t i = 0;
    int line = 1;
    auto skip_to = [&](std::string_view end) {
        std::size_t at = b.find(end, i);
        i = at == std::string_view::npos ? n : at + end.size();
    };
    while (i < n) {
        std::size_t lt = b.find('<', i);
        if (lt == std::string_view::npos) break;
        i = lt + 1;
        if (b.compare(i, 3, "!--") == 0) {
            skip_to("-->");
            continue;
        }
        if (b.compare(i, 8, "![CDATA[") == 0) {
            skip_to("]]>");
            continue;
        }
        if (i < n && (b[i] == '?' || b[i] == '!' || b[i] == '/')) {
            skip_to(">");
            continue;
        }
        std::size_t count = 0;
        char quote = 0;
        for (; i < n; ++i) {
            char c = b[i];
            if (quote != 0) {
                if (c == quote) quote = 0;
            } else if (c == '"' || c == '\'') {
                quote = c;
            } else if (c == '=') {
                if (++count > max) {
                    line = 1 + static_cast<int>(std::count(b.begin(), b.begin() + lt, '\n'));
                    return make_error(
                        codec_errc::too_large,
                        "an element with more than " + std::to_string(max) + " attributes", line);
                }
            } else if (c == '>') {
                ++i;
                break;
            }
        }
    }
    return std::nullopt;
}

struct ctxt_free {
    void operator()(xmlParserCtxt* c) const noexcept { xmlFreeParserCtxt(c); }
};

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw std::runtime_error("nhn codec: cannot read schema file " + p.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool plain_file_name(const std::string& loc) {
    if (loc.empty() || loc[0] == '.') return false;
    return loc.find_first_of(":/\\%") == std::string::npos;
}

void collect_locations(const xmlNode* n, std::vector<std::string>& out) {
    for (const xmlNode* c = n; c != nullptr; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (detail::is_element(c, "import", xsd_ns) || detail::is_element(c, "include", xsd_ns) ||
            detail::is_element(c, "redefine", xsd_ns) || detail::is_element(c, "override", xsd_ns))
            out.push_back(detail::attr(c, "schemaLocation"));
        collect_locations(c->children, out);
    }
}

struct validation_collector {
    int count = 0;
    std::optional<codec_error> first;
};

// libxml2 quotes the offending value in validation messages ("Element 'X': 'value' is not a valid
// value of ...", "The value 'value' is not accepted by the pattern ..."). A value may be patient
// data or attachment base64, and these messages go into reasons, logs and Apprecs: the value is
// replaced by "(value withheld)"; element, attribute and type names stay.
std::string withhold_values(std::string m) {
    for (std::string_view lead : {std::string_view("': '"), std::string_view("The value '")}) {
        std::size_t at = 0;
        while ((at = m.find(lead, at)) != std::string::npos) {
            std::size_t open = at + lead.size() - 1;
            std::size_t close = m.find('\'', open + 1);
            if (close == std::string::npos) close = m.size() - 1;
            m.replace(open, close - open + 1, "(value withheld)");
            at = open;
        }
    }
    return m;
}

void on_validation_error(void* data, xmlErrorPtr err) {
    if (err == nullptr || err->level < XML_ERR_ERROR) return;
    auto* c = static_cast<validation_collector*>(data);
    ++c->count;
    if (!c->first)
        c->first = make_error(codec_errc::schema_invalid,
                              withhold_values(clean_message(err->message)), err->line);
}

struct schema_parser_errors {
    std::vector<std::string> messages;
};

void on_schema_parse_error(void* data, xmlErrorPtr err) {
    if (err == nullptr || err->level < XML_ERR_ERROR) return;
    auto* c = static_cast<schema_parser_errors*>(data);
    std::string where = err->file != nullptr ? err->file : "";
    c->messages.push_back(where + ":" + std::to_string(err->line) + ": " +
                          clean_message(err->message));
}

}  // namespace

codec_result<xml_doc_ptr> parse_xml(std::string_view bytes, const parse_limits& limits) {
    if (bytes.empty()) return make_error(codec_errc::not_well_formed, "empty document");
    if (bytes.size() > limits.max_bytes)
        return make_error(codec_errc::too_large, "document of " + std::to_string(bytes.size()) +
                                                     " bytes is over the limit of " +
                                                     std::to_string(limits.max_bytes));
    if (bytes.size() > static_cast<std::size_t>(INT32_MAX))
        return make_error(codec_errc::too_large, "document over 2 GB");
    if (auto e = check_encoding(bytes)) return *e;
    if (auto e = check_attribute_counts(bytes, limits.max_attributes_per_element)) return *e;

    std::unique_ptr<xmlParserCtxt, ctxt_free> ctxt(
        xmlCreateMemoryParserCtxt(bytes.data(), static_cast<int>(bytes.size())));
    if (!ctxt || ctxt->sax == nullptr)
        return make_error(codec_errc::internal, "libxml2: cannot create a parser context");
    parse_state st;
    st.limits = &limits;
    ctxt->_private = &st;
    xmlSAXHandler* sax = ctxt->sax;
    sax->startElementNs = on_start;
    sax->endElementNs = on_end;
    sax->internalSubset = on_doctype;
    sax->externalSubset = on_doctype;
    sax->entityDecl = on_entity_decl;
    sax->resolveEntity = nullptr;
    sax->serror = on_error;

    xmlCtxtUseOptions(ctxt.get(), hardened_options);
    xmlParseDocument(ctxt.get());
    xml_doc_ptr doc(ctxt->myDoc);
    ctxt->myDoc = nullptr;
    if (st.refused) return *st.refused;
    if (!doc || !ctxt->wellFormed) {
        if (st.first_error) return *st.first_error;
        return make_error(codec_errc::not_well_formed, "not well-formed XML");
    }
    if (doc->intSubset != nullptr || doc->extSubset != nullptr)
        return make_error(codec_errc::dtd_forbidden, "document type declaration is not allowed");
    if (xmlDocGetRootElement(doc.get()) == nullptr)
        return make_error(codec_errc::not_well_formed, "no root element");
    return doc;
}

schema_set::schema_set(const std::filesystem::path& dir, const std::string& root_file)
    : dir_(std::filesystem::absolute(dir)) {
    xmlInitParser();  // idempotent; the host or plugin init calls this first on one thread
    if (!std::filesystem::is_directory(dir_))
        throw std::runtime_error("nhn codec: schema directory " + dir_.string() +
                                 " does not exist");
    // Walk every schema document reachable from the root, hardened, before libxml2 loads them.
    std::set<std::string> seen;
    std::vector<std::string> todo{root_file};
    parse_limits limits;
    limits.max_bytes = 4 * 1024 * 1024;
    limits.max_depth = 128;
    while (!todo.empty()) {
        std::string name = todo.back();
        todo.pop_back();
        if (!seen.insert(name).second) continue;
        std::filesystem::path p = dir_ / name;
        std::string bytes = read_file(p);
        auto doc = parse_xml(bytes, limits);
        if (!doc)
            throw std::runtime_error("nhn codec: schema " + p.string() +
                                     " refused: " + doc.error().what());
        std::vector<std::string> locs;
        collect_locations(xmlDocGetRootElement(doc->get()), locs);
        for (auto& loc : locs) {
            if (!plain_file_name(loc))
                throw std::runtime_error("nhn codec: schema " + p.string() + " imports '" + loc +
                                         "': only plain file names inside the schema directory "
                                         "are allowed (no network, no paths)");
            if (!std::filesystem::is_regular_file(dir_ / loc))
                throw std::runtime_error("nhn codec: schema " + p.string() + " imports '" + loc +
                                         "', which is not in " + dir_.string());
            todo.push_back(loc);
        }
    }

    std::string root = (dir_ / root_file).string();
    xmlSchemaParserCtxtPtr pctxt = xmlSchemaNewParserCtxt(root.c_str());
    if (pctxt == nullptr)
        throw std::runtime_error("nhn codec: cannot create a schema parser for " + root);
    schema_parser_errors errs;
    xmlSchemaSetParserStructuredErrors(pctxt, on_schema_parse_error, &errs);
    schema_ = xmlSchemaParse(pctxt);
    xmlSchemaFreeParserCtxt(pctxt);
    if (schema_ == nullptr) {
        std::string msg = "nhn codec: schemas in " + dir_.string() + " do not compile";
        for (std::size_t i = 0; i < errs.messages.size() && i < 5; ++i)
            msg += "; " + errs.messages[i];
        throw std::runtime_error(msg);
    }
}

schema_set::~schema_set() {
    if (schema_ != nullptr) xmlSchemaFree(schema_);
}

codec_result<void> schema_set::validate(xmlDoc* doc) const {
    xmlSchemaValidCtxtPtr v = xmlSchemaNewValidCtxt(schema_);
    if (v == nullptr) return make_error(codec_errc::internal, "libxml2: cannot create validator");
    validation_collector c;
    xmlSchemaSetValidStructuredErrors(v, on_validation_error, &c);
    int rc = xmlSchemaValidateDoc(v, doc);
    xmlSchemaFreeValidCtxt(v);
    if (rc == 0) return {};
    if (c.first) {
        codec_error e = *c.first;
        if (c.count > 1) e.message += " (" + std::to_string(c.count - 1) + " more errors)";
        return e;
    }
    if (rc < 0) return make_error(codec_errc::internal, "libxml2: schema validation failed");
    return make_error(codec_errc::schema_invalid, "document does not validate");
}

}  // namespace samband::nhn
