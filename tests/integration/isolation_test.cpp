// Issue 9 "done when": a segfaulting isolated sink beside a healthy one costs one counted attempt
// per crash, the healthy destination delivers everything, and after N crashes the endpoint is
// quarantined with a reason that `samband status` shows; the daemon never goes down; the kit
// reports the same crash as a FAIL row naming the signal.
#include "harness.hpp"

#include <rapidjson/document.h>

#include <set>
#include <sstream>

namespace samband::test {
namespace {

std::string score_event(int i) {
    return R"({"schema":"samband.event/1","type":"rph.assessment.scored",)"
           R"("idempotency_key":"iso:)" +
           std::to_string(i) +
           R"(","occurred_at":"2026-11-24T10:15:00+01:00",)"
           R"("subject":{"fnr":"14839134623","name":{"given":"Kari","family":"Nordmann"}},)"
           R"("data":{"treatment_id":"t-1","instrument":"PHQ-9","score":12,)"
           R"("administered_at":"2026-11-24"}})";
}

std::size_t lines_in(const fs::path& p) {
    std::size_t n = 0;
    for (char c : read_file(p)) n += c == '\n';
    return n;
}

TEST(isolation_daemon, a_segfaulting_sink_beside_a_healthy_one) {
    temp_dir tmp;
    fs::path root = tmp.path();
    std::string hostile = std::string(SAMBAND_ABI_FIXTURE_DIR) + "/fixture_hostile.so";
    write_file(root / "control.json", R"({"mode":"ok"})");
    write_file(root / "samband.json", R"({
  "node": {"name": "it"},
  "store": {"kind": "sqlite", "path": "var/samband.db", "retention_days": 30},
  "admin": {"listen": "127.0.0.1:0"},
  "log": {"level": "info", "format": "json"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "identifiers": {"allow_synthetic": true},
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "good": {"plugin": "fixture-sink",
             "config": {"control_file": "control.json", "record_file": "record.jsonl"}},
    "bad": {"plugin": ")" + hostile + R"(", "config": {"fault": "segv_deliver"},
            "process": {"max_crashes": 3, "crash_window_s": 600},
            "policy": {"max_attempts": 50, "backoff_base_ms": 50, "backoff_max_ms": 200,
                       "concurrency": 1}}
  },
  "routes": [{"name": "scores", "match": {"type": "rph.*", "source": "epj"},
              "to": ["good", "bad"]}]
})");
    daemon_process d(root / "samband.json", root);
    ASSERT_TRUE(d.start()) << d.log();
    // The vendor plugin is never mapped into the daemon (not even to read its config schema).
    std::string maps = read_file("/proc/" + std::to_string(d.pid()) + "/maps");
    ASSERT_NE(maps.find("samband_plugin_file"), std::string::npos) << "in-tree plugins are";
    EXPECT_EQ(maps.find("fixture_hostile"), std::string::npos) << maps;
    const int n = 20;
    for (int i = 0; i < n; ++i)
        drop_file(root / "inbox", "e" + std::to_string(i) + ".json", score_event(i));

    ASSERT_TRUE(
        wait_for([&] { return lines_in(root / "record.jsonl") >= n; }, std::chrono::seconds(60)))
        << d.log();
    // The bad endpoint is quarantined after three crashes, with the reason in `samband status`.
    ASSERT_TRUE(wait_for(
        [&] {
            auto [rc, out] = d.cli("status");
            return out.find("quarantined") != std::string::npos;
        },
        std::chrono::seconds(30)))
        << d.log();
    auto [rc, status] = d.cli("status");
    EXPECT_EQ(rc, 0) << status;
    EXPECT_NE(status.find("quarantined after 3 crashes"), std::string::npos) << status;
    EXPECT_NE(status.find("SIGSEGV"), std::string::npos) << status;
    EXPECT_NE(status.find("during deliver"), std::string::npos) << status;

    // Every crash cost exactly one counted attempt, none delivered: the daemon's log has one failed
    // attempt naming SIGSEGV per crash (three), no other failed attempt (none is spent while the
    // child restarts or once it is quarantined), and the stored attempt counts add up to three.
    auto r = d.get("/api/v1/deliveries?destination=bad&limit=1000");
    ASSERT_EQ(r.status, 200) << r.body;
    std::string log = d.log();
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    ASSERT_TRUE(doc.IsObject() || doc.IsArray()) << r.body;
    const rapidjson::Value& arr = doc.IsArray() ? doc : doc["deliveries"];
    long long attempts = 0;
    std::set<std::string> states;
    for (auto& v : arr.GetArray()) {
        attempts += v["attempts"].GetInt64();
        states.insert(v["state"].GetString());
    }
    EXPECT_EQ(arr.Size(), static_cast<unsigned>(n));
    EXPECT_FALSE(states.count("delivered"));
    long long failed = 0, crashed = 0;
    std::istringstream lines(log);
    for (std::string line; std::getline(lines, line);) {
        rapidjson::Document l;
        l.Parse(line.c_str());
        if (l.HasParseError() || !l.IsObject() || !l.HasMember("step") || !l.HasMember("endpoint"))
            continue;
        if (std::string(l["step"].GetString()) != "deliver.failed" &&
            std::string(l["step"].GetString()) != "deliver.dead")
            continue;
        if (std::string(l["endpoint"].GetString()) != "bad") continue;
        ++failed;
        if (std::string(l["msg"].GetString()).find("killed by SIGSEGV") != std::string::npos)
            ++crashed;
    }
    EXPECT_EQ(crashed, 3) << log;
    EXPECT_EQ(failed, 3) << log;
    EXPECT_EQ(attempts, 3) << r.body;
    EXPECT_NE(log.find("plugin-host killed by SIGSEGV"), std::string::npos) << log;

    // The healthy destination got every event exactly once, and the daemon stops cleanly.
    EXPECT_EQ(lines_in(root / "record.jsonl"), static_cast<std::size_t>(n));
    EXPECT_EQ(d.stop(), 0) << d.log();

    // The kit, given the same plugin and config, reports the crash as a FAIL naming the signal.
    write_file(root / "bad.json", R"({"fault": "segv_deliver"})");
    auto [kit_rc, kit] = run_command(daemon_process::binary() + " plugin check " + hostile +
                                     " --config " + (root / "bad.json").string());
    EXPECT_EQ(kit_rc, 1) << kit;
    EXPECT_NE(kit.find("FAIL  sink: delivery without attachment: plugin-host killed by SIGSEGV"),
              std::string::npos)
        << kit;
}

}  // namespace
}  // namespace samband::test
