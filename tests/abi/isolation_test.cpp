// Process isolation (`isolation: "process"`) with the hostile fixtures: what the host does when a
// plugin in a child crashes, hangs, allocates too much, prints, or breaks the protocol; and what
// the conformance kit reports for each.
#include "plugin/plugin_host.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace samband::plugin {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string fixture(const std::string& name) {
    return std::string(ABI_FIXTURE_DIR) + "/" + name + ".so";
}

class recording_services final : public host_services {
public:
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> logs;
    std::vector<std::pair<std::uint64_t, completion>> completions;
    std::vector<submission> submissions;
    int receipts = 0;

    bool log_enabled(std::string_view, samband_log_level) override { return true; }
    void log(std::string_view, samband_log_level, std::string_view m) override {
        std::lock_guard lock(mu);
        logs.emplace_back(m);
        cv.notify_all();
    }
    std::optional<std::string> secret(std::string_view, std::string_view) override {
        return std::nullopt;
    }
    samband_status submit(std::string_view, submission s,
                          std::function<void(const submit_result&)>) override {
        std::lock_guard lock(mu);
        submissions.push_back(std::move(s));
        return SAMBAND_RETRY;
    }
    void complete(std::string_view, std::uint64_t t, completion c) override {
        std::lock_guard lock(mu);
        completions.emplace_back(t, std::move(c));
        cv.notify_all();
    }
    void receipt(std::string_view, std::string_view, std::int32_t, std::string_view) override {
        std::lock_guard lock(mu);
        ++receipts;
    }
    boost::system::result<std::size_t> read_attachment(std::uint64_t, std::uint64_t, std::uint8_t*,
                                                       std::size_t) override {
        return std::size_t{0};
    }
    // Waits until `pred` holds (under the lock) or the deadline.
    template <class P>
    bool wait(P pred, std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, timeout, pred);
    }
    std::size_t completions_of(std::uint64_t token) {
        std::size_t n = 0;
        for (auto& [t, c] : completions) n += t == token;
        return n;
    }
    bool logged(const std::string& part) {
        for (auto& l : logs)
            if (l.find(part) != std::string::npos) return true;
        return false;
    }
};

struct isolated_fixture : ::testing::Test {
    registry reg;
    recording_services svc;

    instance_options options() {
        instance_options o;
        o.isolated = true;
        o.call_timeout = 2s;
        o.process.host_exe = SAMBAND_BIN;
        o.process.max_crashes = 3;
        o.process.crash_window = 60s;
        o.process.backoff_base = 10ms;
        o.process.memory_limit_mb = 1024;
        return o;
    }
    const loaded_plugin& plugin(const std::string& name = "fixture_hostile") {
        auto p = reg.probe(fixture(name), SAMBAND_BIN);
        EXPECT_TRUE(p) << (p ? "" : p.error().reason);
        return **p;
    }
    std::unique_ptr<instance> make(const std::string& fault, instance_options o) {
        auto r =
            instance::create(plugin(), "ep-" + fault, R"({"fault":")" + fault + R"("})", svc, o);
        EXPECT_TRUE(r) << (r ? "" : r.error());
        if (!r) return nullptr;
        EXPECT_TRUE((*r)->isolated());
        EXPECT_TRUE((*r)->start().ok());
        return std::move(*r);
    }
    std::unique_ptr<instance> make(const std::string& fault) { return make(fault, options()); }
    static delivery_ref delivery(std::uint64_t token) {
        delivery_ref d;
        d.token = token;
        d.delivery_id = "d" + std::to_string(token);
        d.event_id = "e1";
        d.destination = "ep";
        d.deadline_unix_ms = 0;
        d.event.envelope_json = R"({"type":"x"})";
        return d;
    }
};

TEST_F(isolated_fixture, probe_reports_the_descriptor_without_loading_the_library_here) {
    const auto& p = plugin();
    EXPECT_EQ(p.name, "fixture-hostile");
    EXPECT_EQ(p.descriptor, nullptr);
    EXPECT_TRUE(p.renders);
    EXPECT_EQ(p.kinds, SAMBAND_KIND_SINK | SAMBAND_KIND_TRANSFORM);
}

