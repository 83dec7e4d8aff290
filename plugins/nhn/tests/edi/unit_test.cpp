// Unit tests of the EDI 2.0 transport pieces that need no server: Retry-After, classification,
// server messages, URLs, transport policy, base64, keys and JWTs.
#include "fake_server.hpp"
#include "net/error.hpp"
#include "net/jose.hpp"
#include "nhn/edi/client.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>

#include <ctime>
#include <fstream>
#include <set>

namespace edi = samband::nhn::edi;
using namespace std::chrono_literals;

namespace {

std::chrono::system_clock::time_point at(std::time_t t) {
    return std::chrono::system_clock::from_time_t(t);
}

// 1994-11-06 08:49:37 UTC
constexpr std::time_t rfc_example = 784111777;

rapidjson::Document claims_of(const std::string& jwt) {
    const auto a = jwt.find('.');
    const auto b = jwt.find('.', a + 1);
    rapidjson::Document doc;
    doc.Parse(edi::base64url_decode(jwt.substr(a + 1, b - a - 1)).value_or("x"));
    return doc;
}

rapidjson::Document header_of(const std::string& jwt) {
    rapidjson::Document doc;
    doc.Parse(edi::base64url_decode(jwt.substr(0, jwt.find('.'))).value_or("x"));
    return doc;
}

}  // namespace

TEST(RetryAfter, DeltaSecondsAreTakenAsIs) {
    EXPECT_EQ(edi::parse_retry_after("120", at(0)), 120s);
    EXPECT_EQ(edi::parse_retry_after(" 0 ", at(0)), 0s);
}

TEST(RetryAfter, HttpDatesInAllThreeFormatsAreMeasuredFromNow) {
    const auto now = at(rfc_example - 30);
    EXPECT_EQ(edi::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 30s);
    EXPECT_EQ(edi::parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), 30s);
    EXPECT_EQ(edi::parse_retry_after("Sun Nov  6 08:49:37 1994", now), 30s);
}

TEST(RetryAfter, PastDatesMeanNowAndHugeValuesAreCapped) {
    EXPECT_EQ(edi::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(rfc_example + 5)), 0s);
    EXPECT_EQ(edi::parse_retry_after("999999999999", at(0)), 86400s);
}

TEST(RetryAfter, GarbageIsIgnored) {
    EXPECT_FALSE(edi::parse_retry_after("soon", at(0)));
    EXPECT_FALSE(edi::parse_retry_after("-5", at(0)));
    EXPECT_FALSE(edi::parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", at(0)));
    EXPECT_FALSE(edi::parse_retry_after("", at(0)));
}

TEST(Classify, ThrottlingTimeoutsAndServerErrorsRetry) {
    for (const int s : {408, 425, 429, 500, 502, 503, 504}) {
        EXPECT_EQ(edi::classify_http_failure(s, "", "", at(0)).kind, edi::failure_kind::retry) << s;
    }
    const auto f = edi::classify_http_failure(429, "7", "", at(0));
    EXPECT_EQ(f.retry_after, 7s);
    EXPECT_EQ(f.http_status, 429);
}

TEST(Classify, OtherClientErrorsArePermanentWithTheServersText) {
    const std::string body =
        R"({"error":"Model validation error occurred","errorCode":1000,)"
        R"("validationErrors":["BusinessDocument is required"],"stackTrace":null,"requestId":"x"})";
    for (const int s : {400, 401, 403, 404, 409, 423}) {
        const auto f = edi::classify_http_failure(s, "", body, at(0));
        EXPECT_EQ(f.kind, edi::failure_kind::permanent) << s;
        EXPECT_EQ(f.message, "Model validation error occurred (BusinessDocument is required)");
    }
    // A permanent failure ignores Retry-After.
    EXPECT_EQ(edi::classify_http_failure(400, "30", body, at(0)).retry_after, 0s);
}

TEST(ServerMessage, OAuthErrorsAndPlainTextAreReadable) {
    EXPECT_EQ(edi::server_message(R"({"error":"invalid_client","error_description":"bad jti"})"),
              "invalid_client: bad jti");
    EXPECT_EQ(edi::server_message("Service\r\nUnavailable\x01"), "Service Unavailable");
    EXPECT_EQ(edi::server_message(std::string(2000, 'a')).size(), 500u);
}

TEST(Url, PartsAndDefaultPorts) {
    const auto u = edi::parse_endpoint_url("https://api.tjener.test.melding.nhn.no/");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->host, "api.tjener.test.melding.nhn.no");
    EXPECT_EQ(u->port, 443);
    EXPECT_EQ(u->authority(), "api.tjener.test.melding.nhn.no");
    const auto t = edi::parse_endpoint_url("http://127.0.0.1:8080/connect/token?x=1");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->without_query(), "http://127.0.0.1:8080/connect/token");
    EXPECT_FALSE(edi::parse_endpoint_url("ftp://x/"));
    EXPECT_FALSE(edi::parse_endpoint_url("https://user:pw@x/"));
    EXPECT_FALSE(edi::parse_endpoint_url("https://x:99999/"));
}

