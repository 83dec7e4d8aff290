// The http source's JSON Pointer mapping: a vendor's JSON becomes an envelope, and every refusal
// names the vendor's field.
#include "mapping.hpp"

#include <samband/json.hpp>

#include <gtest/gtest.h>

#include <rapidjson/pointer.h>

namespace {

using samband::http_map::map_body;
using samband::http_map::mapping;
using samband::http_map::parse_mapping;

mapping from(const char* json) {
    rapidjson::Document d;
    EXPECT_EQ(samband::json::parse(json, d), "");
    return parse_mapping(d, "mappings[0]");
}

const char* kRules = R"({
  "path": "/v1/acme/started", "type": "rph.treatment.started",
  "idempotency_key": "/eventId", "occurred_at": "/at",
  "fields": {
    "/subject/fnr": "/patient/ssn",
    "/data/treatment_id": "/episode/id",
    "/data/goals": "/episode/goals",
    "/data/therapist/hpr": {"from": "/clinician/hpr"},
    "/data/therapist/title": {"from": "/clinician/title", "optional": true},
    "/data/consent_gp": {"value": "given"}
  }
})";

TEST(http_mapping, maps_a_vendor_body_to_an_envelope) {
    auto m = from(kRules);
    auto r = map_body(m, R"({"eventId":"acme-77","at":"2026-11-02T09:00:00+01:00",
        "patient":{"ssn":"14839134623"},"episode":{"id":"E-1","goals":["sove bedre"]},
        "clinician":{"hpr":"1234567"}})",
                      "", "2026-12-01T00:00:00Z");
    ASSERT_EQ(r.error, "");
    rapidjson::Document d;
    ASSERT_EQ(samband::json::parse(r.envelope, d), "");
    EXPECT_STREQ(d["type"].GetString(), "rph.treatment.started");
    EXPECT_STREQ(d["idempotency_key"].GetString(), "acme-77");
    EXPECT_STREQ(d["occurred_at"].GetString(), "2026-11-02T09:00:00+01:00");
    EXPECT_STREQ(rapidjson::Pointer("/subject/fnr").Get(d)->GetString(), "14839134623");
    EXPECT_STREQ(rapidjson::Pointer("/data/treatment_id").Get(d)->GetString(), "E-1");
    EXPECT_STREQ(rapidjson::Pointer("/data/goals/0").Get(d)->GetString(), "sove bedre");
    EXPECT_STREQ(rapidjson::Pointer("/data/therapist/hpr").Get(d)->GetString(), "1234567");
    EXPECT_EQ(rapidjson::Pointer("/data/therapist/title").Get(d), nullptr);  // optional, absent
    EXPECT_STREQ(rapidjson::Pointer("/data/consent_gp").Get(d)->GetString(), "given");
}

// Issue 15 item 3: every refusal names the vendor's field and the rule, never a value in the body
// (the reason goes to the error store's list, the log and the 422 body).
TEST(http_mapping, refusals_never_quote_a_value) {
    auto m = from(kRules);
    const std::string mark = "ZQXMARK";
    for (const char* body :
         {R"({"eventId":{"v":"ZQXMARK"},"at":"x","patient":{"ssn":"ZQXMARK"}})",
          R"({"eventId":"","at":"ZQXMARK","patient":{"ssn":"ZQXMARK"}})",
          R"({"eventId":"k","at":["ZQXMARK"],"patient":{"ssn":"ZQXMARK"}})",
          R"({"eventId":"k","at":"2026-11-02","patient":"ZQXMARK"})",
          R"({"eventId":"k","at":"2026-11-02","patient":{"ssn":"ZQXMARK"},"episode":"ZQXMARK"})",
          R"({"ZQXMARK": )", R"(["ZQXMARK"])"}) {
        auto r = map_body(m, body, "", "2026-12-01T00:00:00Z");
        ASSERT_NE(r.error, "") << body;
        EXPECT_EQ(r.error.find(mark), std::string::npos) << r.error;
    }
}

TEST(http_mapping, the_header_key_wins_and_the_time_of_receipt_fills_in) {
    auto m = from(R"({"path":"/x","type":"rph.session.attended",
                      "fields":{"/data/treatment_id":"/case"}})");
    auto r = map_body(m, R"({"case":"c-1"})", "hdr-key-1", "2026-12-01T00:00:00Z");
    ASSERT_EQ(r.error, "");
    rapidjson::Document d;
    ASSERT_EQ(samband::json::parse(r.envelope, d), "");
    EXPECT_STREQ(d["idempotency_key"].GetString(), "hdr-key-1");
    EXPECT_STREQ(d["occurred_at"].GetString(), "2026-12-01T00:00:00Z");
    auto none = map_body(m, R"({"case":"c-1"})", "", "2026-12-01T00:00:00Z");
    EXPECT_NE(none.error.find("no Idempotency-Key header"), std::string::npos) << none.error;
}

TEST(http_mapping, refusals_name_the_vendors_field) {
    auto m = from(kRules);
    auto missing =
        map_body(m, R"({"eventId":"e","at":"2026-11-02T09:00:00Z","patient":{}})", "", "now");
    EXPECT_EQ(missing.envelope, "");
    EXPECT_EQ(missing.error, "field /patient/ssn (for /subject/fnr) is missing");
    auto no_key = map_body(m, R"({"at":"x"})", "", "now");
    EXPECT_EQ(no_key.error, "field /eventId (the idempotency key) is missing");
    auto bad_time = map_body(m, R"({"eventId":"e","at":5})", "", "now");
    EXPECT_EQ(bad_time.error, "field /at (occurred_at) must be a string");
    EXPECT_NE(map_body(m, "\x01\xff junk", "", "now").error.find("the body is not JSON"),
              std::string::npos);
    EXPECT_EQ(map_body(m, "[1,2]", "", "now").error, "the body must be a JSON object");
    std::string deep(100, '[');
    EXPECT_NE(map_body(m, "{\"a\":" + deep, "", "now").error.find("deeper than"),
              std::string::npos);
}

TEST(http_mapping, bad_rules_are_refused_with_their_json_path) {
    auto bad = [](const char* json) {
        try {
            from(json);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_EQ(bad(R"({"type":"t","fields":{"/a":"/b"}})"), "mappings[0].path is required");
    EXPECT_EQ(bad(R"({"path":"/p","type":"t","fields":{"a":"/b"}})"),
              "mappings[0].fields[\"a\"]: \"a\" is not a JSON Pointer (e.g. \"/a/b\")");
    EXPECT_EQ(bad(R"({"path":"/p","type":"t","fields":{"/type":"/b"}})"),
              "mappings[0].fields[\"/type\"]: the mapping sets /type itself");
    EXPECT_EQ(bad(R"({"path":"/p","type":"t","fields":{}})"),
              "mappings[0].fields must be an object of envelope pointer -> rule");
    EXPECT_EQ(bad(R"({"path":"/p","type":"t","fields":{"/a":7}})")
                  .rfind("mappings[0].fields[\"/a\"] must be", 0),
              0u);
}

TEST(http_mapping, a_rule_cannot_write_through_a_string) {
    auto m = from(R"({"path":"/x","type":"t","fields":{"/data":"/a","/data/b":"/b"}})");
    auto r = map_body(m, R"({"a":"text","b":1})", "k", "now");
    EXPECT_EQ(r.error, "rule /data/b goes through a value that is not an object");
}

}  // namespace
