#include "codec/json.hpp"

#include <rapidjson/error/en.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace samband::codec {

namespace {

std::string value_text(const rapidjson::Value& v) {
    if (v.IsString()) return std::string("\"") + v.GetString() + "\"";
    return to_json(v);
}

}  // namespace

boost::system::result<rapidjson::Document, std::string> parse_json(std::string_view text,
                                                                   const json::limits& lim) {
    rapidjson::Document doc;
    if (std::string err = json::parse(text, doc, lim); !err.empty()) return err;
    return doc;
}

boost::system::result<rapidjson::Document, std::string> parse_json(std::string_view text,
                                                                   std::size_t max_depth) {
    json::limits lim;
    lim.max_depth = max_depth;
    return parse_json(text, lim);
}

namespace {

// RapidJSON's writer, but a string with nothing to escape is copied whole: the writer copies
// each byte through its escape table (an 8 KB note was most of an event's serialising). The
// output is byte for byte the writer's own.
class plain_copy_writer : public rapidjson::Writer<rapidjson::StringBuffer> {
public:
    using Writer::Writer;
    bool String(const Ch* s, rapidjson::SizeType n, bool copy = false) {
        if (n < 16 || samband::json::detail::unescaped_run(s, n) != n)
            return Writer::String(s, n, copy);
        Prefix(rapidjson::kStringType);
        Ch* out = os_->Push(n + 2);
        out[0] = '"';
        std::memcpy(out + 1, s, n);
        out[n + 1] = '"';
        return EndValue(true);
    }
};

}  // namespace

std::string to_json(const rapidjson::Value& v, std::size_t expected_size) {
    rapidjson::StringBuffer sb(nullptr, std::max<std::size_t>(expected_size, 256));
    plain_copy_writer w(sb);
    v.Accept(w);
    return std::string(sb.GetString(), sb.GetSize());
}

std::string_view string_at(const rapidjson::Value& root, const char* ptr) {
    // A pointer without escapes is walked in place (ingest reads several per event, and
    // rapidjson::Pointer allocates for each); one with "~" goes through rapidjson::Pointer.
    std::string_view path(ptr);
    const rapidjson::Value* v = &root;
    if (path.find('~') != std::string_view::npos) {
        v = rapidjson::Pointer(ptr).Get(root);
    } else if (!path.empty()) {
        if (path.front() != '/') return {};
        while (v && !path.empty()) {
            path.remove_prefix(1);
            std::string_view token = path.substr(0, path.find('/'));
            path.remove_prefix(token.size());
            if (v->IsObject()) {
                rapidjson::Value key(rapidjson::StringRef(token.data(), token.size()));
                auto it = v->FindMember(key);
                v = it == v->MemberEnd() ? nullptr : &it->value;
            } else if (v->IsArray()) {
                // An index: digits, no leading zero (RFC 6901).
                if (token.empty() || token.size() > 9 || (token.size() > 1 && token[0] == '0') ||
                    token.find_first_not_of("0123456789") != std::string_view::npos)
                    return {};
                std::size_t i = std::stoul(std::string(token));
                v = i < v->Size() ? &(*v)[static_cast<rapidjson::SizeType>(i)] : nullptr;
            } else {
                v = nullptr;
            }
        }
    }
    if (!v || !v->IsString()) return {};
    return std::string_view(v->GetString(), v->GetStringLength());
}

boost::system::result<void, std::string> schema_set::add(const std::string& name,
                                                         std::string_view schema_json) {
    auto e = std::make_shared<schema_set::entry>();
    e->source = std::make_unique<rapidjson::Document>();
    if (std::string err = json::parse(schema_json, *e->source); !err.empty()) return err;
    if (!e->source->IsObject()) return std::string("a JSON Schema must be an object");
    e->idle.push_back(std::make_unique<compiled>(*e->source));
    schemas_[name] = e;
    return {};
}

schema_set schema_set::load_dir(const std::string& dir) {
    namespace fs = std::filesystem;
    schema_set out;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw std::runtime_error("schemas: no directory " + dir);
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".json") continue;
        std::ifstream in(entry.path(), std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        auto e = std::make_shared<schema_set::entry>();
        e->source = std::make_unique<rapidjson::Document>();
        if (std::string err = json::parse(ss.str(), *e->source); !err.empty())
            throw std::runtime_error("schemas: " + entry.path().string() + ": " + err);
        e->idle.push_back(std::make_unique<compiled>(*e->source));
        out.schemas_[entry.path().stem().string()] = e;
    }
    return out;
}

