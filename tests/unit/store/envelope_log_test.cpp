// The envelope log alone (store/envelope_log): records across many small segments read back
// whole and only under their own key, a sync covers every append that returned before it (also
// appends from several threads at once), and what retention leaves reads as missing, never as
// other bytes.
#include "store/envelope_log.hpp"

#include "core/ids.hpp"

#include <samband_test/tools.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using samband::store::envelope_log;
using samband::store::envelope_ref;

namespace {

class envelope_log_test : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("samband-envlog-" + samband::core::uuid_v7());
    }
    void TearDown() override { fs::remove_all(dir_); }

    static std::string payload(int i) {
        return "{\"i\":" + std::to_string(i) + ",\"pad\":\"" +
               std::string(100 + (i * 37) % 900, static_cast<char>('a' + i % 26)) + "\"}";
    }
    fs::path dir_;
};

// A record reads back whole; a changed byte, a wrong length or an offset that is not a record's
// reads as an error; segments roll when full; every open starts a fresh segment; only segments
// below the one appended to are removed.
TEST_F(envelope_log_test, records_read_back_and_a_changed_record_is_an_error) {
    const fs::path& dir = dir_;
    envelope_ref a, b, c;
    {
        envelope_log log(dir, 100);
        auto ra = log.append("hello", "A");
        auto rb = log.append(std::string(90, 'x'), "B");  // 114 bytes: past 100 with "hello" before
        auto rc = log.append("z", "C");
        ASSERT_TRUE(ra && rb && rc);
        a = ra->ref, b = rb->ref, c = rc->ref;
        EXPECT_EQ(a.segment, 1);
        EXPECT_EQ(b.segment, 2);
        EXPECT_EQ(c.segment, 3);
        EXPECT_EQ(log.synced_through(), 0u);
        ASSERT_FALSE(log.sync());
        EXPECT_EQ(log.synced_through(), 3u);
        EXPECT_EQ(*log.read(a, "A"), "hello");
        EXPECT_EQ(*log.read(b, "B"), std::string(90, 'x'));
        EXPECT_EQ(*log.read(c, "C"), "z");
        envelope_ref wrong = a;
        wrong.length = 4;
        EXPECT_FALSE(log.read(wrong, "A"));
        wrong = a;
        wrong.offset = 1;
        EXPECT_FALSE(log.read(wrong, "A"));
        EXPECT_FALSE(log.read(c, "B")) << "another key's record";
        EXPECT_EQ(log.remove_below(99), 2u) << "never the segment appended to";
        EXPECT_FALSE(log.read(a, "A"));
        EXPECT_EQ(*log.read(c, "C"), "z");
    }
    {
        envelope_log log(dir, 100);
        EXPECT_EQ(log.current_segment(), 4) << "a fresh segment for each open";
        EXPECT_EQ(*log.read(c, "C"), "z");
    }
    {
        std::fstream f(envelope_log::segment_path(dir, 3),
                       std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(24);
        f.put('y');
    }
    EXPECT_FALSE(envelope_log::read_from(dir, c, "C"));
}

TEST_F(envelope_log_test, records_roll_over_small_segments_and_read_back_only_under_their_key) {
    envelope_log log(dir_, 4096);  // a few records a segment
    std::vector<envelope_ref> refs;
    for (int i = 0; i < 60; ++i) {
        auto a = log.append(payload(i), "event-" + std::to_string(i));
        ASSERT_TRUE(a) << a.error().message();
        EXPECT_EQ(a->ticket, static_cast<std::uint64_t>(i + 1));
        refs.push_back(a->ref);
    }
    EXPECT_EQ(log.synced_through(), 0u) << "nothing synced before sync()";
    ASSERT_FALSE(log.sync());
    EXPECT_EQ(log.synced_through(), 60u);
    EXPECT_GT(envelope_log::list_segments(dir_).size(), 5u) << "rolled over";
    for (int i = 0; i < 60; ++i) {
        auto r = log.read(refs[i], "event-" + std::to_string(i));
        ASSERT_TRUE(r) << i << ": " << r.error().message();
        EXPECT_EQ(*r, payload(i));
        // Another event's key at the same place: an error, not its bytes.
        auto other = log.read(refs[i], "event-" + std::to_string(i + 1));
        ASSERT_FALSE(other);
        EXPECT_TRUE(envelope_log::record_missing(other.error()));
    }
    // A changed payload byte fails the record's CRC.
    ASSERT_TRUE(samband::testing::flip_byte(envelope_log::segment_path(dir_, refs[7].segment),
                                            refs[7].offset + envelope_log::kHeaderBytes + 3));
    auto torn = log.read(refs[7], "event-7");
    ASSERT_FALSE(torn);
    EXPECT_TRUE(envelope_log::record_missing(torn.error()));
    // Read-only readers (another process's tools) get the same bytes.
    auto ro = envelope_log::read_from(dir_, refs[8], "event-8");
    ASSERT_TRUE(ro);
    EXPECT_EQ(*ro, payload(8));
}

TEST_F(envelope_log_test,
       appends_of_several_threads_between_syncs_read_back_whole_and_the_last_sync_covers_all) {
    envelope_log log(dir_, 64 << 10);
    constexpr int kThreads = 4, kEach = 200;
    std::vector<std::vector<std::pair<envelope_ref, std::uint64_t>>> got(kThreads);
    {
        std::vector<std::jthread> writers;
        for (int t = 0; t < kThreads; ++t)
            writers.emplace_back([&, t] {
                for (int i = 0; i < kEach; ++i) {
                    int n = t * kEach + i;
                    auto a = log.append(payload(n), "e" + std::to_string(n));
                    if (a) got[t].emplace_back(a->ref, a->ticket);
                }
            });
        // Syncs while they append, each covering what had returned before it.
        for (int s = 0; s < 20; ++s) {
            ASSERT_FALSE(log.sync());
            std::this_thread::yield();
        }
    }
    ASSERT_FALSE(log.sync());
    EXPECT_EQ(log.synced_through(), static_cast<std::uint64_t>(kThreads * kEach));
    EXPECT_EQ(log.reserved(), static_cast<std::uint64_t>(kThreads * kEach));
    for (int t = 0; t < kThreads; ++t) {
        ASSERT_EQ(got[t].size(), static_cast<std::size_t>(kEach));
        for (int i = 0; i < kEach; ++i) {
            int n = t * kEach + i;
            auto r = log.read(got[t][i].first, "e" + std::to_string(n));
            ASSERT_TRUE(r) << n;
            EXPECT_EQ(*r, payload(n));
        }
    }
}

TEST_F(envelope_log_test, retention_leaves_missing_records_never_other_bytes) {
    std::vector<envelope_ref> refs;
    std::int64_t current = 0;
    {
        envelope_log log(dir_, 2048);
        for (int i = 0; i < 20; ++i) refs.push_back(log.append(payload(i), std::to_string(i))->ref);
        ASSERT_FALSE(log.sync());
        current = log.current_segment();
        ASSERT_GT(current, refs.front().segment);
        // Segments below the one holding record 10 go; the one appended to now never does.
        EXPECT_GT(log.remove_below(refs[10].segment), 0u);
        EXPECT_TRUE(fs::exists(envelope_log::segment_path(dir_, refs[10].segment)));
        log.remove_below(current + 100);
        EXPECT_EQ(envelope_log::list_segments(dir_), std::vector<std::int64_t>{current});
        auto gone = log.read(refs[0], "0");
        ASSERT_FALSE(gone);
        EXPECT_TRUE(envelope_log::record_missing(gone.error()));
    }
    // A scrubbed record (pruned, or re-sealed into its row) reads as missing; its neighbour whole.
    const auto& last = refs.back();
    const auto& before_last = refs[refs.size() - 2];
    ASSERT_FALSE(envelope_log::scrub(dir_, {last}));
    auto scrubbed = envelope_log::read_from(dir_, last, std::to_string(refs.size() - 1));
    ASSERT_FALSE(scrubbed);
    EXPECT_TRUE(envelope_log::record_missing(scrubbed.error()));
    if (before_last.segment == last.segment) {
        auto kept = envelope_log::read_from(dir_, before_last, std::to_string(refs.size() - 2));
        ASSERT_TRUE(kept);
        EXPECT_EQ(*kept, payload(static_cast<int>(refs.size()) - 2));
    }
    // A new log in the same folder appends to a fresh segment after the newest.
    envelope_log again(dir_, 2048);
    EXPECT_GT(again.current_segment(), current);
}

}  // namespace
