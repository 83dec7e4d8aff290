// The csv plugin in the real daemon: a Norwegian spreadsheet in, bad rows to the error store with
// line and column, no duplicates on re-import, hostile files refused, and the export read back by
// two independent readers (Python's csv module with strict=True, and Debian's csvkit).
#include "harness.hpp"

#include <samband_test/tools.hpp>

#include <rapidjson/document.h>

namespace samband::test {
namespace {

class csv_test : public ::testing::Test {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL("csvjson");  // Debian's csvkit, the second independent reader
        root_ = tmp_.path();
        write_file(root_ / "samband.json", config_head("it-csv") + R"(  "endpoints": {
    "sheets": {"plugin": "csv", "config": {
      "inbox": "csv-in", "poll_ms": 50, "type": "rph.session.attended",
      "fields": {
        "/subject/fnr": {"column": "Fødselsnummer"},
        "/occurred_at": {"column": "Dato", "as": "date"},
        "/data/treatment_id": {"column": "Behandling"},
        "/data/session_at": {"column": "dato", "as": "date"},
        "/data/kind": {"column": "Type", "map": {"Individuell": "individuell", "Gruppe": "gruppe"}},
        "/data/attended": {"column": "Møtt", "as": "boolean"},
        "/data/content": {"column": "Notat", "optional": true}
      }}},
    "export": {"plugin": "csv", "config": {
      "outbox": "csv-out", "prefix": "oppmote", "rotate_seconds": 1,
      "columns": [{"header": "Behandling", "pointer": "/data/treatment_id"},
                  {"header": "Dato", "pointer": "/data/session_at", "as": "date"},
                  {"header": "Type", "pointer": "/data/kind"},
                  {"header": "Møtt", "pointer": "/data/attended"},
                  {"header": "Notat", "pointer": "/data/content"}]},
      "policy": {"max_attempts": 3, "backoff_base_ms": 100, "backoff_max_ms": 1000,
                 "attempt_timeout_ms": 5000, "concurrency": 4}}
  },
  "routes": [{"name": "sessions", "match": {"type": "rph.*", "source": "sheets"}, "to": ["export"]}]
})");
    }

    // The rows of every rotated export file, read by Python's csv module (strict=True).
    std::vector<std::vector<std::string>> exported() {
        std::vector<std::vector<std::string>> rows;
        std::error_code ec;
        std::vector<fs::path> files;
        for (auto& e : fs::directory_iterator(root_ / "csv-out", ec))
            if (e.path().filename().string().rfind("oppmote-", 0) == 0) files.push_back(e.path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            auto [st, out] = run_command("python3 " + source_dir() +
                                         "/plugins/csv/tests/check_csv.py " + f.string());
            EXPECT_EQ(st, 0) << f << ": " << out;
            rapidjson::Document d;
            d.Parse(out.c_str());
            if (d.HasParseError() || !d.IsArray() || d.Empty()) {
                ADD_FAILURE() << "unreadable export " << f << ": " << out;
                continue;
            }
            EXPECT_EQ(std::string(d[0][0].GetString()), "Hendelse");
            // csvkit (no options but the delimiter; -I keeps the text as text) reads the same
            // rows and fields; it turns a quoted CRLF into LF, as its Python reader does.
            auto [kst, kout] = run_command("csvjson -I -d ';' " + f.string());
            EXPECT_EQ(kst, 0) << f << ": " << kout;
            rapidjson::Document k;
            k.Parse(kout.c_str());
            if (k.HasParseError() || !k.IsArray()) {
                ADD_FAILURE() << "csvkit cannot read " << f << ": " << kout;
                continue;
            }
            EXPECT_EQ(k.Size() + 1, d.Size()) << f << ": " << kout;
            for (rapidjson::SizeType i = 1; i < d.Size(); ++i) {
                std::vector<std::string> r;
                for (auto& c : d[i].GetArray()) r.push_back(c.GetString());
                if (i - 1 < k.Size()) {
                    for (rapidjson::SizeType c = 0; c < d[0].Size() && c < r.size(); ++c) {
                        const char* header = d[0][c].GetString();
                        if (!k[i - 1].IsObject() || !k[i - 1].HasMember(header)) {
                            ADD_FAILURE()
                                << f << ": csvkit has no column " << header << ": " << kout;
                            continue;
                        }
                        std::string want = r[c];
                        for (auto p = want.find("\r\n"); p != std::string::npos;
                             p = want.find("\r\n", p))
                            want.erase(p, 1);
                        const auto& v = k[i - 1][header];  // null: csvkit's empty field
                        EXPECT_EQ(v.IsString() ? std::string(v.GetString()) : std::string(), want)
                            << f << " row " << i << " column " << header;
                    }
                }
                rows.push_back(r);
            }
        }
        return rows;
    }

    temp_dir tmp_;
    fs::path root_;
};

