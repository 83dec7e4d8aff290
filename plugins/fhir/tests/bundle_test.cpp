// The sink's mapping: every Bundle it writes is valid FHIR R4 (checked by @medplum/core with the
// official definitions), carries the Norwegian identifier systems, and is the same bytes for the
// same event (so a retry names the same resources).
#include "fhir/bundle.hpp"
#include "fhir_peer.hpp"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>

#include <gtest/gtest.h>

namespace samband::fhir::test {
namespace {

const std::string kNote = R"({
  "schema": "samband.event/1", "id": "0192f7c8-1111-7000-8000-000000000001",
  "type": "rph.treatment.started", "occurred_at": "2026-09-08T10:15:00+02:00",
  "subject": {"fnr": "14839134623", "name": {"given": "Kari", "family": "Nordmann"}},
  "data": {"treatment_id": "T-1001", "consent_gp": "given"},
  "note": {"kind": "oppstartsnotat", "title": "Oppstartsnotat fra Rask psykisk helsehjelp Testby",
    "message_type": "DIALOG_HELSEFAGLIG", "text": "Oppstartsnotat\n\nÅrsak til kontakt\nSøvnvansker.",
    "issued_at": "2026-09-08T10:15:00+02:00",
    "sender": {"organisation": {"name": "Testby kommune", "her_id": "9900001", "org_nr": "999000001"},
               "service": {"name": "Rask psykisk helsehjelp Testby", "her_id": "9900011"},
               "therapist": {"given_name": "Marte", "family_name": "Terapeut", "title": "Psykolog",
                             "hpr": "9911001", "phone": "+4799000001"}},
    "receiver": {"organisation": {"name": "Fjordlegene legesenter", "her_id": "9900100"},
                 "person": {"given_name": "Lise", "family_name": "Fastlege", "her_id": "9900101"}},
    "patient": {"id": "14839134623", "id_type": "FNR"}}})";

const std::string kReferral = R"({
  "schema": "samband.event/1", "id": "0192f7c8-1111-7000-8000-000000000002",
  "type": "rph.referral.received", "occurred_at": "2026-09-01T09:00:00+02:00",
  "subject": {"dnr": "41018012345", "name": {"given": "Ola", "family": "Nordmann"}},
  "data": {"treatment_id": "T-1001", "referral_id": "HEN-5501", "received_at": "2026-09-01",
           "from": {"her_id": "9900101", "name": "Lise Fastlege"},
           "reason": "Vedvarende nedstemthet.", "text": "Henvises til RPH."}})";

const std::string kScore = R"({
  "schema": "samband.event/1", "id": "0192f7c8-1111-7000-8000-000000000003",
  "type": "rph.assessment.scored", "occurred_at": "2026-09-08T10:15:00+02:00",
  "subject": {"fnr": "14839134623"},
  "data": {"treatment_id": "T-1001", "instrument": "phq9", "score": 14,
           "administered_at": "2026-09-08T10:15", "phase": "start",
           "items": [2, 2, 1, 2, 2, 1, 2, 1, 1]}})";

const std::string kSession = R"({
  "schema": "samband.event/1", "id": "0192f7c8-1111-7000-8000-000000000004",
  "type": "rph.session.attended", "occurred_at": "2026-09-15T10:00:00+02:00",
  "subject": {"fnr": "14839134623"},
  "data": {"treatment_id": "T-1001", "session_at": "2026-09-15", "kind": "individuell",
           "attended": true, "content": "Aktivitetsplan."}})";

class fhir_bundle_test : public ::testing::Test {
protected:
    void SetUp() override { SAMBAND_REQUIRE_TOOL("node"); }

