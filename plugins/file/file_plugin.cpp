// The file plugin: watches an inbox folder (source) and writes deliveries into an outbox (sink).
//
// Inbox convention (write-then-rename): a writer puts attachment files in place first, then
// writes the event as NAME.json.tmp (or any name starting with '.') and renames it to NAME.json.
// Only *.json files are read; the event lists its attachments as attachments[].file (relative
// file names in the inbox). After the host's answer the files move to done/ (accepted) or to
// error/ with NAME.json.reason (refused); a RETRY leaves them for the next scan.
//
// Outbox: each delivery becomes NAME.json (the event as delivered) with its attachments beside it
// as NAME.<filename>, each written to a temporary file, fsynced and renamed, so a reader never
// sees half a file. NAME comes from the delivery id, so a repeat replaces, never adds.
#include <samband/json.hpp>
#include <samband/sdk.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
using samband::sdk::error;
using samband::sdk::log_level;

// Why an inbox entry is not taken ("" for a regular file): read from lstat, so a symbolic link is
// never followed and a FIFO is never opened (which would block the scan).
std::string not_a_regular_file(const fs::file_status& st) {
    switch (st.type()) {
        case fs::file_type::regular:
            return {};
        case fs::file_type::symlink:
            return "is a symbolic link; the inbox takes regular files only";
        case fs::file_type::fifo:
            return "is a FIFO; the inbox takes regular files only";
        case fs::file_type::directory:
            return "is a folder; the inbox takes regular files only";
        case fs::file_type::socket:
            return "is a socket; the inbox takes regular files only";
        case fs::file_type::block:
        case fs::file_type::character:
            return "is a device; the inbox takes regular files only";
        default:
            return "is not a regular file";
    }
}

// Reads an inbox file safely: no symbolic link followed (O_NOFOLLOW), never blocking on a FIFO
// (O_NONBLOCK), a regular file only and its size checked with fstat on the open descriptor before
// a byte is read. Sets `text`, or returns the reason it was not read.
std::string read_inbox_file(const fs::path& p, std::uint64_t max_bytes, std::string& text) {
    int fd = ::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return std::string("is a symbolic link; the inbox takes regular files only");
        return std::string("cannot be opened: ") + std::strerror(e);
    }
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } guard{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) return std::string("cannot be read: ") + std::strerror(errno);
    if (!S_ISREG(st.st_mode)) return std::string("is not a regular file");
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
        return "is " + std::to_string(st.st_size) + " bytes, over max_file_bytes (" +
               std::to_string(max_bytes) + ")";
    text.assign(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < text.size()) {
        ssize_t n = ::read(fd, text.data() + got, text.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::string("cannot be read: ") + std::strerror(errno);
        if (n == 0) break;  // shrank while read: what is there is the document
        got += static_cast<std::size_t>(n);
    }
    text.resize(got);
    return {};
}

bool fsync_dir(const fs::path& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
}

// Writes `target` atomically from chunks produced by `fill` (tmp, fsync, rename).
bool write_atomic(const fs::path& target,
                  const std::function<bool(const std::function<bool(std::string_view)>&)>& fill) {
    fs::path tmp = target.parent_path() / ("." + target.filename().string() + ".tmp");
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    auto write_all = [&](std::string_view s) {
        while (!s.empty()) {
            ssize_t n = ::write(fd, s.data(), s.size());
            if (n <= 0) return false;
            s.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    };
    bool ok = fill(write_all) && ::fsync(fd) == 0;
    ok = (::close(fd) == 0) && ok;
    std::error_code ec;
    if (ok) fs::rename(tmp, target, ec);
    if (!ok || ec) {
        fs::remove(tmp, ec);
        return false;
    }
    return true;
}

// FNV-1a 64: a stable content fingerprint for derived idempotency keys.
struct fingerprint_hash {
    std::uint64_t h = 1469598103934665603ull;
    void add(std::string_view s) {
        for (unsigned char c : s) {
            h ^= c;
            h *= 1099511628211ull;
        }
    }
    std::string hex() const {
        char buf[17];
        std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
        return buf;
    }
};

std::string fingerprint(std::string_view s) {
    fingerprint_hash f;
    f.add(s);
    return f.hex();
}

// Adds a file's bytes to `f`; false when it cannot be read whole.
bool add_file(fingerprint_hash& f, const fs::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[1 << 16];
    bool ok = true;
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) ok = false;
        if (n <= 0) break;
        f.add(std::string_view(buf, static_cast<std::size_t>(n)));
    }
    ::close(fd);
    return ok;
}

