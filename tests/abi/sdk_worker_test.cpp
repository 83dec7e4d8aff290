// sdk::worker: deliver() hands deliveries over and returns at once; the worker completes each
// exactly once, also when its queue is full, when a job throws and when it is stopped.
#include <samband/sdk.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

struct samband_error {};

namespace {

using samband::sdk::delivery;
using samband::sdk::worker;

// A fake host table that records completions by token.
struct recorder {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::uint64_t, std::vector<std::pair<samband_status, std::string>>> done;
    samband_host_api api{};

    recorder() {
        api.struct_size = sizeof api;
        api.abi_version = SAMBAND_ABI_VERSION;
        api.ctx = this;
        api.complete = [](void* ctx, std::uint64_t token,
                          const samband_completion* c) -> samband_status {
            auto* self = static_cast<recorder*>(ctx);
            std::lock_guard lock(self->mu);
            self->done[token].push_back({c->status, std::string(c->message.data, c->message.size)});
            self->cv.notify_all();
            return SAMBAND_OK;
        };
    }
    bool wait_for(std::size_t n, std::chrono::seconds timeout = std::chrono::seconds(10)) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, timeout, [&] { return done.size() >= n; });
    }
};

// The host-owned structs one delivery points at.
struct c_delivery {
    samband_event e{};
    samband_delivery d{};
    explicit c_delivery(std::uint64_t token) {
        e.struct_size = sizeof e;
        d.struct_size = sizeof d;
        d.token = token;
        d.attempt = 1;
        d.event = &e;
    }
};

// A gate the jobs wait at until the test opens it.
struct gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    int waiting = 0;
    void pass() {
        std::unique_lock lock(mu);
        ++waiting;
        cv.notify_all();
        cv.wait(lock, [&] { return open; });
    }
    bool wait_waiting(int n) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, std::chrono::seconds(10), [&] { return waiting >= n; });
    }
    void release() {
        std::lock_guard lock(mu);
        open = true;
        cv.notify_all();
    }
};

TEST(sdk_worker, post_returns_while_the_job_still_runs_and_the_job_completes_it) {
    recorder host;
    gate g;
    worker w(1);
    c_delivery d1(1);
    w.post(delivery(&host.api, &d1.d), [&](delivery& d) {
        g.pass();
        d.succeed("ext-1");
    });
    // post returned although the job is blocked at the gate: nothing is completed yet.
    ASSERT_TRUE(g.wait_waiting(1));
    {
        std::lock_guard lock(host.mu);
        EXPECT_TRUE(host.done.empty());
    }
    g.release();
    ASSERT_TRUE(host.wait_for(1));
    std::lock_guard lock(host.mu);
    ASSERT_EQ(host.done[1].size(), 1u);
    EXPECT_EQ(host.done[1][0].first, SAMBAND_OK);
}

TEST(sdk_worker, a_full_queue_retries_at_once_and_stop_retries_the_queued_ones) {
    recorder host;
    gate g;
    std::vector<std::unique_ptr<c_delivery>> ds;
    for (std::uint64_t t = 1; t <= 4; ++t) ds.push_back(std::make_unique<c_delivery>(t));
    {
        worker w(1, 2);  // one thread, two queued at most
        auto job = [&](delivery& d) {
            g.pass();
            d.succeed();
        };
        w.post(delivery(&host.api, &ds[0]->d), job);  // runs, blocks at the gate
        ASSERT_TRUE(g.wait_waiting(1));
        w.post(delivery(&host.api, &ds[1]->d), job);  // queued
        w.post(delivery(&host.api, &ds[2]->d), job);  // queued
        w.post(delivery(&host.api, &ds[3]->d), job);  // queue full: RETRY at once
        {
            std::lock_guard lock(host.mu);
            ASSERT_EQ(host.done[4].size(), 1u);
            EXPECT_EQ(host.done[4][0].first, SAMBAND_RETRY);
            EXPECT_NE(host.done[4][0].second.find("queue is full"), std::string::npos);
        }
        std::thread opener([&] { g.release(); });
        w.stop();  // the running job finishes; the two queued ones are retried
        opener.join();
    }
    std::lock_guard lock(host.mu);
    ASSERT_EQ(host.done.size(), 4u);
    for (std::uint64_t t = 1; t <= 4; ++t) EXPECT_EQ(host.done[t].size(), 1u) << "token " << t;
    EXPECT_EQ(host.done[1][0].first, SAMBAND_OK);
    // Queued ones are retried by stop (unless the thread reached them before stop took them).
    for (std::uint64_t t : {2u, 3u})
        EXPECT_TRUE(host.done[t][0].first == SAMBAND_RETRY || host.done[t][0].first == SAMBAND_OK);
}

TEST(sdk_worker, a_job_that_throws_retries_its_delivery_with_the_text) {
    recorder host;
    worker w(2);
    c_delivery d1(1);
    w.post(delivery(&host.api, &d1.d), [](delivery&) { throw std::runtime_error("disk on fire"); });
    ASSERT_TRUE(host.wait_for(1));
    std::lock_guard lock(host.mu);
    ASSERT_EQ(host.done[1].size(), 1u);
    EXPECT_EQ(host.done[1][0].first, SAMBAND_RETRY);
    EXPECT_NE(host.done[1][0].second.find("disk on fire"), std::string::npos);
}

TEST(sdk_worker, a_job_that_throws_a_permanent_sdk_error_fails_its_delivery) {
    recorder host;
    worker w(1);
    c_delivery d1(1), d2(2);
    w.post(delivery(&host.api, &d1.d),
           [](delivery&) { throw samband::sdk::error(SAMBAND_PERMANENT, "receiver is gone"); });
    w.post(delivery(&host.api, &d2.d),
           [](delivery&) { throw samband::sdk::error(SAMBAND_RETRY, "receiver is busy"); });
    ASSERT_TRUE(host.wait_for(2));
    std::lock_guard lock(host.mu);
    ASSERT_EQ(host.done[1].size(), 1u);
    EXPECT_EQ(host.done[1][0].first, SAMBAND_PERMANENT);
    EXPECT_NE(host.done[1][0].second.find("receiver is gone"), std::string::npos);
    ASSERT_EQ(host.done[2].size(), 1u);
    EXPECT_EQ(host.done[2][0].first, SAMBAND_RETRY);
}

TEST(sdk_worker, a_post_after_stop_is_retried_at_once) {
    recorder host;
    worker w(1);
    w.stop();
    c_delivery d1(1);
    w.post(delivery(&host.api, &d1.d), [](delivery& d) { d.succeed(); });
    std::lock_guard lock(host.mu);
    ASSERT_EQ(host.done[1].size(), 1u);
    EXPECT_EQ(host.done[1][0].first, SAMBAND_RETRY);
    EXPECT_NE(host.done[1][0].second.find("stopping"), std::string::npos);
}

TEST(sdk_delivery, a_malformed_delivery_from_the_host_is_refused_not_read) {
    recorder host;
    c_delivery d1(1);
    d1.d.struct_size = 8;  // truncated
    EXPECT_THROW(delivery(&host.api, &d1.d), samband::sdk::error);
    c_delivery d2(2);
    d2.e.struct_size = SAMBAND_MAX_STRUCT_SIZE + 1;
    EXPECT_THROW(delivery(&host.api, &d2.d), samband::sdk::error);
    std::lock_guard lock(host.mu);
    EXPECT_TRUE(host.done.empty()) << "a refused delivery owes no completion";
}

}  // namespace