    rapidjson::Document build_ok(const std::string& env,
                                 const std::vector<outbound_attachment>& atts = {}) {
        auto b = build_bundle(env, atts);
        EXPECT_TRUE(b) << (b ? "" : b.error().text());
        rapidjson::Document d;
        if (!b) return d;
        d.Parse(b->json.c_str());
        EXPECT_FALSE(d.HasParseError());
        const auto file = tmp_.path() / ("bundle-" + std::to_string(n_++) + ".json");
        samband::test::write_file(file, b->json);
        auto [st, out] = validate({file});
        EXPECT_EQ(st, 0) << out << "\n" << b->json;
        return d;
    }
    static std::string at(const rapidjson::Document& d, const char* pointer) {
        const auto* v = rapidjson::Pointer(pointer).Get(d);
        return v && v->IsString() ? v->GetString() : std::string("<missing>");
    }

    samband::test::temp_dir tmp_;
    int n_ = 0;
};

TEST_F(fhir_bundle_test, a_start_note_is_a_valid_communication_with_norwegian_identifiers) {
    auto d = build_ok(kNote);
    EXPECT_EQ(at(d, "/type"), "transaction");
    ASSERT_EQ(d["entry"].Size(), 1u);
    EXPECT_EQ(at(d, "/entry/0/resource/resourceType"), "Communication");
    EXPECT_EQ(at(d, "/entry/0/resource/subject/identifier/system"),
              "urn:oid:2.16.578.1.12.4.1.4.1");
    EXPECT_EQ(at(d, "/entry/0/resource/subject/identifier/value"), "14839134623");
    EXPECT_EQ(at(d, "/entry/0/resource/recipient/0/identifier/system"),
              "urn:oid:2.16.578.1.12.4.1.2");
    EXPECT_EQ(at(d, "/entry/0/resource/recipient/0/identifier/value"), "9900101");
    EXPECT_EQ(at(d, "/entry/0/resource/sender/identifier/value"), "9900011");
    EXPECT_EQ(at(d, "/entry/0/resource/payload/0/contentString"),
              "Oppstartsnotat\n\nÅrsak til kontakt\nSøvnvansker.");
    EXPECT_EQ(at(d, "/entry/0/request/method"), "POST");
    const std::string ident = at(d, "/entry/0/resource/identifier/0/value");
    EXPECT_EQ(at(d, "/entry/0/request/ifNoneExist"), "identifier=urn:samband:id|" + ident);
    // The fullUrl is not the identifier (servers rewrite every occurrence of a fullUrl).
    EXPECT_EQ(at(d, "/entry/0/fullUrl").find(ident), std::string::npos);
}

TEST_F(fhir_bundle_test, the_same_event_gives_the_same_bytes_and_another_event_other_ids) {
    auto a = build_bundle(kNote, {});
    auto b = build_bundle(kNote, {});
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->json, b->json);
    std::string other = kNote;
    other.replace(other.find("000000000001"), 12, "000000000009");
    auto c = build_bundle(other, {});
    ASSERT_TRUE(c);
    EXPECT_NE(c->primary_identifier, a->primary_identifier);
}

TEST_F(fhir_bundle_test, a_referral_with_a_pdf_is_a_service_request_and_a_document_reference) {
    std::string pdf = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";
    auto d = build_ok(kReferral, {{"henvisning.pdf", "application/pdf", pdf}});
    ASSERT_EQ(d["entry"].Size(), 2u);
    EXPECT_EQ(at(d, "/entry/0/resource/resourceType"), "ServiceRequest");
    EXPECT_EQ(at(d, "/entry/0/resource/subject/identifier/system"),
              "urn:oid:2.16.578.1.12.4.1.4.2");  // D-number
    EXPECT_EQ(at(d, "/entry/0/resource/supportingInfo/0/reference"), at(d, "/entry/1/fullUrl"));
    EXPECT_EQ(at(d, "/entry/1/resource/resourceType"), "DocumentReference");
    EXPECT_EQ(at(d, "/entry/1/resource/content/0/attachment/contentType"), "application/pdf");
    EXPECT_EQ(at(d, "/entry/1/resource/context/related/0/reference"), at(d, "/entry/0/fullUrl"));
    EXPECT_EQ(d["entry"][1]["resource"]["content"][0]["attachment"]["size"].GetUint64(),
              pdf.size());
}

