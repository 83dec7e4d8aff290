// The attachment (blob) folder in trouble (issue 15 item 5): a submit with a new attachment is
// refused with RETRY (the source keeps its input), writes back off exponentially, one alert is
// raised (log line, metric, `samband status`) and one "recovered" when the folder works again,
// and nothing spins. The folder is replaced by a regular file: that fails as a full or read-only
// disk does for root, whom permission bits do not stop.
#include "harness.hpp"

#include <fstream>
#include <regex>

namespace samband::test {
namespace {

class blob_folder_test : public ::testing::Test {
protected:
    void SetUp() override {
        SAMBAND_SQLITE_ONLY(
            "the attachment folder is the SQLite store's; PostgreSQL keeps attachments in the "
            "database");
        root_ = tmp_.path();
        std::string plugins = plugin_dir();
        std::string schemas = source_dir() + "/config/schemas";
        write_file(root_ / "samband.json", R"({
  "node": {"name": "it"},
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "log": {"level": "info"},
  "plugin_dirs": [")" + plugins + R"("],
  "identifiers": {"allow_synthetic": true},
  "schemas_dir": ")" + schemas + R"(",
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 20}},
    "journal": {"plugin": "file", "config": {"outbox": "journal"}}
  },
  "routes": [{"name": "all", "match": {"type": "rph.*", "source": "epj"}, "to": ["journal"]}]
})");
    }

    // A score event with one attachment (`pdf` bytes) dropped into the inbox.
    void drop_event(const std::string& name, const std::string& pdf) {
        write_file(root_ / "inbox" / (name + ".pdf"), pdf);
        drop_file(root_ / "inbox", name + ".json",
                  R"({"schema":"samband.event/1","type":"rph.assessment.scored",)"
                  R"("idempotency_key":"it:)" +
                      name +
                      R"(","occurred_at":"2026-11-24T10:15:00+01:00",)"
                      R"("subject":{"fnr":"14839134623"},)"
                      R"("data":{"treatment_id":"t-1","instrument":"PHQ-9","score":12,)"
                      R"("administered_at":"2026-11-24"},)"
                      R"("attachments":[{"file":")" +
                      name + R"(.pdf","filename":"skjema.pdf","media_type":"application/pdf"}]})");
    }

    // A metric's value from /metrics (-1 when it is not there).
    static double metric(const daemon_process& d, const std::string& name) {
        std::string text = d.get("/metrics").body;
        std::smatch m;
        if (std::regex_search(text, m, std::regex("\n" + name + " ([0-9.e+]+)")))
            return std::stod(m[1]);
        return -1;
    }

    static std::size_t count(const std::string& text, const std::string& what) {
        std::size_t n = 0;
        for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
        return n;
    }

    // User + system CPU seconds the process used so far (/proc/PID/stat fields 14 and 15).
    static double cpu_seconds(pid_t pid) {
        std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
        auto close = stat.rfind(')');
        if (close == std::string::npos) return -1;
        std::istringstream in(stat.substr(close + 2));
        std::string f;
        long long utime = 0, stime = 0;
        for (int i = 3; i <= 15 && in >> f; ++i) {
            if (i == 14) utime = std::stoll(f);
            if (i == 15) stime = std::stoll(f);
        }
        return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }

    temp_dir tmp_;
    fs::path root_;
};