std::optional<std::string> schema_set::validate(const std::string& name,
                                                const rapidjson::Value& doc) const {
    auto it = schemas_.find(name);
    if (it == schemas_.end()) return "no schema named " + name;
    entry& e = *it->second;
    std::unique_ptr<compiled> c;
    {
        std::lock_guard lock(e.mu);
        if (!e.idle.empty()) {
            c = std::move(e.idle.back());
            e.idle.pop_back();
        }
    }
    if (!c) c = std::make_unique<compiled>(*e.source);
    // Back to the idle copies when this returns, after the error is read from the validator.
    struct give_back {
        entry& e;
        std::unique_ptr<compiled>& c;
        ~give_back() {
            c->validator.Reset();
            std::lock_guard lock(e.mu);
            e.idle.push_back(std::move(c));
        }
    } back{e, c};
    rapidjson::SchemaValidator& validator = c->validator;
    if (doc.Accept(validator)) return std::nullopt;

    rapidjson::StringBuffer docptr, schemaptr;
    validator.GetInvalidDocumentPointer().StringifyUriFragment(docptr);
    validator.GetInvalidSchemaPointer().StringifyUriFragment(schemaptr);
    std::string where = validator.GetInvalidDocumentPointer().GetTokenCount() == 0
                            ? std::string("/")
                            : std::string(docptr.GetString() + 1);  // drop the leading '#'
    std::string keyword = validator.GetInvalidSchemaKeyword();
    const rapidjson::Value* schema_node = validator.GetInvalidSchemaPointer().Get(*e.source);
    const rapidjson::Value* doc_node = validator.GetInvalidDocumentPointer().Get(doc);

    std::string msg;
    if (keyword == "required" && schema_node && doc_node && doc_node->IsObject()) {
        auto req = schema_node->FindMember("required");
        if (req != schema_node->MemberEnd() && req->value.IsArray()) {
            for (const auto& r : req->value.GetArray()) {
                if (r.IsString() && !doc_node->HasMember(r.GetString())) {
                    std::string base = where == "/" ? "" : where;
                    return base + "/" + r.GetString() + ": required field is missing";
                }
            }
        }
        msg = "a required field is missing";
    } else if ((keyword == "maximum" || keyword == "minimum") && schema_node && doc_node) {
        auto lim = schema_node->FindMember(keyword.c_str());
        std::string limit = lim != schema_node->MemberEnd() ? value_text(lim->value) : "?";
        msg = value_text(*doc_node) +
              (keyword == "maximum" ? " is greater than the maximum "
                                    : " is less than the minimum ") +
              limit;
    } else if (keyword == "enum" && schema_node && doc_node) {
        auto en = schema_node->FindMember("enum");
        msg = value_text(*doc_node) + " is not one of " +
              (en != schema_node->MemberEnd() ? to_json(en->value) : std::string("the allowed"));
    } else if (keyword == "type" && schema_node && doc_node) {
        auto ty = schema_node->FindMember("type");
        msg = "wrong type: expected " +
              (ty != schema_node->MemberEnd() ? to_json(ty->value) : std::string("another type")) +
              ", got " + value_text(*doc_node);
    } else if (keyword == "additionalProperties") {
        const auto& ptr = validator.GetInvalidDocumentPointer();
        std::size_t n = ptr.GetTokenCount();
        std::string key =
            n ? std::string(ptr.GetTokens()[n - 1].name, ptr.GetTokens()[n - 1].length) : "";
        return where + ": unknown field \"" + key + "\" (not allowed here)";
    } else if ((keyword == "maxLength" || keyword == "minLength" || keyword == "pattern") &&
               schema_node && doc_node) {
        auto k = schema_node->FindMember(keyword.c_str());
        msg = value_text(*doc_node) + " fails " + keyword + " " +
              (k != schema_node->MemberEnd() ? value_text(k->value) : std::string());
    } else {
        msg =
            "fails the schema rule '" + keyword + "' (" + std::string(schemaptr.GetString()) + ")";
    }
    return where + ": " + msg;
}

}  // namespace samband::codec
