#include "csv_parse.hpp"

#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace samband::csv {
namespace {

// Windows-1252 0x80..0x9F as Unicode code points (0 = undefined in the code page).
constexpr std::array<std::uint16_t, 32> kCp1252High = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

// The offset of the first byte that breaks UTF-8 (overlongs, surrogates, > U+10FFFF), or npos.
std::size_t invalid_utf8_at(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    std::size_t n = s.size(), i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len;
        std::uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4, cp = c & 0x07;
        } else {
            return i;
        }
        if (i + len > n) return i;
        for (std::size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += len;
    }
    return std::string_view::npos;
}

bool is_space(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

}  // namespace

boost::system::result<decoded, std::string> decode(std::string_view bytes, encoding enc) {
    auto fail = [](std::string why) {
        return boost::system::result<decoded, std::string>(boost::system::in_place_error,
                                                           std::move(why));
    };
    decoded out;
    if (bytes.size() >= 3 && bytes.substr(0, 3) == "\xEF\xBB\xBF") {
        bytes.remove_prefix(3);
        out.had_bom = true;
        if (enc == encoding::automatic) enc = encoding::utf8;
    }
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        auto c = static_cast<unsigned char>(bytes[i]);
        if (c < 0x20 && c != '\t' && c != '\r' && c != '\n')
            return fail("binary data: control byte 0x" +
                        [&] {
                            char b[3];
                            std::snprintf(b, sizeof b, "%02x", c);
                            return std::string(b);
                        }() +
                        " at byte " + std::to_string(i + (out.had_bom ? 3 : 0)) +
                        "; not a CSV text file");
    }
    std::size_t bad = enc == encoding::windows_1252 ? 0 : invalid_utf8_at(bytes);
    if (enc == encoding::windows_1252 ||
        (bad != std::string_view::npos && enc == encoding::automatic)) {
        out.from_windows_1252 = true;
        out.text.reserve(bytes.size() + bytes.size() / 8);
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            auto c = static_cast<unsigned char>(bytes[i]);
            if (c < 0x80) {
                out.text.push_back(static_cast<char>(c));
            } else if (c < 0xA0) {
                std::uint16_t cp = kCp1252High[c - 0x80];
                if (cp == 0)
                    return fail("byte 0x" +
                                [&] {
                                    char b[3];
                                    std::snprintf(b, sizeof b, "%02x", c);
                                    return std::string(b);
                                }() +
                                " at byte " + std::to_string(i) +
                                " is neither UTF-8 nor Windows-1252; not a CSV text file");
                put_utf8(out.text, cp);
            } else {
                put_utf8(out.text, c);
            }
        }
        return out;
    }
    if (bad != std::string_view::npos)
        return fail("invalid UTF-8 at byte " + std::to_string(bad + (out.had_bom ? 3 : 0)));
    out.text.assign(bytes);
    return out;
}

char detect_delimiter(std::string_view text) {
    std::size_t semi = 0, comma = 0, tab = 0;
    bool quoted = false;
    for (char c : text) {
        if (c == '"') quoted = !quoted;
        if (quoted) continue;
        if (c == '\n' || c == '\r') break;
        if (c == ';') ++semi;
        if (c == ',') ++comma;
        if (c == '\t') ++tab;
    }
    if (tab > semi && tab > comma) return '\t';
    return comma > semi ? ',' : ';';
}

boost::system::result<std::size_t, parse_error> parse(
    std::string_view text, char delim, const limits& lim,
    const std::function<bool(record&)>& on_record) {
    using result_t = boost::system::result<std::size_t, parse_error>;
    auto bad = [](parse_error e) { return result_t(boost::system::in_place_error, std::move(e)); };
    record rec;
    std::size_t i = 0, n = text.size(), line = 1, rows = 0;
    std::string field;
    while (i < n) {
        // One record.
        rec.fields.clear();
        rec.line = line;
        std::size_t start = i;
        bool end_of_record = false;
        while (!end_of_record) {
            field.clear();
            std::size_t column = rec.fields.size() + 1;
            if (column > lim.max_columns)
                return bad(parse_error{
                    line, column, "more than " + std::to_string(lim.max_columns) + " columns"});
            if (i < n && text[i] == '"') {
                std::size_t quote_line = line;
                ++i;
                for (;;) {
                    if (i >= n)
                        return bad(
                            parse_error{quote_line, column,
                                        "unterminated quoted field (the quote opened on line " +
                                            std::to_string(quote_line) + " never closes)"});
                    char c = text[i];
                    if (c == '"') {
                        if (i + 1 < n && text[i + 1] == '"') {
                            field.push_back('"');
                            i += 2;
                            continue;
                        }
                        ++i;
                        break;
                    }
                    if (c == '\n') ++line;
                    if (c == '\r' && !(i + 1 < n && text[i + 1] == '\n')) ++line;
                    field.push_back(c);
                    ++i;
                    if (field.size() > lim.max_field_bytes)
                        return bad(parse_error{
                            quote_line, column,
                            "field longer than " + std::to_string(lim.max_field_bytes) + " bytes"});
                }
                // After the closing quote: a delimiter, a line end or the end of the text.
                while (i < n && is_space(text[i]) && text[i] != delim) ++i;
                if (i < n && text[i] != delim && text[i] != '\n' && text[i] != '\r')
                    return bad(parse_error{
                        line, column,
                        "text after a closing quote (quotes inside a field must be doubled)"});
            } else {
                std::size_t b = i;
                while (i < n && text[i] != delim && text[i] != '\n' && text[i] != '\r') {
                    if (text[i] == '"')
                        return bad(parse_error{line, column,
                                               "a quote inside an unquoted field (quote the whole "
                                               "field and double the quote)"});
                    ++i;
                }
                if (i - b > lim.max_field_bytes)
                    return bad(parse_error{
                        line, column,
                        "field longer than " + std::to_string(lim.max_field_bytes) + " bytes"});
                field.assign(text.substr(b, i - b));
            }
            rec.fields.push_back(field);
            if (i < n && text[i] == delim) {
                ++i;
                continue;
            }
            end_of_record = true;
        }
        std::size_t end = i;
        bool eol = false;
        if (i < n && text[i] == '\r') ++i, eol = true;
        if (i < n && text[i] == '\n') ++i, eol = true;
        if (eol) ++line;
        bool blank = rec.fields.size() == 1 && rec.fields[0].empty() && end == start;
        if (blank) continue;
        if (++rows > lim.max_rows)
            return bad(
                parse_error{rec.line, 1, "more than " + std::to_string(lim.max_rows) + " rows"});
        rec.raw.assign(text.substr(start, end - start));
        if (!on_record(rec)) break;
    }
    return result_t(boost::system::in_place_value, rows);
}

