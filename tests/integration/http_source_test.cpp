// The http plugin's source in the real daemon, driven by independent clients: curl (bearer
// token, hostile inputs, TLS) and a Node vendor client (node:http) that signs with HMAC itself.
#include "harness.hpp"

#include <samband_test/tools.hpp>

#include <rapidjson/document.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <random>

namespace samband::test {
namespace {

// A vendor's own JSON, mapped to rph.treatment.started by the config below.
const char* kVendorBody = R"({
  "eventId": "acme-0001", "at": "2026-11-02T09:00:00+01:00",
  "patient": {"ssn": "14839134623"},
  "episode": {"id": "ACME-E-1", "reason": "Angst og søvnvansker",
              "assessment": "Kartleggingssamtale", "offer": ["individuell"],
              "goals": ["Sove bedre"], "consent": "given"},
  "clinician": {"first": "Kari", "last": "Nordmann", "hpr": "1234567"}
})";

const char* kEnvelope =
    R"({"schema":"samband.event/1","type":"rph.assessment.scored",)"
    R"("occurred_at":"2026-11-24T10:15:00+01:00","subject":{"fnr":"14839134623"},)"
    R"("data":{"treatment_id":"t-1","instrument":"PHQ-9","score":12,"administered_at":"2026-11-24"}})";

class http_source_test : public ::testing::Test {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL("curl");
        SAMBAND_REQUIRE_TOOL("node");
        root_ = tmp_.path();
        std::mt19937_64 rng(std::random_device{}());
        token_ = std::to_string(rng()) + std::to_string(rng());
        write_file(root_ / "bearer.key", token_ + "\n");
        write_file(root_ / "hmac.key", std::to_string(rng()) + std::to_string(rng()) + "\n");
    }

    void start(const std::string& extra_acme = {}) {
        write_file(root_ / "samband.json", config_head("it-http-source") +
                                               R"(  "secrets": {"acme-token": {"file": ")" +
                                               (root_ / "bearer.key").string() +
                                               R"("},
              "epj-hmac": {"file": ")" + (root_ / "hmac.key").string() +
                                               R"("}},
  "endpoints": {
    "acme": {"plugin": "http", "config": {
      "listen": "127.0.0.1:0", "port_file": "acme.port",
      "auth": {"kind": "bearer", "secret": "acme-token"},
      "max_body_bytes": 65536, "max_header_bytes": 8192, "request_timeout_ms": 800,)" +
                                               extra_acme + R"(
      "mappings": [{
        "path": "/v1/acme/treatment-started", "type": "rph.treatment.started",
        "idempotency_key": "/eventId", "occurred_at": "/at",
        "fields": {
          "/subject/fnr": "/patient/ssn",
          "/data/treatment_id": "/episode/id",
          "/data/reason_for_contact": "/episode/reason",
          "/data/assessment/summary": "/episode/assessment",
          "/data/offer": "/episode/offer",
          "/data/goals": "/episode/goals",
          "/data/therapist/given_name": "/clinician/first",
          "/data/therapist/family_name": "/clinician/last",
          "/data/therapist/hpr": "/clinician/hpr",
          "/data/consent_gp": "/episode/consent"
        }}]}},
    "epj": {"plugin": "http", "config": {
      "listen": "127.0.0.1:0", "port_file": "epj.port",
      "auth": {"kind": "hmac", "secret": "epj-hmac"}}},
    "out": {"plugin": "file", "config": {"outbox": "outbox"}}
  },
  "routes": [{"name": "all", "match": {"type": "rph.*"}, "to": ["out"]}]
})");
        d_ = std::make_unique<daemon_process>(root_ / "samband.json", root_);
        ASSERT_TRUE(d_->start()) << d_->log();
        ASSERT_TRUE(wait_for(
            [&] { return fs::exists(root_ / "acme.port") && fs::exists(root_ / "epj.port"); },
            std::chrono::seconds(10)));
        acme_ = "http://127.0.0.1:" + trim(read_file(root_ / "acme.port"));
        epj_ = "http://127.0.0.1:" + trim(read_file(root_ / "epj.port"));
    }

    static std::string trim(std::string s) {
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
        return s;
    }

    // curl: returns "STATUS BODY".
    std::string curl(const std::string& url, const std::string& body_file,
                     const std::string& headers) {
        // curl leaves the output file alone when no answer comes: a stale body (an event id
        // holding "202") must not be read as this request's answer.
        fs::remove(root_ / "resp");
        auto [rc, out] = run_command("curl -sS -o " + (root_ / "resp").string() +
                                     " -w '%{http_code}' -X POST -H 'Content-Type: "
                                     "application/json' " +
                                     headers + " --data-binary @" + body_file + " '" + url + "'");
        return out + " " + (fs::exists(root_ / "resp") ? read_file(root_ / "resp") : "");
    }
    std::string bearer() const { return "-H 'Authorization: Bearer " + token_ + "'"; }

    std::string node(const std::string& path, const std::string& body, const std::string& sig,
                     const std::string& key = {}) {
        write_file(root_ / "node-body.json", body);
        auto [rc, out] = run_command("node " + source_dir() + "/plugins/http/tests/sender.js '" +
                                     epj_ + path + "' " + (root_ / "hmac.key").string() + " " +
                                     (root_ / "node-body.json").string() + " " + sig + " " + key);
        return trim(out);
    }

    // Stored events: one delivery to "out" each (in any state).
    std::size_t stored() {
        auto r = d_->get("/api/v1/deliveries?destination=out&limit=100");
        rapidjson::Document d;
        d.Parse(r.body.c_str());
        return d.IsArray() ? d.Size() : 999;
    }

    std::string errors() { return d_->get("/api/v1/errors?limit=100").body; }

    temp_dir tmp_;
    fs::path root_;
    std::string token_, acme_, epj_;
    std::unique_ptr<daemon_process> d_;
};

