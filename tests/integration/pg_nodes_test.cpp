// Two samband daemons on one private PostgreSQL (issue 16): a node killed mid-flight loses
// nothing, a node stopped past its lease cannot complete, a database restart under load loses
// nothing. One ctest for the binary: the server is started once.
#include "harness.hpp"

#include <samband_test/pg_server.hpp>
#include <samband_test/tools.hpp>

#include <map>
#include <set>
#include <thread>

namespace samband::test {
namespace {

samband::testing::pg_server& server() {
    static samband::testing::pg_server s;
    return s;
}

// Runs one SQL statement through psql (the server's own client); its output, trimmed.
std::string psql(const std::string& db, const std::string& sql) {
    auto [rc, out] = run_command(samband::testing::pg_bindir() + "/psql -X -A -t -h 127.0.0.1 -p " +
                                 std::to_string(server().port()) + " -U samband -d " + db +
                                 " -c \"" + sql + "\" 2>&1");
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return rc == 0 ? out : "error: " + out;
}
std::int64_t psql_count(const std::string& db, const std::string& sql) {
    std::string out = psql(db, sql);
    try {
        return std::stoll(out);
    } catch (...) {
        return -1;
    }
}

std::string event(int i) {
    std::string e = read_file(fs::path(source_dir()) / "config/demo/events/02-kari-start.json");
    std::string key = "\"gerica:start-1001\"";
    e.replace(e.find(key), key.size(), "\"pg-nodes-" + std::to_string(i) + "\"");
    return e;
}

// The fixture sink's records: one JSON line per completed attempt.
struct record {
    std::string delivery_id, event_id, external_id, outcome;
};
std::vector<record> records(const fs::path& file) {
    std::vector<record> out;
    for_each_json_line(file, [&](const rapidjson::Document& d) {
        out.push_back({d["delivery_id"].GetString(), d["event_id"].GetString(),
                       d["external_id"].GetString(), d["outcome"].GetString()});
    });
    return out;
}

// One node: its own folder and config; the database, the record file and the sink's control file
// are shared. Only node a has the file source.
struct node {
    node(const std::string& name, const fs::path& root, const std::string& db, bool source,
         int lease_s, int attempt_timeout_ms, const std::string& inbox = "inbox")
        : dir(root / name) {
        fs::create_directories(dir);
        write_file(dir / "pg.conninfo", server().conninfo(db) + "\n");
        std::string src = source ? R"("epj": {"plugin": "file", "config": {"inbox": ")" + inbox +
                                       R"(", "poll_ms": 20}},)"
                                 : "";
        write_file(dir / "samband.json", R"({
  "node": {"name": ")" + name + R"("},
  "store": {"kind": "postgresql", "path": "var/cache", "conninfo_secret": "pg",
            "lease_s": )" + std::to_string(lease_s) +
                                             R"(},
  "secrets": {"pg": {"file": "pg.conninfo"}},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {)" + src + R"(
    "gp": {"plugin": "fixture-sink", "config": {"record_file": ")" +
                                             (root / "gp.jsonl").string() +
                                             R"(", "control_file": ")" +
                                             (root / "control.json").string() + R"("},
           "policy": {"attempt_timeout_ms": )" +
                                             std::to_string(attempt_timeout_ms) + R"(,
                      "backoff_base_ms": 50, "backoff_max_ms": 200, "max_attempts": 20}}
  },
  "routes": [{"name": "to-gp", "match": {"type": "rph.treatment.*"}, "to": ["gp"]}]
})");
        proc = std::make_unique<daemon_process>(dir / "samband.json", dir);
    }
    fs::path dir;
    std::unique_ptr<daemon_process> proc;
};

class pg_nodes : public ::testing::Test {
protected:
    void SetUp() override {
        SAMBAND_REQUIRE_TOOL(samband::testing::pg_bindir() + "/initdb");
        db_ = "t" + std::to_string(++counter_);
        ASSERT_TRUE(server().create_database(db_)) << server().log();
    }
    std::int64_t count(const std::string& sql) { return psql_count(db_, sql); }
    // Waits until n events are stored and n deliveries delivered.
    bool all_delivered(int n, std::chrono::seconds limit) {
        return wait_for(
            [&] {
                return count("SELECT COUNT(*) FROM events") == n &&
                       count("SELECT COUNT(*) FROM deliveries WHERE state = 2") == n;
            },
            limit);
    }
    std::string db_;
    static inline int counter_ = 0;
};

