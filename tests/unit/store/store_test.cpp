// The store contract on each backend: durability, dedupe, ordering, audit chain, retention,
// migrations. Compiled once per backend (SAMBAND_STORE_BACKEND): store_tests runs it on SQLite,
// store_pg_tests on a private PostgreSQL started once for the binary.
#include "store/store.hpp"
#include "core/ids.hpp"
#include "delivery/receipt_window.hpp"
#include "shared_pg.hpp"
#include "store/pg_db.hpp"

#include <samband_test/pg_server.hpp>
#include <samband_test/tools.hpp>
#include "store/audit_chain.hpp"
#include "store/blob_copies.hpp"
#include "store/envelope_log.hpp"
#include "store/sealed.hpp"
#include "store/sqlite_plans.hpp"
#include "store/wal_gather_vfs.hpp"

#include <sqlite3.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

namespace samband::store {
namespace {

namespace fs = std::filesystem;

#ifndef SAMBAND_STORE_BACKEND
#define SAMBAND_STORE_BACKEND "sqlite"
#endif

// Opens a store of the backend under test in `dir` (for PostgreSQL: the shared server's database,
// as node `node`), and reaches its tables directly for the tests that tamper with them.
class store_fixture {
public:
    static std::string backend() { return SAMBAND_STORE_BACKEND; }
    static bool pg() { return backend() == "postgresql"; }

    // A fresh, empty store (PostgreSQL: the schema dropped and created again).
    static void wipe(const fs::path& dir) {
        if (!pg()) return;
        pg_conn c(shared_pg().conninfo());
        c.exec("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;");
        (void)dir;
    }
    static std::unique_ptr<store> open_store(const fs::path& dir, const std::string& node = "a",
                                             std::int64_t lease_ms = 60000,
                                             std::shared_ptr<const keyring> keys = nullptr) {
        if (pg()) {
            postgresql_options o;
            o.conninfo = shared_pg().conninfo();
            o.node_id = node;
            o.lease_ms = lease_ms;
            o.keys = std::move(keys);
            return open_postgresql(o);
        }
        sqlite_options o;
        o.path = (dir / "s.db").string();
        o.keys = std::move(keys);
        return open_sqlite(o);
    }
    // Runs SQL on the store's tables behind its back.
    static void raw_exec(const fs::path& dir, const std::string& sql) {
        if (pg()) {
            pg_conn c(shared_pg().conninfo());
            c.exec(sql);
            return;
        }
        sqlite3* db = nullptr;
        sqlite3_open((dir / "s.db").c_str(), &db);
        char* err = nullptr;
        int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
        std::string msg = err ? err : "";
        sqlite3_free(err);
        sqlite3_close(db);
        if (rc != SQLITE_OK) throw std::runtime_error(msg);
    }
    // The first column of the first row of `sql`, read through a connection of its own.
    static std::int64_t raw_count(const fs::path& dir, const std::string& sql) {
        if (pg()) {
            pg_conn c(shared_pg().conninfo());
            return c.query(sql).i64(0, 0);
        }
        sqlite3* db = nullptr;
        sqlite3_open_v2((dir / "s.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
        sqlite3_stmt* q = nullptr;
        sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr);
        std::int64_t n = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
        sqlite3_finalize(q);
        sqlite3_close(db);
        return n;
    }
};

class store_test : public ::testing::TestWithParam<std::string>, protected store_fixture {
protected:
    void SetUp() override {
        if (pg()) SAMBAND_REQUIRE_TOOL(samband::testing::pg_bindir() + "/initdb");
        dir_ = fs::temp_directory_path() / ("samband-store-" + core::uuid_v7());
        fs::create_directories(dir_);
        wipe(dir_);
        open();
    }
    void TearDown() override {
        st_.reset();
        fs::remove_all(dir_);
    }
    void open() {
        st_.reset();
        st_ = open_store(dir_);
    }
    void raw_exec(const std::string& sql) { store_fixture::raw_exec(dir_, sql); }
    std::int64_t raw_count(const std::string& sql) { return store_fixture::raw_count(dir_, sql); }
    // SQLite: the layout schema 10 left, for a test that sets the version back: every envelope
    // in its events row (read through the open store, then written behind its back) and the
    // envelope log's columns (and schema 12's) gone. Closes the store.
    void back_to_schema10() {
        if (pg()) return;
        std::vector<std::pair<std::string, std::string>> envs;
        ASSERT_TRUE(st_->for_each_event(
            "", [&](const event_row& e) { envs.emplace_back(e.id, e.envelope_json); }));
        st_.reset();
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open((dir_ / "s.db").c_str(), &db), SQLITE_OK);
        sqlite3_stmt* q = nullptr;
        ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE events SET envelope = ?2 WHERE id = ?1", -1, &q,
                                     nullptr),
                  SQLITE_OK);
        for (const auto& [id, env] : envs) {
            sqlite3_bind_text(q, 1, id.c_str(), -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(q, 2, env.c_str(), -1, SQLITE_TRANSIENT);
            EXPECT_EQ(sqlite3_step(q), SQLITE_DONE);
            sqlite3_reset(q);
        }
        sqlite3_finalize(q);
        sqlite3_close(db);
        raw_exec(
            "ALTER TABLE events DROP COLUMN env_seg; ALTER TABLE events DROP COLUMN env_off; "
            "ALTER TABLE events DROP COLUMN env_len; ALTER TABLE events DROP COLUMN lost_ms; "
            "DROP TABLE envlog_durable; UPDATE schema_version SET version = 10");
    }
    // SQLite: the layout schema 9 left (chains were deliveries_order's entries, not lists), so a
    // test that sets the version back can run migration 10 and those before it.
    static constexpr const char* kBackToSchema9 =
        "DROP INDEX deliveries_next; DROP TABLE chains; ALTER TABLE deliveries DROP COLUMN prev; "
        "CREATE INDEX deliveries_order ON deliveries(destination, order_key, id) WHERE state IN "
        "(0, 1) OR state IN (4, 7); ";
    // SQLite: every open chain is a list in id order: each open delivery waits behind the open
    // one before it in its (destination, patient) chain (prev; 0 and the head mark for the
    // first), no other delivery waits behind anyone, and chains names each chain's last. Empty
    // when so, else what is wrong.
    std::string chain_faults() {
        const std::pair<const char*, const char*> checks[] = {
            {"open deliveries with the wrong prev or head mark",
             "SELECT COUNT(*) FROM deliveries d WHERE (d.state IN (0, 1, 4, 7)) AND (d.prev IS NOT "
             "COALESCE((SELECT MAX(p.id) FROM deliveries p WHERE p.destination = d.destination AND "
             "p.order_key = d.order_key AND p.state IN (0, 1, 4, 7) AND p.id < d.id), 0) OR d.head "
             "<> (d.prev = 0))"},
            {"closed deliveries still waiting behind one",
             "SELECT COUNT(*) FROM deliveries WHERE state NOT IN (0, 1, 4, 7) AND prev <> 0"},
            {"chains rows that are not the open chains' last deliveries",
             "SELECT COUNT(*) FROM (SELECT destination, order_key, tail FROM chains EXCEPT SELECT "
             "destination, order_key, MAX(id) FROM deliveries WHERE state IN (0, 1, 4, 7) GROUP BY "
             "destination, order_key)"},
            {"open chains without their chains row",
             "SELECT COUNT(*) FROM (SELECT destination, order_key, MAX(id) FROM deliveries WHERE "
             "state IN (0, 1, 4, 7) GROUP BY destination, order_key EXCEPT SELECT destination, "
             "order_key, tail FROM chains)"},
        };
        std::string out;
        for (const auto& [what, sql] : checks)
            if (auto n = raw_count(sql); n != 0) out += std::to_string(n) + " " + what + "; ";
        return out;
    }
    new_event ev(const std::string& key, const std::string& order_key = "p1",
                 std::vector<std::string> dests = {"gp"}) {
        new_event e;
        e.id = core::uuid_v7();
        e.source = "epj";
        e.idempotency_key = key;
        e.type = "rph.treatment.started";
        e.order_key = order_key;
        e.treatment_id = "T-" + order_key;
        e.envelope_json = R"({"type":"rph.treatment.started","k":")" + key + "\"}";
        for (auto& d : dests) e.deliveries.push_back({d, "r", delivery_state::pending, ""});
        return e;
    }
    submit_outcome submit(new_event e) {
        std::promise<std::pair<boost::system::error_code, submit_outcome>> p;
        st_->submit(std::move(e), [&](boost::system::error_code ec, submit_outcome o) {
            p.set_value({ec, o});
        });
        auto r = p.get_future().get();
        EXPECT_FALSE(r.first) << r.first.message();
        return r.second;
    }
    // Submits n events of 8 KB ("<prefix><i>", over `patients` patients) with up to 200
    // unanswered at a time, as ingest's window allows, and expects each stored.
    void submit_8k_events(const std::string& prefix, int n, int patients) {
        std::string pad(8192, 'x');
        std::vector<std::future<boost::system::error_code>> done;
        for (int i = 0; i < n; ++i) {
            auto e = ev(prefix + std::to_string(i), "p" + std::to_string(i % patients));
            e.envelope_json = R"({"type":"rph.treatment.started","pad":")" + pad + "\"}";
            auto p = std::make_shared<std::promise<boost::system::error_code>>();
            done.push_back(p->get_future());
            st_->submit(std::move(e),
                        [p](boost::system::error_code ec, submit_outcome) { p->set_value(ec); });
            if (done.size() % 200 == 0) done[done.size() - 200].wait();
        }
        for (auto& f : done) EXPECT_FALSE(f.get());
    }
    void update(delivery_update u) {
        std::promise<boost::system::error_code> p;
        st_->update({u}, [&](boost::system::error_code ec) { p.set_value(ec); });
        EXPECT_FALSE(p.get_future().get());
    }
    fs::path dir_;
    std::unique_ptr<store> st_;
};

// Envelopes move into the events row (SQLite schema 7, PostgreSQL schema 4): a store written by
// the schema before, with its envelopes in payloads, must migrate and read as before, beside
// events stored after; retention removes both kinds; the read-only history reader reads the
// old store before any migration.
TEST_P(store_test, a_store_written_before_envelopes_moved_into_events_still_reads) {
    auto old1 = ev("old1", "p1"), old2 = ev("old2", "p2");
    const std::string id1 = old1.id, id2 = old2.id, env1 = old1.envelope_json;
    submit(std::move(old1));
    submit(std::move(old2));
    back_to_schema10();
    st_.reset();
    // What the schema before wrote: the envelope in payloads, no envelope column in events.
    raw_exec(std::string(pg() ? "" : kBackToSchema9) +
             "INSERT INTO payloads(event_seq, envelope) SELECT seq, envelope FROM "
             "events; ALTER TABLE events DROP COLUMN envelope; UPDATE "
             "schema_version SET version = " +
             (pg() ? "3" : "6"));
    ASSERT_EQ(raw_count("SELECT COUNT(*) FROM payloads"), 2);
    std::string why;
    auto hist = pg() ? read_treatment_history_pg(shared_pg().conninfo(), "T-p1", nullptr, why)
                     : read_treatment_history((dir_ / "s.db").string(), "T-p1");
    ASSERT_TRUE(hist && *hist) << why;
    ASSERT_EQ((*hist)->size(), 1u);
    EXPECT_EQ((**hist)[0], env1);
    open();
    EXPECT_GE(raw_count("SELECT MAX(version) FROM schema_version"), pg() ? 4 : 7);
    auto fresh = ev("new1", "p1");
    const std::string id3 = fresh.id, env3 = fresh.envelope_json;
    submit(std::move(fresh));
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM payloads"), 2) << "no payloads row for a new event";
    auto got = st_->get_event(id1);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->envelope_json, env1);
    got = st_->get_event(id3);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->envelope_json, env3);
    auto history = st_->events_of_treatment("T-p1");
    ASSERT_TRUE(history);
    ASSERT_EQ(history->size(), 2u);
    EXPECT_EQ((*history)[0].envelope_json, env1);
    EXPECT_EQ((*history)[1].envelope_json, env3);
    std::vector<std::string> seen;
    ASSERT_TRUE(
        st_->for_each_event("rph.", [&](const event_row& e) { seen.push_back(e.envelope_json); }));
    EXPECT_EQ(seen.size(), 3u);
    for (const auto& e : seen) EXPECT_FALSE(e.empty());
    // Delivered, then pruned: the old event's payloads row goes with it.
    auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 2u) << "p1's old event, then p2's";
    for (const auto& r : *c) update({r.id, delivery_state::delivered, "", "x", 0, r.attempts});
    c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    update({(*c)[0].id, delivery_state::delivered, "", "x", 0, (*c)[0].attempts});
    auto n = st_->prune(core::now_ms() + 1000);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 3u);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM payloads"), 0);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events"), 0);
    (void)id2;
}