void append_field(std::string& out, std::string_view f, char delim) {
    bool formula = !f.empty() && (f[0] == '=' || f[0] == '+' || f[0] == '-' || f[0] == '@');
    // A plain negative number stays a number.
    if (formula && f[0] == '-') {
        double d;
        if (parse_number(f, d)) formula = false;
    }
    bool quote = formula || (!f.empty() && (is_space(f.front()) || is_space(f.back())));
    for (char c : f)
        if (c == delim || c == '"' || c == '\n' || c == '\r') quote = true;
    if (!quote) {
        out.append(f);
        return;
    }
    out.push_back('"');
    if (formula) out.push_back('\'');
    for (char c : f) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
}

std::string decimal_comma(std::string_view number) {
    std::string s(number);
    for (char& c : s)
        if (c == '.') c = ',';
    return s;
}

std::string parse_date(std::string_view s) {
    s = trim(s);
    int d = 0, m = 0, y = 0;
    auto digits = [](std::string_view p, int& v) {
        if (p.empty() || p.size() > 4) return false;
        v = 0;
        for (char c : p) {
            if (c < '0' || c > '9') return false;
            v = v * 10 + (c - '0');
        }
        return true;
    };
    auto split3 = [&](char sep, std::string_view& a, std::string_view& b, std::string_view& c) {
        auto p1 = s.find(sep);
        if (p1 == std::string_view::npos) return false;
        auto p2 = s.find(sep, p1 + 1);
        if (p2 == std::string_view::npos || s.find(sep, p2 + 1) != std::string_view::npos)
            return false;
        a = s.substr(0, p1), b = s.substr(p1 + 1, p2 - p1 - 1), c = s.substr(p2 + 1);
        return true;
    };
    std::string_view a, b, c;
    if (split3('.', a, b, c)) {
        if (a.size() > 2 || b.size() > 2 || c.size() != 4) return {};
        if (!digits(a, d) || !digits(b, m) || !digits(c, y)) return {};
    } else if (split3('-', a, b, c)) {
        if (a.size() != 4 || b.size() != 2 || c.size() != 2) return {};
        if (!digits(a, y) || !digits(b, m) || !digits(c, d)) return {};
    } else {
        return {};
    }
    static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || y > 2100 || m < 1 || m > 12 || d < 1) return {};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int max = kDays[m - 1] + (m == 2 && leap ? 1 : 0);
    if (d > max) return {};
    char out[32];
    std::snprintf(out, sizeof out, "%04d-%02d-%02d", y, m, d);
    return out;
}

bool parse_number(std::string_view s, double& out) {
    s = trim(s);
    if (s.empty() || s.size() > 40) return false;
    std::string t;
    bool sep = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            t.push_back(c);
        } else if ((c == ',' || c == '.') && !sep) {
            sep = true;
            t.push_back('.');
        } else if ((c == '-' || c == '+') && i == 0) {
            t.push_back(c);
        } else if ((c == ' ' || c == '\xA0') && !sep) {
            continue;  // thousands separator
        } else {
            return false;
        }
    }
    if (t.empty() || t == "-" || t == "+" || t.back() == '.' || t == ".") return false;
    char* end = nullptr;
    out = std::strtod(t.c_str(), &end);
    return end && *end == '\0' && std::isfinite(out);
}

bool parse_boolean(std::string_view s, bool& out) {
    std::string t(trim(s));
    for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (t == "ja" || t == "j" || t == "yes" || t == "y" || t == "true" || t == "1" || t == "x") {
        out = true;
        return true;
    }
    if (t == "nei" || t == "n" || t == "no" || t == "false" || t == "0") {
        out = false;
        return true;
    }
    return false;
}

}  // namespace samband::csv