TEST_F(pg_nodes, a_node_killed_mid_flight_loses_nothing_and_repeats_are_recognisable) {
    temp_dir tmp;
    const fs::path root = tmp.path();
    write_file(root / "control.json", R"({"mode": "slow", "delay_ms": 150})");
    node a("a", root, db_, true, 3, 2000), b("b", root, db_, false, 3, 2000);
    ASSERT_TRUE(a.proc->start()) << a.proc->log();
    ASSERT_TRUE(b.proc->start()) << b.proc->log();
    const int n = 20;  // one patient: delivered one at a time, in order, whichever node claims
    for (int i = 0; i < n; ++i)
        drop_file(a.dir / "inbox", std::to_string(100 + i) + ".json", event(i));
    // Every event is committed (the inbox is empty) and deliveries are under way.
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM events") == n; },
                         std::chrono::seconds(30)))
        << a.proc->log();
    // Whichever node holds a delivery in flight once two are delivered is killed: which node
    // claims is up to SKIP LOCKED, so waiting for one chosen node could wait for ever.
    std::string holder;
    std::int64_t held = -1;
    ASSERT_TRUE(wait_for(
        [&] {
            if (count("SELECT COUNT(*) FROM deliveries WHERE state = 2") < 2) return false;
            std::string row = psql(db_,
                                   "SELECT id || ' ' || lease_node FROM deliveries WHERE state = "
                                   "1 LIMIT 1");
            auto sp = row.find(' ');
            if (sp == std::string::npos) return false;
            holder = row.substr(sp + 1);
            if (holder != "a" && holder != "b") return false;
            held = std::stoll(row.substr(0, sp));
            return true;
        },
        std::chrono::seconds(30)))
        << "no delivery was in flight after two were delivered: "
        << psql(db_, "SELECT id, state, lease_node FROM deliveries") << "\n"
        << a.proc->log();
    node& killed = holder == "a" ? a : b;
    node& survivor = holder == "a" ? b : a;
    const std::string survivor_name = holder == "a" ? "b" : "a";
    killed.proc->kill9();
    ASSERT_TRUE(
        wait_for([&] { return count("SELECT COUNT(*) FROM deliveries WHERE state = 2") == n; },
                 std::chrono::seconds(60)))
        << "not all delivered after node " << holder << " died: "
        << psql(db_, "SELECT id, state, lease_node, reason FROM deliveries WHERE state <> 2")
        << "\n"
        << survivor.proc->log();
    // Every event reached the sink; a repeat carries the same delivery and external id.
    auto recs = records(root / "gp.jsonl");
    std::map<std::string, std::set<std::string>> ext_by_delivery;
    std::set<std::string> events;
    for (const auto& r : recs) {
        if (r.outcome != "ok") continue;
        ext_by_delivery[r.delivery_id].insert(r.external_id);
        events.insert(r.event_id);
    }
    EXPECT_EQ(events.size(), static_cast<std::size_t>(n)) << "an event was lost";
    for (const auto& [id, exts] : ext_by_delivery)
        EXPECT_EQ(exts.size(), 1u) << "delivery " << id << " was repeated under another id";
    // The killed node's delivery in flight was taken over by the survivor after the lease.
    EXPECT_GE(count("SELECT COUNT(*) FROM audit WHERE action = 'delivery.lease_taken_over' AND "
                    "subject = 'delivery:" +
                    std::to_string(held) + "'"),
              1);
    EXPECT_EQ(count("SELECT COUNT(*) FROM deliveries WHERE state = 2 AND lease_node = '" +
                    survivor_name + "' AND id = " + std::to_string(held)),
              1);
    EXPECT_EQ(survivor.proc->stop(), 0);
}

