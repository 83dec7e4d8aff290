// Encryption at rest (issue 15 item 7, SQLite envelopes and refused inputs): the store file holds
// no fødselsnummer, name or note text; a changed record is an error, never garbage; a missing or
// wrong key stops the start naming the key id; an older key listed under `previous` still opens.
#include "harness.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <fstream>

namespace samband::test {
namespace {

// A throwaway key: 32 random bytes as hex (never a committed key).
std::string fresh_key() {
    unsigned char b[32];
    std::ifstream rnd("/dev/urandom", std::ios::binary);
    rnd.read(reinterpret_cast<char*>(b), sizeof b);
    EXPECT_EQ(rnd.gcount(), 32);
    static const char* hex = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) {
        s.push_back(hex[c >> 4]);
        s.push_back(hex[c & 15]);
    }
    return s;
}

std::string event(int i, int score) {
    return R"({"schema":"samband.event/1","type":"rph.assessment.scored","idempotency_key":"enc:)" +
           std::to_string(i) +
           R"(","occurred_at":"2026-11-24T10:15:00+01:00",)"
           R"("subject":{"fnr":"14839134623","name":{"given":"Kari","family":"Nordmannsen"}},)"
           R"("data":{"treatment_id":"t-1","instrument":"PHQ-9","score":)" +
           std::to_string(score) + R"(,"administered_at":"2026-11-24"}})";
}

class encryption_test : public ::testing::Test {
protected:
    void SetUp() override { root_ = tmp_.path(); }

    // `keys`: {key id, key hex} pairs, the first current.
    void write_config(const std::vector<std::pair<std::string, std::string>>& keys) {
        std::string secrets, previous;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            write_file(root_ / ("key" + std::to_string(i)), keys[i].second + "\n");
            secrets += std::string(i ? "," : "") + "\"key" + std::to_string(i) +
                       "\": {\"file\": \"key" + std::to_string(i) + "\"}";
            if (i > 0)
                previous += std::string(i > 1 ? "," : "") + "{\"key_id\": \"" + keys[i].first +
                            "\", \"key_secret\": \"key" + std::to_string(i) + "\"}";
        }
        write_file(root_ / "samband.json", R"({
  "node": {"name": "it"},
  "store": {"kind": "sqlite", "path": "var/samband.db",
            "encryption": {"key_id": ")" + keys[0].first +
                                               R"(", "key_secret": "key0", "previous": [)" +
                                               previous + R"(]}},
  "secrets": {)" + secrets + R"(},
  "admin": {"listen": "127.0.0.1:0"},
  "log": {"level": "info"},
  "plugin_dirs": [")" + plugin_dir() +
                                               R"("],
  "identifiers": {"allow_synthetic": true},
  "schemas_dir": ")" + source_dir() +
                                               R"(/config/schemas",
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 20}},
    "journal": {"plugin": "file", "config": {"outbox": "journal"}}
  },
  "routes": [{"name": "all", "match": {"type": "rph.*", "source": "epj"}, "to": ["journal"]}]
})");
    }

    std::string raw_store() const {
        std::string all;
        for (const char* f : {"samband.db", "samband.db-wal", "samband.db-shm"})
            if (fs::exists(root_ / "var" / f)) all += read_file(root_ / "var" / f);
        return all;
    }

    std::vector<std::string> event_ids(const daemon_process& d) const {
        rapidjson::Document doc;
        doc.Parse(d.get("/api/v1/deliveries?limit=100").body.c_str());
        std::vector<std::string> out;
        if (doc.IsArray())
            for (auto& x : doc.GetArray()) out.push_back(x["event_id"].GetString());
        std::sort(out.begin(), out.end());
        return out;
    }

    temp_dir tmp_;
    fs::path root_;
};

