// `samband plugin check`: the conformance kit vendors run on their plugin before shipping it.
#pragma once

#include <optional>
#include <ostream>
#include <string>

namespace samband::plugin {

// Loads `so_path` exactly as the daemon does, prints the descriptor, runs the lifecycle and the
// battery for its kinds, and prints a PASS/FAIL table. Returns 0 when everything passed.
// `config_file` holds the plugin's JSON config (default "{}"); `event_file` a sample event.
int run_plugin_check(const std::string& so_path, const std::optional<std::string>& config_file,
                     std::ostream& out,
                     const std::optional<std::string>& event_file = std::nullopt);

}  // namespace samband::plugin
