// HL7 v2 ER7 parser and serialiser (see message.hpp).
#include "hl7v2/codec/message.hpp"

#include <algorithm>
#include <cctype>

namespace samband::hl7v2 {

namespace {

const field& empty_field() {
    static const field f;
    return f;
}

bool is_delimiter_char(char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && !std::isalnum(u);
}

bool starts_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(0, p.size()) == p;
}

// Splits `s` on `sep` into views (sep == 0: one piece).
void split(std::string_view s, char sep, std::vector<std::string_view>& out) {
    out.clear();
    if (sep == 0) {
        out.push_back(s);
        return;
    }
    std::size_t start = 0;
    for (;;) {
        std::size_t p = s.find(sep, start);
        if (p == std::string_view::npos) {
            out.push_back(s.substr(start));
            return;
        }
        out.push_back(s.substr(start, p - start));
        start = p + 1;
    }
}

// Appends `cp` as UTF-8.
void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
        out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
}

// Decodes one UTF-8 code point at s[i]; returns its length, or 0 if invalid.
std::size_t utf8_next(std::string_view s, std::size_t i, std::uint32_t& cp) {
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    unsigned char c = b(0);
    if (c < 0x80) {
        cp = c;
        return 1;
    }
    std::size_t n;
    std::uint32_t min;
    if ((c & 0xe0) == 0xc0) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        if ((b(k) & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (b(k) & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

bool valid_utf8(std::string_view s) {
    std::uint32_t cp;
    for (std::size_t i = 0; i < s.size();) {
        std::size_t n = utf8_next(s, i, cp);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Removes escape sequences from a raw leaf, giving bytes in the message's charset. Unknown or
// unterminated sequences are kept literally (senders often write a lone backslash).
bool unescape(std::string_view raw, const separators& s, std::string& out, std::string& why) {
    out.clear();
    if (s.escape == 0 || raw.find(s.escape) == std::string_view::npos) {
        out.assign(raw);
        return true;
    }
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
        char c = raw[i];
        if (c != s.escape) {
            out.push_back(c);
            continue;
        }
        std::size_t end = raw.find(s.escape, i + 1);
        if (end == std::string_view::npos) {
            out.append(raw.substr(i));
            return true;
        }
        std::string_view seq = raw.substr(i + 1, end - i - 1);
        if (seq == "F") {
            out.push_back(s.field);
        } else if (seq == "S") {
            out.push_back(s.component);
        } else if (seq == "T") {
            out.push_back(s.subcomponent);
        } else if (seq == "R") {
            out.push_back(s.repetition);
        } else if (seq == "E") {
            out.push_back(s.escape);
        } else if (seq == ".br" || seq == ".sp") {
            out.push_back('\n');
        } else if (seq == "H" || seq == "N" || starts_with(seq, ".in") || starts_with(seq, ".ti") ||
                   seq == ".fi" || seq == ".nf" || seq == ".ce" || starts_with(seq, ".sk")) {
            // formatting hints: no text
        } else if (!seq.empty() && seq[0] == 'X') {
            std::string_view hex = seq.substr(1);
            if (hex.size() % 2 != 0) {
                why =
                    "escape sequence \\X" + std::string(hex) + "\\ has an odd number of hex digits";
                return false;
            }
            for (std::size_t k = 0; k < hex.size(); k += 2) {
                int hi = hex_value(hex[k]), lo = hex_value(hex[k + 1]);
                if (hi < 0 || lo < 0) {
                    why = "escape sequence \\X" + std::string(hex) + "\\ is not hexadecimal";
                    return false;
                }
                out.push_back(static_cast<char>(hi * 16 + lo));
            }
        } else {
            out.append(raw.substr(i, end - i + 1));  // \Cxxyy\, \Mxxyyzz\, \Z..\: kept as is
        }
        i = end;
    }
    return true;
}

bool to_utf8(std::string& text, charset cs, std::string& why) {
    switch (cs) {
        case charset::latin1: {
            bool high = std::any_of(text.begin(), text.end(),
                                    [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
            if (!high) return true;
            std::string out;
            out.reserve(text.size() + 8);
            for (char c : text) put_utf8(out, static_cast<unsigned char>(c));
            text.swap(out);
            return true;
        }
        case charset::ascii:
            for (char c : text)
                if (static_cast<unsigned char>(c) >= 0x80) {
                    why = "a byte above 127 in a message whose MSH-18 says ASCII";
                    return false;
                }
            return true;
        case charset::utf8:
            if (!valid_utf8(text)) {
                why = "the text is not valid UTF-8 (give MSH-18 \"8859/1\" for ISO 8859-1)";
                return false;
            }
            return true;
    }
    return true;
}

// UTF-8 → the output charset (ISO 8859-1: characters above U+00FF become '?').
std::string from_utf8(std::string_view text, charset cs) {
    if (cs != charset::latin1) return std::string(text);
    std::string out;
    out.reserve(text.size());
    std::uint32_t cp;
    for (std::size_t i = 0; i < text.size();) {
        std::size_t n = utf8_next(text, i, cp);
        if (n == 0) {
            out.push_back('?');
            ++i;
            continue;
        }
        out.push_back(cp <= 0xff ? static_cast<char>(cp) : '?');
        i += n;
    }
    return out;
}

struct line {
    std::string_view text;
    std::size_t offset;  // in the input
};

// Splits on \r, \n or \r\n; blank lines are skipped.
std::vector<line> split_lines(std::string_view bytes) {
    std::vector<line> out;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= bytes.size(); ++i) {
        if (i == bytes.size() || bytes[i] == '\r' || bytes[i] == '\n') {
            if (i > start) out.push_back({bytes.substr(start, i - start), start});
            start = i + 1;
        }
    }
    return out;
}

parse_error make_error(hl7_error code, std::string text, std::string_view seg = {},
                       std::size_t seq = 0, std::size_t fld = 0, std::size_t comp = 0) {
    return parse_error{code, std::move(text), std::string(seg), seq, fld, comp};
}

// Reads MSH-1/MSH-2 (or FHS/BHS) of a header line.
result<separators> read_separators(std::string_view ln, std::size_t seq) {
    std::string name(ln.substr(0, std::min<std::size_t>(3, ln.size())));
    if (ln.size() < 5)
        return make_error(hl7_error::required_missing,
                          "the " + name + " segment is too short to hold its delimiters", name, seq,
                          1);
    separators s;
    s.field = ln[3];
    if (!is_delimiter_char(s.field))
        return make_error(hl7_error::data_type,
                          "MSH-1 (field separator) must be a punctuation character", name, seq, 1);
    std::size_t end = ln.find(s.field, 4);
    std::string_view enc = ln.substr(4, end == std::string_view::npos ? ln.size() - 4 : end - 4);
    if (enc.size() < 2 || enc.size() > 5)
        return make_error(hl7_error::data_type,
                          "MSH-2 (encoding characters) must hold 2 to 5 characters, has " +
                              std::to_string(enc.size()),
                          name, seq, 2);
    s.component = enc[0];
    s.repetition = enc[1];
    s.escape = enc.size() > 2 ? enc[2] : 0;
    s.subcomponent = enc.size() > 3 ? enc[3] : 0;
    std::string all{s.field};
    all.append(enc);
    for (std::size_t i = 0; i < all.size(); ++i) {
        if (!is_delimiter_char(all[i]))
            return make_error(hl7_error::data_type,
                              "MSH-2 (encoding characters) must be punctuation characters", name,
                              seq, 2);
        if (all.find(all[i], i + 1) != std::string::npos)
            return make_error(hl7_error::data_type,
                              "MSH-1 and MSH-2 must name five different delimiters", name, seq, 2);
    }
    return s;
}

struct segment_parser {
    const separators& seps;
    charset chars;
    const limits& lim;
    std::vector<std::string_view> reps, comps, subs, fields;
    std::string buf, why;

    // Parses one segment line. `header`: MSH/FHS/BHS, whose fields 1 and 2 are literal.
    result<segment> run(std::string_view ln, std::size_t seq) {
        segment seg;
        std::size_t name_end = ln.find(seps.field);
        std::string_view name = ln.substr(0, name_end);
        if (name.size() != 3 || !std::all_of(name.begin(), name.end(), [](char c) {
                return std::isupper(static_cast<unsigned char>(c)) ||
                       std::isdigit(static_cast<unsigned char>(c));
            }))
            return make_error(hl7_error::segment_sequence,
                              "segment " + std::to_string(seq) +
                                  " does not start with a three-character segment name",
                              std::string_view{}, seq);
        seg.name.assign(name);
        if (name_end == std::string_view::npos) return seg;
        std::string_view rest = ln.substr(name_end + 1);
        bool header = name == "MSH" || name == "FHS" || name == "BHS";
        std::size_t first = 1;
        if (header) {
            seg.fields.resize(2);
            seg.fields[0].set(std::string(1, seps.field));
            std::size_t e = rest.find(seps.field);
            seg.fields[1].set(std::string(rest.substr(0, e)));
            if (e == std::string_view::npos) return seg;
            rest = rest.substr(e + 1);
            first = 3;
        }
        split(rest, seps.field, fields);
        if (fields.size() + first - 1 > lim.max_fields)
            return make_error(hl7_error::segment_sequence,
                              "segment " + seg.name + " has more than " +
                                  std::to_string(lim.max_fields) + " fields",
                              seg.name, seq);
        seg.fields.reserve(fields.size() + first - 1);
        for (std::size_t i = 0; i < fields.size(); ++i) {
            std::size_t fno = first + i;
            field f;
            if (!fields[i].empty()) {
                // Copy: split() below reuses the scratch vectors.
                std::vector<std::string_view> my_reps;
                split(fields[i], seps.repetition, my_reps);
                if (my_reps.size() > lim.max_repetitions)
                    return make_error(
                        hl7_error::data_type,
                        "more than " + std::to_string(lim.max_repetitions) + " repetitions",
                        seg.name, seq, fno);
                f.reps.resize(my_reps.size());
                for (std::size_t r = 0; r < my_reps.size(); ++r) {
                    std::vector<std::string_view> my_comps;
                    split(my_reps[r], seps.component, my_comps);
                    if (my_comps.size() > lim.max_components)
                        return make_error(
                            hl7_error::data_type,
                            "more than " + std::to_string(lim.max_components) + " components",
                            seg.name, seq, fno);
                    auto& rc = f.reps[r];
                    rc.resize(my_comps.size());
                    for (std::size_t c = 0; c < my_comps.size(); ++c) {
                        split(my_comps[c], seps.subcomponent, subs);
                        if (subs.size() > lim.max_components)
                            return make_error(hl7_error::data_type,
                                              "more than " + std::to_string(lim.max_components) +
                                                  " subcomponents",
                                              seg.name, seq, fno, c + 1);
                        rc[c].resize(subs.size());
                        for (std::size_t s = 0; s < subs.size(); ++s) {
                            if (!unescape(subs[s], seps, buf, why) || !to_utf8(buf, chars, why))
                                return make_error(hl7_error::data_type, why, seg.name, seq, fno,
                                                  c + 1);
                            rc[c][s] = buf;
                        }
                    }
                }
            }
            seg.fields.push_back(std::move(f));
        }
        return seg;
    }
};

// MSH-18 read from the raw header line (before decoding), first repetition, first component.
std::string_view raw_msh18(std::string_view ln, const separators& s) {
    std::size_t pos = 3;            // at MSH-1
    for (int f = 2; f < 18; ++f) {  // the 17th field separator starts MSH-18
        pos = ln.find(s.field, pos + 1);
        if (pos == std::string_view::npos) return {};
    }
    std::string_view v = ln.substr(pos + 1);
    std::size_t e = v.find_first_of(std::string{s.field, s.repetition, s.component});
    return v.substr(0, e);
}

result<message> parse_lines(const std::vector<line>& lines, std::size_t begin, std::size_t end,
                            const parse_options& opt) {
    if (begin >= end)
        return make_error(hl7_error::required_missing, "the message is empty", "MSH", 1);
    std::string_view first = lines[begin].text;
    if (!starts_with(first, "MSH"))
        return make_error(hl7_error::segment_sequence,
                          "the message does not start with an MSH segment", "MSH", 1);
    if (end - begin > opt.lim.max_segments)
        return make_error(hl7_error::segment_sequence,
                          "the message has " + std::to_string(end - begin) +
                              " segments; the limit is " + std::to_string(opt.lim.max_segments));
    auto seps = read_separators(first, 1);
    if (!seps) return seps.error();
    message msg;
    msg.seps = *seps;
    auto cs = charset_from_msh18(raw_msh18(first, msg.seps), opt.default_charset);
    if (!cs)
        return make_error(hl7_error::table_value,
                          "MSH-18 names a character set this endpoint does not support (supported: "
                          "UNICODE UTF-8, 8859/1, ASCII)",
                          "MSH", 1, 18);
    msg.chars = *cs;
    segment_parser p{msg.seps, msg.chars, opt.lim, {}, {}, {}, {}, {}, {}};
    msg.segments.reserve(end - begin);
    for (std::size_t i = begin; i < end; ++i) {
        auto seg = p.run(lines[i].text, i - begin + 1);
        if (!seg) return seg.error();
        msg.segments.push_back(std::move(*seg));
    }
    // A message that declared fewer than four encoding characters is written back with the
    // standard ones for the missing escape and subcomponent characters, where they are free.
    std::string used{msg.seps.field, msg.seps.component, msg.seps.repetition, msg.seps.escape,
                     msg.seps.subcomponent};
    if (!msg.seps.escape && used.find('\\') == std::string::npos) msg.seps.escape = '\\';
    used.push_back(msg.seps.escape);
    if (msg.seps.escape && !msg.seps.subcomponent && used.find('&') == std::string::npos)
        msg.seps.subcomponent = '&';
    return msg;
}

}  // namespace

std::string_view field::get(std::size_t component, std::size_t sub, std::size_t rep) const {
    if (rep == 0 || component == 0 || sub == 0 || rep > reps.size()) return {};
    const auto& r = reps[rep - 1];
    if (component > r.size()) return {};
    const auto& c = r[component - 1];
    if (sub > c.size()) return {};
    return c[sub - 1];
}

void field::set(std::string value, std::size_t component, std::size_t sub, std::size_t rep) {
    if (rep == 0 || component == 0 || sub == 0) return;
    if (reps.size() < rep) reps.resize(rep);
    auto& r = reps[rep - 1];
    if (r.size() < component) r.resize(component);
    auto& c = r[component - 1];
    if (c.size() < sub) c.resize(sub);
    c[sub - 1] = std::move(value);
}

bool field::empty() const {
    for (const auto& r : reps)
        for (const auto& c : r)
            for (const auto& s : c)
                if (!s.empty()) return false;
    return true;
}

const field& segment::at(std::size_t n) const {
    if (n == 0 || n > fields.size()) return empty_field();
    return fields[n - 1];
}

field& segment::at(std::size_t n) {
    if (fields.size() < n) fields.resize(n);
    return fields[n - 1];
}

const segment* message::find(std::string_view name) const {
    for (const auto& s : segments)
        if (s.name == name) return &s;
    return nullptr;
}

std::vector<const segment*> message::find_all(std::string_view name) const {
    std::vector<const segment*> out;
    for (const auto& s : segments)
        if (s.name == name) out.push_back(&s);
    return out;
}

segment& message::add(std::string name) {
    segments.push_back(segment{std::move(name), {}});
    return segments.back();
}

std::string_view message::control_id() const {
    const segment* m = find("MSH");
    return m ? m->get(10) : std::string_view{};
}
std::string_view message::message_type() const {
    const segment* m = find("MSH");
    return m ? m->get(9, 1) : std::string_view{};
}
std::string_view message::trigger_event() const {
    const segment* m = find("MSH");
    return m ? m->get(9, 2) : std::string_view{};
}
std::string_view message::version() const {
    const segment* m = find("MSH");
    return m ? m->get(12, 1) : std::string_view{};
}

std::string parse_error::describe() const {
    std::string where;
    if (!segment.empty()) {
        where = segment;
        if (field) where += "-" + std::to_string(field);
        if (component) where += "." + std::to_string(component);
        if (segment_seq) where += " (segment " + std::to_string(segment_seq) + ")";
        where += ": ";
    }
    return where + text;
}

boost::system::result<charset> charset_from_msh18(std::string_view v, charset fallback) {
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    std::string u;
    for (char c : v) u.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    if (u.empty()) return fallback;
    if (u == "UNICODE UTF-8" || u == "UTF-8" || u == "UTF8") return charset::utf8;
    if (u == "8859/1" || u == "ISO-8859-1" || u == "ISO8859-1" || u == "ISO IR100")
        return charset::latin1;
    if (u == "ASCII" || u == "US-ASCII") return charset::ascii;
    return boost::system::result<charset>(boost::system::in_place_error,
                                          std::make_error_code(std::errc::invalid_argument));
}

std::string_view msh18_of(charset c) {
    switch (c) {
        case charset::utf8:
            return "UNICODE UTF-8";
        case charset::latin1:
            return "8859/1";
        case charset::ascii:
            return "ASCII";
    }
    return "";
}

result<message> parse(std::string_view bytes, const parse_options& opt) {
    if (bytes.size() > opt.lim.max_message_bytes)
        return make_error(hl7_error::segment_sequence,
                          "the message is " + std::to_string(bytes.size()) +
                              " bytes; the limit is " + std::to_string(opt.lim.max_message_bytes));
    auto lines = split_lines(bytes);
    if (lines.size() > opt.lim.max_segments)
        return make_error(hl7_error::segment_sequence,
                          "the message has " + std::to_string(lines.size()) +
                              " segments; the limit is " + std::to_string(opt.lim.max_segments));
    return parse_lines(lines, 0, lines.size(), opt);
}

result<batch> parse_batch(std::string_view bytes, const parse_options& opt) {
    if (bytes.size() > opt.lim.max_message_bytes)
        return make_error(hl7_error::segment_sequence,
                          "the batch is " + std::to_string(bytes.size()) + " bytes; the limit is " +
                              std::to_string(opt.lim.max_message_bytes));
    auto lines = split_lines(bytes);
    batch b;
    std::size_t i = 0;
    auto header_seg = [&](std::size_t k) -> result<segment> {
        auto seps = read_separators(lines[k].text, k + 1);
        if (!seps) return seps.error();
        segment_parser p{*seps, opt.default_charset, opt.lim, {}, {}, {}, {}, {}, {}};
        return p.run(lines[k].text, k + 1);
    };
    while (i < lines.size() &&
           (starts_with(lines[i].text, "FHS") || starts_with(lines[i].text, "BHS"))) {
        auto s = header_seg(i);
        if (!s) return s.error();
        b.headers.push_back(std::move(*s));
        ++i;
    }
    std::size_t max_total = opt.lim.max_segments * 100;
    if (lines.size() > max_total)
        return make_error(hl7_error::segment_sequence,
                          "the batch has more than " + std::to_string(max_total) + " segments");
    while (i < lines.size()) {
        std::string_view t = lines[i].text;
        if (starts_with(t, "BTS") || starts_with(t, "FTS")) break;
        if (!starts_with(t, "MSH"))
            return make_error(hl7_error::segment_sequence,
                              "segment " + std::to_string(i + 1) +
                                  " of the batch is outside a message (expected MSH)",
                              t.substr(0, 3), i + 1);
        std::size_t j = i + 1;
        while (j < lines.size() && !starts_with(lines[j].text, "MSH") &&
               !starts_with(lines[j].text, "BTS") && !starts_with(lines[j].text, "FTS"))
            ++j;
        auto m = parse_lines(lines, i, j, opt);
        if (!m) {
            parse_error e = m.error();
            e.text =
                "message " + std::to_string(b.messages.size() + 1) + " of the batch: " + e.text;
            return e;
        }
        b.messages.push_back(std::move(*m));
        i = j;
    }
    separators trailer_seps = b.messages.empty() ? separators{} : b.messages.front().seps;
    if (!b.headers.empty()) {
        if (auto hs = read_separators(lines[0].text, 1)) trailer_seps = *hs;
    }
    for (; i < lines.size(); ++i) {
        std::string_view t = lines[i].text;
        if (!starts_with(t, "BTS") && !starts_with(t, "FTS"))
            return make_error(hl7_error::segment_sequence,
                              "segment " + std::to_string(i + 1) +
                                  " follows the batch trailer (expected BTS or FTS)",
                              t.substr(0, 3), i + 1);
        segment_parser p{trailer_seps, opt.default_charset, opt.lim, {}, {}, {}, {}, {}, {}};
        auto seg = p.run(t, i + 1);
        if (!seg) return seg.error();
        b.trailers.push_back(std::move(*seg));
    }
    if (b.messages.empty() && b.headers.empty())
        return make_error(hl7_error::segment_sequence,
                          "the input does not start with MSH, FHS or BHS", "MSH", 1);
    return b;
}

std::string escape(std::string_view text, const separators& s) {
    std::string out;
    out.reserve(text.size() + 8);
    const char e = s.escape;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (!e) {  // no escape character declared: delimiters cannot be written, become spaces
            bool delim = c == s.field || c == s.component || c == s.repetition ||
                         (s.subcomponent && c == s.subcomponent) || c == '\r' || c == '\n';
            out.push_back(delim ? ' ' : c);
            continue;
        }
        auto seq = [&](const char* code) {
            out.push_back(e);
            out.append(code);
            out.push_back(e);
        };
        if (c == s.field) {
            seq("F");
        } else if (c == s.component) {
            seq("S");
        } else if (s.subcomponent && c == s.subcomponent) {
            seq("T");
        } else if (c == s.repetition) {
            seq("R");
        } else if (s.escape && c == s.escape) {
            seq("E");
        } else if (c == '\r') {
            if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
            seq(".br");
        } else if (c == '\n') {
            seq(".br");
        } else {
            out.push_back(c);
        }
    }
    return out;
}

std::string serialize(const message& msg) {
    const separators& s = msg.seps;
    std::string out;
    out.reserve(256 * msg.segments.size());
    auto leaf = [&](const std::string& v) { out += escape(from_utf8(v, msg.chars), s); };
    auto write_field = [&](const field& f) {
        for (std::size_t r = 0; r < f.reps.size(); ++r) {
            if (r) out.push_back(s.repetition);
            for (std::size_t c = 0; c < f.reps[r].size(); ++c) {
                if (c) out.push_back(s.component);
                const auto& subs = f.reps[r][c];
                for (std::size_t k = 0; k < subs.size(); ++k) {
                    if (k) out.push_back(s.subcomponent ? s.subcomponent : s.component);
                    leaf(subs[k]);
                }
            }
        }
    };
    for (const auto& seg : msg.segments) {
        out += seg.name;
        bool header = seg.name == "MSH" || seg.name == "FHS" || seg.name == "BHS";
        std::size_t first = 0;
        if (header) {
            out.push_back(s.field);
            out.push_back(s.component);
            out.push_back(s.repetition);
            if (s.escape) out.push_back(s.escape);
            if (s.subcomponent) out.push_back(s.subcomponent);
            first = 2;
        }
        for (std::size_t i = first; i < seg.fields.size(); ++i) {
            out.push_back(s.field);
            write_field(seg.fields[i]);
        }
        out.push_back('\r');
    }
    return out;
}

}  // namespace samband::hl7v2
