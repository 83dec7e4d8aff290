// Depth- and size-limited JSON parsing into a RapidJSON document: the one way Samband reads JSON.
#pragma once

// Header-only; needs RapidJSON (Debian: rapidjson-dev). The host and the in-tree plugins parse
// every JSON text through samband::json::parse, so no input can recurse the stack: the reader is
// RapidJSON's iterative one (no recursion at all), and a SAX filter stops it when the nesting
// passes the limit, which bounds every later recursive walk (Accept, schema validation, CopyFrom).

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace samband::json {

struct limits {
    std::size_t max_depth = 64;                 // nested objects and arrays
    std::size_t max_bytes = 64u * 1024 * 1024;  // the whole text
    bool relaxed = false;  // allow comments and trailing commas (files written by people)
};

namespace detail {

// Forwards SAX events to the document and refuses nesting past the limit.
struct depth_filter {
    rapidjson::Document& doc;
    std::size_t max_depth;
    std::size_t depth = 0;
    bool too_deep = false;
    bool not_finite = false;
    bool lone_surrogate = false;

    bool Null() { return doc.Null(); }
    bool Bool(bool b) { return doc.Bool(b); }
    bool Int(int i) { return doc.Int(i); }
    bool Uint(unsigned u) { return doc.Uint(u); }
    bool Int64(std::int64_t i) { return doc.Int64(i); }
    bool Uint64(std::uint64_t u) { return doc.Uint64(u); }
    bool Double(double d) {
        // A number past the double range (1e400) reads as infinity, which JSON cannot write back.
        if (std::isfinite(d)) return doc.Double(d);
        not_finite = true;
        return false;
    }
    bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
        return doc.RawNumber(s, n, copy);
    }
    bool String(const char* s, rapidjson::SizeType n, bool copy) {
        return text_ok(s, n) && doc.String(s, n, copy);
    }
    bool Key(const char* s, rapidjson::SizeType n, bool copy) {
        return text_ok(s, n) && doc.Key(s, n, copy);
    }
    bool StartObject() { return enter() && doc.StartObject(); }
    bool EndObject(rapidjson::SizeType n) {
        --depth;
        return doc.EndObject(n);
    }
    bool StartArray() { return enter() && doc.StartArray(); }
    bool EndArray(rapidjson::SizeType n) {
        --depth;
        return doc.EndArray(n);
    }

private:
    // RapidJSON 1.1.0 turns a lone low-surrogate escape (\uDC00-\uDFFF) into the bytes ED B0-BF
    // xx, which are not UTF-8: refuse it (the input bytes themselves are validated as UTF-8).
    // (memchr finds each 0xED: a byte-by-byte loop was a fifth of parsing an 8 KB string.)
    bool text_ok(const char* s, rapidjson::SizeType n) {
        const char* end = s + n;
        for (const char* p = s; p < end;) {
            p = static_cast<const char*>(std::memchr(p, 0xED, static_cast<std::size_t>(end - p)));
            if (!p) return true;
            if (++p < end && static_cast<unsigned char>(*p) >= 0xA0) {
                lone_surrogate = true;
                return false;
            }
        }
        return true;
    }
    bool enter() {
        if (++depth <= max_depth) return true;
        too_deep = true;
        return false;
    }
};

// True when every byte is below 0x80 (eight bytes at a time).
inline bool is_ascii(std::string_view text) {
    const char* p = text.data();
    std::size_t n = text.size(), i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, sizeof w);
        if (w & 0x8080808080808080ull) return false;
    }
    for (; i < n; ++i)
        if (static_cast<unsigned char>(p[i]) & 0x80) return false;
    return true;
}

// The length of the run at the start of `s` that a JSON string holds as is: up to the first '"',
// '\\' or control character (below 0x20), else `n`. Eight bytes at a time (a word that may hold
// one is looked at byte by byte); bytes from 0x80 up are part of the run.
inline std::size_t unescaped_run(const char* s, std::size_t n) {
    constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, s + i, sizeof w);
        std::uint64_t quote = w ^ (ones * '"'), slash = w ^ (ones * '\\');
        std::uint64_t hit =
            ((w - ones * 0x20) | (quote - ones) | (slash - ones)) & highs & ~(w & highs);
        if (hit) break;
    }
    for (; i < n; ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == '"' || c == '\\') return i;
    }
    return n;
}

// RapidJSON's StringStream over a NUL-terminated copy of ASCII text, knowing where it ends: the
// reader copies a string's unescaped runs from it whole (the specialisation below), not byte by
// byte through its escape checks (callgrind: parsing an 8 KB event 165,000 -> 42,000 instructions).
struct ascii_stream : rapidjson::StringStream {
    ascii_stream(const char* text, std::size_t n) : rapidjson::StringStream(text), end_(text + n) {}
    const char* end_;
};

}  // namespace detail
}  // namespace samband::json