// deliveries_state leaves out in_flight and delivered (SQLite schema 8, PostgreSQL 5): a list of
// each state still finds exactly its deliveries, by destination too.
TEST_P(store_test, a_list_by_state_finds_every_state_with_or_without_the_index) {
    for (int i = 0; i < 4; ++i) submit(ev("s" + std::to_string(i), "p" + std::to_string(i)));
    submit(ev("other", "p9", {"edi"}));
    auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 4u);
    update({(*c)[0].id, delivery_state::delivered, "", "x0", 0, 1});
    update({(*c)[1].id, delivery_state::failed, "503", "", core::now_ms() + 60000, 1});
    update({(*c)[2].id, delivery_state::dead, "refused", "", 0, 1});
    auto ids = [&](delivery_state s, const std::string& dest) {
        delivery_query q;
        q.state = s;
        q.destination = dest;
        std::vector<std::int64_t> out;
        for (const auto& r : *st_->list_deliveries(q)) out.push_back(r.id);
        return out;
    };
    using v = std::vector<std::int64_t>;
    EXPECT_EQ(ids(delivery_state::delivered, ""), v{(*c)[0].id});
    EXPECT_EQ(ids(delivery_state::delivered, "gp"), v{(*c)[0].id});
    EXPECT_EQ(ids(delivery_state::delivered, "edi"), v{});
    EXPECT_EQ(ids(delivery_state::failed, "gp"), v{(*c)[1].id});
    EXPECT_EQ(ids(delivery_state::dead, ""), v{(*c)[2].id});
    EXPECT_EQ(ids(delivery_state::in_flight, "gp"), v{(*c)[3].id});
    EXPECT_EQ(ids(delivery_state::pending, "").size(), 1u);
    EXPECT_EQ(ids(delivery_state::pending, "gp"), v{});
    EXPECT_EQ(*st_->recover_in_flight(), 1u);
    EXPECT_EQ(ids(delivery_state::in_flight, ""), v{});
    EXPECT_EQ(ids(delivery_state::pending, "gp"), v{(*c)[3].id});
}

// Each statement that needs an index on deliveries or events finds it (SQLite): the claim reads
// chain heads, a chain's last delivery is a chains row, the one behind a delivery is found by
// deliveries_next, the console's state lists read deliveries_state, prune and an event's or a
// treatment's deliveries deliveries_event, a treatment's history events_treatment, receipts
// deliveries_ext. (A replay reads every delivery of its destination, as its state change does.)
TEST_P(store_test, each_statement_that_needs_an_index_finds_it) {
    if (pg()) GTEST_SKIP() << "SQLite's plans";
    st_->flush();
    std::map<std::string, std::string> plans;
    for (auto& [name, plan] : sqlite_query_plans((dir_ / "s.db").string())) plans[name] = plan;
    const std::pair<const char*, std::vector<const char*>> want[] = {
        {"chain_tail", {"SEARCH chains USING PRIMARY KEY"}},
        {"set_chain_tail", {}},
        {"drop_chain", {"SEARCH chains USING PRIMARY KEY"}},
        {"claim", {"deliveries_due"}},
        {"behind", {"deliveries_next"}},
        {"relink", {"USING INTEGER PRIMARY KEY"}},
        {"prev_of", {"USING INTEGER PRIMARY KEY"}},
        {"prune", {"events_received", "deliveries_event"}},
        {"treatment_history", {"events_treatment"}},
        {"deliveries_of_treatment", {"events_treatment", "deliveries_event"}},
        {"by_external_id", {"deliveries_ext"}},
        {"list_pending", {"deliveries_state"}},
        {"list_held_at", {"deliveries_state"}},
        {"list_of_event", {"deliveries_event"}},
    };
    for (const auto& [name, indexes] : want) {
        ASSERT_TRUE(plans.count(name)) << name;
        const std::string& plan = plans[name];
        for (const char* index : indexes)
            EXPECT_NE(plan.find(index), std::string::npos) << name << ": " << plan;
        EXPECT_EQ(plan.find("SCAN d "), std::string::npos) << name << ": " << plan;
        EXPECT_EQ(plan.find("SCAN deliveries"), std::string::npos) << name << ": " << plan;
    }
    // The statements run for every delivery build no ephemeral table (SQLite builds one for a
    // constant IN list of more than two values, in the statement or in the condition of a
    // partial index the statement maintains: deliveries_order's before schema 9).
    for (const char* name : {"insert", "insert_claimed", "claim_one", "set_state", "chain_tail",
                             "set_chain_tail", "drop_chain", "behind", "relink"}) {
        ASSERT_TRUE(plans.count(name)) << name;
        EXPECT_EQ(plans[name].find("EPHEMERAL"), std::string::npos) << name << ": " << plans[name];
    }
}

// Schema 9 wrote deliveries_order's condition as two IN lists of two; schema 10 makes each chain
// a list (prev, chains) from those entries. A store migrated from schema 8 keeps its open
// chains, in order, another patient's and a closed delivery included.
TEST_P(store_test, a_chain_open_across_the_migrations_to_schema_10_keeps_its_order) {
    if (pg()) GTEST_SKIP() << "SQLite's schema";
    std::vector<std::string> accepted;
    for (int i = 0; i < 3; ++i) {
        auto e = ev("m" + std::to_string(i), "p1");
        accepted.push_back(e.id);
        submit(std::move(e));
        submit(ev("o" + std::to_string(i), "p2"));
    }
    auto first = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(first->size(), 2u);
    update({(*first)[1].id, delivery_state::delivered, "", "x", 0, 1});  // p2's first
    back_to_schema10();
    raw_exec(
        std::string(kBackToSchema9) +
        "DROP INDEX deliveries_order; CREATE INDEX deliveries_order ON deliveries(destination, "
        "order_key, id) WHERE state IN (0, 1, 4, 7); UPDATE schema_version SET version = 8");
    open();
    EXPECT_EQ(raw_count("SELECT MAX(version) FROM schema_version"), 12);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'deliveries_order'"), 0);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM chains"), 2);
    EXPECT_EQ(chain_faults(), "");
    update({(*first)[0].id, delivery_state::delivered, "", "x", 0, 1});  // p1's first
    std::vector<std::string> order{accepted[0]};
    for (int i = 0; i < 4; ++i) {
        auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
        ASSERT_TRUE(c);
        if (c->empty()) break;
        ASSERT_LE(c->size(), 2u) << "one at a time per patient";
        for (const auto& r : *c) {
            if (r.order_key == "p1") order.push_back(r.event_id);
            update({r.id, delivery_state::delivered, "", "x", 0, r.attempts});
        }
    }
    EXPECT_EQ(order, accepted) << "one at a time, in the order accepted";
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM chains"), 0) << "every chain idle";
    EXPECT_EQ(chain_faults(), "");
}

// Claims at accept time (SQLite; the PostgreSQL store does not claim at accept): with room at
// the destination and its chain idle, a pending delivery is stored in flight with its attempt
// counted and handed over after its commit; one behind it in its chain stays pending (its slot
// given back, the destination told it may be due), as does one without room; a claim skips the
// one in flight; its completion marks the next head due; a crash recovers it as any claim.
TEST_P(store_test, a_delivery_claimed_at_accept_is_in_flight_with_its_attempt_counted) {
    struct hooks_state {
        std::mutex mu;
        int room = 1, taken = 0, back = 0;
        std::vector<delivery_row> rows;
        std::vector<std::string> due;
    };
    auto hs = std::make_shared<hooks_state>();
    accept_claims hooks;
    hooks.take = [hs](const std::string&) {
        std::lock_guard l(hs->mu);
        if (hs->room <= 0) return false;
        --hs->room;
        ++hs->taken;
        return true;
    };
    hooks.give_back = [hs](const std::string&) {
        std::lock_guard l(hs->mu);
        ++hs->room;
        ++hs->back;
    };
    hooks.claimed = [hs](std::vector<delivery_row> rows) {
        std::lock_guard l(hs->mu);
        for (auto& r : rows) hs->rows.push_back(std::move(r));
    };
    hooks.due = [hs](const std::string& dest) {
        std::lock_guard l(hs->mu);
        hs->due.push_back(dest);
    };
    auto state_of = [&](const std::string& event_id) {
        delivery_query q;
        q.event_id = event_id;
        auto rows = st_->list_deliveries(q);
        return rows && rows->size() == 1u ? (*rows)[0] : delivery_row{};
    };
    auto room = [&](int n) {
        std::lock_guard l(hs->mu);
        hs->room = n;
        hs->due.clear();
    };
    ASSERT_EQ(st_->set_accept_claims(hooks), !pg());
    auto e1 = ev("acc1", "p1");
    const std::string id1 = e1.id;
    submit(std::move(e1));
    if (pg()) {
        EXPECT_EQ(state_of(id1).state, delivery_state::pending);
        EXPECT_EQ(hs->taken, 0);
        return;
    }
    delivery_row first;
    {
        std::lock_guard l(hs->mu);
        ASSERT_EQ(hs->rows.size(), 1u) << "handed over by the time the submit is acknowledged";
        first = hs->rows[0];
        EXPECT_EQ(hs->taken, 1);
        EXPECT_EQ(hs->back, 0);
    }
    EXPECT_EQ(first.event_id, id1);
    EXPECT_EQ(first.state, delivery_state::in_flight);
    EXPECT_EQ(first.attempts, 1);
    EXPECT_EQ(first.destination, "gp");
    EXPECT_EQ(first.order_key, "p1");
    auto stored = state_of(id1);
    EXPECT_EQ(stored.id, first.id);
    EXPECT_EQ(stored.state, delivery_state::in_flight);
    EXPECT_EQ(stored.attempts, 1) << "counted durably in the accept's commit";
    auto att = st_->list_attempts(first.id);
    ASSERT_TRUE(att && att->size() == 1u);
    EXPECT_EQ((*att)[0].outcome, "open");
    EXPECT_GT((*att)[0].started_ms, 0);
    // The same patient's next event: its chain is busy, so pending, its slot back.
    room(1);
    auto e2 = ev("acc2", "p1");
    const std::string id2 = e2.id;
    submit(std::move(e2));
    EXPECT_EQ(state_of(id2).state, delivery_state::pending);
    {
        std::lock_guard l(hs->mu);
        EXPECT_EQ(hs->back, 1);
        EXPECT_EQ(hs->room, 1);
        EXPECT_EQ(hs->due, std::vector<std::string>{"gp"});
    }
    // Another patient without room: pending and due.
    room(0);
    auto e3 = ev("acc3", "p2");
    const std::string id3 = e3.id;
    submit(std::move(e3));
    EXPECT_EQ(state_of(id3).state, delivery_state::pending);
    EXPECT_EQ(hs->due, std::vector<std::string>{"gp"});
    // A claim takes p2's; p1's second waits behind the one in flight.
    auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].event_id, id3);
    EXPECT_TRUE(st_->claim_due("gp", core::now_ms(), 10, 5)->empty());
    // Its completion makes p1's next one the head: due.
    room(0);
    update({first.id, delivery_state::delivered, "", "x1", 0, 1});
    EXPECT_EQ(hs->due, std::vector<std::string>{"gp"});
    att = st_->list_attempts(first.id);
    ASSERT_TRUE(att && att->size() == 1u);
    EXPECT_EQ((*att)[0].outcome, "delivered");
    c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].event_id, id2);
    // A crash while one claimed at accept is in flight: recovered as any claim (attempt died).
    room(1);
    auto e4 = ev("acc4", "p4");
    const std::string id4 = e4.id;
    submit(std::move(e4));
    const auto fourth = state_of(id4);
    EXPECT_EQ(fourth.state, delivery_state::in_flight);
    st_.reset();
    open();
    EXPECT_EQ(*st_->recover_in_flight(), 3u);
    EXPECT_EQ(state_of(id4).state, delivery_state::pending);
    att = st_->list_attempts(fourth.id);
    ASSERT_TRUE(att && att->size() == 1u);
    EXPECT_EQ((*att)[0].outcome, "died");
    EXPECT_EQ(state_of(id4).attempts, 1) << "the attempt stays counted";
    // Without hooks (the store reopened, or emptied ones), nothing is claimed at accept.
    room(1);
    auto e5 = ev("acc5", "p5");
    const std::string id5 = e5.id;
    submit(std::move(e5));
    EXPECT_EQ(state_of(id5).state, delivery_state::pending);
    EXPECT_EQ(hs->taken, 3) << "acc1, acc2 (given back), acc4";
}

TEST_P(store_test, submitted_event_is_readable_with_its_envelope) {
    auto e = ev("k1");
    std::string id = e.id;
    auto out = submit(std::move(e));
    EXPECT_EQ(out.event_id, id);
    EXPECT_FALSE(out.duplicate);
    auto got = st_->get_event(id);
    ASSERT_TRUE(got && *got);
    EXPECT_NE((*got)->envelope_json.find("\"k\":\"k1\""), std::string::npos);
    EXPECT_EQ((*got)->source, "epj");
}

// Checkpoints run beside the writer (not inside its commits); the WAL must still stay bounded
// while events keep coming. 48 MB of 8 KB events with no checkpoint would leave a WAL over 48 MB.
// (PostgreSQL manages its own WAL: there the stream must only be stored whole.)
TEST_P(store_test, the_wal_stays_bounded_under_a_steady_stream_of_commits) {
    constexpr int n = 6000;
    submit_8k_events("w", n, 100);
    if (!pg()) {
        auto wal = fs::file_size(dir_ / "s.db-wal");
        EXPECT_LT(wal, 32u * 1024 * 1024) << "the WAL grew to " << wal << " bytes";
    }
    auto stats = st_->stats();
    ASSERT_TRUE(stats);
    ASSERT_EQ(stats->size(), 1u);
    EXPECT_EQ((*stats)[0].by_state[code(delivery_state::pending)], n) << "every event is stored";
}

// SQLite: the writer writes the WAL through the gathering VFS (store/wal_gather_vfs): a few
// large writes per commit, not two per page.
TEST_P(store_test, the_writer_writes_the_wal_in_gathered_writes) {
    if (pg()) GTEST_SKIP() << "SQLite's WAL";
    submit_8k_events("g", 400, 50);
    wal_gather_vfs* vfs = nullptr;
    for (sqlite3_vfs* v = sqlite3_vfs_find(nullptr); v; v = v->pNext)
        if (auto* g = wal_gather_vfs::of(v)) vfs = g;
    ASSERT_NE(vfs, nullptr) << "the store registered no gathering VFS";
    auto s = vfs->stats();
    EXPECT_GT(s.flushes, 0u);
    EXPECT_GT(s.gathered, 10 * (s.flushes + s.through)) << "the WAL's writes are not gathered";
}

