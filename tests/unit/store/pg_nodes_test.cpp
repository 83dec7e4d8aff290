// Several nodes on one PostgreSQL store: SKIP LOCKED claims, per-key order, leases and fencing
// tokens, one audit chain, node-local recovery, reconnecting after the database restarts.
#include "core/ids.hpp"
#include "shared_pg.hpp"
#include "store/pg_db.hpp"
#include "store/store.hpp"

#include <samband_test/tools.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <set>
#include <thread>

namespace samband::store {
namespace {

namespace fs = std::filesystem;
using boost::system::error_code;

class pg_nodes_test : public ::testing::Test {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL(samband::testing::pg_bindir() + "/initdb");
        dir_ = fs::temp_directory_path() / ("samband-pgnodes-" + core::uuid_v7());
        fs::create_directories(dir_);
        pg_conn c(shared_pg().conninfo());
        c.exec("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::unique_ptr<store> node(const std::string& name, std::int64_t lease_ms = 60000) {
        postgresql_options o;
        o.conninfo = shared_pg().conninfo();
        o.node_id = name;
        o.lease_ms = lease_ms;
        return open_postgresql(o);
    }
    static new_event ev(const std::string& key, const std::string& order_key) {
        new_event e;
        e.id = core::uuid_v7();
        e.source = "epj";
        e.idempotency_key = key;
        e.type = "rph.treatment.started";
        e.order_key = order_key;
        e.envelope_json = R"({"k":")" + key + "\"}";
        e.deliveries.push_back({"gp", "r", delivery_state::pending, ""});
        return e;
    }
    static error_code submit(store& s, new_event e) {
        std::promise<error_code> p;
        s.submit(std::move(e), [&](error_code ec, submit_outcome) { p.set_value(ec); });
        return p.get_future().get();
    }
    static error_code update(store& s, delivery_update u) {
        std::promise<error_code> p;
        s.update({u}, [&](error_code ec) { p.set_value(ec); });
        return p.get_future().get();
    }
    static delivery_update delivered(const delivery_row& r, const std::string& ext) {
        delivery_update u;
        u.delivery_id = r.id;
        u.state = delivery_state::delivered;
        u.external_id = ext;
        u.closes_attempt = r.attempts;
        u.fence = r.fence;
        return u;
    }
    std::int64_t count(const std::string& sql) {
        pg_conn c(shared_pg().conninfo());
        return c.query(sql).i64(0, 0);
    }
    fs::path dir_;
};

TEST_F(pg_nodes_test, two_nodes_claiming_at_once_never_hand_out_a_delivery_twice) {
    auto a = node("a"), b = node("b");
    const int n = 300;
    for (int i = 0; i < n; ++i)
        ASSERT_FALSE(submit(i % 2 ? *a : *b, ev("k" + std::to_string(i), "p" + std::to_string(i))));
    std::mutex mu;
    std::vector<std::int64_t> seen;
    auto drain = [&](store& s) {
        for (;;) {
            auto c = s.claim_due("gp", core::now_ms(), 7, 5);
            ASSERT_TRUE(c);
            if (c->empty()) return;
            for (const auto& r : *c) {
                {
                    std::lock_guard lock(mu);
                    seen.push_back(r.id);
                }
                ASSERT_FALSE(update(s, delivered(r, "x" + std::to_string(r.id))));
            }
        }
    };
    std::thread ta([&] { drain(*a); });
    std::thread tb([&] { drain(*b); });
    ta.join();
    tb.join();
    std::set<std::int64_t> unique(seen.begin(), seen.end());
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(n)) << "a delivery was claimed twice or lost";
    EXPECT_EQ(unique.size(), static_cast<std::size_t>(n));
    EXPECT_EQ(count("SELECT COUNT(*) FROM deliveries WHERE state = 2 AND attempts = 1"), n);
    auto chain = a->verify_audit_chain();
    ASSERT_TRUE(chain);
    EXPECT_FALSE(*chain) << "both nodes appended to one intact chain";
}