TEST_F(fhir_bundle_test,
       a_phq9_score_is_a_loinc_observation_with_band_and_a_questionnaire_response) {
    auto d = build_ok(kScore);
    ASSERT_EQ(d["entry"].Size(), 2u);
    EXPECT_EQ(at(d, "/entry/0/resource/code/coding/0/system"), "http://loinc.org");
    EXPECT_EQ(at(d, "/entry/0/resource/code/coding/0/code"), "44261-6");
    EXPECT_EQ(d["entry"][0]["resource"]["valueInteger"].GetInt(), 14);
    EXPECT_EQ(at(d, "/entry/0/resource/interpretation/0/text"), "moderat");
    EXPECT_EQ(at(d, "/entry/0/resource/effectiveDateTime"), "2026-09-08");  // no zone: date only
    EXPECT_EQ(at(d, "/entry/1/resource/resourceType"), "QuestionnaireResponse");
    EXPECT_EQ(d["entry"][1]["resource"]["item"].Size(), 9u);
    EXPECT_EQ(at(d, "/entry/0/resource/derivedFrom/0/reference"), at(d, "/entry/1/fullUrl"));

    std::string gad = kScore;
    gad.replace(gad.find("phq9"), 4, "GAD-7");
    gad.replace(gad.find("\"score\": 14"), 11, "\"score\": 16");
    gad.replace(gad.find(",\n           \"items\""),
                gad.find("]}}") - gad.find(",\n           \"items\"") + 1, "");
    auto g = build_ok(gad);
    ASSERT_EQ(g["entry"].Size(), 1u);
    EXPECT_EQ(at(g, "/entry/0/resource/code/coding/0/code"), "70274-6");
    EXPECT_EQ(at(g, "/entry/0/resource/interpretation/0/text"), "alvorlig");
}

TEST_F(fhir_bundle_test, a_session_is_a_journal_document_reference) {
    auto d = build_ok(kSession);
    ASSERT_EQ(d["entry"].Size(), 1u);
    EXPECT_EQ(at(d, "/entry/0/resource/resourceType"), "DocumentReference");
    EXPECT_EQ(at(d, "/entry/0/resource/date"), "2026-09-15T10:00:00+02:00");
    EXPECT_EQ(at(d, "/entry/0/resource/content/0/attachment/contentType"),
              "text/plain; charset=utf-8");
}

// The validator the other cases rely on does refuse what is not FHIR R4.
TEST_F(fhir_bundle_test, the_validator_refuses_an_invalid_resource) {
    const auto file = tmp_.path() / "bad.json";
    samband::test::write_file(file, R"({"resourceType":"Observation","status":"final",
        "code":{"text":"PHQ-9"},"valueInteger":"14","unknownField":1})");
    auto [st, out] = validate({file});
    EXPECT_EQ(st, 1) << out;
    EXPECT_NE(out.find("Observation.unknownField"), std::string::npos) << out;
    EXPECT_NE(out.find("Observation.value[x]"), std::string::npos) << out;
}

TEST_F(fhir_bundle_test, what_cannot_be_mapped_is_refused_naming_the_field) {
    std::string no_subject = kSession;
    no_subject.replace(no_subject.find("\"subject\": {\"fnr\": \"14839134623\"}"), 33,
                       "\"subject\": {}");
    auto a = build_bundle(no_subject, {});
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().text(), "/subject: fnr or dnr is required");

    std::string consent = kSession;
    consent.replace(consent.find("rph.session.attended"), 20, "rph.consent.changed");
    auto b = build_bundle(consent, {});
    ASSERT_FALSE(b);
    EXPECT_EQ(b.error().text(), "/type: event type \"rph.consent.changed\" has no FHIR mapping");

    std::string start = kNote;
    start.replace(start.find("\"note\""), 6, "\"other\"");
    auto c = build_bundle(start, {});
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().text().find("/note: needs the rph transform"), std::string::npos);

    auto e = build_bundle("[[[[", {});
    ASSERT_FALSE(e);
    EXPECT_NE(e.error().text().find("malformed JSON"), std::string::npos);
}

}  // namespace
}  // namespace samband::fhir::test