TEST_F(http_source_test, vendor_json_becomes_rph_treatment_started_and_202_comes_after_commit) {
    start();
    write_file(root_ / "vendor.json", kVendorBody);
    std::string r =
        curl(acme_ + "/v1/acme/treatment-started", (root_ / "vendor.json").string(), bearer());
    ASSERT_EQ(r.substr(0, 4), "202 ") << r << d_->log();
    EXPECT_NE(r.find("\"duplicate\":false"), std::string::npos) << r;
    EXPECT_EQ(stored(), 1u);  // committed before the 202, so already here
    // The file sink writes a hidden temporary file and renames it: read only the finished one.
    std::string written;
    ASSERT_TRUE(wait_for(
        [&] {
            std::error_code ec;
            written.clear();
            for (const auto& e : fs::recursive_directory_iterator(root_ / "outbox", ec))
                if (e.is_regular_file() && e.path().filename().string().front() != '.')
                    written += read_file(e.path());
            return !written.empty();
        },
        std::chrono::seconds(10)))
        << d_->log();
    rapidjson::Document ev;
    ev.Parse(written.c_str());
    ASSERT_TRUE(ev.IsObject()) << written;
    const rapidjson::Value& env = ev.HasMember("envelope") ? ev["envelope"] : ev;
    EXPECT_STREQ(env["type"].GetString(), "rph.treatment.started");
    EXPECT_STREQ(env["idempotency_key"].GetString(), "acme-0001");
    EXPECT_STREQ(env["data"]["treatment_id"].GetString(), "ACME-E-1");
    EXPECT_STREQ(env["data"]["therapist"]["hpr"].GetString(), "1234567");
    EXPECT_STREQ(env["data"]["reason_for_contact"].GetString(), "Angst og søvnvansker");
    EXPECT_EQ(d_->stop(), 0) << d_->log();
}

TEST_F(http_source_test, the_same_idempotency_key_twice_is_stored_once) {
    start();
    write_file(root_ / "vendor.json", kVendorBody);
    std::string a = curl(acme_ + "/v1/acme/treatment-started", (root_ / "vendor.json").string(),
                         bearer() + " -H 'Idempotency-Key: k-42'");
    std::string b = curl(acme_ + "/v1/acme/treatment-started", (root_ / "vendor.json").string(),
                         bearer() + " -H 'Idempotency-Key: k-42'");
    ASSERT_EQ(a.substr(0, 4), "202 ") << a;
    ASSERT_EQ(b.substr(0, 4), "202 ") << b;
    EXPECT_NE(b.find("\"duplicate\":true"), std::string::npos) << b;
    EXPECT_EQ(stored(), 1u);
    // The Node client's envelope, twice with one key: once.
    EXPECT_EQ(node("/v1/events", kEnvelope, "good", "n-1").substr(0, 4), "202 ");
    std::string again = node("/v1/events", kEnvelope, "good", "n-1");
    EXPECT_EQ(again.substr(0, 4), "202 ") << again;
    EXPECT_NE(again.find("\"duplicate\":true"), std::string::npos) << again;
    EXPECT_EQ(stored(), 2u);
}