TEST_F(pg_nodes_test, per_patient_order_holds_across_nodes) {
    auto a = node("a"), b = node("b");
    ASSERT_FALSE(submit(*a, ev("a1", "patientA")));
    ASSERT_FALSE(submit(*b, ev("a2", "patientA")));
    ASSERT_FALSE(submit(*a, ev("b1", "patientB")));
    auto first = a->claim_due("gp", core::now_ms(), 1, 5);
    ASSERT_EQ(first->size(), 1u);
    EXPECT_EQ((*first)[0].order_key, "patientA");
    auto other = b->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(other->size(), 1u) << "a2 waits behind a1, which node a has in flight";
    EXPECT_EQ((*other)[0].order_key, "patientB");
    ASSERT_FALSE(update(*a, delivered((*first)[0], "e1")));
    auto next = b->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(next->size(), 1u);
    EXPECT_EQ((*next)[0].order_key, "patientA");
    EXPECT_GT((*next)[0].id, (*first)[0].id);
}

TEST_F(pg_nodes_test, an_expired_lease_is_taken_over_and_the_late_completion_is_refused) {
    auto a = node("a", 300), b = node("b", 300);
    ASSERT_FALSE(submit(*a, ev("lease", "p1")));
    auto mine = a->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(mine->size(), 1u);
    const delivery_row stale = (*mine)[0];
    EXPECT_GT(stale.fence, 0);
    EXPECT_TRUE(b->claim_due("gp", core::now_ms(), 10, 5)->empty()) << "the lease still holds";
    // Node a stalls past its lease: node b takes the delivery over.
    std::vector<delivery_row> taken;
    int polls = 0;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (taken.empty() && std::chrono::steady_clock::now() < until) {
        ++polls;
        auto c = b->claim_due("gp", core::now_ms(), 10, 5);
        ASSERT_TRUE(c);
        taken = *c;
        if (taken.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_EQ(taken.size(), 1u) << "not taken over after " << polls << " polls";
    EXPECT_EQ(taken[0].id, stale.id);
    EXPECT_EQ(taken[0].fence, stale.fence + 1);
    EXPECT_EQ(taken[0].attempts, 2) << "the stalled attempt stays counted";
    // Node a wakes up and completes: refused, audited, the delivery untouched.
    ASSERT_FALSE(update(*a, delivered(stale, "from-a")));
    auto row = a->get_delivery(stale.id);
    ASSERT_TRUE(row && *row);
    EXPECT_EQ((*row)->state, delivery_state::in_flight);
    EXPECT_EQ((*row)->external_id, "");
    auto audit = a->list_audit("delivery:" + std::to_string(stale.id), 100);
    ASSERT_TRUE(audit);
    bool refused = false, taken_over = false;
    for (const auto& r : *audit) {
        if (r.action == "delivery.late_completion_refused" &&
            r.detail.find("late completion from node a refused") != std::string::npos)
            refused = true;
        if (r.action == "delivery.lease_taken_over" &&
            r.detail.find("taken over by node b") != std::string::npos)
            taken_over = true;
    }
    EXPECT_TRUE(refused);
    EXPECT_TRUE(taken_over);
    EXPECT_EQ(count("SELECT COUNT(*) FROM attempts WHERE outcome = 'died' AND reason LIKE "
                    "'%lease of node a expired%'"),
              1);
    // Node b's completion holds the current token.
    ASSERT_FALSE(update(*b, delivered(taken[0], "from-b")));
    row = b->get_delivery(stale.id);
    EXPECT_EQ((*row)->state, delivery_state::delivered);
    EXPECT_EQ((*row)->external_id, "from-b");
    EXPECT_FALSE(*a->verify_audit_chain());
}

TEST_F(pg_nodes_test, a_restarting_node_recovers_only_its_own_in_flight_deliveries) {
    auto a = node("a"), b = node("b");
    ASSERT_FALSE(submit(*a, ev("r1", "p1")));
    ASSERT_FALSE(submit(*a, ev("r2", "p2")));
    auto ca = a->claim_due("gp", core::now_ms(), 1, 5);
    auto cb = b->claim_due("gp", core::now_ms(), 1, 5);
    ASSERT_EQ(ca->size(), 1u);
    ASSERT_EQ(cb->size(), 1u);
    a.reset();
    a = node("a");
    auto n = a->recover_in_flight();
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 1u);
    EXPECT_EQ((*a->get_delivery((*cb)[0].id))->state, delivery_state::in_flight);
    EXPECT_EQ((*a->get_delivery((*ca)[0].id))->state, delivery_state::pending);
}

TEST_F(pg_nodes_test, the_same_key_on_two_nodes_at_once_is_stored_once) {
    auto a = node("a"), b = node("b");
    for (int i = 0; i < 20; ++i) {
        std::string key = "dup" + std::to_string(i);
        std::promise<submit_outcome> pa, pb;
        a->submit(ev(key, "p"), [&](error_code ec, submit_outcome o) {
            EXPECT_FALSE(ec) << ec.message();
            pa.set_value(o);
        });
        b->submit(ev(key, "p"), [&](error_code ec, submit_outcome o) {
            EXPECT_FALSE(ec) << ec.message();
            pb.set_value(o);
        });
        auto oa = pa.get_future().get(), ob = pb.get_future().get();
        EXPECT_EQ(oa.event_id, ob.event_id);
        EXPECT_NE(oa.duplicate, ob.duplicate) << "exactly one of them stored it";
    }
    EXPECT_EQ(count("SELECT COUNT(*) FROM events"), 20);
}

TEST_F(pg_nodes_test, a_run_once_lock_is_held_by_one_node_and_moves_when_its_session_ends) {
    auto a = node("a"), b = node("b");
    auto la = a->try_run_once("source:epj");
    ASSERT_TRUE(la);
    EXPECT_TRUE(la->held());
    EXPECT_FALSE(b->try_run_once("source:epj")) << "two nodes hold one source's lock";
    auto other = b->try_run_once("source:edi");
    ASSERT_TRUE(other) << "locks of other sources are independent";
    // Node a's session ends (as when it dies): the lock moves.
    pg_conn admin(shared_pg().conninfo());
    admin.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND objid = hashtext('source:epj')::oid");
    EXPECT_FALSE(la->held()) << "a lost lock still looks held";
    auto lb = b->try_run_once("source:epj");
    ASSERT_TRUE(lb);
    EXPECT_TRUE(lb->held());
    EXPECT_FALSE(a->try_run_once("source:epj"));
}

TEST_F(pg_nodes_test, a_bad_conninfo_is_refused_without_showing_the_password) {
    postgresql_options o;
    o.conninfo = "host=127.0.0.1 port=1 user=samband password=Hemmelig-pw-42 connect_timeout=2";
    o.node_id = "a";
    try {
        open_postgresql(o);
        FAIL() << "connected to nothing";
    } catch (const std::runtime_error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("cannot connect to PostgreSQL"), std::string::npos) << what;
        EXPECT_EQ(what.find("Hemmelig-pw-42"), std::string::npos) << what;
    }
}

