// Issue 9 item 4: each endpoint's config is checked against its plugin's published JSON Schema by
// `samband config check`, at start-up and on reload, errors named by JSON path.
#include "harness.hpp"

#include <gtest/gtest.h>

namespace samband::test {
namespace {

std::string config_with(const std::string& inbox_config) {
    return R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" +
           plugin_dir() + R"("],
  "schemas_dir": ")" +
           source_dir() +
           R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {
    "inbox": {"plugin": "file", "config": )" +
           inbox_config + R"(},
    "out": {"plugin": "file", "config": {"outbox": "out"}}
  },
  "routes": [{"name": "all", "match": {"type": "rph.*"}, "to": ["out"]}]
})";
}

class config_check_test : public ::testing::Test {
protected:
    temp_dir tmp;
    std::pair<int, std::string> check(const std::string& inbox_config) {
        write_file(tmp.path() / "samband.json", config_with(inbox_config));
        return run_command(daemon_process::binary() + " config check -c " +
                           (tmp.path() / "samband.json").string());
    }
};

TEST_F(config_check_test, a_config_its_plugin_accepts_passes) {
    auto [rc, out] = check(R"({"inbox": "in", "poll_ms": 200})");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("each valid against its plugin's schema"), std::string::npos) << out;
}

TEST_F(config_check_test, a_value_the_schema_refuses_is_named_by_its_path) {
    auto [rc, out] = check(R"({"inbox": "in", "poll_ms": 5})");
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("/endpoints/inbox/config/poll_ms"), std::string::npos) << out;
    EXPECT_NE(out.find("less than the minimum 10"), std::string::npos) << out;
    EXPECT_NE(out.find("plugin file"), std::string::npos) << out;
}

TEST_F(config_check_test, an_unknown_key_and_a_wrong_type_are_refused) {
    auto [rc1, out1] = check(R"({"inbox": "in", "pol_ms": 200})");
    EXPECT_EQ(rc1, 1) << out1;
    EXPECT_NE(out1.find("/endpoints/inbox/config"), std::string::npos) << out1;
    EXPECT_NE(out1.find("pol_ms"), std::string::npos) << out1;
    auto [rc2, out2] = check(R"({"inbox": 7})");
    EXPECT_EQ(rc2, 1) << out2;
    EXPECT_NE(out2.find("/endpoints/inbox/config/inbox"), std::string::npos) << out2;
}

TEST_F(config_check_test, the_daemon_refuses_to_start_with_it_naming_the_path) {
    write_file(tmp.path() / "samband.json", config_with(R"({"inbox": "in", "poll_ms": 5})"));
    auto [rc, out] = run_command("timeout 20 " + daemon_process::binary() + " run -c " +
                                 (tmp.path() / "samband.json").string());
    EXPECT_NE(rc, 0) << out;
    EXPECT_NE(out.find("/endpoints/inbox/config/poll_ms"), std::string::npos) << out;
}

}  // namespace
}  // namespace samband::test
