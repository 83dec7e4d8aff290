// The CSV parser (plugins/csv): the Norwegian dialect, hostile input, and the writer checked by an
// independent reader (Python's csv module, strict=True).
#include "csv_parse.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

using namespace samband::csv;

std::vector<record> parse_all(std::string_view text, char delim, limits lim = {}) {
    std::vector<record> out;
    auto r = parse(text, delim, lim, [&](record& rec) {
        out.push_back(rec);
        return true;
    });
    EXPECT_TRUE(r) << (r ? "" : r.error().reason);
    return out;
}

TEST(csv_decode, utf8_with_bom_is_utf8_without_it) {
    auto d = decode("\xEF\xBB\xBFnavn;by\r\nÆsa;Tromsø\r\n", encoding::automatic);
    ASSERT_TRUE(d);
    EXPECT_TRUE(d->had_bom);
    EXPECT_FALSE(d->from_windows_1252);
    EXPECT_EQ(d->text, "navn;by\r\nÆsa;Tromsø\r\n");
}

TEST(csv_decode, windows_1252_becomes_utf8) {
    // "Bodø;€;Åse" in Windows-1252.
    auto d = decode("Bod\xF8;\x80;\xC5se", encoding::automatic);
    ASSERT_TRUE(d);
    EXPECT_TRUE(d->from_windows_1252);
    EXPECT_EQ(d->text, "Bodø;€;Åse");
}

TEST(csv_decode, binary_junk_is_refused_with_the_offset) {
    auto d = decode(std::string_view("abc\x00zz", 6), encoding::automatic);
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().find("binary data"), std::string::npos) << d.error();
    EXPECT_NE(d.error().find("at byte 3"), std::string::npos) << d.error();
}

TEST(csv_decode, forced_utf8_refuses_invalid_bytes) {
    auto d = decode("Bod\xF8", encoding::utf8);
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().find("invalid UTF-8 at byte 3"), std::string::npos) << d.error();
}

TEST(csv_delimiter, semicolon_comma_tab_and_quotes) {
    EXPECT_EQ(detect_delimiter("a;b;c\n1,5;2;3"), ';');
    EXPECT_EQ(detect_delimiter("a,b,c\n"), ',');
    EXPECT_EQ(detect_delimiter("a\tb\tc\n"), '\t');
    EXPECT_EQ(detect_delimiter("\"x,y,z\";b\n"), ';');  // commas inside quotes do not count
}

TEST(csv_parse, quoted_newline_keeps_the_line_numbers_right) {
    auto rows = parse_all("a;b\r\n1;\"two\r\nlines\"\r\n3;\"x\"\"y\"\r\n\r\n5;6", ';');
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[0].line, 1u);
    EXPECT_EQ(rows[1].line, 2u);
    EXPECT_EQ(rows[1].fields[1], "two\r\nlines");
    EXPECT_EQ(rows[2].line, 4u);
    EXPECT_EQ(rows[2].fields[1], "x\"y");
    EXPECT_EQ(rows[3].line, 6u);  // the blank line 5 is skipped, not numbered away
    EXPECT_EQ(rows[3].fields[1], "6");
    EXPECT_EQ(rows[1].raw, "1;\"two\r\nlines\"");
}

TEST(csv_parse, empty_fields_and_lf_only) {
    auto rows = parse_all("a,b,c\n,,\n", ',');
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[1].fields, (std::vector<std::string>{"", "", ""}));
}

