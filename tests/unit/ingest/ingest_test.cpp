// Ingest validation: envelope and per-type schemas, identifiers, limits, ranges — each refusal
// names the field and the check.
#include "ingest/ingest.hpp"
#include "codec/json.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "store/store.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

namespace samband::ingest {
namespace {

namespace fs = std::filesystem;

class ingest_validation : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        schemas_ = new codec::schema_set(
            codec::schema_set::load_dir(std::string(SAMBAND_SOURCE_DIR) + "/config/schemas"));
    }
    static void TearDownTestSuite() { delete schemas_; }
    std::string why(const std::string& json, options o = synthetic()) {
        auto r = validate_envelope(*schemas_, o, "epj", json, nullptr);
        return r ? std::string() : r.error();
    }
    static options synthetic() {
        options o;
        o.allow_synthetic_ids = true;
        return o;
    }
    static std::string demo(const std::string& name) {
        std::ifstream in(std::string(SAMBAND_SOURCE_DIR) + "/config/demo/events/" + name);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    static codec::schema_set* schemas_;
};
codec::schema_set* ingest_validation::schemas_ = nullptr;

TEST_F(ingest_validation, every_demo_event_is_valid) {
    for (const auto& e :
         fs::directory_iterator(std::string(SAMBAND_SOURCE_DIR) + "/config/demo/events")) {
        if (e.path().extension() != ".json") continue;
        EXPECT_EQ(why(demo(e.path().filename().string())), "") << e.path();
    }
}

TEST_F(ingest_validation, accepted_envelope_gets_id_source_and_schema) {
    auto r = validate_envelope(*schemas_, synthetic(), "epj", demo("03-kari-score.json"), nullptr);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(codec::string_at(*r, "/source"), "epj");
    EXPECT_EQ(codec::string_at(*r, "/id").size(), 36u);
}

TEST_F(ingest_validation, each_bad_input_is_refused_naming_the_problem) {
    std::string start = demo("02-kari-start.json");
    rapidjson::Document sd;
    sd.Parse(start.c_str());
    sd["data"].RemoveMember("consent_gp");
    std::string no_consent = codec::to_json(sd);
    EXPECT_EQ(why(no_consent), "/data/consent_gp: required field is missing");

    std::string score = demo("03-kari-score.json");
    std::string high = score;
    high.replace(high.find("\"score\": 11"), 11, "\"score\": 31");
    EXPECT_EQ(why(high), "/data/score: out of range for PHQ-9 (0–27)");

    std::string badfnr = score;
    badfnr.replace(badfnr.find("14839134623"), 11, "14839134624");
    EXPECT_EQ(why(badfnr), "/subject/fnr: fødselsnummer: check digit k2 is wrong");

    EXPECT_NE(why(score, options{}).find("synthetic test number"), std::string::npos);

    std::string wrongtype = score;
    wrongtype.replace(wrongtype.find("\"score\": 11"), 11, "\"score\": \"11\"");
    EXPECT_NE(why(wrongtype).find("/data/score: wrong type"), std::string::npos) << why(wrongtype);

    std::string unknown = score;
    unknown.replace(unknown.find("rph.assessment.scored"), 21, "rph.assessment.guess");
    EXPECT_EQ(why(unknown), "/type: unknown event type \"rph.assessment.guess\"");

    EXPECT_NE(why("{\"type\": ").find("malformed JSON"), std::string::npos);
    EXPECT_NE(why(std::string(200, '[')).find("nested deeper than 64"), std::string::npos);
    options small = synthetic();
    small.lim.max_event_bytes = 100;
    EXPECT_NE(why(score, small).find("over the limit of 100"), std::string::npos);

    std::string nosubject = score;
    nosubject.replace(nosubject.find("\"fnr\""), 5, "\"xyz\"");
    EXPECT_NE(why(nosubject).find("/subject"), std::string::npos) << why(nosubject);
}

TEST_F(ingest_validation, impossible_dates_are_refused_by_path_without_quoting_them) {
    std::string score = demo("03-kari-score.json");
    rapidjson::Document d;
    d.Parse(score.c_str());
    auto with_occurred = [&](const char* when) {
        d["occurred_at"].SetString(when, d.GetAllocator());
        return why(codec::to_json(d));
    };
    EXPECT_EQ(with_occurred("2026-13-45"),
              "/occurred_at: not a calendar date (the month must be 01-12)");
    EXPECT_EQ(with_occurred("2026-02-29"),
              "/occurred_at: not a calendar date (the day must be 01-28 in that month)");
    EXPECT_EQ(with_occurred("2026-04-10T24:00:00Z"),
              "/occurred_at: not a time of day (the hour must be 00-23)");
    EXPECT_EQ(with_occurred("2026-04-10T10:61:00Z"),
              "/occurred_at: not a time of day (the minute must be 00-59)");
    EXPECT_EQ(with_occurred("2028-02-29T10:00:00+01:00"), "");  // a leap day
    EXPECT_EQ(with_occurred("2026-04-10"), "");
    // A date-shaped text anywhere in the event is checked too, and named by its path.
    d["occurred_at"].SetString("2026-04-10", d.GetAllocator());
    d["data"]["administered_at"].SetString("2026-00-10", d.GetAllocator());
    std::string w = why(codec::to_json(d));
    EXPECT_EQ(w, "/data/administered_at: not a calendar date (the month must be 01-12)");
    EXPECT_EQ(w.find("2026-00-10"), std::string::npos) << "the value is not quoted: " << w;
}

// The same idempotency key again: identical content is a duplicate (the first event's id, stored
// once); other content is a conflict kept in the error store with a reason naming the field, and
// the source is told (INVALID), never a silent duplicate.
TEST_F(ingest_validation, a_reused_idempotency_key_with_other_content_is_a_conflict) {
    fs::path dir = fs::temp_directory_path() / ("samband-ingest-" + core::uuid_v7());
    fs::create_directories(dir);
    {
        store::sqlite_options so;
        so.path = (dir / "s.db").string();
        auto st = store::open_sqlite(so);
        core::logger log(core::log_level::error);
        ingest in(*st, *schemas_, synthetic(), log);
        auto submit = [&](std::string json) {
            std::promise<plugin::submit_result> p;
            plugin::submission sub;
            sub.envelope_json = std::move(json);
            in.submit("epj", std::move(sub),
                      [&](const plugin::submit_result& r) { p.set_value(r); });
            return p.get_future().get();
        };
        std::string start = demo("02-kari-start.json");
        auto first = submit(start);
        ASSERT_EQ(first.status, SAMBAND_OK) << first.message;
        EXPECT_FALSE(first.duplicate);
        auto again = submit(start);
        ASSERT_EQ(again.status, SAMBAND_OK) << again.message;
        EXPECT_TRUE(again.duplicate);
        EXPECT_EQ(again.event_id, first.event_id);

        std::string changed = start;
        auto at = changed.find("Nedstemthet");
        ASSERT_NE(at, std::string::npos);
        changed.replace(at, 11, "Other content");
        auto other = submit(changed);
        EXPECT_EQ(other.status, SAMBAND_INVALID) << other.message;
        EXPECT_NE(other.message.find("/idempotency_key: already used by this source for event " +
                                     first.event_id),
                  std::string::npos)
            << other.message;
        st->flush();
        auto errors = st->list_errors(10);
        ASSERT_TRUE(errors);
        ASSERT_EQ(errors->size(), 1u);
        EXPECT_NE((*errors)[0].second.reason.find("conflict"), std::string::npos);
        EXPECT_EQ((*errors)[0].second.payload, changed) << "the refused input is kept as given";
        EXPECT_FALSE((*errors)[0].second.idempotency_key.empty());
        EXPECT_EQ((*errors)[0].second.reason.find("Other content"), std::string::npos)
            << "the reason never quotes the content";
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace samband::ingest
