// Process isolation: a plugin instance running in a child `samband plugin-host`, and that child.
#pragma once

#include "plugin/plugin_host.hpp"

#include <boost/system/result.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace samband::plugin {

// The parent side of one isolated endpoint: the same calls as the in-process instance, sent to
// a child over a Unix socketpair (attachments as descriptors). A crash or a hang fails the call
// and every accepted delivery with RETRY (one counted attempt each), then the child restarts
// with backoff; `max_crashes` within `crash_window` quarantine the endpoint.
// THREAD: every method may be called from any thread.
class remote_instance {
public:
    static boost::system::result<std::unique_ptr<remote_instance>, std::string> create(
        const loaded_plugin& plugin, std::string endpoint, std::string config_json,
        host_services& services, instance_options opts);
    ~remote_instance();
    remote_instance(const remote_instance&) = delete;
    remote_instance& operator=(const remote_instance&) = delete;

    const loaded_plugin& plugin() const;
    const std::string& endpoint() const;
    call_result start();
    void stop();
    call_result deliver(const delivery_ref& d);
    boost::system::result<rendered, call_result> render(const delivery_ref& d);
    boost::system::result<std::string, call_result> transform(const event_ref& e);
    // Destroys the plugin instance and ends the child (idempotent; the destructor calls it).
    call_result destroy();
    // Waits until the child is up (after a restart), quarantined or destroyed; true when up.
    bool wait_up(std::chrono::milliseconds timeout);
    // Whether the child is up now (not restarting, quarantined or destroyed).
    bool up() const;
    std::string quarantined() const;
    std::uint64_t crashes() const;
    std::string last_crash() const;

private:
    struct impl;
    explicit remote_instance(std::shared_ptr<impl> p);
    std::shared_ptr<impl> impl_;
};

// What a plugin-host child reported after loading `path` (descriptor stays null), or why the
// load failed (including "killed by SIGSEGV while loading").
boost::system::result<loaded_plugin, std::string> probe_in_child(const std::string& path,
                                                                 const process_options& opts);

// `samband plugin-host`: the child. Hardens itself (no core dumps, not dumpable, no new
// privileges, RLIMIT_AS, only the socket kept open), loads the plugin, then serves requests on
// `socket_fd` until destroy or end of stream. Returns the process exit code.
int run_plugin_host(int socket_fd, const std::string& plugin_path, std::uint64_t memory_limit_mb);

// "SIGSEGV (Segmentation fault)" and the like, for reasons shown to operators.
std::string signal_text(int sig);

}  // namespace samband::plugin
