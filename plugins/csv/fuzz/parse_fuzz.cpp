// libFuzzer target for the CSV decoder, parser, value converters and writer.
// Build: clang++ -fsanitize=fuzzer,address,undefined (cmake -DSAMBAND_FUZZ=ON with clang).
#include "csv_parse.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace samband::csv;
    std::string_view in(reinterpret_cast<const char*>(data), size);
    auto text = decode(in, encoding::automatic);
    if (!text) return 0;
    limits lim;
    lim.max_columns = 64;
    lim.max_field_bytes = 4096;
    lim.max_rows = 1000;
    char delim = detect_delimiter(text->text);
    (void)parse(text->text, delim, lim, [&](record& rec) {
        // What we write for a record, we read back as the same fields.
        std::string line;
        for (std::size_t i = 0; i < rec.fields.size(); ++i) {
            if (i) line.push_back(delim);
            append_field(line, rec.fields[i], delim);
            double d;
            bool b;
            (void)parse_date(rec.fields[i]);
            (void)parse_number(rec.fields[i], d);
            (void)parse_boolean(rec.fields[i], b);
        }
        std::vector<std::string> back;
        auto again = parse(line, delim, lim, [&](record& r2) {
            back = r2.fields;
            return false;
        });
        if (!again) __builtin_trap();
        // A formula-looking cell gains a leading ' on the way out; anything else is unchanged.
        bool blank = rec.fields.size() == 1 && rec.fields[0].empty();
        if (!blank && back.size() != rec.fields.size()) __builtin_trap();
        for (std::size_t i = 0; i < back.size() && i < rec.fields.size(); ++i) {
            const std::string& f = rec.fields[i];
            if (back[i] != f && back[i] != "'" + f) __builtin_trap();
        }
        return true;
    });
    return 0;
}
