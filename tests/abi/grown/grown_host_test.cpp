// A plugin built from the frozen ABI 1.0 header, loaded by the real host loader compiled against
// a simulated ABI 1.1 whose every growable struct has extra fields (tests/abi/grown).
#include "core/log.hpp"
#include "plugin/plugin_host.hpp"

#include <samband/identifiers.hpp>

#include <gtest/gtest.h>

#include <mutex>

static_assert(SAMBAND_ABI_MINOR == 1, "this test must see the simulated 1.1 header");

// The one piece of the daemon the loader calls (core/log.cpp brings the whole logger).
namespace samband::core {
std::string mask_identifiers(std::string_view text) {
    return ident::mask(text);
}
}  // namespace samband::core

namespace samband::plugin {
namespace {

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

delivery_ref two_attachments(std::uint64_t token) {
    delivery_ref d;
    d.token = token;
    d.delivery_id = "d" + std::to_string(token);
    d.event_id = "e1";
    d.destination = "ep";
    d.event.envelope_json = R"({"schema":"samband.event/1"})";
    d.event.attachments = {
        {"a1", "henvisning.pdf", "application/pdf", std::string(64, 'a'), "", 10, 1},
        {"a2", "note.txt", "text/plain", std::string(64, 'b'), "", 3, 2}};
    return d;
}

TEST(abi_grown_host, the_simulated_host_structs_really_grew_with_a_non_zero_tail) {
    samband_delivery grown{};
    EXPECT_GT(sizeof grown, SAMBAND_V1_0_DELIVERY_SIZE);
    grown.struct_size = sizeof grown;
    // A 1.0 reader must refuse this whole grown struct: the host has to write the 1.0 size.
    unsigned char v1_0[SAMBAND_V1_0_DELIVERY_SIZE];
    EXPECT_EQ(samband_copy_struct(v1_0, sizeof v1_0, &grown, SAMBAND_V1_0_DELIVERY_SIZE),
              SAMBAND_INVALID);
}

TEST(abi_grown_host, a_1_0_plugin_loads_delivers_and_renders_in_a_1_1_host) {
    registry reg;
    auto p = reg.load(COMPAT_1_0_PLUGIN);
    ASSERT_TRUE(p) << p.error().reason;
    EXPECT_EQ((*p)->abi_version, SAMBAND_ABI_MAKE(1, 0));
    // The 1.0 descriptor was zero-filled up to the 1.1 size.
    EXPECT_EQ((*p)->desc.sim_1_1_number, 0u);
    EXPECT_EQ((*p)->desc.sim_1_1_text, nullptr);
    EXPECT_NE((*p)->config_schema.find("additionalProperties"), std::string::npos);

    recording_services svc;
    auto inst = instance::create(**p, "ep", "{}", svc);
    ASSERT_TRUE(inst) << inst.error();
    ASSERT_TRUE((*inst)->start().ok());

    auto r = (*inst)->deliver(two_attachments(7));
    ASSERT_TRUE(r.ok()) << r.message;
    std::lock_guard lock(svc.mu);
    ASSERT_EQ(svc.completions.size(), 1u);
    EXPECT_EQ(svc.completions[0].first, 7u);
    EXPECT_EQ(svc.completions[0].second.status, SAMBAND_OK);
    // The plugin walked both attachments through the array of pointers.
    EXPECT_EQ(svc.completions[0].second.external_id, "compat-d7-2-henvisning.pdf:10-note.txt:3");

    auto rendered = (*inst)->render(two_attachments(8));
    ASSERT_TRUE(rendered) << rendered.error().message;
    EXPECT_EQ(rendered->bytes, R"({"schema":"samband.event/1"})");
}

}  // namespace
}  // namespace samband::plugin
