// The http plugin's sink in the real daemon against a vendor receiver written in Node (node:http):
// retries keep the Idempotency-Key, the HMAC signature verifies independently, a 4xx is final,
// and OAuth2 client credentials against a Node token endpoint.
#include "harness.hpp"

#include <samband_test/tools.hpp>

#include <rapidjson/document.h>

#include <signal.h>
#include <sys/wait.h>
#include <chrono>
#include <memory>
#include <random>

namespace samband::test {
namespace {

// The receiver as a child process; its port from its first line.
class receiver {
public:
    receiver(const fs::path& record, const fs::path& secret, const std::string& plan)
        : receiver("receiver.js", {record.string(), secret.string(), plan}) {}
    receiver(const std::string& script_name, std::vector<std::string> args) {
        int out[2];
        if (pipe(out) != 0) return;
        pid_ = fork();
        if (pid_ == 0) {
            dup2(out[1], 1);
            close(out[0]);
            std::string script = source_dir() + "/plugins/http/tests/" + script_name;
            std::vector<char*> argv{const_cast<char*>("node"), script.data()};
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            execvp("node", argv.data());
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
    for_each_json_line(p, [&](const rapidjson::Document& d) {
        out.push_back({d["key"].GetString(), d["signed"].GetBool(), d["status"].GetInt()});
    });
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

    void configure(int port, const std::string& key_file, int timeout_ms = 5000,
                   const std::string& auth = R"({"kind": "hmac", "secret": "vendor-hmac"})",
                   const std::string& scheme = "http", const std::string& vendor_extra = "",
                   const std::string& secrets_extra = "", const std::string& host = "127.0.0.1") {
        write_file(root_ / "samband.json",
                   config_head("it-http") + R"(  "secrets": {"vendor-hmac": {"file": ")" +
                       (root_ / key_file).string() + R"("})" + secrets_extra + R"(},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "vendor": {"plugin": "http", "config": {
      "url": ")" + scheme +
                       R"(://)" + host + ":" + std::to_string(port) +
                       R"(/hooks/samband", "timeout_ms": )" + std::to_string(timeout_ms) + R"(,
      "auth": )" + auth +
                       vendor_extra + R"(},
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

    // A receiver answering `plan` (receiver.js, keyed with hmac.key), the daemon configured for
    // it with `key_file` and started, and one event dropped into its inbox. `started` is false,
    // with the failure recorded, when the receiver or the daemon did not start.
    struct one_event {
        std::unique_ptr<receiver> rx;
        std::unique_ptr<daemon_process> d;  // declared after rx: stopped before it
        std::chrono::steady_clock::time_point dropped_at;
        bool started = false;
    };
    one_event send_one(const std::string& plan, const std::string& key_file = "hmac.key",
                       int timeout_ms = 5000) {
        one_event s;
        s.rx = std::make_unique<receiver>(root_ / "seen.jsonl", root_ / "hmac.key", plan);
        if (s.rx->port() <= 0) {
            ADD_FAILURE() << "the test receiver did not start";
            return s;
        }
        configure(s.rx->port(), key_file, timeout_ms);
        s.d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
        if (!s.d->start()) {
            ADD_FAILURE() << s.d->log();
            return s;
        }
        s.dropped_at = std::chrono::steady_clock::now();
        drop_file(root_ / "inbox", "e1.json", kEvent);
        s.started = true;
        return s;
    }

    // The receiver answers `plan` (a status with a Retry-After that fits, then 200): the delivery
    // is delivered in one attempt, by two requests with one Idempotency-Key.
    void waited_out_within_one_attempt(const std::string& plan, int first_status) {
        auto s = send_one(plan);
        ASSERT_TRUE(s.started);
        auto rows = delivery_in(*s.d, "delivered");
        ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << s.d->log();
        EXPECT_EQ(rows[0]["attempts"].GetInt64(), 1) << s.d->log();
        auto reqs = seen(root_ / "seen.jsonl");
        ASSERT_EQ(reqs.size(), 2u);
        EXPECT_EQ(reqs[0].status, first_status);
        EXPECT_EQ(reqs[1].status, 200);
        EXPECT_EQ(reqs[0].key, reqs[1].key);
    }

    temp_dir tmp_;
    fs::path root_;
};

// Plain http goes only to this machine (127.0.0.1, localhost, [::1]) unless "allow_plain_http";
// anywhere else the endpoint is refused at start (the daemon skips it, logging why and naming the
// setting). Port 9: nothing is sent here.
TEST_F(http_sink_test, plain_http_is_taken_only_to_this_machine) {
    int n = 0;
    auto start_with = [&](const std::string& host) {
        const fs::path dir = root_ / ("case-" + std::to_string(++n));
        fs::create_directories(dir);
        configure(9, "hmac.key", 5000, R"({"kind": "hmac", "secret": "vendor-hmac"})", "http", "",
                  "", host);
        fs::copy_file(root_ / "samband.json", dir / "samband.json");
        daemon_process d(dir / "samband.json", dir);
        EXPECT_TRUE(d.start()) << host;
        return read_file(dir / "daemon.log");
    };
    for (const std::string host : {"127.0.0.1", "localhost", "[::1]"}) {
        const std::string log = start_with(host);
        EXPECT_NE(log.find("step=plugin.create endpoint=vendor plugin=http"), std::string::npos)
            << host << ": " << log;
        EXPECT_EQ(log.find("endpoint skipped"), std::string::npos) << host << ": " << log;
    }
    for (const std::string host : {"192.0.2.1", "[2001:db8::1]", "[::2]"}) {
        const std::string log = start_with(host);
        EXPECT_NE(log.find("endpoint=vendor"), std::string::npos) << host << ": " << log;
        EXPECT_NE(log.find("endpoint skipped"), std::string::npos) << host << ": " << log;
        EXPECT_NE(log.find("must be https:// (plain http only to this machine"), std::string::npos)
            << host << ": " << log;
    }
}

TEST_F(http_sink_test, two_503s_then_200_is_delivered_once_with_one_key) {
    auto s = send_one("503,503,200");
    ASSERT_TRUE(s.started);
    auto rows = delivery_in(*s.d, "delivered");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << s.d->log();
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
    EXPECT_EQ(s.d->stop(), 0);
    EXPECT_EQ(seen(root_ / "seen.jsonl").size(), 3u);  // nothing sent after the 200
}

TEST_F(http_sink_test, a_429_with_retry_after_is_waited_out_within_the_attempt) {
    waited_out_within_one_attempt("429,200", 429);  // Retry-After: 1 fits in the attempt
}

// Retry-After as an HTTP date (RFC 9110 §10.2.3) is honoured like delta-seconds: the 503 is waited
// out within the same attempt (before, only digits were read and the delivery went to a retry).
TEST_F(http_sink_test, a_503_with_an_http_date_retry_after_is_waited_out_within_the_attempt) {
    waited_out_within_one_attempt("503d,200", 503);
}

TEST_F(http_sink_test, a_receiver_that_never_answers_times_out_and_is_retried_with_the_same_key) {
    auto s = send_one("0,200", "hmac.key", 600);
    ASSERT_TRUE(s.started);
    auto rows = delivery_in(*s.d, "delivered");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << s.d->log();
    // The plugin's own 600 ms deadline ended the first attempt, not the host's 10 s one.
    EXPECT_LT(std::chrono::steady_clock::now() - s.dropped_at, std::chrono::seconds(8));
    EXPECT_EQ(rows[0]["attempts"].GetInt64(), 2);
    auto reqs = seen(root_ / "seen.jsonl");
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_EQ(reqs[0].status, 0);
    EXPECT_EQ(reqs[1].status, 200);
    EXPECT_EQ(reqs[0].key, reqs[1].key);
    EXPECT_NE(s.d->log().find("within 600 ms"), std::string::npos) << s.d->log();
}

TEST_F(http_sink_test, a_4xx_is_final_with_the_receivers_text) {
    auto s = send_one("422");
    ASSERT_TRUE(s.started);
    auto rows = delivery_in(*s.d, "dead");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << s.d->log();
    EXPECT_EQ(rows[0]["attempts"].GetInt64(), 1);
    EXPECT_NE(std::string(rows[0]["reason"].GetString())
                  .find("HTTP 422: field subject.fnr: unknown patient"),
              std::string::npos)
        << rows[0]["reason"].GetString();
    EXPECT_EQ(seen(root_ / "seen.jsonl").size(), 1u);
}

TEST_F(http_sink_test, a_wrong_key_is_refused_by_the_receiver_and_dead) {
    write_file(root_ / "other.key", "not-the-vendors-key\n");
    auto s = send_one("200", "other.key");
    ASSERT_TRUE(s.started);
    auto rows = delivery_in(*s.d, "dead");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << s.d->log();
    EXPECT_NE(std::string(rows[0]["reason"].GetString()).find("HTTP 401"), std::string::npos);
    auto reqs = seen(root_ / "seen.jsonl");
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_FALSE(reqs[0].signed_ok);
}

// One line of the OAuth2 receiver's record.
struct oauth_seen {
    std::string path, key, token;
    bool ok = false;
};

std::vector<oauth_seen> oauth_record(const fs::path& p) {
    std::vector<oauth_seen> out;
    for_each_json_line(p, [&](const rapidjson::Document& d) {
        oauth_seen s;
        s.path = d["path"].GetString();
        s.ok = d["ok"].GetBool();
        if (d.HasMember("key")) s.key = d["key"].GetString();
        if (d.HasMember("token")) s.token = d["token"].GetString();
        out.push_back(s);
    });
    return out;
}

// The token endpoint is asked once, the token is used until the receiver revokes it (after two
// uses here), then one new token is fetched and the refused request sent again with the same key.
TEST_F(http_sink_test, oauth2_client_credentials_token_is_fetched_cached_and_renewed_on_401) {
    // A client secret with characters that must be form-encoded in HTTP Basic (RFC 6749 2.3.1).
    std::mt19937_64 rng(std::random_device{}());
    write_file(root_ / "client.secret", "s3cr:t+/" + std::to_string(rng()) + "\n");
    receiver rx("oauth_receiver.js", {(root_ / "seen.jsonl").string(), "samband-test",
                                      (root_ / "client.secret").string(), "2"});
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "client.secret", 5000,
              R"({"kind": "oauth2", "secret": "vendor-hmac", "client_id": "samband-test",
                  "scope": "webhooks", "token_url": "http://127.0.0.1:)" +
                  std::to_string(rx.port()) + R"(/token"})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    // Three events, one after another: tokens 1, 1, then 1 is refused, token 2.
    for (int i = 1; i <= 3; ++i) {
        std::string ev = kEvent;
        ev.replace(ev.find("it-http-1"), 9, "it-http-" + std::to_string(i));
        drop_file(root_ / "inbox", "e" + std::to_string(i) + ".json", ev);
        ASSERT_TRUE(wait_for(
            [&] {
                auto r = d.get("/api/v1/deliveries?destination=vendor&state=delivered");
                rapidjson::Document rows;
                rows.Parse(r.body.c_str());
                return rows.IsArray() && rows.Size() == static_cast<rapidjson::SizeType>(i);
            },
            std::chrono::seconds(30)))
            << "event " << i << "\n"
            << d.log();
    }
    auto reqs = oauth_record(root_ / "seen.jsonl");
    std::vector<oauth_seen> token_reqs, hooks;
    for (auto& r : reqs) (r.path == "/token" ? token_reqs : hooks).push_back(r);
    ASSERT_EQ(token_reqs.size(), 2u) << read_file(root_ / "seen.jsonl");
    for (auto& t : token_reqs) EXPECT_TRUE(t.ok) << read_file(root_ / "seen.jsonl");
    ASSERT_EQ(hooks.size(), 4u) << read_file(root_ / "seen.jsonl");
    EXPECT_TRUE(hooks[0].ok && hooks[1].ok && hooks[3].ok);
    EXPECT_FALSE(hooks[2].ok);                  // the revoked token
    EXPECT_EQ(hooks[0].token, hooks[2].token);  // cached: one token for the first three
    EXPECT_NE(hooks[3].token, hooks[2].token);  // renewed
    EXPECT_EQ(hooks[3].key, hooks[2].key);      // the same delivery, the same key
    EXPECT_NE(hooks[0].key, hooks[1].key);
    EXPECT_EQ(d.stop(), 0);
}

// A wrong client secret: the token endpoint says 401, nothing reaches the webhook, and the
// delivery is retried (not dead: the operator fixes the secret) with the token endpoint's answer.
TEST_F(http_sink_test, oauth2_wrong_client_secret_is_retried_naming_the_token_endpoint) {
    write_file(root_ / "client.secret", "right\n");
    write_file(root_ / "wrong.secret", "wrong\n");
    receiver rx("oauth_receiver.js", {(root_ / "seen.jsonl").string(), "samband-test",
                                      (root_ / "client.secret").string(), "0"});
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "wrong.secret", 5000,
              R"({"kind": "oauth2", "secret": "vendor-hmac", "client_id": "samband-test",
                  "token_url": "http://127.0.0.1:)" +
                  std::to_string(rx.port()) + R"(/token"})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    std::string reason;
    ASSERT_TRUE(wait_for(
        [&] {
            auto r = d.get("/api/v1/deliveries?destination=vendor");
            rapidjson::Document rows;
            rows.Parse(r.body.c_str());
            if (!rows.IsArray() || rows.Size() != 1 || !rows[0].HasMember("reason") ||
                !rows[0]["reason"].IsString() || rows[0]["reason"].GetStringLength() == 0)
                return false;
            reason = rows[0]["reason"].GetString();
            // Retried: the token endpoint asked again (the attempt counter moves at the claim,
            // before the request, so the receiver's record is what shows the second try).
            return oauth_record(root_ / "seen.jsonl").size() >= 2;
        },
        std::chrono::seconds(30)))
        << d.log();
    EXPECT_NE(
        reason.find("OAuth2 token endpoint 127.0.0.1: HTTP 401: {\"error\":\"invalid_client\"}"),
        std::string::npos)
        << reason;
    auto reqs = oauth_record(root_ / "seen.jsonl");
    ASSERT_GE(reqs.size(), 2u);
    for (auto& r : reqs) {
        EXPECT_EQ(r.path, "/token");  // the webhook never called
        EXPECT_FALSE(r.ok);
    }
    EXPECT_EQ(d.stop(), 0);
}

