// sdk::config: the SDK parses a plugin's config once and every typed accessor's error names the
// value by its JSON Pointer; a plugin taking `const sdk::config&` is created through the C ABI.
#include <samband/config.hpp>

#include <gtest/gtest.h>

#include <string>

struct samband_error {
    std::string text;
};

namespace {

using samband::sdk::config;
using samband::sdk::error;

// The message a throwing call gives, or "" when it does not throw.
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const error& e) {
        EXPECT_EQ(e.status(), SAMBAND_INVALID);
        return e.what();
    }
    return {};
}

TEST(sdk_config, typed_values_and_defaults_are_read) {
    auto c = config::parse(R"({"folder": "in", "poll_ms": 250, "ratio": 0.5, "tls": true,
                               "hosts": ["a", "b"], "retry": {"max": 3}, "gone": null})");
    EXPECT_EQ(c.string("folder"), "in");
    EXPECT_EQ(c.string_or("missing", "dflt"), "dflt");
    EXPECT_EQ(c.integer("poll_ms", 10, 60000), 250);
    EXPECT_EQ(c.integer_or("window", 256, 1), 256);
    EXPECT_DOUBLE_EQ(c.number_or("ratio", 1.0), 0.5);
    EXPECT_TRUE(c.boolean_or("tls", false));
    EXPECT_EQ(c.strings("hosts"), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(c.at("retry").integer("max"), 3);
    EXPECT_EQ(c.at("retry").path(), "/retry");
    EXPECT_FALSE(c.has("gone"));  // null counts as absent
    EXPECT_TRUE(c.items("none").empty());
}

TEST(sdk_config, every_error_names_the_json_path) {
    auto c = config::parse(R"({"poll_ms": 5, "name": 7, "tls": "yes", "retry": {"max": -1},
                               "hosts": ["a", 3], "a/b": {"c~d": 1.5}, "big": 18446744073709551615})");
    EXPECT_EQ(error_of([&] { c.integer("poll_ms", 10); }),
              "config /poll_ms: 5 is less than the minimum 10");
    EXPECT_EQ(error_of([&] { c.string("name"); }), "config /name: must be a string, not a number");
    EXPECT_EQ(error_of([&] { c.string("folder"); }), "config /folder: is required");
    EXPECT_EQ(error_of([&] { c.boolean_or("tls", false); }),
              "config /tls: must be true or false, not a string");
    EXPECT_EQ(error_of([&] { c.at("retry").integer("max", 0, 10); }),
              "config /retry/max: -1 is less than the minimum 0");
    EXPECT_EQ(error_of([&] { c.strings("hosts"); }),
              "config /hosts/1: must be a string, not a number");
    EXPECT_EQ(error_of([&] { c.at("a/b").integer("c~d"); }),
              "config /a~1b/c~0d: must be a whole number");
    EXPECT_EQ(error_of([&] { c.integer("big"); }), "config /big: is too large");
    EXPECT_EQ(error_of([&] { c.at("poll_ms").string("x"); }),
              "config /poll_ms: must be an object, not a number");
}

TEST(sdk_config, text_that_is_not_one_json_object_is_refused) {
    EXPECT_EQ(error_of([] { config::parse("[1, 2]"); }), "config: must be a JSON object");
    EXPECT_NE(error_of([] { config::parse("{\"a\": }"); }).find("config: malformed JSON at line 1"),
              std::string::npos);
    EXPECT_NE(error_of([] {
                  config::parse(std::string(100, '[') + std::string(100, ']'));
              }).find("nested deeper than"),
              std::string::npos);
}

// A plugin that takes the parsed config, created through the ABI as the host does.
class parsed_sink {
public:
    [[maybe_unused]] static constexpr const char* name = "parsed-config-sink";
    [[maybe_unused]] static constexpr const char* version = "1.0.0";
    [[maybe_unused]] static constexpr const char* description = "test: a sink taking sdk::config";
    parsed_sink(samband::sdk::host, const config& c) : folder_(c.string("folder")) {}
    void deliver(samband::sdk::delivery d) { d.succeed(folder_); }

private:
    std::string folder_;
};

void set_error(samband_error* e, samband_str s) {
    if (e) e->text.assign(s.data, s.size);
}

TEST(sdk_config, a_plugin_taking_sdk_config_gets_it_parsed_and_a_bad_one_is_refused_by_path) {
    samband_host_api api{};
    api.struct_size = sizeof api;
    api.abi_version = SAMBAND_ABI_VERSION;
    api.error_set = [](samband_error* e, samband_str s) { set_error(e, s); };
    auto create = [&](std::string_view cfg, samband_error& err) {
        void* inst = nullptr;
        samband_status st = samband::sdk::detail::adapter<parsed_sink>::create(
            &api, samband_host_str{cfg.data(), cfg.size()}, &err, &inst);
        if (inst) samband::sdk::detail::adapter<parsed_sink>::destroy(inst);
        return st;
    };
    samband_error ok;
    EXPECT_EQ(create(R"({"folder": "in"})", ok), SAMBAND_OK) << ok.text;
    samband_error bad;
    EXPECT_EQ(create(R"({"folder": 3})", bad), SAMBAND_INVALID);
    EXPECT_EQ(bad.text, "config /folder: must be a string, not a number");
}

}  // namespace
