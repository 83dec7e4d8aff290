// Config loading: every error by JSON path in one run; the shipped configs load; the router.
#include "config/config.hpp"
#include "router/router.hpp"

#include <gtest/gtest.h>

#include <rapidjson/document.h>

namespace samband::config {
namespace {

const char* kValid = R"({
  "store": {"kind": "sqlite", "path": "var/s.db"},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "in"}},
    "notes": {"plugin": "rph"},
    "gp": {"plugin": "file", "config": {"outbox": "out"}, "policy": {"max_attempts": 3}}
  },
  "routes": [
    {"name": "gp", "match": {"type": "rph.treatment.*", "source": "epj",
      "where": [{"path": "/data/consent_gp", "equals": "given"}]},
     "transforms": ["notes"], "to": ["gp"], "recipient": "gp"}
  ]
})";

TEST(config_load, valid_config_loads_with_defaults_and_resolved_paths) {
    auto r = parse_config(kValid, "t.json", "/etc/samband");
    ASSERT_TRUE(r.cfg) << format_errors("t.json", r.errors);
    EXPECT_EQ(r.cfg->store.path, "/etc/samband/var/s.db");
    EXPECT_EQ(r.cfg->store.retention_days, 30);
    EXPECT_EQ(r.cfg->admin.listen, "127.0.0.1:8780");
    EXPECT_EQ(r.cfg->endpoints.at("gp").policy.max_attempts, 3);
    EXPECT_EQ(r.cfg->endpoints.at("gp").policy.concurrency, 4);
    EXPECT_EQ(r.cfg->routes[0].recipient, "gp");
    EXPECT_EQ(r.cfg->endpoints.at("epj").config_json, R"({"inbox":"in"})");
}

TEST(config_load, a_broken_config_reports_every_error_by_path_in_one_run) {
    auto r = parse_config(R"({
      "store": {"kind": "sqlite"},
      "endpionts": {},
      "admin": {"listen": "nowhere"},
      "endpoints": {
        "gp": {"plugin": "file", "policy": {"max_attempts": "ten"}},
        "Bad Name": {"plugin": "file"}
      },
      "routes": [
        {"name": "a", "match": {"type": "x.*"}, "to": ["gp-outbx"]},
        {"name": "a", "match": {}, "to": []}
      ]
    })",
                          "t.json", "/tmp");
    ASSERT_FALSE(r.cfg);
    std::string all = format_errors("t.json", r.errors);
    for (const char* expect :
         {"/endpionts: unknown key \"endpionts\"", "/admin/listen: \"nowhere\" does not match",
          "/endpoints/gp/policy/max_attempts", "/endpoints/Bad Name",
          "/routes/1/to: must have at least 1"})
        EXPECT_NE(all.find(expect), std::string::npos) << "missing " << expect << " in\n" << all;
}

TEST(config_load, reference_errors_name_the_unknown_endpoint_and_duplicates) {
    auto r = parse_config(R"({"store": {"kind": "sqlite"}, "endpoints": {"gp": {"plugin": "file"}},
      "routes": [{"name": "a", "match": {}, "to": ["gp-outbx"], "transforms": ["nope"]},
                 {"name": "a", "match": {"source": "zz*"}, "to": ["gp"]}]})",
                          "t.json", "/tmp");
    ASSERT_FALSE(r.cfg);
    std::string all = format_errors("t.json", r.errors);
    EXPECT_NE(all.find("/routes/0/to/0: unknown endpoint \"gp-outbx\" (known: gp)"),
              std::string::npos)
        << all;
    EXPECT_NE(all.find("/routes/0/transforms/0: unknown endpoint \"nope\""), std::string::npos)
        << all;
    EXPECT_NE(all.find("/routes/1/name: duplicate route name \"a\""), std::string::npos) << all;
    EXPECT_NE(all.find("/routes/1/match/source: \"zz*\" matches no endpoint"), std::string::npos)
        << all;
}

