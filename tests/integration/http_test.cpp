// The http plugin's sink in the real daemon against a vendor receiver written in Node (node:http):
// retries keep the Idempotency-Key, the HMAC signature verifies independently, a 4xx is final.
#include "harness.hpp"

#include <samband_test/tools.hpp>

#include <rapidjson/document.h>

#include <signal.h>
#include <sys/wait.h>
#include <random>

namespace samband::test {
namespace {

// The receiver as a child process; its port from its first line.
class receiver {
public:
    receiver(const fs::path& record, const fs::path& secret, const std::string& plan) {
        int out[2];
        if (pipe(out) != 0) return;
        pid_ = fork();
        if (pid_ == 0) {
            dup2(out[1], 1);
            close(out[0]);
            std::string script = source_dir() + "/plugins/http/tests/receiver.js";
            execlp("node", "node", script.c_str(), record.c_str(), secret.c_str(), plan.c_str(),
                   static_cast<char*>(nullptr));
            _exit(127);
        }
        close(out[1]);
        FILE* f = fdopen(out[0], "r");
        char line[128] = {0};
        if (f && fgets(line, sizeof line, f) && std::sscanf(line, "listening %d", &port_) != 1)
            port_ = 0;
        if (f) fclose(f);
    }
    ~receiver() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int st;
            waitpid(pid_, &st, 0);
        }
    }
    int port() const { return port_; }

private:
    pid_t pid_ = -1;
    int port_ = 0;
};

struct request_seen {
    std::string key;
    bool signed_ok = false;
    int status = 0;
};

std::vector<request_seen> seen(const fs::path& p) {
    std::vector<request_seen> out;
    std::istringstream in(read_file(p));
    std::string line;
    while (std::getline(in, line)) {
        rapidjson::Document d;
        d.Parse(line.c_str());
        if (d.HasParseError() || !d.IsObject()) continue;
        out.push_back({d["key"].GetString(), d["signed"].GetBool(), d["status"].GetInt()});
    }
    return out;
}

const char* kEvent =
    R"({"schema":"samband.event/1","type":"rph.assessment.scored","idempotency_key":"it-http-1",)"
    R"("occurred_at":"2026-11-24T10:15:00+01:00","subject":{"fnr":"14839134623"},)"
    R"("data":{"treatment_id":"t-1","instrument":"PHQ-9","score":12,"administered_at":"2026-11-24"}})";

class http_sink_test : public ::testing::Test {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL("node");
        root_ = tmp_.path();
        std::mt19937_64 rng(std::random_device{}());
        write_file(root_ / "hmac.key", std::to_string(rng()) + std::to_string(rng()) + "\n");
    }

    void configure(int port, const std::string& key_file, int timeout_ms = 5000) {
        write_file(root_ / "samband.json", R"({
  "node": {"name": "it-http"},
  "store": {"kind": "sqlite", "path": "var/samband.db", "retention_days": 30},
  "admin": {"listen": "127.0.0.1:0"},
  "log": {"level": "info"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "identifiers": {"allow_synthetic": true},
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "secrets": {"vendor-hmac": {"file": ")" + (root_ / key_file).string() +
                                               R"("}},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "vendor": {"plugin": "http", "config": {
      "url": "http://127.0.0.1:)" + std::to_string(port) +
                                               R"(/hooks/samband", "timeout_ms": )" +
                                               std::to_string(timeout_ms) + R"(,
      "auth": {"kind": "hmac", "secret": "vendor-hmac"}},
      "policy": {"max_attempts": 5, "backoff_base_ms": 100, "backoff_max_ms": 300,
                 "attempt_timeout_ms": 10000, "concurrency": 2}}
  },
  "routes": [{"name": "to-vendor", "match": {"type": "rph.*", "source": "epj"}, "to": ["vendor"]}]
})");
    }

    // The one delivery to the vendor, once it reached `state`.
    rapidjson::Document delivery_in(daemon_process& d, const std::string& state) {
        rapidjson::Document out;
        wait_for(
            [&] {
                auto r = d.get("/api/v1/deliveries?destination=vendor&state=" + state);
                out.Parse(r.body.c_str());
                return r.status == 200 && out.IsArray() && out.Size() == 1;
            },
            std::chrono::seconds(30));
        return out;
    }

    temp_dir tmp_;
    fs::path root_;
};