TEST_F(isolated_fixture, a_healthy_child_delivers_renders_and_reads_attachments_by_descriptor) {
    auto inst = make("");
    ASSERT_TRUE(inst);
    auto d = delivery(1);
    EXPECT_TRUE(inst->deliver(d).ok());
    ASSERT_TRUE(svc.wait([&] { return svc.completions_of(1) == 1; }));
    EXPECT_EQ(svc.completions[0].second.status, SAMBAND_OK);
    EXPECT_EQ(svc.completions[0].second.external_id, "d1");

    fs::path f = fs::temp_directory_path() / ("samband-iso-" + std::to_string(::getpid()) + ".bin");
    std::ofstream(f, std::ios::binary) << "attachment bytes";
    auto r = delivery(2);
    attachment_ref a;
    a.id = "a1";
    a.filename = "a.bin";
    a.path = f.string();
    a.size = 16;
    r.event.attachments.push_back(a);
    auto out = inst->render(r);
    fs::remove(f);  // the child reads through its descriptor, not the path
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_EQ(out->bytes, "d2attachment bytes");
    EXPECT_EQ(inst->crashes(), 0u);
}

TEST_F(isolated_fixture, segfault_in_deliver_costs_one_attempt_per_crash_then_quarantines) {
    auto inst = make("segv_deliver");
    ASSERT_TRUE(inst);
    for (std::uint64_t i = 1; i <= 3; ++i) {
        ASSERT_TRUE(inst->wait_up(10s)) << "not up before attempt " << i;
        auto r = inst->deliver(delivery(i));
        EXPECT_EQ(r.status, SAMBAND_RETRY);
        EXPECT_NE(r.message.find("SIGSEGV"), std::string::npos) << r.message;
        EXPECT_NE(r.message.find("during deliver"), std::string::npos) << r.message;
        EXPECT_EQ(inst->crashes(), i);
    }
    EXPECT_NE(inst->quarantined().find("quarantined after 3 crashes"), std::string::npos)
        << inst->quarantined();
    EXPECT_NE(inst->quarantined().find("SIGSEGV"), std::string::npos);
    auto r = inst->deliver(delivery(9));
    EXPECT_EQ(r.status, SAMBAND_RETRY);
    EXPECT_NE(r.message.find("quarantined"), std::string::npos) << r.message;
    EXPECT_EQ(inst->crashes(), 3u) << "a quarantined endpoint starts no child";
    std::lock_guard lock(svc.mu);
    EXPECT_TRUE(svc.completions.empty()) << "a refused delivery gets no completion";
}

TEST_F(isolated_fixture, a_crash_after_accepting_completes_that_delivery_once_with_retry) {
    auto inst = make("accept_then_segv");
    ASSERT_TRUE(inst);
    EXPECT_TRUE(inst->deliver(delivery(1)).ok());
    ASSERT_TRUE(svc.wait([&] { return svc.completions_of(1) >= 1; }));
    ASSERT_TRUE(inst->wait_up(10s));
    std::lock_guard lock(svc.mu);
    EXPECT_EQ(svc.completions_of(1), 1u);
    EXPECT_EQ(svc.completions[0].second.status, SAMBAND_RETRY);
    EXPECT_NE(svc.completions[0].second.message.find("SIGSEGV"), std::string::npos);
    EXPECT_EQ(inst->crashes(), 1u);
}

TEST_F(isolated_fixture, a_crashing_endpoint_leaves_its_neighbour_untouched) {
    auto bad = make("segv_deliver");
    auto good = make("");
    ASSERT_TRUE(bad && good);
    for (std::uint64_t i = 1; i <= 20; ++i) {
        if (bad->wait_up(10s)) bad->deliver(delivery(1000 + i));  // false once quarantined
        EXPECT_TRUE(good->deliver(delivery(i)).ok());
    }
    ASSERT_TRUE(svc.wait([&] {
        for (std::uint64_t i = 1; i <= 20; ++i)
            if (svc.completions_of(i) != 1) return false;
        return true;
    }));
    EXPECT_EQ(good->crashes(), 0u);
    EXPECT_FALSE(bad->quarantined().empty());
}

