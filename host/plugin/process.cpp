#include "plugin/process.hpp"

#include "core/log.hpp"
#include "plugin/wire.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

extern char** environ;

namespace samband::plugin {

namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The descriptor number the child finds its socket on.
constexpr int kChildSocket = 3;
// Bounds on what a child may send (it is not trusted).
constexpr std::size_t kMaxLogLine = 64 * 1024;
constexpr std::uint32_t kMaxSubmitAttachments = 1000;

std::string status_word(samband_status s) {
    static const char* names[] = {"OK", "RETRY", "PERMANENT", "INVALID", "UNSUPPORTED", "INTERNAL"};
    return (s >= 0 && s <= 5) ? names[s] : "INTERNAL";
}

samband_status to_status(std::uint32_t v) {
    return v <= SAMBAND_INTERNAL ? static_cast<samband_status>(v) : SAMBAND_INTERNAL;
}

// A socket shared by the threads that write to it; closed with the last owner.
struct channel {
    explicit channel(int fd) : sock(fd) {}
    ~channel() { ::close(sock); }
    channel(const channel&) = delete;
    channel& operator=(const channel&) = delete;
    bool send(wire::msg t, std::uint64_t id, std::string_view payload,
              const std::vector<int>& fds = {}) {
        std::lock_guard lock(wmu);
        return bool(wire::send(sock, t, id, payload, fds));
    }
    int sock;
    std::mutex wmu;
};

// Descriptors closed on scope exit.
struct fd_list {
    std::vector<int> fds;
    fd_list() = default;
    fd_list(const fd_list&) = delete;
    fd_list& operator=(const fd_list&) = delete;
    ~fd_list() {
        for (int fd : fds) ::close(fd);
    }
};

// An attachment as a descriptor: its file opened read-only, else its bytes copied through the
// host's reader into a sealed memfd. -1 when neither works (the child then has no bytes).
int attachment_fd(const attachment_ref& a, host_services& svc) {
    if (!a.path.empty()) {
        int fd = ::open(a.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) return fd;
    }
    if (a.handle == 0) return -1;
    int fd = ::memfd_create("samband-attachment", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    std::array<std::uint8_t, 64 * 1024> buf;
    std::uint64_t off = 0;
    for (;;) {
        auto r = svc.read_attachment(a.handle, off, buf.data(), buf.size());
        if (!r) {
            ::close(fd);
            return -1;
        }
        if (*r == 0) break;
        if (::write(fd, buf.data(), *r) != static_cast<ssize_t>(*r)) {
            ::close(fd);
            return -1;
        }
        off += *r;
    }
    ::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
    return fd;
}

void put_event(wire::writer& w, const event_ref& e, host_services& svc, fd_list& fds) {
    w.str(e.envelope_json).u32(static_cast<std::uint32_t>(e.attachments.size()));
    for (const auto& a : e.attachments) {
        w.str(a.id).str(a.filename).str(a.media_type).str(a.sha256_hex).u64(a.size);
        int fd = fds.fds.size() < wire::kMaxFds ? attachment_fd(a, svc) : -1;
        w.u32(fd >= 0 ? 1 : 0);
        if (fd >= 0) fds.fds.push_back(fd);
    }
}

void put_delivery(wire::writer& w, const delivery_ref& d, host_services& svc, fd_list& fds) {
    w.u64(d.token)
        .str(d.delivery_id)
        .str(d.event_id)
        .str(d.destination)
        .u32(d.attempt)
        .i64(d.deadline_unix_ms);
    put_event(w, d.event, svc, fds);
}

std::int64_t pidfd_open(pid_t pid) {
    return ::syscall(SYS_pidfd_open, pid, 0);
}

// Waits up to `timeout` for the child to exit, then kills it; returns its wait status.
int reap(pid_t pid, int pidfd, std::chrono::milliseconds timeout) {
    pollfd p{pidfd, POLLIN, 0};
    int r;
    do {
        r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    } while (r < 0 && errno == EINTR);
    if (r <= 0) ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

std::string exit_text(int status) {
    if (WIFSIGNALED(status)) return "killed by " + signal_text(WTERMSIG(status));
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    return "ended (wait status " + std::to_string(status) + ")";
}

std::string self_exe() {
    std::error_code ec;
    auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string("/proc/self/exe") : p.string();
}

// A started child: its pid, a pidfd, the socket and the read end of its stdout/stderr pipe.
struct spawned {
    pid_t pid = -1;
    int pidfd = -1;
    int sock = -1;
    int out = -1;
};

boost::system::result<spawned, std::string> spawn_child(const std::string& plugin_path,
                                                        const process_options& opts) {
    std::string exe = opts.host_exe.empty() ? self_exe() : opts.host_exe;
    int sv[2], po[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return std::string("socketpair: ") + std::strerror(errno);
    if (::pipe2(po, O_CLOEXEC) < 0) {
        ::close(sv[0]);
        ::close(sv[1]);
        return std::string("pipe: ") + std::strerror(errno);
    }
    // Keep the child's ends above the descriptors they are duplicated onto.
    int child_sock = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    int child_out = ::fcntl(po[1], F_DUPFD_CLOEXEC, 10);
    ::close(sv[1]);
    ::close(po[1]);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, child_out, 1);
    posix_spawn_file_actions_adddup2(&fa, child_out, 2);
    posix_spawn_file_actions_adddup2(&fa, child_sock, kChildSocket);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::string mem = std::to_string(opts.memory_limit_mb);
    std::string fdtext = std::to_string(kChildSocket);
    std::vector<char*> argv{exe.data(),
                            const_cast<char*>("plugin-host"),
                            const_cast<char*>("--socket-fd"),
                            fdtext.data(),
                            const_cast<char*>("--memory-limit-mb"),
                            mem.data(),
                            const_cast<char*>(plugin_path.c_str()),
                            nullptr};
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, exe.c_str(), &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(child_sock);
    ::close(child_out);
    if (rc != 0) {
        ::close(sv[0]);
        ::close(po[0]);
        return "cannot start " + exe + " plugin-host: " + std::strerror(rc);
    }
    spawned s;
    s.pid = pid;
    s.pidfd = static_cast<int>(pidfd_open(pid));
    s.sock = sv[0];
    s.out = po[0];
    if (s.pidfd < 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        ::close(s.sock);
        ::close(s.out);
        return std::string("pidfd_open: ") + std::strerror(errno);
    }
    return s;
}

// Reads the child's hello within `timeout`. On failure the child is reaped and the text says why.
using hello_result = boost::system::result<loaded_plugin, std::string>;
hello_result hello_error(std::string why) {
    return hello_result(boost::system::in_place_error, std::move(why));
}

boost::system::result<loaded_plugin, std::string> read_hello(spawned& s, const std::string& path,
                                                             std::chrono::milliseconds timeout) {
    auto fail = [&](std::string why) -> boost::system::result<loaded_plugin, std::string> {
        ::kill(s.pid, SIGKILL);
        int status = reap(s.pid, s.pidfd, 0ms);
        (void)status;
        return hello_error(std::move(why));
    };
    pollfd p[2] = {{s.sock, POLLIN, 0}, {s.pidfd, POLLIN, 0}};
    int r;
    do {
        r = ::poll(p, 2, static_cast<int>(timeout.count()));
    } while (r < 0 && errno == EINTR);
    if (r == 0) return fail("loading took longer than " + std::to_string(timeout.count()) + " ms");
    if (!(p[0].revents & POLLIN)) {
        int status = reap(s.pid, s.pidfd, 1000ms);
        return hello_error("plugin-host " + exit_text(status) + " while loading");
    }
    auto f = wire::receive(s.sock);
    if (!f || f->type != wire::msg::hello) {
        int status = reap(s.pid, s.pidfd, 1000ms);
        return hello_error("plugin-host " + exit_text(status) + " while loading");
    }
    for (int fd : f->fds) ::close(fd);
    wire::reader rd(f->payload);
    std::uint32_t ok = 0;
    if (!rd.u32(ok)) return fail("plugin-host sent a malformed hello");
    if (!ok) {
        std::string why;
        rd.str(why);
        reap(s.pid, s.pidfd, 1000ms);
        return hello_error(std::move(why));
    }
    loaded_plugin lp;
    std::uint32_t renders = 0;
    if (!rd.str(lp.name) || !rd.str(lp.version) || !rd.str(lp.description) ||
        !rd.u32(lp.abi_version) || !rd.u32(lp.kinds) || !rd.u32(lp.capabilities) ||
        !rd.u32(renders) || !rd.str(lp.config_schema))
        return fail("plugin-host sent a malformed hello");
    lp.path = path;
    lp.renders = renders != 0;
    return lp;
}

}  // namespace

std::string signal_text(int sig) {
    const char* abbrev = ::sigabbrev_np(sig);
    const char* desc = ::sigdescr_np(sig);
    std::string s = abbrev ? "SIG" + std::string(abbrev) : "signal " + std::to_string(sig);
    if (desc) s += " (" + std::string(desc) + ")";
    return s;
}

boost::system::result<loaded_plugin, std::string> probe_in_child(const std::string& path,
                                                                 const process_options& opts) {
    auto s = spawn_child(path, opts);
    if (!s) return hello_error(s.error());
    auto lp = read_hello(*s, path, kCallTimeout);
    if (lp) {
        ::close(s->sock);  // end of stream: the child exits
        s->sock = -1;
        reap(s->pid, s->pidfd, 2000ms);
    }
    if (s->sock >= 0) ::close(s->sock);
    ::close(s->out);
    ::close(s->pidfd);
    return lp;
}

// ---- the parent side ------------------------------------------------------------------------

struct remote_instance::impl {
    impl(const loaded_plugin& p, std::string ep, std::string cfg, host_services& s,
         instance_options o)
        : plugin(p), endpoint(std::move(ep)), config(std::move(cfg)), svc(s), opts(std::move(o)) {
        for (samband_log_level l = SAMBAND_LOG_TRACE; l <= SAMBAND_LOG_ERROR; ++l)
            if (svc.log_enabled(endpoint, l)) log_mask |= 1u << l;
    }

    loaded_plugin plugin;
    std::string endpoint;
    std::string config;
    host_services& svc;
    instance_options opts;
    std::uint32_t log_mask = 0;

    struct child {
        std::uint64_t gen = 0;
        pid_t pid = -1;
        int pidfd = -1;
        int out = -1;
        std::shared_ptr<channel> ch;
        std::thread reader;
        bool orderly = false;  // destroy was answered: an exit is expected
        ~child() {
            if (reader.joinable()) reader.join();
            if (pidfd >= 0) ::close(pidfd);
            if (out >= 0) ::close(out);
        }
    };
    struct pending {
        std::string what;
        bool done = false;
        bool crashed = false;
        std::string why;
        wire::frame reply;
    };

    mutable std::mutex mu;
    std::condition_variable cv;  // supervisor and callers
    std::unique_ptr<child> cur;  // null while down
    std::vector<std::unique_ptr<child>> gone;
    std::uint64_t gen = 0;
    std::uint64_t next_id = 1;
    std::map<std::uint64_t, std::shared_ptr<pending>> calls;
    // Deliveries handed to the child: a completion that arrives before deliver() answers waits
    // here; it is forwarded when deliver() accepted, dropped when it refused.
    struct flight {
        bool accepted = false;
        std::optional<completion> early;
    };
    std::map<std::uint64_t, flight> inflight;
    bool up = false;  // created (and started when it should be) and not gone since
    bool destroyed = false;
    std::string kill_reason;
    std::deque<clock::time_point> crash_times;
    std::string quarantine;
    std::uint64_t crash_count = 0;
    std::string last;
    bool up_once = false, started = false, stopping = false, quit = false;
    bool restart_pending = false, spawn_requested = false, spawn_done = false;
    call_result spawn_result;
    clock::time_point restart_at;
    std::thread supervisor;

    std::string who() const { return "plugin " + plugin.name + " endpoint " + endpoint; }

    // ---- supervisor: every child is spawned from this one thread (PR_SET_PDEATHSIG follows
    // the spawning thread) ----
    void run() {
        std::unique_lock lk(mu);
        for (;;) {
            cv.wait(lk, [&] { return quit || spawn_requested || (restart_pending && !stopping); });
            if (quit) return;
            bool initial = spawn_requested;
            if (initial) {
                spawn_requested = false;
            } else {
                cv.wait_until(lk, restart_at, [&] { return quit || stopping; });
                if (quit) return;
                if (stopping) continue;
                restart_pending = false;
            }
            auto dead = std::move(gone);
            gone.clear();
            bool was_started = started;
            lk.unlock();
            dead.clear();  // joins their readers
            call_result r = bring_up(initial, was_started);
            lk.lock();
            if (initial) {
                spawn_result = r;
                spawn_done = true;
                cv.notify_all();
            }
        }
    }

    call_result bring_up(bool initial, bool start_too) {
        auto s = spawn_child(plugin.path, opts.process);
        if (!s) return {SAMBAND_INTERNAL, s.error()};
        auto hello = read_hello(*s, plugin.path, opts.call_timeout);
        if (!hello) {
            ::close(s->sock);
            ::close(s->out);
            ::close(s->pidfd);
            std::string why = "plugin-host could not load the plugin: " + hello.error();
            if (!initial) account_crash(why);
            return {SAMBAND_INTERNAL, why};
        }
        std::uint64_t g;
        {
            std::lock_guard lock(mu);
            auto c = std::make_unique<child>();
            c->gen = g = ++gen;
            c->pid = s->pid;
            c->pidfd = s->pidfd;
            c->out = s->out;
            c->ch = std::make_shared<channel>(s->sock);
            kill_reason.clear();
            c->reader = std::thread([this, g, pid = s->pid, pidfd = s->pidfd, out = s->out,
                                     ch = c->ch] { read_loop(g, pid, pidfd, out, ch); });
            cur = std::move(c);
        }
        wire::writer w;
        w.str(endpoint).str(config).u32(log_mask);
        auto r = call_reply("create", wire::msg::create, w.take(), {}, opts.call_timeout);
        if (r.ok() && start_too)
            r = call_reply("start", wire::msg::start, {}, {}, opts.call_timeout);
        if (!r.ok()) {
            std::lock_guard lock(mu);
            if (initial) {
                // The caller gets the failure; the child is not wanted.
                if (cur && cur->gen == g) {
                    cur->orderly = true;
                    ::kill(cur->pid, SIGKILL);
                }
            } else {
                kill_locked(g, "restart failed: " + r.message);
            }
            return r;
        }
        std::lock_guard lock(mu);
        if (cur && cur->gen == g) up = true;
        if (initial) up_once = true;
        cv.notify_all();
        return r;
    }

    void kill_locked(std::uint64_t g, std::string reason) {
        if (!cur || cur->gen != g) return;
        if (kill_reason.empty()) kill_reason = std::move(reason);
        up = false;
        ::kill(cur->pid, SIGKILL);
    }

    // ---- calls ----
    boost::system::result<wire::frame, call_result> call(const char* what, wire::msg type,
                                                         std::string payload,
                                                         const std::vector<int>& fds,
                                                         std::chrono::milliseconds timeout) {
        auto p = std::make_shared<pending>();
        p->what = what;
        std::shared_ptr<channel> ch;
        std::uint64_t id, g;
        {
            std::lock_guard lock(mu);
            if (!quarantine.empty()) return call_result{SAMBAND_RETRY, who() + ": " + quarantine};
            if (!cur)
                return call_result{SAMBAND_RETRY,
                                   who() + ": plugin-host is restarting after: " + last};
            ch = cur->ch;
            g = cur->gen;
            id = next_id++;
            calls[id] = p;
        }
        bool sent = ch->send(type, id, payload, fds);
        std::unique_lock lock(mu);
        if (sent) cv.wait_for(lock, timeout, [&] { return p->done; });
        if (!p->done) {
            calls.erase(id);
            std::string msg =
                who() + ": " + what +
                (sent ? " blocked past its deadline of " + std::to_string(timeout.count()) + " ms"
                      : " could not be sent to plugin-host");
            kill_locked(g, std::string(what) + (sent ? " blocked past its deadline of " +
                                                           std::to_string(timeout.count()) + " ms"
                                                     : " could not be sent"));
            lock.unlock();
            svc.log(endpoint, SAMBAND_LOG_ERROR, msg + "; plugin-host killed");
            return call_result{SAMBAND_RETRY, msg};
        }
        if (p->crashed) return call_result{SAMBAND_RETRY, p->why};
        return std::move(p->reply);
    }

    // A call whose reply is just status and text.
    call_result call_reply(const char* what, wire::msg type, std::string payload,
                           const std::vector<int>& fds, std::chrono::milliseconds timeout) {
        auto f = call(what, type, std::move(payload), fds, timeout);
        if (!f) return f.error();
        wire::reader rd(f->payload);
        std::uint32_t st = SAMBAND_INTERNAL;
        call_result r;
        if (!rd.u32(st) || !rd.str(r.message)) return {SAMBAND_INTERNAL, "malformed reply"};
        r.status = to_status(st);
        return r;
    }

    // ---- the reader of one child ----
    void read_loop(std::uint64_t g, pid_t pid, int pidfd, int out, std::shared_ptr<channel> ch) {
        std::string partial;
        bool out_open = true, sock_open = true;
        for (;;) {
            // A negative descriptor is skipped by poll (a closed one would report POLLHUP).
            pollfd p[3] = {{sock_open ? ch->sock : -1, POLLIN, 0},
                           {out_open ? out : -1, POLLIN, 0},
                           {pidfd, POLLIN, 0}};
            int r = ::poll(p, 3, -1);
            if (r < 0) {
                if (errno == EINTR) continue;
                break;
            }
            if (p[1].revents & (POLLIN | POLLHUP)) out_open = drain_output(out, partial);
            if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                auto f = wire::receive(ch->sock);
                if (!f) {
                    sock_open = false;
                    std::lock_guard lock(mu);
                    // The socket broke first: the child is of no use any more.
                    if (cur && cur->gen == g && !cur->orderly)
                        kill_locked(g, kill_reason.empty() && f.error().value() != EPIPE
                                           ? "broke the protocol (" + f.error().message() + ")"
                                           : std::string());
                    if (cur && cur->gen == g && cur->orderly) ::kill(pid, SIGKILL);
                } else if (!handle(g, ch, std::move(*f))) {
                    std::lock_guard lock(mu);
                    kill_locked(g, "broke the protocol (a malformed message)");
                }
            }
            if (p[2].revents & POLLIN) {
                // Exited: what it wrote before exiting (a last reply) is still read.
                while (sock_open) {
                    pollfd q{ch->sock, POLLIN, 0};
                    if (::poll(&q, 1, 0) <= 0 || !(q.revents & POLLIN)) break;
                    auto f = wire::receive(ch->sock);
                    if (!f || !handle(g, ch, std::move(*f))) break;
                }
                break;
            }
        }
        while (out_open && drain_output(out, partial)) {
        }
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        on_gone(g, status);
    }

    // Logs the child's stdout/stderr line by line; false at end of stream.
    bool drain_output(int out, std::string& partial) {
        char buf[4096];
        ssize_t n = ::read(out, buf, sizeof buf);
        if (n < 0 && errno == EINTR) return true;
        if (n <= 0) {
            if (!partial.empty()) log_output(partial);
            partial.clear();
            return false;
        }
        partial.append(buf, static_cast<std::size_t>(n));
        std::size_t nl;
        while ((nl = partial.find('\n')) != std::string::npos) {
            log_output(partial.substr(0, nl));
            partial.erase(0, nl + 1);
        }
        if (partial.size() > kMaxLogLine) {
            log_output(partial);
            partial.clear();
        }
        return true;
    }
    void log_output(std::string line) {
        if (line.size() > kMaxLogLine) line.resize(kMaxLogLine);
        svc.log(endpoint, SAMBAND_LOG_WARN,
                "plugin wrote to stdout/stderr: " + core::mask_identifiers(line));
    }

    // Handles one message from the child; false when it is malformed.
    bool handle(std::uint64_t g, const std::shared_ptr<channel>& ch, wire::frame f) {
        fd_list owned;
        owned.fds = std::move(f.fds);
        if (!owned.fds.empty()) return false;  // the child never passes descriptors
        wire::reader rd(f.payload);
        switch (f.type) {
            case wire::msg::reply: {
                std::lock_guard lock(mu);
                auto it = calls.find(f.id);
                if (it == calls.end() || !cur || cur->gen != g) return true;  // late: ignored
                it->second->reply = std::move(f);
                it->second->done = true;
                calls.erase(it);
                cv.notify_all();
                return true;
            }
            case wire::msg::log: {
                std::uint32_t level;
                std::string text;
                if (!rd.u32(level) || !rd.str(text)) return false;
                if (text.size() > kMaxLogLine) text.resize(kMaxLogLine);
                svc.log(endpoint, std::min<std::uint32_t>(level, SAMBAND_LOG_ERROR),
                        core::mask_identifiers(text));
                return true;
            }
            case wire::msg::complete: {
                std::uint64_t token;
                std::uint32_t st;
                completion c;
                if (!rd.u64(token) || !rd.u32(st) || !rd.str(c.external_id) || !rd.str(c.message))
                    return false;
                c.status = to_status(st);
                bool known = false;
                {
                    std::lock_guard lock(mu);
                    auto it = inflight.find(token);
                    if (it != inflight.end() && !it->second.accepted && !it->second.early) {
                        it->second.early = std::move(c);  // deliver() has not answered yet
                        return true;
                    }
                    if (it != inflight.end() && it->second.accepted) {
                        known = true;
                        inflight.erase(it);
                    }
                }
                if (!known)
                    svc.log(endpoint, SAMBAND_LOG_WARN,
                            who() + ": completion for delivery token " + std::to_string(token) +
                                " that is not in flight (a double or late completion)");
                // Passed on either way, as in-process: the engine keeps it as evidence.
                svc.complete(endpoint, token, std::move(c));
                return true;
            }
            case wire::msg::receipt: {
                std::string ext, text;
                std::int32_t kind;
                if (!rd.str(ext) || !rd.i32(kind) || !rd.str(text)) return false;
                svc.receipt(endpoint, ext, kind, text);
                return true;
            }
            case wire::msg::secret: {
                std::string name;
                if (!rd.str(name)) return false;
                auto s = svc.secret(endpoint, name);
                wire::writer w;
                w.u32(s ? 1 : 0).str(s ? *s : std::string());
                std::string payload = w.take();
                ch->send(wire::msg::secret_answer, f.id, payload);
                std::fill(payload.begin(), payload.end(), '\0');
                if (s) std::fill(s->begin(), s->end(), '\0');
                return true;
            }
            case wire::msg::submit: {
                submission sub;
                std::uint32_t n;
                if (!rd.str(sub.envelope_json) || !rd.u32(n) || n > kMaxSubmitAttachments)
                    return false;
                for (std::uint32_t i = 0; i < n; ++i) {
                    submission::attachment a;
                    if (!rd.str(a.filename) || !rd.str(a.media_type) || !rd.str(a.bytes))
                        return false;
                    sub.attachments.push_back(std::move(a));
                }
                std::uint64_t id = f.id;
                std::weak_ptr<channel> weak = ch;
                samband_status st =
                    svc.submit(endpoint, std::move(sub), [weak, id](const submit_result& r) {
                        auto c = weak.lock();
                        if (!c) return;
                        wire::writer w;
                        w.u32(static_cast<std::uint32_t>(r.status))
                            .str(r.event_id)
                            .u32(r.duplicate ? 1 : 0)
                            .str(r.message);
                        c->send(wire::msg::submit_done, id, w.take());
                    });
                wire::writer w;
                w.u32(static_cast<std::uint32_t>(st));
                ch->send(wire::msg::submit_ack, id, w.take());
                return true;
            }
            default:
                return false;
        }
    }

    void account_crash(const std::string& reason) {
        std::lock_guard lock(mu);
        account_crash_locked(reason);
    }
    void account_crash_locked(const std::string& reason) {
        ++crash_count;
        last = reason;
        auto now = clock::now();
        crash_times.push_back(now);
        while (!crash_times.empty() && now - crash_times.front() > opts.process.crash_window)
            crash_times.pop_front();
        if (!up_once) return;  // the first create failed: the caller reports it
        if (static_cast<int>(crash_times.size()) >= opts.process.max_crashes) {
            quarantine =
                "quarantined after " + std::to_string(crash_times.size()) + " crashes within " +
                std::to_string(opts.process.crash_window.count() / 1000) + " s; last: " + reason;
            svc.log(endpoint, SAMBAND_LOG_ERROR, who() + ": " + quarantine);
            return;
        }
        auto delay =
            opts.process.backoff_base * (1 << std::min<std::size_t>(crash_times.size() - 1, 16));
        delay = std::min(delay, opts.process.backoff_max);
        restart_at = now + delay;
        restart_pending = true;
        svc.log(endpoint, SAMBAND_LOG_ERROR,
                who() + ": plugin-host " + reason + "; restarting in " +
                    std::to_string(delay.count()) + " ms (" + std::to_string(crash_times.size()) +
                    " of " + std::to_string(opts.process.max_crashes) + " crashes in the window)");
        cv.notify_all();
    }

    void on_gone(std::uint64_t g, int status) {
        std::vector<std::uint64_t> tokens;
        std::string msg;
        {
            std::lock_guard lock(mu);
            if (!cur || cur->gen != g) return;
            bool orderly = cur->orderly;
            std::string during;
            for (const auto& [id, p] : calls) during += (during.empty() ? "" : ", ") + p->what;
            std::string reason =
                !kill_reason.empty()
                    ? "was killed: " + kill_reason
                    : exit_text(status) + (during.empty() ? "" : " during " + during);
            msg = who() + ": plugin-host " + reason;
            for (auto& [id, p] : calls) {
                p->crashed = true;
                p->done = true;
                p->why = msg;
            }
            calls.clear();
            for (const auto& [t, fl] : inflight)
                if (fl.accepted) tokens.push_back(t);
            up = false;
            inflight.clear();
            gone.push_back(std::move(cur));
            cv.notify_all();
            if (!orderly) account_crash_locked(reason);
        }
        for (auto t : tokens) svc.complete(endpoint, t, completion{SAMBAND_RETRY, {}, msg});
    }

    void shutdown() {
        {
            std::lock_guard lock(mu);
            quit = true;
            stopping = true;
            cv.notify_all();
        }
        if (supervisor.joinable()) supervisor.join();
        {
            std::lock_guard lock(mu);
            if (cur) {
                cur->orderly = true;
                ::kill(cur->pid, SIGKILL);
            }
        }
        // Readers end once their child is gone (each was killed or exited).
        std::vector<std::unique_ptr<child>> dead;
        {
            std::lock_guard lock(mu);
            dead = std::move(gone);
            gone.clear();
        }
        dead.clear();
        std::unique_lock lock(mu);
        while (cur) {
            // A reader still finishing: its on_gone moves it to `gone`.
            cv.wait_for(lock, 100ms);
        }
        dead = std::move(gone);
        lock.unlock();
        dead.clear();
    }
};

remote_instance::remote_instance(std::shared_ptr<impl> p) : impl_(std::move(p)) {}

boost::system::result<std::unique_ptr<remote_instance>, std::string> remote_instance::create(
    const loaded_plugin& plugin, std::string endpoint, std::string config_json,
    host_services& services, instance_options opts) {
    auto p =
        std::make_shared<impl>(plugin, endpoint, std::move(config_json), services, std::move(opts));
    impl* raw = p.get();
    p->supervisor = std::thread([raw] { raw->run(); });
    call_result r;
    {
        std::unique_lock lock(p->mu);
        p->spawn_requested = true;
        p->cv.notify_all();
        p->cv.wait(lock, [&] { return p->spawn_done; });
        r = p->spawn_result;
    }
    if (!r.ok()) {
        p->shutdown();
        // The plugin's own refusal already names the endpoint and plugin.
        if (r.message.rfind("endpoint " + endpoint + " (", 0) == 0) return r.message;
        return "endpoint " + endpoint + " (plugin " + plugin.name +
               ", isolated): create failed: " + status_word(r.status) + ": " + r.message;
    }
    return std::unique_ptr<remote_instance>(new remote_instance(std::move(p)));
}

remote_instance::~remote_instance() {
    destroy();
}

call_result remote_instance::destroy() {
    stop();
    {
        std::lock_guard lock(impl_->mu);
        if (impl_->destroyed) return {SAMBAND_OK, {}};
        impl_->destroyed = true;
        impl_->stopping = true;
    }
    call_result r{SAMBAND_OK, {}};
    bool running;
    {
        std::lock_guard lock(impl_->mu);
        running = impl_->cur != nullptr;
    }
    if (running) {
        {
            // An exit after destroy is expected, not a crash (a crash still fails the call).
            std::lock_guard lock(impl_->mu);
            if (impl_->cur) impl_->cur->orderly = true;
        }
        r = impl_->call_reply("destroy", wire::msg::destroy, {}, {}, impl_->opts.call_timeout * 10);
        if (r.ok()) {
            // The child exits by itself after answering.
            std::unique_lock lock(impl_->mu);
            if (impl_->cur) impl_->cur->orderly = true;
            impl_->cv.wait_for(lock, 2s, [&] { return !impl_->cur; });
        }
    }
    impl_->shutdown();
    return r;
}

bool remote_instance::wait_up(std::chrono::milliseconds timeout) {
    std::unique_lock lock(impl_->mu);
    return impl_->cv.wait_for(lock, timeout, [&] {
        return impl_->up || !impl_->quarantine.empty() || impl_->destroyed;
    }) && impl_->up;
}

bool remote_instance::up() const {
    std::lock_guard lock(impl_->mu);
    return impl_->up;
}

const loaded_plugin& remote_instance::plugin() const {
    return impl_->plugin;
}
const std::string& remote_instance::endpoint() const {
    return impl_->endpoint;
}

call_result remote_instance::start() {
    {
        std::lock_guard lock(impl_->mu);
        impl_->stopping = false;
    }
    auto r = impl_->call_reply("start", wire::msg::start, {}, {}, impl_->opts.call_timeout);
    std::lock_guard lock(impl_->mu);
    impl_->started = r.ok();
    return r;
}

void remote_instance::stop() {
    {
        std::lock_guard lock(impl_->mu);
        if (impl_->stopping) return;
        impl_->stopping = true;
        impl_->started = false;
        impl_->cv.notify_all();
        if (!impl_->cur) return;
    }
    impl_->call_reply("stop", wire::msg::stop, {}, {}, impl_->opts.call_timeout * 10);
}

call_result remote_instance::deliver(const delivery_ref& d) {
    if (!(impl_->plugin.kinds & SAMBAND_KIND_SINK)) return {SAMBAND_UNSUPPORTED, "not a sink"};
    fd_list fds;
    wire::writer w;
    put_delivery(w, d, impl_->svc, fds);
    {
        std::lock_guard lock(impl_->mu);
        impl_->inflight[d.token] = {};
    }
    auto r = impl_->call_reply("deliver", wire::msg::deliver, w.take(), fds.fds,
                               impl_->opts.call_timeout);
    std::optional<completion> early;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->inflight.find(d.token);
        if (it != impl_->inflight.end()) {
            if (r.ok() && it->second.early) {
                early = std::move(it->second.early);
                impl_->inflight.erase(it);
            } else if (r.ok()) {
                it->second.accepted = true;  // a completion follows
            } else {
                if (it->second.early) {
                    impl_->svc.log(impl_->endpoint, SAMBAND_LOG_WARN,
                                   impl_->who() + ": completion for delivery token " +
                                       std::to_string(d.token) +
                                       " that deliver() refused (a late completion)");
                    early = std::move(it->second.early);
                }
                impl_->inflight.erase(it);  // no completion follows a refused delivery
            }
        }
    }
    if (early) impl_->svc.complete(impl_->endpoint, d.token, std::move(*early));
    return r;
}