TEST_P(store_test, handler_runs_only_after_the_commit_is_visible_to_another_connection) {
    auto e = ev("visible");
    std::string id = e.id;
    std::promise<int> seen;
    st_->submit(std::move(e), [&](boost::system::error_code, submit_outcome) {
        seen.set_value(
            static_cast<int>(raw_count("SELECT COUNT(*) FROM events WHERE id = '" + id + "'")));
    });
    EXPECT_EQ(seen.get_future().get(), 1);
}

// SQLite: the writer's commits do not sync the WAL; the syncer thread does, and only then runs
// the commit's handlers. A handler that ran before any sync of its commit sees no synced commit.
TEST_P(store_test, a_handler_runs_only_after_a_wal_sync_that_covers_its_commit) {
    if (pg()) GTEST_SKIP() << "SQLite's WAL";
    std::mutex mu;
    int commits = 0, synced = 0;
    st_->on_commit([&](const commit_info& c) {
        std::lock_guard lock(mu);
        ++commits;
        if (c.sync_seconds > 0) ++synced;
    });
    constexpr int n = 50;
    std::vector<std::future<std::pair<int, int>>> seen;
    for (int i = 0; i < n; ++i) {
        auto p = std::make_shared<std::promise<std::pair<int, int>>>();
        seen.push_back(p->get_future());
        st_->submit(ev("s" + std::to_string(i)),
                    [&, p](boost::system::error_code ec, submit_outcome) {
                        EXPECT_FALSE(ec) << ec.message();
                        std::lock_guard lock(mu);
                        p->set_value({commits, synced});
                    });
    }
    for (auto& f : seen) {
        auto [c, s] = f.get();
        EXPECT_GE(c, 1) << "the commit is told before its handlers";
        EXPECT_GE(s, 1) << "a handler ran before any WAL sync";
    }
}

// Every queued job is told how it ended before the store is gone: the writer's last commits are
// synced and acknowledged while it closes, none dropped.
TEST_P(store_test, closing_the_store_acknowledges_every_job_already_queued) {
    constexpr int n = 1500;  // several commits: the writer commits while the syncer syncs
    std::atomic<int> ok{0}, failed{0};
    for (int i = 0; i < n; ++i)
        st_->submit(ev("c" + std::to_string(i), "p" + std::to_string(i % 7)),
                    [&](boost::system::error_code ec, submit_outcome) { ++(ec ? failed : ok); });
    st_.reset();
    EXPECT_EQ(ok.load() + failed.load(), n) << "a job was never acknowledged";
    EXPECT_EQ(failed.load(), 0);
    open();
    auto stats = st_->stats();
    ASSERT_TRUE(stats);
    ASSERT_EQ(stats->size(), 1u);
    EXPECT_EQ((*stats)[0].by_state[code(delivery_state::pending)], n)
        << "every acknowledged event is stored";
}

TEST_P(store_test, duplicate_key_returns_the_first_id_and_stores_once_even_in_one_batch) {
    auto a = ev("same"), b = ev("same");
    std::string first = a.id;
    std::promise<submit_outcome> pa, pb;
    st_->submit(std::move(a),
                [&](boost::system::error_code, submit_outcome o) { pa.set_value(o); });
    st_->submit(std::move(b),
                [&](boost::system::error_code, submit_outcome o) { pb.set_value(o); });
    auto oa = pa.get_future().get(), ob = pb.get_future().get();
    EXPECT_EQ(oa.event_id, first);
    EXPECT_EQ(ob.event_id, first);
    EXPECT_TRUE(ob.duplicate);
    delivery_query q;
    auto ds = st_->list_deliveries(q);
    ASSERT_TRUE(ds);
    EXPECT_EQ(ds->size(), 1u);
}

// What the console shows of one delivery: its attempts and receipts; and one kept input by id.
TEST_P(store_test, a_deliverys_attempts_and_receipts_and_a_kept_input_read_back) {
    submit(ev("shown"));
    auto claimed = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_TRUE(claimed);
    ASSERT_EQ(claimed->size(), 1u);
    const auto& row = (*claimed)[0];
    delivery_update u{row.id, delivery_state::delivered, "", "ext-1", 0, 1};
    u.fence = row.fence;
    update(u);
    std::promise<boost::system::error_code> pr;
    st_->record_receipt({"gp", "ext-1", 1, "OK from the office"},
                        [&](boost::system::error_code ec) { pr.set_value(ec); });
    EXPECT_FALSE(pr.get_future().get());
    auto attempts = st_->list_attempts(row.id);
    ASSERT_TRUE(attempts);
    ASSERT_EQ(attempts->size(), 1u);
    EXPECT_EQ((*attempts)[0].n, 1);
    EXPECT_EQ((*attempts)[0].outcome, "delivered");
    auto receipts = st_->list_receipts("gp", "ext-1");
    ASSERT_TRUE(receipts);
    ASSERT_EQ(receipts->size(), 1u);
    EXPECT_EQ((*receipts)[0].text, "OK from the office");
    EXPECT_TRUE(st_->list_receipts("gp", "ext-2")->empty());

    std::promise<boost::system::error_code> pe;
    st_->record_error({"epj", "/type: unknown", "{raw}", "k-9"},
                      [&](boost::system::error_code ec) { pe.set_value(ec); });
    EXPECT_FALSE(pe.get_future().get());
    auto errors = st_->list_errors(10);
    ASSERT_TRUE(errors);
    ASSERT_EQ(errors->size(), 1u);
    auto one = st_->get_error((*errors)[0].first);
    ASSERT_TRUE(one && *one);
    EXPECT_EQ((*one)->payload, "{raw}");
    EXPECT_FALSE(*st_->get_error((*errors)[0].first + 1000));
}

// Issue 10: a new event's envelope is in the envelope log, not in its row; a segment
// goes once the commit that pruned the last event naming it is done, not before, and never one a
// remaining event names.
TEST_P(store_test, pruned_events_take_their_envelope_log_segments_with_them) {
    if (pg()) GTEST_SKIP() << "SQLite's envelope log";
    auto first = ev("s1", "p1");
    const std::string id1 = first.id;
    submit(std::move(first));
    open();  // each open appends to a fresh segment
    auto second = ev("s2", "p2");
    const std::string id2 = second.id, env2 = second.envelope_json;
    submit(std::move(second));
    auto third = ev("s3", "p3");
    const std::string id3 = third.id, env3 = third.envelope_json;
    submit(std::move(third));
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events WHERE envelope IS NULL AND env_seg IS NOT "
                        "NULL"),
              3);
    const auto off3 = raw_count("SELECT env_off FROM events WHERE id = '" + id3 + "'");
    const fs::path logdir = dir_ / "s.db.envelopes";
    ASSERT_TRUE(fs::exists(envelope_log::segment_path(logdir, 1)));
    auto read_seg2 = [&] {
        std::ifstream in(envelope_log::segment_path(logdir, 2), std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    ASSERT_NE(read_seg2().find(env3), std::string::npos);
    auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 3u);
    for (const auto& r : *c)
        if (r.event_id != id2) update({r.id, delivery_state::delivered, "", "x", 0, r.attempts});
    auto n = st_->prune(core::now_ms() + 1000);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 2u);
    // s3's record, in the segment s2 keeps, is gone from it (zeros), s2's is still there.
    const std::string seg2 = read_seg2();
    EXPECT_EQ(seg2.find(env3), std::string::npos);
    EXPECT_NE(seg2.find(env2), std::string::npos);
    EXPECT_EQ(seg2.substr(static_cast<std::size_t>(off3), envelope_log::kHeaderBytes + env3.size()),
              std::string(envelope_log::kHeaderBytes + env3.size(), '\0'));
    EXPECT_FALSE(fs::exists(envelope_log::segment_path(logdir, 1))) << "s1's segment";
    EXPECT_TRUE(fs::exists(envelope_log::segment_path(logdir, 2))) << "s2's segment";
    auto got = st_->get_event(id2);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->envelope_json, env2);
    open();
    got = st_->get_event(id2);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->envelope_json, env2);
}

// Issue 10: a process killed (SIGKILL) while it submits 8 KB events as fast as the
// store takes them leaves a store whose every acknowledged event reads back whole, and which
// opens (the start reads the newest envelope) and takes new events in a fresh segment. (A
// power loss, the case the log's sync order is for, is not what this can test.)
TEST_P(store_test, a_process_killed_while_submitting_leaves_every_acknowledged_envelope) {
    if (pg()) GTEST_SKIP() << "SQLite's envelope log";
    st_.reset();  // the child starts from one thread
    auto envelope_of = [](int i) {
        return R"({"type":"rph.treatment.started","i":)" + std::to_string(i) + R"(,"pad":")" +
               std::string(8000, static_cast<char>('a' + i % 26)) + "\"}";
    };
    // The child's acknowledgements, a line each (O_APPEND: whole lines, never a full pipe).
    const fs::path acks = dir_ / "acked.txt";
    int fd = ::open(acks.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        auto st = open_store(dir_);
        std::atomic<int> open{0};
        for (int i = 0;; ++i) {
            while (open.load() > 400) std::this_thread::yield();
            auto e = ev("k" + std::to_string(i), "p" + std::to_string(i % 50));
            e.envelope_json = envelope_of(i);
            std::string line = e.id + " " + std::to_string(i) + "\n";
            ++open;
            st->submit(std::move(e),
                       [&open, line, fd](boost::system::error_code ec, submit_outcome) {
                           if (!ec) (void)!::write(fd, line.data(), line.size());
                           --open;
                       });
        }
    }
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    open();
    std::ifstream in(acks);
    std::string id;
    int i = 0, n = 0;
    while (in >> id >> i) {
        auto got = st_->get_event(id);
        ASSERT_TRUE(got && *got) << id;
        ASSERT_EQ((*got)->envelope_json, envelope_of(i)) << id;
        ++n;
    }
    EXPECT_GT(n, 100) << "acknowledged before the kill";
    EXPECT_GE(raw_count("SELECT COUNT(*) FROM events"), n);
    auto after = ev("after-kill");
    const std::string after_id = after.id, after_env = after.envelope_json;
    submit(std::move(after));
    auto got = st_->get_event(after_id);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->envelope_json, after_env);
    std::cout << n << " acknowledged before the kill, " << raw_count("SELECT COUNT(*) FROM events")
              << " events stored\n";
}