// Last in the file: it stops and restarts the shared server.
TEST_F(pg_nodes_test,
       after_the_database_restarts_the_writer_reconnects_and_never_acks_a_lost_write) {
    auto a = node("a");
    ASSERT_FALSE(submit(*a, ev("before", "p1")));
    ASSERT_TRUE(shared_pg().stop());
    auto down = submit(*a, ev("while-down", "p2"));
    EXPECT_TRUE(down) << "a write the database never committed was acknowledged";
    auto read = a->get_delivery(1);
    EXPECT_FALSE(read) << "a read while the database is down is an error";
    ASSERT_TRUE(shared_pg().start()) << shared_pg().log();
    // The source retries (as ingest's callers do); the writer has reconnected with backoff.
    int tries = 0;
    error_code ec = submit(*a, ev("while-down", "p2"));
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (ec && std::chrono::steady_clock::now() < until) {
        ++tries;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        ec = submit(*a, ev("while-down", "p2"));
    }
    EXPECT_FALSE(ec) << "still failing after " << tries << " retries: " << ec.message();
    EXPECT_LE(tries, 100);
    EXPECT_EQ(count("SELECT COUNT(*) FROM events"), 2);
    auto got = a->get_delivery(1);
    EXPECT_TRUE(got && *got) << "the read connection reconnects too";
}

}  // namespace
}  // namespace samband::store