boost::system::result<rendered, call_result> remote_instance::render(const delivery_ref& d) {
    if (!impl_->plugin.renders) return call_result{SAMBAND_UNSUPPORTED, "plugin offers no render"};
    fd_list fds;
    wire::writer w;
    put_delivery(w, d, impl_->svc, fds);
    auto f = impl_->call("render", wire::msg::render, w.take(), fds.fds, impl_->opts.call_timeout);
    if (!f) return f.error();
    wire::reader rd(f->payload);
    std::uint32_t st;
    call_result r;
    rendered out;
    if (!rd.u32(st) || !rd.str(r.message) || !rd.str(out.bytes) || !rd.str(out.name))
        return call_result{SAMBAND_INTERNAL, "malformed render reply"};
    r.status = to_status(st);
    if (!r.ok()) return r;
    return out;
}

boost::system::result<std::string, call_result> remote_instance::transform(const event_ref& e) {
    if (!(impl_->plugin.kinds & SAMBAND_KIND_TRANSFORM))
        return call_result{SAMBAND_UNSUPPORTED, "not a transform"};
    fd_list fds;
    wire::writer w;
    put_event(w, e, impl_->svc, fds);
    auto f =
        impl_->call("transform", wire::msg::transform, w.take(), fds.fds, impl_->opts.call_timeout);
    if (!f) return f.error();
    wire::reader rd(f->payload);
    std::uint32_t st;
    call_result r;
    std::string env;
    if (!rd.u32(st) || !rd.str(r.message) || !rd.str(env))
        return call_result{SAMBAND_INTERNAL, "malformed transform reply"};
    r.status = to_status(st);
    if (!r.ok()) return r;
    return env;
}