// Five good rows (one with a quoted newline, æøå), three bad ones on lines 5, 7 and 9.
const std::string kSheet =
    "\xEF\xBB\xBF"
    "Fødselsnummer;Behandling;Dato;Type;Møtt;Notat\r\n"
    "14839134623;b-1;24.11.2026;Individuell;ja;Første samtale\r\n"
    "02918502265;b-2;25.11.2026;Gruppe;Ja;\"Gikk bra.\r\nNeste gang: pust; søvn\"\r\n"
    "28860370052;b-3;31.02.2026;Individuell;ja;\r\n"
    "09817045860;b-4;26.11.2026;individuell;nei;Avlyst, møtte ikke\r\n"
    "30899926664;b-5;27.11.2026;Individuell;kanskje;\r\n"
    "05920763059;b-6;1.12.2026;Gruppe;ja;Øvelse på å roe ned\r\n"
    ";b-7;02.12.2026;Individuell;ja;\r\n"
    "21826210262;b-8;03.12.2026;Individuell;ja;\"Sa \"\"takk\"\"\"\r\n";

TEST_F(csv_test, bad_rows_go_to_the_error_store_the_rest_is_imported_once) {
    auto d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
    ASSERT_TRUE(d->start()) << d->log();
    drop_file(root_ / "csv-in", "oppmote.csv", kSheet);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "csv-in" / "done" / "oppmote.csv"); },
                         std::chrono::seconds(20)))
        << d->log();

    // Three refusals, each naming file, line, column and reason.
    auto r = d->get("/api/v1/errors?limit=100");
    ASSERT_EQ(r.status, 200) << r.body;
    rapidjson::Document errs;
    errs.Parse(r.body.c_str());
    ASSERT_TRUE(errs.IsArray()) << r.body;
    ASSERT_EQ(errs.Size(), 3u) << r.body;
    std::string all;
    for (auto& e : errs.GetArray()) all += std::string(e["reason"].GetString()) + "\n";
    EXPECT_NE(all.find("oppmote.csv line 5 column 3 (Dato): the value is not a date"),
              std::string::npos)
        << all;
    EXPECT_NE(all.find("oppmote.csv line 7 column 5 (Møtt): the value is not ja/nei"),
              std::string::npos)
        << all;
    // Issue 15 item 3: the reasons (list, log) name line, column and rule, never the cell; the raw
    // row stays in the error store for the clinician role.
    for (const char* value : {"31.02.2026", "kanskje", "28860370052", "30899926664"}) {
        EXPECT_EQ(all.find(value), std::string::npos) << all;
        EXPECT_EQ(d->log().find(value), std::string::npos) << value << " in the log";
    }
    bool raw_kept = false;
    for (auto& e : errs.GetArray()) {
        if (std::string(e["reason"].GetString()).find("line 7") == std::string::npos) continue;
        auto one = d->get("/api/v1/errors/" + std::to_string(e["id"].GetInt64()) +
                          "?reason=issue-15-test");
        raw_kept = one.body.find("kanskje") != std::string::npos;
    }
    EXPECT_TRUE(raw_kept) << "the refused row is kept whole for the clinician";
    EXPECT_NE(all.find("oppmote.csv line 9 column 1 (Fødselsnummer): empty"), std::string::npos)
        << all;
    EXPECT_TRUE(wait_for(
        [&] {
            return d->log().find("oppmote.csv: 8 rows: 5 imported, 0 already known, 3 refused") !=
                   std::string::npos;
        },
        std::chrono::seconds(10)))
        << d->log();

    // The five good rows come out of the export sink, readable by Python's strict reader.
    std::vector<std::vector<std::string>> rows;
    ASSERT_TRUE(wait_for([&] { return (rows = exported()).size() >= 5; }, std::chrono::seconds(20)))
        << d->log();
    ASSERT_EQ(rows.size(), 5u);
    std::map<std::string, std::vector<std::string>> by_treatment;
    for (auto& row : rows) {
        ASSERT_EQ(row.size(), 6u);
        by_treatment[row[1]] = row;
    }
    EXPECT_EQ(by_treatment["b-1"][2], "24.11.2026");
    EXPECT_EQ(by_treatment["b-2"][5], "Gikk bra.\r\nNeste gang: pust; søvn");
    EXPECT_EQ(by_treatment["b-4"][4], "nei");
    EXPECT_EQ(by_treatment["b-6"][2], "01.12.2026");
    EXPECT_EQ(by_treatment["b-6"][5], "Øvelse på å roe ned");
    EXPECT_EQ(by_treatment["b-8"][5], "Sa \"takk\"");

    // The same rows again (another file name): nothing new is stored.
    drop_file(root_ / "csv-in", "oppmote-kopi.csv", kSheet);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "csv-in" / "done" / "oppmote-kopi.csv"); },
                         std::chrono::seconds(20)))
        << d->log();
    EXPECT_TRUE(wait_for(
        [&] {
            return d->log().find(
                       "oppmote-kopi.csv: 8 rows: 0 imported, 5 already known, 3 refused") !=
                   std::string::npos;
        },
        std::chrono::seconds(10)))
        << d->log();
    EXPECT_EQ(d->stop(), 0);
    EXPECT_EQ(exported().size(), 5u);
}

