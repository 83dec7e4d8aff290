// `samband plugin check`: the conformance kit vendors run on their plugin before shipping it.
#pragma once

#include <optional>
#include <ostream>
#include <string>

namespace samband::plugin {

// Runs the plugin in a child `samband plugin-host` exactly as an isolated endpoint of the daemon
// (same loader, same deadlines), prints the descriptor, runs the lifecycle and the battery for
// its kinds, and prints a PASS/FAIL table: a crash, abort or hang is a FAIL row naming the
// signal or the deadline, and the next check gets a fresh child. Returns 0 when everything
// passed, 1 when a row failed, 2 when the config or event file cannot be read.
// `config_file` holds the plugin's JSON config (default "{}"); `event_file` a sample event;
// `host_exe` the samband binary for the child (default: this executable).
int run_plugin_check(const std::string& so_path, const std::optional<std::string>& config_file,
                     std::ostream& out, const std::optional<std::string>& event_file = std::nullopt,
                     const std::string& host_exe = {});

}  // namespace samband::plugin
