// The host's behaviour for every ABI failure mode, the frozen-header compat plugin, and the
// conformance kit (`samband plugin check`) on fixtures and in-tree plugins.
#include "plugin/check.hpp"
#include "plugin/plugin_host.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>

namespace samband::plugin {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) {
    return std::string(ABI_FIXTURE_DIR) + "/" + name + ".so";
}

class recording_services final : public host_services {
public:
    std::mutex mu;
    std::vector<std::string> logs;
    std::vector<std::pair<std::uint64_t, completion>> completions;

    bool log_enabled(std::string_view, samband_log_level) override { return true; }
    void log(std::string_view, samband_log_level, std::string_view m) override {
        std::lock_guard lock(mu);
        logs.emplace_back(m);
    }
    std::optional<std::string> secret(std::string_view, std::string_view) override {
        return std::nullopt;
    }
    samband_status submit(std::string_view, submission,
                          std::function<void(const submit_result&)>) override {
        return SAMBAND_RETRY;
    }
    void complete(std::string_view, std::uint64_t t, completion c) override {
        std::lock_guard lock(mu);
        completions.emplace_back(t, std::move(c));
    }
    void receipt(std::string_view, std::string_view, std::int32_t, std::string_view) override {}
    boost::system::result<std::size_t> read_attachment(std::uint64_t, std::uint64_t, std::uint8_t*,
                                                       std::size_t) override {
        return std::size_t{0};
    }
};

std::string load_failure_of(const std::string& name) {
    registry reg;
    auto r = reg.load(fixture(name));
    EXPECT_FALSE(r) << name << " loaded but should not";
    return r ? std::string() : r.error().reason;
}

TEST(abi_loader, library_without_entry_point_is_refused_naming_the_entry) {
    EXPECT_NE(load_failure_of("fixture_no_entry").find("no entry point"), std::string::npos);
}

TEST(abi_loader, major_version_mismatch_is_refused) {
    std::string why = load_failure_of("fixture_major_mismatch");
    EXPECT_NE(why.find("ABI 2.0"), std::string::npos) << why;
    EXPECT_NE(why.find("major versions must match"), std::string::npos) << why;
}

TEST(abi_loader, newer_minor_than_host_is_refused) {
    std::string why = load_failure_of("fixture_newer_minor");
    EXPECT_NE(why.find("needs ABI 1.5"), std::string::npos) << why;
}

TEST(abi_loader, truncated_struct_size_is_refused) {
    std::string why = load_failure_of("fixture_truncated");
    EXPECT_NE(why.find("struct_size 24"), std::string::npos) << why;
    EXPECT_NE(why.find("truncated"), std::string::npos) << why;
}

TEST(abi_loader, non_zero_tail_beyond_the_hosts_struct_is_refused) {
    std::string why = load_failure_of("fixture_dirty_tail");
    EXPECT_NE(
        why.find("descriptor struct_size " + std::to_string(sizeof(samband_plugin_descriptor) + 8)),
        std::string::npos)
        << why;
    EXPECT_NE(why.find("tail"), std::string::npos) << why;
}

TEST(abi_loader, unknown_capability_bit_is_refused) {
    std::string why = load_failure_of("fixture_unknown_capability");
    EXPECT_NE(why.find("unknown capability bits 0x4"), std::string::npos) << why;
}

TEST(abi_loader, render_capability_without_render_is_refused) {
    std::string why = load_failure_of("fixture_render_claimed");
    EXPECT_NE(why.find("SAMBAND_CAP_RENDER is declared but sink.render is missing"),
              std::string::npos)
        << why;
}

// The ABI's one copy helper, by the kernel's copy_struct_from_user rules.
struct small_v {
    std::uint32_t struct_size;
    std::uint32_t a;
};
struct big_v {
    std::uint32_t struct_size;
    std::uint32_t a;
    std::uint64_t b;
};

TEST(abi_copy_struct, an_older_writer_is_zero_filled) {
    small_v in{sizeof(small_v), 7};
    big_v out{99, 99, 99};
    ASSERT_EQ(samband_copy_struct(&out, sizeof out, &in, sizeof(small_v)), SAMBAND_OK);
    EXPECT_EQ(out.struct_size, sizeof(small_v));  // the writer's size, for SAMBAND_HAS_FIELD
    EXPECT_EQ(out.a, 7u);
    EXPECT_EQ(out.b, 0u);
}

