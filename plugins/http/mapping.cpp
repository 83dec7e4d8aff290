#include "mapping.hpp"

#include <samband/json.hpp>

#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <stdexcept>

namespace samband::http_map {

namespace {

// A pointer from config: valid JSON Pointer syntax, else invalid_argument naming `where`.
void check_pointer(const std::string& p, const std::string& where) {
    rapidjson::Pointer ptr(p.c_str(), p.size());
    if (!ptr.IsValid() || p.empty())
        throw std::invalid_argument(where + ": \"" + p +
                                    "\" is not a JSON Pointer (e.g. \"/a/b\")");
}

std::string string_member(const rapidjson::Value& v, const char* key, const std::string& where,
                          bool required) {
    auto it = v.FindMember(key);
    if (it == v.MemberEnd()) {
        if (required) throw std::invalid_argument(where + "." + key + " is required");
        return {};
    }
    if (!it->value.IsString()) throw std::invalid_argument(where + "." + key + " must be a string");
    return std::string(it->value.GetString(), it->value.GetStringLength());
}

std::string to_json(const rapidjson::Value& v) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    v.Accept(w);
    return std::string(sb.GetString(), sb.GetSize());
}

// The fields the mapping itself sets; a rule may not write over them.
bool reserved(const std::string& target) {
    for (const char* r : {"/type", "/idempotency_key", "/schema", "/id", "/source"})
        if (target == r || target.rfind(std::string(r) + "/", 0) == 0) return true;
    return false;
}

}  // namespace

mapping parse_mapping(const rapidjson::Value& v, const std::string& where) {
    if (!v.IsObject()) throw std::invalid_argument(where + " must be an object");
    mapping m;
    m.path = string_member(v, "path", where, true);
    if (m.path.empty() || m.path[0] != '/')
        throw std::invalid_argument(where + ".path must start with \"/\"");
    m.type = string_member(v, "type", where, true);
    if (m.type.empty()) throw std::invalid_argument(where + ".type must not be empty");
    m.key_from = string_member(v, "idempotency_key", where, false);
    if (!m.key_from.empty()) check_pointer(m.key_from, where + ".idempotency_key");
    m.occurred_at_from = string_member(v, "occurred_at", where, false);
    if (!m.occurred_at_from.empty()) check_pointer(m.occurred_at_from, where + ".occurred_at");
    auto f = v.FindMember("fields");
    if (f == v.MemberEnd() || !f->value.IsObject() || f->value.MemberCount() == 0)
        throw std::invalid_argument(where +
                                    ".fields must be an object of envelope pointer -> rule");
    for (auto it = f->value.MemberBegin(); it != f->value.MemberEnd(); ++it) {
        field_rule r;
        r.target.assign(it->name.GetString(), it->name.GetStringLength());
        std::string at = where + ".fields[\"" + r.target + "\"]";
        check_pointer(r.target, at);
        if (reserved(r.target))
            throw std::invalid_argument(at + ": the mapping sets " + r.target + " itself");
        const auto& rule = it->value;
        if (rule.IsString()) {
            r.from.assign(rule.GetString(), rule.GetStringLength());
        } else if (rule.IsObject()) {
            auto val = rule.FindMember("value");
            if (val != rule.MemberEnd()) {
                r.constant = to_json(val->value);
            } else {
                r.from = string_member(rule, "from", at, true);
            }
            auto opt = rule.FindMember("optional");
            if (opt != rule.MemberEnd()) {
                if (!opt->value.IsBool())
                    throw std::invalid_argument(at + ".optional must be true or false");
                r.optional = opt->value.GetBool();
            }
        } else {
            throw std::invalid_argument(
                at +
                " must be a JSON Pointer into the vendor's JSON, or {\"from\": …, "
                "\"optional\": true} or {\"value\": …}");
        }
        if (!r.constant) check_pointer(r.from, at);
        m.fields.push_back(std::move(r));
    }
    return m;
}

