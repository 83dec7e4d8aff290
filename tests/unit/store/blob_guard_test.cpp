// The attachment folder's back-off (store/blob_guard): one probe per doubling delay, one alert.
#include "store/blob_guard.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

namespace samband::store {
namespace {

using namespace std::chrono_literals;

TEST(blob_guard, trouble_backs_off_doubling_with_one_probe_per_delay_and_one_alert_each_way) {
    blob_guard g(50ms, 200ms);
    std::vector<blob_health> seen;
    g.on_change([&](const blob_health& h) { seen.push_back(h); });

    EXPECT_TRUE(g.may_write());
    g.succeeded();  // fine → fine: nothing to report
    EXPECT_TRUE(seen.empty());

    g.failed("cannot create /x: No space left on device");
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_TRUE(seen[0].trouble);
    EXPECT_EQ(seen[0].reason, "cannot create /x: No space left on device");
    EXPECT_FALSE(g.may_write()) << "right after a failure nobody writes";

    // 1 s of callers asking every millisecond; each probe fails. Delays 50, 100, 200, 200, ...
    // allow about 6 probes; without the back-off there would be about 1,000.
    auto until = std::chrono::steady_clock::now() + 1s;
    int granted = 0, asked = 1;  // the refusal just above
    while (std::chrono::steady_clock::now() < until) {
        ++asked;
        if (g.may_write()) {
            ++granted;
            EXPECT_FALSE(g.may_write()) << "a second caller during a probe is refused";
            ++asked;
            g.failed("cannot create /x: No space left on device");
        }
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_GE(granted, 2);
    EXPECT_LE(granted, 8);
    auto st = g.state();
    EXPECT_EQ(st.probes, static_cast<std::uint64_t>(granted));
    EXPECT_EQ(st.write_errors, static_cast<std::uint64_t>(granted) + 1);
    EXPECT_EQ(st.refused, static_cast<std::uint64_t>(asked - granted));
    EXPECT_EQ(st.episodes, 1u);
    EXPECT_EQ(seen.size(), 1u) << "failed probes raise no second alert";

    // The next probe goes through: one "recovered", and writes are free again.
    ASSERT_TRUE([&] {
        auto deadline = std::chrono::steady_clock::now() + 2s;
        while (std::chrono::steady_clock::now() < deadline) {
            if (g.may_write()) return true;
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }());
    g.succeeded();
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_FALSE(seen[1].trouble);
    EXPECT_GE(seen[1].recovered_ms, seen[1].since_ms);
    EXPECT_TRUE(g.may_write());
    EXPECT_TRUE(g.may_write());

    // A new trouble starts again from the base delay, as a second alert.
    g.failed("cannot write /x: Input/output error");
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[2].episodes, 2u);
    EXPECT_LE(seen[2].next_probe_ms - seen[2].since_ms, 50);
}

TEST(blob_guard, its_error_is_told_apart_from_other_store_errors) {
    EXPECT_TRUE(is_blob_folder_error(blob_folder_error()));
    EXPECT_FALSE(
        is_blob_folder_error(boost::system::errc::make_error_code(boost::system::errc::io_error)));
    EXPECT_FALSE(is_blob_folder_error({}));
    EXPECT_NE(blob_folder_error().message().find("attachment folder"), std::string::npos);
}

}  // namespace
}  // namespace samband::store