TEST(abi_copy_struct, a_newer_writer_with_a_zero_tail_is_accepted) {
    big_v in{sizeof(big_v), 7, 0};
    small_v out{};
    ASSERT_EQ(samband_copy_struct(&out, sizeof out, &in, sizeof(small_v)), SAMBAND_OK);
    EXPECT_EQ(out.a, 7u);
}

TEST(abi_copy_struct, a_non_zero_unknown_tail_is_refused_and_the_reader_zeroed) {
    big_v in{sizeof(big_v), 7, 1};
    small_v out{1, 1};
    EXPECT_EQ(samband_copy_struct(&out, sizeof out, &in, sizeof(small_v)), SAMBAND_INVALID);
    EXPECT_EQ(out.a, 0u);
}

TEST(abi_copy_struct, truncated_null_and_insane_sizes_are_refused) {
    big_v out{};
    small_v in{sizeof(small_v), 7};
    EXPECT_EQ(samband_copy_struct(&out, sizeof out, &in, sizeof(big_v)), SAMBAND_INVALID);
    EXPECT_EQ(samband_copy_struct(&out, sizeof out, nullptr, sizeof(small_v)), SAMBAND_INVALID);
    in.struct_size = SAMBAND_MAX_STRUCT_SIZE + 1;
    EXPECT_EQ(samband_copy_struct(&out, sizeof out, &in, sizeof(small_v)), SAMBAND_INVALID);
}

// While the ABI is 1.0, the frozen copy must be the live header byte for byte.
TEST(abi_compat, frozen_1_0_header_is_the_live_header_while_the_minor_is_0) {
    if (SAMBAND_ABI_MINOR != 0) GTEST_SKIP() << "the live header moved on to a later minor";
    auto read = [](const std::string& p) {
        std::ifstream in(p, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    };
    std::string live = read(SAMBAND_SOURCE_DIR "/plugin-api/include/samband/plugin.h");
    ASSERT_FALSE(live.empty());
    EXPECT_EQ(live, read(SAMBAND_SOURCE_DIR "/tests/abi/compat/plugin-1.0/samband/plugin.h"));
}

TEST(abi_loader, missing_required_callback_is_refused) {
    EXPECT_NE(load_failure_of("fixture_missing_callback").find("missing required callback stop"),
              std::string::npos);
}

TEST(abi_loader, duplicate_plugin_name_is_refused_naming_both_files) {
    registry reg;
    ASSERT_TRUE(reg.load(fixture("compat_1_0")));
    fs::path copy = fs::temp_directory_path() / "samband-compat-copy.so";
    fs::copy_file(fixture("compat_1_0"), copy, fs::copy_options::overwrite_existing);
    auto r = reg.load(copy.string());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().reason.find("already loaded from"), std::string::npos) << r.error().reason;
    fs::remove(copy);
}

TEST(abi_loader, nonexistent_file_is_a_clear_failure_not_a_crash) {
    registry reg;
    auto r = reg.load("/nonexistent/plugin.so");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().reason.find("cannot load"), std::string::npos);
}

TEST(abi_instance, create_failure_reports_the_plugins_reason) {
    registry reg;
    auto p = reg.load(fixture("fixture_create_fails"));
    ASSERT_TRUE(p) << p.error().reason;
    recording_services svc;
    auto inst = instance::create(**p, "ep", "{}", svc);
    ASSERT_FALSE(inst);
    EXPECT_NE(inst.error().find("INVALID"), std::string::npos) << inst.error();
    EXPECT_NE(inst.error().find("endpoint_url"), std::string::npos) << inst.error();
}

delivery_ref sample_delivery(std::uint64_t token) {
    delivery_ref d;
    d.token = token;
    d.delivery_id = std::to_string(token);
    d.event_id = "e";
    d.destination = "ep";
    d.event.envelope_json = "{}";
    return d;
}

TEST(abi_instance, exception_through_the_sdk_becomes_internal_with_its_text) {
    registry reg;
    auto p = reg.load(fixture("fixture_throws"));
    ASSERT_TRUE(p) << p.error().reason;
    recording_services svc;
    auto inst = instance::create(**p, "ep", "{}", svc);
    ASSERT_TRUE(inst);
    auto r = (*inst)->deliver(sample_delivery(1));
    EXPECT_EQ(r.status, SAMBAND_INTERNAL);
    EXPECT_NE(r.message.find("boom in deliver"), std::string::npos) << r.message;
    auto t = (*inst)->transform(event_ref{"{}", {}});
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().status, SAMBAND_INTERNAL);
    EXPECT_NE(t.error().message.find("unknown exception"), std::string::npos);
    EXPECT_TRUE(svc.completions.empty()) << "no completion may follow a refused delivery";
}

