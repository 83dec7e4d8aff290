// GP resolution: the local directory file, the cache, and the Fastlegeregisteret SOAP client
// against a fake server on 127.0.0.1 answering with NHN's sample responses.
#include "directory/adresseregisteret.hpp"
#include "directory/fastlegeregisteret.hpp"
#include "directory/gp_directory.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

namespace samband::directory {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

std::string sample(const std::string& name) {
    const std::string path =
        std::string(SAMBAND_TEST_DATA_DIR) + "/nhn/registries/fastlegeregisteret-client/" + name;
    std::ifstream in(path);
    if (!in) ADD_FAILURE() << "test data missing: " << path;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

const std::string kDirectory = std::string(SAMBAND_SOURCE_DIR) + "/config/demo/directory.json";

TEST(gp_directory_file, finds_the_patients_gp_with_office_and_says_when_there_is_none) {
    auto d = open_file_directory(kDirectory);
    auto g = d->find_gp("14839134623");
    ASSERT_TRUE(g && *g);
    EXPECT_EQ((*g)->gp_her_id, "9900101");
    EXPECT_EQ((*g)->gp_family_name, "Fastlege");
    EXPECT_EQ((*g)->office_her_id, "9900100");
    EXPECT_EQ((*g)->office_name, "Fjordlegene legesenter");
    auto none = d->find_gp("21826210262");  // Per Ås has no GP in the directory
    ASSERT_TRUE(none);
    EXPECT_FALSE(*none);
    EXPECT_THROW(open_file_directory("/nonexistent.json"), std::runtime_error);
}

class counting : public gp_directory {
public:
    std::atomic<int> calls{0};
    boost::system::result<std::optional<gp_info>, std::string> find_gp(std::string_view) override {
        ++calls;
        return std::optional<gp_info>(gp_info{"1", "", "", "", "2", "", ""});
    }
    boost::system::result<std::optional<gp_info>, std::string> find_by_her_id(
        std::string_view) override {
        return std::optional<gp_info>();
    }
};

TEST(gp_directory_cache, answers_from_the_cache_until_expiry) {
    auto inner = std::make_unique<counting>();
    counting* raw = inner.get();
    auto now = std::chrono::steady_clock::now();
    auto cached = with_cache(std::move(inner), std::chrono::seconds(60), [&] { return now; });
    cached->find_gp("x");
    cached->find_gp("x");
    EXPECT_EQ(raw->calls.load(), 1);
    now += std::chrono::seconds(61);
    cached->find_gp("x");
    EXPECT_EQ(raw->calls.load(), 2);
}

TEST(fastlegeregisteret, parses_the_answer_the_no_gp_fault_and_other_faults) {
    auto ok = parse_flr_response(sample("get-patient-gp.xml"));
    ASSERT_TRUE(ok) << ok.error();
    EXPECT_EQ(ok->gp_her_id.value_or(""), "4657988");
    auto none = parse_flr_response(sample("get-patient-gp-not-found.xml"));
    ASSERT_TRUE(none) << none.error();
    EXPECT_FALSE(none->gp_her_id);
    auto bad = parse_flr_response(sample("get-patient-gp-invalid-nin.xml"));
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().find("patientNin er ugyldig"), std::string::npos) << bad.error();
    EXPECT_FALSE(parse_flr_response("<not xml"));
    EXPECT_FALSE(
        parse_flr_response("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>"));
}

// A fake Fastlegeregisteret: answers each request from the samples by the patient number asked.
class fake_flr {
public:
    fake_flr() : acceptor_(io_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {
        thread_ = std::thread([this] { serve(); });
    }
    ~fake_flr() {
        stop_ = true;
        boost::system::error_code ec;
        tcp::socket s(io_);
        s.connect(acceptor_.local_endpoint(), ec);
        thread_.join();
    }
    std::string url() const {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) +
               "/v2/flr/Basic";
    }
    std::atomic<int> requests{0};
    std::string last_auth, last_action, last_body;

private:
    void serve() {
        while (!stop_) {
            tcp::socket sock(io_);
            boost::system::error_code ec;
            acceptor_.accept(sock, ec);
            if (stop_ || ec) continue;
            beast::flat_buffer buf;
            http::request<http::string_body> req;
            http::read(sock, buf, req, ec);
            if (ec) continue;
            ++requests;
            last_auth = std::string(req[http::field::authorization]);
            last_action = std::string(req["SOAPAction"]);
            last_body = req.body();
            std::string file = last_body.find("14839134623") != std::string::npos
                                   ? "get-patient-gp.xml"
                               : last_body.find("21826210262") != std::string::npos
                                   ? "get-patient-gp-not-found.xml"
                                   : "get-patient-gp-invalid-nin.xml";
            http::response<http::string_body> res{file == "get-patient-gp.xml"
                                                      ? http::status::ok
                                                      : http::status::internal_server_error,
                                                  11};
            res.set(http::field::content_type, "application/soap+xml; charset=utf-8");
            res.body() = sample(file);
            res.prepare_payload();
            http::write(sock, res, ec);
        }
    }
    boost::asio::io_context io_;
    tcp::acceptor acceptor_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

TEST(fastlegeregisteret, client_asks_with_basic_auth_and_soap_action_and_completes_names_locally) {
    fake_flr server;
    flr_options o;
    o.url = server.url();
    o.username = "samband-test";
    o.password = "not-a-real-password";
    // The sample answers HER-id 4657988; the local file completes names only for its own HER-ids.
    auto dir = with_cache(open_fastlegeregisteret(o, open_file_directory(kDirectory)),
                          std::chrono::seconds(60));
    auto g = dir->find_gp("14839134623");
    ASSERT_TRUE(g) << g.error();
    ASSERT_TRUE(*g);
    EXPECT_EQ((*g)->gp_her_id, "4657988");
    EXPECT_EQ(server.last_auth, "Basic c2FtYmFuZC10ZXN0Om5vdC1hLXJlYWwtcGFzc3dvcmQ=");
    EXPECT_NE(server.last_action.find("IFlrReadOperations/GetPatientGPDetails"), std::string::npos);
    EXPECT_NE(server.last_body.find("<patientNin>14839134623</patientNin>"), std::string::npos);
    dir->find_gp("14839134623");
    EXPECT_EQ(server.requests.load(), 1) << "the second lookup must come from the cache";
    auto none = dir->find_gp("21826210262");
    ASSERT_TRUE(none) << none.error();
    EXPECT_FALSE(*none);
    auto bad = dir->find_gp("00000000000");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().find("ugyldig"), std::string::npos) << bad.error();
}

TEST(fastlegeregisteret, a_register_that_never_answers_fails_at_the_configured_timeout) {
    // A listening socket that never accepts: the connection and the request go through (the
    // kernel's backlog), the answer never comes.
    boost::asio::io_context io;
    tcp::acceptor silent(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    flr_options o;
    o.url = "http://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/v2/flr/Basic";
    o.timeout = std::chrono::milliseconds(1000);
    auto dir = open_fastlegeregisteret(o, nullptr);
    auto t0 = std::chrono::steady_clock::now();
    auto g = dir->find_gp("14839134623");
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    ASSERT_FALSE(g);
    EXPECT_NE(g.error().find("no answer within 1000 ms"), std::string::npos) << g.error();
    EXPECT_GE(took.count(), 900) << "fired early";
    EXPECT_LE(took.count(), 1100) << "fired late (configured 1000 ms, ±10 %)";
}

TEST(fastlegeregisteret, refuses_plain_http_except_on_loopback) {
    flr_options o;
    o.url = "http://flr.example.org/v2/flr/Basic";
    EXPECT_THROW(open_fastlegeregisteret(o, nullptr), std::runtime_error);
}

std::string write_temp(const std::string& name, const std::string& text) {
    std::string path = ::testing::TempDir() + name;
    std::ofstream(path) << text;
    return path;
}

// The Adresseregisteret's local file alone (the register's client is tested end to end against
// the fake register in tests/integration/nhn_test.cpp).
TEST(adresseregisteret, the_local_file_says_who_can_receive_and_why_not) {
    ar_options o;
    o.file = write_temp("ar-parties.json", R"({"parties": [
        {"her_id": "9900101", "name": "Lise Fastlege", "active": true, "valid": true,
         "edi_address": true},
        {"her_id": "9900102", "name": "Erik Allmenn", "active": false, "valid": true,
         "edi_address": true},
        {"her_id": "9900201", "name": "Ingrid Doktor", "active": true, "valid": true}]})");
    auto ar = open_adresseregisteret(o);
    auto yes = ar->check("9900101");
    ASSERT_TRUE(yes) << yes.error();
    EXPECT_TRUE(yes->can_receive) << yes->reason;
    auto inactive = ar->check("9900102");
    ASSERT_TRUE(inactive);
    EXPECT_FALSE(inactive->can_receive);
    EXPECT_EQ(inactive->reason,
              "HER-id 9900102 (Erik Allmenn) is not active in the Adresseregisteret (local file)");
    auto no_edi = ar->check("9900201");
    ASSERT_TRUE(no_edi);
    EXPECT_EQ(no_edi->reason, "HER-id 9900201 (Ingrid Doktor) has no EDI address (local file)");
    auto unknown = ar->check("9900999");
    ASSERT_TRUE(unknown);
    EXPECT_FALSE(unknown->can_receive);
    EXPECT_EQ(unknown->reason, "HER-id 9900999 is not in the local file");
    auto garbage = ar->check("99<x>");
    ASSERT_TRUE(garbage);
    EXPECT_FALSE(garbage->can_receive);
    EXPECT_NE(garbage->reason.find("is not a number"), std::string::npos);
}

