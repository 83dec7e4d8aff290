// The fhir sink's auth through the shared plugin-side client (plugins/net): client credentials
// with a private_key_jwt assertion, as SMART Backend Services (Bearer) and as HelseID (DPoP-bound
// tokens, a proof per request), against server.js, which verifies the assertion's signature and
// claims and every DPoP proof. One token serves several deliveries; without auth the server's 401
// makes the delivery dead with its text.
#include "fhir_peer.hpp"

#include <rapidjson/document.h>

#include <gtest/gtest.h>

namespace samband::fhir::test {
namespace {

using samband::test::daemon_process;
using samband::test::drop_file;
using samband::test::source_dir;
using samband::test::write_file;

class fhir_auth_test : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL("node");
        SAMBAND_REQUIRE_TOOL("openssl");
        root_ = tmp_.path();
        // A throwaway client key, made for this test only.
        auto [st, out] = run_command(
            "openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " +
            (root_ / "client.pem").string() + " && openssl pkey -in " +
            (root_ / "client.pem").string() + " -pubout -out " + (root_ / "client.pub").string());
        ASSERT_EQ(st, 0) << out;
        server_ = std::make_unique<fhir_server>(
            root_, std::vector<std::pair<std::string, std::string>>{
                       {"FHIR_AUTH_PUBLIC_KEY", (root_ / "client.pub").string()},
                       {"FHIR_AUTH_CLIENT_ID", "samband-test"},
                       {"FHIR_AUTH_DPOP", GetParam() ? "1" : "0"}});
        ASSERT_GT(server_->port(), 0) << server_->output();
    }

    void write_config(bool with_auth) {
        const std::string auth =
            with_auth ? R"(, "auth": {"token_endpoint": ")" + server_->base() +
                            R"(/token", "client_id": "samband-test", "key_secret": "fhir-key",
                    "scope": "system/*.write", "dpop": )" +
                            (GetParam() ? "true" : "false") +
                            R"(, "tls": {"allow_plain_http_loopback": true}})"
                      : "";
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + samband::test::plugin_dir() +
                                               R"("],
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "secrets": {"fhir-key": {"file": ")" + (root_ / "client.pem").string() +
                                               R"("}},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "fhir": {"plugin": "fhir", "config": {"base_url": ")" +
                                               server_->base() + R"(",
             "tls": {"allow_plain_http_loopback": true}, "timeout_ms": 10000)" +
                                               auth + R"(},
             "policy": {"max_attempts": 5, "backoff_base_ms": 200, "backoff_max_ms": 1000}}
  },
  "routes": [{"name": "scores", "match": {"type": "rph.assessment.scored"}, "to": ["fhir"]}]
})");
    }

    void drop_score(int n) {
        std::string ev =
            read_file(fs::path(source_dir()) / "config/demo/events/03-kari-score.json");
        ev.replace(ev.find("gerica:score-1001-1"), 19, "gerica:score-auth-" + std::to_string(n));
        drop_file(root_ / "inbox", "score-" + std::to_string(n) + ".json", ev);
    }
    std::vector<std::string> states(daemon_process& d) {
        rapidjson::Document doc;
        doc.Parse(d.get("/api/v1/deliveries?destination=fhir").body.c_str());
        std::vector<std::string> out;
        if (doc.IsArray())
            for (auto& e : doc.GetArray()) out.push_back(e["state"].GetString());
        return out;
    }
    int stat(const char* key) {
        rapidjson::Document doc;
        doc.Parse(server_->get("/__stats").body.c_str());
        return doc.HasParseError() ? -1 : doc[key].GetInt();
    }

    samband::test::temp_dir tmp_;
    fs::path root_;
    std::unique_ptr<fhir_server> server_;
};

TEST_P(fhir_auth_test, client_credentials_with_private_key_jwt_get_one_token_for_two_deliveries) {
    write_config(true);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_score(1);
    drop_score(2);
    ASSERT_TRUE(wait_for(
        [&] {
            auto s = states(d);
            return s.size() == 2 && s[0] == "delivered" && s[1] == "delivered";
        },
        std::chrono::seconds(60)))
        << d.log() << server_->output() << d.get("/api/v1/deliveries?destination=fhir").body;
    EXPECT_EQ(stat("tokens"), 1);  // cached
    EXPECT_EQ(server_->count("Observation"), 2);
}

TEST_P(fhir_auth_test, without_a_token_the_servers_401_makes_the_delivery_dead_with_its_text) {
    write_config(false);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_score(1);
    ASSERT_TRUE(wait_for(
        [&] {
            auto s = states(d);
            return s.size() == 1 && s[0] == "dead";
        },
        std::chrono::seconds(30)))
        << d.log();
    auto r = d.get("/api/v1/deliveries?destination=fhir&state=dead");
    EXPECT_NE(r.body.find("HTTP 401: no valid token"), std::string::npos) << r.body;
    EXPECT_EQ(server_->count("Observation"), 0);
}

INSTANTIATE_TEST_SUITE_P(bearer_and_dpop, fhir_auth_test, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "dpop" : "bearer"; });

}  // namespace
}  // namespace samband::fhir::test
