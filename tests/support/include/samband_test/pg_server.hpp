// A private PostgreSQL 15 server for tests and benches: initdb into a temporary folder, 127.0.0.1.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace samband::testing {

// The PostgreSQL 15 programs (Debian's postgresql-15); SAMBAND_PG_BINDIR overrides.
inline std::string pg_bindir() {
    const char* v = std::getenv("SAMBAND_PG_BINDIR");
    return v ? std::string(v) : std::string("/usr/lib/postgresql/15/bin");
}

// One server: created and started by the constructor, stopped and removed by the destructor.
// initdb refuses to run as root: as root, the programs run as the `postgres` user (runuser) and
// the folder is handed to it. Trust authentication on 127.0.0.1 only; the socket is in the folder.
class pg_server {
public:
    // `options`: extra server settings ("-c fsync=off" for unit tests that need no durability).
    explicit pg_server(std::string options = "-c fsync=off -c synchronous_commit=off")
        : options_(std::move(options)) {
        namespace fs = std::filesystem;
        std::random_device rd;
        dir_ = fs::temp_directory_path() /
               ("samband-pg-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        fs::create_directories(dir_);
        if (::geteuid() == 0) {
            const passwd* pw = ::getpwnam("postgres");
            if (!pw) throw std::runtime_error("pg_server: running as root needs a postgres user");
            if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
                throw std::runtime_error("pg_server: cannot hand " + dir_.string() +
                                         " to postgres");
        }
        if (run({pg_bindir() + "/initdb", "-D", (dir_ / "data").string(), "-U", "samband",
                 "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"}) != 0)
            throw std::runtime_error("pg_server: initdb failed: " + log());
        port_ = free_port();
        start_reaper();
        if (!start()) throw std::runtime_error("pg_server: the server did not start: " + log());
    }
    ~pg_server() {
        stop();
        if (reaper_pipe_ >= 0) ::close(reaper_pipe_);  // the reaper removes the folder and exits
        if (reaper_ > 0) ::waitpid(reaper_, nullptr, 0);
    }
    pg_server(const pg_server&) = delete;
    pg_server& operator=(const pg_server&) = delete;

    int port() const { return port_; }
    const std::filesystem::path& dir() const { return dir_; }
    std::string conninfo(const std::string& dbname = "postgres") const {
        return "host=127.0.0.1 port=" + std::to_string(port_) + " user=samband dbname=" + dbname +
               " connect_timeout=5";
    }

    // Starts (again) on the same port; waits until it accepts connections.
    bool start() {
        std::string opts = "-p " + std::to_string(port_) + " -k " + dir_.string() +
                           " -c listen_addresses=127.0.0.1 " + options_;
        running_ = run({pg_bindir() + "/pg_ctl", "-D", (dir_ / "data").string(), "-w", "-t", "60",
                        "-l", (dir_ / "server.log").string(), "-o", opts, "start"}) == 0;
        return running_;
    }
    // Stops (fast: open sessions are ended, committed work is kept).
    bool stop() {
        if (!running_) return true;
        running_ = run({pg_bindir() + "/pg_ctl", "-D", (dir_ / "data").string(), "-w", "-m", "fast",
                        "stop"}) != 0;
        return !running_;
    }
    // Creates a database (by psql, the server's own client).
    bool create_database(const std::string& name) {
        return run({pg_bindir() + "/psql", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U",
                    "samband", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
                    "CREATE DATABASE " + name}) == 0;
    }

    // The server's log and the last command's output (for a failure message).
    std::string log() const {
        std::ostringstream out;
        for (const char* f : {"cmd.log", "server.log"}) {
            std::ifstream in(dir_ / f);
            out << in.rdbuf();
        }
        return out.str();
    }

private:
    // A child that waits for this process to end (a crashed test included: the pipe's write end
    // closes with it), then stops the server and removes the folder. No server outlives its test.
    void start_reaper() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pg_server: pipe failed");
        reaper_ = ::fork();
        if (reaper_ < 0) throw std::runtime_error("pg_server: fork failed");
        if (reaper_ == 0) {
            ::close(fds[1]);
            char c;
            for (;;) {
                ssize_t r = ::read(fds[0], &c, 1);
                if (r == 0 || (r < 0 && errno != EINTR)) break;
            }
            running_ = true;
            stop();
            std::error_code ec;
            std::filesystem::remove_all(dir_, ec);
            ::_exit(0);
        }
        ::close(fds[0]);
        reaper_pipe_ = fds[1];
    }

    static int free_port() {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        socklen_t len = sizeof(a);
        int port = 0;
        if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
            port = ntohs(a.sin_port);
        ::close(fd);
        if (port == 0) throw std::runtime_error("pg_server: no free port");
        return port;
    }

    // Runs a program (as postgres when root), its output appended to cmd.log; the exit status.
    int run(std::vector<std::string> argv) const {
        if (::geteuid() == 0) argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
        std::string logf = (dir_ / "cmd.log").string();
        pid_t pid = ::fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            int fd = ::open(logf.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0666);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
            }
            int devnull = ::open("/dev/null", O_RDONLY);
            if (devnull >= 0) ::dup2(devnull, 0);
            // pg_ctl's server inherits no descriptor of the test process beyond these.
            for (int i = 3; i < 1024; ++i) ::close(i);
            std::vector<char*> args;
            for (auto& a : argv) args.push_back(a.data());
            args.push_back(nullptr);
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
        int status = 0;
        if (::waitpid(pid, &status, 0) < 0) return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

    std::filesystem::path dir_;
    std::string options_;
    int port_ = 0;
    bool running_ = false;
    pid_t reaper_ = -1;
    int reaper_pipe_ = -1;
};

}  // namespace samband::testing