// A throwaway CA, a server certificate for 127.0.0.1 and a client certificate signed by the CA, in
// `dir` (ca.pem, server.pem/key, client.pem/key), for the mutual TLS receiver.
void make_certificates(const fs::path& dir) {
    fs::create_directories(dir);
    write_file(dir / "san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    auto [rc, out] = run_command(
        "(cd " + dir.string() +
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key"
        " -out ca.pem -days 1 -subj /CN=test-ca"
        " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key"
        " -out server.csr -subj /CN=localhost"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        " -out server.pem -days 1 -extfile san.ext"
        " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key"
        " -out client.csr -subj /CN=samband"
        " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        " -out client.pem -days 1) 2>&1");
    ASSERT_EQ(rc, 0) << out;
}

// Mutual TLS: the receiver (node:https) requires a client certificate signed by its CA. The sink
// shows its certificate (from a file) with its key (from a host secret): delivered, once.
TEST_F(http_sink_test, mutual_tls_with_the_client_certificate_is_delivered) {
    SAMBAND_REQUIRE_TOOL("openssl");
    fs::path dir = root_ / "tls";
    ASSERT_NO_FATAL_FAILURE(make_certificates(dir));
    receiver rx("receiver.js", {(root_ / "seen.jsonl").string(), (root_ / "hmac.key").string(),
                                "200", dir.string()});
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "hmac.key", 5000, R"({"kind": "hmac", "secret": "vendor-hmac"})", "https",
              R"(, "ca_file": ")" + (dir / "ca.pem").string() + R"(", "client_cert": {"file": ")" +
                  (dir / "client.pem").string() +
                  R"("}, "client_key": {"secret": "vendor-tls-key"})",
              R"(, "vendor-tls-key": {"file": ")" + (dir / "client.key").string() + R"("})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    auto rows = delivery_in(d, "delivered");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << d.log();
    EXPECT_EQ(rows[0]["attempts"].GetInt64(), 1);
    auto reqs = seen(root_ / "seen.jsonl");
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_EQ(reqs[0].status, 200);
    EXPECT_TRUE(reqs[0].signed_ok);
    EXPECT_EQ(d.stop(), 0);
}