std::string remote_instance::quarantined() const {
    std::lock_guard lock(impl_->mu);
    return impl_->quarantine;
}
std::uint64_t remote_instance::crashes() const {
    std::lock_guard lock(impl_->mu);
    return impl_->crash_count;
}
std::string remote_instance::last_crash() const {
    std::lock_guard lock(impl_->mu);
    return impl_->last;
}

// ---- the child ------------------------------------------------------------------------------

namespace {

// The host services inside the child: everything goes to the parent over the socket.
class child_services final : public host_services {
public:
    explicit child_services(std::shared_ptr<channel> ch) : ch_(std::move(ch)) {
        answers_ = std::thread([this] { run_answers(); });
    }
    ~child_services() override {
        {
            std::lock_guard lock(answers_mu_);
            answers_stop_ = true;
        }
        answers_cv_.notify_all();
        if (answers_.joinable()) answers_.join();
    }
    child_services(const child_services&) = delete;
    child_services& operator=(const child_services&) = delete;

    std::uint32_t log_mask = ~0u;

    bool log_enabled(std::string_view, samband_log_level level) override {
        return level >= 0 && level < 32 && (log_mask >> level) & 1u;
    }
    void log(std::string_view, samband_log_level level, std::string_view message) override {
        wire::writer w;
        w.u32(static_cast<std::uint32_t>(level)).str(message);
        ch_->send(wire::msg::log, 0, w.take());
    }
    std::optional<std::string> secret(std::string_view, std::string_view name) override {
        auto [id, fut] = expect();
        wire::writer w;
        w.str(name);
        if (!ch_->send(wire::msg::secret, id, w.take())) return std::nullopt;
        auto f = fut.get();
        wire::reader rd(f.payload);
        std::uint32_t found = 0;
        std::string value;
        if (!rd.u32(found) || !rd.str(value) || !found) return std::nullopt;
        return value;
    }
    samband_status submit(std::string_view, submission sub,
                          std::function<void(const submit_result&)> done) override {
        wire::writer w;
        w.str(sub.envelope_json).u32(static_cast<std::uint32_t>(sub.attachments.size()));
        for (auto& a : sub.attachments) {
            std::string bytes = a.bytes;
            if (!a.path.empty()) {
                int fd = ::open(a.path.c_str(), O_RDONLY | O_CLOEXEC);
                if (fd < 0) return SAMBAND_INVALID;
                char buf[65536];
                ssize_t n;
                while ((n = ::read(fd, buf, sizeof buf)) > 0)
                    bytes.append(buf, static_cast<std::size_t>(n));
                ::close(fd);
                if (n < 0) return SAMBAND_INVALID;
            }
            w.str(a.filename).str(a.media_type).str(bytes);
        }
        auto [id, fut] = expect();
        {
            std::lock_guard lock(mu_);
            dones_[id] = std::move(done);
        }
        if (!ch_->send(wire::msg::submit, id, w.take())) return SAMBAND_RETRY;
        auto f = fut.get();
        wire::reader rd(f.payload);
        std::uint32_t st = SAMBAND_INTERNAL;
        rd.u32(st);
        if (st != SAMBAND_OK) {
            std::lock_guard lock(mu_);
            dones_.erase(id);
        }
        return to_status(st);
    }
    void complete(std::string_view, std::uint64_t token, completion c) override {
        wire::writer w;
        w.u64(token).u32(static_cast<std::uint32_t>(c.status)).str(c.external_id).str(c.message);
        ch_->send(wire::msg::complete, 0, w.take());
        release(token);
    }
    void receipt(std::string_view, std::string_view external_id, std::int32_t kind,
                 std::string_view text) override {
        wire::writer w;
        w.str(external_id).u32(static_cast<std::uint32_t>(kind)).str(text);
        ch_->send(wire::msg::receipt, 0, w.take());
    }
    boost::system::result<std::size_t> read_attachment(std::uint64_t handle, std::uint64_t offset,
                                                       std::uint8_t* out,
                                                       std::size_t capacity) override {
        int fd = static_cast<int>(handle) - 1;
        {
            std::lock_guard lock(mu_);
            if (handle == 0 || !open_.count(fd))
                return boost::system::error_code(EBADF, boost::system::system_category());
        }
        ssize_t n = ::pread(fd, out, capacity, static_cast<off_t>(offset));
        if (n < 0) return boost::system::error_code(errno, boost::system::system_category());
        return static_cast<std::size_t>(n);
    }

