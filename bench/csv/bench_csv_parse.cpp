// The csv plugin's parsing on its own: decode (BOM, UTF-8 check), split into records (quoted line
// breaks), and the attendance mapping's conversions per row (fødselsnummer digits, two dates, a
// type table, ja/nei). Prints one JSON object: rows, seconds, rows_per_s (best of 5 runs).
// Usage: bench_csv_parse [ROWS]
#include <csv_parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

namespace {

std::string sheet(std::size_t n) {
    static const char* fnrs[] = {"14839134623", "02918502265", "28860370052",
                                 "09817045860", "30899926664", "05920763059"};
    std::string s =
        "\xEF\xBB\xBF"
        "Fødselsnummer;Behandling;Dato;Type;Møtt;Notat\r\n";
    char buf[256];
    for (std::size_t i = 0; i < n; ++i) {
        std::snprintf(
            buf, sizeof buf, "%s;b-%zu;%02zu.%02zu.2026;%s;%s;%s\r\n", fnrs[i % 6], i, 1 + i % 28,
            1 + i % 12, i % 3 ? "Gruppe" : "Individuell", i % 7 == 0 ? "nei" : "ja",
            i % 10 == 0 ? "\"Gikk bra.\r\nNeste gang: pust; søvn\"" : "Øvelse på å roe ned");
        s += buf;
    }
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200000;
    const std::string file = sheet(n);
    const std::map<std::string, std::string> kinds{{"individuell", "individuell"},
                                                   {"gruppe", "gruppe"}};
    double best = 1e9;
    std::size_t good = 0;
    for (int run = 0; run < 5; ++run) {
        auto t0 = std::chrono::steady_clock::now();
        auto text = samband::csv::decode(file, samband::csv::encoding::automatic);
        if (!text) return std::fprintf(stderr, "decode: %s\n", text.error().c_str()), 1;
        char delim = samband::csv::detect_delimiter(text->text);
        good = 0;
        bool header = true;
        auto parsed = samband::csv::parse(
            text->text, delim, samband::csv::limits{}, [&](samband::csv::record& r) {
                if (header) return !(header = false);
                if (r.fields.size() != 6) return false;
                const std::string& fnr = r.fields[0];
                bool ok = fnr.size() == 11 && std::all_of(fnr.begin(), fnr.end(), [](char c) {
                              return c >= '0' && c <= '9';
                          });
                ok = ok && !r.fields[1].empty();
                ok = ok && !samband::csv::parse_date(r.fields[2]).empty();
                ok = ok &&
                     !samband::csv::parse_date(r.fields[2]).empty();  // occurred_at, session_at
                std::string kind = r.fields[3];
                for (auto& c : kind)
                    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                ok = ok && kinds.count(kind) == 1;
                bool attended = false;
                ok = ok && samband::csv::parse_boolean(r.fields[4], attended);
                good += ok ? 1 : 0;
                return true;
            });
        if (!parsed) return std::fprintf(stderr, "parse: %s\n", parsed.error().reason.c_str()), 1;
        best = std::min(
            best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (good != n) return std::fprintf(stderr, "only %zu of %zu rows valid\n", good, n), 1;
    std::printf("{\"rows\": %zu, \"bytes\": %zu, \"seconds\": %.4f, \"rows_per_s\": %.0f}\n", n,
                file.size(), best, static_cast<double>(n) / best);
    return 0;
}