TEST_F(isolated_fixture, segfault_in_create_fails_create_naming_the_signal) {
    auto r = instance::create(plugin(), "ep", R"({"fault":"segv_create"})", svc, options());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("create failed"), std::string::npos) << r.error();
    EXPECT_NE(r.error().find("SIGSEGV"), std::string::npos) << r.error();
}

TEST_F(isolated_fixture, segfault_in_render_and_transform_fail_the_call_naming_the_signal) {
    auto inst = make("segv_render");
    ASSERT_TRUE(inst);
    auto r = inst->render(delivery(1));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("SIGSEGV"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("during render"), std::string::npos);
    auto t = make("segv_transform");
    ASSERT_TRUE(t);
    event_ref e;
    e.envelope_json = "{}";
    auto tr = t->transform(e);
    ASSERT_FALSE(tr);
    EXPECT_EQ(tr.error().status, SAMBAND_RETRY);
    EXPECT_NE(tr.error().message.find("SIGSEGV"), std::string::npos) << tr.error().message;
}

TEST_F(isolated_fixture, abort_is_reported_as_sigabrt_and_leaves_no_core_dump) {
    auto inst = make("abort");
    ASSERT_TRUE(inst);
    auto r = inst->deliver(delivery(1));
    EXPECT_EQ(r.status, SAMBAND_RETRY);
    EXPECT_NE(r.message.find("SIGABRT"), std::string::npos) << r.message;
    EXPECT_FALSE(fs::exists("core"));
}

TEST_F(isolated_fixture, an_endless_deliver_is_killed_at_the_deadline_and_counted) {
    auto o = options();
    o.call_timeout = 500ms;
    auto inst = make("loop", o);
    ASSERT_TRUE(inst);
    auto t0 = std::chrono::steady_clock::now();
    auto r = inst->deliver(delivery(1));
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.status, SAMBAND_RETRY);
    EXPECT_NE(r.message.find("blocked past its deadline of 500 ms"), std::string::npos)
        << r.message;
    EXPECT_LT(took, 3s);
    ASSERT_TRUE(inst->wait_up(10s));
    EXPECT_EQ(inst->crashes(), 1u);
    EXPECT_NE(inst->last_crash().find("deliver blocked past its deadline"), std::string::npos)
        << inst->last_crash();
}

TEST_F(isolated_fixture, a_10_gb_allocation_fails_inside_the_memory_limit) {
    auto inst = make("alloc");
    ASSERT_TRUE(inst);
    auto r = inst->deliver(delivery(1));
    EXPECT_EQ(r.status, SAMBAND_RETRY);
    EXPECT_NE(r.message.find("malloc of 10 GB failed"), std::string::npos) << r.message;
    EXPECT_EQ(inst->crashes(), 0u);
}

TEST_F(isolated_fixture, stdout_and_stderr_become_masked_log_lines) {
    auto inst = make("output");
    ASSERT_TRUE(inst);
    EXPECT_TRUE(inst->deliver(delivery(1)).ok());
    ASSERT_TRUE(svc.wait([&] {
        return svc.logged("plugin wrote to stdout/stderr: hostile: delivering on stdout") &&
               svc.logged("plugin wrote to stdout/stderr: hostile: delivering on stderr");
    }));
    std::lock_guard lock(svc.mu);
    EXPECT_TRUE(svc.logged("hostile: hello on stdout from create"));
    EXPECT_FALSE(svc.logged("14839134623")) << "the fødselsnummer is masked";
}

// A second completion is refused and logged in the child, exactly as in-process (the engine sees
// only the first); the child keeps running.
TEST_F(isolated_fixture, a_double_completion_is_refused_and_logged) {
    auto inst = make("double_complete");
    ASSERT_TRUE(inst);
    EXPECT_TRUE(inst->deliver(delivery(1)).ok());
    ASSERT_TRUE(svc.wait([&] {
        return svc.logged("complete: token 1 is unknown or already completed") &&
               svc.completions_of(1) == 1;
    }));
    EXPECT_TRUE(inst->deliver(delivery(2)).ok());
    ASSERT_TRUE(svc.wait([&] { return svc.completions_of(2) == 1; }));
    EXPECT_EQ(inst->crashes(), 0u);
}