TEST(adresseregisteret, a_bad_file_or_no_source_is_refused_naming_the_problem) {
    ar_options none;
    EXPECT_THROW(open_adresseregisteret(none), std::runtime_error);
    ar_options bad;
    bad.file = write_temp("ar-bad.json", R"({"parties": [{"her_id": 9900101, "active": true}]})");
    try {
        open_adresseregisteret(bad);
        ADD_FAILURE() << "a HER-id that is not a string was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("parties[0] needs a string her_id"), std::string::npos)
            << e.what();
    }
    ar_options flag;
    flag.file = write_temp("ar-flag.json", R"({"parties": [{"her_id": "1", "active": "yes"}]})");
    EXPECT_THROW(open_adresseregisteret(flag), std::runtime_error);
    ar_options type;
    type.file = write_temp("ar-type.json",
                           R"({"parties": [{"her_id": "1", "message_types": ["DIALOG_HEI"]}]})");
    try {
        open_adresseregisteret(type);
        ADD_FAILURE() << "an unknown message type was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(
            std::string(e.what()).find("parties[0].message_types: \"DIALOG_HEI\" is not one of"),
            std::string::npos)
            << e.what();
    }
}

// Unreachable register, no file: an error (retry), never a verdict; nothing is cached.
TEST(adresseregisteret, an_unreachable_register_without_a_file_is_an_error) {
    ar_options o;
    o.http.url = "http://127.0.0.1:1/ar";
    o.http.timeout = std::chrono::milliseconds(1000);
    auto ar = open_adresseregisteret(o);
    auto r = ar->check("9900101");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().rfind("Adresseregisteret: cannot connect to http://127.0.0.1:1/ar: ", 0),
              0u)
        << r.error();
}

// An unreadable CA file stops the start, naming the register and the file (it was ignored before
// and every lookup then failed in the TLS handshake).
TEST(fastlegeregisteret, an_unreadable_ca_file_is_an_error_at_start) {
    flr_options o;
    o.url = "https://flr.example.org/v2/flr/Basic";
    o.ca_file = "/nonexistent/flr-ca.pem";
    try {
        open_fastlegeregisteret(o, nullptr);
        ADD_FAILURE() << "a missing CA file was accepted";
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_EQ(what.rfind("Fastlegeregisteret: ", 0), 0u) << what;
        EXPECT_NE(what.find("/nonexistent/flr-ca.pem"), std::string::npos) << what;
    }
}

}  // namespace
}  // namespace samband::directory
