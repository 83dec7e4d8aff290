// The endpoint's config parsed once, with typed accessors whose errors name the JSON path.
#pragma once

// Header-only; needs RapidJSON (Debian: rapidjson-dev). A C++ plugin whose constructor takes
// `const samband::sdk::config&` instead of `std::string_view` gets its config parsed by the SDK
// (depth-limited, through samband::json::parse). Every accessor that finds a missing or mistyped
// value throws sdk::error(SAMBAND_INVALID, ...) naming the value by its JSON Pointer, e.g.
//   "config /retry/max_ms: 5 is less than the minimum 10"
// which the host shows as the reason create failed (and the kit as a FAIL row).

#include <samband/json.hpp>
#include <samband/sdk.hpp>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace samband::sdk {

// One value of the config (the root object, a member, an array element) and its path. Copies are
// cheap and share the parsed document. THREAD: const use from any thread.
class config {
public:
    // Parses `text`, which must be one JSON object. Throws error(SAMBAND_INVALID, "config: ...").
    static config parse(std::string_view text) {
        auto doc = std::make_shared<rapidjson::Document>();
        if (std::string why = json::parse(text, *doc); !why.empty())
            throw error(SAMBAND_INVALID, "config: " + why);
        if (!doc->IsObject()) throw error(SAMBAND_INVALID, "config: must be a JSON object");
        const rapidjson::Value* root = doc.get();
        return config(std::move(doc), root, "");
    }

    // The JSON Pointer of this value ("" for the root) and the value itself, for what the typed
    // accessors do not cover.
    const std::string& path() const noexcept { return path_; }
    const rapidjson::Value& json() const noexcept { return *value_; }

    // True when this object has `key` with a value other than null.
    bool has(std::string_view key) const { return member(key) != nullptr; }

    // The member `key` (required), or nullopt when absent (optional).
    config at(std::string_view key) const {
        if (auto c = find(key)) return *c;
        fail(key, "is required");
    }
    std::optional<config> find(std::string_view key) const {
        const rapidjson::Value* v = member(key);
        if (!v) return std::nullopt;
        return config(doc_, v, child_path(key));
    }

    // Strings: required, or with a default when absent. `allow_empty` false refuses "".
    std::string string(std::string_view key, bool allow_empty = false) const {
        return string_of(at(key), allow_empty);
    }
    std::string string_or(std::string_view key, std::string_view def,
                          bool allow_empty = false) const {
        auto c = find(key);
        return c ? string_of(*c, allow_empty) : std::string(def);
    }

    // Whole numbers within [min, max]: required, or with a default when absent.
    std::int64_t integer(std::string_view key,
                         std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                         std::int64_t max = std::numeric_limits<std::int64_t>::max()) const {
        return integer_of(at(key), min, max);
    }
    std::int64_t integer_or(std::string_view key, std::int64_t def,
                            std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                            std::int64_t max = std::numeric_limits<std::int64_t>::max()) const {
        auto c = find(key);
        return c ? integer_of(*c, min, max) : def;
    }

    // Numbers (integer or not): with a default when absent.
    double number_or(std::string_view key, double def) const {
        auto c = find(key);
        if (!c) return def;
        if (!c->value_->IsNumber()) c->fail_here("must be a number, not " + c->kind());
        return c->value_->GetDouble();
    }

    // true/false: with a default when absent.
    bool boolean_or(std::string_view key, bool def) const {
        auto c = find(key);
        if (!c) return def;
        if (!c->value_->IsBool()) c->fail_here("must be true or false, not " + c->kind());
        return c->value_->GetBool();
    }

    // An array of strings (absent: empty).
    std::vector<std::string> strings(std::string_view key) const {
        std::vector<std::string> out;
        for (const auto& e : items(key)) out.push_back(string_of(e, true));
        return out;
    }

    // The elements of an array (absent: empty), each with its own path (/key/0, /key/1, …).
    std::vector<config> items(std::string_view key) const {
        std::vector<config> out;
        auto c = find(key);
        if (!c) return out;
        if (!c->value_->IsArray()) c->fail_here("must be an array, not " + c->kind());
        rapidjson::SizeType i = 0;
        for (const auto& e : c->value_->GetArray())
            out.push_back(config(doc_, &e, c->path_ + "/" + std::to_string(i++)));
        return out;
    }

    // The members of this object, in order, each with its path.
    std::vector<std::pair<std::string, config>> members() const {
        if (!value_->IsObject()) fail_here("must be an object, not " + kind());
        std::vector<std::pair<std::string, config>> out;
        for (const auto& m : value_->GetObject()) {
            std::string k(m.name.GetString(), m.name.GetStringLength());
            out.emplace_back(k, config(doc_, &m.value, child_path(k)));
        }
        return out;
    }

    // Throws error(SAMBAND_INVALID, "config <path of key>: <what>"), for checks of your own.
    [[noreturn]] void fail(std::string_view key, std::string_view what) const {
        throw error(SAMBAND_INVALID, "config " + child_path(key) + ": " + std::string(what));
    }
    [[noreturn]] void fail_here(std::string_view what) const {
        throw error(SAMBAND_INVALID, "config " + (path_.empty() ? std::string("/") : path_) + ": " +
                                         std::string(what));
    }

private:
    config(std::shared_ptr<const rapidjson::Document> doc, const rapidjson::Value* v,
           std::string path)
        : doc_(std::move(doc)), value_(v), path_(std::move(path)) {}

    const rapidjson::Value* member(std::string_view key) const {
        if (!value_->IsObject()) fail_here("must be an object, not " + kind());
        auto it = value_->FindMember(rapidjson::Value(
            rapidjson::StringRef(key.data(), static_cast<rapidjson::SizeType>(key.size()))));
        if (it == value_->MemberEnd() || it->value.IsNull()) return nullptr;
        return &it->value;
    }

    // RFC 6901: "~" is written "~0" and "/" is written "~1".
    std::string child_path(std::string_view key) const {
        std::string p = path_ + "/";
        for (char ch : key) {
            if (ch == '~')
                p += "~0";
            else if (ch == '/')
                p += "~1";
            else
                p += ch;
        }
        return p;
    }

    std::string kind() const {
        if (value_->IsString()) return "a string";
        if (value_->IsBool()) return value_->GetBool() ? "true" : "false";
        if (value_->IsNumber()) return "a number";
        if (value_->IsArray()) return "an array";
        if (value_->IsObject()) return "an object";
        return "null";
    }

    static std::string string_of(const config& c, bool allow_empty) {
        if (!c.value_->IsString()) c.fail_here("must be a string, not " + c.kind());
        std::string s(c.value_->GetString(), c.value_->GetStringLength());
        if (s.empty() && !allow_empty) c.fail_here("must not be empty");
        return s;
    }

    static std::int64_t integer_of(const config& c, std::int64_t min, std::int64_t max) {
        const rapidjson::Value& v = *c.value_;
        if (!v.IsInt64()) {
            if (v.IsNumber()) c.fail_here(v.IsUint64() ? "is too large" : "must be a whole number");
            c.fail_here("must be a whole number, not " + c.kind());
        }
        std::int64_t n = v.GetInt64();
        if (n < min)
            c.fail_here(std::to_string(n) + " is less than the minimum " + std::to_string(min));
        if (n > max)
            c.fail_here(std::to_string(n) + " is more than the maximum " + std::to_string(max));
        return n;
    }

    std::shared_ptr<const rapidjson::Document> doc_;
    const rapidjson::Value* value_;
    std::string path_;
};

}  // namespace samband::sdk