TEST_F(csv_test, hostile_files_are_refused_with_a_reason) {
    auto d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
    ASSERT_TRUE(d->start()) << d->log();
    fs::path in = root_ / "csv-in";
    {
        // 1 GB (sparse): refused by its size before a byte is read.
        std::ofstream(in / ".big.csv.tmp").put('x');
        fs::resize_file(in / ".big.csv.tmp", 1ull << 30);
        fs::rename(in / ".big.csv.tmp", in / "big.csv");
    }
    drop_file(in, "junk.csv",
              std::string("\x7f"
                          "ELF\x02\x01\x01\x00\x00\x00junk",
                          14));
    drop_file(in, "open.csv",
              "Fødselsnummer;Behandling;Dato;Type;Møtt;Notat\r\n"
              "14839134623;b-1;24.11.2026;Individuell;ja;\"never closed\r\n4;5\r\n");
    drop_file(in, "header.csv", "Fnr;Behandling\r\n14839134623;b-1\r\n");
    std::string cols(1'000'000, ';');
    drop_file(in, "wide.csv", cols + "\r\n");
    for (const char* f : {"big.csv", "junk.csv", "open.csv", "header.csv", "wide.csv"}) {
        ASSERT_TRUE(
            wait_for([&] { return fs::exists(in / "error" / (std::string(f) + ".reason")); },
                     std::chrono::seconds(20)))
            << f << "\n"
            << d->log();
    }
    auto reason = [&](const char* f) {
        return read_file(in / "error" / (std::string(f) + ".reason"));
    };
    EXPECT_NE(reason("big.csv").find("1073741824 bytes, over the limit"), std::string::npos);
    EXPECT_NE(reason("junk.csv").find("binary data: control byte 0x02 at byte 4"),
              std::string::npos)
        << reason("junk.csv");
    EXPECT_NE(reason("open.csv").find("line 2 column 6: unterminated quoted field"),
              std::string::npos)
        << reason("open.csv");
    EXPECT_NE(reason("header.csv").find("has no column \"Fødselsnummer\""), std::string::npos)
        << reason("header.csv");
    EXPECT_NE(reason("wide.csv").find("more than 1000 columns"), std::string::npos)
        << reason("wide.csv");
    // Each refusal is also in the error store; nothing was imported.
    auto r = d->get("/api/v1/errors?limit=100");
    rapidjson::Document errs;
    errs.Parse(r.body.c_str());
    ASSERT_TRUE(errs.IsArray()) << r.body;
    EXPECT_EQ(errs.Size(), 5u) << r.body;
    EXPECT_EQ(d->stop(), 0);
}