TEST_F(encryption_test, the_store_holds_no_plaintext_and_a_changed_record_is_an_error) {
    SAMBAND_SQLITE_ONLY(
        "it reads and changes the SQLite file's bytes (the store contract test covers sealing on "
        "PostgreSQL)");
    const std::string key = fresh_key();
    write_config({{"2026-12", key}});
    std::vector<std::string> ids;
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        EXPECT_NE(d.log().find("encryption=\"aes-256-gcm key 2026-12\""), std::string::npos)
            << d.log();
        for (int i = 0; i < 3; ++i)
            drop_file(root_ / "inbox", "e" + std::to_string(i) + ".json", event(i, 12));
        drop_file(root_ / "inbox", "bad.json", event(9, 31));  // refused: kept in the error store
        ASSERT_TRUE(wait_for([&] { return event_ids(d).size() == 3; }, std::chrono::seconds(30)))
            << d.log();
        ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "inbox/error/bad.json"); },
                             std::chrono::seconds(30)));
        ids = event_ids(d);
        // Through the API (clinician, with a reason) the records read back whole.
        auto ev = d.get("/api/v1/events/" + ids[1] + "?reason=encryption-test");
        EXPECT_EQ(ev.status, 200) << ev.body;
        EXPECT_NE(ev.body.find("14839134623"), std::string::npos) << ev.body;
        auto err = d.get("/api/v1/errors/1?reason=encryption-test");
        EXPECT_EQ(err.status, 200) << err.body;
        EXPECT_NE(err.body.find("Nordmannsen"), std::string::npos) << err.body;
        EXPECT_EQ(d.stop(), 0) << d.log();
    }
    // On disk: no fødselsnummer, no name, in the database, its WAL or its shared memory.
    std::string raw = raw_store();
    ASSERT_GT(raw.size(), 4096u);
    EXPECT_EQ(raw.find("14839134623"), std::string::npos);
    EXPECT_EQ(raw.find("Nordmannsen"), std::string::npos);
    EXPECT_EQ(raw.find("administered_at"), std::string::npos);

    // One changed byte in the middle event's sealed envelope (by store order: the start checks
    // the oldest and the newest): reading it is an error, not garbage.
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open((root_ / "var/samband.db").c_str(), &h), SQLITE_OK);
    std::string middle;
    sqlite3_stmt* q = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(h, "SELECT id FROM events ORDER BY seq LIMIT 1 OFFSET 1", -1, &q,
                                 nullptr),
              SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW)
        middle = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    ASSERT_FALSE(middle.empty());
    std::string sql =
        "UPDATE payloads SET envelope = substr(envelope, 1, 40) || "
        "(CASE substr(envelope, 41, 1) WHEN 'A' THEN 'B' ELSE 'A' END) || substr(envelope, 42) "
        "WHERE event_seq = (SELECT seq FROM events WHERE id = '" +
        middle + "')";
    ASSERT_EQ(sqlite3_exec(h, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_changes(h), 1);
    sqlite3_close(h);
    const std::string other = ids[0] == middle ? ids[1] : ids[0];
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        auto bad = d.get("/api/v1/events/" + middle + "?reason=encryption-test");
        EXPECT_EQ(bad.status, 500) << bad.body;
        EXPECT_NE(bad.body.find("failed authentication"), std::string::npos) << bad.body;
        EXPECT_EQ(bad.body.find("PHQ-9"), std::string::npos) << bad.body;
        auto good = d.get("/api/v1/events/" + other + "?reason=encryption-test");
        EXPECT_EQ(good.status, 200) << good.body;
        EXPECT_EQ(d.stop(), 0) << d.log();
    }
}

TEST_F(encryption_test, a_missing_or_wrong_key_stops_the_start_naming_the_key_id) {
    const std::string k1 = fresh_key(), k2 = fresh_key();
    write_config({{"k1", k1}});
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        drop_file(root_ / "inbox", "e0.json", event(0, 12));
        ASSERT_TRUE(wait_for([&] { return event_ids(d).size() == 1; }, std::chrono::seconds(30)))
            << d.log();
        EXPECT_EQ(d.stop(), 0);
    }
    // A new current key without the old one: the start fails naming the key the records need.
    write_config({{"k2", k2}});
    {
        daemon_process d(root_ / "samband.json", root_);
        EXPECT_FALSE(d.start(std::chrono::seconds(10)));
        EXPECT_NE(d.log().find("\"k1\", which is not configured"), std::string::npos) << d.log();
    }
    // The right id with the wrong key: authentication fails, naming the key id.
    write_config({{"k1", k2}});
    {
        daemon_process d(root_ / "samband.json", root_);
        EXPECT_FALSE(d.start(std::chrono::seconds(10)));
        EXPECT_NE(d.log().find("authentication failed under encryption key \"k1\""),
                  std::string::npos)
            << d.log();
    }
    // The old key listed under previous: old records open, new ones are sealed under k2.
    write_config({{"k2", k2}, {"k1", k1}});
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        drop_file(root_ / "inbox", "e1.json", event(1, 12));
        ASSERT_TRUE(wait_for([&] { return event_ids(d).size() == 2; }, std::chrono::seconds(30)))
            << d.log();
        for (const auto& id : event_ids(d))
            EXPECT_EQ(d.get("/api/v1/events/" + id + "?reason=encryption-test").status, 200);
        EXPECT_EQ(d.stop(), 0);
    }
    // A key that is not 32 bytes is refused at start, naming the key id and not the secret.
    write_config({{"k2", "00112233"}, {"k1", k1}});
    {
        daemon_process d(root_ / "samband.json", root_);
        EXPECT_FALSE(d.start(std::chrono::seconds(10)));
        EXPECT_NE(d.log().find("encryption key \"k2\" must be 32 bytes"), std::string::npos)
            << d.log();
        EXPECT_EQ(d.log().find("00112233"), std::string::npos) << d.log();
    }
}

