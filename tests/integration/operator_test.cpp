// Operator surfaces end to end: receipts, health and metrics, `samband send` with an attachment
// into a file outbox, `samband preview`, and replay.
#include "harness.hpp"

#include <rapidjson/document.h>

#include <algorithm>

namespace samband::test {
namespace {

class operator_test : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = tmp_.path();
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "sink": {"plugin": "fixture-sink", "config": {"control_file": "control.json", "record_file": "record.jsonl"}},
    "outbox": {"plugin": "file", "config": {"outbox": "out"}}
  },
  "routes": [{"name": "scores", "match": {"type": "rph.assessment.*"}, "to": ["sink"]},
             {"name": "referrals", "match": {"type": "rph.referral.received"}, "to": ["outbox"]}]
})");
    }
    std::string state_of(daemon_process& d, const std::string& id) {
        auto r = d.get("/api/v1/deliveries/" + id);
        rapidjson::Document doc;
        doc.Parse(r.body.c_str());
        if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("delivery")) return "?";
        return doc["delivery"]["state"].GetString();
    }
    std::string score_event(const std::string& key) {
        std::string e = read_file(fs::path(source_dir()) / "config/demo/events/03-kari-score.json");
        e.replace(e.find("gerica:score-1001-1"), 19, key);
        return e;
    }
    temp_dir tmp_;
    fs::path root_;
};

TEST_F(operator_test, receipts_mark_deliveries_acknowledged_or_dead_with_the_receivers_reason) {
    daemon_process d(root_ / "samband.json", root_);
    write_file(root_ / "control.json", R"({"mode":"ok","receipt":"ack"})");
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "a.json", score_event("r-ack"));
    ASSERT_TRUE(
        wait_for([&] { return state_of(d, "1") == "acknowledged"; }, std::chrono::seconds(10)))
        << d.log();
    write_file(root_ / "control.json", R"({"mode":"ok","receipt":"reject"})");
    drop_file(root_ / "inbox", "b.json", score_event("r-rej"));
    ASSERT_TRUE(wait_for([&] { return state_of(d, "2") == "dead"; }, std::chrono::seconds(10)))
        << d.log();
    auto show = d.get("/api/v1/deliveries/2");
    EXPECT_NE(show.body.find("8221:E21 Mottaker finnes ikke"), std::string::npos) << show.body;
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(operator_test, health_readiness_and_metrics_answer) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "a.json", score_event("m-1"));
    ASSERT_TRUE(wait_for(
        [&] {
            return fs::exists(root_ / "record.jsonl") && !read_file(root_ / "record.jsonl").empty();
        },
        std::chrono::seconds(10)));
    EXPECT_EQ(d.get("/healthz").status, 200);
    EXPECT_EQ(d.get("/readyz").status, 200);
    auto m = d.get("/metrics");
    EXPECT_EQ(m.status, 200);
    for (const char* name :
         {"samband_events_in_total{", "samband_delivery_transitions_total{",
          "samband_queue_depth{destination=\"sink\"}", "samband_queue_oldest_age_seconds",
          "samband_delivery_latency_seconds_bucket", "samband_store_commit_seconds_count"})
        EXPECT_NE(m.body.find(name), std::string::npos) << name << "\n" << m.body.substr(0, 2000);
    // What the group commits held: the one event was stored in one of them, and its delivered
    // state change (committed after the sink's record) in one. PostgreSQL counts only jobs.
    auto value = [&](const std::string& series) {
        auto at = m.body.find("\n" + series + " ");
        return at == std::string::npos ? -1.0 : std::stod(m.body.substr(at + series.size() + 2));
    };
    if (on_postgresql()) {
        EXPECT_GE(value("samband_store_commit_size_count{kind=\"jobs\"}"), 1.0) << m.body;
        EXPECT_EQ(value("samband_store_commit_size_count{kind=\"events\"}"), 0.0) << m.body;
    } else {
        EXPECT_TRUE(wait_for(
            [&] {
                m = d.get("/metrics");
                return value("samband_store_commit_size_sum{kind=\"state_changes\"}") >= 1.0;
            },
            std::chrono::seconds(10)))
            << m.body;
        EXPECT_EQ(value("samband_store_commit_size_sum{kind=\"events\"}"), 1.0) << m.body;
        EXPECT_EQ(value("samband_store_commit_size_count{kind=\"events\"}"), 1.0) << m.body;
        EXPECT_GE(value("samband_store_commit_size_count{kind=\"jobs\"}"),
                  value("samband_store_commit_size_count{kind=\"events\"}"));
    }
    auto list = d.get("/api/v1/deliveries");
    EXPECT_EQ(list.body.find("14839134623"), std::string::npos) << "a list showed a fødselsnummer";
    EXPECT_EQ(d.get("/api/v1/nope").status, 404);
    EXPECT_EQ(d.post("/api/v1/deliveries").status, 405);
    EXPECT_EQ(d.get("/api/v1/deliveries?state=bogus").status, 400);
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(operator_test, send_with_an_attachment_reaches_the_outbox_bit_exact) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    fs::path ev = root_ / "send" / "referral.json";
    fs::create_directories(ev.parent_path());
    fs::copy_file(fs::path(source_dir()) / "config/demo/events/01-kari-referral.json", ev);
    fs::copy_file(fs::path(source_dir()) / "config/demo/events/henvisning-kari.pdf",
                  root_ / "send" / "henvisning-kari.pdf");
    auto [code, out] = d.cli("send " + ev.string());
    ASSERT_EQ(code, 0) << out;
    EXPECT_NE(out.find("accepted event"), std::string::npos);
    std::string pdf = read_file(root_ / "send" / "henvisning-kari.pdf");
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "out/outbox-1.henvisning.pdf"); },
                         std::chrono::seconds(10)))
        << d.log();
    EXPECT_EQ(read_file(root_ / "out/outbox-1.henvisning.pdf"), pdf);
    auto again = d.cli("send " + ev.string());
    EXPECT_NE(again.second.find("duplicate"), std::string::npos) << again.second;
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(operator_test, replay_sends_a_destinations_deliveries_again_with_the_same_external_id) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "a.json", score_event("rp-1"));
    ASSERT_TRUE(
        wait_for([&] { return state_of(d, "1") == "delivered"; }, std::chrono::seconds(10)));
    auto [code, out] = d.cli("replay --destination sink --since 1h");
    ASSERT_EQ(code, 0) << out;
    EXPECT_NE(out.find("\"replayed\":1"), std::string::npos) << out;
    ASSERT_TRUE(wait_for(
        [&] {
            std::string r = read_file(root_ / "record.jsonl");
            return std::count(r.begin(), r.end(), '\n') == 2;
        },
        std::chrono::seconds(10)));
    std::string r = read_file(root_ / "record.jsonl");
    std::size_t first = r.find("\"external_id\":\"fx-1\"");
    ASSERT_NE(first, std::string::npos) << r;
    EXPECT_NE(r.find("\"external_id\":\"fx-1\"", first + 1), std::string::npos)
        << "the replay must reuse the external id\n"
        << r;
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(operator_test, preview_writes_what_each_destination_would_get_and_stores_nothing) {
    fs::path out = root_ / "preview";
    std::string cmd =
        daemon_process::binary() + " preview -c " + (root_ / "samband.json").string() + " " +
        (fs::path(source_dir()) / "config/demo/events/01-kari-referral.json").string() + " --out " +
        out.string();
    auto [code, text] = run_command(cmd);
    EXPECT_EQ(code, 0) << text;
    EXPECT_NE(text.find("SEND     outbox"), std::string::npos) << text;
    EXPECT_TRUE(fs::exists(out / "outbox.json")) << text;
    EXPECT_FALSE(fs::exists(root_ / "var/samband.db"))
        << "preview must not create or touch the store";
}