TEST_F(http_source_test, a_missing_or_wrong_signature_is_401_and_nothing_is_stored) {
    start();
    std::string none = node("/v1/events", kEnvelope, "none", "s-1");
    EXPECT_EQ(none, "401 {\"error\":\"no X-Samband-Signature header (HMAC signature)\"}");
    std::string wrong = node("/v1/events", kEnvelope, "wrong", "s-1");
    EXPECT_EQ(wrong, "401 {\"error\":\"the signature is wrong\"}");
    write_file(root_ / "vendor.json", kVendorBody);
    std::string no_token =
        curl(acme_ + "/v1/acme/treatment-started", (root_ / "vendor.json").string(), "");
    EXPECT_EQ(no_token.substr(0, 4), "401 ") << no_token;
    std::string bad_token =
        curl(acme_ + "/v1/acme/treatment-started", (root_ / "vendor.json").string(),
             "-H 'Authorization: Bearer " + token_ + "0'");
    EXPECT_EQ(bad_token, "401 {\"error\":\"the bearer token is wrong\"}\n");
    EXPECT_EQ(stored(), 0u);
    EXPECT_EQ(errors(), "[]");  // not even kept as an error: it was not the vendor
    // And the right signature is taken.
    EXPECT_EQ(node("/v1/events", kEnvelope, "good", "s-1").substr(0, 4), "202 ");
    EXPECT_EQ(stored(), 1u);
}

TEST_F(http_source_test, bodies_that_cannot_become_events_are_422_naming_the_field_and_kept) {
    start();
    write_file(root_ / "partial.json", R"({"eventId":"acme-2","at":"2026-11-02T09:00:00Z",
        "patient":{},"episode":{"id":"E"}})");
    std::string r =
        curl(acme_ + "/v1/acme/treatment-started", (root_ / "partial.json").string(), bearer());
    EXPECT_EQ(r, "422 {\"error\":\"field /patient/ssn (for /subject/fnr) is missing\"}\n");
    // Mapped, but the host's schema refuses it: the reason names the envelope's field.
    std::string body(kVendorBody);
    body.replace(body.find("\"individuell\""), 13, "\"sofa\"");
    write_file(root_ / "badoffer.json", body);
    std::string s =
        curl(acme_ + "/v1/acme/treatment-started", (root_ / "badoffer.json").string(), bearer());
    EXPECT_EQ(s.substr(0, 4), "422 ") << s;
    EXPECT_NE(s.find("offer"), std::string::npos) << s;
    // Binary junk to the envelope endpoint.
    write_file(root_ / "junk.bin", std::string("\x00\xff\xfe junk \x01\x02", 12));
    std::string j = node("/v1/events", read_file(root_ / "junk.bin"), "good", "j-1");
    EXPECT_EQ(j.substr(0, 4), "422 ") << j;
    EXPECT_NE(j.find("the body is not JSON"), std::string::npos) << j;
    EXPECT_EQ(stored(), 0u);
    std::string errs = errors();
    EXPECT_NE(errs.find("field /patient/ssn (for /subject/fnr) is missing"), std::string::npos)
        << errs;
    EXPECT_NE(errs.find("the body is not JSON"), std::string::npos) << errs;
}

