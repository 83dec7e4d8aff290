// The EDI 2.0 client and HelseID machine client against the Node fake server: tokens, DPoP,
// the send/poll/fetch/read/Apprec round trip and the retry/permanent classification of faults.
#include "fake_server.hpp"
#include "net/jose.hpp"
#include "nhn/edi/client.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <boost/beast/core/error.hpp>
#include <samband_test/tools.hpp>

#include <atomic>
#include <ctime>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

namespace edi = samband::nhn::edi;
namespace test = samband::nhn::edi::test;
using namespace std::chrono_literals;

namespace {

constexpr int our_her_id = 8143060;
constexpr int gp_her_id = 8094866;
constexpr const char* client_id = "samband-test-client";

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The decoded business document of NHN's sample answer (a Dialogmelding with test data only).
std::string sample_business_document() {
    rapidjson::Document doc;
    doc.Parse(
        read_file(std::string(NHN_EDI_SAMPLES) + "/edi2/get-business-document-response.json"));
    return edi::base64_decode(doc["businessDocument"].GetString()).value_or("");
}

std::string json_string(const std::string& s) {
    rapidjson::Document d;
    d.SetString(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), d.GetAllocator());
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        if (c == '\r') {
            out += "\\r";
            continue;
        }
        out += c;
    }
    return out + "\"";
}

class EdiTransport : public ::testing::TestWithParam<std::pair<test::key_type, std::string>> {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL("node");
        const auto [type, alg] = param();
        test::write_key_pair(dir_.path, type);
        server_.emplace(dir_.path / "public.pem", client_id);
        make_client(5s, alg);
    }

    virtual std::pair<test::key_type, std::string> param() const { return GetParam(); }

    void make_client(std::chrono::milliseconds timeout, const std::string& alg = {}) {
        edi::helseid_config h;
        h.token_endpoint = server_->base_url() + "/connect/token";
        h.client_id = client_id;
        h.key_file = dir_.path / "private.pem";
        h.signing_alg = alg;
        h.tls.allow_plain_http_loopback = true;
        tokens_ = std::make_shared<edi::token_client>(
            h,
            [this] {
                return std::chrono::system_clock::now() + std::chrono::seconds(skew_.load());
            },
            nullptr);
        edi::edi_config e;
        e.base_url = server_->base_url();
        e.source_system = "Samband tests, 1.0";
        e.timeout = timeout;
        e.tls.allow_plain_http_loopback = true;
        client_ = std::make_unique<edi::edi_client>(e, tokens_, nullptr);
    }

    void fault(const std::string& json) {
        ASSERT_EQ(server_->control("POST", "/_test/faults", json).first, 204);
    }

    std::string outgoing_xml() {
        return R"(<?xml version="1.0" encoding="UTF-8"?>)"
               "\n<MsgHead xmlns=\"http://www.kith.no/xmlstds/msghead/2006-05-24\"><MsgInfo>"
               "<MsgId>5b0c4c57-0c39-4a5c-9a36-4b2f8a9f3f10</MsgId><Receiver><Organisation>"
               "<Ident><Id>" +
               std::to_string(gp_her_id) +
               "</Id><TypeId V=\"HER\" S=\"2.16.578.1.12.4.1.1.9051\"/></Ident></Organisation>"
               "</Receiver></MsgInfo><Note>æøå</Note></MsgHead>";
    }

    test::temp_dir dir_;
    std::optional<test::fake_server> server_;
    std::atomic<long long> skew_{0};
    std::shared_ptr<edi::token_client> tokens_;
    std::unique_ptr<edi::edi_client> client_;
};

// Most tests run once with an RSA client key (RS256); the key-type test runs all three.
class EdiTransportRsa : public EdiTransport {
    std::pair<test::key_type, std::string> param() const override {
        return {test::key_type::rsa, ""};
    }
};

}  // namespace

TEST_P(EdiTransport, TokenIsIssuedForAValidAssertionWithEveryKeyType) {
    const auto token = tokens_->get(std::chrono::steady_clock::now() + 5s);
    ASSERT_TRUE(token) << token.error().message;
    EXPECT_FALSE(token->value.empty());
    const auto stats = server_->stats();
    EXPECT_EQ(stats["tokens_issued"].GetInt(), 1);
    EXPECT_EQ(stats["rejections"].Size(), 0u);
    EXPECT_STREQ(stats["assertions"][0]["header"]["alg"].GetString(),
                 GetParam().second.empty()
                     ? (GetParam().first == test::key_type::ec ? "ES256" : "RS256")
                     : GetParam().second.c_str());
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, EdiTransport,
                         ::testing::Values(std::pair{test::key_type::rsa, std::string{}},
                                           std::pair{test::key_type::rsa, std::string{"PS256"}},
                                           std::pair{test::key_type::ec, std::string{}}));