std::string safe_name(std::string s) {
    for (char& c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            c = '_';
    if (s.empty() || s[0] == '.') s = "_" + s;
    return s;
}

class file_plugin {
public:
    static constexpr const char* name = "file";
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description =
        "Files: an inbox folder as a source (write-then-rename) and an atomic outbox as a sink";
    static constexpr bool is_source = true;
    // The endpoint config's JSON Schema; the kit creates the plugin with examples[0]
    // (in a scratch folder) when run without --config.
    static constexpr const char* config_schema = R"json(
        {
          "$schema": "http://json-schema.org/draft-04/schema#",
          "title": "file plugin endpoint config",
          "type": "object",
          "additionalProperties": false,
          "anyOf": [{"required": ["inbox"]}, {"required": ["outbox"]}],
          "properties": {
            "inbox": {
              "type": "string",
              "description": "source: folder of envelope files (write-then-rename); done/ and error/ are made inside"
            },
            "outbox": {
              "type": "string",
              "description": "sink: folder where each delivery is written atomically"
            },
            "naming": {
              "type": "string",
              "default": "{destination}-{delivery_id}",
              "description": "sink: file name pattern"
            },
            "on_done": {
              "enum": ["move", "delete"],
              "default": "move",
              "description": "source: what happens to a file once stored"
            },
            "poll_ms": {
              "type": "integer",
              "minimum": 10,
              "description": "source: how often the inbox is scanned"
            },
            "window": {
              "type": "integer",
              "minimum": 1,
              "description": "source: files in flight at once"
            },
            "max_file_bytes": {
              "type": "integer",
              "minimum": 1024,
              "default": 67108864,
              "description": "source: a larger inbox file is refused (checked with fstat before reading)"
            }
          },
          "examples": [{"inbox": "inbox", "outbox": "outbox"}, {"outbox": "/var/spool/samband/out"}]
        }
    )json";

    file_plugin(samband::sdk::host h, std::string_view config) : host_(h) {
        rapidjson::Document d;
        if (std::string err = samband::json::parse(config, d); !err.empty() || !d.IsObject())
            throw error(SAMBAND_INVALID, "file plugin: config must be a JSON object" +
                                             (err.empty() ? std::string() : " (" + err + ")"));
        auto str = [&](const char* k) {
            auto it = d.FindMember(k);
            if (it == d.MemberEnd()) return std::string();
            if (!it->value.IsString())
                throw error(SAMBAND_INVALID,
                            std::string("file plugin: \"") + k + "\" must be a string");
            return std::string(it->value.GetString());
        };
        inbox_ = str("inbox");
        outbox_ = str("outbox");
        naming_ = str("naming");
        if (naming_.empty()) naming_ = "{destination}-{delivery_id}";
        std::string on_done = str("on_done");
        delete_done_ = on_done == "delete";
        if (!on_done.empty() && on_done != "move" && on_done != "delete")
            throw error(SAMBAND_INVALID, "file plugin: \"on_done\" must be \"move\" or \"delete\"");
        if (d.HasMember("poll_ms")) {
            if (!d["poll_ms"].IsInt() || d["poll_ms"].GetInt() < 10)
                throw error(SAMBAND_INVALID, "file plugin: \"poll_ms\" must be an integer >= 10");
            poll_ms_ = d["poll_ms"].GetInt();
        }
        if (d.HasMember("window")) {
            if (!d["window"].IsInt() || d["window"].GetInt() < 1)
                throw error(SAMBAND_INVALID, "file plugin: \"window\" must be a positive integer");
            window_ = static_cast<std::size_t>(d["window"].GetInt());
        }
        if (d.HasMember("max_file_bytes")) {
            if (!d["max_file_bytes"].IsInt64() || d["max_file_bytes"].GetInt64() < 1024)
                throw error(SAMBAND_INVALID,
                            "file plugin: \"max_file_bytes\" must be an integer >= 1024");
            max_file_bytes_ = static_cast<std::uint64_t>(d["max_file_bytes"].GetInt64());
        }
        if (inbox_.empty() && outbox_.empty())
            throw error(SAMBAND_INVALID,
                        "file plugin: give \"inbox\" (a source), \"outbox\" (a sink) or both");
        std::error_code ec;
        for (const auto& dir : {inbox_, outbox_}) {
            if (dir.empty()) continue;
            fs::create_directories(dir, ec);
            if (ec)
                throw error(SAMBAND_INVALID,
                            "file plugin: cannot create folder " + dir + ": " + ec.message());
        }
        if (!inbox_.empty()) {
            fs::create_directories(fs::path(inbox_) / "done", ec);
            fs::create_directories(fs::path(inbox_) / "error", ec);
        }
        if (!outbox_.empty()) sink_worker_ = std::make_unique<samband::sdk::worker>();
    }

    ~file_plugin() { stop(); }

    void start() {
        if (inbox_.empty() || running_) return;
        running_ = true;
        watcher_ = std::thread([this] { watch(); });
    }

    void stop() {
        if (sink_worker_) sink_worker_->stop();  // writes in progress finish, queued ones RETRY
        {
            std::lock_guard lock(mu_);
            if (!running_) return;
            running_ = false;
        }
        cv_.notify_all();
        if (watcher_.joinable()) watcher_.join();
        // Wait briefly for answers to submissions already made (their files stay if none comes).
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(5),
                     [&] { return in_flight_.empty() || answers_.size() >= in_flight_.size(); });
        process_answers(lock);
    }

    // Returns at once: the outbox writes (attachments streamed, fsync, rename) run on the sink
    // worker thread.
    void deliver(samband::sdk::delivery d) {
        if (!sink_worker_) {
            d.fail("this file endpoint has no outbox (it is a source only)");
            return;
        }
        sink_worker_->post(std::move(d), [this](samband::sdk::delivery& d) { write_delivery(d); });
    }

    void write_delivery(samband::sdk::delivery& d) {
        std::string base = file_base(d.destination(), d.id());
        fs::path dir(outbox_);
        for (const auto& a : d.event().attachments) {
            fs::path target = dir / (base + "." + safe_name(std::string(a.filename)));
            bool ok = write_atomic(target, [&](const std::function<bool(std::string_view)>& w) {
                bool good = true;
                samband_status st =
                    host_.read_attachment(a, [&](std::string_view c) { good = good && w(c); });
                return st == SAMBAND_OK && good;
            });
            if (!ok) {
                d.retry("cannot write attachment " + target.string());
                return;
            }
        }
        fs::path json = dir / (base + ".json");
        std::string_view env = d.event().envelope_json;
        if (!write_atomic(json,
                          [&](const std::function<bool(std::string_view)>& w) { return w(env); }) ||
            !fsync_dir(dir)) {
            d.retry("cannot write " + json.string());
            return;
        }
        d.succeed(json.filename().string());
    }

    samband::sdk::rendered render(const samband::sdk::delivery_view& v) {
        return {std::string(v.event.envelope_json), file_base(v.destination, v.id) + ".json"};
    }

