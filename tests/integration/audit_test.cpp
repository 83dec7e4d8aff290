// `samband audit verify|export` on a store the daemon wrote: an intact chain passes; a changed,
// removed or shifted row is named as the first broken link (issue 15 item 6). On PostgreSQL
// (SAMBAND_TEST_STORE=postgresql) the commands read the store the config names, and the rows are
// changed with psql.
#include "harness.hpp"

#include <rapidjson/document.h>
#include <sqlite3.h>

#include <gtest/gtest.h>

#include <sstream>

namespace samband::test {
namespace {

class audit_test : public ::testing::Test {
protected:
    void SetUp() override {
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {"sink": {"plugin": "fixture-sink", "config": {"control_file": "control.json",
                                                          "record_file": "record.jsonl"}}},
  "routes": [{"name": "all", "match": {"type": "rph.*"}, "to": ["sink"]}]
})");
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        for (const char* e :
             {"01-kari-referral.json", "02-kari-start.json", "03-kari-score.json"}) {
            std::string env = read_file(fs::path(source_dir()) / "config/demo/events" / e);
            auto r = d.post("/api/v1/events", "{\"envelope\":" + env + "}");
            ASSERT_EQ(r.status, 201) << r.body;
        }
        ASSERT_EQ(d.stop(), 0) << d.log();
        db_ = root_ / "var/samband.db";
    }
    std::pair<int, std::string> audit(const std::string& args) {
        return run_command(daemon_process::binary() + " audit " + args);
    }
    // The store argument: the SQLite file, or on PostgreSQL the config (which names the secret).
    std::string store() const {
        return on_postgresql() ? "-c " + (root_ / "samband.json").string()
                               : "--store " + db_.string();
    }
    void sql(const fs::path& db, const std::string& statement) {
        if (on_postgresql()) {
            auto [rc, out] = test_pg_sql(root_, statement);
            ASSERT_EQ(rc, 0) << out;
            return;
        }
        sqlite3* h = nullptr;
        ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
        char* err = nullptr;
        int rc = sqlite3_exec(h, statement.c_str(), nullptr, nullptr, &err);
        std::string why = err ? err : "";
        sqlite3_free(err);
        sqlite3_close(h);
        ASSERT_EQ(rc, SQLITE_OK) << why;
    }
    // The number of rows the intact chain reports.
    long intact_rows(const std::string& out) {
        auto at = out.find("audit chain intact: ");
        return at == std::string::npos ? -1 : std::atol(out.c_str() + at + 20);
    }
    temp_dir tmp_;
    fs::path root_ = tmp_.path();
    fs::path db_;
};

TEST_F(audit_test, an_intact_chain_passes_and_exports_every_row_linked_to_the_one_before) {
    auto [rc, out] = audit("verify -c " + (root_ / "samband.json").string());
    EXPECT_EQ(rc, 0) << out;
    long rows = intact_rows(out);
    EXPECT_GE(rows, 3) << out;  // at least one event.accepted per event

    auto [erc, lines] = audit("export " + store() + " --from 2000-01-01 --to 2999-12-31");
    EXPECT_EQ(erc, 0) << lines;
    std::istringstream in(lines);
    std::string line, prev;
    long n = 0;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] != '{') continue;  // the summary line on stderr
        rapidjson::Document d;
        d.Parse(line.c_str());
        ASSERT_FALSE(d.HasParseError()) << line;
        EXPECT_EQ(d["prev_hash"].GetString(), prev) << line;
        EXPECT_EQ(d["hash_version"].GetInt(), 2) << line;
        prev = d["hash"].GetString();
        ++n;
    }
    EXPECT_EQ(n, rows);
    auto [frc, future] = audit("export " + store() + " --from 2999-01-01");
    EXPECT_EQ(frc, 0) << future;
    EXPECT_EQ(future.find('{'), std::string::npos) << "no row is from 2999: " << future;
}

TEST_F(audit_test, a_changed_row_is_named_as_the_first_broken_link) {
    sql(db_, "UPDATE audit SET detail = detail || ' (edited)' WHERE id = 2");
    auto [rc, out] = audit("verify " + store());
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("audit chain BROKEN"), std::string::npos) << out;
    EXPECT_NE(out.find("at row 2: its hash does not match"), std::string::npos) << out;
    EXPECT_NE(out.find("1 rows before it are intact"), std::string::npos) << out;
    auto [erc, exported] = audit("export " + store());
    EXPECT_EQ(erc, 1) << "an export of a broken chain says so: " << exported;
}

TEST_F(audit_test, a_removed_row_is_named) {
    sql(db_, "DELETE FROM audit WHERE id = 2");
    auto [rc, out] = audit("verify " + store());
    EXPECT_EQ(rc, 1) << out;
    // PostgreSQL's ids come from a sequence, which a rollback leaves gaps in: there the chain
    // (row 3 hashes row 2's hash) shows the removal.
    EXPECT_NE(out.find(on_postgresql() ? "at row 3: its hash does not match"
                                       : "at row 3: row 2 is missing"),
              std::string::npos)
        << out;
}

// A row marked as written in the old '|'-joined format (which lets text move across fields)
// after rows of the length-prefixed format is refused.
TEST_F(audit_test, a_row_rewritten_in_the_old_hash_format_is_refused) {
    sql(db_, "UPDATE audit SET hash_v = 1 WHERE id = 2");
    auto [rc, out] = audit("verify " + store());
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("at row 2: hash format 1 after format 2"), std::string::npos) << out;
}

TEST_F(audit_test, bad_arguments_are_named) {
    auto [rc, out] = audit("export " + store() + " --from 2026-02-30");
    EXPECT_EQ(rc, 2) << out;
    EXPECT_NE(out.find("--from 2026-02-30 is not a day (yyyy-mm-dd)"), std::string::npos) << out;
    auto [mrc, missing] = audit("verify --store " + (root_ / "nowhere.db").string());
    EXPECT_EQ(mrc, 2) << missing;
    EXPECT_NE(missing.find("no store at"), std::string::npos) << missing;
    auto [nrc, none] = audit("verify");
    EXPECT_EQ(nrc, 2) << none;
    EXPECT_NE(none.find("give --config"), std::string::npos) << none;
}

}  // namespace
}  // namespace samband::test
