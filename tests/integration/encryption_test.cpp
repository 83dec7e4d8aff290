// Encryption at rest (issue 15 item 7, SQLite envelopes and refused inputs): the store file holds
// no fødselsnummer, name or note text; a changed record is an error, never garbage; a missing or
// wrong key stops the start naming the key id; an older key listed under `previous` still opens.
#include "harness.hpp"

#include <samband_test/tools.hpp>

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
        // SQLite since schema 11: the envelope log's segments.
        if (fs::exists(root_ / "var/samband.db.envelopes"))
            for (const auto& f : fs::directory_iterator(root_ / "var/samband.db.envelopes"))
                all += read_file(f.path());
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
    // Since schema 11 the envelope is in the envelope log: the byte is changed there (the
    // record's CRC32 then fails before the seal's authentication would).
    std::int64_t seg = 0, off = 0;
    ASSERT_EQ(sqlite3_prepare_v2(h,
                                 ("SELECT env_seg, env_off FROM events WHERE id = '" + middle +
                                  "' AND envelope IS NULL AND env_seg IS NOT NULL")
                                     .c_str(),
                                 -1, &q, nullptr),
              SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW) {
        seg = sqlite3_column_int64(q, 0);
        off = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    ASSERT_GT(seg, 0) << "the envelope is not in the envelope log";
    char name[32];
    std::snprintf(name, sizeof name, "%010lld.envlog", static_cast<long long>(seg));
    // A payload byte (after the record's 24-byte header).
    ASSERT_TRUE(
        samband::testing::flip_byte(root_ / "var/samband.db.envelopes" / name, off + 24 + 40));
    sqlite3_close(h);
    const std::string other = ids[0] == middle ? ids[1] : ids[0];
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        auto bad = d.get("/api/v1/events/" + middle + "?reason=encryption-test");
        EXPECT_EQ(bad.status, 500) << bad.body;
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
// Attachments sealed at rest (both backends): the blob folder (PostgreSQL: the blobs table) holds
// no plaintext of a PDF-like attachment; the file sink gets it byte-exact; the plugin's decrypted
// copy is gone once the attempt ended; a flipped byte in the stored blob makes the replayed
// delivery dead at once with an authentication error naming the attachment by sha256, and the
// sink gets nothing. A 20 MB attachment round-trips with the daemon's peak RSS growing far less
// than its size (SQLite: PostgreSQL's submit holds a blob in memory to insert it).
TEST_F(encryption_test, attachments_are_sealed_at_rest_and_plugins_read_a_short_lived_copy) {
    write_config({{"k1", fresh_key()}});
    auto pdf = [](const std::string& marker, std::size_t bytes) {
        std::string b = "%PDF-1.7\n";
        for (std::size_t i = 0; b.size() < bytes; ++i)
            b += "BT /F1 12 Tf (" + marker + " side " + std::to_string(i) + ") Tj ET\n";
        return b + "%%EOF\n";
    };
    auto drop = [&](const std::string& name, const std::string& bytes) {
        write_file(root_ / "inbox" / (name + ".pdf"), bytes);
        drop_file(root_ / "inbox", name + ".json",
                  R"({"schema":"samband.event/1","type":"rph.assessment.scored",)"
                  R"("idempotency_key":"att:)" +
                      name +
                      R"(","occurred_at":"2026-11-24T10:15:00+01:00",)"
                      R"("subject":{"fnr":"14839134623"},)"
                      R"("data":{"treatment_id":"t-)" +
                      name +
                      R"(","instrument":"PHQ-9","score":12,"administered_at":"2026-11-24"},)"
                      R"("attachments":[{"file":")" +
                      name + R"(.pdf","filename":"skjema.pdf","media_type":"application/pdf"}]})");
    };
    auto delivered = [&](const std::string& name) {
        return file_in(root_ / "journal", ".pdf", name);
    };
    // The stored bytes of every blob, in the folder or the table.
    auto stored_blobs = [&]() {
        if (on_postgresql()) {
            auto [rc, out] = test_psql(test_pg_database(root_),
                                       "-c \"SELECT encode(data, 'escape') FROM blobs\"");
            EXPECT_EQ(rc, 0) << out;
            return out;
        }
        std::string all;
        std::error_code ec;
        for (const auto& e : fs::recursive_directory_iterator(root_ / "var/samband.db.blobs", ec))
            if (e.is_regular_file()) all += read_file(e.path());
        return all;
    };
    const fs::path copies = root_ / "var/samband.db.copies";
    const std::string small = pdf("HEMMELIG-VEDLEGG-A", 300000);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop("a", small);
    ASSERT_TRUE(wait_for([&] { return !delivered("VEDLEGG-A").empty(); }, std::chrono::seconds(30)))
        << d.log();
    EXPECT_TRUE(delivered("VEDLEGG-A") == small) << "the sink's copy differs";
    std::string raw = stored_blobs();
    EXPECT_GT(raw.size(), small.size() / 2);
    EXPECT_EQ(raw.find("HEMMELIG"), std::string::npos) << "plaintext in the stored blob";
    EXPECT_EQ(raw.find("%PDF"), std::string::npos);
    EXPECT_TRUE(fs::is_directory(copies));
    EXPECT_EQ(fs::status(copies).permissions() & fs::perms::all, fs::perms::owner_all);
    EXPECT_TRUE(wait_for([&] { return fs::is_empty(copies); }, std::chrono::seconds(10)))
        << "a decrypted copy outlived its attempt";
    std::string sha;  // the only blob so far
    if (on_postgresql()) {
        sha = test_psql(test_pg_database(root_), "-c 'SELECT sha256 FROM blobs'").second;
        sha.erase(std::remove(sha.begin(), sha.end(), '\n'), sha.end());
    } else {
        std::error_code ec;
        for (const auto& e : fs::recursive_directory_iterator(root_ / "var/samband.db.blobs", ec))
            if (e.is_regular_file()) sha = e.path().filename().string();
    }
    ASSERT_EQ(sha.size(), 64u) << sha;

    // 20 MB: byte-exact, and (SQLite) the daemon's peak RSS grows by far less than that.
    auto hwm_kb = [&] {
        std::string status = read_file("/proc/" + std::to_string(d.pid()) + "/status");
        auto at = status.find("VmHWM:");
        return at == std::string::npos ? -1L : std::stol(status.substr(at + 6));
    };
    const long before = hwm_kb();
    const std::string big = pdf("STORT-VEDLEGG-B", 20u << 20);
    drop("b", big);
    ASSERT_TRUE(
        wait_for([&] { return !delivered("STORT-VEDLEGG-B").empty(); }, std::chrono::seconds(120)))
        << d.log();
    EXPECT_TRUE(delivered("STORT-VEDLEGG-B") == big) << "the 20 MB attachment differs";
    const long growth_mb = (hwm_kb() - before) / 1024;
    std::cout << "[ measured ] 20 MB sealed attachment: peak RSS grew " << growth_mb << " MB\n";
    if (!on_postgresql()) {
        EXPECT_LT(growth_mb, 12) << "a whole attachment was held in memory";
    }
    EXPECT_TRUE(wait_for([&] { return fs::is_empty(copies); }, std::chrono::seconds(10)));
    EXPECT_EQ(d.stop(), 0) << d.log();

    // A flipped byte in the stored blob (after the header, inside the third chunk).
    if (on_postgresql()) {
        auto [rc, out] = test_psql(test_pg_database(root_),
                                   "-c \"UPDATE blobs SET data = set_byte(data, 140000, "
                                   "get_byte(data, 140000) # 1) WHERE sha256 = '" +
                                       sha + "'\"");
        ASSERT_EQ(rc, 0) << out;
    } else {
        fs::path f = root_ / "var/samband.db.blobs" / sha.substr(0, 2) / sha;
        std::string bytes = read_file(f);
        ASSERT_GT(bytes.size(), 140000u);
        bytes[140000] = static_cast<char>(bytes[140000] ^ 1);
        fs::permissions(f, fs::perms::owner_read | fs::perms::owner_write);
        write_file(f, bytes);
    }
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_ / "journal", ec)) fs::remove(e.path(), ec);
    daemon_process d2(root_ / "samband.json", root_);
    ASSERT_TRUE(d2.start()) << d2.log();
    auto [code, out] = d2.cli("replay --destination journal --since 1h");
    ASSERT_EQ(code, 0) << out;
    std::string reason;
    ASSERT_TRUE(wait_for(
        [&] {
            rapidjson::Document doc;
            doc.Parse(d2.get("/api/v1/deliveries?state=dead&limit=10").body.c_str());
            if (!doc.IsArray() || doc.Empty()) return false;
            reason = doc[0]["reason"].GetString();
            return true;
        },
        std::chrono::seconds(30)))
        << d2.log();
    EXPECT_NE(reason.find("attachment sha256 "), std::string::npos) << reason;
    EXPECT_NE(reason.find("failed authentication"), std::string::npos) << reason;
    EXPECT_EQ(reason.find("skjema"), std::string::npos) << reason;
    // The changed one never reaches the sink; the intact 20 MB one (the same patient's, next in
    // order once the first is dead) is delivered again, and its copy is removed.
    EXPECT_TRUE(
        wait_for([&] { return !delivered("STORT-VEDLEGG-B").empty(); }, std::chrono::seconds(60)))
        << d2.log();
    EXPECT_EQ(delivered("VEDLEGG-A"), "");
    EXPECT_TRUE(wait_for([&] { return fs::is_empty(copies); }, std::chrono::seconds(10)));
    EXPECT_EQ(d2.stop(), 0) << d2.log();
}