TEST_F(pg_nodes, a_node_stopped_past_its_lease_cannot_complete_what_the_other_took_over) {
    temp_dir tmp;
    const fs::path root = tmp.path();
    write_file(root / "control.json", R"({"mode": "slow", "delay_ms": 1000})");
    node a("a", root, db_, true, 2, 1800), b("b", root, db_, false, 2, 1800);
    ASSERT_TRUE(a.proc->start()) << a.proc->log();
    ASSERT_TRUE(b.proc->start()) << b.proc->log();
    drop_file(a.dir / "inbox", "1.json", event(1));
    std::string holder;
    ASSERT_TRUE(wait_for(
        [&] {
            holder = psql(db_, "SELECT lease_node FROM deliveries WHERE state = 1");
            return holder == "a" || holder == "b";
        },
        std::chrono::seconds(30)))
        << a.proc->log();
    node& stalled = holder == "a" ? a : b;
    node& other = holder == "a" ? b : a;
    stalled.proc->signal(SIGSTOP);
    // Past the lease the other node takes it over and delivers it. Under a new fencing token:
    // 2, or more when a loaded machine let the other node's first attempt (a 1 s sink against a
    // 1.8 s attempt timeout) time out and retry.
    const std::string taker = holder == "a" ? "b" : "a";
    bool taken = wait_for(
        [&] {
            return count(
                       "SELECT COUNT(*) FROM deliveries WHERE state = 2 AND fence >= 2 AND "
                       "lease_node = '" +
                       taker + "'") == 1;
        },
        std::chrono::seconds(20));
    // The delivered row as the late completion must leave it.
    const std::string row_sql = "SELECT state || ' ' || fence || ' ' || lease_node FROM deliveries";
    const std::string delivered = psql(db_, row_sql);
    stalled.proc->signal(SIGCONT);
    ASSERT_TRUE(taken) << psql(db_, "SELECT state, fence, lease_node, attempts FROM deliveries")
                       << "\n"
                       << other.proc->log();
    // The stalled node wakes up and completes its attempt: refused and audited.
    ASSERT_TRUE(wait_for(
        [&] {
            return count(
                       "SELECT COUNT(*) FROM audit WHERE action = "
                       "'delivery.late_completion_refused' AND detail LIKE 'late completion "
                       "from node " +
                       holder + " refused%'") >= 1;
        },
        std::chrono::seconds(20)))
        << stalled.proc->log();
    EXPECT_EQ(psql(db_, row_sql), delivered) << "the late completion changed the delivery";
    EXPECT_EQ(a.proc->stop(), 0);
    EXPECT_EQ(b.proc->stop(), 0);
}

// A node frozen inside a write transaction (stopped, paused, its host swapping) holds the audit
// lock that every node's write transaction takes: the server ends its writer's session once it
// has sat idle in that transaction longer than the lease, so the others go on while it is still
// frozen. Deterministic: the test holds the lock while node a's writer starts a transaction, so
// a's writer is stopped just after it got the lock, inside the transaction (CI once stopped a
// node there by chance, and the other node then waited for it for as long as it stayed stopped).
TEST_F(pg_nodes, a_node_frozen_inside_a_write_transaction_does_not_hold_up_the_others) {
    temp_dir tmp;
    const fs::path root = tmp.path();
    write_file(root / "control.json", R"({"mode": "ok"})");
    node a("a", root, db_, true, 2, 1800), b("b", root, db_, false, 2, 1800);
    ASSERT_TRUE(a.proc->start()) << a.proc->log();
    ASSERT_TRUE(b.proc->start()) << b.proc->log();
    const std::string audit_lock = "1396854018";  // kAuditLock, 0x53424d02
    const std::string writer_a =
        "FROM pg_stat_activity WHERE application_name = 'samband-writer:a'";
    ASSERT_EQ(count("SELECT COUNT(*) " + writer_a), 1) << "node a's writer is not named";
    // The test takes the audit lock for 3 s; node a's next write transaction waits for it (a
    // jthread: an ASSERT returning early still joins it).
    std::jthread holder(
        [&] { psql(db_, "SELECT pg_advisory_lock(" + audit_lock + "), pg_sleep(3)"); });
    ASSERT_TRUE(wait_for(
        [&] {
            return count(
                       "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                       "objid = " +
                       audit_lock + " AND granted") == 1;
        },
        std::chrono::seconds(5)));
    drop_file(a.dir / "inbox", "1.json", event(1));
    bool waiting =
        wait_for([&] { return psql(db_, "SELECT wait_event_type " + writer_a) == "Lock"; },
                 std::chrono::seconds(3));
    if (waiting) a.proc->signal(SIGSTOP);
    holder.join();  // the test's lock is gone: a's writer gets it, and its client is stopped
    ASSERT_TRUE(waiting) << "node a's writer never waited for the audit lock: "
                         << psql(db_, "SELECT state, wait_event_type " + writer_a);
    ASSERT_TRUE(
        wait_for([&] { return psql(db_, "SELECT state " + writer_a) == "idle in transaction"; },
                 std::chrono::seconds(5)))
        << psql(db_, "SELECT state, wait_event_type " + writer_a);
    // While a is still stopped, the audit lock comes free (its session ended after the 2 s
    // lease), so another transaction that needs it, a node's or the test's, gets it.
    const auto t0 = std::chrono::steady_clock::now();
    std::string got =
        psql(db_, "SET statement_timeout = 10000; BEGIN; SELECT pg_advisory_xact_lock(" +
                      audit_lock + "); COMMIT;");
    const auto waited = std::chrono::steady_clock::now() - t0;
    const bool gone = wait_for([&] { return count("SELECT COUNT(*) " + writer_a) == 0; },
                               std::chrono::seconds(2));
    a.proc->signal(SIGCONT);
    EXPECT_EQ(got.find("error"), std::string::npos)
        << "the audit lock stayed taken by the frozen node: " << got;
    EXPECT_LT(waited, std::chrono::seconds(8));
    EXPECT_TRUE(gone) << "the frozen node's writer session was not ended";
    // Awake, node a connects again; its rolled-back ingest runs again (the file stayed in the
    // inbox): the event is stored and delivered once.
    ASSERT_TRUE(all_delivered(1, std::chrono::seconds(30)))
        << psql(db_, "SELECT id, state, lease_node, reason FROM deliveries") << "\n"
        << a.proc->log();
    std::size_t ok = 0;
    for (const auto& r : records(root / "gp.jsonl")) ok += r.outcome == "ok";
    EXPECT_EQ(ok, 1u);
    EXPECT_EQ(a.proc->stop(), 0);
    EXPECT_EQ(b.proc->stop(), 0);
}