TEST_F(isolated_fixture, a_completion_of_a_refused_delivery_is_logged_after_the_refusal) {
    auto inst = make("late_complete");
    ASSERT_TRUE(inst);
    auto r = inst->deliver(delivery(1));
    EXPECT_EQ(r.status, SAMBAND_RETRY);
    std::lock_guard lock(svc.mu);
    EXPECT_EQ(svc.completions_of(1), 1u);
    EXPECT_TRUE(svc.logged("that deliver() refused (a late completion)"));
}

// A completion with struct_size 3 and a receipt with struct_size 0xffffffff are refused with a
// reason; neither reaches the engine, and the child lives on.
TEST_F(isolated_fixture, bogus_struct_sizes_are_refused_and_do_not_take_the_host_down) {
    auto inst = make("bogus_sizes");
    ASSERT_TRUE(inst);
    EXPECT_TRUE(inst->deliver(delivery(1)).ok());
    ASSERT_TRUE(svc.wait([&] {
        return svc.logged("complete: malformed completion (struct_size) for token 1") &&
               svc.logged("receipt: malformed receipt (struct_size)");
    }));
    EXPECT_TRUE(inst->deliver(delivery(2)).ok());  // the same child answers again
    ASSERT_TRUE(
        svc.wait([&] { return svc.logged("malformed completion (struct_size) for token 2"); }));
    std::lock_guard lock(svc.mu);
    EXPECT_EQ(svc.completions_of(1), 0u);
    EXPECT_EQ(svc.receipts, 0);
    EXPECT_EQ(inst->crashes(), 0u);
}

// A submission claiming 2^40 attachments, or with struct_size 2, is refused in the child with the
// reason; nothing reaches the host's store and the child lives on.
TEST_F(isolated_fixture, huge_counts_and_bogus_sizes_from_a_source_are_refused) {
    for (auto [fault, why] :
         {std::pair{"huge_counts", "submit: 1099511627776 attachments, more than the ABI's 1000"},
          std::pair{"bogus_sizes", "submit: malformed submission (struct_size)"}}) {
        auto r = instance::create(plugin("fixture_hostile_source"), std::string("src-") + fault,
                                  std::string(R"({"fault":")") + fault + "\"}", svc, options());
        ASSERT_TRUE(r) << r.error();
        EXPECT_TRUE((*r)->start().ok()) << fault;
        EXPECT_TRUE(svc.wait([&, why = why] { return svc.logged(why); })) << fault;
        std::lock_guard lock(svc.mu);
        EXPECT_TRUE(svc.submissions.empty()) << fault;
        EXPECT_EQ((*r)->crashes(), 0u) << fault;
    }
}

// ---- the conformance kit on the hostile fixtures ----

struct kit_result {
    int rc = -1;
    std::string out;
};

kit_result kit(const std::string& so, const std::string& config_json) {
    fs::path cfg = fs::temp_directory_path() /
                   ("samband-kit-" + std::to_string(::getpid()) + "-" +
                    std::to_string(std::hash<std::string>{}(config_json)) + ".json");
    std::ofstream(cfg) << config_json;
    std::string cmd =
        std::string(SAMBAND_BIN) + " plugin check " + so + " --config " + cfg.string() + " 2>&1";
    kit_result k;
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) k.out.append(buf, n);
    int status = ::pclose(p);
    k.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    fs::remove(cfg);
    return k;
}

bool has_line(const std::string& out, const std::string& a, const std::string& b) {
    std::size_t pos = 0;
    while (pos < out.size()) {
        std::size_t nl = out.find('\n', pos);
        std::string line = out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) return true;
        if (nl == std::string::npos) break;
        pos = nl + 1;
    }
    return false;
}

TEST(kit_hostile, a_well_behaved_config_passes) {
    auto k = kit(fixture("fixture_hostile"), R"({"fault":""})");
    EXPECT_EQ(k.rc, 0) << k.out;
}

