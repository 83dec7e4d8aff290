// Integration-test harness: starts the real samband daemon on 127.0.0.1:0 and talks to it.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <gtest/gtest.h>

#include <samband_test/pg_server.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace samband::test {

namespace fs = std::filesystem;

inline std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : fallback;
}

// Where the build put things (compiled in; the environment may override for manual runs).
inline std::string plugin_dir() {
    return env_or("SAMBAND_PLUGIN_DIR", SAMBAND_PLUGIN_DIR_DEFAULT);
}
inline std::string source_dir() {
    return env_or("SAMBAND_SOURCE_DIR", SAMBAND_SOURCE_DIR_DEFAULT);
}

// The opening of a samband.json most tests share, up to and including the comma after
// "schemas_dir": node `node_name`, a SQLite store under var/, the admin API on a free loopback
// port, info logs, the built plugins, synthetic identifiers allowed, the repository's schemas.
// The test goes on with its "secrets", "endpoints" and "routes" and the closing brace.
inline std::string config_head(const std::string& node_name) {
    return R"({
  "node": {"name": ")" +
           node_name + R"("},
  "store": {"kind": "sqlite", "path": "var/samband.db", "retention_days": 30},
  "admin": {"listen": "127.0.0.1:0"},
  "log": {"level": "info"},
  "plugin_dirs": [")" +
           plugin_dir() + R"("],
  "identifiers": {"allow_synthetic": true},
  "schemas_dir": ")" +
           source_dir() + R"(/config/schemas",
)";
}

inline std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void write_file(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << text;
}

// Calls `fn` with each JSON object of the JSON-lines file `p`, in order. A line that is not a
// JSON object (a torn last line after SIGKILL, a log line) is skipped.
inline void for_each_json_line(const fs::path& p,
                               const std::function<void(const rapidjson::Document&)>& fn) {
    std::istringstream in(read_file(p));
    std::string line;
    while (std::getline(in, line)) {
        rapidjson::Document d;
        d.Parse(line.c_str());
        if (!d.HasParseError() && d.IsObject()) fn(d);
    }
}

// The bytes of a file in `dir` whose name ends in `ext` and whose bytes hold `marker` (any such
// file when it is empty); "" while there is none (a sink's outbox, polled with wait_for).
inline std::string file_in(const fs::path& dir, const std::string& ext,
                           const std::string& marker = "") {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (e.path().extension() != ext) continue;
        std::string bytes = read_file(e.path());
        if (bytes.find(marker) != std::string::npos) return bytes;
    }
    return {};
}

// Writes `text` as `dir/name` by the inbox convention: write "name.tmp", then rename.
inline void drop_file(const fs::path& dir, const std::string& name, const std::string& text) {
    fs::create_directories(dir);
    write_file(dir / (name + ".tmp"), text);
    fs::rename(dir / (name + ".tmp"), dir / name);
}

// Polls `pred` every 20 ms until it holds or `timeout` passes.
inline bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        if (pred()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return pred();
}

struct http_response {
    int status = 0;
    std::string body;
};

// One HTTP/1.1 request to host:port. status 0 = could not connect. (harness.cpp: Beast stays out
// of the tests' translation units, which build faster.)
http_response http(const std::string& hostport, const std::string& method,
                   const std::string& target, const std::string& body = {},
                   const std::string& token = {});

