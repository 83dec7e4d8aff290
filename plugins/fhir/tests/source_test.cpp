// The fhir source: its parser on hostile and invalid input (each refusal names the element), and
// the endpoint in the real daemon: 201/200 only after the commit, a repeat stored once, 400 with
// an OperationOutcome naming the path, 401 without the bearer token, 413 over the size limit.
#include "fhir/inbound.hpp"
#include "fhir_peer.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>

#include <gtest/gtest.h>

namespace samband::fhir::test {
namespace {

using samband::test::daemon_process;
using samband::test::write_file;

std::string phq9(const std::string& items = "2,2,1,2,2,1,2,1,1", const std::string& extra = "") {
    std::string out = R"({"resourceType":"QuestionnaireResponse",)" + extra +
                      R"("identifier":{"system":"urn:oid:2.16.578.1.12.4.1.999","value":"qr-1"},
      "questionnaire":"http://loinc.org/q/44249-1","status":"completed",
      "subject":{"identifier":{"system":"urn:oid:2.16.578.1.12.4.1.4.1","value":"14839134623"}},
      "basedOn":[{"identifier":{"value":"T-1001"}}],"authored":"2026-09-22T10:00:00+02:00",
      "item":[)";
    int n = 0;
    std::string rest = items;
    while (!rest.empty()) {
        auto c = rest.find(',');
        std::string v = rest.substr(0, c);
        rest = c == std::string::npos ? "" : rest.substr(c + 1);
        if (n) out += ",";
        out +=
            R"({"linkId":")" + std::to_string(++n) + R"(","answer":[{"valueInteger":)" + v + "}]}";
    }
    return out + "]}";
}

std::string data_of(const inbound_event& e, const char* pointer) {
    rapidjson::Document d;
    d.Parse(e.envelope_json.c_str());
    const auto* v = rapidjson::Pointer(pointer).Get(d);
    if (!v) return "<missing>";
    if (v->IsString()) return v->GetString();
    if (v->IsInt()) return std::to_string(v->GetInt());
    return "<other>";
}

inbound_options synthetic() {
    inbound_options o;
    o.allow_synthetic_ids = true;
    return o;
}

TEST(fhir_inbound, a_phq9_questionnaire_response_is_scored_by_the_item_sum) {
    auto r = parse_incoming("/QuestionnaireResponse", phq9(), synthetic());
    ASSERT_TRUE(r) << r.error().text();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ(data_of((*r)[0], "/type"), "rph.assessment.scored");
    EXPECT_EQ(data_of((*r)[0], "/data/instrument"), "PHQ-9");
    EXPECT_EQ(data_of((*r)[0], "/data/score"), "14");
    EXPECT_EQ(data_of((*r)[0], "/data/items/8"), "1");
    EXPECT_EQ(data_of((*r)[0], "/data/treatment_id"), "T-1001");
    EXPECT_EQ(data_of((*r)[0], "/subject/fnr"), "14839134623");
    EXPECT_EQ(data_of((*r)[0], "/idempotency_key"),
              "fhir:QuestionnaireResponse:urn:oid:2.16.578.1.12.4.1.999|qr-1");
}

TEST(fhir_inbound, a_message_bundle_resolves_the_patient_and_takes_a_gad7_observation) {
    const std::string body = R"({"resourceType":"Bundle","type":"message","entry":[
      {"fullUrl":"urn:uuid:9b0c0d3a-0000-4000-8000-000000000001","resource":{"resourceType":"MessageHeader",
        "eventCoding":{"system":"urn:samband","code":"score"},"source":{"endpoint":"urn:tool"}}},
      {"fullUrl":"urn:uuid:9b0c0d3a-0000-4000-8000-000000000002","resource":{"resourceType":"Patient",
        "identifier":[{"system":"urn:oid:2.16.578.1.12.4.1.4.1","value":"14839134623"}]}},
      {"resource":{"resourceType":"Observation","status":"final",
        "code":{"coding":[{"system":"http://loinc.org","code":"70274-6"}]},
        "subject":{"reference":"urn:uuid:9b0c0d3a-0000-4000-8000-000000000002"},
        "encounter":{"reference":"EpisodeOfCare/T-1001"},
        "effectiveDateTime":"2026-09-22","valueInteger":16}}]})";
    auto r = parse_incoming("/$process-message", body, synthetic());
    ASSERT_TRUE(r) << r.error().text();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ(data_of((*r)[0], "/data/instrument"), "GAD-7");
    EXPECT_EQ(data_of((*r)[0], "/data/score"), "16");
    EXPECT_EQ(data_of((*r)[0], "/data/treatment_id"), "T-1001");
    EXPECT_EQ((*r)[0].path, "Bundle.entry[2].resource");
}