    // Descriptors of a delivery, kept open until it completes (or is refused).
    void hold(std::uint64_t token, std::vector<int> fds) {
        std::lock_guard lock(mu_);
        for (int fd : fds) open_.insert(fd);
        auto& v = held_[token];
        v.insert(v.end(), fds.begin(), fds.end());
    }
    void release(std::uint64_t token) {
        std::lock_guard lock(mu_);
        auto it = held_.find(token);
        if (it == held_.end()) return;
        for (int fd : it->second) {
            open_.erase(fd);
            ::close(fd);
        }
        held_.erase(it);
    }
    void opened(const std::vector<int>& fds) {
        std::lock_guard lock(mu_);
        for (int fd : fds) open_.insert(fd);
    }
    void closed(const std::vector<int>& fds) {
        std::lock_guard lock(mu_);
        for (int fd : fds) {
            open_.erase(fd);
            ::close(fd);
        }
    }

    // An answer from the parent to one of our requests.
    void answer(wire::frame f) {
        std::lock_guard lock(mu_);
        if (f.type == wire::msg::submit_done) {
            auto it = dones_.find(f.id);
            if (it == dones_.end()) return;
            auto done = std::move(it->second);
            dones_.erase(it);
            wire::reader rd(f.payload);
            std::uint32_t st = SAMBAND_INTERNAL, dup = 0;
            submit_result r;
            rd.u32(st);
            rd.str(r.event_id);
            rd.u32(dup);
            rd.str(r.message);
            r.status = to_status(st);
            r.duplicate = dup != 0;
            {
                std::lock_guard alock(answers_mu_);
                answers_q_.emplace_back(std::move(done), std::move(r));
            }
            answers_cv_.notify_one();
            return;
        }
        auto it = waiting_.find(f.id);
        if (it == waiting_.end()) return;
        it->second.set_value(std::move(f));
        waiting_.erase(it);
    }

private:
    // The plugin's submit callbacks run here, one after another in the order the answers came (as
    // the daemon runs them after its commits), never on the thread that reads the socket (a
    // callback may submit again and wait for that answer). A thread per answer, as before, put a
    // source's whole window of threads (stacks and malloc arenas) under the child's RLIMIT_AS
    // at once: thread creation failed and the child ended ("terminate called") mid-import.
    void run_answers() {
        for (;;) {
            std::pair<std::function<void(const submit_result&)>, submit_result> a;
            {
                std::unique_lock lock(answers_mu_);
                answers_cv_.wait(lock, [&] { return answers_stop_ || !answers_q_.empty(); });
                if (answers_q_.empty()) return;
                a = std::move(answers_q_.front());
                answers_q_.pop_front();
            }
            if (a.first) a.first(a.second);
        }
    }