// Runs a command, returns its exit status and stdout+stderr.
inline std::pair<int, std::string> run_command(const std::string& cmd) {
    std::string out;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return {-1, {}};
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = pclose(p);
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

// The store the daemons run on: SQLite (the default), or with SAMBAND_TEST_STORE=postgresql a
// private PostgreSQL 15 on 127.0.0.1, with a fresh database per daemon folder so tests stay
// independent. Any other value is a mistake.
inline bool on_postgresql() {
    const std::string kind = env_or("SAMBAND_TEST_STORE", "sqlite");
    if (kind != "sqlite" && kind != "postgresql") {
        ADD_FAILURE() << "SAMBAND_TEST_STORE=" << kind << ": give sqlite or postgresql";
        return false;
    }
    return kind == "postgresql";
}

// A test of the SQLite store's own files (its attachment folder, say) has no PostgreSQL run:
// it skips there, saying why.
#define SAMBAND_SQLITE_ONLY(why)                                                        \
    do {                                                                                \
        if (::samband::test::on_postgresql()) GTEST_SKIP() << "SQLite only: " << (why); \
    } while (0)

// The PostgreSQL server of the test run: the one the ctest fixture pg.server.start started (its
// port in the file SAMBAND_TEST_PG_STATE names), or else one this process starts on first use
// and stops when it ends. Port 0, with a test failure naming why, when there is none.
inline int test_pg_port() {
    struct server {
        int port = 0;
        std::string why;
        std::unique_ptr<samband::testing::pg_server> own;
    };
    static server s = [] {
        server r;
        const std::string state = env_or("SAMBAND_TEST_PG_STATE", "");
        if (!state.empty()) {
            std::istringstream in(read_file(state));
            in >> r.port;
            if (r.port <= 0)
                r.why = "no server in " + state + " (ctest's fixture pg.server.start starts it)";
            return r;
        }
        try {
            r.own = std::make_unique<samband::testing::pg_server>();
            r.port = r.own->port();
        } catch (const std::exception& e) {
            r.why = e.what();
        }
        return r;
    }();
    if (s.port <= 0) ADD_FAILURE() << "no test PostgreSQL server: " << s.why;
    return s.port;
}

// Runs psql (the server's own client) on database `db` with `args` (-c or -f): its exit status
// and output (unaligned, tuples only).
inline std::pair<int, std::string> test_psql(const std::string& db, const std::string& args) {
    const int port = test_pg_port();
    if (port <= 0) return {-1, "no test PostgreSQL server"};
    return run_command(samband::testing::pg_bindir() +
                       "/psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p " +
                       std::to_string(port) + " -U samband -d " + db + " " + args);
}

// The PostgreSQL database of the daemon folder `workdir` (created on first use and named in
// `workdir/harness.pgdb`, so a restarted daemon finds its store again); empty on failure. The
// databases this process created are dropped when it ends (kept with SAMBAND_KEEP_TMP).
inline std::string test_pg_database(const fs::path& workdir) {
    const fs::path named = workdir / "harness.pgdb";
    std::string db = read_file(named);
    while (!db.empty() && (db.back() == '\n' || db.back() == '\r')) db.pop_back();
    if (!db.empty()) return db;
    struct created {
        std::vector<std::string> names;
        ~created() {
            if (std::getenv("SAMBAND_KEEP_TMP")) return;
            for (const auto& n : names)
                test_psql("postgres", "-c 'DROP DATABASE IF EXISTS " + n + " WITH (FORCE)'");
        }
    };
    static created databases;
    db = "it_" + std::to_string(::getpid()) + "_" + std::to_string(databases.names.size() + 1);
    auto [rc, out] = test_psql("postgres", "-c 'CREATE DATABASE " + db + "'");
    if (rc != 0) {
        ADD_FAILURE() << "cannot create the test database " << db << ": " << out;
        return {};
    }
    databases.names.push_back(db);
    write_file(named, db + "\n");
    return db;
}

// The libpq connection string of a test database.
inline std::string test_pg_conninfo(const std::string& db) {
    return "host=127.0.0.1 port=" + std::to_string(test_pg_port()) + " user=samband dbname=" + db +
           " connect_timeout=5";
}

// The next daemon started on `workdir` gets a fresh store: on PostgreSQL a new database (a test
// that wants a fresh SQLite store removes its file).
inline void fresh_pg_store(const fs::path& workdir) {
    std::error_code ec;
    fs::remove(workdir / "harness.pgdb", ec);
}

// Runs SQL statements on the PostgreSQL store of the daemon folder `workdir` (psql): its exit
// status and output.
inline std::pair<int, std::string> test_pg_sql(const fs::path& workdir, const std::string& sql) {
    const std::string db = test_pg_database(workdir);
    if (db.empty()) return {-1, "no test PostgreSQL database"};
    const fs::path file = workdir / "harness.sql";
    write_file(file, sql);
    return test_psql(db, "-f " + file.string());
}

// Adds a token for `name` with `roles` ("operator" or "viewer,auditor") to the daemon's token
// file `file` with `samband token add`; returns the token (empty, with a test failure, if that
// failed).
inline std::string add_token(const fs::path& file, const std::string& name,
                             const std::string& roles) {
    std::string bin = env_or("SAMBAND_BIN", SAMBAND_BIN_DEFAULT);
    auto [code, out] = run_command("(" + bin + " token add " + name + " --role " + roles +
                                   " --file " + file.string() + " 2>/dev/null)");
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    if (code != 0 || out.size() != 64) {
        ADD_FAILURE() << "samband token add " << name << " failed (" << code << "): " << out;
        return {};
    }
    return out;
}

// The real daemon as a child process.
class daemon_process {
public:
    daemon_process(fs::path config, fs::path workdir)
        : config_(std::move(config)), workdir_(std::move(workdir)) {}
    ~daemon_process() {
        if (pid_ > 0) kill9();
    }

    static std::string binary() { return env_or("SAMBAND_BIN", SAMBAND_BIN_DEFAULT); }

    // Starts `samband run` and waits until it wrote its ready file.
    bool start(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
        if (!prepare_config()) return false;
        fs::path ready = workdir_ / "ready";
        fs::remove(ready);
        std::string log = (workdir_ / "daemon.log").string();
        pid_ = fork();
        if (pid_ == 0) {
            int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
            std::string bin = binary();
            std::string cfg = config_.string(), rf = ready.string();
            execl(bin.c_str(), bin.c_str(), "run", "-c", cfg.c_str(), "--ready-file", rf.c_str(),
                  static_cast<char*>(nullptr));
            std::string msg = "harness: cannot execute " + bin + "\n";
            (void)!::write(2, msg.data(), msg.size());
            _exit(127);
        }
        bool ok = wait_for(
            [&] {
                int st;
                if (waitpid(pid_, &st, WNOHANG) == pid_) {
                    pid_ = -1;
                    return true;
                }
                return fs::exists(ready) && read_file(ready).find('\n') != std::string::npos;
            },
            timeout);
        if (!ok || pid_ < 0) return false;
        admin_ = read_file(ready);
        while (!admin_.empty() && (admin_.back() == '\n' || admin_.back() == '\r'))
            admin_.pop_back();
        return true;
    }

    // SIGTERM and wait; returns the exit status (or -1).
    int stop(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        if (pid_ <= 0) return -1;
        ::kill(pid_, SIGTERM);
        return wait_exit(timeout);
    }
    void kill9() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int st;
        waitpid(pid_, &st, 0);
        pid_ = -1;
    }
    void signal(int sig) {
        if (sig == SIGHUP) prepare_config();  // a rewritten config keeps the token and store
        if (pid_ > 0) ::kill(pid_, sig);      // never kill(-1, …): that signals every process
    }
    bool running() {
        if (pid_ <= 0) return false;
        int st;
        return waitpid(pid_, &st, WNOHANG) == 0;
    }
    int wait_exit(std::chrono::milliseconds timeout) {
        int code = -1;
        bool done = wait_for(
            [&] {
                int st;
                pid_t r = waitpid(pid_, &st, WNOHANG);
                if (r == pid_) {
                    code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                    return true;
                }
                return false;
            },
            timeout);
        if (!done) kill9();
        pid_ = -1;
        return code;
    }

    const std::string& admin() const { return admin_; }
    std::string log() const { return read_file(workdir_ / "daemon.log"); }
    pid_t pid() const { return pid_; }
    // The harness's admin token (every role), or empty when the test's config names its own
    // admin.token_file. get, post and cli send it unless given another.
    const std::string& token() const { return token_; }
    http_response get(const std::string& target, const std::string& token = {}) const {
        return http(admin_, "GET", target, {}, token.empty() ? token_ : token);
    }
    http_response post(const std::string& target, const std::string& body = "{}",
                       const std::string& token = {}) const {
        return http(admin_, "POST", target, body, token.empty() ? token_ : token);
    }
    // Runs a samband CLI command against this daemon (with the harness's token file, which an
    // explicit --token-file in `args` overrides).
    std::pair<int, std::string> cli(const std::string& args) const {
        std::string env = token_.empty()
                              ? std::string()
                              : "SAMBAND_TOKEN_FILE=" + (workdir_ / "harness.token").string() + " ";
        return run_command(env + binary() + " " + args + " --admin http://" + admin_);
    }

private:
    // Prepares the test's config file before each start and reload (a config that is not a JSON
    // object is left alone: tests of broken configs). False when that failed.
    //  - The admin API answers only with a token. Unless the config names its own
    //    admin.token_file, the harness makes one token with every role (`samband token add`) and
    //    writes admin.token_file into the config.
    //  - On PostgreSQL (SAMBAND_TEST_STORE=postgresql) a SQLite store becomes this folder's
    //    PostgreSQL database (its path stays: PATH.copies holds the plugins' attachment copies).
    bool prepare_config() {
        rapidjson::Document d;
        d.Parse(read_file(config_).c_str());
        if (d.HasParseError() || !d.IsObject()) return true;
        bool changed = false;
        if (!give_token(d, changed)) return false;
        if (on_postgresql() && !use_postgresql(d, changed)) return false;
        if (!changed) return true;
        rapidjson::StringBuffer sb;
        rapidjson::Writer<rapidjson::StringBuffer> w(sb);
        d.Accept(w);
        write_file(config_, sb.GetString());
        return true;
    }

    bool give_token(rapidjson::Document& d, bool& changed) {
        const std::string file = (workdir_ / "harness.tokens").string();
        auto& al = d.GetAllocator();
        if (!d.HasMember("admin") || !d["admin"].IsObject()) {
            d.RemoveMember("admin");
            d.AddMember("admin", rapidjson::Value(rapidjson::kObjectType), al);
            changed = true;
        }
        auto& a = d["admin"];
        if (a.HasMember("token_file")) {
            if (!a["token_file"].IsString() || a["token_file"].GetString() != file) {
                token_.clear();
            } else if (token_.empty()) {  // a new daemon_process on the same folder (a restart)
                token_ = read_file(workdir_ / "harness.token");
                while (!token_.empty() && (token_.back() == '\n' || token_.back() == '\r'))
                    token_.pop_back();
            }
            return true;
        }
        if (token_.empty()) {
            fs::remove(file);
            token_ = add_token(file, "harness", "viewer,operator,clinician,auditor");
            if (token_.empty()) return false;
            write_file(workdir_ / "harness.token", token_ + "\n");
        }
        a.AddMember("token_file", rapidjson::Value(file.c_str(), al), al);
        changed = true;
        return true;
    }

    // A config whose store is SQLite (named or by default) gets this folder's PostgreSQL
    // database, its connection string in the secret "harness-pg". A test's own PostgreSQL
    // store is left alone.
    bool use_postgresql(rapidjson::Document& d, bool& changed) {
        auto& al = d.GetAllocator();
        if (!d.HasMember("store") || !d["store"].IsObject()) {
            d.RemoveMember("store");
            d.AddMember("store", rapidjson::Value(rapidjson::kObjectType), al);
        }
        auto& st = d["store"];
        const bool harness_pg = st.HasMember("conninfo_secret") &&
                                st["conninfo_secret"].IsString() &&
                                std::string(st["conninfo_secret"].GetString()) == "harness-pg";
        if (!harness_pg && st.HasMember("kind") && st["kind"].IsString() &&
            std::string(st["kind"].GetString()) != "sqlite")
            return true;
        const std::string db = test_pg_database(workdir_);
        if (db.empty()) return false;
        const fs::path conninfo = workdir_ / "harness.pgconninfo";
        write_file(conninfo, test_pg_conninfo(db) + "\n");
        st.RemoveMember("kind");
        st.AddMember("kind", "postgresql", al);
        st.RemoveMember("synchronous");  // SQLite only
        st.RemoveMember("conninfo_secret");
        st.AddMember("conninfo_secret", "harness-pg", al);
        if (!d.HasMember("secrets") || !d["secrets"].IsObject()) {
            d.RemoveMember("secrets");
            d.AddMember("secrets", rapidjson::Value(rapidjson::kObjectType), al);
        }
        auto& secrets = d["secrets"];
        secrets.RemoveMember("harness-pg");
        rapidjson::Value secret(rapidjson::kObjectType);
        secret.AddMember("file", rapidjson::Value(conninfo.c_str(), al), al);
        secrets.AddMember("harness-pg", secret, al);
        changed = true;
        return true;
    }

    fs::path config_, workdir_;
    pid_t pid_ = -1;
    std::string admin_;
    std::string token_;
};

// A fresh temporary directory per test, removed afterwards unless SAMBAND_KEEP_TMP is set.
class temp_dir {
public:
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "samband-it-XXXXXX").string();
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        path_ = mkdtemp(buf.data());
    }
    ~temp_dir() {
        if (!std::getenv("SAMBAND_KEEP_TMP")) {
            std::error_code ec;
            fs::remove_all(path_, ec);
        }
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

}  // namespace samband::test