// The answer to $process-message is a valid message Bundle answering the request's header.
TEST(fhir_inbound, the_process_message_answer_is_a_valid_response_message) {
    SAMBAND_REQUIRE_TOOL("node");
    const std::string body = R"({"resourceType":"Bundle","type":"message","entry":[
      {"resource":{"resourceType":"MessageHeader","id":"req-1",
        "eventCoding":{"system":"urn:tool","code":"score"},"source":{"endpoint":"urn:tool"}}},
      {"resource":{"resourceType":"Observation","status":"final",
        "code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},
        "subject":{"identifier":{"system":"urn:oid:2.16.578.1.12.4.1.4.1","value":"14839134623"}},
        "basedOn":[{"identifier":{"value":"T-1"}}],"effectiveDateTime":"2026-09-22","valueInteger":3}}]})";
    ASSERT_TRUE(parse_incoming("/$process-message", body, synthetic()));
    const std::string answer = message_response(body, "accepted as event e-1");
    samband::test::temp_dir tmp;
    samband::test::write_file(tmp.path() / "answer.json", answer);
    auto [st, out] = validate({tmp.path() / "answer.json"});
    EXPECT_EQ(st, 0) << out << answer;
    rapidjson::Document d;
    d.Parse(answer.c_str());
    EXPECT_STREQ(d["entry"][0]["resource"]["response"]["identifier"].GetString(), "req-1");
    EXPECT_STREQ(d["entry"][0]["resource"]["response"]["code"].GetString(), "ok");
    EXPECT_STREQ(d["entry"][0]["resource"]["eventCoding"]["code"].GetString(), "score");
}

// Issue 15 item 3: a refusal names the element and the rule, never the value given there (the
// reason goes to the error store's list, the log and the OperationOutcome).
TEST(fhir_inbound, refusals_never_quote_the_value) {
    const std::string mark = "ZQXMARK";
    auto why = [](std::string_view target, const std::string& body) {
        auto r = parse_incoming(target, body, synthetic());
        EXPECT_FALSE(r) << body;
        return r ? std::string("<accepted>") : r.error().text();
    };
    std::string q = phq9();
    q.replace(q.find("http://loinc.org/q/44249-1"), 26, "http://x/" + mark);
    std::string fnr = phq9();
    fnr.replace(fnr.find("14839134623"), 11, "148391" + mark);
    std::string month = phq9();
    month.replace(month.find("14839134623"), 11, "14139134623");
    std::string obs = R"({"resourceType":"Observation","status":"final",
        "code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]},
        "subject":{"identifier":{"system":"urn:oid:2.16.578.1.12.4.1.4.1","value":"14839134623"}},
        "basedOn":[{"identifier":{"value":"T-1"}}],"effectiveDateTime":"2026-09-22",
        "valueInteger":"ZQXMARK"})";
    for (const auto& [target, body] : std::vector<std::pair<std::string, std::string>>{
             {"", q},
             {"", fnr},
             {"", obs},
             {"/QuestionnaireResponse", R"({"resourceType":"ZQXMARK"})"},
             {"", R"({"resourceType":"ZQXMARK"})"},
             {"/$process-message", R"({"resourceType":"ZQXMARK"})"},
             {"", R"({"resourceType":"Bundle","type":"transaction","entry":[
                  {"resource":{"resourceType":"ZQXMARK"}}]})"}}) {
        std::string text = why(target, body);
        EXPECT_EQ(text.find(mark), std::string::npos) << text;
        EXPECT_NE(text.find(':'), std::string::npos) << "names the element: " << text;
    }
    std::string text = why("", month);
    EXPECT_EQ(text.find("14"), std::string::npos) << text;
    EXPECT_NE(text.find("subject.identifier"), std::string::npos) << text;
}

