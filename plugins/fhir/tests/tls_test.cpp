// The fhir source over mutual TLS: throwaway CA, server and client certificates made by the test;
// curl with the client certificate gets 201 after the commit, curl without one or with a stranger's
// is refused in the handshake; a listener on a non-loopback address without TLS is a config error.
#include "fhir_peer.hpp"

#include <gtest/gtest.h>

namespace samband::fhir::test {
namespace {

using samband::test::daemon_process;
using samband::test::write_file;

const std::string kQr = R"({"resourceType":"QuestionnaireResponse",
  "identifier":{"system":"urn:oid:2.16.578.1.12.4.1.999","value":"tls-1"},
  "questionnaire":"http://loinc.org/q/69737-5","status":"completed",
  "subject":{"identifier":{"system":"urn:oid:2.16.578.1.12.4.1.4.1","value":"14839134623"}},
  "basedOn":[{"identifier":{"value":"T-1001"}}],"authored":"2026-09-22",
  "item":[{"linkId":"1","answer":[{"valueInteger":1}]},{"linkId":"2","answer":[{"valueInteger":1}]},
          {"linkId":"3","answer":[{"valueInteger":1}]},{"linkId":"4","answer":[{"valueInteger":1}]},
          {"linkId":"5","answer":[{"valueInteger":1}]},{"linkId":"6","answer":[{"valueInteger":1}]},
          {"linkId":"7","answer":[{"valueInteger":1}]}]})";

class fhir_tls_test : public ::testing::Test {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL("openssl");
        SAMBAND_REQUIRE_TOOL("curl");
        root_ = tmp_.path();
        write_file(root_ / "san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
        const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        auto [rc, out] = run_command(
            "cd " + root_.string() + " && openssl req -x509 " + ec +
            " -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca"
            " && openssl req " +
            ec +
            " -keyout server.key -out server.csr -subj /CN=localhost"
            " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
            " -out server.pem -days 1 -extfile san.ext"
            " && openssl req " +
            ec +
            " -keyout client.key -out client.csr -subj /CN=epj"
            " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
            " -out client.pem -days 1"
            " && openssl req -x509 " +
            ec + " -keyout other.key -out other.pem -days 1 -subj /CN=stranger");
        ASSERT_EQ(rc, 0) << out;
    }
    std::string config(const std::string& address, bool tls) {
        const std::string t = tls ? R"(, "tls": {"cert_file": ")" +
                                        (root_ / "server.pem").string() + R"(", "key_file": ")" +
                                        (root_ / "server.key").string() + R"(", "ca_file": ")" +
                                        (root_ / "ca.pem").string() + R"("})"
                                  : "";
        return R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" +
               samband::test::plugin_dir() + R"("],
  "schemas_dir": ")" +
               samband::test::source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {
    "fhir-in": {"plugin": "fhir", "config": {"listen": {"address": ")" +
               address + R"(",
        "port_file": ")" +
               (root_ / "fhir.port").string() + R"(", "allow_synthetic_ids": true)" + t + R"(}}}
  },
  "routes": []
})";
    }
    std::pair<int, std::string> curl(const std::string& port, const std::string& cert) {
        write_file(root_ / "qr.json", kQr);
        std::string cmd = "curl -sS --max-time 10 -o " + (root_ / "answer.json").string() +
                          " -w '%{http_code}' --cacert " + (root_ / "ca.pem").string();
        if (!cert.empty())
            cmd += " --cert " + (root_ / (cert + ".pem")).string() + " --key " +
                   (root_ / (cert + ".key")).string();
        cmd += " -H 'Content-Type: application/fhir+json' --data-binary @" +
               (root_ / "qr.json").string() + " https://127.0.0.1:" + port +
               "/QuestionnaireResponse";
        return run_command(cmd);
    }

    samband::test::temp_dir tmp_;
    fs::path root_;
};

TEST_F(fhir_tls_test, only_a_client_with_a_certificate_from_the_ca_gets_in) {
    write_file(root_ / "samband.json", config("127.0.0.1:0", true));
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    ASSERT_TRUE(
        wait_for([&] { return fs::exists(root_ / "fhir.port"); }, std::chrono::seconds(10)));
    const std::string port = std::to_string(std::stoi(read_file(root_ / "fhir.port")));
    auto [rc, out] = curl(port, "client");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, "201") << read_file(root_ / "answer.json");
    EXPECT_NE(read_file(root_ / "answer.json").find("accepted as event"), std::string::npos);
    auto [rc2, out2] = curl(port, "");
    EXPECT_NE(rc2, 0) << out2;  // no certificate: the handshake fails
    auto [rc3, out3] = curl(port, "other");
    EXPECT_NE(rc3, 0) << out3;  // a certificate from no trusted CA
}

TEST_F(fhir_tls_test, a_listener_beyond_loopback_without_tls_is_a_config_error) {
    write_file(root_ / "cfg.json", R"({"listen": {"address": "0.0.0.0:0"}})");
    auto [rc, out] =
        run_command(daemon_process::binary() + " plugin check " + samband::test::plugin_dir() +
                    "/samband_plugin_fhir.so --config " + (root_ / "cfg.json").string());
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("is not loopback: it needs tls"), std::string::npos) << out;
}

}  // namespace
}  // namespace samband::fhir::test
