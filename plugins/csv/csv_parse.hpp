// CSV reading and writing for the csv plugin: RFC 4180 plus the Norwegian spreadsheet dialect.
#pragma once

#include <boost/system/result.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace samband::csv {

// Limits that keep a hostile file from costing more than a bounded amount of work and memory.
struct limits {
    std::size_t max_file_bytes = 100u * 1024 * 1024;
    std::size_t max_columns = 1000;
    std::size_t max_field_bytes = 64u * 1024;
    std::size_t max_rows = 10'000'000;
};

enum class encoding { automatic, utf8, windows_1252 };

// The text of a file as UTF-8, with what was detected.
struct decoded {
    std::string text;  // UTF-8, without a BOM
    bool had_bom = false;
    bool from_windows_1252 = false;
};

// Decodes `bytes`: a UTF-8 BOM is dropped; valid UTF-8 stays; otherwise (automatic) the bytes
// are read as Windows-1252. Refuses NUL bytes and control characters other than tab/CR/LF
// (binary data), naming the byte offset.
boost::system::result<decoded, std::string> decode(std::string_view bytes, encoding enc);

// One record: its fields and the physical line it starts on (1-based; a quoted field may span
// lines, so the next record's line is not always this one's + 1).
struct record {
    std::vector<std::string> fields;
    std::size_t line = 0;
    std::string raw;  // the record's text as in the file (without the line ending)
};

// The delimiter of a header line: ';', ',' or '\t', whichever occurs most outside quotes
// (';' on a tie, the Norwegian spreadsheet default).
char detect_delimiter(std::string_view text);

// Reads records from UTF-8 text. `on_record` returns false to stop. Errors (unterminated quote,
// a character after a closing quote, too many columns, a field too long, too many rows) name the
// line and column (1-based) and stop the read.
struct parse_error {
    std::size_t line = 0;
    std::size_t column = 0;
    std::string reason;
};
boost::system::result<std::size_t, parse_error> parse(
    std::string_view text, char delimiter, const limits& lim,
    const std::function<bool(record&)>& on_record);

// Writes one CSV field for Excel: quoted when it holds the delimiter, a quote, CR or LF, or
// begins or ends with a space; a leading = + - @ gets a ' so a spreadsheet never runs it as a
// formula (CSV injection).
void append_field(std::string& out, std::string_view field, char delimiter);

// A value as a spreadsheet expects it: a JSON-style number with a decimal comma.
std::string decimal_comma(std::string_view number);

// Converts a Norwegian date (dd.mm.yyyy, d.m.yyyy) or an ISO date (yyyy-mm-dd) to yyyy-mm-dd,
// checking the calendar; empty on anything else.
std::string parse_date(std::string_view s);

// Parses a number with a decimal comma or point ("12,5", "12.5", "1 234,5"); false if not one.
bool parse_number(std::string_view s, double& out);

// ja/nei, j/n, yes/no, true/false, 1/0, x/"" (case-insensitive); false if not one of them.
bool parse_boolean(std::string_view s, bool& out);

}  // namespace samband::csv
