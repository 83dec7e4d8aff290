// The router alone: type and source globs, predicates on JSON Pointers, config order.
#include "router/router.hpp"

#include <gtest/gtest.h>
#include <samband/json.hpp>

#include <string>
#include <vector>

namespace samband::router {
namespace {

config::predicate pred(std::string path, config::predicate::op what, std::string value = {},
                       std::vector<std::string> values = {}, bool exists = true) {
    config::predicate p;
    p.path = std::move(path);
    p.what = what;
    p.value_json = std::move(value);
    p.values_json = std::move(values);
    p.exists = exists;
    return p;
}

config::route route(std::string name, std::string type, std::vector<std::string> to,
                    std::vector<std::string> sources = {},
                    std::vector<config::predicate> where = {}) {
    config::route r;
    r.name = std::move(name);
    r.type_glob = std::move(type);
    r.to = std::move(to);
    r.source_globs = std::move(sources);
    r.where = std::move(where);
    return r;
}

rapidjson::Document event(const std::string& json) {
    rapidjson::Document d;
    EXPECT_EQ(samband::json::parse(json, d), "") << json;
    return d;
}

// "route→destination" for each match, in order.
std::vector<std::string> names(const router& r, std::string_view source, const std::string& json) {
    std::vector<std::string> out;
    auto d = event(json);
    for (const auto& m : r.route(source, d)) out.push_back(m.route + "→" + m.destination);
    return out;
}

using V = std::vector<std::string>;

TEST(router, type_glob_matches_the_whole_type_and_dots_are_literal) {
    router r({route("rph", "rph.*", {"a"}), route("exact", "rph.treatment.started", {"b"}),
              route("one", "rph.session.?", {"c"})});
    EXPECT_EQ(names(r, "s", R"({"type":"rph.treatment.started"})"), (V{"rph→a", "exact→b"}));
    EXPECT_EQ(names(r, "s", R"({"type":"rphXtreatment"})"), V{});  // '.' is not "any character"
    EXPECT_EQ(names(r, "s", R"({"type":"xrph.treatment.started"})"), V{});  // anchored at start
    EXPECT_EQ(names(r, "s", R"({"type":"rph.session.a"})"), (V{"rph→a", "one→c"}));
    EXPECT_EQ(names(r, "s", R"({"type":"rph.session.ab"})"), (V{"rph→a"}));  // ? is one character
}

TEST(router, regex_characters_in_a_glob_are_literal) {
    router r({route("plus", "a+b(c)", {"d"})});
    EXPECT_EQ(names(r, "s", R"j({"type":"a+b(c)"})j"), (V{"plus→d"}));
    EXPECT_EQ(names(r, "s", R"j({"type":"aab(c)"})j"), V{});
}

// fnmatch(3)'s own specials: a bracket is not a character class, a backslash escapes nothing.
TEST(router, brackets_and_backslashes_in_a_glob_are_literal) {
    router r({route("class", "a[bc]d", {"x"}), route("slash", "a\\*", {"y"})});
    EXPECT_EQ(names(r, "s", R"j({"type":"a[bc]d"})j"), (V{"class→x"}));
    EXPECT_EQ(names(r, "s", R"j({"type":"abd"})j"), V{});
    EXPECT_EQ(names(r, "s", R"j({"type":"a\\zz"})j"), (V{"slash→y"}));  // a, backslash, zz
    EXPECT_EQ(names(r, "s", R"j({"type":"a*"})j"), V{});  // the star is still a wildcard after it
    EXPECT_TRUE(glob("x/*").matches("x/y/z"));            // '*' crosses '/' (no FNM_PATHNAME)
    EXPECT_TRUE(glob("*").matches(""));
    EXPECT_FALSE(glob("?").matches(""));
}

TEST(router, a_missing_or_non_string_type_matches_only_a_star) {
    router r({route("all", "*", {"a"}), route("rph", "rph.*", {"b"})});
    EXPECT_EQ(names(r, "s", R"({"type":7})"), (V{"all→a"}));
    EXPECT_EQ(names(r, "s", R"({})"), (V{"all→a"}));
    EXPECT_EQ(names(r, "s", R"([1,2])"), (V{"all→a"}));
}

TEST(router, sources_empty_means_any_else_one_glob_must_match) {
    router r({route("any", "*", {"a"}), route("epj", "*", {"b"}, {"epj-*", "gerica"})});
    EXPECT_EQ(names(r, "epj-inbox", R"({"type":"t"})"), (V{"any→a", "epj→b"}));
    EXPECT_EQ(names(r, "gerica", R"({"type":"t"})"), (V{"any→a", "epj→b"}));
    EXPECT_EQ(names(r, "gerica2", R"({"type":"t"})"), (V{"any→a"}));
    EXPECT_EQ(names(r, "nhn", R"({"type":"t"})"), (V{"any→a"}));
}

TEST(router, equals_compares_json_values_with_their_types) {
    using op = config::predicate::op;
    router r({route("n", "*", {"a"}, {}, {pred("/data/score", op::equals, "12")}),
              route("s", "*", {"b"}, {}, {pred("/data/score", op::equals, "\"12\"")})});
    EXPECT_EQ(names(r, "s", R"({"data":{"score":12}})"), (V{"n→a"}));
    EXPECT_EQ(names(r, "s", R"({"data":{"score":"12"}})"), (V{"s→b"}));
    EXPECT_EQ(names(r, "s", R"({"data":{"score":13}})"), V{});
    EXPECT_EQ(names(r, "s", R"({"data":{}})"), V{});  // a missing value equals nothing
}

TEST(router, not_equals_holds_for_a_missing_value) {
    using op = config::predicate::op;
    router r({route("r", "*", {"a"}, {}, {pred("/data/kind", op::not_equals, "\"gruppe\"")})});
    EXPECT_EQ(names(r, "s", R"({"data":{"kind":"individuell"}})"), (V{"r→a"}));
    EXPECT_EQ(names(r, "s", R"({"data":{}})"), (V{"r→a"}));
    EXPECT_EQ(names(r, "s", R"({"data":{"kind":"gruppe"}})"), V{});
}

TEST(router, in_matches_any_listed_value_and_exists_either_way) {
    using op = config::predicate::op;
    router r({route("in", "*", {"a"}, {},
                    {pred("/type", op::in, {},
                          {"\"rph.treatment.started\"", "\"rph.treatment.ended\""})}),
              route("has", "*", {"b"}, {}, {pred("/note", op::exists)}),
              route("hasnt", "*", {"c"}, {}, {pred("/note", op::exists, {}, {}, false)})});
    EXPECT_EQ(names(r, "s", R"({"type":"rph.treatment.ended"})"), (V{"in→a", "hasnt→c"}));
    EXPECT_EQ(names(r, "s", R"({"type":"rph.session.attended","note":{}})"), (V{"has→b"}));
    EXPECT_EQ(names(r, "s", R"({"type":"rph.session.attended","note":null})"), (V{"has→b"}));
}

TEST(router, all_predicates_must_hold) {
    using op = config::predicate::op;
    router r({route(
        "both", "*", {"a"}, {},
        {pred("/data/instrument", op::equals, "\"PHQ-9\""), pred("/data/score", op::exists)})});
    EXPECT_EQ(names(r, "s", R"({"data":{"instrument":"PHQ-9","score":3}})"), (V{"both→a"}));
    EXPECT_EQ(names(r, "s", R"({"data":{"instrument":"PHQ-9"}})"), V{});
    EXPECT_EQ(names(r, "s", R"({"data":{"instrument":"GAD-7","score":3}})"), V{});
}

TEST(router, every_destination_of_every_matching_route_in_config_order) {
    router r({route("first", "rph.*", {"x", "y"}), route("second", "*", {"y", "z"})});
    // The router reports each (route, destination); the daemon makes one delivery per destination.
    EXPECT_EQ(names(r, "s", R"({"type":"rph.a"})"),
              (V{"first→x", "first→y", "second→y", "second→z"}));
}

}  // namespace
}  // namespace samband::router