// Issue 10, late sync (schema 12): the writer commits rows before the envelope log
// is synced, and nothing is acknowledged before both syncs. A power loss may then keep a commit
// whose records did not reach the disk. Simulated here: a process submits in late sync, has every
// event acknowledged, and dies without closing (the watermark stays as its last commit wrote it);
// then the segment's tail is cut so the last K records are gone (the first of them torn). Only
// rows above the watermark may be so lost (an acknowledged record was synced first). The open
// marks those K events lost, their deliveries dead, audited, the chain intact; the others read
// whole; a resend of a lost key stores the new event with a fresh pending delivery.
TEST_P(store_test, late_sync_events_whose_records_a_crash_lost_are_marked_lost_and_resent) {
    if (pg()) GTEST_SKIP() << "SQLite's envelope log";
    st_.reset();  // the child starts from one thread
    const int n = 60;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        auto st = open_store(dir_);
        int failed = 0;
        // Two lots, the second submitted once the first is acknowledged: the second's commits
        // record the first's rows as durable.
        for (auto [from, to] : {std::pair{0, 2 * n / 3}, std::pair{2 * n / 3, n}}) {
            std::vector<std::future<boost::system::error_code>> done;
            for (int i = from; i < to; ++i) {
                auto e = ev("L" + std::to_string(i), "p" + std::to_string(i % 5));
                auto p = std::make_shared<std::promise<boost::system::error_code>>();
                done.push_back(p->get_future());
                st->submit(std::move(e),
                           [p](boost::system::error_code ec, submit_outcome) { p->set_value(ec); });
            }
            for (auto& f : done) failed += f.get() ? 1 : 0;
        }
        ::_exit(failed == 0 ? 0 : 1);  // no close: the watermark as the last commit left it
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "every submit acknowledged";
    ASSERT_EQ(raw_count("SELECT COUNT(*) FROM events"), n);
    const std::int64_t mark = raw_count("SELECT seq FROM envlog_durable");
    const std::int64_t above =
        raw_count("SELECT COUNT(*) FROM events WHERE seq > " + std::to_string(mark));
    ASSERT_GT(above, 0) << "the last commit's rows are above the watermark";
    ASSERT_LT(above, n) << "the watermark moved during the run";
    const std::int64_t cut_n = std::min<std::int64_t>(3, above);
    // The last cut_n records of the newest segment, newest first.
    const std::int64_t seg = raw_count("SELECT MAX(env_seg) FROM events");
    std::int64_t cut = 0, first_cut_seq = std::numeric_limits<std::int64_t>::max();
    {
        sqlite3* db = nullptr;
        sqlite3_open_v2((dir_ / "s.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
        sqlite3_stmt* q = nullptr;
        sqlite3_prepare_v2(
            db,
            ("SELECT env_off, seq FROM events WHERE env_seg = " + std::to_string(seg) +
             " ORDER BY env_off DESC LIMIT " + std::to_string(cut_n))
                .c_str(),
            -1, &q, nullptr);
        while (sqlite3_step(q) == SQLITE_ROW) {
            cut = sqlite3_column_int64(q, 0);
            first_cut_seq = std::min<std::int64_t>(first_cut_seq, sqlite3_column_int64(q, 1));
            EXPECT_GT(sqlite3_column_int64(q, 1), mark) << "a lost record below the watermark";
        }
        sqlite3_finalize(q);
        sqlite3_close(db);
    }
    // What the disk kept: the segment up to the oldest lost record and 10 bytes of its header.
    fs::resize_file(envelope_log::segment_path(dir_ / "s.db.envelopes", seg),
                    static_cast<std::uintmax_t>(cut + 10));
    // Lost: the events whose records were cut, and every event committed after the first of
    // them (never acknowledged either; set aside so that the resends keep their order).
    std::vector<std::pair<std::string, std::string>> lost;  // id, key
    {
        sqlite3* db = nullptr;
        sqlite3_open_v2((dir_ / "s.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
        sqlite3_stmt* q = nullptr;
        sqlite3_prepare_v2(db,
                           ("SELECT id, idempotency_key FROM events WHERE seq >= " +
                            std::to_string(first_cut_seq) + " ORDER BY seq")
                               .c_str(),
                           -1, &q, nullptr);
        while (sqlite3_step(q) == SQLITE_ROW)
            lost.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)),
                              reinterpret_cast<const char*>(sqlite3_column_text(q, 1)));
        sqlite3_finalize(q);
        sqlite3_close(db);
    }
    const auto k = static_cast<std::int64_t>(lost.size());
    ASSERT_GE(k, cut_n);

    open();
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events WHERE lost_ms IS NOT NULL"), k);
    EXPECT_EQ(st_->opened().envelopes_checked, static_cast<std::size_t>(above));
    EXPECT_EQ(st_->opened().lost_events.size(), static_cast<std::size_t>(k));
    std::set<std::string> lost_ids;
    for (const auto& [id, key] : lost) {
        lost_ids.insert(id);
        const std::string of =
            " FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE e.id = '" + id + "'";
        EXPECT_EQ(raw_count("SELECT lost_ms IS NOT NULL FROM events WHERE id = '" + id + "'"), 1)
            << id;
        EXPECT_EQ(raw_count("SELECT COUNT(*)" + of), 1) << id;
        EXPECT_EQ(raw_count("SELECT COUNT(*)" + of +
                            " AND d.state = " + std::to_string(code(delivery_state::dead)) +
                            " AND d.reason LIKE 'lost before acknowledgement%'"),
                  1)
            << id;
        EXPECT_EQ(raw_count("SELECT COUNT(*) FROM audit WHERE action = 'event.lost' AND subject = "
                            "'event:" +
                            id + "'"),
                  1)
            << id;
    }
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM audit WHERE action = 'delivery.dead'"), k);
    EXPECT_EQ(chain_faults(), "");
    auto chain = st_->verify_audit_chain();
    ASSERT_TRUE(chain);
    EXPECT_FALSE(*chain) << "audit row " << **chain;
    // The others read whole.
    int intact = 0;
    {
        sqlite3* db = nullptr;
        sqlite3_open_v2((dir_ / "s.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
        sqlite3_stmt* q = nullptr;
        sqlite3_prepare_v2(db, "SELECT id, idempotency_key FROM events", -1, &q, nullptr);
        std::vector<std::pair<std::string, std::string>> all;
        while (sqlite3_step(q) == SQLITE_ROW)
            all.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)),
                             reinterpret_cast<const char*>(sqlite3_column_text(q, 1)));
        sqlite3_finalize(q);
        sqlite3_close(db);
        for (const auto& [id, key] : all) {
            if (lost_ids.count(id)) continue;
            auto got = st_->get_event(id);
            ASSERT_TRUE(got && *got) << id;
            EXPECT_EQ((*got)->envelope_json,
                      R"({"type":"rph.treatment.started","k":")" + key + "\"}");
            ++intact;
        }
    }
    EXPECT_EQ(intact, n - k);
    // A walk over the events skips the lost ones (never accepted) rather than fail on them.
    int walked = 0;
    EXPECT_TRUE(st_->for_each_event("", [&](const event_row& e) {
        EXPECT_EQ(lost_ids.count(e.id), 0u) << e.id;
        ++walked;
    }));
    EXPECT_EQ(walked, n - k);
    // A lost event reads as lost, its row without an envelope (its record is not read), never as
    // a record that does not open: alone and among others (each id its own result).
    std::vector<std::string> read_ids;
    for (const auto& [id, key] : lost) {
        auto got = st_->get_event(id);
        ASSERT_TRUE(got) << id << ": " << got.error().message();
        ASSERT_TRUE(*got) << id;
        EXPECT_EQ((*got)->lost_ms, raw_count("SELECT lost_ms FROM events WHERE id = '" + id + "'"))
            << id;
        EXPECT_GT((*got)->lost_ms, 0) << id;
        EXPECT_EQ((*got)->envelope_json, "") << id;
        EXPECT_EQ((*got)->idempotency_key, key) << id;
        read_ids.push_back(id);
    }
    std::string kept_id;  // an event that was not lost
    ASSERT_TRUE(st_->for_each_event("", [&](const event_row& e) {
        if (kept_id.empty()) kept_id = e.id;
    }));
    ASSERT_FALSE(kept_id.empty());
    read_ids.push_back(kept_id);
    auto several = st_->get_events(read_ids);
    ASSERT_EQ(several.size(), read_ids.size());
    for (std::size_t i = 0; i < several.size(); ++i) {
        ASSERT_TRUE(several[i] && *several[i]) << read_ids[i];
        EXPECT_EQ((*several[i])->id, read_ids[i]);
        const bool is_lost = i + 1 < several.size();
        EXPECT_EQ((*several[i])->lost_ms > 0, is_lost) << read_ids[i];
        EXPECT_EQ((*several[i])->envelope_json.empty(), is_lost) << read_ids[i];
    }
    // The consent gate's history of a lost event's treatment leaves it out (never accepted), in
    // the store and in the read-only reader (config preview).
    {
        auto lost_ev = st_->get_event(lost[0].first);
        ASSERT_TRUE(lost_ev && *lost_ev);
        const std::string treatment = (*lost_ev)->treatment_id;
        ASSERT_FALSE(treatment.empty());
        const std::int64_t accepted =
            raw_count("SELECT COUNT(*) FROM events WHERE lost_ms IS NULL AND treatment_id = '" +
                      treatment + "'");
        ASSERT_GT(accepted, 0);
        ASSERT_GT(raw_count("SELECT COUNT(*) FROM events WHERE treatment_id = '" + treatment + "'"),
                  accepted);
        auto history = st_->events_of_treatment(treatment);
        ASSERT_TRUE(history) << history.error().message();
        EXPECT_EQ(static_cast<std::int64_t>(history->size()), accepted);
        for (const auto& e : *history) {
            EXPECT_EQ(lost_ids.count(e.id), 0u) << e.id;
            EXPECT_EQ(e.lost_ms, 0) << e.id;
        }
        auto read_only = read_treatment_history((dir_ / "s.db").string(), treatment);
        ASSERT_TRUE(read_only && *read_only)
            << (read_only ? "no store" : read_only.error().message());
        EXPECT_EQ(static_cast<std::int64_t>((*read_only)->size()), accepted);
    }
    // A resend of a lost key: stored anew (a new id), routed afresh, audited.
    auto again = ev(lost[0].second, "p9");
    const std::string again_id = again.id;
    auto o = submit(std::move(again));
    EXPECT_FALSE(o.duplicate);
    EXPECT_FALSE(o.conflict);
    EXPECT_EQ(o.event_id, again_id);
    auto got = st_->get_event(again_id);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->idempotency_key, lost[0].second);
    EXPECT_EQ(
        raw_count("SELECT COUNT(*) FROM deliveries d JOIN events e ON e.seq = d.event_seq "
                  "WHERE e.id = '" +
                  again_id + "' AND d.state = " + std::to_string(code(delivery_state::pending))),
        1);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM audit WHERE action = 'event.replaced' AND subject = "
                        "'event:" +
                        lost[0].first + "'"),
              1);
    // The lost row keeps its dead delivery; a second resend is a duplicate of the new event.
    EXPECT_EQ(
        raw_count("SELECT COUNT(*) FROM deliveries d JOIN events e ON e.seq = d.event_seq "
                  "WHERE e.id = '" +
                  lost[0].first + "' AND d.state = " + std::to_string(code(delivery_state::dead))),
        1);
    auto dup = submit(ev(lost[0].second, "p9"));
    EXPECT_TRUE(dup.duplicate);
    EXPECT_EQ(dup.event_id, again_id);
    // The replaced lost event still reads as lost, its key moved aside.
    got = st_->get_event(lost[0].first);
    ASSERT_TRUE(got && *got);
    EXPECT_GT((*got)->lost_ms, 0);
    EXPECT_EQ((*got)->envelope_json, "");
    EXPECT_EQ((*got)->idempotency_key, lost[0].second + "\x1flost:" + lost[0].first);
    // A key that was not lost is still a duplicate.
    std::string kept_key;
    for (int i = 0; i < n && kept_key.empty(); ++i) {
        std::string key = "L" + std::to_string(i);
        bool was_lost = false;
        for (const auto& l : lost) was_lost = was_lost || l.second == key;
        if (!was_lost) kept_key = key;
    }
    EXPECT_TRUE(submit(ev(kept_key)).duplicate);
    chain = st_->verify_audit_chain();
    ASSERT_TRUE(chain);
    EXPECT_FALSE(*chain) << "audit row " << **chain;
    EXPECT_EQ(chain_faults(), "");
    // A clean close and open: nothing more is lost.
    open();
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events WHERE lost_ms IS NOT NULL"), k);
    EXPECT_EQ(raw_count("SELECT seq FROM envlog_durable"),
              raw_count("SELECT MAX(seq) FROM events"));
    // Key rotation passes over the lost events (no record to re-seal) instead of failing.
    st_.reset();
    keyring keys;
    keys.add("k1", core::sha256_hex("late-sync-lost").substr(0, 64));
    auto rotated = rotate_sqlite_keys((dir_ / "s.db").string(), keys, 7);
    ASSERT_TRUE(rotated) << rotated.error();
    EXPECT_EQ(rotated->resealed, static_cast<std::size_t>(n - k + 1));
    std::cout << above << " rows above the watermark, " << k << " lost\n";
}

// Issue 10: the durable watermark never covers a row whose record is not yet synced. A process
// has lot A acknowledged, then holds its envelope log's sync and commits event B, then event C:
// B's and C's rows are committed, their records written but not synced (nothing acknowledged).
// C's commit must keep the watermark below B (B's commit is still unsynced), not only below C's
// own rows. The process dies; the disk is taken to have torn B's record and kept C's. The open
// marks B lost, and C too (committed after B, never acknowledged: set aside so that the resends
// keep their order), and reads every event of A whole.
TEST_P(store_test, the_durable_watermark_stays_below_rows_whose_records_are_not_synced) {
    if (pg()) GTEST_SKIP() << "SQLite's envelope log";
    st_.reset();  // the child starts from one thread
    const int lot_a = 20;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        std::atomic<bool> hold{false};
        sqlite_options o;
        o.path = (dir_ / "s.db").string();
        o.before_envelope_sync = [&hold] {
            while (hold.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            return boost::system::error_code{};
        };
        auto st = open_sqlite(o);
        auto submit_one = [&](new_event e) {
            auto p = std::make_shared<std::promise<boost::system::error_code>>();
            auto f = p->get_future();
            st->submit(std::move(e),
                       [p](boost::system::error_code ec, submit_outcome) { p->set_value(ec); });
            return f;
        };
        std::vector<std::future<boost::system::error_code>> a;
        for (int i = 0; i < lot_a; ++i) a.push_back(submit_one(ev("A" + std::to_string(i))));
        for (auto& f : a)
            if (f.get()) ::_exit(1);
        hold = true;  // from here no record is synced, so nothing is acknowledged
        // Committed (the writer does not wait for the log): seen by another connection.
        auto committed = [&](std::int64_t n) {
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
            while (store_fixture::raw_count(dir_, "SELECT COUNT(*) FROM events") < n)
                if (std::chrono::steady_clock::now() > deadline) ::_exit(2);
        };
        auto b = submit_one(ev("B"));
        committed(lot_a + 1);
        auto c = submit_one(ev("C"));
        committed(lot_a + 2);
        // Not acknowledged while its record is unsynced (an acknowledgement that ignored the
        // log would come with the WAL's sync, well within this).
        if (b.wait_for(std::chrono::milliseconds(500)) == std::future_status::ready) ::_exit(3);
        ::_exit(0);  // no close: the watermark as C's commit wrote it
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "the child died";
    ASSERT_EQ(WEXITSTATUS(status), 0) << "1: lot A not acknowledged, 2: B or C not committed, "
                                         "3: B acknowledged with its record unsynced";
    const std::int64_t a_max =
        raw_count("SELECT MAX(seq) FROM events WHERE idempotency_key LIKE 'A%'");
    const std::int64_t b_seq = raw_count("SELECT seq FROM events WHERE idempotency_key = 'B'");
    const std::int64_t c_seq = raw_count("SELECT seq FROM events WHERE idempotency_key = 'C'");
    auto id_of = [&](const char* key) {
        sqlite3* db = nullptr;
        sqlite3_open_v2((dir_ / "s.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
        sqlite3_stmt* q = nullptr;
        sqlite3_prepare_v2(db, "SELECT id FROM events WHERE idempotency_key = ?", -1, &q, nullptr);
        sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
        std::string id;
        if (sqlite3_step(q) == SQLITE_ROW)
            id = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        sqlite3_close(db);
        return id;
    };
    const std::string b_id = id_of("B"), c_id = id_of("C");
    ASSERT_FALSE(b_id.empty());
    ASSERT_LT(a_max, b_seq);
    ASSERT_LT(b_seq, c_seq);
    EXPECT_EQ(raw_count("SELECT seq FROM envlog_durable"), a_max)
        << "C's commit recorded B (seq " << b_seq << ") as durable";
    const std::int64_t seg = raw_count("SELECT env_seg FROM events WHERE idempotency_key = 'B'");
    ASSERT_EQ(raw_count("SELECT env_seg FROM events WHERE idempotency_key = 'C'"), seg);
    // B's record torn (its header's first byte), C's whole: B is lost, and C, committed after
    // it and so never acknowledged either, is set aside with it so that the resends keep their
    // order.
    ASSERT_TRUE(samband::testing::flip_byte(
        envelope_log::segment_path(dir_ / "s.db.envelopes", seg),
        raw_count("SELECT env_off FROM events WHERE idempotency_key = 'B'")));
    open();
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM audit WHERE action = 'event.lost' AND subject = "
                        "'event:" +
                        c_id + "' AND detail LIKE '%stored after event " + b_id + "%'"),
              1);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events WHERE lost_ms IS NOT NULL AND "
                        "idempotency_key IN ('B', 'C')"),
              2);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events WHERE lost_ms IS NOT NULL"), 2);
    // What the daemon logs at start: the two rows checked, both lost, named.
    const auto check = st_->opened();
    EXPECT_EQ(check.envelopes_checked, 2u);
    EXPECT_EQ(std::set<std::string>(check.lost_events.begin(), check.lost_events.end()),
              (std::set<std::string>{b_id, c_id}));
    int walked = 0;
    EXPECT_TRUE(st_->for_each_event("", [&](const event_row& e) {
        EXPECT_EQ(e.idempotency_key.substr(0, 1), "A") << e.id;
        ++walked;
    }));
    EXPECT_EQ(walked, lot_a);
    EXPECT_EQ(chain_faults(), "");
}

