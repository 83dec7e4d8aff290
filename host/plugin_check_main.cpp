// samband-plugin-check: the conformance kit alone, for plugin vendors (the samband-dev package).
#include "plugin/check.hpp"

#include <CLI/CLI.hpp>

#include <iostream>
#include <optional>
#include <string>

int main(int argc, char** argv) {
    CLI::App app{"samband-plugin-check " SAMBAND_VERSION
                 ": the Samband plugin conformance kit. Loads a plugin as the daemon does and "
                 "runs its battery; the same checks as `samband plugin check`."};
    app.set_version_flag("--version", SAMBAND_VERSION);
    std::string path, cfg_path, event_path;
    app.add_option("path", path, "The plugin (.so)")->required();
    app.add_option("--config", cfg_path, "The plugin's config JSON file");
    app.add_option("--event", event_path,
                   "A sample event envelope for the battery (default: a PHQ-9 score)");
    CLI11_PARSE(app, argc, argv);
    std::optional<std::string> cfg;
    if (!cfg_path.empty()) cfg = cfg_path;
    std::optional<std::string> ev;
    if (!event_path.empty()) ev = event_path;
    return samband::plugin::run_plugin_check(path, cfg, std::cout, ev);
}
