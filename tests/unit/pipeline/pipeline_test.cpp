// Issue 9 item 5: the host checks a transform's output; an invalid one ends the delivery dead
// with a reason naming the field.
#include "core/pipeline.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>

namespace samband::core {
namespace {

const char* kEvent =
    R"({"schema":"samband.event/1","id":"0192f7c8-0000-7000-8000-000000000001","source":"epj",)"
    R"("type":"rph.assessment.scored","idempotency_key":"t:1","occurred_at":"2026-11-24T10:15:00+01:00",)"
    R"("subject":{"fnr":"14839134623"},)"
    R"("data":{"treatment_id":"T-1","instrument":"PHQ-9","score":12,"administered_at":"2026-11-24"},)"
    R"("attachments":[]})";

class null_services final : public plugin::host_services {
public:
    bool log_enabled(std::string_view, samband_log_level) override { return false; }
    void log(std::string_view, samband_log_level, std::string_view) override {}
    std::optional<std::string> secret(std::string_view, std::string_view) override { return {}; }
    samband_status submit(std::string_view, plugin::submission,
                          std::function<void(const plugin::submit_result&)>) override {
        return SAMBAND_UNSUPPORTED;
    }
    void complete(std::string_view, std::uint64_t, plugin::completion) override {}
    void receipt(std::string_view, std::string_view, std::int32_t, std::string_view) override {}
    boost::system::result<std::size_t> read_attachment(std::uint64_t, std::uint64_t, std::uint8_t*,
                                                       std::size_t) override {
        return std::size_t{0};
    }
};

class pipeline_test : public ::testing::Test {
protected:
    codec::schema_set schemas =
        codec::schema_set::load_dir(std::string(SAMBAND_SOURCE_DIR) + "/config/schemas");
    null_services svc;
    plugin::registry reg;
    std::map<std::string, std::unique_ptr<plugin::instance>> transforms;

    // Runs the event through the fixture transform in `mode`, with the output check on.
    delivery::prepared run(const std::string& mode, bool check = true) {
        auto lp =
            reg.load(std::string(SAMBAND_PLUGIN_DIR) + "/samband_plugin_fixture_transform.so");
        EXPECT_TRUE(lp);
        auto inst = plugin::instance::create(**lp, "t-" + mode, R"({"mode":")" + mode + "\"}", svc);
        EXPECT_TRUE(inst);
        transforms[mode] = std::move(*inst);
        route_plan plan{{"t-" + mode}, ""};
        pipeline_input in;
        in.envelope_json = kEvent;
        return run_pipeline(
            plan, in, nullptr,
            [&](const std::string& name) {
                return name == "t-" + mode ? transforms[mode].get() : nullptr;
            },
            check ? &schemas : nullptr);
    }
};

using action = delivery::prepared::action;

TEST_F(pipeline_test, a_valid_output_is_sent) {
    auto p = run("keep");
    EXPECT_EQ(p.what, action::send) << p.reason;
    EXPECT_NE(p.event.envelope_json.find("\"note\":{}"), std::string::npos);
}

TEST_F(pipeline_test, each_broken_output_ends_dead_naming_what_is_wrong) {
    const std::map<std::string, std::string> expect = {
        {"change_id", "/id: a transform must keep the event's id"},
        {"drop_data", "/data"},
        {"bad_score", "/data/score"},
        {"bad_note", "/note: must be an object"},
        {"extra", "x"},
        {"not_json", "not valid JSON"},
    };
    for (const auto& [mode, why] : expect) {
        auto p = run(mode);
        EXPECT_EQ(p.what, action::dead) << mode;
        EXPECT_NE(p.reason.find("transform t-" + mode + " gave an invalid event: "),
                  std::string::npos)
            << mode << ": " << p.reason;
        EXPECT_NE(p.reason.find(why), std::string::npos) << mode << ": " << p.reason;
    }
}

TEST_F(pipeline_test, without_schemas_the_output_is_passed_on_unchecked) {
    // The check is what stops it: the same broken output goes out when no schemas are given.
    EXPECT_EQ(run("bad_score", false).what, action::send);
}

}  // namespace
}  // namespace samband::core