// Issue 10: a failed sync of the envelope log is fatal as a failed WAL sync is: the event whose
// record it was to sync is not acknowledged (an I/O error, so its source keeps it), the store
// reports the failure once naming the log's folder, and later submits fail too. Nothing is lost:
// the row committed before the sync is checked at the next open like any unsynced row.
TEST_P(store_test, a_failed_sync_of_the_envelope_log_acknowledges_nothing_and_is_fatal) {
    if (pg()) GTEST_SKIP() << "SQLite's envelope log";
    st_.reset();
    std::atomic<bool> fail{false};
    std::atomic<int> failed_syncs{0};
    sqlite_options o;
    o.path = (dir_ / "s.db").string();
    o.before_envelope_sync = [&] {
        if (!fail.load()) return boost::system::error_code{};
        ++failed_syncs;
        return boost::system::errc::make_error_code(boost::system::errc::io_error);
    };
    st_ = open_sqlite(o);
    std::mutex m;
    std::vector<std::string> fatal;
    st_->on_fatal([&](std::string why) {
        std::lock_guard lock(m);
        fatal.push_back(std::move(why));
    });
    auto before = submit(ev("before"));
    EXPECT_FALSE(before.duplicate);
    fail = true;
    auto outcome = [&](new_event e) {
        std::promise<boost::system::error_code> p;
        auto f = p.get_future();
        st_->submit(std::move(e),
                    [&p](boost::system::error_code ec, submit_outcome) { p.set_value(ec); });
        EXPECT_EQ(f.wait_for(std::chrono::seconds(20)), std::future_status::ready);
        return f.get();
    };
    EXPECT_TRUE(outcome(ev("during"))) << "acknowledged without its record synced";
    EXPECT_GE(failed_syncs.load(), 1);
    {
        std::lock_guard lock(m);
        ASSERT_EQ(fatal.size(), 1u);
        EXPECT_NE(fatal[0].find("envelope log"), std::string::npos) << fatal[0];
        EXPECT_NE(fatal[0].find("s.db.envelopes"), std::string::npos) << fatal[0];
    }
    EXPECT_TRUE(outcome(ev("after"))) << "a failed store took a submit";
    // A fresh start (the disk mended) takes new events; the one whose sync failed is either whole
    // (its bytes were written) or marked lost, never acknowledged.
    st_.reset();
    open();
    auto again = submit(ev("again"));
    EXPECT_FALSE(again.duplicate);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events WHERE idempotency_key = 'after'"), 0);
}

// Issue 15 item 7 on both backends: envelopes and refused inputs are sealed in their columns, read
// back whole, a changed record reads as an error, and a store whose records need a key that is
// not configured does not open.
TEST_P(store_test, encryption_at_rest_seals_envelopes_and_refused_inputs) {
    auto key_hex = [] {
        std::string h;
        for (int i = 0; i < 4; ++i) h += core::sha256_hex(core::uuid_v7()).substr(0, 16);
        return h;  // 32 bytes from a fresh uuid each run: a throwaway key
    };
    auto keys = std::make_shared<keyring>();
    keys->add("k1", key_hex());
    st_.reset();
    st_ = open_store(dir_, "a", 60000, keys);
    auto e = ev("sealed");
    e.envelope_json = R"({"type":"rph.treatment.started","subject":{"fnr":"14839134623"},)"
                      R"("data":{"note":"Sover dårlig"}})";
    const std::string id = e.id, envelope = e.envelope_json;
    submit(std::move(e));
    auto mid = ev("sealed-2");
    const std::string middle = mid.id;
    submit(std::move(mid));
    auto last = ev("sealed-3");
    const std::string last_id = last.id;
    submit(std::move(last));
    std::promise<boost::system::error_code> pe;
    st_->record_error({"epj", "/data/score: out of range", "Nordmannsen;14839134623", "k-e"},
                      [&](boost::system::error_code ec) { pe.set_value(ec); });
    ASSERT_FALSE(pe.get_future().get());
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events WHERE envelope LIKE '%14839134623%' OR "
                        "envelope LIKE '%Sover%'"),
              0);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM errors WHERE payload LIKE '%Nordmannsen%'"), 0);
    if (pg()) {
        EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events WHERE envelope IS NOT NULL"), 3);
    } else {
        // SQLite (schema 11): in the envelope log, sealed there too.
        EXPECT_EQ(raw_count("SELECT COUNT(*) FROM events WHERE envelope IS NULL AND env_seg IS "
                            "NOT NULL"),
                  3);
        std::string logged;
        for (const auto& f : fs::directory_iterator(dir_ / "s.db.envelopes")) {
            std::ifstream in(f.path(), std::ios::binary);
            logged += std::string(std::istreambuf_iterator<char>(in), {});
        }
        EXPECT_GT(logged.size(), 3 * 16u);
        EXPECT_EQ(logged.find("14839134623"), std::string::npos);
        EXPECT_EQ(logged.find("Sover"), std::string::npos);
    }
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM payloads"), 0) << "new envelopes are in events";
    auto got = st_->get_event(id);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->envelope_json, envelope);
    auto errs = st_->list_errors(10);
    ASSERT_TRUE(errs && errs->size() == 1u);
    EXPECT_EQ((*errs)[0].second.payload, "Nordmannsen;14839134623");
    // Without the key, the store does not open (naming the key); with another key neither.
    st_.reset();
    auto other = std::make_shared<keyring>();
    other->add("k2", key_hex());
    try {
        open_store(dir_, "a", 60000, other);
        ADD_FAILURE() << "opened without the key k1";
    } catch (const std::runtime_error& x) {
        EXPECT_NE(std::string(x.what()).find("\"k1\", which is not configured"), std::string::npos)
            << x.what();
    }
    // A changed byte in a sealed envelope (the middle one: the start checks the oldest and the
    // newest) reads as an error, never as garbage; the others still read.
    if (pg()) {
        raw_exec(
            "UPDATE events SET envelope = substr(envelope, 1, 40) || (CASE substr(envelope, "
            "41, 1) WHEN 'A' THEN 'B' ELSE 'A' END) || substr(envelope, 42) WHERE id = '" +
            middle + "'");
    } else {
        // SQLite: the byte changed in its envelope log record (its CRC32 then fails).
        const std::string where = " FROM events WHERE id = '" + middle + "'";
        auto seg = raw_count("SELECT env_seg" + where), off = raw_count("SELECT env_off" + where);
        ASSERT_TRUE(samband::testing::flip_byte(
            envelope_log::segment_path(dir_ / "s.db.envelopes", seg),
            off + static_cast<std::int64_t>(envelope_log::kHeaderBytes) + 40));
    }
    st_ = open_store(dir_, "a", 60000, keys);
    auto bad = st_->get_event(middle);
    ASSERT_FALSE(bad);
    // PostgreSQL: the seal's authentication fails; SQLite: the log record's CRC32 does first,
    // and reads the same way (a delivery of it goes dead at once rather than retry forever).
    EXPECT_EQ(bad.error(), sealed_record_error());
    auto good = st_->get_event(id);
    ASSERT_TRUE(good && *good);
    EXPECT_EQ((*good)->envelope_json, envelope);
    // Read together (the engine's workers do, in one read transaction), the bad one fails alone:
    // one result per id, in order, an unknown id found empty, and the ones after it still read.
    auto lot = st_->get_events({id, middle, "no-such-event", last_id, id});
    ASSERT_EQ(lot.size(), 5u);
    ASSERT_TRUE(lot[0] && *lot[0]);
    EXPECT_EQ((*lot[0])->envelope_json, envelope);
    ASSERT_FALSE(lot[1]);
    EXPECT_EQ(lot[1].error(), sealed_record_error());
    ASSERT_TRUE(lot[2]);
    EXPECT_FALSE(*lot[2]);
    ASSERT_TRUE(lot[3] && *lot[3]);
    EXPECT_EQ((*lot[3])->id, last_id);
    ASSERT_TRUE(lot[4] && *lot[4]);
    EXPECT_EQ((*lot[4])->envelope_json, envelope);
    // And the read connection is left out of any transaction: a write from another connection
    // and a read after it see each other.
    auto after = ev("sealed-4");
    const std::string after_id = after.id;
    submit(std::move(after));
    auto seen = st_->get_events({after_id});
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_TRUE(seen[0] && *seen[0]) << "a read after the lot sees a later commit";
}

// Key rotation on both backends: plain and old-key records are re-sealed under the new key, a
// second run finds nothing to do, and the new key alone then reads everything.
TEST_P(store_test, rotate_keys_reseals_under_the_new_key_and_is_resumable) {
    auto key_hex = [] {
        std::string h;
        for (int i = 0; i < 4; ++i) h += core::sha256_hex(core::uuid_v7()).substr(0, 16);
        return h;
    };
    const std::string k1 = key_hex(), k2 = key_hex();
    submit(ev("plain-1"));  // written with encryption off
    auto one = std::make_shared<keyring>();
    one->add("k1", k1);
    st_.reset();
    st_ = open_store(dir_, "a", 60000, one);
    submit(ev("k1-a"));
    submit(ev("k1-b"));
    std::promise<boost::system::error_code> pe;
    st_->record_error({"epj", "/x: refused", "raw input", "k-r"},
                      [&](boost::system::error_code ec) { pe.set_value(ec); });
    ASSERT_FALSE(pe.get_future().get());
    st_.reset();
    auto both = std::make_shared<keyring>();
    both->add("k2", k2);
    both->add("k1", k1);
    auto rotate = [&](const keyring& k) {
        return pg() ? rotate_postgresql_keys(shared_pg().conninfo(), k, 2)
                    : rotate_sqlite_keys((dir_ / "s.db").string(), k, 2);
    };
    auto r = rotate(*both);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->resealed, 4u);
    EXPECT_EQ(r->already, 0u);
    auto again = rotate(*both);
    ASSERT_TRUE(again) << again.error();
    EXPECT_EQ(again->resealed, 0u);
    EXPECT_EQ(again->already, 4u);
    auto only_new = std::make_shared<keyring>();
    only_new->add("k2", k2);
    st_ = open_store(dir_, "a", 60000, only_new);
    auto all = st_->list_deliveries({});
    ASSERT_TRUE(all);
    EXPECT_EQ(all->size(), 3u);
    for (const auto& d : *all) {
        auto e = st_->get_event(d.event_id);
        ASSERT_TRUE(e && *e) << d.event_id;
        EXPECT_NE((*e)->envelope_json.find("rph.treatment.started"), std::string::npos);
    }
    auto errs = st_->list_errors(10);
    ASSERT_TRUE(errs && errs->size() == 1u);
    EXPECT_EQ((*errs)[0].second.payload, "raw input");
    // A keyring without k2 cannot rotate: the error names the record and the key.
    keyring k3;
    k3.add("k3", key_hex());
    auto bad = rotate(k3);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().find("\"k2\", which is not configured"), std::string::npos)
        << bad.error();
}

TEST_P(store_test, a_reused_key_with_other_content_is_a_conflict_and_stores_nothing) {
    auto a = ev("reused");
    a.content_sha256 = std::string(64, 'a');
    std::string first = a.id;
    submit(std::move(a));
    auto same = ev("reused");
    same.content_sha256 = std::string(64, 'a');
    auto o1 = submit(std::move(same));
    EXPECT_TRUE(o1.duplicate);
    EXPECT_FALSE(o1.conflict);
    auto other = ev("reused");
    other.content_sha256 = std::string(64, 'b');
    std::string other_id = other.id;
    auto o2 = submit(std::move(other));
    EXPECT_TRUE(o2.conflict);
    EXPECT_FALSE(o2.duplicate);
    EXPECT_EQ(o2.event_id, first) << "names the first event";
    EXPECT_FALSE(*st_->get_event(other_id)) << "nothing stored for the conflicting input";
    EXPECT_EQ(st_->list_deliveries({})->size(), 1u);
}