TEST_F(pg_nodes, the_database_restarting_under_load_loses_nothing) {
    temp_dir tmp;
    const fs::path root = tmp.path();
    write_file(root / "control.json", R"({"mode": "ok"})");
    node a("a", root, db_, true, 5, 2000), b("b", root, db_, false, 5, 2000);
    ASSERT_TRUE(a.proc->start()) << a.proc->log();
    ASSERT_TRUE(b.proc->start()) << b.proc->log();
    const int n = 60;
    for (int i = 0; i < n / 2; ++i)
        drop_file(a.dir / "inbox", std::to_string(1000 + i) + ".json", event(i));
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM events") >= 5; },
                         std::chrono::seconds(30)));
    ASSERT_TRUE(server().stop());
    // While it is down, more events arrive: the source keeps them until a commit takes them.
    for (int i = n / 2; i < n; ++i)
        drop_file(a.dir / "inbox", std::to_string(1000 + i) + ".json", event(i));
    ASSERT_TRUE(server().start()) << server().log();
    ASSERT_TRUE(all_delivered(n, std::chrono::seconds(60)))
        << psql(db_, "SELECT state, COUNT(*) FROM deliveries GROUP BY state") << "\n"
        << a.proc->log();
    EXPECT_TRUE(a.proc->running()) << "node a exited";
    EXPECT_TRUE(b.proc->running()) << "node b exited";
    std::set<std::string> events;
    for (const auto& r : records(root / "gp.jsonl"))
        if (r.outcome == "ok") events.insert(r.event_id);
    EXPECT_EQ(events.size(), static_cast<std::size_t>(n));
    EXPECT_EQ(count("SELECT COUNT(*) FROM errors"), 0) << "an event went to the error store";
    EXPECT_EQ(a.proc->stop(), 0);
    EXPECT_EQ(b.proc->stop(), 0);
}

