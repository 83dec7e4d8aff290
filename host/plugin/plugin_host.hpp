// Loads plugins (Boost.DLL) and wraps one plugin instance per endpoint behind a safe C++ API.
#pragma once

#include <samband/plugin.h>

#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace samband::plugin {

// A plugin library that passed every load check. Never unloaded while the process runs.
// The host reads the plugin's descriptor and tables once, through samband_copy_struct, and keeps
// those checked copies: `descriptor` points at them (and at them only).
struct loaded_plugin {
    std::string path;
    std::string name;
    std::string version;
    std::string description;
    std::uint32_t abi_version = 0;
    std::uint32_t kinds = 0;
    std::uint32_t capabilities = 0;
    std::string config_schema;  // the plugin's JSON Schema for endpoint configs; empty = none
    // Null for a plugin probed in a child (isolation "process"): it is never loaded here.
    const samband_plugin_descriptor* descriptor = nullptr;
    bool renders = false;  // the sink table has render() (SAMBAND_CAP_RENDER)

    samband_plugin_descriptor desc{};
    samband_sink_api sink{};
    samband_transform_api transform{};
    samband_source_api source{};
};

// Why a load failed: one line naming the file and the reason.
struct load_failure {
    std::string path;
    std::string reason;
};

// The loaded plugins of one process, by unique name.
class registry {
public:
    registry();
    ~registry();
    registry(const registry&) = delete;
    registry& operator=(const registry&) = delete;

    // Loads `path` with RTLD_NOW|RTLD_LOCAL and checks: entry present, version window, struct
    // sizes, required callbacks, unique name. Loading the same path twice returns the first.
    // Never throws for a bad plugin; the failure says why.
    boost::system::result<const loaded_plugin*, load_failure> load(const std::string& path);
    // Loads `path` in a throwaway `samband plugin-host` child (same checks) and records what it
    // reported; this process never maps the library. A crash while loading is a failure.
    boost::system::result<const loaded_plugin*, load_failure> probe(const std::string& path,
                                                                    const std::string& host_exe);
    const loaded_plugin* find(std::string_view name) const;
    std::vector<const loaded_plugin*> list() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// A copy of what a source submitted (the host owns it after submit returns).
struct submission {
    std::string envelope_json;
    struct attachment {
        std::string filename;
        std::string media_type;
        std::string bytes;  // when path is empty
        std::string path;
    };
    std::vector<attachment> attachments;
};

struct submit_result {
    samband_status status = SAMBAND_INTERNAL;
    std::string event_id;
    bool duplicate = false;
    std::string message;
};

struct completion {
    samband_status status = SAMBAND_INTERNAL;  // normalised: unknown → INTERNAL
    std::string external_id;
    std::string message;
};

// What the host offers plugin instances; the daemon and `plugin check` implement it.
// THREAD: every function may be called from any thread.
class host_services {
public:
    virtual ~host_services() = default;
    virtual bool log_enabled(std::string_view endpoint, samband_log_level level) = 0;
    // `message` is already masked by the instance wrapper.
    virtual void log(std::string_view endpoint, samband_log_level level,
                     std::string_view message) = 0;
    virtual std::optional<std::string> secret(std::string_view endpoint, std::string_view name) = 0;
    // Returns OK when queued, then calls `done` exactly once after the commit.
    virtual samband_status submit(std::string_view endpoint, submission sub,
                                  std::function<void(const submit_result&)> done) = 0;
    virtual void complete(std::string_view endpoint, std::uint64_t token, completion c) = 0;
    virtual void receipt(std::string_view endpoint, std::string_view external_id, std::int32_t kind,
                         std::string_view text) = 0;
    virtual boost::system::result<std::size_t> read_attachment(std::uint64_t handle,
                                                               std::uint64_t offset,
                                                               std::uint8_t* out,
                                                               std::size_t capacity) = 0;
};

// The outcome of one call into a plugin: status plus the text it set (or the host's reason).
struct call_result {
    samband_status status = SAMBAND_INTERNAL;
    std::string message;
    bool ok() const { return status == SAMBAND_OK; }
};

// An attachment offered to a plugin (host-side owner of the strings the C struct points to).
struct attachment_ref {
    std::string id, filename, media_type, sha256_hex, path;
    std::uint64_t size = 0;
    std::uint64_t handle = 0;
};

// An event offered to a plugin.
struct event_ref {
    std::string envelope_json;
    std::vector<attachment_ref> attachments;
};

// A delivery offered to a sink.
struct delivery_ref {
    std::uint64_t token = 0;
    std::string delivery_id, event_id, destination;
    std::uint32_t attempt = 1;
    std::int64_t deadline_unix_ms = 0;
    event_ref event;
};

struct rendered {
    std::string bytes;
    std::string name;
};

// Attachment bytes kept in files and offered by handle (preview and the conformance kit, where
// nothing is stored). THREAD: safe from any thread.
class attachment_files {
public:
    std::uint64_t add(std::string path);
    boost::system::result<std::size_t> read(std::uint64_t handle, std::uint64_t offset,
                                            std::uint8_t* out, std::size_t capacity) const;

private:
    mutable std::mutex mu_;
    std::uint64_t next_ = 1;
    std::unordered_map<std::uint64_t, std::string> files_;
};

// The daemon's deadline for one call into a plugin (create, start, deliver, render, transform);
// stop and destroy get ten times as long. The conformance kit uses the same.
constexpr std::chrono::milliseconds kCallTimeout{SAMBAND_CALL_DEADLINE_MS};

// How a plugin runs in a child `samband plugin-host` (isolation "process").
struct process_options {
    std::string host_exe;                           // the samband binary; empty = this executable
    int max_crashes = 5;                            // crashes (or hangs) within `crash_window` that
    std::chrono::milliseconds crash_window{60000};  // quarantine the endpoint
    std::chrono::milliseconds backoff_base{200};    // restart delay, doubled per recent crash
    std::chrono::milliseconds backoff_max{10000};
    std::uint64_t memory_limit_mb = 2048;  // RLIMIT_AS of the child
};

struct instance_options {
    // A call into the plugin that does not return within this is reported as timed out and
    // the instance is marked stuck until it returns (the host never waits forever). stop and
    // destroy get ten times as long. An isolated instance kills its child instead, which counts
    // as a crash.
    std::chrono::milliseconds call_timeout{kCallTimeout};
    bool isolated = false;  // run the plugin in a child process
    process_options process;
};

class remote_instance;

// One plugin instance (an endpoint). RAII: the destructor stops and destroys it.
class instance {
public:
    // Creates the instance with its JSON config; the failure text names the endpoint and reason.
    static boost::system::result<std::unique_ptr<instance>, std::string> create(
        const loaded_plugin& plugin, std::string endpoint, std::string config_json,
        host_services& services, instance_options opts = {});
    ~instance();
    instance(const instance&) = delete;
    instance& operator=(const instance&) = delete;

