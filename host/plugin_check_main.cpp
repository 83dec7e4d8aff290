// samband-plugin-check: the conformance kit alone, for plugin vendors (the samband-dev package).
#include "plugin/check.hpp"
#include "plugin/process.hpp"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <iostream>
#include <optional>
#include <string>

int main(int argc, char** argv) {
    CLI::App app{"samband-plugin-check " SAMBAND_VERSION
                 ": the Samband plugin conformance kit. Loads a plugin as the daemon does and "
                 "runs its battery; the same checks as `samband plugin check`."};
    app.set_version_flag("--version", SAMBAND_VERSION);
    std::string path, cfg_path, event_path;
    app.add_option("path", path, "The plugin (.so)");
    app.add_option("--config", cfg_path, "The plugin's config JSON file");
    app.add_option("--event", event_path,
                   "A sample event envelope for the battery (default: a PHQ-9 score)");
    // The kit runs the plugin in a child of this same binary, as `samband plugin-host` does for
    // the daemon (internal: started by the kit only).
    int host_fd = -1;
    std::uint64_t host_mem_mb = 0;
    std::string host_plugin;
    auto* plugin_host = app.add_subcommand("plugin-host", "Run one plugin for the kit (internal)");
    plugin_host->group("");
    plugin_host->add_option("--socket-fd", host_fd, "The socket to the kit")->required();
    plugin_host->add_option("--memory-limit-mb", host_mem_mb, "RLIMIT_AS in MiB (0 = none)");
    plugin_host->add_option("path", host_plugin, "The plugin (.so)")->required();
    CLI11_PARSE(app, argc, argv);
    if (plugin_host->parsed())
        return samband::plugin::run_plugin_host(host_fd, host_plugin, host_mem_mb);
    if (path.empty()) {
        std::cerr << "samband-plugin-check: give the plugin (.so) to check (try --help)\n";
        return 2;
    }
    std::optional<std::string> cfg;
    if (!cfg_path.empty()) cfg = cfg_path;
    std::optional<std::string> ev;
    if (!event_path.empty()) ev = event_path;
    return samband::plugin::run_plugin_check(path, cfg, std::cout, ev);
}