TEST(TransportPolicy, PlainHttpOnlyToLoopbackAndOnlyWhenAllowed) {
    edi::tls_options allowed;
    allowed.allow_plain_http_loopback = true;
    EXPECT_THROW(edi::http_client(*edi::parse_endpoint_url("http://127.0.0.1:1/"), {}, nullptr),
                 std::runtime_error);
    EXPECT_THROW(
        edi::http_client(*edi::parse_endpoint_url("http://example.org/"), allowed, nullptr),
        std::runtime_error);
    EXPECT_NO_THROW(
        edi::http_client(*edi::parse_endpoint_url("http://127.0.0.1:1/"), allowed, nullptr));
}

TEST(TransportPolicy, SkippingCertificateChecksIsLoggedAsAWarning) {
    edi::tls_options tls;
    tls.insecure_skip_verify = true;
    std::vector<std::string> warnings;
    edi::http_client c(*edi::parse_endpoint_url("https://127.0.0.1:1/"), tls,
                       [&](edi::log_level l, std::string_view m) {
                           if (l == edi::log_level::warning) warnings.emplace_back(m);
                       });
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("verification is OFF"), std::string::npos);
}

TEST(TransportPolicy, AMissingCaFileIsAConfigError) {
    edi::tls_options tls;
    tls.ca_file = "/nonexistent/ca.pem";
    EXPECT_THROW(edi::http_client(*edi::parse_endpoint_url("https://127.0.0.1:1/"), tls, nullptr),
                 std::runtime_error);
}

TEST(TransportPolicy, AnUnreadableClientCertificateIsAConfigErrorNamingIt) {
    edi::tls_options tls;
    tls.client_cert_file = "/nonexistent/client.pem";
    try {
        edi::http_client(*edi::parse_endpoint_url("https://127.0.0.1:1/"), tls, nullptr);
        ADD_FAILURE() << "a missing client certificate was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("client certificate /nonexistent/client.pem"),
                  std::string::npos)
            << e.what();
    }
}

TEST(TransportPolicy, PlainHttpAnywhereOnlyWhenTheCallerSaysSo) {
    edi::tls_options anywhere;
    anywhere.allow_plain_http_anywhere = true;
    EXPECT_NO_THROW(
        edi::http_client(*edi::parse_endpoint_url("http://example.org/"), anywhere, nullptr));
    EXPECT_THROW(edi::http_client(*edi::parse_endpoint_url("http://example.org/"), {}, nullptr),
                 std::runtime_error);
}

// A failed exchange says at which step it stopped: the register clients and the CLI name it.
class TransportStep : public ::testing::Test {
protected:
    // Listening, never accepting: connections and the first bytes land in the kernel's backlog,
    // no answer (and no TLS handshake) ever comes.
    boost::asio::io_context io_;
    boost::asio::ip::tcp::acceptor silent_{io_, {boost::asio::ip::make_address("127.0.0.1"), 0}};
    std::string silent_url(const char* scheme) const {
        return std::string(scheme) +
               "://127.0.0.1:" + std::to_string(silent_.local_endpoint().port()) + "/";
    }
    static edi::transport_error fails(const std::string& url, std::chrono::milliseconds within) {
        edi::tls_options tls;
        tls.allow_plain_http_loopback = true;
        edi::http_client c(*edi::parse_endpoint_url(url), tls, nullptr);
        const auto r = c.exchange(edi::http_request{boost::beast::http::verb::get, "/", 11},
                                  std::chrono::steady_clock::now() + within);
        EXPECT_FALSE(r) << url;
        return r ? edi::transport_error{} : r.error();
    }
};