TEST_F(blob_folder_test, a_broken_folder_backs_off_with_one_alert_and_loses_nothing) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();

    // The folder is a regular file: every write into it fails (ENOTDIR), as a full disk would.
    const fs::path blobs = root_ / "var" / "samband.db.blobs";
    fs::remove_all(blobs);
    write_file(blobs, "not a folder\n");

    const std::string pdf = "%PDF-1.4 blob-folder-test " + std::string(3000, 'x');
    drop_event("e1", pdf);
    ASSERT_TRUE(wait_for([&] { return d.log().find("store.blob_alert") != std::string::npos; },
                         std::chrono::seconds(20)))
        << d.log();

    // A 10 s window of trouble: the write attempts, the refused submits, the log and the CPU stay
    // bounded (before the back-off the source spun: 31,000 retries and 9.7 MB of log in 15 s).
    const std::size_t log_before = d.log().size();
    const double cpu_before = cpu_seconds(d.pid());
    auto tries = [&] {
        return metric(d, "samband_blob_write_errors_total") +
               metric(d, "samband_blob_submits_refused_total");
    };
    const double tries_before = tries();
    EXPECT_FALSE(wait_for([&] { return tries() - tries_before >= 20; }, std::chrono::seconds(10)))
        << "more than 20 write attempts and refused submits in 10 s:\n"
        << d.get("/metrics").body;
    const double tries_in_window = tries() - tries_before;
    const double errors = metric(d, "samband_blob_write_errors_total");
    const std::string window_log = d.log().substr(log_before);
    const double cpu = cpu_seconds(d.pid()) - cpu_before;
    std::cout << "in 10 s of trouble: " << tries_in_window << " write attempts + refused submits, "
              << errors << " failed writes in all, " << count(window_log, "\n") << " log lines ("
              << window_log.size() << " bytes), " << cpu << " s CPU\n";
    EXPECT_GE(tries_in_window, 2) << "the source must keep trying (back-off, not give up)";
    EXPECT_LE(errors, 8) << "writes double their delay from 0.5 s: about 5 in 10 s";
    EXPECT_LT(count(window_log, "\n"), 20u) << window_log;
    EXPECT_LT(window_log.size(), 8u * 1024) << window_log;
    EXPECT_LT(cpu, 2.0) << "the daemon spun";

    // One alert: one log line, one in the metric, shown by status and the status API.
    std::string log = d.log();
    EXPECT_EQ(count(log, "store.blob_alert"), 1u) << log;
    EXPECT_EQ(metric(d, "samband_blob_folder_alerts_total"), 1);
    EXPECT_EQ(metric(d, "samband_blob_folder_trouble"), 1);
    auto [code, status] = d.cli("status");
    EXPECT_EQ(code, 0) << status;
    EXPECT_NE(status.find("ALERT (blob_folder"), std::string::npos) << status;
    EXPECT_NE(status.find("Not a directory"), std::string::npos) << status;
    EXPECT_NE(d.get("/api/v1/status").body.find(R"("kind":"blob_folder")"), std::string::npos);

    // Nothing lost: the input is still in the inbox, neither taken nor refused.
    EXPECT_TRUE(fs::exists(root_ / "inbox" / "e1.json"));
    EXPECT_TRUE(fs::exists(root_ / "inbox" / "e1.pdf"));
    EXPECT_FALSE(fs::exists(root_ / "inbox" / "error" / "e1.json"));
    EXPECT_NE(log.find("will retry e1.json"), std::string::npos) << log;

    // The folder works again: the next probe stores the event once, it is delivered with its
    // attachment, and one "recovered" line ends the alert.
    fs::remove(blobs);
    ASSERT_TRUE(wait_for([&] { return fs::exists(root_ / "inbox" / "done" / "e1.json"); },
                         std::chrono::seconds(60)))
        << d.log();
    std::string delivered;
    ASSERT_TRUE(wait_for(
        [&] {
            delivered = file_in(root_ / "journal", ".pdf");
            return !delivered.empty();
        },
        std::chrono::seconds(30)))
        << d.log();
    EXPECT_EQ(delivered, pdf);
    ASSERT_TRUE(wait_for([&] { return metric(d, "samband_blob_folder_trouble") == 0; },
                         std::chrono::seconds(5)));
    log = d.log();
    EXPECT_EQ(count(log, "store.blob_recovered"), 1u) << log;
    EXPECT_EQ(count(log, "store.blob_alert"), 1u) << log;
    EXPECT_EQ(count(d.get("/metrics").body,
                    "samband_events_in_total{source=\"epj\",type=\"rph.assessment.scored\"} 1"),
              1u);
    auto [code2, status2] = d.cli("status");
    EXPECT_EQ(status2.find("ALERT"), std::string::npos) << status2;
    EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace samband::test