// Without a client certificate the receiver refuses the TLS session: nothing reaches it, and the
// delivery is retried with a reason that names TLS and the missing client certificate.
TEST_F(http_sink_test, mutual_tls_without_a_client_certificate_is_retried_naming_tls) {
    SAMBAND_REQUIRE_TOOL("openssl");
    fs::path dir = root_ / "tls";
    ASSERT_NO_FATAL_FAILURE(make_certificates(dir));
    receiver rx("receiver.js", {(root_ / "seen.jsonl").string(), (root_ / "hmac.key").string(),
                                "200", dir.string()});
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "hmac.key", 5000, R"({"kind": "hmac", "secret": "vendor-hmac"})", "https",
              R"(, "ca_file": ")" + (dir / "ca.pem").string() + R"(")");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    std::string reason;
    std::int64_t attempts = 0;
    ASSERT_TRUE(wait_for(
        [&] {
            auto r = d.get("/api/v1/deliveries?destination=vendor");
            rapidjson::Document rows;
            rows.Parse(r.body.c_str());
            if (!rows.IsArray() || rows.Size() != 1 || !rows[0].HasMember("reason") ||
                !rows[0]["reason"].IsString())
                return false;
            reason = rows[0]["reason"].GetString();
            attempts = rows[0]["attempts"].GetInt64();
            return attempts >= 2 && !reason.empty();
        },
        std::chrono::seconds(30)))
        << d.log();
    EXPECT_NE(reason.find("TLS with 127.0.0.1:" + std::to_string(rx.port()) + " failed"),
              std::string::npos)
        << reason;
    EXPECT_NE(reason.find("client certificate"), std::string::npos) << reason;
    EXPECT_NE(reason.find("\"client_cert\""), std::string::npos) << reason;
    EXPECT_TRUE(seen(root_ / "seen.jsonl").empty());  // no request got past the handshake
    EXPECT_EQ(d.stop(), 0);
}