// A score export (ORS, marked on a 10 cm line, so with decimals) as an older Excel saves it:
// Windows-1252 (æøå as single bytes, no BOM), `,` as the delimiter, a decimal comma in a quoted
// field, dd.mm.yyyy dates. Detected without being told, and the values come out right at the other
// end (the export's decimal comma and dates).
TEST_F(csv_test, windows_1252_comma_separated_with_decimal_comma_and_norwegian_dates) {
    write_file(root_ / "samband.json", config_head("it-csv-1252") + R"(  "endpoints": {
    "scores": {"plugin": "csv", "config": {
      "inbox": "scores-in", "poll_ms": 50, "type": "rph.assessment.scored",
      "fields": {
        "/subject/fnr": {"column": "Fødselsnummer"},
        "/occurred_at": {"column": "Utfylt dato", "as": "date"},
        "/data/administered_at": {"column": "Utfylt dato", "as": "date"},
        "/data/treatment_id": {"column": "Behandling"},
        "/data/instrument": {"column": "Skjema"},
        "/data/score": {"column": "Poengsum", "as": "number"}
      }}},
    "export": {"plugin": "csv", "config": {
      "outbox": "csv-out", "prefix": "oppmote", "rotate_seconds": 1,
      "columns": [{"header": "Behandling", "pointer": "/data/treatment_id"},
                  {"header": "Skjema", "pointer": "/data/instrument"},
                  {"header": "Poengsum", "pointer": "/data/score"},
                  {"header": "Dato", "pointer": "/data/administered_at", "as": "date"}]},
      "policy": {"max_attempts": 3, "backoff_base_ms": 100, "backoff_max_ms": 1000}}
  },
  "routes": [{"name": "scores", "match": {"type": "rph.*", "source": "scores"}, "to": ["export"]}]
})");
    auto d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
    ASSERT_TRUE(d->start()) << d->log();
    // "Fødselsnummer" and "Søvn" in Windows-1252: ø is the single byte 0xF8.
    const std::string sheet =
        "F\xF8"
        "dselsnummer,Behandling,Skjema,Poengsum,Utfylt dato\r\n"
        "14839134623,b-1,ORS,\"31,4\",24.11.2026\r\n"
        "02918502265,b-2,GAD-7,8,1.12.2026\r\n"
        "28860370052,S\xF8vn-3,PHQ-9,\"1,0,0\",02.12.2026\r\n";
    drop_file(root_ / "scores-in", "skjema.csv", sheet);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "scores-in" / "done" / "skjema.csv"); },
                         std::chrono::seconds(20)))
        << d->log();
    EXPECT_TRUE(wait_for(
        [&] {
            return d->log().find("skjema.csv: 3 rows: 2 imported, 0 already known, 1 refused") !=
                   std::string::npos;
        },
        std::chrono::seconds(10)))
        << d->log();
    auto r = d->get("/api/v1/errors?limit=10");
    EXPECT_NE(r.body.find("skjema.csv line 4 column 4 (Poengsum): the value is not a number"),
              std::string::npos)
        << r.body;
    EXPECT_EQ(r.body.find("1,0,0"), std::string::npos) << r.body;
    std::vector<std::vector<std::string>> rows;
    ASSERT_TRUE(wait_for([&] { return (rows = exported()).size() >= 2; }, std::chrono::seconds(20)))
        << d->log();
    ASSERT_EQ(rows.size(), 2u);
    std::map<std::string, std::vector<std::string>> by_treatment;
    for (auto& row : rows) {
        ASSERT_EQ(row.size(), 5u);
        by_treatment[row[1]] = row;
    }
    EXPECT_EQ(by_treatment["b-1"][2], "ORS");
    EXPECT_EQ(by_treatment["b-1"][3], "31,4");  // 31.4 stored, written back with a decimal comma
    EXPECT_EQ(by_treatment["b-1"][4], "24.11.2026");
    EXPECT_EQ(by_treatment["b-2"][3], "8");
    EXPECT_EQ(by_treatment["b-2"][4], "01.12.2026");
    EXPECT_EQ(d->stop(), 0);
}