TEST_F(pg_nodes, a_run_once_inbox_runs_on_one_node_and_moves_when_that_node_dies) {
    temp_dir tmp;
    const fs::path root = tmp.path();
    const fs::path inbox = root / "shared-inbox";  // shared storage, seen by both nodes
    fs::create_directories(inbox);
    write_file(root / "control.json", R"({"mode": "ok"})");
    node a("a", root, db_, true, 5, 2000, inbox.string()),
        b("b", root, db_, true, 5, 2000, inbox.string());
    ASSERT_TRUE(a.proc->start()) << a.proc->log();
    ASSERT_TRUE(b.proc->start()) << b.proc->log();
    auto runs = [](node& x) { return x.proc->log().find("holds the source") != std::string::npos; };
    ASSERT_TRUE(wait_for([&] { return runs(a) || runs(b); }, std::chrono::seconds(15)))
        << a.proc->log();
    node& holder = runs(a) ? a : b;
    node& standby = runs(a) ? b : a;
    for (int i = 0; i < 10; ++i) drop_file(inbox, std::to_string(200 + i) + ".json", event(i));
    ASSERT_TRUE(wait_for([&] { return count("SELECT COUNT(*) FROM events") == 10; },
                         std::chrono::seconds(30)))
        << holder.proc->log();
    EXPECT_FALSE(runs(standby)) << "both nodes ran the inbox";
    holder.proc->kill9();
    ASSERT_TRUE(wait_for([&] { return runs(standby); }, std::chrono::seconds(15)))
        << "the source did not move: " << standby.proc->log();
    for (int i = 10; i < 20; ++i) drop_file(inbox, std::to_string(200 + i) + ".json", event(i));
    ASSERT_TRUE(all_delivered(20, std::chrono::seconds(60)))
        << psql(db_, "SELECT state, COUNT(*) FROM deliveries GROUP BY state") << "\n"
        << standby.proc->log();
    EXPECT_EQ(count("SELECT COUNT(*) FROM errors"), 0);
    EXPECT_EQ(standby.proc->stop(), 0);
}

// A run-once source that is also a sink (here the file plugin with an inbox and an outbox; nhn is
// one too) is one plugin instance, started only on the node holding the source's lock: the other
// node never hands it a delivery. (It did: a delivery reached the instance that was never
// started, and the nhn plugin crashed the daemon.)
TEST_F(pg_nodes, a_run_once_source_that_is_also_a_sink_delivers_only_on_the_lock_holder) {
    temp_dir tmp;
    const fs::path root = tmp.path();
    auto make = [&](const std::string& name) {
        fs::path dir = root / name;
        fs::create_directories(dir);
        write_file(dir / "pg.conninfo", server().conninfo(db_) + "\n");
        write_file(dir / "samband.json", R"({
  "node": {"name": ")" + name + R"("},
  "store": {"kind": "postgresql", "path": "var/cache", "conninfo_secret": "pg", "lease_s": 5},
  "secrets": {"pg": {"file": "pg.conninfo"}},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {"io": {"plugin": "file", "config": {"inbox": ")" +
                                             (root / "in").string() + R"(", "outbox": ")" +
                                             (root / "out").string() + R"(", "poll_ms": 20},
                       "policy": {"attempt_timeout_ms": 2000}}},
  "routes": [{"name": "to-io", "match": {"type": "rph.treatment.*"}, "to": ["io"]}]
})");
        return std::make_unique<daemon_process>(dir / "samband.json", dir);
    };
    auto a = make("a");
    auto b = make("b");
    ASSERT_TRUE(a->start()) << a->log();
    ASSERT_TRUE(wait_for([&] { return a->log().find("holds the source") != std::string::npos; },
                         std::chrono::seconds(15)))
        << a->log();
    ASSERT_TRUE(b->start()) << b->log();
    const int n = 20;  // submitted through node b, which does not run "io"
    for (int i = 0; i < n; ++i) {
        auto r = b->post("/api/v1/events", "{\"envelope\":" + event(300 + i) + "}");
        ASSERT_EQ(r.status, 201) << r.body;
    }
    ASSERT_TRUE(
        wait_for([&] { return count("SELECT COUNT(*) FROM deliveries WHERE state = 2") == n; },
                 std::chrono::seconds(30)))
        << psql(db_, "SELECT id, state, lease_node, reason FROM deliveries WHERE state <> 2")
        << "\n"
        << b->log();
    EXPECT_EQ(count("SELECT COUNT(*) FROM deliveries WHERE lease_node <> 'a'"), 0)
        << "node b, without the lock, delivered through its unstarted instance";
    EXPECT_EQ(b->log().find("holds the source"), std::string::npos) << b->log();
    EXPECT_TRUE(b->running()) << b->log();
    std::size_t files = 0;
    for (const auto& e : fs::directory_iterator(root / "out"))
        if (e.path().extension() == ".json") ++files;
    EXPECT_EQ(files, static_cast<std::size_t>(n));
    EXPECT_EQ(b->stop(), 0);
    EXPECT_EQ(a->stop(), 0);
}

}  // namespace
}  // namespace samband::test
