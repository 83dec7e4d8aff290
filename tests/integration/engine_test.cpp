// The delivery engine end to end: a GP register that never answers costs its own destination
// the configured timeout (±10 %), while another destination keeps delivering (issue 10).
#include "harness.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <mutex>

namespace samband::test {
namespace {

using tcp = boost::asio::ip::tcp;

// A Fastlegeregisteret that accepts connections and never answers. It notes when each
// connection came and when the client gave up on it (closed it).
class silent_register {
public:
    silent_register()
        : acceptor_(io_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)) {
        thread_ = std::thread([this] { serve(); });
    }
    ~silent_register() {
        stop_ = true;
        boost::system::error_code ec;
        tcp::socket s(io_);
        s.connect(acceptor_.local_endpoint(), ec);
        thread_.join();
        for (auto& t : readers_) t.join();
    }
    std::string url() const {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) +
               "/v2/flr/Basic";
    }
    // Durations from accept to the client's close, in ms (for connections that were closed).
    std::vector<std::int64_t> held_ms() {
        std::lock_guard lock(mu_);
        return held_;
    }
    int connections() const { return connections_.load(); }

private:
    void serve() {
        while (!stop_) {
            auto sock = std::make_shared<tcp::socket>(io_);
            boost::system::error_code ec;
            acceptor_.accept(*sock, ec);
            if (stop_ || ec) continue;
            ++connections_;
            auto at = std::chrono::steady_clock::now();
            readers_.emplace_back([this, sock, at] {
                char buf[4096];
                boost::system::error_code rec;
                while (!rec) sock->read_some(boost::asio::buffer(buf), rec);  // until closed
                auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - at)
                              .count();
                std::lock_guard lock(mu_);
                if (!stop_) held_.push_back(ms);
            });
        }
    }
    boost::asio::io_context io_;
    tcp::acceptor acceptor_;
    std::atomic<bool> stop_{false};
    std::atomic<int> connections_{0};
    std::thread thread_;
    std::vector<std::thread> readers_;
    std::mutex mu_;
    std::vector<std::int64_t> held_;
};

std::string event(int i) {
    std::string e = read_file(fs::path(source_dir()) / "config/demo/events/02-kari-start.json");
    std::string key = "\"gerica:start-1001\"";
    e.replace(e.find(key), key.size(), "\"engine-test-" + std::to_string(i) + "\"");
    return e;
}

int lines(const fs::path& p, const std::string& needle) {
    std::istringstream in(read_file(p));
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += line.find(needle) != std::string::npos;
    return n;
}

TEST(engine, a_gp_register_that_never_answers_times_out_on_time_while_others_deliver) {
    silent_register flr;
    temp_dir tmp;
    fs::path root = tmp.path();
    const int timeout_ms = 2000;
    write_file(root / "flr-password", "not-a-real-password\n");
    write_file(root / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "secrets": {"flr": {"file": "flr-password"}},
  "gp_directory": {"kind": "fastlegeregisteret", "url": ")" +
                                          flr.url() +
                                          R"(", "username": "samband-test",
                   "password_secret": "flr", "timeout_ms": )" +
                                          std::to_string(timeout_ms) + R"(},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 20}},
    "gp": {"plugin": "fixture-sink", "config": {"record_file": "gp.jsonl"},
           "policy": {"backoff_base_ms": 60000, "backoff_max_ms": 60000}},
    "journal": {"plugin": "fixture-sink", "config": {"record_file": "journal.jsonl"}}
  },
  "routes": [
    {"name": "to-gp", "match": {"type": "rph.treatment.*"}, "to": ["gp"], "recipient": "gp"},
    {"name": "to-journal", "match": {"type": "rph.treatment.*"}, "to": ["journal"]}
  ]
})");
    daemon_process d(root / "samband.json", root);
    ASSERT_TRUE(d.start()) << d.log();

    // Five events, each for the same patient: the GP delivery of the first waits on the
    // register; every journal delivery goes on meanwhile.
    for (int i = 0; i < 5; ++i) drop_file(root / "inbox", std::to_string(i) + ".json", event(i));
    ASSERT_TRUE(wait_for([&] { return flr.connections() >= 1; }, std::chrono::seconds(10)))
        << d.log();
    auto asked = std::chrono::steady_clock::now();
    ASSERT_TRUE(wait_for([&] { return lines(root / "journal.jsonl", "\"outcome\":\"ok\"") == 5; },
                         std::chrono::seconds(10)))
        << d.log();
    auto journal_done = std::chrono::steady_clock::now();
    EXPECT_TRUE(flr.held_ms().empty()) << "the journal waited for the GP register's timeout";
    EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(journal_done - asked).count(),
              timeout_ms)
        << "the journal deliveries waited on the GP lookup";

    // The lookup ends at the configured time, ±10 %, and the GP delivery says why.
    ASSERT_TRUE(wait_for([&] { return !flr.held_ms().empty(); }, std::chrono::seconds(10)))
        << d.log();
    auto held = flr.held_ms().front();
    EXPECT_GE(held, timeout_ms * 9 / 10) << "timed out early";
    EXPECT_LE(held, timeout_ms * 11 / 10) << "timed out late";
    std::string out;
    ASSERT_TRUE(wait_for(
        [&] {
            out = d.cli("deliveries list --json").second;
            return out.find("no answer within 2000 ms") != std::string::npos;
        },
        std::chrono::seconds(5)))
        << out << d.log();
    EXPECT_NE(out.find("\"failed\""), std::string::npos) << "a lookup timeout is retried: " << out;
    EXPECT_EQ(lines(root / "gp.jsonl", "outcome"), 0) << "nothing reached the GP sink";
    EXPECT_EQ(d.stop(), 0) << d.log();
}

