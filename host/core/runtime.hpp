// The live endpoints of one config: plugin instances built from the endpoint list.
#pragma once

#include "config/config.hpp"
#include "core/log.hpp"
#include "core/services.hpp"
#include "delivery/engine.hpp"
#include "directory/adresseregisteret.hpp"
#include "directory/gp_directory.hpp"
#include "plugin/plugin_host.hpp"
#include "store/store.hpp"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace samband::core {

struct live_endpoint {
    std::string name;
    std::string plugin_ref;   // as configured (name or path)
    std::string config_json;  // as given to create()
    delivery::policy pol;
    std::unique_ptr<plugin::instance> inst;  // null when it failed to load or create
    std::string failure;                     // why it is not running
};

struct runtime {
    std::map<std::string, live_endpoint> endpoints;
    plugin::instance* instance(const std::string& name) const {
        auto it = endpoints.find(name);
        return it == endpoints.end() ? nullptr : it->second.inst.get();
    }
};

delivery::policy to_policy(const config::policy& p);
std::map<std::string, secret_source> secret_sources(const config::config& c);

// Finds the .so for a plugin reference: an explicit path, or samband_plugin_<name>.so (with
// '-' as '_' too) or <name>.so in the plugin dirs, else any .so there whose descriptor has that
// name. Empty when none; `why` says where it looked.
std::string find_plugin_file(const config::config& c, const std::string& ref, plugin::registry& reg,
                             std::string& why);

// Whether the endpoint's plugin (resolved to `file`) runs in a child: "isolation": "process", or
// unset and the file is not in Samband's own plugin directory.
bool endpoint_isolated(const config::endpoint_config& ec, const std::string& file);

// Checks each endpoint's config against its plugin's JSON Schema (draft-04; the descriptor's
// config_schema_json), loading the plugins as the daemon does. One error per problem, its path
// under /endpoints/<name>/config; a plugin that is not found or does not load is an error too.
// A plugin without a schema is not checked here (its create() still is).
std::vector<config::config_error> check_endpoint_configs(const config::config& c,
                                                         plugin::registry& reg);

// Loads plugins and creates every endpoint's instance. Failures are logged (file and reason)
// and leave that endpoint without an instance; the host keeps running.
std::unique_ptr<runtime> build_runtime(const config::config& c, plugin::registry& reg,
                                       plugin::host_services& services, logger& log);

// Creates instances for the named endpoints only; on any failure `why` names it and the
// result should be discarded (used by reload, which must be all or nothing).
std::map<std::string, live_endpoint> create_endpoints(const std::vector<std::string>& names,
                                                      const config::config& c,
                                                      plugin::registry& reg,
                                                      plugin::host_services& services, logger& log,
                                                      std::string& why);

// True when `file` lives in samband's own plugin directory (installed or in the build tree):
// those run in-process by default; every other plugin runs isolated in a child.
bool is_samband_plugin_file(const std::string& file);

struct endpoint_changes {
    std::vector<std::string> create;  // new, plugin/config changed, or quarantined
    std::vector<std::string> remove;  // no longer configured
};
endpoint_changes plan_endpoint_changes(const runtime& rt, const config::config& next);

// Starts sinks and transforms, then sources (except those `defer_source` keeps for later). A
// failing start is logged and the endpoint stopped.
void start_endpoints(runtime& rt, logger& log,
                     const std::function<bool(const std::string&)>& defer_source = {});
// Stops every running endpoint whose plugin has any of the `kinds` bits.
void stop_endpoints(runtime& rt, std::uint32_t kinds, logger& log);

// The configured GP directory (file, cached), or null when none is configured.
std::unique_ptr<directory::gp_directory> open_gp_directory(const config::config& c, logger& log);

// The PostgreSQL store's connection string, read from the secret store.conninfo_secret names
// (its file's first line or its environment variable); empty when unset or unreadable.
std::string postgresql_conninfo(const config::config& c);

// Opens the configured store (sqlite, or postgresql with its connection string read from the
// named secret; the string is never logged). Throws a clear start-up error.
std::unique_ptr<store::store> open_store(const config::config& c, logger& log);

// The keys of store.encryption read from their secrets (the first is current), or null when
// encryption is off. Throws a clear start-up error naming the key id whose secret is empty or not
// a 32-byte key (never the secret).
std::shared_ptr<const store::keyring> store_keys(const config::config& c);

// A named secret's value (its file's first line, or its environment variable); empty if unset.
std::string secret_value(const config::config& c, const std::string& name);

// The configured Adresseregisteret receiver check, or null when none is configured. Throws
// std::runtime_error naming the problem (url, file, secret).
std::unique_ptr<directory::receiver_directory> open_receiver_directory(const config::config& c,
                                                                       logger& log);
// The endpoints whose deliveries the receiver check applies to (those listed under
// adresseregisteret.destinations, else every endpoint of the nhn plugin), each with its
// receiver_message_types (organisation HER-id → message type) from the endpoint's config.
std::map<std::string, std::map<std::string, std::string>> receiver_checked_destinations(
    const config::config& c);

}  // namespace samband::core