// The old '|'-joined format hashes "x|y","z" and "x","y|z" alike (text can move across fields);
// the length-prefixed format does not. Rows are written in the new one.
TEST(audit_chain, the_length_prefixed_format_tells_fields_apart) {
    EXPECT_EQ(audit_hash(1, "p", 1, "x|y", "z", "s", "d"),
              audit_hash(1, "p", 1, "x", "y|z", "s", "d"));
    EXPECT_NE(audit_hash(2, "p", 1, "x|y", "z", "s", "d"),
              audit_hash(2, "p", 1, "x", "y|z", "s", "d"));
    EXPECT_EQ(kAuditHashVersion, 2);
}

TEST(audit_chain, the_check_names_a_changed_a_missing_and_a_downgraded_row) {
    auto row = [](audit_chain_check& c, std::int64_t id, int v, const std::string& prev,
                  const std::string& detail, std::string* hash = nullptr) {
        std::string h = audit_hash(v, prev, 10 * id, "engine", "a", "s", detail);
        if (hash) *hash = h;
        return c.add(id, v, 10 * id, "engine", "a", "s", detail, h);
    };
    audit_chain_check ok;
    std::string h1, h2;
    EXPECT_TRUE(row(ok, 1, 1, "", "one", &h1));
    EXPECT_TRUE(row(ok, 2, 2, h1, "two", &h2));
    EXPECT_TRUE(ok.intact());
    EXPECT_EQ(ok.rows(), 2);
    EXPECT_EQ(ok.last_hash(), h2);

    audit_chain_check changed;
    row(changed, 1, 2, "", "one", &h1);
    EXPECT_FALSE(changed.add(2, 2, 20, "engine", "a", "s", "two (edited)",
                             audit_hash(2, h1, 20, "engine", "a", "s", "two")));
    EXPECT_EQ(changed.broken_at(), 2);

    audit_chain_check gap;
    row(gap, 1, 2, "", "one", &h1);
    EXPECT_FALSE(row(gap, 4, 2, h1, "four"));
    EXPECT_EQ(gap.problem(), "rows 2 to 3 are missing");

    audit_chain_check head;
    EXPECT_FALSE(row(head, 2, 2, "", "two"));
    EXPECT_EQ(head.problem(), "row 1 is missing");

    audit_chain_check down;
    row(down, 1, 2, "", "one", &h1);
    EXPECT_FALSE(row(down, 2, 1, h1, "two"));
    EXPECT_NE(down.problem().find("hash format 1 after format 2"), std::string::npos);
}

TEST_P(store_test, an_earlier_waiting_delivery_blocks_later_ones_of_the_same_patient_only) {
    submit(ev("a1", "patientA"));
    submit(ev("a2", "patientA"));
    submit(ev("b1", "patientB"));
    auto first = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_TRUE(first);
    ASSERT_EQ(first->size(), 2u);  // a1 and b1; a2 waits behind a1
    EXPECT_EQ((*first)[0].order_key, "patientA");
    EXPECT_EQ((*first)[1].order_key, "patientB");
    EXPECT_TRUE(st_->claim_due("gp", core::now_ms(), 10, 5)->empty()) << "claimed twice";
    // a1 fails and backs off: a2 still waits (order kept), and is not due.
    update({(*first)[0].id, delivery_state::failed, "timeout", "", core::now_ms() + 60000, 1});
    EXPECT_TRUE(st_->claim_due("gp", core::now_ms(), 10, 5)->empty());
    EXPECT_EQ((*st_->get_delivery((*first)[0].id))->attempts, 1) << "counted at the claim";
    update({(*first)[0].id, delivery_state::in_flight, "", "", 0, 0});  // as a second claim would
    update({(*first)[0].id, delivery_state::delivered, "", "ext-1", 0, 1});
    auto next = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(next->size(), 1u);
    auto row = st_->get_delivery((*first)[0].id);
    EXPECT_EQ((*row)->state, delivery_state::delivered);
    EXPECT_EQ((*row)->attempts, 1);
    EXPECT_EQ((*row)->external_id, "ext-1");
    auto found = st_->find_by_external_id("gp", "ext-1");
    ASSERT_TRUE(found && *found);
    EXPECT_EQ(**found, (*first)[0].id);
}

// The order per (destination, patient) while deliveries leave and rejoin the chain: dead, an
// operator's retry, held, and a replay of the destination. (SQLite marks each chain's head from
// schema 6: claims read heads, not a patient's whole backlog.)
TEST_P(store_test, only_the_first_open_delivery_of_a_patient_is_claimed_as_states_change) {
    submit(ev("a1", "A"));
    submit(ev("a2", "A"));
    submit(ev("a3", "A"));
    submit(ev("b1", "B"));
    submit(ev("b2", "B"));
    auto ids = [&](const boost::system::result<std::vector<delivery_row>>& r) {
        std::vector<std::string> out;
        for (const auto& d : *r) out.push_back((*st_->get_delivery(d.id))->event_id);
        return out;
    };
    auto by_key = [&](const std::string& key) {
        delivery_query q;
        q.limit = 100;
        std::vector<std::int64_t> out;
        for (const auto& d : *st_->list_deliveries(q))
            if (d.order_key == key) out.push_back(d.id);
        return out;
    };
    auto a = by_key("A"), b = by_key("B");
    ASSERT_EQ(a.size(), 3u);
    ASSERT_EQ(b.size(), 2u);
    delivery_update hold;
    hold.delivery_id = b[0];
    hold.state = delivery_state::held;
    hold.actor = "gate";
    update(hold);
    auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u) << "b1 is held: b2 waits behind it";
    EXPECT_EQ((*c)[0].id, a[0]);
    update({a[0], delivery_state::dead, "refused", "", 0, 1});
    c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].id, a[1]) << "a1 left the chain";
    update({a[1], delivery_state::delivered, "", "x2", 0, 1});
    c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].id, a[2]);
    // An operator retries a1: it rejoins ahead of a3 (in flight) and is the first of A again.
    delivery_update retry;
    retry.delivery_id = a[0];
    retry.state = delivery_state::pending;
    retry.actor = "operator:test";
    retry.renew_attempts = true;
    update(retry);
    c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].id, a[0]);
    update({a[0], delivery_state::delivered, "", "x1", 0, 2});
    update({a[2], delivery_state::delivered, "", "x3", 0, 1});
    EXPECT_TRUE(st_->claim_due("gp", core::now_ms(), 10, 5)->empty());
    delivery_update release = hold;
    release.state = delivery_state::pending;
    update(release);
    c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].id, b[0]);
    update({b[0], delivery_state::delivered, "", "y1", 0, 1});
    c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].id, b[1]);
    update({b[1], delivery_state::delivered, "", "y2", 0, 1});
    // A replay sends everything again, still one at a time per patient, in order.
    ASSERT_EQ(*st_->replay("gp", 0, "operator:test"), 5u);
    EXPECT_EQ(ids(st_->claim_due("gp", core::now_ms(), 10, 5)),
              (std::vector<std::string>{(*st_->get_delivery(a[0]))->event_id,
                                        (*st_->get_delivery(b[0]))->event_id}));
    EXPECT_FALSE(*st_->verify_audit_chain());
}

// Chains under a random mix of everything that moves deliveries in and out of them (seeded, so a
// failure repeats): new events for three patients at two destinations, claims, completions,
// failures, dead ends, holds and releases, blocks, operators' retries and replays. Every claim
// takes exactly the due heads: per (destination, patient) the lowest open delivery, when it is
// pending or failed and due. On SQLite the lists (prev, head, chains) are checked after each step.
TEST_P(store_test, chains_keep_their_order_through_a_random_mix_of_state_changes) {
    using enum delivery_state;
    struct model_row {
        std::string dest, key;
        delivery_state state;
        std::int32_t attempts;
    };
    std::map<std::int64_t, model_row> model;
    auto open_state = [](delivery_state s) {
        return s == pending || s == in_flight || s == failed || s == held;
    };
    auto due_heads = [&](const std::string& dest) {
        std::map<std::string, std::int64_t> first;  // patient -> lowest open id
        for (const auto& [id, r] : model)
            if (r.dest == dest && open_state(r.state) && !first.count(r.key)) first[r.key] = id;
        std::set<std::int64_t> due;
        for (const auto& [key, id] : first)
            if (model[id].state == pending || model[id].state == failed) due.insert(id);
        return due;
    };
    std::mt19937 rng(20261202);
    auto pick = [&](auto pred) -> std::int64_t {
        std::vector<std::int64_t> ids;
        for (const auto& [id, r] : model)
            if (pred(r)) ids.push_back(id);
        if (ids.empty()) return 0;
        return ids[std::uniform_int_distribution<std::size_t>(0, ids.size() - 1)(rng)];
    };
    const std::string patients[] = {"A", "B", "C"}, dests[] = {"gp", "nav"};
    int n_events = 0, claimed = 0, rejoined = 0;
    std::int64_t most_waiting = 0;  // SQLite: the most deliveries waiting behind another
    for (int step = 0; step < 400; ++step) {
        int op = std::uniform_int_distribution<int>(0, 9)(rng);
        std::int64_t id = 0;
        delivery_update u;
        if (op <= 2) {  // a new event, to one or both destinations
            const std::string& key = patients[rng() % 3];
            std::vector<std::string> to{dests[rng() % 2]};
            if (rng() % 3 == 0) to = {"gp", "nav"};
            auto e = ev("k" + std::to_string(++n_events), key, to);
            const std::string event_id = e.id;
            submit(std::move(e));
            delivery_query q;
            q.event_id = event_id;
            for (const auto& d : *st_->list_deliveries(q))
                model[d.id] = {d.destination, key, pending, 0};
        } else if (op <= 4) {  // a claim: exactly the due heads
            const std::string& dest = dests[rng() % 2];
            auto want = due_heads(dest);
            auto c = st_->claim_due(dest, core::now_ms(), 100, 0);
            ASSERT_TRUE(c);
            std::set<std::int64_t> got;
            for (const auto& r : *c) {
                got.insert(r.id);
                model[r.id].state = in_flight;
                model[r.id].attempts = r.attempts;
            }
            ASSERT_EQ(got, want) << "step " << step << ": claimed at " << dest;
            claimed += static_cast<int>(got.size());
        } else if (op <= 6 &&
                   (id = pick([](const model_row& r) { return r.state == in_flight; }))) {
            // A completion: delivered, failed (due again at once) or dead.
            delivery_state to[] = {delivered, delivered, failed, dead};
            u = {id, to[rng() % 4], "step " + std::to_string(step), "x", 0, model[id].attempts};
        } else if (op == 7 && (id = pick([](const model_row& r) {
                                   return r.state == pending || r.state == held ||
                                          r.state == blocked;
                               }))) {
            // The gate: held or blocked, and released.
            delivery_state s = model[id].state;
            u.delivery_id = id;
            u.actor = "gate";
            u.state = s == pending ? (rng() % 2 ? held : blocked) : pending;
        } else if (op == 8 && (id = pick([](const model_row& r) {
                                   return r.state == dead || r.state == delivered;
                               }))) {
            u.delivery_id = id;  // an operator's retry: it rejoins its chain at its place
            u.state = pending;
            u.actor = "operator:test";
            u.renew_attempts = true;
            ++rejoined;
        } else if (op == 9 && rng() % 8 == 0) {
            const std::string& dest = dests[rng() % 2];
            ASSERT_TRUE(st_->replay(dest, 0, "operator:test"));
            for (auto& [rid, r] : model)
                if (r.dest == dest && (r.state == delivered || r.state == dead)) r.state = pending;
        }
        if (u.delivery_id != 0) {
            ASSERT_TRUE(transition_allowed(model[id].state, u.state));
            update(u);
            model[id].state = u.state;
        }
        if (pg()) continue;
        ASSERT_EQ(chain_faults(), "") << "step " << step << ", op " << op;
        most_waiting =
            std::max(most_waiting, raw_count("SELECT COUNT(*) FROM deliveries WHERE prev <> 0"));
    }
    // The mix did what it is for.
    EXPECT_GT(n_events, 60);
    EXPECT_GT(claimed, 60);
    EXPECT_GT(rejoined, 5);
    if (!pg()) {
        EXPECT_GT(most_waiting, 5);
    }
}

TEST_P(store_test, in_flight_deliveries_go_back_to_pending_after_a_restart) {
    submit(ev("r1"));
    ASSERT_EQ(st_->claim_due("gp", core::now_ms(), 10, 5)->size(), 1u);
    open();  // a restart
    auto n = st_->recover_in_flight();
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 1u);
    EXPECT_EQ(st_->claim_due("gp", core::now_ms(), 10, 5)->size(), 1u);
}

TEST_P(store_test, audit_chain_verifies_and_detects_tampering) {
    submit(ev("t1"));
    submit(ev("t2"));
    st_->flush();
    auto ok = st_->verify_audit_chain();
    ASSERT_TRUE(ok);
    EXPECT_FALSE(*ok);
    raw_exec("UPDATE audit SET detail = 'forged' WHERE id = 1");
    auto bad = st_->verify_audit_chain();
    ASSERT_TRUE(bad && *bad);
    EXPECT_EQ(**bad, 1);
}