TEST(config_load, the_adresseregisteret_check_is_read_and_its_mistakes_named_by_path) {
    auto ok = parse_config(R"({"store": {"kind": "sqlite"}, "endpoints": {"gp": {"plugin": "file"}},
      "routes": [{"name": "a", "match": {}, "to": ["gp"]}],
      "adresseregisteret": {"url": "https://ar.example/AR", "file": "ar.json",
                            "timeout_ms": 1500, "destinations": ["gp"]}})",
                           "t.json", "/etc/samband");
    ASSERT_TRUE(ok.cfg) << format_errors("t.json", ok.errors);
    ASSERT_TRUE(ok.cfg->adresseregisteret);
    EXPECT_EQ(ok.cfg->adresseregisteret->file, "/etc/samband/ar.json");
    EXPECT_EQ(ok.cfg->adresseregisteret->timeout_ms, 1500);
    EXPECT_EQ(ok.cfg->adresseregisteret->cache_ttl_s, 3600);
    auto errors_of = [](const std::string& ar) {
        auto r =
            parse_config(R"({"store": {"kind": "sqlite"}, "endpoints": {"gp": {"plugin": "file"}},
          "routes": [{"name": "a", "match": {}, "to": ["gp"]}], "adresseregisteret": )" +
                             ar + "}",
                         "t.json", "/tmp");
        EXPECT_FALSE(r.cfg) << ar;
        return format_errors("t.json", r.errors);
    };
    // The schema first (the validator names one mistake per section) …
    EXPECT_NE(errors_of(R"({"url": "https://ar", "timeout_ms": 5})")
                  .find("/adresseregisteret/timeout_ms: 5 is below the minimum 100"),
              std::string::npos);
    std::string misspelt = errors_of(R"({"urll": "https://ar"})");
    EXPECT_NE(misspelt.find("/adresseregisteret"), std::string::npos) << misspelt;
    EXPECT_NE(misspelt.find("urll"), std::string::npos) << misspelt;
    // … then what the schema cannot say, all in one run.
    std::string all = errors_of(R"({"username": "u", "destinations": ["nhm"]})");
    for (const char* expect :
         {"/adresseregisteret: the Adresseregisteret needs a url, a file or both",
          "/adresseregisteret: username and password_secret go together",
          "/adresseregisteret/destinations/0: unknown endpoint \"nhm\" (known: gp)"})
        EXPECT_NE(all.find(expect), std::string::npos) << "missing " << expect << " in\n" << all;
}

TEST(config_load, a_postgresql_store_needs_its_secret_and_a_lease_longer_than_any_attempt) {
    auto ok = parse_config(R"({"node": {"name": "n1"},
      "store": {"kind": "postgresql", "conninfo_secret": "pg", "lease_s": 45},
      "secrets": {"pg": {"env": "SAMBAND_PG"}},
      "endpoints": {"gp": {"plugin": "file", "policy": {"attempt_timeout_ms": 44000}}},
      "routes": [{"name": "a", "match": {}, "to": ["gp"]}]})",
                           "t.json", "/etc/samband");
    ASSERT_TRUE(ok.cfg) << format_errors("t.json", ok.errors);
    EXPECT_EQ(ok.cfg->store.kind, "postgresql");
    EXPECT_EQ(ok.cfg->store.conninfo_secret, "pg");
    EXPECT_EQ(ok.cfg->store.node_id, "n1") << "node.name by default";
    EXPECT_EQ(ok.cfg->store.lease_s, 45);
    auto bad = parse_config(R"({"store": {"kind": "postgresql", "conninfo_secret": "db"},
      "endpoints": {"gp": {"plugin": "file", "policy": {"attempt_timeout_ms": 60000}}},
      "routes": [{"name": "a", "match": {}, "to": ["gp"]}]})",
                            "t.json", "/tmp");
    ASSERT_FALSE(bad.cfg);
    std::string all = format_errors("t.json", bad.errors);
    for (const char* expect :
         {"/store/conninfo_secret: unknown secret \"db\" (define it under secrets)",
          "/endpoints/gp/policy/attempt_timeout_ms: must be shorter than the store's lease "
          "(store.lease_s = 60 s)"})
        EXPECT_NE(all.find(expect), std::string::npos) << "missing " << expect << " in\n" << all;
    auto none = parse_config(R"({"store": {"kind": "postgresql"},
      "endpoints": {"gp": {"plugin": "file"}}, "routes": [{"name": "a", "match": {}, "to": ["gp"]}]})",
                             "t.json", "/tmp");
    ASSERT_FALSE(none.cfg);
    EXPECT_NE(format_errors("t.json", none.errors)
                  .find("/store/conninfo_secret: a postgresql store "
                        "needs conninfo_secret"),
              std::string::npos);
}

TEST(config_load, json_syntax_error_names_line_and_column) {
    auto r =
        parse_config("{\n  \"store\": {\"kind\": \"sqlite\",}\n  \"x\" 1\n}", "t.json", "/tmp");
    ASSERT_FALSE(r.cfg);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_NE(r.errors[0].message.find("line 3"), std::string::npos) << r.errors[0].message;
}

TEST(config_load, shipped_demo_config_is_valid) {
    auto r = load_config(std::string(SAMBAND_SOURCE_DIR) + "/config/demo.json");
    EXPECT_TRUE(r.cfg) << format_errors("demo.json", r.errors);
}

rapidjson::Document doc(const char* json) {
    rapidjson::Document d;
    d.Parse(json);
    return d;
}

TEST(router, matches_type_glob_source_and_predicates_in_config_order) {
    auto r = parse_config(R"({"store": {"kind": "sqlite"},
      "endpoints": {"epj": {"plugin": "file"}, "other": {"plugin": "file"}, "a": {"plugin": "file"}, "b": {"plugin": "file"}},
      "routes": [
        {"name": "starts", "match": {"type": "rph.treatment.*", "source": ["ep?"],
           "where": [{"path": "/data/offer", "in": ["kurs", "gruppe"]}, {"path": "/data/x", "exists": false}]},
         "to": ["a", "b"]},
        {"name": "all", "match": {"type": "*", "where": [{"path": "/data/consent", "not_equals": "refused"}]}, "to": ["b"]}
      ]})",
                          "t.json", "/tmp");
    ASSERT_TRUE(r.cfg) << format_errors("t", r.errors);
    router::router rt(r.cfg->routes);
    auto m =
        rt.route("epj", doc(R"({"type": "rph.treatment.started", "data": {"offer": "kurs"}})"));
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0].route, "starts");
    EXPECT_EQ(m[0].destination, "a");
    EXPECT_EQ(m[1].destination, "b");
    EXPECT_EQ(m[2].route, "all");
    EXPECT_EQ(
        rt.route("other", doc(R"({"type": "rph.treatment.started", "data": {"offer": "kurs"}})"))
            .size(),
        1u);
    EXPECT_EQ(
        rt.route("epj", doc(R"({"type": "rph.treatment.started", "data": {"offer": "digital"}})"))
            .size(),
        1u);
    EXPECT_EQ(
        rt.route("epj",
                 doc(R"({"type": "rph.treatment.started", "data": {"offer": "kurs", "x": 1}})"))
            .size(),
        1u);
    EXPECT_TRUE(
        rt.route("epj", doc(R"({"type": "rph.x", "data": {"consent": "refused"}})")).empty());
}

}  // namespace
}  // namespace samband::config