TEST(abi_instance, callback_blocking_past_its_deadline_does_not_block_the_host) {
    registry reg;
    auto p = reg.load(fixture("fixture_blocks"));
    ASSERT_TRUE(p) << p.error().reason;
    recording_services svc;
    instance_options o;
    o.call_timeout = std::chrono::milliseconds(300);
    auto inst = instance::create(**p, "ep", "{}", svc, o);
    ASSERT_TRUE(inst);
    auto t0 = std::chrono::steady_clock::now();
    auto r = (*inst)->deliver(sample_delivery(1));
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.status, SAMBAND_RETRY);
    EXPECT_NE(r.message.find("blocked past its deadline of 300 ms"), std::string::npos)
        << r.message;
    EXPECT_LT(took, std::chrono::milliseconds(2500));  // well before the plugin's 8 s sleep ends
    EXPECT_TRUE((*inst)->stuck());
    auto r2 = (*inst)->deliver(sample_delivery(2));
    EXPECT_EQ(r2.status, SAMBAND_RETRY);
    EXPECT_NE(r2.message.find("still blocked"), std::string::npos) << r2.message;
}

// A list of deliveries goes to the instance in one hop, each call with its own deadline: the ones
// before a hung call are accepted and completed in order, the hung one times out, and the ones
// after it are not called.
TEST(abi_instance, a_list_of_deliveries_stops_at_the_call_that_blocks) {
    registry reg;
    auto p = reg.load(fixture("fixture_blocks"));
    ASSERT_TRUE(p) << p.error().reason;
    recording_services svc;
    instance_options o;
    o.call_timeout = std::chrono::milliseconds(300);
    auto inst = instance::create(**p, "ep", "{}", svc, o);
    ASSERT_TRUE(inst);
    std::vector<std::shared_ptr<const delivery_ref>> ds;
    for (std::uint64_t t = 1; t <= 4; ++t) {
        auto d = sample_delivery(t);
        if (t != 3) d.event.envelope_json = R"({"fast":true})";
        ds.push_back(std::make_shared<const delivery_ref>(std::move(d)));
    }
    auto t0 = std::chrono::steady_clock::now();
    auto r = (*inst)->deliver(ds);
    auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_EQ(r.size(), 4u);
    EXPECT_EQ(r[0].status, SAMBAND_OK) << r[0].message;
    EXPECT_EQ(r[1].status, SAMBAND_OK) << r[1].message;
    EXPECT_EQ(r[2].status, SAMBAND_RETRY);
    EXPECT_NE(r[2].message.find("blocked past its deadline of 300 ms"), std::string::npos)
        << r[2].message;
    EXPECT_EQ(r[3].status, SAMBAND_RETRY);
    EXPECT_NE(r[3].message.find("still blocked; deliver not called"), std::string::npos)
        << r[3].message;
    EXPECT_LT(took, std::chrono::milliseconds(2500));  // well before the plugin's 8 s sleep ends
    EXPECT_TRUE((*inst)->stuck());
    std::lock_guard lock(svc.mu);
    ASSERT_EQ(svc.completions.size(), 2u);
    EXPECT_EQ(svc.completions[0].first, 1u);
    EXPECT_EQ(svc.completions[1].first, 2u);
    EXPECT_EQ(svc.completions[1].second.external_id, "fast");
}

// Each call of a list has its own deadline, counted from the return of the call before it (the
// host waits for the list with one wake-up, not one per call): four calls of 150 ms each under a
// 300 ms deadline all succeed although the list takes twice the deadline.
TEST(abi_instance, each_call_of_a_list_gets_its_deadline_from_the_call_before) {
    registry reg;
    auto p = reg.load(fixture("fixture_blocks"));
    ASSERT_TRUE(p) << p.error().reason;
    recording_services svc;
    instance_options o;
    o.call_timeout = std::chrono::milliseconds(300);
    auto inst = instance::create(**p, "ep", "{}", svc, o);
    ASSERT_TRUE(inst);
    std::vector<std::shared_ptr<const delivery_ref>> ds;
    for (std::uint64_t t = 1; t <= 4; ++t) {
        auto d = sample_delivery(t);
        d.event.envelope_json = R"({"slow":true})";
        ds.push_back(std::make_shared<const delivery_ref>(std::move(d)));
    }
    auto r = (*inst)->deliver(ds);
    ASSERT_EQ(r.size(), 4u);
    for (const auto& one : r) EXPECT_EQ(one.status, SAMBAND_OK) << one.message;
    EXPECT_FALSE((*inst)->stuck());
    std::lock_guard lock(svc.mu);
    ASSERT_EQ(svc.completions.size(), 4u);
    for (std::uint64_t t = 1; t <= 4; ++t) EXPECT_EQ(svc.completions[t - 1].first, t);
}