    std::pair<std::uint64_t, std::future<wire::frame>> expect() {
        std::lock_guard lock(mu_);
        std::uint64_t id = next_++;
        return {id, waiting_[id].get_future()};
    }

    std::shared_ptr<channel> ch_;
    std::mutex mu_;
    std::uint64_t next_ = 1;
    std::map<std::uint64_t, std::promise<wire::frame>> waiting_;
    std::map<std::uint64_t, std::function<void(const submit_result&)>> dones_;
    std::map<std::uint64_t, std::vector<int>> held_;
    std::set<int> open_;
    std::mutex answers_mu_;
    std::condition_variable answers_cv_;
    std::deque<std::pair<std::function<void(const submit_result&)>, submit_result>> answers_q_;
    bool answers_stop_ = false;
    std::thread answers_;
};

void harden(std::uint64_t memory_limit_mb) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::prctl(PR_SET_DUMPABLE, 0);
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    rlimit core{0, 0};
    ::setrlimit(RLIMIT_CORE, &core);
    if (memory_limit_mb > 0) {
        rlim_t bytes = static_cast<rlim_t>(memory_limit_mb) << 20;
        rlimit as{bytes, bytes};
        ::setrlimit(RLIMIT_AS, &as);
    }
    // Only stdin/stdout/stderr and the socket stay open: nothing of the daemon (its store) leaks.
    ::close_range(kChildSocket + 1, ~0u, 0);
    ::fcntl(kChildSocket, F_SETFD, FD_CLOEXEC);
}

