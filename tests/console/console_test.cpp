// The web console (issue 15 item 8) in Debian's chromium, driven by playwright-core (installed by
// the test setup into the build tree): the real daemon with the demo's events, a GP sink and a
// journal sink that refuses everything until the test lets it through. Screenshots are kept in
// the build tree (SAMBAND_CONSOLE_SHOTS).
#include "harness.hpp"

#include <samband_test/tools.hpp>

namespace samband::test {
namespace {

class console_test : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string src = source_dir();
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + src + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "gp_directory": {"kind": "file", "path": ")" +
                                               src + R"(/config/demo/directory.json"},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "notes": {"plugin": "rph"},
    "gp": {"plugin": "fixture-sink", "config": {"record_file": "gp.jsonl"}},
    "journal": {"plugin": "fixture-sink", "config": {"control_file": "journal-control.json",
                                                      "record_file": "journal.jsonl"},
                "policy": {"max_attempts": 1}}
  },
  "routes": [
    {"name": "gp-notes", "match": {"type": "rph.treatment.*"}, "transforms": ["notes"],
     "to": ["gp"], "recipient": "gp"},
    {"name": "journal", "match": {"type": "rph.assessment.scored"}, "to": ["journal"]}
  ]
})");
        write_file(root_ / "journal-control.json",
                   R"({"mode": "permanent", "message": "journal is down for maintenance"})");
    }

    // The delivery rows the admin API lists in `state`.
    static rapidjson::Document list(const daemon_process& d, const std::string& state) {
        rapidjson::Document doc;
        doc.Parse(d.get("/api/v1/deliveries?limit=1000&state=" + state).body.c_str());
        return doc;
    }

    temp_dir tmp_;
    fs::path root_ = tmp_.path();
};

TEST_F(console_test, log_in_find_the_blocked_end_note_and_retry_a_dead_delivery) {
    SAMBAND_REQUIRE_TOOL("node");
    SAMBAND_REQUIRE_TOOL("chromium");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    // The demo's events in order: Ola's objection blocks his end note; Kari's score goes to the
    // journal, which refuses it once and for all (dead).
    const fs::path events = fs::path(source_dir()) / "config/demo/events";
    std::vector<fs::path> files;
    fs::create_directories(root_ / "inbox");
    for (auto& e : fs::directory_iterator(events)) {
        if (e.path().extension() == ".json") files.push_back(e.path());
        if (e.path().extension() == ".pdf")  // attachments first, as the demo does
            fs::copy_file(e.path(), root_ / "inbox" / e.path().filename());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        drop_file(root_ / "inbox", f.filename().string(), read_file(f));
        ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "inbox/done" / f.filename()); },
                             std::chrono::seconds(10)))
            << f << "\n"
            << d.log();
    }
    std::string blocked_reason;
    ASSERT_TRUE(wait_for(
        [&] {
            auto b = list(d, "blocked");
            auto x = list(d, "dead");
            if (!b.IsArray() || !x.IsArray() || x.Empty()) return false;
            for (auto& r : b.GetArray())
                if (std::string(r["event_type"].GetString()) == "rph.treatment.ended")
                    blocked_reason = r["reason"].GetString();
            return !blocked_reason.empty();
        },
        std::chrono::seconds(20)))
        << d.log();
    // The journal is back: the retry from the console will go through, with a receipt.
    write_file(root_ / "journal-control.json", R"({"mode": "ok", "receipt": "ack"})");

    // A viewer too, added while the daemon runs (it takes the token file's change).
    const std::string viewer = add_token(root_ / "harness.tokens", "viewer", "viewer");
    ASSERT_FALSE(viewer.empty());

    const std::string shots = SAMBAND_CONSOLE_SHOTS;
    fs::remove_all(shots);
    fs::create_directories(shots);
    auto [code, out] =
        run_command("node " + std::string(SAMBAND_CONSOLE_PEER) + "/console_test.js http://" +
                    d.admin() + "/console/ " + d.token() + " " + shots + " " + viewer);
    ASSERT_EQ(code, 0) << out << "\n" << d.log();
    auto json_at = out.rfind("\n{");
    rapidjson::Document seen;
    seen.Parse(out.c_str() + (json_at == std::string::npos ? 0 : json_at + 1));
    ASSERT_TRUE(seen.IsObject()) << out;

    // What the browser saw is what the API says.
    EXPECT_EQ(seen["status"].GetInt(), 200);
    std::string csp = seen["csp"].GetString();
    EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
    EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
    // No script error, and nothing the CSP refused (the only errors the page may log are the
    // 401 of the wrong token and the viewer's 403, both asked for on purpose).
    EXPECT_TRUE(seen["page_errors"].Empty()) << out;
    for (auto& e : seen["console_errors"].GetArray()) {
        std::string text = e.GetString();
        EXPECT_TRUE(text.find("401 (Unauthorized)") != std::string::npos ||
                    text.find("403 (Forbidden)") != std::string::npos)
            << text;
    }
    EXPECT_LE(seen["console_errors"].Size(), 2u) << out;
    EXPECT_EQ(std::string(seen["blocked_reason"].GetString()), blocked_reason);
    EXPECT_NE(blocked_reason.find("objected"), std::string::npos) << blocked_reason;
    EXPECT_EQ(seen["cookies"].GetInt(), 0) << "the token is never a cookie";
    EXPECT_TRUE(seen["token_after_logout"].IsNull()) << out;
    ASSERT_TRUE(seen["viewer_menu"].IsArray()) << out;
    ASSERT_EQ(seen["viewer_menu"].Size(), 1u) << out;  // the overview only
    EXPECT_EQ(std::string(seen["viewer_menu"][0].GetString()), "overview");
    EXPECT_EQ(seen["viewer_deliveries_status"].GetInt(), 403) << out;
    const std::string dead_id = seen["dead_id"].GetString();
    ASSERT_TRUE(wait_for(
        [&] {
            auto r = d.get("/api/v1/deliveries/" + dead_id);
            return r.body.find("\"state\":\"acknowledged\"") != std::string::npos;
        },
        std::chrono::seconds(15)))
        << d.get("/api/v1/deliveries/" + dead_id).body;
    // What the console's delivery page shows: both attempts and the receipt.
    rapidjson::Document one;
    one.Parse(d.get("/api/v1/deliveries/" + dead_id).body.c_str());
    ASSERT_TRUE(one.IsObject() && one["attempts"].IsArray() && one["receipts"].IsArray());
    ASSERT_EQ(one["attempts"].Size(), 2u);
    EXPECT_EQ(std::string(one["attempts"][0]["outcome"].GetString()), "dead");
    EXPECT_NE(std::string(one["attempts"][0]["reason"].GetString()).find("maintenance"),
              std::string::npos);
    ASSERT_EQ(one["receipts"].Size(), 1u);
    EXPECT_EQ(std::string(one["receipts"][0]["kind"].GetString()), "ack");
    auto trail = d.get("/api/v1/audit?subject=delivery:" + dead_id).body;
    EXPECT_NE(trail.find("receiver fixed (console test)"), std::string::npos) << trail;
    EXPECT_NE(trail.find("token:harness"), std::string::npos) << trail;
    for (const char* f :
         {"01-login-refused", "02-overview", "04-blocked-end-note", "06-retried", "07-audit"})
        EXPECT_GT(fs::file_size(fs::path(shots) / (std::string(f) + ".png")), 1000u) << f;
    EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace samband::test