TEST_F(EdiTransportRsa, TokenIsCachedSoASecondCallMakesNoTokenRequest) {
    ASSERT_TRUE(client_->poll_unread({{our_her_id}}));
    ASSERT_TRUE(client_->poll_unread({{our_her_id}}));
    EXPECT_EQ(tokens_->token_requests(), 1u);
    EXPECT_EQ(server_->stats()["token_requests"].GetInt(), 1);
}

TEST_F(EdiTransportRsa, TokenIsRenewedShortlyBeforeItExpires) {
    // A 6 s token is renewed at half its life (the 60 s margin is capped at half).
    server_->control("POST", "/_test/config", R"({"token_lifetime":6})");
    ASSERT_TRUE(client_->poll_unread({{our_her_id}}));
    skew_ = 2;
    ASSERT_TRUE(client_->poll_unread({{our_her_id}}));
    EXPECT_EQ(tokens_->token_requests(), 1u);
    skew_ = 4;  // the injected clock passes the renewal point; proofs stay within HelseID's skew
    const auto r = client_->poll_unread({{our_her_id}});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(tokens_->token_requests(), 2u);
}

TEST_F(EdiTransportRsa, AssertionsExpireWithin60sAndNeverRepeatAJti) {
    ASSERT_TRUE(tokens_->get(std::chrono::steady_clock::now() + 5s));
    tokens_->invalidate();
    ASSERT_TRUE(tokens_->get(std::chrono::steady_clock::now() + 5s));
    const auto stats = server_->stats();
    ASSERT_EQ(stats["assertions"].Size(), 2u);
    std::set<std::string> jtis;
    for (const auto& a : stats["assertions"].GetArray()) {
        const auto& c = a["claims"];
        EXPECT_LE(c["exp"].GetInt64() - c["iat"].GetInt64(), 60);
        EXPECT_LE(c["exp"].GetInt64() - static_cast<long long>(std::time(nullptr)), 60);
        EXPECT_STREQ(c["iss"].GetString(), client_id);
        EXPECT_STREQ(c["sub"].GetString(), client_id);
        jtis.insert(c["jti"].GetString());
    }
    EXPECT_EQ(jtis.size(), 2u);
    EXPECT_EQ(stats["rejections"].Size(), 0u);
}

TEST_F(EdiTransportRsa, DpopProofIsAcceptedOnEveryApiCall) {
    ASSERT_TRUE(client_->poll_unread({{our_her_id}}));
    ASSERT_TRUE(client_->send_message(outgoing_xml()));
    const auto stats = server_->stats();
    EXPECT_EQ(stats["proofs_accepted"].GetInt(), 2);
    EXPECT_EQ(stats["rejections"].Size(), 0u);
    // One proof for the token request (no ath), then one per API call with ath.
    ASSERT_EQ(stats["proofs"].Size(), 3u);
    EXPECT_FALSE(stats["proofs"][0]["claims"].HasMember("ath"));
    EXPECT_TRUE(stats["proofs"][1]["claims"].HasMember("ath"));
    EXPECT_STREQ(stats["proofs"][2]["claims"]["htm"].GetString(), "POST");
}

