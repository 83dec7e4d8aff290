// HL7 v2 (2.3–2.5.1) messages: a decoded tree, the parser (ER7 text) and the serialiser.
#pragma once

#include <boost/system/result.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace samband::hl7v2 {

// The five delimiters a message declares in MSH-1 and MSH-2 (or FHS/BHS for a batch).
struct separators {
    char field = '|';
    char component = '^';
    char repetition = '~';
    char escape = '\\';
    char subcomponent = '&';
};

// Character sets named in MSH-18 that the codec converts to and from UTF-8.
enum class charset { ascii, utf8, latin1 };

// One field: repetitions of components of subcomponents, each leaf decoded (no escapes) UTF-8.
// An empty field has no repetitions.
struct field {
    std::vector<std::vector<std::vector<std::string>>> reps;

    // The leaf at 1-based (component, subcomponent) of repetition `rep` (1-based); "" if absent.
    std::string_view get(std::size_t component = 1, std::size_t sub = 1, std::size_t rep = 1) const;
    void set(std::string value, std::size_t component = 1, std::size_t sub = 1,
             std::size_t rep = 1);
    bool empty() const;
};

// One segment: its three-letter name and fields 1..n (fields[0] is field 1).
// For MSH (and FHS/BHS) field 1 is the field separator and field 2 the encoding characters, kept
// literally.
struct segment {
    std::string name;
    std::vector<field> fields;

    // Field `n` (1-based), or an empty field when absent.
    const field& at(std::size_t n) const;
    field& at(std::size_t n);  // grows the segment as needed
    std::string_view get(std::size_t n, std::size_t component = 1, std::size_t sub = 1,
                         std::size_t rep = 1) const {
        return at(n).get(component, sub, rep);
    }
    segment& set(std::size_t n, std::string value, std::size_t component = 1, std::size_t sub = 1,
                 std::size_t rep = 1) {
        at(n).set(std::move(value), component, sub, rep);
        return *this;
    }
};

struct message {
    separators seps;
    charset chars = charset::utf8;
    std::vector<segment> segments;

    // The first segment called `name` (nullptr if none).
    const segment* find(std::string_view name) const;
    std::vector<const segment*> find_all(std::string_view name) const;
    segment& add(std::string name);
    // Shorthands for MSH fields.
    std::string_view control_id() const;     // MSH-10
    std::string_view message_type() const;   // MSH-9.1
    std::string_view trigger_event() const;  // MSH-9.2
    std::string_view version() const;        // MSH-12.1
};

// A batch: FHS/BHS headers and trailers (kept as segments) around messages.
struct batch {
    std::vector<segment> headers;  // FHS, BHS as found
    std::vector<message> messages;
    std::vector<segment> trailers;  // BTS, FTS as found
};

// Limits on what the parser accepts; exceeding one is an error naming the limit.
struct limits {
    std::size_t max_message_bytes = 16u * 1024 * 1024;
    std::size_t max_segments = 5000;
    std::size_t max_fields = 1000;       // per segment
    std::size_t max_repetitions = 1000;  // per field
    std::size_t max_components = 100;    // per repetition (and subcomponents per component)
};

// HL7 error codes (table 0357) used in ERR-3 and for parse errors.
enum class hl7_error : int {
    segment_sequence = 100,
    required_missing = 101,
    data_type = 102,
    table_value = 103,
    unsupported_message_type = 200,
    unsupported_event = 201,
    unsupported_processing_id = 202,
    unsupported_version = 203,
    unknown_key = 204,
    duplicate_key = 205,
    record_locked = 206,
    internal = 207,
};

// A parse or mapping failure: what is wrong and where (segment name, its 1-based sequence among
// the message's segments, field, component; 0 = not applicable).
struct parse_error {
    hl7_error code = hl7_error::data_type;
    std::string text;
    std::string segment;
    std::size_t segment_seq = 0;
    std::size_t field = 0;
    std::size_t component = 0;

    // "PID-3.1 (segment 2): ..." style text for operators.
    std::string describe() const;
};

template <class T>
using result = boost::system::result<T, parse_error>;

struct parse_options {
    limits lim;
    // The character set assumed when MSH-18 is empty (HL7 says ASCII; many senders mean this).
    charset default_charset = charset::utf8;
};

// Parses one message (starting with MSH). Segment ends may be \r, \r\n or \n.
result<message> parse(std::string_view bytes, const parse_options& opt = {});
// Parses a batch (FHS/BHS ... MSH ... BTS/FTS) or a single message as a batch of one.
result<batch> parse_batch(std::string_view bytes, const parse_options& opt = {});

// Serialises with \r segment ends, escaping delimiters, in the charset of msg.chars (UTF-8 or
// ISO 8859-1; a character that ISO 8859-1 cannot hold is written as \Xhh\ of its UTF-8 bytes is
// not possible, so it becomes '?'. Use UTF-8 when in doubt).
std::string serialize(const message& msg);

// The charset MSH-18 names ("UNICODE UTF-8", "8859/1", "ASCII", ""), or an error.
boost::system::result<charset> charset_from_msh18(std::string_view value, charset fallback);
std::string_view msh18_of(charset c);

// Escapes one leaf for the given separators (\F\ \S\ \T\ \R\ \E\, newline as \.br\).
std::string escape(std::string_view text, const separators& s);

}  // namespace samband::hl7v2
