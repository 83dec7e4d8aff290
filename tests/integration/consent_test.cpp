// The consent and objection gate end to end: an objected note reaches no sink — also when the
// objection arrives after the note was queued, and across a daemon restart (issue 4 §3).
#include "harness.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace samband::test {
namespace {

std::string demo_event(const std::string& name) {
    return read_file(fs::path(source_dir()) / "config/demo/events" / name);
}

std::string objection(const std::string& treatment, const std::string& key,
                      const std::string& change = "objection_recorded") {
    return R"({"schema":"samband.event/1","type":"rph.consent.changed","idempotency_key":")" + key +
           R"(","occurred_at":"2026-11-19T09:00:00+01:00","subject":{"fnr":"14839134623"},)"
           R"("data":{"treatment_id":")" +
           treatment + R"(","change":")" + change + R"(","recorded_at":"2026-11-19"}})";
}

struct record {
    std::string type, outcome, delivery_id;
};

std::vector<record> records(const fs::path& p) {
    std::vector<record> out;
    for_each_json_line(p, [&](const rapidjson::Document& d) {
        out.push_back(
            {d["type"].GetString(), d["outcome"].GetString(), d["delivery_id"].GetString()});
    });
    return out;
}

class consent_test : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = tmp_.path();
        std::string src = source_dir();
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0", "token_file": "tokens"},
  "plugin_dirs": [")" + plugin_dir() +
                                               R"("],
  "schemas_dir": ")" + src + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "gp_directory": {"kind": "file", "path": ")" +
                                               src + R"(/config/demo/directory.json"},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "notes": {"plugin": "rph"},
    "gp": {"plugin": "fixture-sink", "config": {"control_file": "control.json", "record_file": "record.jsonl"},
           "policy": {"max_attempts": 5, "backoff_base_ms": 3000, "backoff_max_ms": 3000}}
  },
  "routes": [{"name": "gp-notes", "match": {"type": "rph.treatment.*"}, "transforms": ["notes"],
              "to": ["gp"], "recipient": "gp"}]
})");
        // An operator and a clinician: only the clinician may override the gate.
        write_file(root_ / "ops.token", add_token(root_ / "tokens", "ops", "operator") + "\n");
        write_file(root_ / "dr.token", add_token(root_ / "tokens", "dr", "clinician") + "\n");
        // The start note's first attempt fails and backs off 3 s: the end note queues behind it.
        write_file(root_ / "control.json", R"({"mode":"fail_times","times":1})");
    }

    std::vector<record> end_notes() {
        std::vector<record> out;
        for (auto& r : records(root_ / "record.jsonl"))
            if (r.type == "rph.treatment.ended") out.push_back(r);
        return out;
    }

    std::string state_of_end_note(daemon_process& d) {
        auto [code, out] = d.cli("deliveries list --json" + as("ops"));
        rapidjson::Document doc;
        doc.Parse(out.c_str());
        if (doc.HasParseError() || !doc.IsArray()) return "?";
        for (auto& x : doc.GetArray())
            if (std::string(x["event_type"].GetString()) == "rph.treatment.ended")
                return x["state"].GetString();
        return "none";
    }

    std::string as(const std::string& who) const {
        return " --token-file " + (root_ / (who + ".token")).string();
    }

    temp_dir tmp_;
    fs::path root_;
};