TEST_F(EdiTransportRsa, SendPollFetchMarkReadAndApprecRoundTrip) {
    // Outgoing: send, the server got our exact bytes, the GP's Apprec comes back.
    const auto xml = outgoing_xml();
    const auto id = client_->send_message(xml);
    ASSERT_TRUE(id) << id.error().message;
    EXPECT_TRUE(edi::is_guid(*id));
    rapidjson::Document sent;
    sent.Parse(server_->control("GET", "/_test/messages").second);
    ASSERT_EQ(sent.Size(), 1u);
    EXPECT_EQ(sent[0]["xml"].GetString(), xml);
    EXPECT_STREQ(sent[0]["sourceSystem"].GetString(), "Samband tests, 1.0");

    auto status = client_->status(*id);
    ASSERT_TRUE(status) << status.error().message;
    ASSERT_EQ(status->size(), 1u);
    EXPECT_EQ((*status)[0].receiver_her_id, gp_her_id);
    EXPECT_EQ((*status)[0].transport_delivery_state, "Unconfirmed");
    EXPECT_EQ((*status)[0].apprec_status, "");

    ASSERT_EQ(server_
                  ->control("POST", "/_test/apprec/" + *id,
                            read_file(std::string(NHN_EDI_SAMPLES) +
                                      "/edi2/get-apprecinfo-rejected.json"))
                  .first,
              204);
    const auto apprec = client_->apprec(*id);
    ASSERT_TRUE(apprec) << apprec.error().message;
    const auto rejected = std::find_if(apprec->begin(), apprec->end(),
                                       [](const auto& a) { return a.status == "Rejected"; });
    ASSERT_NE(rejected, apprec->end());
    ASSERT_EQ(rejected->errors.size(), 1u);
    EXPECT_EQ(rejected->errors[0].error_code, "E10");
    EXPECT_EQ(rejected->errors[0].details, "Ugyldig meldingsidentifikator");

    // Incoming: the sample business document arrives, is polled, fetched, read and answered.
    const auto doc = sample_business_document();
    ASSERT_FALSE(doc.empty());
    const auto queued = server_->control("POST", "/_test/inbox",
                                         R"({"receiverHerId":)" + std::to_string(our_her_id) +
                                             R"(,"senderHerId":)" + std::to_string(gp_her_id) +
                                             R"(,"xml":)" + json_string(doc) + "}");
    ASSERT_EQ(queued.first, 201);
    auto unread = client_->poll_unread({{our_her_id}});
    ASSERT_TRUE(unread) << unread.error().message;
    ASSERT_EQ(unread->size(), 1u);
    const auto m = (*unread)[0];
    EXPECT_EQ(m.receiver_her_id, our_her_id);
    EXPECT_EQ(m.sender_her_id, gp_her_id);
    EXPECT_EQ(m.business_document_id, "c88389b7-f8ad-40b2-81e1-090e715b7530");
    EXPECT_FALSE(m.is_apprec);

    const auto fetched = client_->business_document(m.id);
    ASSERT_TRUE(fetched) << fetched.error().message;
    EXPECT_EQ(*fetched, doc);
    const auto info = client_->get_message(m.id);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->id, m.id);

    ASSERT_TRUE(client_->mark_read(m.id, our_her_id));
    unread = client_->poll_unread({{our_her_id}});
    ASSERT_TRUE(unread);
    EXPECT_TRUE(unread->empty());

    const auto apprec_id = client_->send_apprec(
        m.id, our_her_id,
        {edi::apprec_status::rejected, {{"E31", "Pasientens fødselsnummer er feil", "", ""}}});
    ASSERT_TRUE(apprec_id) << apprec_id.error().message;
    rapidjson::Document inbox;
    inbox.Parse(server_->control("GET", "/_test/inbox").second);
    const auto& answered = inbox[0]["apprecsSent"];
    ASSERT_EQ(answered.Size(), 1u);
    EXPECT_STREQ(answered[0]["appRecStatus"].GetString(), "Rejected");
    EXPECT_EQ(answered[0]["senderHerId"].GetInt(), our_her_id);
    EXPECT_STREQ(answered[0]["appRecErrorList"][0]["errorCode"].GetString(), "E31");
}

TEST_F(EdiTransportRsa, ServerErrorIsRetryThenTheNextCallSucceeds) {
    fault(R"({"status":500,"count":1})");
    const auto r = client_->send_message(outgoing_xml());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, edi::failure_kind::retry);
    EXPECT_EQ(r.error().http_status, 500);
    EXPECT_NE(r.error().message.find("Injected fault 500"), std::string::npos);
    EXPECT_TRUE(client_->send_message(outgoing_xml()));
}

TEST_F(EdiTransportRsa, TooManyRequestsIsRetryWithRetryAfterSeconds) {
    fault(R"({"status":429,"retry_after":7,"count":1})");
    const auto r = client_->poll_unread({{our_her_id}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, edi::failure_kind::retry);
    EXPECT_EQ(r.error().http_status, 429);
    EXPECT_EQ(r.error().retry_after, 7s);
}

TEST_F(EdiTransportRsa, ServiceUnavailableHonoursRetryAfterAsHttpDate) {
    const std::time_t when = std::time(nullptr) + 120;
    char date[64];
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", std::gmtime(&when));
    fault(std::string(R"({"status":503,"retry_after_date":")") + date + R"(","count":1})");
    const auto r = client_->poll_unread({{our_her_id}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, edi::failure_kind::retry);
    EXPECT_GE(r.error().retry_after, 118s);
    EXPECT_LE(r.error().retry_after, 121s);
}

TEST_F(EdiTransportRsa, ValidationErrorIsPermanentWithTheServersMessage) {
    const auto r = client_->send_message("this is not XML");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, edi::failure_kind::permanent);
    EXPECT_EQ(r.error().http_status, 400);
    EXPECT_NE(r.error().message.find("Model validation error occurred"), std::string::npos);
    EXPECT_NE(r.error().message.find("declared as UTF-8"), std::string::npos);
}

TEST_F(EdiTransportRsa, UnknownMessageIsPermanentNotFound) {
    const auto r = client_->mark_read("00000000-0000-4000-8000-000000000000", our_her_id);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, edi::failure_kind::permanent);
    EXPECT_EQ(r.error().http_status, 404);
    EXPECT_EQ(r.error().message, "Could not find database document");
}

TEST_F(EdiTransportRsa, SlowAnswerTimesOutAsRetry) {
    make_client(500ms);
    ASSERT_TRUE(tokens_->get(std::chrono::steady_clock::now() + 5s));
    fault(R"({"delay_ms":3000,"count":1})");
    const auto start = std::chrono::steady_clock::now();
    const auto r = client_->poll_unread({{our_her_id}});
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, edi::failure_kind::retry);
    EXPECT_EQ(r.error().http_status, 0);
    EXPECT_NE(r.error().message.find("timed out"), std::string::npos);
    EXPECT_LT(took, 2s);
}

