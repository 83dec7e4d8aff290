#include "net/json.hpp"

#include <cmath>

#include <rapidjson/error/en.h>
#include <samband/json.hpp>

#include <cstdio>

namespace samband::net::detail {

bool json_depth_ok(std::string_view text, int max_depth) {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) return false;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return true;
}

bool parse_json(std::string_view text, rapidjson::Document& doc) {
    samband::json::limits lim;
    lim.max_depth = max_json_depth;
    return samband::json::parse(text, doc, lim).empty();
}

void append_json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out.push_back(ch);
                }
        }
    }
    out.push_back('"');
}

std::optional<std::string> get_string(const rapidjson::Value& obj, const char* name) {
    if (!obj.IsObject()) return std::nullopt;
    const auto it = obj.FindMember(name);
    if (it == obj.MemberEnd() || !it->value.IsString()) return std::nullopt;
    return std::string(it->value.GetString(), it->value.GetStringLength());
}

std::optional<long long> get_int(const rapidjson::Value& obj, const char* name) {
    if (!obj.IsObject()) return std::nullopt;
    const auto it = obj.FindMember(name);
    if (it == obj.MemberEnd()) return std::nullopt;
    if (it->value.IsInt64()) return it->value.GetInt64();
    if (it->value.IsDouble()) {
        // Only a whole number a long long can hold (a cast of any other double is undefined).
        const double d = it->value.GetDouble();
        if (!(d >= -9.2e18 && d <= 9.2e18) || d != std::trunc(d)) return std::nullopt;
        return static_cast<long long>(d);
    }
    return std::nullopt;
}

std::optional<bool> get_bool(const rapidjson::Value& obj, const char* name) {
    if (!obj.IsObject()) return std::nullopt;
    const auto it = obj.FindMember(name);
    if (it == obj.MemberEnd() || !it->value.IsBool()) return std::nullopt;
    return it->value.GetBool();
}

}  // namespace samband::net::detail