result map_body(const mapping& m, std::string_view body, std::string_view idempotency_key,
                std::string_view now_iso) {
    rapidjson::Document in;
    samband::json::limits lim;
    lim.max_depth = 32;
    if (std::string err = samband::json::parse(body, in, lim); !err.empty())
        return {{}, "the body is not JSON: " + err};
    if (!in.IsObject()) return {{}, "the body must be a JSON object"};

    rapidjson::Document out(rapidjson::kObjectType);
    auto& a = out.GetAllocator();
    out.AddMember("type", rapidjson::Value(m.type.c_str(), a), a);

    std::string key(idempotency_key);
    if (key.empty() && !m.key_from.empty()) {
        const rapidjson::Value* k = rapidjson::Pointer(m.key_from.c_str()).Get(in);
        if (!k) return {{}, "field " + m.key_from + " (the idempotency key) is missing"};
        if (k->IsString())
            key.assign(k->GetString(), k->GetStringLength());
        else if (k->IsInt64())
            key = std::to_string(k->GetInt64());
        else
            return {
                {},
                "field " + m.key_from + " (the idempotency key) must be a string or an integer"};
        if (key.empty()) return {{}, "field " + m.key_from + " (the idempotency key) is empty"};
    }
    if (key.empty())
        return {{}, "no Idempotency-Key header and no idempotency_key rule for " + m.path};
    out.AddMember("idempotency_key", rapidjson::Value(key.c_str(), a), a);

    if (!m.occurred_at_from.empty()) {
        const rapidjson::Value* t = rapidjson::Pointer(m.occurred_at_from.c_str()).Get(in);
        if (!t) return {{}, "field " + m.occurred_at_from + " (occurred_at) is missing"};
        if (!t->IsString())
            return {{}, "field " + m.occurred_at_from + " (occurred_at) must be a string"};
        rapidjson::Pointer("/occurred_at").Set(out, rapidjson::Value(*t, a), a);
    } else {
        out.AddMember(
            "occurred_at",
            rapidjson::Value(now_iso.data(), static_cast<rapidjson::SizeType>(now_iso.size()), a),
            a);
    }

    for (const auto& r : m.fields) {
        rapidjson::Value v;
        if (r.constant) {
            rapidjson::Document c(&a);
            c.Parse(r.constant->c_str(), r.constant->size());
            v.CopyFrom(c, a);
        } else {
            const rapidjson::Value* src = rapidjson::Pointer(r.from.c_str()).Get(in);
            if (!src) {
                if (r.optional) continue;
                return {{}, "field " + r.from + " (for " + r.target + ") is missing"};
            }
            v.CopyFrom(*src, a);
        }
        rapidjson::Pointer target(r.target.c_str());
        // Set creates what is missing on the way, but cannot go through a string or a number.
        const rapidjson::Value* cur = &out;
        bool all_there = true;
        for (std::size_t i = 0; i + 1 < target.GetTokenCount(); ++i) {
            const auto& tok = target.GetTokens()[i];
            if (cur->IsObject()) {
                auto it = cur->FindMember(rapidjson::StringRef(tok.name, tok.length));
                if (it == cur->MemberEnd()) {
                    all_there = false;
                    break;
                }
                cur = &it->value;
            } else if (cur->IsArray() && tok.index != rapidjson::kPointerInvalidIndex) {
                if (tok.index >= cur->Size()) {
                    all_there = false;
                    break;
                }
                cur = &(*cur)[static_cast<rapidjson::SizeType>(tok.index)];
            } else {
                return {{}, "rule " + r.target + " goes through a value that is not an object"};
            }
        }
        if (all_there && !cur->IsObject() && !cur->IsArray())
            return {{}, "rule " + r.target + " goes through a value that is not an object"};
        target.Set(out, v, a);
    }
    return {to_json(out), {}};
}

}  // namespace samband::http_map