TEST_P(store_test, attachments_are_content_addressed_streamed_and_read_in_chunks) {
    fs::path f = dir_ / "big.pdf";
    std::string bytes;
    for (int i = 0; i < 300000; ++i) bytes += static_cast<char>(i * 7);
    std::ofstream(f, std::ios::binary) << bytes;
    std::string sha = core::sha256_hex(bytes);
    for (const char* key : {"att1", "att2"}) {
        auto e = ev(key);
        attachment_input a;
        a.meta = {"a1", "henvisning.pdf", "application/pdf", sha, bytes.size()};
        a.path = f.string();
        e.attachments.push_back(a);
        submit(std::move(e));
    }
    if (pg()) {
        EXPECT_EQ(raw_count("SELECT COUNT(*) FROM blobs"), 1);
    } else {
        std::size_t blobs = 0;
        for (auto& p : fs::recursive_directory_iterator(dir_ / "s.db.blobs"))
            if (p.is_regular_file()) ++blobs;
        EXPECT_EQ(blobs, 1u);
    }
    std::string back;
    std::vector<std::uint8_t> buf(65536);
    for (;;) {
        auto n = st_->read_attachment(sha, back.size(), buf.data(), buf.size());
        ASSERT_TRUE(n);
        if (*n == 0) break;
        back.append(reinterpret_cast<char*>(buf.data()), *n);
    }
    EXPECT_EQ(back, bytes);
}

// Attachments' bytes sealed at rest on both backends: the folder's files (PostgreSQL: the blobs
// table) hold no plaintext; reads and the plugins' decrypted copy are byte-exact; the copy is
// private and gone once released; a flipped byte is an authentication error naming the
// attachment by sha256, and no copy is left; a plain blob from before encryption still reads.
TEST_P(store_test, sealed_attachments_read_back_exact_through_a_short_lived_private_copy) {
    auto with_file = [&](const std::string& key, const std::string& bytes, const fs::path& f) {
        std::ofstream(f, std::ios::binary) << bytes;
        auto e = ev(key, key);
        attachment_input a;
        a.meta = {"a1", "henvisning.pdf", "application/pdf", core::sha256_hex(bytes), bytes.size()};
        a.path = f.string();
        e.attachments.push_back(a);
        return e;
    };
    auto pdf = [](const std::string& marker, std::size_t pages) {
        std::string b = "%PDF-1.7\n";
        for (std::size_t i = 0; b.size() < pages * 70000; ++i)
            b += "BT /F1 12 Tf (" + marker + " side " + std::to_string(i) + ") Tj ET\n";
        return b + "%%EOF\n";
    };
    const std::string old_bytes = pdf("ELDRE-KLARTEKST", 1);
    submit(with_file("before", old_bytes, dir_ / "old.pdf"));  // encryption still off
    auto keys = std::make_shared<keyring>();
    keys->add("k1", core::sha256_hex(core::uuid_v7()));  // a throwaway key
    st_.reset();
    st_ = open_store(dir_, "a", 60000, keys);
    const std::string bytes = pdf("HEMMELIG-NOTAT-14839134623", 4);  // ~280 KB, 5 chunks
    const std::string sha = core::sha256_hex(bytes), old_sha = core::sha256_hex(old_bytes);
    submit(with_file("sealed", bytes, dir_ / "in.pdf"));
    submit(with_file("again", bytes, dir_ / "in.pdf"));  // the same bytes: stored once
    if (pg()) {
        EXPECT_EQ(raw_count("SELECT COUNT(*) FROM blobs WHERE position(convert_to('HEMMELIG', "
                            "'UTF8') IN data) > 0"),
                  0);
        EXPECT_EQ(raw_count("SELECT COUNT(*) FROM blobs WHERE position(convert_to('ELDRE', "
                            "'UTF8') IN data) > 0"),
                  1);  // the check can see plaintext: the blob from before encryption
        EXPECT_EQ(raw_count("SELECT COUNT(*) FROM blobs WHERE sha256 = '" + sha + "'"), 1);
        EXPECT_EQ(raw_count("SELECT size FROM blobs WHERE sha256 = '" + sha + "'"),
                  static_cast<std::int64_t>(bytes.size()));
    } else {
        std::size_t files = 0;
        for (auto& p : fs::recursive_directory_iterator(dir_ / "s.db.blobs")) {
            if (!p.is_regular_file()) continue;
            ++files;
            std::ifstream in(p.path(), std::ios::binary);
            std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            EXPECT_EQ(raw.find("HEMMELIG"), std::string::npos) << p.path();
            EXPECT_EQ(raw.find("14839134623"), std::string::npos) << p.path();
        }
        EXPECT_EQ(files, 2u);
        EXPECT_EQ(st_->blob_path(sha), "");  // sealed: no file a plugin could read as it is
        EXPECT_NE(st_->blob_path(old_sha), "");
    }
    // Reads at any offset, across chunk boundaries.
    auto read_from = [&](const std::string& s, std::uint64_t from, std::size_t step) {
        std::string back;
        std::vector<std::uint8_t> buf(step);
        for (std::uint64_t off = from;;) {
            auto n = st_->read_attachment(s, off, buf.data(), buf.size());
            if (!n) return std::string("error: ") + n.error().message();
            if (*n == 0) return back;
            back.append(reinterpret_cast<char*>(buf.data()), *n);
            off += *n;
        }
    };
    // (compared as booleans: a failure must not print the attachment)
    EXPECT_TRUE(read_from(sha, 0, 65536) == bytes) << read_from(sha, 0, 65536).substr(0, 60);
    EXPECT_TRUE(read_from(sha, 65530, 1000) == bytes.substr(65530));
    EXPECT_TRUE(read_from(sha, 1, 300000) == bytes.substr(1));
    EXPECT_TRUE(read_from(old_sha, 0, 4096) == old_bytes);
    // The plugins' copy: private, byte-exact, shared while held, gone when released.
    const fs::path copies = dir_ / "copies";
    {
        blob_copies c(*st_, copies.string());
        EXPECT_EQ(fs::status(copies).permissions() & fs::perms::all, fs::perms::owner_all);
        auto one = c.acquire(sha);
        ASSERT_TRUE(one) << one.error().why;
        auto two = c.acquire(sha);
        ASSERT_TRUE(two) << two.error().why;
        EXPECT_EQ(one->path, two->path);
        EXPECT_EQ(one->path.find(copies.string()), 0u);
        EXPECT_EQ(fs::status(one->path).permissions() & fs::perms::all,
                  fs::perms::owner_read | fs::perms::owner_write);
        std::ifstream in(one->path, std::ios::binary);
        std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        EXPECT_TRUE(got == bytes);
        std::string path = one->path;
        one->hold.reset();
        EXPECT_TRUE(fs::exists(path));
        two->hold.reset();
        EXPECT_FALSE(fs::exists(path));
        EXPECT_EQ(c.live(), 0u);
        // A crash's leftovers are removed when the folder is opened again.
        std::ofstream(copies / "left-over") << "plain";
    }
    {
        blob_copies c(*st_, copies.string());
        EXPECT_TRUE(fs::is_empty(copies));
    }
    // One flipped byte inside the third chunk: an authentication error naming the attachment by
    // its sha256, never garbage, and no copy is left behind.
    if (pg()) {
        raw_exec(
            "UPDATE blobs SET data = set_byte(data, 140000, get_byte(data, 140000) # 1) "
            "WHERE sha256 = '" +
            sha + "'");
    } else {
        fs::path f = dir_ / "s.db.blobs" / sha.substr(0, 2) / sha;
        fs::permissions(f, fs::perms::owner_read | fs::perms::owner_write);
        std::fstream io(f, std::ios::binary | std::ios::in | std::ios::out);
        io.seekg(140000);
        char b = 0;
        io.get(b);
        io.seekp(140000);
        io.put(static_cast<char>(b ^ 1));
    }
    std::vector<std::uint8_t> buf(65536);
    auto first = st_->read_attachment(sha, 0, buf.data(), buf.size());
    EXPECT_TRUE(first);  // the first chunk is intact
    auto bad = st_->read_attachment(sha, 131072, buf.data(), buf.size());
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), sealed_record_error());
    blob_copies c(*st_, copies.string());
    auto refused = c.acquire(sha);
    ASSERT_FALSE(refused);
    EXPECT_TRUE(refused.error().auth);
    const std::string& why = refused.error().why;
    EXPECT_NE(why.find("attachment sha256 " + sha), std::string::npos) << why;
    EXPECT_NE(why.find("failed authentication"), std::string::npos) << why;
    EXPECT_EQ(why.find("henvisning"), std::string::npos);
    EXPECT_TRUE(fs::is_empty(copies));
    // The start checks the newest attachment's key and first chunk as it checks envelopes: a
    // missing key stops it, named (the envelopes made plain here, so only the blob speaks).
    st_.reset();
    raw_exec("UPDATE events SET envelope = '{}'");
    auto other = std::make_shared<keyring>();
    other->add("k9", core::sha256_hex(core::uuid_v7()));
    try {
        open_store(dir_, "a", 60000, other);
        ADD_FAILURE() << "opened without the key k1";
    } catch (const std::runtime_error& x) {
        EXPECT_NE(std::string(x.what()).find("\"k1\", which is not configured"), std::string::npos)
            << x.what();
    }
}

// Key rotation re-seals attachments too (both backends): a plain blob and one under the old key
// end under the new key, a second run finds both done, and the new key alone reads them exact.
TEST_P(store_test, rotate_keys_reseals_attachments_and_the_new_key_alone_reads_them) {
    auto with_bytes = [&](const std::string& key, const std::string& bytes) {
        auto e = ev(key, key);
        attachment_input a;
        a.meta = {"a1", "x.pdf", "application/pdf", core::sha256_hex(bytes), bytes.size()};
        a.bytes = bytes;
        e.attachments.push_back(a);
        return e;
    };
    std::string plain = "%PDF-1.7 KLARTEKST-FOER ", sealed = "%PDF-1.7 UNDER-K1 ";
    while (plain.size() < 200000) plain += "klartekst " + std::to_string(plain.size());
    while (sealed.size() < 70000) sealed += "k1 " + std::to_string(sealed.size());
    submit(with_bytes("plain", plain));
    auto k1 = std::make_shared<keyring>();
    const std::string m1 = core::sha256_hex(core::uuid_v7()),
                      m2 = core::sha256_hex(core::uuid_v7());
    k1->add("k1", m1);
    st_.reset();
    st_ = open_store(dir_, "a", 60000, k1);
    submit(with_bytes("sealed", sealed));
    st_.reset();
    keyring both;
    both.add("k2", m2);
    both.add("k1", m1);
    auto rotate = [&] {
        return pg() ? rotate_postgresql_keys(shared_pg().conninfo(), both, 1)
                    : rotate_sqlite_keys((dir_ / "s.db").string(), both, 1);
    };
    auto r = rotate();
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->blobs_resealed, 2u);
    EXPECT_EQ(r->blobs_already, 0u);
    auto again = rotate();
    ASSERT_TRUE(again) << again.error();
    EXPECT_EQ(again->blobs_resealed, 0u);
    EXPECT_EQ(again->blobs_already, 2u);
    if (pg()) {
        EXPECT_EQ(raw_count("SELECT COUNT(*) FROM blobs WHERE position(convert_to('KLARTEKST', "
                            "'UTF8') IN data) > 0"),
                  0);
    } else {
        for (auto& p : fs::recursive_directory_iterator(dir_ / "s.db.blobs")) {
            if (!p.is_regular_file()) continue;
            std::ifstream in(p.path(), std::ios::binary);
            std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            EXPECT_EQ(raw.find("KLARTEKST"), std::string::npos);
            EXPECT_EQ(raw.find("UNDER-K1"), std::string::npos);
        }
    }
    auto k2 = std::make_shared<keyring>();
    k2->add("k2", m2);
    st_ = open_store(dir_, "a", 60000, k2);
    for (const std::string* b : {&plain, &sealed}) {
        std::string back;
        std::vector<std::uint8_t> buf(50000);
        for (;;) {
            auto n =
                st_->read_attachment(core::sha256_hex(*b), back.size(), buf.data(), buf.size());
            ASSERT_TRUE(n) << n.error().message();
            if (*n == 0) break;
            back.append(reinterpret_cast<char*>(buf.data()), *n);
        }
        EXPECT_TRUE(back == *b);
    }
    // A changed blob stops the rotation naming it by sha256.
    st_.reset();
    keyring k3;
    k3.add("k3", core::sha256_hex(core::uuid_v7()));
    k3.add("k2", m2);
    const std::string sha = core::sha256_hex(sealed);
    if (pg()) {
        raw_exec(
            "UPDATE blobs SET data = set_byte(data, 100, get_byte(data, 100) # 1) WHERE "
            "sha256 = '" +
            sha + "'");
    } else {
        fs::path f = dir_ / "s.db.blobs" / sha.substr(0, 2) / sha;
        std::fstream io(f, std::ios::binary | std::ios::in | std::ios::out);
        io.seekg(100);
        char c = 0;
        io.get(c);
        io.seekp(100);
        io.put(static_cast<char>(c ^ 1));
    }
    auto bad = pg() ? rotate_postgresql_keys(shared_pg().conninfo(), k3, 1)
                    : rotate_sqlite_keys((dir_ / "s.db").string(), k3, 1);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().find("attachment sha256 " + sha), std::string::npos) << bad.error();
}

TEST_P(store_test, retention_prunes_delivered_events_and_keeps_dead_ones) {
    auto a = ev("p-done"), b = ev("p-dead", "p2");
    std::string da = a.id, db = b.id;
    submit(std::move(a));
    submit(std::move(b));
    auto claimed = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(claimed->size(), 2u);
    update({(*claimed)[0].id, delivery_state::delivered, "", "x", 0, 1});
    update({(*claimed)[1].id, delivery_state::dead, "refused", "", 0, 1});
    auto n = st_->prune(core::now_ms() + 1000);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 1u);
    EXPECT_FALSE(*st_->get_event(da));
    EXPECT_TRUE(*st_->get_event(db));
    EXPECT_FALSE(*st_->verify_audit_chain());
}

TEST_P(store_test, a_store_from_a_newer_samband_is_refused_with_a_clear_message) {
    st_.reset();
    raw_exec("UPDATE schema_version SET version = 99");
    try {
        open_store(dir_);
        FAIL() << "opened a newer store";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
    }
}

