#include "core/log.hpp"

#include "core/ids.hpp"

#include <samband/identifiers.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace samband::core {

std::string mask_identifiers(std::string_view text) {
    return ident::mask(text);
}

std::string_view to_string(log_level l) noexcept {
    switch (l) {
        case log_level::trace:
            return "trace";
        case log_level::debug:
            return "debug";
        case log_level::info:
            return "info";
        case log_level::warn:
            return "warn";
        case log_level::error:
            return "error";
    }
    return "info";
}

bool parse_log_level(std::string_view s, log_level& out) noexcept {
    for (int i = 0; i <= 4; ++i) {
        if (to_string(static_cast<log_level>(i)) == s) {
            out = static_cast<log_level>(i);
            return true;
        }
    }
    return false;
}

namespace {

void append_value(std::string& line, std::string_view v, bool json) {
    bool quote = json || v.empty() || v.find_first_of(" =\"\\\n\t") != std::string_view::npos;
    if (quote) line += '"';
    for (char c : v) {
        switch (c) {
            case '"':
                line += "\\\"";
                break;
            case '\\':
                line += "\\\\";
                break;
            case '\n':
                line += "\\n";
                break;
            case '\t':
                line += "\\t";
                break;
            case '\r':
                line += "\\r";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
                    line += buf;
                } else {
                    line += c;
                }
        }
    }
    if (quote) line += '"';
}

void append_field(std::string& line, std::string_view k, std::string_view v, bool json,
                  bool first) {
    if (json) {
        if (!first) line += ',';
        line += '"';
        line += k;
        line += "\":";
    } else {
        if (!first) line += ' ';
        line += k;
        line += '=';
    }
    append_value(line, v, json);
}

}  // namespace

logger::logger(log_level min, bool json) : min_(min), json_(json), sink_(stderr) {}

void logger::log(log_level l, std::string_view step, std::string_view msg,
                 std::initializer_list<log_field> fields) {
    if (!enabled(l)) return;
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    const std::string ts = iso8601_ms(ms);
    std::string line;
    line.reserve(256);
    if (json_) line += '{';
    append_field(line, "ts", ts, json_, true);
    append_field(line, "level", to_string(l), json_, false);
    append_field(line, "step", step, json_, false);
    for (const auto& [k, v] : fields) {
        if (v.empty()) continue;
        append_field(line, k, mask_identifiers(v), json_, false);
    }
    append_field(line, "msg", mask_identifiers(msg), json_, false);
    if (json_) line += '}';
    line += '\n';
    std::lock_guard lock(mu_);
    std::fwrite(line.data(), 1, line.size(), sink_);
    std::fflush(sink_);
}

}  // namespace samband::core