private:
    std::string file_base(std::string_view destination, std::string_view delivery_id) const {
        std::string out = naming_;
        auto replace = [&](const std::string& key, std::string_view val) {
            for (auto p = out.find(key); p != std::string::npos; p = out.find(key))
                out.replace(p, key.size(), val);
        };
        replace("{destination}", destination);
        replace("{delivery_id}", delivery_id);
        return safe_name(out);
    }

    struct answer {
        std::string file;
        std::vector<std::string> attachments;
        samband::sdk::submit_result result;
    };

    void watch() {
        std::unique_lock lock(mu_);
        while (running_) {
            process_answers(lock);
            lock.unlock();
            scan();
            lock.lock();
            cv_.wait_for(lock, std::chrono::milliseconds(poll_ms_),
                         [&] { return !running_ || !answers_.empty(); });
        }
    }

    void process_answers(std::unique_lock<std::mutex>& lock) {
        std::deque<answer> todo;
        todo.swap(answers_);
        lock.unlock();
        for (auto& a : todo) finish(a);
        lock.lock();
        for (auto& a : todo) in_flight_.erase(a.file);
    }

    void finish(const answer& a) {
        fs::path in(inbox_);
        std::error_code ec;
        if (a.result.status != SAMBAND_RETRY) {
            std::lock_guard lock(mu_);
            backoff_.erase(a.file);
        }
        if (a.result.status == SAMBAND_OK) {
            if (delete_done_) {
                for (const auto& f : a.attachments) fs::remove(in / f, ec);
                fs::remove(in / a.file, ec);
            } else {
                for (const auto& f : a.attachments) fs::rename(in / f, in / "done" / f, ec);
                fs::rename(in / a.file, in / "done" / a.file, ec);
            }
            host_.log(log_level::debug, "taken " + a.file + " as event " + a.result.event_id +
                                            (a.result.duplicate ? " (duplicate)" : ""));
        } else if (a.result.status == SAMBAND_RETRY) {
            // The file stays; it is offered again after a delay doubling from poll_ms up to
            // kMaxRetryDelay, so a host that cannot take it now (full attachment folder, busy
            // store) is not hammered, and only its first RETRY is a warning.
            bool first = false;
            std::chrono::milliseconds delay;
            {
                std::lock_guard lock(mu_);
                auto [it, fresh] = backoff_.try_emplace(a.file);
                first = fresh;
                it->second.delay = fresh ? std::chrono::milliseconds(poll_ms_)
                                         : std::min(it->second.delay * 2, kMaxRetryDelay);
                it->second.next = std::chrono::steady_clock::now() + it->second.delay;
                delay = it->second.delay;
            }
            host_.log(first ? log_level::warn : log_level::debug,
                      "will retry " + a.file + " in " + std::to_string(delay.count()) +
                          " ms: " + a.result.message);
        } else {
            for (const auto& f : a.attachments) fs::rename(in / f, in / "error" / f, ec);
            std::string reason =
                a.result.message.empty() ? "refused by the host" : a.result.message;
            write_atomic(
                in / "error" / (a.file + ".reason"),
                [&](const std::function<bool(std::string_view)>& w) { return w(reason + "\n"); });
            fs::rename(in / a.file, in / "error" / a.file, ec);
            host_.log(log_level::warn, "refused " + a.file + ": " + reason);
        }
    }

    void scan() {
        std::vector<std::string> names;
        std::error_code ec;
        std::map<std::string, std::string> refused;  // name → why it is not a regular file
        for (const auto& e : fs::directory_iterator(inbox_, ec)) {
            std::string n = e.path().filename().string();
            if (n.empty() || n[0] == '.' || n.size() < 6 || n.substr(n.size() - 5) != ".json")
                continue;
            std::error_code sec;
            auto st = e.symlink_status(sec);
            if (sec) continue;  // gone meanwhile
            if (std::string why = not_a_regular_file(st); !why.empty()) refused[n] = why;
            names.push_back(n);
        }
        std::sort(names.begin(), names.end());
        {
            std::lock_guard lock(mu_);  // forget the back-off of files no longer in the inbox
            for (auto b = backoff_.begin(); b != backoff_.end();)
                b = std::binary_search(names.begin(), names.end(), b->first) ? std::next(b)
                                                                             : backoff_.erase(b);
        }
        for (const auto& n : names) {
            {
                std::lock_guard lock(mu_);
                if (!running_ || in_flight_.size() >= window_) return;
                if (in_flight_.count(n)) continue;
                if (auto b = backoff_.find(n);
                    b != backoff_.end() && std::chrono::steady_clock::now() < b->second.next)
                    continue;
                in_flight_.insert(n);
            }
            if (auto r = refused.find(n); r != refused.end())
                refuse(n, n + " " + r->second);
            else
                submit_file(n);
        }
    }

    void submit_file(const std::string& n) {
        fs::path path = fs::path(inbox_) / n;
        std::string text;
        if (std::string why = read_inbox_file(path, max_file_bytes_, text); !why.empty()) {
            refuse(n, n + " " + why);
            return;
        }
        std::vector<samband::sdk::submit_attachment> atts;
        std::vector<std::string> att_files;
        rapidjson::Document d;
        // Unreadable text goes to the host as it is: ingest refuses it with the reason and keeps
        // it in the error store.
        if (samband::json::parse(text, d).empty() && d.IsObject()) {
            // A derived key covers the JSON text and, when there are any, every attachment
            // file's name and bytes: the same JSON dropped again with a corrected attachment is
            // a new event, not a duplicate (nor a conflict) of the first.
            fingerprint_hash key_hash;
            key_hash.add(text);
            if (d.HasMember("attachments") && d["attachments"].IsArray()) {
                std::size_t index = 0;
                for (auto& a : d["attachments"].GetArray()) {
                    const std::string at = "/attachments/" + std::to_string(index++) + "/file";
                    if (!a.IsObject() || !a.HasMember("file") || !a["file"].IsString()) continue;
                    std::string f = a["file"].GetString();
                    if (f.find('/') != std::string::npos || f.empty() || f[0] == '.') {
                        refuse(n, n + " " + at + ": must be a plain file name in the inbox", text);
                        return;
                    }
                    std::error_code aec;
                    auto ast = fs::symlink_status(fs::path(inbox_) / f, aec);
                    if (!aec && ast.type() != fs::file_type::not_found &&
                        !not_a_regular_file(ast).empty()) {
                        refuse(n, n + " " + at + ": the file " + not_a_regular_file(ast), text);
                        return;
                    }
                    if (aec || ast.type() == fs::file_type::not_found) {
                        refuse(n, n + " " + at + ": the file is not in the inbox", text);
                        return;
                    }
                    samband::sdk::submit_attachment sa;
                    sa.filename = a.HasMember("filename") && a["filename"].IsString()
                                      ? a["filename"].GetString()
                                      : f;
                    sa.media_type = a.HasMember("media_type") && a["media_type"].IsString()
                                        ? a["media_type"].GetString()
                                        : "";
                    sa.path = fs::absolute(fs::path(inbox_) / f).string();
                    key_hash.add(std::string_view("\0", 1));
                    key_hash.add(f);
                    key_hash.add(std::string_view("\0", 1));
                    if (!add_file(key_hash, fs::path(inbox_) / f)) {
                        push_answer({n,
                                     {},
                                     {SAMBAND_RETRY,
                                      {},
                                      false,
                                      "attachment file " + f + " could not be read"}});
                        return;
                    }
                    atts.push_back(std::move(sa));
                    att_files.push_back(f);
                }
            }
            bool changed = false;
            if (!d.HasMember("idempotency_key")) {
                std::string key = "file:" + n + ":" + key_hash.hex();
                d.AddMember("idempotency_key", rapidjson::Value(key.c_str(), d.GetAllocator()),
                            d.GetAllocator());
                changed = true;
            }
            if (changed) {
                rapidjson::StringBuffer sb;
                rapidjson::Writer<rapidjson::StringBuffer> w(sb);
                d.Accept(w);
                text = sb.GetString();
            }
        }
        samband_status st =
            host_.submit(text, atts, [this, n, att_files](const samband::sdk::submit_result& r) {
                push_answer({n, att_files, r});
            });
        if (st != SAMBAND_OK) {
            std::lock_guard lock(mu_);
            in_flight_.erase(n);  // try again on the next scan
        }
    }

    // An inbox entry the plugin refuses: the host keeps the refusal in its error store (a
    // samband.input.rejected submission with `input`: empty when nothing was read, the event's
    // text when one of its attachments is refused), then the entry moves to error/ with the reason.
    void refuse(const std::string& n, const std::string& why, const std::string& input = {}) {
        rapidjson::Document d(rapidjson::kObjectType);
        auto& a = d.GetAllocator();
        std::string key = "file:" + n + ":refused:" + fingerprint(why);
        d.AddMember("schema", "samband.event/1", a);
        d.AddMember("type", "samband.input.rejected", a);
        d.AddMember("idempotency_key", rapidjson::Value(key.c_str(), a), a);
        rapidjson::Value r(rapidjson::kObjectType);
        r.AddMember("reason", rapidjson::Value(why.c_str(), a), a);
        r.AddMember(
            "input",
            rapidjson::Value(input.c_str(), static_cast<rapidjson::SizeType>(input.size()), a), a);
        d.AddMember("rejected", r, a);
        rapidjson::StringBuffer sb;
        rapidjson::Writer<rapidjson::StringBuffer> w(sb);
        d.Accept(w);
        samband_status st =
            host_.submit(std::string_view(sb.GetString(), sb.GetSize()), {},
                         [this, n, why](const samband::sdk::submit_result& res) {
                             if (res.status == SAMBAND_RETRY)
                                 push_answer({n, {}, res});  // stays; refused again on a later scan
                             else
                                 push_answer({n, {}, {SAMBAND_INVALID, {}, false, why}});
                         });
        if (st != SAMBAND_OK) {
            std::lock_guard lock(mu_);
            in_flight_.erase(n);
        }
    }

    void push_answer(answer a) {
        {
            std::lock_guard lock(mu_);
            answers_.push_back(std::move(a));
        }
        cv_.notify_all();
    }

    samband::sdk::host host_;
    std::string inbox_, outbox_, naming_;
    bool delete_done_ = false;
    int poll_ms_ = 200;
    std::size_t window_ = 256;
    std::uint64_t max_file_bytes_ = 64ull * 1024 * 1024;
    std::mutex mu_;
    std::condition_variable cv_;
    bool running_ = false;
    std::set<std::string> in_flight_;
    struct retry_at {
        std::chrono::steady_clock::time_point next;
        std::chrono::milliseconds delay{0};
    };
    std::map<std::string, retry_at> backoff_;  // files the host asked to retry: not before next
    static constexpr std::chrono::milliseconds kMaxRetryDelay{10000};
    std::deque<answer> answers_;
    std::thread watcher_;
    std::unique_ptr<samband::sdk::worker> sink_worker_;  // only with an outbox; stopped first
};

}  // namespace

SAMBAND_PLUGIN(file_plugin)