TEST_F(EdiTransportRsa, DroppedConnectionIsRetry) {
    ASSERT_TRUE(tokens_->get(std::chrono::steady_clock::now() + 5s));
    fault(R"({"drop":true,"count":1})");
    const auto r = client_->send_message(outgoing_xml());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, edi::failure_kind::retry);
    EXPECT_EQ(r.error().http_status, 0);
    EXPECT_NE(r.error().message.find("connection closed"), std::string::npos) << r.error().message;
}

TEST_F(EdiTransportRsa, RefusedConnectionIsRetry) {
    const int port = server_->port();
    server_.reset();  // stop the server: nothing listens on the port any more
    edi::edi_config e;
    e.base_url = "http://127.0.0.1:" + std::to_string(port);
    e.tls.allow_plain_http_loopback = true;
    edi::helseid_config h;
    h.token_endpoint = e.base_url + "/connect/token";
    h.client_id = client_id;
    h.key_file = dir_.path / "private.pem";
    h.tls.allow_plain_http_loopback = true;
    edi::edi_client c(e, std::make_shared<edi::token_client>(h, nullptr, nullptr), nullptr);
    const auto r = c.poll_unread({{our_her_id}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, edi::failure_kind::retry);
    EXPECT_NE(r.error().message.find("HelseID"), std::string::npos);
}

TEST_F(EdiTransportRsa, DpopNonceChallengesAreAnsweredOnce) {
    server_->control("POST", "/_test/config",
                     R"({"require_token_nonce":true,"require_api_nonce":true})");
    const auto r = client_->poll_unread({{our_her_id}});
    ASSERT_TRUE(r) << r.error().message;
    const auto stats = server_->stats();
    EXPECT_EQ(stats["nonce_challenges"].GetInt(), 2);  // one at HelseID, one at the API
    EXPECT_EQ(stats["token_requests"].GetInt(), 2);
    // The nonces are remembered: the next call needs no new challenge.
    ASSERT_TRUE(client_->poll_unread({{our_her_id}}));
    EXPECT_EQ(server_->stats()["nonce_challenges"].GetInt(), 2);
}

TEST_F(EdiTransportRsa, RevokedTokenIsReplacedOnceThenTheCallSucceeds) {
    ASSERT_TRUE(client_->poll_unread({{our_her_id}}));
    server_->control("POST", "/_test/revoke");
    const auto r = client_->poll_unread({{our_her_id}});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(tokens_->token_requests(), 2u);
}

TEST_F(EdiTransportRsa, WrongClientKeyIsAPermanentTokenFailure) {
    test::temp_dir other;
    test::write_key_pair(other.path, test::key_type::rsa);
    edi::helseid_config h;
    h.token_endpoint = server_->base_url() + "/connect/token";
    h.client_id = client_id;
    h.key_file = other.path / "private.pem";
    h.tls.allow_plain_http_loopback = true;
    edi::token_client tc(h, nullptr, nullptr);
    const auto r = tc.get(std::chrono::steady_clock::now() + 5s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, edi::failure_kind::permanent);
    EXPECT_NE(r.error().message.find("invalid_client"), std::string::npos);
    EXPECT_NE(r.error().message.find("bad signature"), std::string::npos);
}

TEST_F(EdiTransportRsa, APassedDeadlineSendsNothing) {
    edi::tls_options tls;
    tls.allow_plain_http_loopback = true;
    edi::http_client c(*edi::parse_endpoint_url(server_->base_url()), tls, nullptr);
    edi::http_request req{boost::beast::http::verb::get, "/Messages", 11};
    const auto r = c.send(std::move(req), std::chrono::steady_clock::now() - 1s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), boost::beast::error::timeout);
    EXPECT_EQ(server_->stats()["requests"].Size(), 0u);
}
