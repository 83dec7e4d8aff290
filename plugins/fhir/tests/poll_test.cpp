// The fhir source polling a FHIR server (server.js) for new QuestionnaireResponses: each is taken
// once, and the cursor (_lastUpdated) survives a restart in the state file.
#include "fhir_peer.hpp"

#include <rapidjson/document.h>

#include <gtest/gtest.h>

namespace samband::fhir::test {
namespace {

using samband::test::daemon_process;
using samband::test::write_file;

std::string qr(int n, const std::string& items) {
    std::string it;
    int k = 0;
    for (char c : items) {
        if (k) it += ",";
        it += R"({"linkId":")" + std::to_string(++k) + R"(","answer":[{"valueInteger":)" +
              std::string(1, c) + "}]}";
    }
    return R"({"resourceType":"QuestionnaireResponse",
      "identifier":{"system":"urn:oid:2.16.578.1.12.4.1.999","value":"poll-)" +
           std::to_string(n) + R"("},
      "questionnaire":"http://loinc.org/q/44249-1","status":"completed",
      "subject":{"identifier":{"system":"urn:oid:2.16.578.1.12.4.1.4.1","value":"14839134623"}},
      "basedOn":[{"identifier":{"value":"T-1001"}}],"authored":"2026-09-22T10:00:00+02:00",
      "item":[)" +
           it + "]}";
}

class fhir_poll_test : public ::testing::Test {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL("node");
        root_ = tmp_.path();
        server_ = std::make_unique<fhir_server>(root_);
        ASSERT_GT(server_->port(), 0) << server_->output();
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + samband::test::plugin_dir() +
                                               R"("],
  "schemas_dir": ")" + samband::test::source_dir() +
                                               R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {
    "fhir-poll": {"plugin": "fhir", "config": {"base_url": ")" +
                                               server_->base() + R"(",
        "tls": {"allow_plain_http_loopback": true},
        "poll": {"state_file": ")" + (root_ / "cursor.json").string() +
                                               R"(",
                 "interval_ms": 100, "resource_types": ["QuestionnaireResponse"],
                 "allow_synthetic_ids": true}}},
    "journal": {"plugin": "file", "config": {"outbox": "journal"}}
  },
  "routes": [{"name": "scores", "match": {"type": "rph.assessment.scored"}, "to": ["journal"]}]
})");
    }
    int journal_count(daemon_process& d) {
        rapidjson::Document doc;
        doc.Parse(d.get("/api/v1/deliveries?destination=journal").body.c_str());
        return doc.IsArray() ? static_cast<int>(doc.Size()) : -1;
    }
    std::vector<std::string> gets() {
        rapidjson::Document doc;
        doc.Parse(server_->get("/__stats").body.c_str());
        std::vector<std::string> out;
        for (auto& g : doc["gets"].GetArray()) out.push_back(g.GetString());
        return out;
    }
    std::string last_get() {
        rapidjson::Document doc;
        doc.Parse(server_->get("/__stats").body.c_str());
        return doc.HasMember("last_get") ? doc["last_get"].GetString() : "";
    }

    samband::test::temp_dir tmp_;
    fs::path root_;
    std::unique_ptr<fhir_server> server_;
};

TEST_F(fhir_poll_test, new_questionnaire_responses_are_taken_once_and_the_cursor_survives) {
    ASSERT_EQ(server_->post("/QuestionnaireResponse", qr(1, "222122111")).status, 201);
    ASSERT_EQ(server_->post("/QuestionnaireResponse", qr(2, "000000001")).status, 201);
    auto d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
    ASSERT_TRUE(d->start()) << d->log();
    ASSERT_TRUE(wait_for([&] { return journal_count(*d) == 2; }, std::chrono::seconds(30)))
        << d->log();
    ASSERT_TRUE(
        wait_for([&] { return fs::exists(root_ / "cursor.json"); }, std::chrono::seconds(10)));
    const std::string cursor = read_file(root_ / "cursor.json");
    EXPECT_NE(cursor.find("\"QuestionnaireResponse\":\"20"), std::string::npos) << cursor;
    // Polled again and again: nothing new, nothing twice.
    ASSERT_TRUE(wait_for([&] { return last_get().find("_lastUpdated=ge") != std::string::npos; },
                         std::chrono::seconds(10)));
    EXPECT_EQ(journal_count(*d), 2);
    EXPECT_EQ(d->stop(), 0);
    const std::size_t before = gets().size();
    // The cursor as the first request after the restart must carry it (2026-…Z, ':' kept).
    const auto at = cursor.find("\"QuestionnaireResponse\":\"") + 25;
    const std::string since = cursor.substr(at, cursor.find('"', at) - at);

    // While Samband is down a third arrives; after the restart only it is new.
    ASSERT_EQ(server_->post("/QuestionnaireResponse", qr(3, "333333333")).status, 201);
    d = std::make_unique<daemon_process>(root_ / "samband.json", root_);
    ASSERT_TRUE(d->start()) << d->log();
    ASSERT_TRUE(wait_for([&] { return journal_count(*d) == 3; }, std::chrono::seconds(30)))
        << d->log();
    // The cursor moves after the commits of the page, which can be after the delivery.
    EXPECT_TRUE(wait_for([&] { return read_file(root_ / "cursor.json") != cursor; },
                         std::chrono::seconds(10)))
        << read_file(root_ / "cursor.json");
    auto all = gets();
    ASSERT_GT(all.size(), before);
    EXPECT_NE(all[before].find("_lastUpdated=ge" + since), std::string::npos)
        << all[before] << " (cursor " << since << ")";
    auto scores = d->get("/api/v1/deliveries?destination=journal");
    EXPECT_EQ(journal_count(*d), 3) << scores.body;
}

}  // namespace
}  // namespace samband::fhir::test