TEST_F(TransportStep, ARefusedConnectionIsTheConnectStep) {
    std::uint16_t port = 0;
    {
        boost::asio::ip::tcp::acceptor closed(io_, {boost::asio::ip::make_address("127.0.0.1"), 0});
        port = closed.local_endpoint().port();
    }
    const auto e = fails("http://127.0.0.1:" + std::to_string(port) + "/", 5s);
    EXPECT_EQ(e.code, boost::asio::error::connection_refused) << e.code.message();
    EXPECT_EQ(e.step, edi::http_step::connect);
    EXPECT_EQ(edi::step_name(e.step), "connect");
}

TEST_F(TransportStep, ADeadlineWhileWaitingForTheAnswerIsTheReceiveStep) {
    const auto e = fails(silent_url("http"), 300ms);
    EXPECT_EQ(e.code, boost::beast::error::timeout) << e.code.message();
    EXPECT_EQ(e.step, edi::http_step::receive);
}

TEST_F(TransportStep, ADeadlineInTheHandshakeIsTheTlsStep) {
    const auto e = fails(silent_url("https"), 300ms);
    EXPECT_EQ(e.code, boost::beast::error::timeout) << e.code.message();
    EXPECT_EQ(e.step, edi::http_step::tls_handshake);
    EXPECT_EQ(edi::step_name(e.step), "TLS handshake");
}

TEST(Base64, RoundTripAndStrictness) {
    const std::string bytes = std::string("\x00\xff\x10<?xml", 8);
    EXPECT_EQ(edi::base64_decode(edi::base64_encode(bytes)), bytes);
    EXPECT_EQ(edi::base64url_decode(edi::base64url_encode(bytes)), bytes);
    EXPECT_FALSE(edi::base64_decode("a$bc"));
    EXPECT_FALSE(edi::base64_decode("abc"));
    EXPECT_FALSE(edi::base64_decode("QUJD", 2));  // over the size limit
}

TEST(Guid, OnlyCanonicalGuidsGoIntoPaths) {
    EXPECT_TRUE(edi::is_guid("80383714-f0de-4cf8-900f-c79ba3af028c"));
    EXPECT_FALSE(edi::is_guid("../../_test/stats"));
    EXPECT_FALSE(edi::is_guid("80383714-f0de-4cf8-900f-c79ba3af028"));
}

TEST(Keys, RsaSignsRs256OrPs256AndEcSignsEs256) {
    edi::test::temp_dir dir;
    edi::test::write_key_pair(dir.path, edi::test::key_type::rsa);
    EXPECT_EQ(edi::jws_key::load_pem_file(dir.path / "private.pem").alg(), edi::jws_alg::rs256);
    EXPECT_EQ(edi::jws_key::load_pem_file(dir.path / "private.pem", edi::jws_alg::ps256).alg(),
              edi::jws_alg::ps256);
    EXPECT_THROW(edi::jws_key::load_pem_file(dir.path / "private.pem", edi::jws_alg::es256),
                 std::runtime_error);
    const auto ec = edi::jws_key::generate_p256();
    EXPECT_EQ(ec.alg(), edi::jws_alg::es256);
    const auto jwt = ec.sign_jwt(R"({"alg":"ES256"})", R"({"a":1})");
    EXPECT_EQ(edi::base64url_decode(jwt.substr(jwt.rfind('.') + 1))->size(), 64u);
}

TEST(Keys, ErrorsNameTheFileButNeverItsContents) {
    edi::test::temp_dir dir;
    const auto path = dir.path / "key.pem";
    std::ofstream(path)
        << "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n";
    try {
        edi::jws_key::load_pem_file(path);
        FAIL() << "a broken key loaded";
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(path.string()), std::string::npos);
        EXPECT_EQ(what.find("c2VjcmV0"), std::string::npos);
    }
    EXPECT_THROW(edi::jws_key::load_pem_file(dir.path / "missing.pem"), std::runtime_error);
}