TEST(fhir_inbound, invalid_and_hostile_input_is_refused_naming_the_element) {
    auto refused = [](std::string_view target, const std::string& body) {
        auto r = parse_incoming(target, body, synthetic());
        EXPECT_FALSE(r) << body;
        return r ? std::string("<accepted>") : r.error().text();
    };
    EXPECT_EQ(refused("", phq9("2,2,5,2,2,1,2,1,1")),
              "QuestionnaireResponse.item[2].answer[0].valueInteger: out of range (0–3)");
    EXPECT_EQ(refused("", phq9("2,2,1")),
              "QuestionnaireResponse.item: PHQ-9 needs 9 answered items, found 3");
    EXPECT_EQ(refused("", phq9("2,2,1,2,2,1,2,1,1", R"("colour":"blue",)")),
              "QuestionnaireResponse.colour: unknown element \"colour\" in QuestionnaireResponse");
    EXPECT_EQ(refused("/QuestionnaireResponse", R"({"resourceType":"Patient"})"),
              "resourceType: not the resource type of /QuestionnaireResponse");
    EXPECT_NE(refused("", R"({"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Claim"}}]})")
                  .find("Bundle.entry[0].resource.resourceType: this resource type is not "
                        "accepted"),
              std::string::npos);
    std::string fnr = phq9();
    fnr.replace(fnr.find("14839134623"), 11, "14839134624");
    EXPECT_NE(refused("", fnr).find("QuestionnaireResponse.subject.identifier.value:"),
              std::string::npos);
    std::string deep(200, '[');
    EXPECT_NE(refused("", deep).find("nested deeper than 32"), std::string::npos);
    const std::string nul("{\"resourceType\":\"Observation\"\0}", 31);
    EXPECT_NE(refused("", nul).find("a NUL byte at offset 29"), std::string::npos);
    EXPECT_NE(refused("", "[1,2]").find("must be a FHIR resource"), std::string::npos);
    inbound_options small = synthetic();
    small.max_bytes = 100;
    auto big = parse_incoming("", phq9(), small);
    ASSERT_FALSE(big);
    EXPECT_NE(big.error().text().find("over the limit of 100"), std::string::npos);
    // An OperationOutcome names the path as its expression.
    auto r = parse_incoming("", phq9("2,2,5,2,2,1,2,1,1"), synthetic());
    ASSERT_FALSE(r);
    rapidjson::Document oo;
    oo.Parse(operation_outcome(r.error()).c_str());
    EXPECT_STREQ(oo["issue"][0]["expression"][0].GetString(),
                 "QuestionnaireResponse.item[2].answer[0].valueInteger");
}

class fhir_source_test : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = tmp_.path();
        write_file(root_ / "token", "s3cret-test-token\n");
        write_file(root_ / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + samband::test::plugin_dir() +
                                               R"("],
  "schemas_dir": ")" + samband::test::source_dir() +
                                               R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "secrets": {"fhir-token": {"file": ")" + (root_ / "token").string() +
                                               R"("}},
  "endpoints": {
    "fhir-in": {"plugin": "fhir", "config": {"listen": {"address": "127.0.0.1:0",
        "port_file": ")" + (root_ / "fhir.port").string() +
                                               R"(", "base_path": "/fhir",
        "max_body_bytes": 65536, "allow_synthetic_ids": true,
        "bearer_token_secrets": ["fhir-token"]}}},
    "journal": {"plugin": "file", "config": {"outbox": "journal"}}
  },
  "routes": [{"name": "scores", "match": {"type": "rph.assessment.scored", "source": "fhir-in"},
              "to": ["journal"]}]
})");
        daemon_ = std::make_unique<daemon_process>(root_ / "samband.json", root_);
        ASSERT_TRUE(daemon_->start()) << daemon_->log();
        ASSERT_TRUE(
            wait_for([&] { return fs::exists(root_ / "fhir.port"); }, std::chrono::seconds(10)));
        hostport_ = "127.0.0.1:" + std::to_string(std::stoi(read_file(root_ / "fhir.port")));
    }
    samband::test::http_response post(const std::string& path, const std::string& body,
                                      const std::string& token = "s3cret-test-token") {
        return samband::test::http(hostport_, "POST", "/fhir" + path, body, token);
    }
    std::string journal() {
        std::string all;
        std::error_code ec;
        for (auto& e : fs::directory_iterator(root_ / "journal", ec))
            all += read_file(e.path()) + "\n";
        return all;
    }
    static int count(const std::string& text, const std::string& what) {
        int n = 0;
        for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
        return n;
    }

    samband::test::temp_dir tmp_;
    fs::path root_;
    std::unique_ptr<daemon_process> daemon_;
    std::string hostport_;
};