TEST_F(http_source_test, hostile_requests_are_refused_with_a_reason) {
    start();
    write_file(root_ / "big.json", "{\"a\":\"" + std::string(100 * 1024, 'x') + "\"}");
    std::string big =
        curl(acme_ + "/v1/acme/treatment-started", (root_ / "big.json").string(), bearer());
    EXPECT_EQ(big, "413 {\"error\":\"the body is larger than 65536 bytes (max_body_bytes)\"}\n");
    write_file(root_ / "small.json", "{}");
    std::string fat = curl(acme_ + "/v1/acme/treatment-started", (root_ / "small.json").string(),
                           bearer() + " -H 'X-Pad: " + std::string(10000, 'p') + "'");
    EXPECT_EQ(fat,
              "431 {\"error\":\"the headers are larger than 8192 bytes (max_header_bytes)\"}\n");
    std::string nowhere = curl(acme_ + "/v1/nothing", (root_ / "small.json").string(), bearer());
    EXPECT_EQ(nowhere, "404 {\"error\":\"no endpoint at /v1/nothing\"}\n");

    // A slow sender: half a request, then nothing. 408 after request_timeout_ms (800), closed.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(acme_.substr(acme_.rfind(':') + 1))));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string half = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ty";
    ASSERT_EQ(::send(fd, half.data(), half.size(), 0), static_cast<ssize_t>(half.size()));
    auto t0 = std::chrono::steady_clock::now();
    std::string got;
    char buf[4096];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;  // closed by the server (or the 5 s guard)
        got.append(buf, static_cast<std::size_t>(n));
    }
    auto waited = std::chrono::steady_clock::now() - t0;
    ::close(fd);
    EXPECT_EQ(got.rfind("HTTP/1.1 408", 0), 0u) << got;
    EXPECT_NE(got.find("the request did not arrive within 800 ms"), std::string::npos) << got;
    EXPECT_LT(waited, std::chrono::seconds(4));

    // A 1 GB body: refused by its Content-Length with 413 after the headers, before the body is
    // read (only 64 KB of it is ever sent; the answer comes long before a gigabyte could).
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string gig = std::string("POST /v1/acme/treatment-started HTTP/1.1\r\nHost: x\r\n") +
                      "Authorization: Bearer " + token_ +
                      "\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n" +
                      std::string(64 * 1024, ' ');
    t0 = std::chrono::steady_clock::now();
    (void)::send(fd, gig.data(), gig.size(), MSG_NOSIGNAL);  // the server may close midway
    got.clear();
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    waited = std::chrono::steady_clock::now() - t0;
    ::close(fd);
    EXPECT_EQ(got.rfind("HTTP/1.1 413", 0), 0u) << got;
    EXPECT_NE(got.find("the body is larger than 65536 bytes (max_body_bytes)"), std::string::npos)
        << got;
    EXPECT_LT(waited, std::chrono::seconds(4));
    EXPECT_EQ(stored(), 0u);
    // Still serving.
    write_file(root_ / "vendor.json", kVendorBody);
    EXPECT_EQ(curl(acme_ + "/v1/acme/treatment-started", (root_ / "vendor.json").string(), bearer())
                  .substr(0, 4),
              "202 ");
}

TEST_F(http_source_test, https_with_client_certificates_takes_only_known_clients) {
    SAMBAND_REQUIRE_TOOL("openssl");
    fs::path dir = root_ / "tls";
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
        " -out client.csr -subj /CN=acme"
        " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        " -out client.pem -days 1"
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        " -keyout other.key -out other.pem -days 1 -subj /CN=stranger)");
    ASSERT_EQ(rc, 0) << out;
    start(R"( "tls": {"cert_file": ")" + (dir / "server.pem").string() + R"(", "key_file": ")" +
          (dir / "server.key").string() + R"(", "client_ca_file": ")" + (dir / "ca.pem").string() +
          R"("},)");
    std::string url = "https" + acme_.substr(4) + "/v1/acme/treatment-started";
    write_file(root_ / "vendor.json", kVendorBody);
    std::string ca = " --cacert " + (dir / "ca.pem").string();
    std::string known = curl(url, (root_ / "vendor.json").string(),
                             bearer() + ca + " --cert " + (dir / "client.pem").string() +
                                 " --key " + (dir / "client.key").string());
    EXPECT_EQ(known.substr(0, 4), "202 ") << known << d_->log();
    std::string stranger = curl(url, (root_ / "vendor.json").string(),
                                bearer() + ca + " --cert " + (dir / "other.pem").string() +
                                    " --key " + (dir / "other.key").string());
    // curl reports the refused handshake and no HTTP status (000).
    EXPECT_NE(stranger.find("000"), std::string::npos) << stranger;
    EXPECT_EQ(stranger.find("202"), std::string::npos) << stranger;
    std::string anonymous = curl(url, (root_ / "vendor.json").string(), bearer() + ca);
    EXPECT_NE(anonymous.find("000"), std::string::npos) << anonymous;
    EXPECT_EQ(anonymous.find("202"), std::string::npos) << anonymous;
    EXPECT_EQ(stored(), 1u);
    EXPECT_TRUE(
        wait_for([&] { return d_->log().find("TLS handshake refused") != std::string::npos; },
                 std::chrono::seconds(10)))
        << d_->log();
}

}  // namespace
}  // namespace samband::test