TEST(Keys, ThumbprintMatchesRfc7638Example) {
    // RFC 7638 §3.1: the example RSA key's thumbprint.
    const std::string jwk =
        R"({"e":"AQAB","kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"})";
    EXPECT_EQ(edi::base64url_encode(edi::sha256(jwk)),
              "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

TEST(HelseId, AssertionHasTheClaimsHelseIdRequiresAndAFreshJti) {
    edi::test::temp_dir dir;
    edi::test::write_key_pair(dir.path, edi::test::key_type::rsa);
    edi::helseid_config c;
    c.token_endpoint = "https://helseid-sts.test.nhn.no/connect/token";
    c.client_id = "my-client";
    c.key_file = dir.path / "private.pem";
    const auto fixed = std::chrono::system_clock::from_time_t(1700000000);
    edi::token_client tc(
        c, [&] { return fixed; }, nullptr);
    const auto a = tc.client_assertion();
    const auto b = tc.client_assertion();
    const auto h = header_of(a);
    EXPECT_STREQ(h["alg"].GetString(), "RS256");
    EXPECT_STREQ(h["kid"].GetString(),
                 edi::jws_key::load_pem_file(c.key_file).thumbprint().c_str());
    const auto ca = claims_of(a);
    EXPECT_STREQ(ca["iss"].GetString(), "my-client");
    EXPECT_STREQ(ca["sub"].GetString(), "my-client");
    EXPECT_STREQ(ca["aud"].GetString(), "https://helseid-sts.test.nhn.no");
    EXPECT_EQ(ca["iat"].GetInt64(), 1700000000);
    EXPECT_EQ(ca["nbf"].GetInt64(), 1700000000);
    EXPECT_LE(ca["exp"].GetInt64() - 1700000000, 60);
    EXPECT_GT(ca["exp"].GetInt64(), 1700000000);
    EXPECT_STRNE(ca["jti"].GetString(), claims_of(b)["jti"].GetString());
}

TEST(HelseId, DpopProofCarriesMethodUrlAndTokenHash) {
    edi::test::temp_dir dir;
    edi::test::write_key_pair(dir.path, edi::test::key_type::ec);
    edi::helseid_config c;
    c.token_endpoint = "https://helseid-sts.test.nhn.no/connect/token";
    c.client_id = "my-client";
    c.key_file = dir.path / "private.pem";
    edi::token_client tc(c, nullptr, nullptr);
    const auto proof = tc.dpop_proof("GET", "https://api.example/Messages", "tok", "n1");
    const auto h = header_of(proof);
    EXPECT_STREQ(h["typ"].GetString(), "dpop+jwt");
    EXPECT_STREQ(h["alg"].GetString(), "ES256");
    EXPECT_STREQ(h["jwk"]["kty"].GetString(), "EC");
    EXPECT_FALSE(h["jwk"].HasMember("d"));
    const auto p = claims_of(proof);
    EXPECT_STREQ(p["htm"].GetString(), "GET");
    EXPECT_STREQ(p["htu"].GetString(), "https://api.example/Messages");
    EXPECT_STREQ(p["ath"].GetString(), edi::base64url_encode(edi::sha256("tok")).c_str());
    EXPECT_STREQ(p["nonce"].GetString(), "n1");
    EXPECT_FALSE(
        claims_of(tc.dpop_proof("POST", "https://x/connect/token", "", "")).HasMember("ath"));
}

TEST(HelseId, ConfigErrorsThrowAtConstruction) {
    edi::test::temp_dir dir;
    edi::test::write_key_pair(dir.path, edi::test::key_type::rsa);
    edi::helseid_config c;
    c.token_endpoint = "https://helseid-sts.test.nhn.no/connect/token";
    c.key_file = dir.path / "private.pem";
    EXPECT_THROW(edi::token_client(c, nullptr, nullptr), std::runtime_error);  // no client_id
    c.client_id = "x";
    c.signing_alg = "HS256";
    EXPECT_THROW(edi::token_client(c, nullptr, nullptr), std::runtime_error);
    c.signing_alg.clear();
    c.token_endpoint = "http://helseid-sts.test.nhn.no/connect/token";
    EXPECT_THROW(edi::token_client(c, nullptr, nullptr), std::runtime_error);  // plain http
}