// One error model: the API answers by the error's kind (not by searching its text).
TEST(engine, operator_actions_answer_by_error_kind) {
    temp_dir tmp;
    fs::path root = tmp.path();
    write_file(root / "samband.json", R"({
  "store": {"kind": "sqlite", "path": "var/samband.db"},
  "admin": {"listen": "127.0.0.1:0"},
  "plugin_dirs": [")" + plugin_dir() + R"("],
  "schemas_dir": ")" + source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {
    "epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 20}},
    "journal": {"plugin": "fixture-sink", "config": {"record_file": "journal.jsonl"}}
  },
  "routes": [{"name": "to-journal", "match": {"type": "rph.treatment.*"}, "to": ["journal"]}]
})");
    daemon_process d(root / "samband.json", root);
    ASSERT_TRUE(d.start()) << d.log();
    drop_file(root / "inbox", "0.json", event(0));
    ASSERT_TRUE(wait_for(
        [&] {
            return d.get("/api/v1/deliveries/1").body.find("\"delivered\"") != std::string::npos;
        },
        std::chrono::seconds(10)))
        << d.log();
    auto delivered = d.post("/api/v1/deliveries/1/retry", R"({"reason":"again"})");
    EXPECT_EQ(delivered.status, 409) << delivered.body;
    EXPECT_NE(delivered.body.find("\"code\":\"conflict\""), std::string::npos) << delivered.body;
    EXPECT_NE(delivered.body.find("only dead, failed or held"), std::string::npos);
    auto missing = d.post("/api/v1/deliveries/999/retry", R"({"reason":"again"})");
    EXPECT_EQ(missing.status, 404) << missing.body;
    EXPECT_NE(missing.body.find("\"code\":\"not_found\""), std::string::npos) << missing.body;
    auto not_gated = d.post("/api/v1/deliveries/1/override", R"({"reason":"why not"})");
    EXPECT_EQ(not_gated.status, 409) << not_gated.body;
    EXPECT_EQ(d.stop(), 0) << d.log();
}

// Honest reload: a new source starts only after its route exists; settings that need a restart
// are named and keep their values; log.format is applied.
TEST(engine, reload_installs_routes_before_new_sources_and_names_what_needs_a_restart) {
    temp_dir tmp;
    fs::path root = tmp.path();
    auto config = [&](bool second, const std::string& store, const std::string& format) {
        std::string sources =
            R"("epj": {"plugin": "file", "config": {"inbox": "inbox", "poll_ms": 20}},)";
        std::string routes =
            R"({"name": "one", "match": {"type": "rph.*", "source": "epj"}, "to": ["journal"]})";
        if (second) {
            sources +=
                R"("epj2": {"plugin": "file", "config": {"inbox": "inbox2", "poll_ms": 10}},)";
            routes +=
                R"(, {"name": "two", "match": {"type": "rph.*", "source": "epj2"}, "to": ["journal"]})";
        }
        return R"({
  "store": {"kind": "sqlite", "path": ")" +
               store + R"("},
  "admin": {"listen": "127.0.0.1:0"},
  "log": {"format": ")" +
               format + R"("},
  "plugin_dirs": [")" +
               plugin_dir() + R"("],
  "schemas_dir": ")" +
               source_dir() + R"(/config/schemas",
  "identifiers": {"allow_synthetic": true},
  "endpoints": {)" +
               sources + R"(
    "journal": {"plugin": "fixture-sink", "config": {"record_file": "journal.jsonl"}}
  },
  "routes": [)" +
               routes + R"(]
})";
    };
    write_file(root / "samband.json", config(false, "var/samband.db", "logfmt"));
    // The new source's first event is already waiting when the reload starts it.
    drop_file(root / "inbox2", "0.json", event(0));
    daemon_process d(root / "samband.json", root);
    ASSERT_TRUE(d.start()) << d.log();
    write_file(root / "samband.json", config(true, "var/other.db", "json"));
    d.signal(SIGHUP);
    ASSERT_TRUE(wait_for([&] { return d.log().find("reload applied") != std::string::npos; },
                         std::chrono::seconds(10)))
        << d.log();
    ASSERT_TRUE(wait_for([&] { return lines(root / "journal.jsonl", "\"outcome\":\"ok\"") == 1; },
                         std::chrono::seconds(10)))
        << "the new source's first event was not routed\n"
        << d.log();
    std::string log = d.log();
    EXPECT_EQ(log.find("no route matches"), std::string::npos) << log;
    EXPECT_NE(log.find("/store/path"), std::string::npos) << "the refused setting is named\n"
                                                          << log;
    EXPECT_FALSE(fs::exists(root / "var/other.db")) << "the store does not move on reload";
    EXPECT_NE(log.find("{\"ts\":"), std::string::npos) << "log.format json was not applied\n"
                                                       << log;
    EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace samband::test