TEST(abi_instance, logged_fodselsnummer_is_masked_by_the_host) {
    registry reg;
    auto p = reg.load(fixture("fixture_logs_fnr"));
    ASSERT_TRUE(p) << p.error().reason;
    recording_services svc;
    auto inst = instance::create(**p, "ep", "{}", svc);
    ASSERT_TRUE(inst);
    ASSERT_TRUE((*inst)->start().ok());
    ASSERT_EQ(svc.logs.size(), 1u);
    EXPECT_EQ(svc.logs[0].find("14839134623"), std::string::npos) << svc.logs[0];
    EXPECT_NE(svc.logs[0].find("148391*****"), std::string::npos) << svc.logs[0];
}

TEST(abi_compat, plugin_built_from_the_frozen_1_0_header_loads_and_passes_the_check) {
    std::ostringstream out;
    int rc = run_plugin_check(fixture("compat_1_0"), std::nullopt, out, std::nullopt, SAMBAND_BIN);
    EXPECT_EQ(rc, 0) << out.str();
    EXPECT_NE(out.str().find("compat-1-0"), std::string::npos);
}

std::pair<int, std::string> check_cli(const std::string& so, const std::string& config_json = {}) {
    std::string cmd = std::string(SAMBAND_BIN) + " plugin check " + so;
    if (!config_json.empty()) {
        // Per process: builds in several worktrees run this test at the same time.
        fs::path cfg = fs::temp_directory_path() / ("samband-check-" + std::to_string(::getpid()) +
                                                    "-" + fs::path(so).stem().string() + ".json");
        std::ofstream(cfg) << config_json;
        cmd += " --config " + cfg.string();
    }
    std::string out;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = pclose(p);
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

TEST(abi_check_cli, every_fixture_fails_with_its_specific_reason) {
    std::vector<std::pair<std::string, std::string>> cases = {
        {"fixture_no_entry", "no entry point"},
        {"fixture_major_mismatch", "major versions must match"},
        {"fixture_newer_minor", "needs ABI 1.5"},
        {"fixture_truncated", "truncated"},
        {"fixture_missing_callback", "missing required callback stop"},
        {"fixture_create_fails", "endpoint_url"},
        {"fixture_throws", "boom in deliver"},
        {"fixture_blocks", "blocked past its deadline"},
    };
    for (const auto& [name, reason] : cases) {
        auto [rc, out] = check_cli(fixture(name));
        EXPECT_NE(rc, 0) << name << "\n" << out;
        EXPECT_NE(out.find("FAIL"), std::string::npos) << name << "\n" << out;
        EXPECT_NE(out.find(reason), std::string::npos) << name << "\n" << out;
    }
}

TEST(abi_check_cli, in_tree_plugins_pass) {
    fs::path tmp =
        fs::temp_directory_path() / ("samband-check-outbox-" + std::to_string(::getpid()));
    fs::create_directories(tmp);
    std::string dir = SAMBAND_PLUGIN_DIR;
    std::vector<std::pair<std::string, std::string>> plugins = {
        {"samband_plugin_file", "{\"outbox\": \"" + tmp.string() + "\"}"},
        {"samband_plugin_fixture_sink",
         "{\"record_file\": \"" + (tmp / "record.jsonl").string() + "\"}"},
        {"samband_plugin_bench_sink", "{}"},
    };
    for (const auto& extra : {"samband_plugin_rph", "samband_plugin_example_vendor"}) {
        if (fs::exists(dir + "/" + extra + ".so")) {
            std::string cfg = std::string(extra) == "samband_plugin_example_vendor"
                                  ? "{\"folder\": \"" + tmp.string() + "\"}"
                                  : "{}";
            plugins.push_back({extra, cfg});
        }
    }
    for (const auto& [name, cfg] : plugins) {
        auto [rc, out] = check_cli(dir + "/" + name + ".so", cfg);
        EXPECT_EQ(rc, 0) << name << "\n" << out;
        fs::remove(fs::temp_directory_path() /
                   ("samband-check-" + std::to_string(::getpid()) + "-" + name + ".json"));
    }
    fs::remove_all(tmp);
}

}  // namespace
}  // namespace samband::plugin
