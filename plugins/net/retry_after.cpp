#include "net/retry_after.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <ctime>
#include <string_view>
#include <vector>

namespace samband::net {

namespace {

constexpr std::chrono::seconds max_retry_after{24 * 3600};

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

int month_index(std::string_view m) {
    static constexpr std::array<std::string_view, 12> names = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (m == names[i]) return static_cast<int>(i);
    }
    return -1;
}

bool parse_uint(std::string_view s, int& out) {
    if (s.empty()) return false;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size() && out >= 0;
}

bool parse_hms(std::string_view s, std::tm& tm) {
    if (s.size() != 8 || s[2] != ':' || s[5] != ':') return false;
    return parse_uint(s.substr(0, 2), tm.tm_hour) && parse_uint(s.substr(3, 2), tm.tm_min) &&
           parse_uint(s.substr(6, 2), tm.tm_sec);
}

// Splits on spaces (runs of spaces count as one: asctime pads the day with a space).
std::vector<std::string_view> split_spaces(std::string_view s) {
    std::vector<std::string_view> out;
    while (!s.empty()) {
        const auto start = s.find_first_not_of(' ');
        if (start == std::string_view::npos) break;
        s.remove_prefix(start);
        const auto end = s.find(' ');
        out.push_back(s.substr(0, end));
        if (end == std::string_view::npos) break;
        s.remove_prefix(end);
    }
    return out;
}

// RFC 9110 §5.6.7: IMF-fixdate, obsolete RFC 850 and asctime formats, always GMT.
std::optional<std::time_t> parse_http_date(std::string_view v) {
    std::tm tm{};
    const auto parts = split_spaces(v);
    if (parts.size() == 6 && parts[0].size() == 4 && parts[0].back() == ',' && parts[5] == "GMT") {
        // Sun, 06 Nov 1994 08:49:37 GMT
        int year = 0;
        if (!parse_uint(parts[1], tm.tm_mday) || (tm.tm_mon = month_index(parts[2])) < 0 ||
            !parse_uint(parts[3], year) || !parse_hms(parts[4], tm)) {
            return std::nullopt;
        }
        tm.tm_year = year - 1900;
    } else if (parts.size() == 4 && parts[0].back() == ',' && parts[3] == "GMT") {
        // Sunday, 06-Nov-94 08:49:37 GMT
        const auto d = parts[1];
        int year = 0;
        if (d.size() != 9 || d[2] != '-' || d[6] != '-' ||
            !parse_uint(d.substr(0, 2), tm.tm_mday) ||
            (tm.tm_mon = month_index(d.substr(3, 3))) < 0 || !parse_uint(d.substr(7, 2), year) ||
            !parse_hms(parts[2], tm)) {
            return std::nullopt;
        }
        tm.tm_year = year < 70 ? year + 100 : year;
    } else if (parts.size() == 5) {
        // Sun Nov  6 08:49:37 1994
        int year = 0;
        if ((tm.tm_mon = month_index(parts[1])) < 0 || !parse_uint(parts[2], tm.tm_mday) ||
            !parse_hms(parts[3], tm) || !parse_uint(parts[4], year)) {
            return std::nullopt;
        }
        tm.tm_year = year - 1900;
    } else {
        return std::nullopt;
    }
    if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
        return std::nullopt;
    }
    const std::time_t t = timegm(&tm);
    if (t == static_cast<std::time_t>(-1)) return std::nullopt;
    return t;
}

}  // namespace

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now) {
    value = trim(value);
    if (value.empty()) return std::nullopt;
    if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        if (value.size() > 9) return max_retry_after;
        int secs = 0;
        if (!parse_uint(value, secs)) return std::nullopt;
        return std::min(std::chrono::seconds{secs}, max_retry_after);
    }
    const auto t = parse_http_date(value);
    if (!t) return std::nullopt;
    const auto when = std::chrono::system_clock::from_time_t(*t);
    if (when <= now) return std::chrono::seconds{0};
    // Round up: "retry at 12:00:01" must not become "retry now" through truncation.
    auto delta = std::chrono::ceil<std::chrono::seconds>(when - now);
    return std::min(delta, max_retry_after);
}

}  // namespace samband::net