// An `isolation: process` sink (the plugin-host child) gets a sealed attachment through the host's
// decrypted copy (opened by the host, handed over as a descriptor): byte-exact, and the copy is
// removed after the attempt.
TEST_F(encryption_test, an_isolated_sink_reads_a_sealed_attachment_byte_exact) {
    write_config({{"k1", fresh_key()}});
    std::string text = read_file(root_ / "samband.json");
    const std::string plain_sink = R"("journal": {"plugin": "file", "config")";
    auto at = text.find(plain_sink);
    ASSERT_NE(at, std::string::npos) << text;
    text.replace(at, plain_sink.size(),
                 R"("journal": {"plugin": "file", "isolation": "process", "config")");
    write_file(root_ / "samband.json", text);
    std::string pdf = "%PDF-1.7\n";
    for (int i = 0; pdf.size() < 200000; ++i)
        pdf += "BT (ISOLERT-VEDLEGG side " + std::to_string(i) + ") Tj ET\n";
    write_file(root_ / "inbox" / "iso.pdf", pdf);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "iso.json",
              R"({"schema":"samband.event/1","type":"rph.assessment.scored",)"
              R"("idempotency_key":"att:iso","occurred_at":"2026-11-24T10:15:00+01:00",)"
              R"("subject":{"fnr":"14839134623"},)"
              R"("data":{"treatment_id":"t-iso","instrument":"PHQ-9","score":12,)"
              R"("administered_at":"2026-11-24"},)"
              R"("attachments":[{"file":"iso.pdf","filename":"skjema.pdf",)"
              R"("media_type":"application/pdf"}]})");
    std::string delivered;
    ASSERT_TRUE(wait_for(
        [&] {
            delivered = file_in(root_ / "journal", ".pdf");
            return !delivered.empty();
        },
        std::chrono::seconds(30)))
        << d.log();
    EXPECT_TRUE(delivered == pdf) << "the isolated sink's copy differs";
    EXPECT_TRUE(wait_for([&] { return fs::is_empty(root_ / "var/samband.db.copies"); },
                         std::chrono::seconds(10)));
    EXPECT_EQ(d.stop(), 0) << d.log();
}

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
