// The RPH note renderer: sections per note kind, score bands, æøå, errors naming the field.
#include "render.hpp"

#include <gtest/gtest.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <fstream>
#include <sstream>

namespace samband::rph {
namespace {

std::string read(const std::string& rel) {
    std::ifstream in(std::string(SAMBAND_SOURCE_DIR) + "/" + rel);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

renderer make(std::vector<therapist> list = {}) {
    renderer_config c;
    c.from = {"Testby kommune", "9900001", "999000001", "Rask psykisk helsehjelp Testby",
              "9900011"};
    c.therapists = std::move(list);
    return renderer(c);
}

rapidjson::Document note_of(const render_result& r) {
    EXPECT_TRUE(r.ok) << r.error;
    rapidjson::Document d;
    d.Parse(r.envelope_json.c_str());
    return d;
}

std::vector<std::string> headings(const rapidjson::Value& note) {
    std::vector<std::string> out;
    for (const auto& s : note["sections"].GetArray()) out.push_back(s["heading"].GetString());
    return out;
}

TEST(rph_bands, phq9_and_gad7_bands_at_every_boundary) {
    EXPECT_EQ(band("PHQ-9", 0), "minimal");
    EXPECT_EQ(band("PHQ-9", 4), "minimal");
    EXPECT_EQ(band("PHQ-9", 5), "mild");
    EXPECT_EQ(band("PHQ-9", 9), "mild");
    EXPECT_EQ(band("PHQ-9", 10), "moderat");
    EXPECT_EQ(band("PHQ-9", 14), "moderat");
    EXPECT_EQ(band("PHQ-9", 15), "moderat til alvorlig");
    EXPECT_EQ(band("PHQ-9", 19), "moderat til alvorlig");
    EXPECT_EQ(band("PHQ-9", 20), "alvorlig");
    EXPECT_EQ(band("PHQ-9", 27), "alvorlig");
    EXPECT_EQ(band("PHQ-9", 28), "");
    EXPECT_EQ(band("GAD-7", 4), "minimal");
    EXPECT_EQ(band("GAD-7", 5), "mild");
    EXPECT_EQ(band("GAD-7", 10), "moderat");
    EXPECT_EQ(band("GAD-7", 14), "moderat");
    EXPECT_EQ(band("GAD-7", 15), "alvorlig");
    EXPECT_EQ(band("GAD-7", 21), "alvorlig");
    EXPECT_EQ(band("CORE-OM", 12), "");
    EXPECT_EQ(score_line("PHQ-9", 14), "PHQ-9: 14 (moderat)");
}

TEST(rph_render, start_note_has_the_handbook_sections_and_the_gp_as_receiver) {
    std::string ev = read("config/demo/events/02-kari-start.json");
    rapidjson::Document env;
    env.Parse(ev.c_str());
    rapidjson::Document rec;
    rec.Parse(
        R"({"gp":{"her_id":"9900101","given_name":"Lise","family_name":"Fastlege"},"office":{"her_id":"9900100","name":"Fjordlegene legesenter"}})");
    env.AddMember("recipient", rapidjson::Value(rec, env.GetAllocator()), env.GetAllocator());
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    env.Accept(w);
    auto d = note_of(make().render(sb.GetString()));
    const auto& note = d["note"];
    EXPECT_STREQ(note["kind"].GetString(), "oppstartsnotat");
    EXPECT_STREQ(note["message_type"].GetString(), "DIALOG_HELSEFAGLIG");
    EXPECT_EQ(headings(note),
              (std::vector<std::string>{"Årsak til kontakt", "Kartlegging og valgt tilbud",
                                        "Mål for behandlingen", "Ansvarlig terapeut", "Videre"}));
    std::string text = note["text"].GetString();
    EXPECT_NE(text.find("PHQ-9: 14 (moderat)"), std::string::npos) << text;
    EXPECT_NE(text.find("kurs og individuelle samtaler"), std::string::npos) << text;
    EXPECT_NE(text.find("HPR 9911001"), std::string::npos);
    EXPECT_NE(text.find("Ta gjerne kontakt for samarbeid"), std::string::npos);
    EXPECT_NE(text.find("Avslutningsnotat vil bli sendt"), std::string::npos);
    EXPECT_STREQ(note["receiver"]["person"]["her_id"].GetString(), "9900101");
    EXPECT_STREQ(note["receiver"]["organisation"]["her_id"].GetString(), "9900100");
    EXPECT_STREQ(note["sender"]["service"]["her_id"].GetString(), "9900011");
    EXPECT_STREQ(note["patient"]["id_type"].GetString(), "FNR");
}

TEST(rph_render, end_note_prints_scores_at_start_and_end_with_bands_and_aeoeaa_intact) {
    auto d = note_of(make().render(read("config/demo/events/05-kari-end.json")));
    const auto& note = d["note"];
    EXPECT_STREQ(note["kind"].GetString(), "avslutningsnotat");
    std::string text = note["text"].GetString();
    EXPECT_NE(text.find("PHQ-9: 14 (moderat) ved start, 6 (mild) ved slutt"), std::string::npos)
        << text;
    EXPECT_NE(text.find("GAD-7: 11 (moderat) ved start, 5 (mild) ved slutt"), std::string::npos)
        << text;
    EXPECT_NE(text.find("Metoder pasienten hadde mest nytte av"), std::string::npos);
    EXPECT_NE(text.find("Søvnrestriksjon"), std::string::npos);
    EXPECT_NE(text.find("Antall samtaler/timer: 10 (av inntil 15)"), std::string::npos);
    EXPECT_NE(text.find("Målet for behandlingen er nådd."), std::string::npos);
    EXPECT_NE(text.find("selvhjelpsplan"), std::string::npos);
}

TEST(rph_render, d_number_patient_and_information_request_message_type) {
    auto d = note_of(make().render(read("config/demo/events/10-mateusz-info-request.json")));
    EXPECT_STREQ(d["note"]["message_type"].GetString(), "DIALOG_FORESPORSEL");
    EXPECT_STREQ(d["note"]["patient"]["id_type"].GetString(), "DNR");
    EXPECT_STREQ(d["note"]["kind"].GetString(), "foresporsel");
}

// Issue 15 item 3: the reason names the field and the rule, never the number given.
TEST(rph_render, unknown_therapist_is_an_error_naming_the_field_not_the_number) {
    auto r = make({{"Jon", "Sykepleier", "Psykiatrisk sykepleier", "9911002", "+4799000002"}})
                 .render(read("config/demo/events/02-kari-start.json"));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error.find("9911001"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("not in the rph endpoint's therapist list"), std::string::npos)
        << r.error;
    EXPECT_NE(r.error.find("/data/therapist/hpr"), std::string::npos) << r.error;
}

TEST(rph_render, scores_and_sessions_become_journal_entries) {
    auto d = note_of(make().render(read("config/demo/events/03-kari-score.json")));
    ASSERT_TRUE(d.HasMember("journal"));
    EXPECT_FALSE(d.HasMember("note"));
    EXPECT_NE(std::string(d["journal"]["text"].GetString()).find("PHQ-9: 11 (moderat)"),
              std::string::npos);
    auto s = note_of(make().render(read("config/demo/events/04-kari-session.json")));
    EXPECT_NE(
        std::string(s["journal"]["text"].GetString()).find("Kurs 2026-09-22T10:00:00+02:00: møtte"),
        std::string::npos)
        << s["journal"]["text"].GetString();
}

TEST(rph_render, other_types_pass_through_unchanged_and_bad_input_is_refused) {
    std::string ev = read("config/demo/events/07-ola-objection.json");
    auto r = make().render(ev);
    EXPECT_TRUE(r.ok);
    EXPECT_EQ(r.envelope_json, ev);
    EXPECT_FALSE(make().render("not json").ok);
}

TEST(rph_render, templates_can_be_adjusted_and_bad_templates_are_refused) {
    renderer_config c;
    std::string t = default_templates();
    auto p = t.find("Årsak til kontakt");
    ASSERT_NE(p, std::string::npos);
    t.replace(p, std::string("Årsak til kontakt").size(), "Hvorfor pasienten tok kontakt");
    c.templates_json = t;
    auto d = note_of(renderer(c).render(read("config/demo/events/02-kari-start.json")));
    EXPECT_EQ(headings(d["note"])[0], "Hvorfor pasienten tok kontakt");
    renderer_config bad;
    bad.templates_json = R"({"oppstartsnotat": {}})";
    EXPECT_THROW(renderer{bad}, std::invalid_argument);
}

TEST(rph_render, shipped_template_file_is_the_compiled_in_default) {
    EXPECT_EQ(read("config/rph-templates.json"), std::string(default_templates()));
}

}  // namespace
}  // namespace samband::rph