// Preview reads the treatment's stored history (as the consent gate sees it) from the store the
// config names, SQLite or PostgreSQL, read-only beside the running daemon.
TEST_F(operator_test, preview_reads_the_treatments_history_from_the_store_beside_the_daemon) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    for (const char* e : {"01-kari-referral.json", "02-kari-start.json"}) {
        auto r = d.post(
            "/api/v1/events",
            "{\"envelope\":" + read_file(fs::path(source_dir()) / "config/demo/events" / e) + "}");
        ASSERT_EQ(r.status, 201) << r.body;
    }
    auto [code, text] = run_command(
        daemon_process::binary() + " preview -c " + (root_ / "samband.json").string() + " " +
        (fs::path(source_dir()) / "config/demo/events/03-kari-score.json").string() + " --out " +
        (root_ / "preview").string());
    EXPECT_EQ(code, 0) << text;
    EXPECT_NE(text.find("history: 2 stored event(s) of treatment T-1001 from " +
                        std::string(on_postgresql() ? "the PostgreSQL store"
                                                    : (root_ / "var/samband.db").string())),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("SEND     sink"), std::string::npos) << text;
    auto list = d.get("/api/v1/deliveries");
    EXPECT_NE(list.body.find("\"destination\":\"outbox\""), std::string::npos) << list.body;
    EXPECT_EQ(list.body.find("\"destination\":\"sink\""), std::string::npos)
        << "preview stored the score: " << list.body;
    EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace samband::test
