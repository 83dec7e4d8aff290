// The consent and objection gate: what a GP may get, decided from the treatment's history.
#include "consent/gate.hpp"

#include <gtest/gtest.h>

#include <list>

namespace samband::consent {
namespace {

struct history {
    std::list<rapidjson::Document> docs;
    std::vector<treatment_event> events;
    history& add(const char* type, const char* data_json) {
        docs.emplace_back();
        docs.back().Parse(data_json);
        events.push_back({type, &docs.back()});
        return *this;
    }
};

rapidjson::Document empty_data() {
    rapidjson::Document d;
    d.SetObject();
    return d;
}

TEST(consent_gate, start_note_needs_recorded_consent) {
    auto d = empty_data();
    history given, refused, unknown;
    given.add("rph.treatment.started", R"({"consent_gp": "given"})");
    refused.add("rph.treatment.started", R"({"consent_gp": "refused"})");
    unknown.add("rph.treatment.started", R"({})");
    EXPECT_EQ(decide("rph.treatment.started", d, given.events, false).what, verdict::send);
    EXPECT_EQ(decide("rph.treatment.started", d, refused.events, false).what, verdict::block);
    EXPECT_EQ(decide("rph.treatment.started", d, unknown.events, false).what, verdict::hold);
}

TEST(consent_gate, withdrawn_consent_blocks_a_queued_start_note_and_renewed_consent_frees_it) {
    auto d = empty_data();
    history h;
    h.add("rph.treatment.started", R"({"consent_gp": "given"})")
        .add("rph.consent.changed", R"({"change": "consent_withdrawn"})");
    EXPECT_EQ(decide("rph.treatment.started", d, h.events, false).what, verdict::block);
    h.add("rph.consent.changed", R"({"change": "consent_given"})");
    EXPECT_EQ(decide("rph.treatment.started", d, h.events, false).what, verdict::send);
}

TEST(consent_gate, end_note_goes_unless_the_patient_objected) {
    auto d = empty_data();
    history none, objected, unknown, late;
    none.add("rph.treatment.started", "{}").add("rph.treatment.ended", R"({"objection": "none"})");
    objected.add("rph.treatment.started", "{}")
        .add("rph.treatment.ended", R"({"objection": "objected"})");
    unknown.add("rph.treatment.started", "{}").add("rph.treatment.ended", R"({})");
    late.add("rph.treatment.started", "{}")
        .add("rph.treatment.ended", R"({"objection": "none"})")
        .add("rph.consent.changed", R"({"change": "objection_recorded"})");
    EXPECT_EQ(decide("rph.treatment.ended", d, none.events, false).what, verdict::send);
    auto b = decide("rph.treatment.ended", d, objected.events, false);
    EXPECT_EQ(b.what, verdict::block);
    EXPECT_NE(b.reason.find("objected"), std::string::npos);
    EXPECT_EQ(decide("rph.treatment.ended", d, unknown.events, false).what, verdict::hold);
    EXPECT_EQ(decide("rph.treatment.ended", d, late.events, false).what, verdict::block)
        << "an objection recorded after the note was queued must stop it";
}

TEST(consent_gate, an_end_note_saying_none_does_not_clear_an_earlier_objection) {
    auto d = empty_data();
    history h;
    h.add("rph.treatment.started", "{}")
        .add("rph.consent.changed", R"({"change": "objection_recorded"})")
        .add("rph.treatment.ended", R"({"objection": "none"})");
    EXPECT_EQ(decide("rph.treatment.ended", d, h.events, false).what, verdict::block);
    h.add("rph.consent.changed", R"({"change": "objection_withdrawn"})");
    EXPECT_EQ(decide("rph.treatment.ended", d, h.events, false).what, verdict::send);
}

TEST(consent_gate, end_note_without_a_start_note_is_held) {
    auto d = empty_data();
    history h;
    h.add("rph.treatment.ended", R"({"objection": "none"})");
    auto r = decide("rph.treatment.ended", d, h.events, false);
    EXPECT_EQ(r.what, verdict::hold);
    EXPECT_NE(r.reason.find("no start note"), std::string::npos);
}

TEST(consent_gate, only_an_operator_override_passes_a_blocked_note) {
    auto d = empty_data();
    history h;
    h.add("rph.treatment.started", "{}").add("rph.treatment.ended", R"({"objection": "objected"})");
    EXPECT_EQ(decide("rph.treatment.ended", d, h.events, true).what, verdict::send);
}

}  // namespace
}  // namespace samband::consent