TEST_P(store_test, list_filters_by_state_and_destination_and_pages) {
    for (int i = 0; i < 5; ++i)
        submit(ev("l" + std::to_string(i), "p" + std::to_string(i), {"gp", "epj"}));
    delivery_query q;
    q.destination = "epj";
    q.limit = 2;
    auto page1 = st_->list_deliveries(q);
    ASSERT_EQ(page1->size(), 2u);
    q.after_id = page1->back().id;
    auto page2 = st_->list_deliveries(q);
    ASSERT_EQ(page2->size(), 2u);
    EXPECT_GT(page2->front().id, page1->back().id);
    q = {};
    q.state = delivery_state::pending;
    EXPECT_EQ(st_->list_deliveries(q)->size(), 10u);
    auto stats = st_->stats();
    ASSERT_EQ(stats->size(), 2u);
}

TEST_P(store_test, a_delivery_without_a_receipt_is_overdue_only_after_the_window_and_alerts_once) {
    submit(ev("w1"));
    auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    update({(*c)[0].id, delivery_state::delivered, "", "msg-1", 0, 1});
    std::int64_t now = core::now_ms();
    const std::int64_t window = 96 * 3600;  // Apprec: 96 hours
    EXPECT_TRUE(delivery::overdue_receipts(*st_, "gp", window, now + 95 * 3600 * 1000LL)->empty());
    auto late = delivery::overdue_receipts(*st_, "gp", window, now + 97 * 3600 * 1000LL);
    ASSERT_EQ(late->size(), 1u);
    delivery::receipt_alerts alerts;
    EXPECT_EQ(alerts.fresh(*late).size(), 1u);
    EXPECT_TRUE(alerts.fresh(*late).empty()) << "one alert per delivery";
    delivery_update ack;
    ack.delivery_id = (*c)[0].id;
    ack.state = delivery_state::acknowledged;
    ack.actor = "receipt";
    update(ack);
    EXPECT_TRUE(delivery::overdue_receipts(*st_, "gp", window, now + 97 * 3600 * 1000LL)->empty());
}

TEST_P(store_test, an_attempt_is_counted_at_its_claim_and_a_crash_loop_ends_dead) {
    submit(ev("crash"));
    const int max_attempts = 3;
    for (int i = 1; i <= max_attempts; ++i) {
        auto c = st_->claim_due("gp", core::now_ms(), 10, max_attempts);
        ASSERT_EQ(c->size(), 1u) << "claim " << i;
        EXPECT_EQ((*c)[0].attempts, i) << "the attempt is durable before any plugin sees it";
        EXPECT_EQ((*c)[0].state, delivery_state::in_flight);
        open();  // the plugin killed the process: no completion is ever written
        ASSERT_EQ(*st_->recover_in_flight(), 1u);
    }
    auto last = st_->claim_due("gp", core::now_ms(), 10, max_attempts);
    ASSERT_EQ(last->size(), 1u);
    EXPECT_EQ((*last)[0].state, delivery_state::dead) << "not handed to the plugin a 4th time";
    EXPECT_EQ((*last)[0].reason, "the process died during 3 attempts");
    auto row = st_->get_delivery((*last)[0].id);
    EXPECT_EQ((*row)->state, delivery_state::dead);
    EXPECT_EQ((*row)->reason, "the process died during 3 attempts");
    EXPECT_TRUE(st_->claim_due("gp", core::now_ms(), 10, max_attempts)->empty());
    // An operator retry renews the budget: the delivery is tried again.
    delivery_update retry;
    retry.delivery_id = (*last)[0].id;
    retry.state = delivery_state::pending;
    retry.actor = "operator:test";
    retry.renew_attempts = true;
    update(retry);
    auto again = st_->claim_due("gp", core::now_ms(), 10, max_attempts);
    ASSERT_EQ(again->size(), 1u);
    EXPECT_EQ((*again)[0].state, delivery_state::in_flight);
    EXPECT_EQ((*again)[0].attempts, 4);
}

// The attempt in flight is kept in its delivery row (schema 5): it must still read as one open
// attempt, end as one row, survive an operator's hold as open, and a crash as 'died'; an open
// attempts row written before the migration must be recovered the same way, once.
TEST_P(store_test, an_open_attempt_reads_back_once_and_ends_as_one_row) {
    submit(ev("a1", "p1"));
    submit(ev("a2", "p2"));
    submit(ev("a3", "p3"));
    auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 3u);
    std::int64_t done_id = (*c)[0].id, held_id = (*c)[1].id, crash_id = (*c)[2].id;
    for (auto id : {done_id, held_id, crash_id}) {
        auto a = st_->list_attempts(id);
        ASSERT_TRUE(a);
        ASSERT_EQ(a->size(), 1u);
        EXPECT_EQ((*a)[0].n, 1);
        EXPECT_EQ((*a)[0].outcome, "open");
        EXPECT_GT((*a)[0].started_ms, 0) << "started when claimed";
    }
    std::int64_t started = (*st_->list_attempts(done_id))[0].started_ms;
    update({done_id, delivery_state::failed, "503", "", core::now_ms() + 60000, 1});
    auto a = st_->list_attempts(done_id);
    ASSERT_EQ(a->size(), 1u);
    EXPECT_EQ((*a)[0].outcome, "failed");
    EXPECT_EQ((*a)[0].reason, "503");
    EXPECT_EQ((*a)[0].started_ms, started);
    EXPECT_GE((*a)[0].ended_ms, started);
    delivery_update hold;
    hold.delivery_id = held_id;
    hold.state = delivery_state::held;
    hold.actor = "operator:test";
    update(hold);
    a = st_->list_attempts(held_id);
    ASSERT_EQ(a->size(), 1u);
    EXPECT_EQ((*a)[0].outcome, "open") << "held in flight: the attempt has not ended";
    // A delivery in flight when the store was written by schema 4: an open attempts row and no
    // start in the delivery row.
    submit(ev("a4", "p4"));
    auto old = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(old->size(), 1u);
    std::int64_t old_id = (*old)[0].id;
    st_.reset();
    raw_exec("UPDATE deliveries SET attempt_started_ms = 0 WHERE id = " + std::to_string(old_id) +
             "; INSERT INTO attempts(delivery_id, n, started_ms, ended_ms, state, reason, "
             "outcome) VALUES(" +
             std::to_string(old_id) + ", 1, 1000, 0, 1, '', 'open')");
    open();
    EXPECT_EQ((*st_->list_attempts(old_id))[0].outcome, "open");
    ASSERT_EQ(*st_->recover_in_flight(), 2u);
    for (auto id : {crash_id, old_id}) {
        a = st_->list_attempts(id);
        ASSERT_EQ(a->size(), 1u) << id;
        EXPECT_EQ((*a)[0].outcome, "died");
        EXPECT_EQ((*st_->get_delivery(id))->state, delivery_state::pending);
    }
    EXPECT_EQ((*st_->list_attempts(old_id))[0].started_ms, 1000);
    EXPECT_EQ(st_->list_attempts(held_id)->size(), 1u);
    EXPECT_EQ(raw_count("SELECT COUNT(*) FROM attempts"), 4);
}

TEST_P(store_test, a_handed_back_attempt_is_not_counted) {
    submit(ev("back"));
    auto c = st_->claim_due("gp", core::now_ms(), 10, 1);
    ASSERT_EQ(c->size(), 1u);
    delivery_update u;
    u.delivery_id = (*c)[0].id;
    u.state = delivery_state::pending;
    u.hand_back = true;
    update(u);
    EXPECT_EQ((*st_->get_delivery(u.delivery_id))->attempts, 0);
    auto again = st_->claim_due("gp", core::now_ms(), 10, 1);
    ASSERT_EQ(again->size(), 1u);
    EXPECT_EQ((*again)[0].state, delivery_state::in_flight) << "max_attempts 1 still allows one";
}

TEST_P(store_test, a_transition_outside_the_table_is_refused_and_audited) {
    submit(ev("tr"));
    auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    std::int64_t id = (*c)[0].id;
    delivery_update ack;  // a receipt for something not delivered yet
    ack.delivery_id = id;
    ack.state = delivery_state::acknowledged;
    ack.actor = "receipt";
    update(ack);
    EXPECT_EQ((*st_->get_delivery(id))->state, delivery_state::in_flight);
    auto audit = st_->list_audit("delivery:" + std::to_string(id), 100);
    ASSERT_TRUE(audit);
    ASSERT_FALSE(audit->empty());
    EXPECT_EQ(audit->back().action, "delivery.transition_refused");
    EXPECT_EQ(audit->back().detail, "in_flight -> acknowledged");
    for (const auto& a : *audit) EXPECT_EQ(a.hash_version, 2) << a.action;  // read, not left 0
    auto newest = st_->list_audit("", 1);
    ASSERT_TRUE(newest && newest->size() == 1u);
    EXPECT_EQ(newest->front().hash_version, 2);
    EXPECT_FALSE(*st_->verify_audit_chain());
    EXPECT_FALSE(transition_allowed(delivery_state::held, delivery_state::in_flight));
    EXPECT_TRUE(transition_allowed(delivery_state::dead, delivery_state::delivered));
}

TEST_P(store_test, states_are_stored_as_fixed_codes_and_an_unknown_code_is_an_error) {
    EXPECT_EQ(code(delivery_state::pending), 0);
    EXPECT_EQ(code(delivery_state::dead), 5);
    EXPECT_EQ(code(delivery_state::held), 7);
    for (auto st : all_delivery_states) {
        EXPECT_EQ(from_code(code(st)), st);
        EXPECT_EQ(parse_delivery_state(to_string(st)), st);
    }
    submit(ev("code"));
    st_->flush();
    raw_exec("UPDATE deliveries SET state = 42");
    auto got = st_->get_delivery(1);
    EXPECT_FALSE(got) << "a read error, not a throw and not a made-up state";
    auto listed = st_->list_deliveries({});
    EXPECT_FALSE(listed);
    // The read connection still works afterwards.
    EXPECT_TRUE(st_->list_errors(10));
}

TEST_P(store_test, a_bad_job_in_a_group_commit_fails_alone) {
    // Two submits with the same event id in one batch: the second violates UNIQUE(id) and
    // rolls back to its savepoint; the first and a third one commit.
    auto a = ev("sp-a"), b = ev("sp-b"), c = ev("sp-c");
    b.id = a.id;
    std::string ida = a.id, idc = c.id;
    std::promise<boost::system::error_code> pa, pb, pc;
    st_->submit(std::move(a),
                [&](boost::system::error_code ec, submit_outcome) { pa.set_value(ec); });
    st_->submit(std::move(b),
                [&](boost::system::error_code ec, submit_outcome) { pb.set_value(ec); });
    st_->submit(std::move(c),
                [&](boost::system::error_code ec, submit_outcome) { pc.set_value(ec); });
    EXPECT_FALSE(pa.get_future().get());
    EXPECT_TRUE(pb.get_future().get()) << "the bad job reports its own error";
    EXPECT_FALSE(pc.get_future().get());
    EXPECT_TRUE(*st_->get_event(ida));
    EXPECT_TRUE(*st_->get_event(idc));
    auto ds = st_->list_deliveries({});
    ASSERT_TRUE(ds);
    EXPECT_EQ(ds->size(), 2u) << "nothing of the bad job is left";
    EXPECT_FALSE(*st_->verify_audit_chain()) << "the rolled-back job left no hole in the chain";
}

TEST_P(store_test, retention_keeps_a_blob_that_a_submit_in_progress_names) {
    std::string bytes = "%PDF-1.4 shared bytes";
    std::string sha = core::sha256_hex(bytes);
    auto with_blob = [&](const std::string& key) {
        auto e = ev(key, key);
        attachment_input a;
        a.meta = {"a1", "x.pdf", "application/pdf", sha, bytes.size()};
        a.bytes = bytes;
        e.attachments.push_back(a);
        return e;
    };
    submit(with_blob("old"));
    auto c = st_->claim_due("gp", core::now_ms(), 10, 5);
    ASSERT_EQ(c->size(), 1u);
    update({(*c)[0].id, delivery_state::delivered, "", "x", 0, 1});
    if (!pg()) {
        ASSERT_TRUE(fs::exists(st_->blob_path(sha)));  // PostgreSQL: bytes in the table
    }
    // Many rounds of a submit naming the same bytes racing a prune of the only other user.
    for (int round = 0; round < 20; ++round) {
        auto e = with_blob("new" + std::to_string(round));
        std::string id = e.id;
        std::promise<void> stored;
        std::thread t([&] {
            st_->submit(std::move(e),
                        [&](boost::system::error_code, submit_outcome) { stored.set_value(); });
        });
        auto n = st_->prune(core::now_ms() + 1000);
        ASSERT_TRUE(n);
        t.join();
        stored.get_future().wait();
        auto got = st_->get_event(id);
        ASSERT_TRUE(got && *got);
        std::uint8_t head[8];
        auto back = st_->read_attachment(sha, 0, head, sizeof(head));
        ASSERT_TRUE(back && *back == sizeof(head))
            << "round " << round << ": a stored event lost its blob";
        auto d = st_->list_deliveries({});
        for (const auto& r : *d) {
            if (r.state != delivery_state::pending) continue;
            auto cl = st_->claim_due("gp", core::now_ms(), 10, 5);
            for (const auto& x : *cl) update({x.id, delivery_state::delivered, "", "x", 0, 1});
        }
    }
}

INSTANTIATE_TEST_SUITE_P(backend, store_test, ::testing::Values(std::string(SAMBAND_STORE_BACKEND)),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace samband::store