    const loaded_plugin& plugin() const;
    const std::string& endpoint() const;

    call_result start();
    void stop();  // idempotent

    // SINK: OK = accepted (completion follows via host_services::complete with d.token).
    call_result deliver(const delivery_ref& d);
    // SINK: hands the deliveries over in order, one deliver() each, and returns one result per
    // delivery. In-process, the list costs one hop to the instance's call thread, not one per
    // delivery; each call still has its own deadline (counted from the end of the one before).
    // A call past its deadline marks the instance stuck and gets RETRY; the deliveries after it
    // are never called and get RETRY too. The plugin sees the refs themselves (no copy), kept
    // until it completes them.
    std::vector<call_result> deliver(const std::vector<std::shared_ptr<const delivery_ref>>& ds);
    bool can_render() const;
    boost::system::result<rendered, call_result> render(const delivery_ref& d);
    // TRANSFORM: the output envelope, or the rejection.
    boost::system::result<std::string, call_result> transform(const event_ref& e);

    // True while a call has overrun its deadline and not yet returned.
    bool stuck() const;
    // Whether the engine should hand it deliveries now: not stuck, and (isolated) the child is up
    // (not restarting after a crash, not quarantined), so no attempt is spent while it is down.
    bool ready() const;

    bool isolated() const { return remote_ != nullptr; }
    // Isolated: destroys the plugin instance and ends the child now, saying how that went (a
    // crash in destroy is a failure). In-process: the destructor destroys; this returns OK.
    call_result destroy();
    // Isolated: waits until the child is up again after a crash (false when quarantined or
    // still down at the timeout). In-process: !stuck().
    bool wait_up(std::chrono::milliseconds timeout);
    // Isolated only: why the endpoint is quarantined (empty while it is not).
    std::string quarantined() const;
    // Isolated only: how often the child crashed or was killed, and the last reason.
    std::uint64_t crashes() const;
    std::string last_crash() const;

private:
    struct impl;
    explicit instance(std::unique_ptr<impl> p);
    explicit instance(std::unique_ptr<remote_instance> r);
    std::unique_ptr<impl> impl_;
    std::unique_ptr<remote_instance> remote_;
};

}  // namespace samband::plugin
