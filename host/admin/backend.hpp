// What the admin API needs from the daemon: the store, the endpoints, and operator actions.
#pragma once

#include "core/error.hpp"

#include "plugin/plugin_host.hpp"
#include "store/store.hpp"

#include <boost/system/result.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace samband::admin {

struct endpoint_info {
    std::string name, plugin, version, state, failure;
    std::uint32_t kinds = 0;
    bool stuck = false;
};

struct plugin_info {
    std::string name, version, description, path;
    std::uint32_t abi_version = 0, kinds = 0, capabilities = 0;
};

// Implemented by the daemon. THREAD: every function may be called from admin threads.
class backend {
public:
    virtual ~backend() = default;
    virtual store::store& store() = 0;
    virtual bool ready(std::string& why) = 0;
    virtual std::string metrics_text() = 0;
    virtual std::vector<endpoint_info> endpoints() = 0;
    virtual std::vector<plugin_info> plugins() = 0;
    // dead, failed or held → pending now. The error names why not (unknown id, wrong state).
    virtual core::result<void> retry_delivery(std::int64_t id, const std::string& actor,
                                              const std::string& reason) = 0;
    // Lets a blocked or held GP delivery past the consent gate (audited with actor and reason).
    virtual core::result<void> override_delivery(std::int64_t id, const std::string& actor,
                                                 const std::string& reason) = 0;
    virtual core::result<std::size_t> replay(const std::string& destination, std::int64_t since_ms,
                                             const std::string& actor) = 0;
    // Submits an event as the "api" source; `done` after the commit (or with the refusal).
    virtual void submit(plugin::submission sub,
                        std::function<void(const plugin::submit_result&)> done) = 0;
};

}  // namespace samband::admin