bool read_event(wire::reader& rd, std::vector<int>& fds, std::size_t& next_fd, event_ref& e) {
    std::uint32_t n;
    if (!rd.str(e.envelope_json) || !rd.u32(n)) return false;
    for (std::uint32_t i = 0; i < n; ++i) {
        attachment_ref a;
        std::uint32_t has_fd;
        if (!rd.str(a.id) || !rd.str(a.filename) || !rd.str(a.media_type) ||
            !rd.str(a.sha256_hex) || !rd.u64(a.size) || !rd.u32(has_fd))
            return false;
        if (has_fd) {
            if (next_fd >= fds.size()) return false;
            int fd = fds[next_fd++];
            a.path = "/proc/self/fd/" + std::to_string(fd);
            a.handle = static_cast<std::uint64_t>(fd) + 1;
        }
        e.attachments.push_back(std::move(a));
    }
    return true;
}

bool read_delivery(wire::reader& rd, std::vector<int>& fds, delivery_ref& d) {
    std::size_t next_fd = 0;
    return rd.u64(d.token) && rd.str(d.delivery_id) && rd.str(d.event_id) &&
           rd.str(d.destination) && rd.u32(d.attempt) && rd.i64(d.deadline_unix_ms) &&
           read_event(rd, fds, next_fd, d.event);
}