namespace rapidjson {

template <>
struct StreamTraits<samband::json::detail::ascii_stream> {
    enum { copyOptimization = 1 };
};

// RapidJSON's reader calls this at the start of a string and after each escape when it does not
// validate UTF-8 (only ASCII text is read so): the run up to the next '"', '\\' or control
// character is copied whole, and the reader goes on from there with its own checks. Its own SSE
// versions stay compiled out (RapidJSON 1.1.0's let 0x1A-0x1F through).
template <>
template <>
inline void GenericReader<UTF8<>, UTF8<>, CrtAllocator>::ScanCopyUnescapedString(
    samband::json::detail::ascii_stream& is, StackStream<char>& os) {
    const char* p = is.src_;
    // At most 1 GiB a call (the reader's counts are 32-bit): the reader then takes one character
    // itself and calls again.
    std::size_t n = samband::json::detail::unescaped_run(
        p, std::min<std::size_t>(static_cast<std::size_t>(is.end_ - p), std::size_t{1} << 30));
    if (n == 0) return;
    std::memcpy(os.Push(static_cast<SizeType>(n)), p, n);
    is.src_ = p + n;
}

}  // namespace rapidjson

namespace samband::json {
namespace detail {

template <unsigned Flags, class Stream>
std::string parse_from(Stream& is, std::string_view text, rapidjson::Document& doc,
                       std::size_t max_depth) {
    // The reader gathers each string in its stack before the document copies it: sized for the
    // text (up to 64 KiB) so an 8 KB string does not grow it a dozen times.
    rapidjson::Reader reader(nullptr, std::clamp<std::size_t>(text.size() + 1, 256, 64 * 1024));
    depth_filter filter{doc, max_depth};
    auto generate = [&](rapidjson::Document&) {
        return !reader.Parse<Flags>(is, filter).IsError();
    };
    doc.SetNull();
    doc.Populate(generate);
    if (!reader.HasParseError()) return {};
    std::size_t off = reader.GetErrorOffset();
    if (filter.too_deep) {
        return "JSON nested deeper than " + std::to_string(max_depth) + " levels (at offset " +
               std::to_string(off) + ")";
    }
    if (filter.lone_surrogate) {
        doc.SetNull();
        return "a string holds a lone UTF-16 surrogate escape (\\uD800-\\uDFFF), which is not "
               "text (at offset " +
               std::to_string(off) + ")";
    }
    if (filter.not_finite) {
        doc.SetNull();
        return "a number too large for a double (at offset " + std::to_string(off) + ")";
    }
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < off && i < text.size(); ++i) {
        if (text[i] == '\n') {
            ++line;
            col = 1;
        } else {
            ++col;
        }
    }
    doc.SetNull();
    return "malformed JSON at line " + std::to_string(line) + " column " + std::to_string(col) +
           ": " + rapidjson::GetParseError_En(reader.GetParseErrorCode());
}

// ASCII text is read from a NUL-terminated copy (parse refused a NUL in the text, so the
// terminator is its end): RapidJSON's StringStream reads a byte without the end check its
// MemoryStream makes per byte. Other text is read through the MemoryStream: RapidJSON's UTF-8
// check reads every byte a lead byte announces before it looks at them, past a terminator at the
// end of the text (the fuzzers found that read).
template <unsigned Flags>
std::string parse_with(std::string_view text, rapidjson::Document& doc, std::size_t max_depth) {
    if constexpr ((Flags & rapidjson::kParseValidateEncodingFlag) == 0) {
        std::string copy(text);
        ascii_stream is(copy.c_str(), copy.size());
        return parse_from<Flags>(is, text, doc, max_depth);
    } else {
        rapidjson::MemoryStream ms(text.data(), text.size());
        rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> is(ms);
        return parse_from<Flags>(is, text, doc, max_depth);
    }
}

}  // namespace detail

// Parses `text` as exactly one JSON document (only white space may follow) into `doc`. Returns
// an empty string on success, else a sentence naming the problem: the size, the depth and its
// offset, or the line, column and RapidJSON's reason. Strings must be valid UTF-8.
inline std::string parse(std::string_view text, rapidjson::Document& doc, const limits& lim = {}) {
    if (text.size() > lim.max_bytes) {
        doc.SetNull();
        return "JSON text is " + std::to_string(text.size()) + " bytes, over the limit of " +
               std::to_string(lim.max_bytes);
    }
    // A NUL byte is never valid JSON, and RapidJSON's streams would take it for the end.
    if (auto nul = text.find('\0'); nul != std::string_view::npos) {
        doc.SetNull();
        return "malformed JSON: a NUL byte at offset " + std::to_string(nul);
    }
    // Text of ASCII bytes alone is valid UTF-8: RapidJSON's byte-by-byte UTF-8 check (as costly
    // as the parse itself) runs only on text with other bytes. The result is the same either way.
    constexpr unsigned ascii = rapidjson::kParseIterativeFlag;
    constexpr unsigned base = ascii | rapidjson::kParseValidateEncodingFlag;
    constexpr unsigned relaxed =
        rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag;
    if (detail::is_ascii(text)) {
        if (lim.relaxed) return detail::parse_with<ascii | relaxed>(text, doc, lim.max_depth);
        return detail::parse_with<ascii>(text, doc, lim.max_depth);
    }
    if (lim.relaxed) return detail::parse_with<base | relaxed>(text, doc, lim.max_depth);
    return detail::parse_with<base>(text, doc, lim.max_depth);
}

}  // namespace samband::json