// samband store rotate-key: every record (plain ones written before encryption was on, and those
// under the old key) is re-sealed under the new key; a second run finds nothing left to do; then
// the old key can go and everything still reads.
TEST_F(encryption_test, rotate_key_reseals_everything_under_the_new_key) {
    SAMBAND_SQLITE_ONLY(
        "it reads the SQLite file's bytes and runs rotate-key on the test's own config (the store "
        "contract test rotates on PostgreSQL)");
    const std::string k1 = fresh_key(), k2 = fresh_key();
    // Start without encryption: one plain event and one plain refused input.
    write_config({{"k1", k1}});
    {
        std::string text = read_file(root_ / "samband.json");
        auto at = text.find(",\n            \"encryption\"");
        ASSERT_NE(at, std::string::npos);
        text.erase(at, text.find("}},", at) + 1 - at);
        write_file(root_ / "samband.json", text);
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log() << text;
        EXPECT_NE(d.log().find("encryption=off"), std::string::npos) << d.log();
        drop_file(root_ / "inbox", "e0.json", event(0, 12));
        drop_file(root_ / "inbox", "bad0.json", event(90, 31));
        ASSERT_TRUE(wait_for([&] { return event_ids(d).size() == 1; }, std::chrono::seconds(30)));
        ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "inbox/error/bad0.json"); },
                             std::chrono::seconds(30)));
        EXPECT_EQ(d.stop(), 0);
    }
    EXPECT_NE(raw_store().find("Nordmannsen"), std::string::npos) << "plain before encryption";
    // Encryption with k1: two more events (sealed under k1), the plain ones still read.
    write_config({{"k1", k1}});
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        drop_file(root_ / "inbox", "e1.json", event(1, 12));
        drop_file(root_ / "inbox", "e2.json", event(2, 12));
        ASSERT_TRUE(wait_for([&] { return event_ids(d).size() == 3; }, std::chrono::seconds(30)));
        EXPECT_EQ(d.stop(), 0);
    }
    // k2 current, k1 previous: rotate (in batches of 2, so it commits more than once).
    write_config({{"k2", k2}, {"k1", k1}});
    const std::string rotate = daemon_process::binary() + " store rotate-key --batch 2 -c " +
                               (root_ / "samband.json").string();
    auto [code, out] = run_command(rotate);
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find("re-sealed 4 records under key k2 (0 already were)"), std::string::npos)
        << out;
    auto [code2, out2] = run_command(rotate);
    EXPECT_EQ(code2, 0) << out2;
    EXPECT_NE(out2.find("re-sealed 0 records under key k2 (4 already were)"), std::string::npos)
        << out2;
    std::string raw = raw_store();
    EXPECT_EQ(raw.find("Nordmannsen"), std::string::npos);
    EXPECT_EQ(raw.find("14839134623"), std::string::npos);
    // k2 alone: the daemon starts and every record reads.
    write_config({{"k2", k2}});
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        auto ids = event_ids(d);
        ASSERT_EQ(ids.size(), 3u);
        for (const auto& id : ids) {
            auto r = d.get("/api/v1/events/" + id + "?reason=encryption-test");
            EXPECT_EQ(r.status, 200) << r.body;
            EXPECT_NE(r.body.find("14839134623"), std::string::npos) << r.body;
        }
        auto err = d.get("/api/v1/errors/1?reason=encryption-test");
        EXPECT_EQ(err.status, 200) << err.body;
        EXPECT_NE(err.body.find("Nordmannsen"), std::string::npos) << err.body;
        EXPECT_EQ(d.stop(), 0);
    }
    // Without the key a record needs, rotate-key stops naming it and the key id (exit 1).
    write_config({{"k3", fresh_key()}});
    auto [code3, out3] = run_command(rotate);
    EXPECT_EQ(code3, 1) << out3;
    EXPECT_NE(out3.find("\"k2\", which is not configured"), std::string::npos) << out3;
    EXPECT_NE(out3.find("payload:"), std::string::npos) << out3;
}

}  // namespace
}  // namespace samband::test