TEST(kit_hostile, each_crash_is_a_fail_row_naming_the_signal) {
    for (auto [fault, row, signal] :
         {std::tuple{"segv_deliver", "sink:", "SIGSEGV"}, std::tuple{"abort", "sink:", "SIGABRT"},
          std::tuple{"segv_render", "sink: render", "SIGSEGV"},
          std::tuple{"segv_transform", "transform: valid event", "SIGSEGV"},
          std::tuple{"segv_create", "create", "SIGSEGV"}}) {
        auto k = kit(fixture("fixture_hostile"), std::string(R"({"fault":")") + fault + "\"}");
        EXPECT_EQ(k.rc, 1) << fault << "\n" << k.out;
        EXPECT_TRUE(has_line(k.out, "FAIL  " + std::string(row), signal)) << fault << "\n" << k.out;
    }
}

TEST(kit_hostile, an_endless_deliver_fails_at_the_daemons_deadline) {
    auto k = kit(fixture("fixture_hostile"), R"({"fault":"loop"})");
    EXPECT_EQ(k.rc, 1) << k.out;
    EXPECT_TRUE(has_line(k.out, "FAIL", "blocked past its deadline of 5000 ms")) << k.out;
}

TEST(kit_hostile, double_and_late_completions_fail) {
    auto d = kit(fixture("fixture_hostile"), R"({"fault":"double_complete"})");
    EXPECT_EQ(d.rc, 1) << d.out;
    EXPECT_TRUE(has_line(d.out, "FAIL  sink: 5 completion(s) out of turn",
                         "complete: token 1 is unknown or already completed"))
        << d.out;
    auto l = kit(fixture("fixture_hostile"), R"({"fault":"late_complete"})");
    EXPECT_EQ(l.rc, 1) << l.out;
    EXPECT_TRUE(has_line(l.out, "FAIL", "late completion")) << l.out;
}

TEST(kit_hostile, a_sink_that_refuses_everything_fails) {
    auto k = kit(fixture("fixture_hostile"), R"({"fault":"alloc"})");
    EXPECT_EQ(k.rc, 1) << k.out;
    EXPECT_TRUE(has_line(k.out, "FAIL  sink:", "delivered none")) << k.out;
}

TEST(kit_hostile, stray_output_bogus_sizes_and_huge_counts_fail_with_the_reason) {
    for (auto [so, cfg, row, why] :
         {std::tuple{"fixture_hostile", R"({"fault":"output"})", "FAIL  ",
                     "written to stdout/stderr (use host->log): plugin wrote to stdout/stderr"},
          std::tuple{"fixture_hostile", R"({"fault":"bogus_sizes"})",
                     "FAIL  sink: delivery without attachment",
                     "completion the host refused: plugin fixture-hostile: complete: malformed "
                     "completion (struct_size) for token 1"},
          std::tuple{"fixture_hostile", R"({"fault":"bogus_sizes"})", "FAIL  ",
                     "refused by the host: plugin fixture-hostile: receipt: malformed receipt"},
          std::tuple{"fixture_hostile_source", R"({"fault":"huge_counts"})", "FAIL  ",
                     "refused by the host: plugin fixture-hostile-source: submit: 1099511627776 "
                     "attachments"}}) {
        auto k = kit(fixture(so), cfg);
        EXPECT_EQ(k.rc, 1) << cfg << "\n" << k.out;
        EXPECT_TRUE(has_line(k.out, row, why)) << cfg << "\n" << k.out;
        EXPECT_NE(k.out.find(" passed, "), std::string::npos) << cfg << "\n" << k.out;
    }
}

TEST(kit_hostile, a_missing_event_file_is_an_error) {
    std::string cmd = std::string(SAMBAND_BIN) + " plugin check " + fixture("fixture_hostile") +
                      " --event /nonexistent/event.json 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[1024];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = ::pclose(p);
    EXPECT_EQ(WEXITSTATUS(status), 2) << out;
    EXPECT_NE(out.find("cannot read event file /nonexistent/event.json"), std::string::npos) << out;
}

}  // namespace
}  // namespace samband::plugin