// Bearer authentication: the token from the host's secret, checked by the receiver itself.
TEST_F(http_sink_test, a_bearer_token_from_a_secret_is_sent) {
    receiver rx("receiver.js", {(root_ / "seen.jsonl").string(), (root_ / "hmac.key").string(),
                                "200", "", "bearer"});
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "hmac.key", 5000, R"({"kind": "bearer", "secret": "vendor-hmac"})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    auto rows = delivery_in(d, "delivered");
    ASSERT_TRUE(rows.IsArray() && rows.Size() == 1) << d.log();
    auto reqs = seen(root_ / "seen.jsonl");
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_TRUE(reqs[0].signed_ok);  // the receiver's own check of the Authorization header
    EXPECT_EQ(reqs[0].status, 200);
}

// TLS is verified: a vendor whose certificate no trusted CA signed (here the test's own CA, not
// given as ca_file) is refused in the handshake, retried with a reason naming TLS.
TEST_F(http_sink_test, an_untrusted_server_certificate_is_refused_naming_tls) {
    SAMBAND_REQUIRE_TOOL("openssl");
    fs::path dir = root_ / "tls";
    ASSERT_NO_FATAL_FAILURE(make_certificates(dir));
    receiver rx("receiver.js", {(root_ / "seen.jsonl").string(), (root_ / "hmac.key").string(),
                                "200", dir.string()});
    ASSERT_GT(rx.port(), 0);
    configure(rx.port(), "hmac.key", 5000, R"({"kind": "hmac", "secret": "vendor-hmac"})", "https",
              R"(, "client_cert": {"file": ")" + (dir / "client.pem").string() +
                  R"("}, "client_key": {"file": ")" + (dir / "client.key").string() + R"("})");
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root_ / "inbox", "e1.json", kEvent);
    std::string reason;
    ASSERT_TRUE(wait_for(
        [&] {
            auto r = d.get("/api/v1/deliveries?destination=vendor");
            rapidjson::Document rows;
            rows.Parse(r.body.c_str());
            if (!rows.IsArray() || rows.Size() != 1 || !rows[0].HasMember("reason") ||
                !rows[0]["reason"].IsString())
                return false;
            reason = rows[0]["reason"].GetString();
            return rows[0]["attempts"].GetInt64() >= 2 && !reason.empty();
        },
        std::chrono::seconds(30)))
        << d.log();
    EXPECT_NE(
        reason.find("TLS with 127.0.0.1:" + std::to_string(rx.port()) + " failed (TLS handshake)"),
        std::string::npos)
        << reason;
    EXPECT_NE(reason.find("certificate verify failed"), std::string::npos) << reason;
    EXPECT_TRUE(seen(root_ / "seen.jsonl").empty());
    EXPECT_EQ(d.stop(), 0);
}

}  // namespace
}  // namespace samband::test
