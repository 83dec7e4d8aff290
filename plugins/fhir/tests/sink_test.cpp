// The fhir sink in the real daemon against @medplum/fhir-router (peer/server.js, which validates
// every resource it stores against the FHIR R4 definitions): a start note, a referral with a PDF
// and a score arrive as valid resources; a retried delivery and a kill -9 mid-flight leave no
// duplicate; a refusal (400 + OperationOutcome) is dead with the server's text.
#include "fhir_peer.hpp"

#include <rapidjson/document.h>

#include <gtest/gtest.h>

namespace samband::fhir::test {
namespace {

using samband::test::daemon_process;
using samband::test::drop_file;
using samband::test::source_dir;
using samband::test::write_file;

class fhir_sink_test : public ::testing::Test {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL("node");
        root_ = tmp_.path();
        server_ = std::make_unique<fhir_server>(root_);
        ASSERT_GT(server_->port(), 0) << server_->output();
        write_config();
    }

    void write_config(int attempt_timeout_ms = 20000, int backoff_max_ms = 1000) {
        const std::string src = source_dir();
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + samband::test::plugin_dir() +
                                               R"("],
  "schemas_dir": ")" + src + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "gp_directory": {"kind": "file", "path": ")" +
                                               src + R"(/config/demo/directory.json"},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 50}},
    "notes": {"plugin": "rph", "config": {"sender": {
        "organisation": {"name": "Testby kommune", "her_id": "9900001", "org_nr": "999000001"},
        "service": {"name": "Rask psykisk helsehjelp Testby", "her_id": "9900011"}}}},
    "fhir": {"plugin": "fhir", "config": {"base_url": ")" +
                                               server_->base() + R"(",
             "tls": {"allow_plain_http_loopback": true}, "timeout_ms": 10000},
             "policy": {"max_attempts": 20, "backoff_base_ms": 100,
                        "backoff_max_ms": )" + std::to_string(backoff_max_ms) +
                                               R"(,
                        "attempt_timeout_ms": )" +
                                               std::to_string(attempt_timeout_ms) + R"(}}
  },
  "routes": [
    {"name": "gp", "match": {"type": "rph.treatment.*", "source": "epj"}, "transforms": ["notes"],
     "to": ["fhir"], "recipient": "gp"},
    {"name": "journal", "match": {"type": "rph.assessment.scored", "source": "epj"},
     "transforms": ["notes"], "to": ["fhir"]},
    {"name": "referrals", "match": {"type": "rph.referral.received", "source": "epj"},
     "to": ["fhir"]}
  ]
})");
    }

    void drop_demo(const std::string& name) {
        const fs::path events = fs::path(source_dir()) / "config/demo/events";
        fs::create_directories(root_ / "inbox");
        if (name.find("referral") != std::string::npos &&
            !fs::exists(root_ / "inbox/henvisning-kari.pdf"))
            fs::copy_file(events / "henvisning-kari.pdf", root_ / "inbox/henvisning-kari.pdf");
        drop_file(root_ / "inbox", name, read_file(events / name));
    }

    std::vector<std::string> states(daemon_process& d) {
        auto r = d.get("/api/v1/deliveries?destination=fhir");
        rapidjson::Document doc;
        doc.Parse(r.body.c_str());
        std::vector<std::string> out;
        if (doc.HasParseError() || !doc.IsArray()) return out;
        for (auto& e : doc.GetArray()) out.push_back(e["state"].GetString());
        return out;
    }
    bool all_delivered(daemon_process& d, std::size_t n) {
        auto s = states(d);
        return s.size() == n &&
               std::all_of(s.begin(), s.end(), [](auto& x) { return x == "delivered"; });
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

TEST_F(fhir_sink_test, a_start_note_a_referral_with_a_pdf_and_a_score_arrive_as_valid_resources) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    drop_demo("01-kari-referral.json");
    drop_demo("02-kari-start.json");
    drop_demo("03-kari-score.json");
    ASSERT_TRUE(wait_for([&] { return all_delivered(d, 3); }, std::chrono::seconds(60)))
        << d.log() << server_->output();
    EXPECT_EQ(server_->count("Communication"), 1);
    EXPECT_EQ(server_->count("ServiceRequest"), 1);
    EXPECT_EQ(server_->count("DocumentReference"), 1);
    EXPECT_EQ(server_->count("Observation"), 1);

    // The note's text, the GP and the patient as the server stored them.
    auto all = server_->get("/__search/Communication").body;
    EXPECT_NE(all.find("Årsak til kontakt"), std::string::npos) << all;
    EXPECT_NE(all.find("urn:oid:2.16.578.1.12.4.1.2"), std::string::npos) << all;  // GP's HER-id
    auto obs = server_->get("/__search/Observation?code=http://loinc.org|44261-6").body;
    EXPECT_NE(obs.find("\"valueInteger\":11"), std::string::npos) << obs;
    EXPECT_NE(obs.find("\"moderat\""), std::string::npos) << obs;  // 11: 10–14
    // The PDF arrives bit-exact (base64 of the demo file's bytes).
    auto docs = server_->get("/__search/DocumentReference").body;
    rapidjson::Document dr;
    dr.Parse(docs.c_str());
    ASSERT_FALSE(dr.HasParseError());
    const auto& att = dr["entry"][0]["resource"]["content"][0]["attachment"];
    EXPECT_STREQ(att["contentType"].GetString(), "application/pdf");
    const auto pdf = read_file(fs::path(source_dir()) / "config/demo/events/henvisning-kari.pdf");
    EXPECT_EQ(att["size"].GetUint64(), pdf.size());
}