TEST_F(http_sink_test, two_503s_then_200_is_delivered_once_with_one_key) {
    receiver rx(root_ / "seen.jsonl", root_ / "hmac.key", "503,503,200");
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "hmac.key");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    auto rows = delivery_in(d, "delivered");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << d.log();
    EXPECT_EQ(rows[0]["attempts"].GetInt64(), 3);
    auto reqs = seen(root_ / "seen.jsonl");
    ASSERT_EQ(reqs.size(), 3u);
    EXPECT_EQ(reqs[0].status, 503);
    EXPECT_EQ(reqs[1].status, 503);
    EXPECT_EQ(reqs[2].status, 200);
    for (const auto& r : reqs) {
        EXPECT_TRUE(r.signed_ok);
        EXPECT_EQ(r.key, reqs[0].key);
    }
    EXPECT_FALSE(reqs[0].key.empty());
    EXPECT_EQ(d.stop(), 0);
    EXPECT_EQ(seen(root_ / "seen.jsonl").size(), 3u);  // nothing sent after the 200
}

TEST_F(http_sink_test, a_429_with_retry_after_is_waited_out_within_the_attempt) {
    receiver rx(root_ / "seen.jsonl", root_ / "hmac.key", "429,200");
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "hmac.key");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    auto rows = delivery_in(d, "delivered");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << d.log();
    EXPECT_EQ(rows[0]["attempts"].GetInt64(), 1);  // Retry-After: 1 fits in the attempt
    auto reqs = seen(root_ / "seen.jsonl");
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_EQ(reqs[0].status, 429);
    EXPECT_EQ(reqs[1].status, 200);
    EXPECT_EQ(reqs[0].key, reqs[1].key);
}

TEST_F(http_sink_test, a_receiver_that_never_answers_times_out_and_is_retried_with_the_same_key) {
    receiver rx(root_ / "seen.jsonl", root_ / "hmac.key", "0,200");
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "hmac.key", 600);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    auto t0 = std::chrono::steady_clock::now();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    auto rows = delivery_in(d, "delivered");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << d.log();
    // The plugin's own 600 ms deadline ended the first attempt, not the host's 10 s one.
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(8));
    EXPECT_EQ(rows[0]["attempts"].GetInt64(), 2);
    auto reqs = seen(root_ / "seen.jsonl");
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_EQ(reqs[0].status, 0);
    EXPECT_EQ(reqs[1].status, 200);
    EXPECT_EQ(reqs[0].key, reqs[1].key);
    EXPECT_NE(d.log().find("within 600 ms"), std::string::npos) << d.log();
}

TEST_F(http_sink_test, a_4xx_is_final_with_the_receivers_text) {
    receiver rx(root_ / "seen.jsonl", root_ / "hmac.key", "422");
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "hmac.key");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    auto rows = delivery_in(d, "dead");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << d.log();
    EXPECT_EQ(rows[0]["attempts"].GetInt64(), 1);
    EXPECT_NE(std::string(rows[0]["reason"].GetString())
                  .find("HTTP 422: field subject.fnr: unknown patient"),
              std::string::npos)
        << rows[0]["reason"].GetString();
    EXPECT_EQ(seen(root_ / "seen.jsonl").size(), 1u);
}

TEST_F(http_sink_test, a_wrong_key_is_refused_by_the_receiver_and_dead) {
    receiver rx(root_ / "seen.jsonl", root_ / "hmac.key", "200");
    ASSERT_GT(rx.port(), 0);
    write_file(root_ / "other.key", "not-the-vendors-key\n");
    configure(rx.port(), "other.key");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    auto rows = delivery_in(d, "dead");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << d.log();
    EXPECT_NE(std::string(rows[0]["reason"].GetString()).find("HTTP 401"), std::string::npos);
    auto reqs = seen(root_ / "seen.jsonl");
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_FALSE(reqs[0].signed_ok);
}

}  // namespace
}  // namespace samband::test