TEST_F(consent_test, objection_after_the_end_note_was_queued_stops_it) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "1-start.json", demo_event("02-kari-start.json"));
    drop_file(root_ / "inbox", "2-end.json", demo_event("05-kari-end.json"));  // objection: none
    ASSERT_TRUE(
        wait_for([&] { return state_of_end_note(d) == "pending"; }, std::chrono::seconds(10)))
        << d.log();
    drop_file(root_ / "inbox", "3-objection.json", objection("T-1001", "obj-1"));
    // The start note goes on its second attempt; the end note is then decided: blocked.
    ASSERT_TRUE(
        wait_for([&] { return state_of_end_note(d) == "blocked"; }, std::chrono::seconds(20)))
        << d.log();
    EXPECT_TRUE(end_notes().empty()) << "an objected end note reached the sink";
    bool start_ok = false;
    for (auto& r : records(root_ / "record.jsonl"))
        start_ok = start_ok || (r.type == "rph.treatment.started" && r.outcome == "ok");
    EXPECT_TRUE(start_ok);
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(consent_test, objection_holds_across_a_restart_and_only_an_operator_override_sends) {
    {
        daemon_process d(root_ / "samband.json", root_);
        ASSERT_TRUE(d.start()) << d.log();
        drop_file(root_ / "inbox", "1-start.json", demo_event("02-kari-start.json"));
        drop_file(root_ / "inbox", "2-end.json", demo_event("05-kari-end.json"));
        drop_file(root_ / "inbox", "3-objection.json", objection("T-1001", "obj-2"));
        ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "inbox/done/3-objection.json"); },
                             std::chrono::seconds(10)));
        d.kill9();  // before the start note's retry: the end note is still queued
    }
    write_file(root_ / "control.json", R"({"mode":"ok"})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    ASSERT_TRUE(
        wait_for([&] { return state_of_end_note(d) == "blocked"; }, std::chrono::seconds(20)))
        << d.log();
    EXPECT_TRUE(end_notes().empty());
    // A retry does not pass the gate; an override without a token is refused, and so is an
    // operator's; the clinician's, with a reason, sends.
    auto [code, out] = d.cli("deliveries list --state blocked --json" + as("ops"));
    rapidjson::Document doc;
    doc.Parse(out.c_str());
    ASSERT_TRUE(doc.IsArray() && doc.Size() == 1) << out;
    std::string id = std::to_string(doc[0]["id"].GetInt64());
    EXPECT_NE(d.cli("deliveries retry " + id + as("ops")).first, 0);
    const std::string why = " --reason 'patient withdrew objection by phone'";
    auto anon = d.cli("deliveries override " + id + why);
    EXPECT_EQ(anon.first, 1) << anon.second;
    EXPECT_NE(anon.second.find("no token was sent"), std::string::npos) << anon.second;
    auto ops = d.cli("deliveries override " + id + why + as("ops"));
    EXPECT_EQ(ops.first, 1) << ops.second;
    EXPECT_NE(ops.second.find("HTTP 403"), std::string::npos) << ops.second;
    auto ov = d.cli("deliveries override " + id + why + as("dr"));
    EXPECT_EQ(ov.first, 0) << ov.second;
    ASSERT_TRUE(wait_for([&] { return !end_notes().empty(); }, std::chrono::seconds(15)))
        << d.log();
    auto show = d.cli("deliveries show " + id + as("ops"));
    EXPECT_NE(show.second.find("gate.override"), std::string::npos) << show.second;
    EXPECT_NE(show.second.find("token:dr"), std::string::npos) << show.second;
    EXPECT_EQ(d.stop(), 0);
}

TEST_F(consent_test, withdrawn_objection_lets_the_end_note_go) {
    write_file(root_ / "control.json", R"({"mode":"ok"})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "1-start.json", demo_event("02-kari-start.json"));
    drop_file(root_ / "inbox", "2-objection.json", objection("T-1001", "obj-3"));
    drop_file(root_ / "inbox", "3-end.json", demo_event("05-kari-end.json"));
    ASSERT_TRUE(
        wait_for([&] { return state_of_end_note(d) == "blocked"; }, std::chrono::seconds(15)))
        << d.log();
    drop_file(root_ / "inbox", "4-withdrawn.json",
              objection("T-1001", "obj-4", "objection_withdrawn"));
    EXPECT_TRUE(wait_for([&] { return end_notes().size() == 1; }, std::chrono::seconds(15)))
        << d.log();
    EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace samband::test
