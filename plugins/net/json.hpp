// Internal: bounded JSON parsing and writing helpers for the plugin-side clients (RapidJSON).
#pragma once

#include <rapidjson/document.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace samband::net::detail {

// Debian's RapidJSON 1.1.0 has no depth limit: refuse documents nested deeper than this before
// parsing (a cheap scan that skips strings).
inline constexpr int max_json_depth = 32;

// True when the nesting depth of `text` (objects and arrays) never exceeds `max_depth`.
bool json_depth_ok(std::string_view text, int max_depth = max_json_depth);

// Parses `text` into `doc` after the depth check. False on any error.
bool parse_json(std::string_view text, rapidjson::Document& doc);

// Appends `s` as a JSON string literal (with quotes and escapes) to `out`.
void append_json_string(std::string& out, std::string_view s);

// Member accessors that tolerate absence and null.
std::optional<std::string> get_string(const rapidjson::Value& obj, const char* name);
std::optional<long long> get_int(const rapidjson::Value& obj, const char* name);
std::optional<bool> get_bool(const rapidjson::Value& obj, const char* name);

}  // namespace samband::net::detail