TEST_F(fhir_sink_test, server_errors_and_429_are_retried_without_a_duplicate) {
    // Two 503s, then a 429 with Retry-After: 1, then the server answers. The host's backoff is
    // at most 300 ms here, so a gap of a second after the 429 is the plugin honouring it.
    write_config(20000, 300);
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    ASSERT_EQ(server_
                  ->post("/__fault", R"({"sequence":[{"status":503},{"status":503},
                                            {"status":429,"retry_after":"1"}]})")
                  .status,
              200);
    drop_demo("03-kari-score.json");
    ASSERT_TRUE(wait_for([&] { return all_delivered(d, 1); }, std::chrono::seconds(60))) << d.log();
    EXPECT_EQ(stat("posts"), 4);  // 503, 503, 429, 200
    EXPECT_EQ(server_->count("Observation"), 1);
    rapidjson::Document st;
    st.Parse(server_->get("/__stats").body.c_str());
    ASSERT_EQ(st["post_ms"].Size(), 4u);
    const auto gap = st["post_ms"][3].GetInt64() - st["post_ms"][2].GetInt64();
    EXPECT_GE(gap, 950) << "Retry-After: 1 was not waited out";
    // The wait happened inside the third attempt: three attempts, not four.
    rapidjson::Document dl;
    dl.Parse(d.get("/api/v1/deliveries?destination=fhir").body.c_str());
    ASSERT_TRUE(dl.IsArray() && dl.Size() == 1u);
    EXPECT_EQ(dl[0]["attempts"].GetInt64(), 3);
}

TEST_F(fhir_sink_test, kill_9_while_the_server_holds_the_bundle_leaves_no_duplicate) {
    auto d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
    ASSERT_TRUE(d->start()) << d->log();
    // The server holds the next request 3 s, then stores it: the daemon dies before the answer.
    ASSERT_EQ(server_->post("/__fault", R"({"hang_ms":3000,"count":1})").status, 200);
    drop_demo("02-kari-start.json");
    ASSERT_TRUE(wait_for([&] { return stat("posts") >= 1; }, std::chrono::seconds(30))) << d->log();
    d->kill9();
    ASSERT_TRUE(
        wait_for([&] { return server_->count("Communication") == 1; }, std::chrono::seconds(20)));
    // Restarted, the daemon sends the same delivery again; the server recognises it.
    d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
    ASSERT_TRUE(d->start()) << d->log();
    ASSERT_TRUE(wait_for([&] { return all_delivered(*d, 1); }, std::chrono::seconds(60)))
        << d->log();
    EXPECT_GE(stat("posts"), 2);
    EXPECT_EQ(server_->count("Communication"), 1);
}

TEST_F(fhir_sink_test, a_refused_bundle_is_dead_with_the_operation_outcome_text) {
    daemon_process d(root_ / "samband.json", root_);
    ASSERT_TRUE(d.start()) << d.log();
    ASSERT_EQ(server_->post("/__fault", R"({"status":422,"count":1})").status, 200);
    drop_demo("03-kari-score.json");
    ASSERT_TRUE(wait_for(
        [&] {
            auto s = states(d);
            return s.size() == 1 && s[0] == "dead";
        },
        std::chrono::seconds(30)))
        << d.log();
    auto r = d.get("/api/v1/deliveries?destination=fhir&state=dead");
    EXPECT_NE(r.body.find("HTTP 422: injected fault 422"), std::string::npos) << r.body;
    EXPECT_EQ(stat("posts"), 1);  // not retried
}

}  // namespace
}  // namespace samband::fhir::test