std::string reply_payload(const call_result& r) {
    wire::writer w;
    w.u32(static_cast<std::uint32_t>(r.status)).str(r.message);
    return w.take();
}

}  // namespace

int run_plugin_host(int socket_fd, const std::string& plugin_path, std::uint64_t memory_limit_mb) {
    if (socket_fd != kChildSocket) return 2;
    harden(memory_limit_mb);
    auto ch = std::make_shared<channel>(socket_fd);
    registry reg;
    auto loaded = reg.load(plugin_path);
    {
        wire::writer w;
        if (!loaded) {
            w.u32(0).str(loaded.error().reason);
            ch->send(wire::msg::hello, 0, w.take());
            return 3;
        }
        const loaded_plugin& p = **loaded;
        w.u32(1)
            .str(p.name)
            .str(p.version)
            .str(p.description)
            .u32(p.abi_version)
            .u32(p.kinds)
            .u32(p.capabilities)
            .u32(p.renders ? 1 : 0)
            .str(p.config_schema);
        if (!ch->send(wire::msg::hello, 0, w.take())) return 3;
    }
    const loaded_plugin& plugin = **loaded;
    child_services svc(ch);
    std::unique_ptr<instance> inst;
    instance_options io;
    io.call_timeout = std::chrono::hours(24);  // the parent holds the deadline

    // Requests run one at a time on this worker; the main thread keeps reading so that answers
    // to the plugin's own requests (secrets, submissions) arrive while a call is running.
    std::mutex qmu;
    std::condition_variable qcv;
    std::deque<wire::frame> queue;
    bool eof = false;
    std::thread worker([&] {
        for (;;) {
            wire::frame f;
            {
                std::unique_lock lock(qmu);
                qcv.wait(lock, [&] { return eof || !queue.empty(); });
                if (queue.empty()) return;
                f = std::move(queue.front());
                queue.pop_front();
            }
            wire::reader rd(f.payload);
            std::string out;
            call_result none{SAMBAND_INTERNAL, "the plugin instance was not created"};
            switch (f.type) {
                case wire::msg::create: {
                    std::string endpoint, config;
                    std::uint32_t mask = ~0u;
                    rd.str(endpoint);
                    rd.str(config);
                    rd.u32(mask);
                    svc.log_mask = mask;
                    auto r = instance::create(plugin, endpoint, config, svc, io);
                    if (r) inst = std::move(*r);
                    out = reply_payload(r ? call_result{SAMBAND_OK, {}}
                                          : call_result{SAMBAND_INVALID, r.error()});
                    break;
                }
                case wire::msg::start:
                    out = reply_payload(inst ? inst->start() : none);
                    break;
                case wire::msg::stop:
                    if (inst) inst->stop();
                    out = reply_payload({SAMBAND_OK, {}});
                    break;
                case wire::msg::destroy:
                    inst.reset();
                    ch->send(wire::msg::reply, f.id, reply_payload({SAMBAND_OK, {}}));
                    std::_Exit(0);  // plugin threads and statics are not waited for
                case wire::msg::deliver: {
                    delivery_ref d;
                    if (!read_delivery(rd, f.fds, d)) std::_Exit(4);
                    svc.hold(d.token, f.fds);
                    auto r = inst ? inst->deliver(d) : none;
                    if (!r.ok()) svc.release(d.token);
                    out = reply_payload(r);
                    break;
                }
                case wire::msg::render: {
                    delivery_ref d;
                    if (!read_delivery(rd, f.fds, d)) std::_Exit(4);
                    svc.opened(f.fds);
                    wire::writer w;
                    if (!inst) {
                        w.u32(none.status).str(none.message).str("").str("");
                    } else {
                        auto r = inst->render(d);
                        if (r)
                            w.u32(SAMBAND_OK).str("").str(r->bytes).str(r->name);
                        else
                            w.u32(static_cast<std::uint32_t>(r.error().status))
                                .str(r.error().message)
                                .str("")
                                .str("");
                    }
                    svc.closed(f.fds);
                    out = w.take();
                    break;
                }
                case wire::msg::transform: {
                    event_ref e;
                    std::size_t next_fd = 0;
                    if (!read_event(rd, f.fds, next_fd, e)) std::_Exit(4);
                    svc.opened(f.fds);
                    wire::writer w;
                    if (!inst) {
                        w.u32(none.status).str(none.message).str("");
                    } else {
                        auto r = inst->transform(e);
                        if (r)
                            w.u32(SAMBAND_OK).str("").str(*r);
                        else
                            w.u32(static_cast<std::uint32_t>(r.error().status))
                                .str(r.error().message)
                                .str("");
                    }
                    svc.closed(f.fds);
                    out = w.take();
                    break;
                }
                default:
                    std::_Exit(4);
            }
            ch->send(wire::msg::reply, f.id, out);
        }
    });
    for (;;) {
        auto f = wire::receive(socket_fd);
        if (!f) break;  // the daemon is gone or closed the socket
        if (f->type == wire::msg::secret_answer || f->type == wire::msg::submit_ack ||
            f->type == wire::msg::submit_done) {
            svc.answer(std::move(*f));
            continue;
        }
        std::lock_guard lock(qmu);
        queue.push_back(std::move(*f));
        qcv.notify_one();
    }
    std::_Exit(0);  // the daemon went away: nothing to hand back
}

}  // namespace samband::plugin