TEST_F(fhir_source_test, a_questionnaire_response_is_answered_201_after_commit_and_stored_once) {
    auto r = post("/QuestionnaireResponse", phq9());
    EXPECT_EQ(r.status, 201) << r.body;
    EXPECT_NE(r.body.find("accepted as event "), std::string::npos) << r.body;
    // Committed before the answer: the journal sink gets the scored event.
    ASSERT_TRUE(
        wait_for([&] { return count(journal(), "\"score\":14") == 1; }, std::chrono::seconds(20)))
        << journal() << daemon_->log();
    auto again = post("/QuestionnaireResponse", phq9());
    EXPECT_EQ(again.status, 201) << again.body;
    EXPECT_NE(again.body.find("already known"), std::string::npos) << again.body;
    auto bundle = post(
        "", R"({"resourceType":"Bundle","type":"batch","entry":[{"resource":)" + phq9() + "}]}");
    EXPECT_EQ(bundle.status, 200) << bundle.body;
    EXPECT_NE(bundle.body.find("already known"), std::string::npos) << bundle.body;
    auto message = post("/$process-message",
                        R"({"resourceType":"Bundle","type":"message","entry":[{"resource":{
                              "resourceType":"MessageHeader","id":"m-1","eventUri":"urn:score",
                              "source":{"endpoint":"urn:tool"}}},{"resource":)" +
                            phq9() + "}]}");
    EXPECT_EQ(message.status, 200) << message.body;
    EXPECT_NE(message.body.find(R"("response":{"identifier":"m-1","code":"ok"})"),
              std::string::npos)
        << message.body;
    // One event, so one delivery to the journal (a second copy would have its own).
    auto list = daemon_->get("/api/v1/deliveries?destination=journal");
    EXPECT_EQ(count(list.body, "\"event_id\""), 1) << list.body;
    EXPECT_EQ(count(journal(), "\"score\":14"), 1) << journal();
}

TEST_F(fhir_source_test, bad_requests_get_an_operation_outcome_and_are_kept_in_the_error_store) {
    auto bad = post("/QuestionnaireResponse", phq9("2,2,5,2,2,1,2,1,1"));
    EXPECT_EQ(bad.status, 400) << bad.body;
    EXPECT_NE(bad.body.find("\"OperationOutcome\""), std::string::npos) << bad.body;
    EXPECT_NE(bad.body.find("QuestionnaireResponse.item[2].answer[0].valueInteger"),
              std::string::npos)
        << bad.body;
    auto no_token = post("/QuestionnaireResponse", phq9(), "");
    EXPECT_EQ(no_token.status, 401) << no_token.body;
    auto wrong_token = post("/QuestionnaireResponse", phq9(), "s3cret-test-tokeN");
    EXPECT_EQ(wrong_token.status, 401) << wrong_token.body;
    auto huge = post("/QuestionnaireResponse", std::string(70000, ' ') + phq9());
    EXPECT_EQ(huge.status, 413) << huge.body;
    auto deep = post("", std::string(100, '[') + std::string(100, ']'));
    EXPECT_EQ(deep.status, 400) << deep.body;
    EXPECT_NE(deep.body.find("nested deeper"), std::string::npos) << deep.body;
    // The two 400s are in the error store with their reasons (the 401s and the 413 are not: a
    // stranger's or an oversized body is not kept).
    auto errors = daemon_->get("/api/v1/errors?limit=100");
    rapidjson::Document errs;
    errs.Parse(errors.body.c_str());
    ASSERT_TRUE(errs.IsArray()) << errors.body;
    EXPECT_EQ(errs.Size(), 2u) << errors.body;
    EXPECT_NE(errors.body.find("POST /fhir/QuestionnaireResponse: QuestionnaireResponse.item[2]."
                               "answer[0].valueInteger: out of range (0–3)"),
              std::string::npos)
        << errors.body;
    EXPECT_NE(errors.body.find("nested deeper than 32"), std::string::npos) << errors.body;
    // The endpoint still works after all that, and only the good one is stored.
    EXPECT_EQ(post("/QuestionnaireResponse", phq9()).status, 201);
    ASSERT_TRUE(wait_for([&] { return count(journal(), "rph.assessment.scored") == 1; },
                         std::chrono::seconds(20)))
        << journal();
}

}  // namespace
}  // namespace samband::fhir::test