TEST(csv_parse, unterminated_quote_names_the_line_it_opened_on) {
    auto r = parse("a;b\n1;2\n3;\"open\n4;5\n", ';', {}, [](record&) { return true; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().line, 3u);
    EXPECT_EQ(r.error().column, 2u);
    EXPECT_NE(r.error().reason.find("unterminated"), std::string::npos);
}

TEST(csv_parse, stray_quote_is_refused) {
    auto r = parse("a;b\n1;x\"y\n", ';', {}, [](record&) { return true; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().line, 2u);
    EXPECT_EQ(r.error().column, 2u);
    auto r2 = parse("a;b\n1;\"x\"y\n", ';', {}, [](record&) { return true; });
    ASSERT_FALSE(r2);
    EXPECT_NE(r2.error().reason.find("after a closing quote"), std::string::npos);
}

TEST(csv_parse, a_million_columns_stop_at_the_limit) {
    std::string line(2'000'000, ';');
    std::size_t seen = 0;
    auto r = parse(line, ';', {}, [&](record&) { return ++seen, true; });
    ASSERT_FALSE(r);
    EXPECT_EQ(seen, 0u);
    EXPECT_EQ(r.error().column, 1001u);
    EXPECT_NE(r.error().reason.find("more than 1000 columns"), std::string::npos);
}

TEST(csv_parse, a_field_too_long_is_refused) {
    limits lim;
    lim.max_field_bytes = 10;
    auto r = parse("a\n\"01234567890\"\n", ';', lim, [](record&) { return true; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().line, 2u);
}

TEST(csv_values, dates_numbers_booleans) {
    EXPECT_EQ(parse_date("24.11.2026"), "2026-11-24");
    EXPECT_EQ(parse_date("1.2.2026"), "2026-02-01");
    EXPECT_EQ(parse_date("2026-11-24"), "2026-11-24");
    EXPECT_EQ(parse_date("29.02.2024"), "2024-02-29");
    EXPECT_EQ(parse_date("29.02.2026"), "");
    EXPECT_EQ(parse_date("31.04.2026"), "");
    EXPECT_EQ(parse_date("24/11/2026"), "");
    EXPECT_EQ(parse_date("24.11.26"), "");
    double x = 0;
    EXPECT_TRUE(parse_number("12,5", x));
    EXPECT_DOUBLE_EQ(x, 12.5);
    EXPECT_TRUE(parse_number("1 234,5", x));
    EXPECT_DOUBLE_EQ(x, 1234.5);
    EXPECT_TRUE(parse_number("-3", x));
    EXPECT_DOUBLE_EQ(x, -3);
    EXPECT_FALSE(parse_number("12,5,1", x));
    EXPECT_FALSE(parse_number("tolv", x));
    EXPECT_FALSE(parse_number("", x));
    bool b = false;
    EXPECT_TRUE(parse_boolean("Ja", b));
    EXPECT_TRUE(b);
    EXPECT_TRUE(parse_boolean("nei", b));
    EXPECT_FALSE(b);
    EXPECT_FALSE(parse_boolean("kanskje", b));
}

TEST(csv_write, fields_are_quoted_and_formulas_defused) {
    std::string out;
    append_field(out, "plain", ';');
    out.push_back(';');
    append_field(out, "a;b", ';');
    out.push_back(';');
    append_field(out, "say \"hi\"", ';');
    out.push_back(';');
    append_field(out, "=HYPERLINK(\"x\")", ';');
    out.push_back(';');
    append_field(out, "-12,5", ';');
    EXPECT_EQ(out, "plain;\"a;b\";\"say \"\"hi\"\"\";\"'=HYPERLINK(\"\"x\"\")\";-12,5");
    EXPECT_EQ(decimal_comma("12.5"), "12,5");
}

// What we write, Python's strict reader reads back to the same cells.
TEST(csv_write, python_reads_back_what_we_write) {
    std::vector<std::vector<std::string>> rows = {
        {"Hendelse", "Navn", "Notat", "Skår"},
        {"e1", "Åse Ærlig-Øyen", "to\r\nlinjer; med \"sitat\"", "12,5"},
        {"e2", " space ", "", "=1+1"},
    };
    std::string text = "\xEF\xBB\xBF";
    for (const auto& r : rows) {
        for (std::size_t i = 0; i < r.size(); ++i) {
            if (i) text.push_back(';');
            append_field(text, r[i], ';');
        }
        text += "\r\n";
    }
    auto path = std::filesystem::temp_directory_path() / "samband-csv-write-test.csv";
    std::ofstream(path, std::ios::binary) << text;
    std::string cmd = std::string(SAMBAND_PYTHON) + " " + SAMBAND_CSV_CHECK + " " + path.string();
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ASSERT_EQ(::pclose(p), 0) << out;
    std::filesystem::remove(path);
    // The JSON the reader printed, compared cell by cell (the formula cell gained its ').
    EXPECT_EQ(out,
              "[[\"Hendelse\", \"Navn\", \"Notat\", \"Skår\"], [\"e1\", \"Åse Ærlig-Øyen\", "
              "\"to\\r\\nlinjer; med \\\"sitat\\\"\", \"12,5\"], [\"e2\", \" space \", \"\", "
              "\"'=1+1\"]]");
    // And our own parser agrees with it.
    auto back = parse_all(std::string_view(text).substr(3), ';');
    ASSERT_EQ(back.size(), 3u);
    EXPECT_EQ(back[1].fields[2], rows[1][2]);
    EXPECT_EQ(back[2].fields[1], " space ");
}

}  // namespace