// An import in a plugin-host child (isolation "process") under a tight address-space limit: the
// child answered each submission on a thread of its own, so a window of answers put hundreds of
// thread stacks under RLIMIT_AS at once; thread creation failed, the child ended ("terminate
// called") and restarted until quarantined, and the file never finished. Now every row is
// imported by one child.
TEST_F(csv_test, an_isolated_import_of_thousands_of_rows_keeps_its_plugin_host) {
    write_file(root_ / "samband.json", config_head("it-csv") + R"(  "endpoints": {
    "sheets": {"plugin": "csv", "isolation": "process", "process": {"memory_limit_mb": 512},
      "config": {"inbox": "csv-in", "poll_ms": 50, "type": "rph.session.attended",
      "fields": {
        "/subject/fnr": {"column": "Fødselsnummer"},
        "/occurred_at": {"column": "Dato", "as": "date"},
        "/data/treatment_id": {"column": "Behandling"},
        "/data/session_at": {"column": "Dato", "as": "date"},
        "/data/kind": {"column": "Type", "map": {"Individuell": "individuell", "Gruppe": "gruppe"}},
        "/data/attended": {"column": "Møtt", "as": "boolean"}}}}
  },
  "routes": []
})");
    const char* fnrs[] = {"14839134623", "02918502265", "28860370052", "09817045860"};
    std::string sheet = "Fødselsnummer;Behandling;Dato;Type;Møtt\r\n";
    constexpr int kRows = 5000;
    for (int i = 0; i < kRows; ++i)
        sheet += std::string(fnrs[i % 4]) + ";b-" + std::to_string(i) + ";" +
                 (i % 28 < 9 ? "0" : "") + std::to_string(1 + i % 28) + ".11.2026;" +
                 (i % 3 ? "Gruppe" : "Individuell") + ";ja\r\n";
    auto d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
    ASSERT_TRUE(d->start()) << d->log();
    drop_file(root_ / "csv-in", "mange.csv", sheet);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "csv-in" / "done" / "mange.csv"); },
                         std::chrono::seconds(60)))
        << d->log().substr(0, 20000);
    EXPECT_TRUE(wait_for(
        [&] {
            return d->log().find(
                       "mange.csv: 5000 rows: 5000 imported, 0 already known, 0 "
                       "refused") != std::string::npos;
        },
        std::chrono::seconds(10)))
        << d->log().substr(0, 20000);
    EXPECT_EQ(d->log().find("plugin-host was killed"), std::string::npos)
        << d->log().substr(0, 20000);
    EXPECT_EQ(d->log().find("terminate called"), std::string::npos);
    EXPECT_EQ(d->stop(), 0);
}

}  // namespace
}  // namespace samband::test
