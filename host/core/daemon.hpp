// The samband daemon: wires config, store, plugins, ingest, engine and the admin API together.
#pragma once

#include <memory>
#include <string>

namespace samband::core {

struct daemon_options {
    std::string config_path;
    std::string ready_file;  // written with "host:port" of the admin API once ready (tests)
};

// Runs the daemon until SIGTERM/SIGINT; returns the process exit status. Start-up errors throw
// std::runtime_error with a clear message.
int run_daemon(const daemon_options& opts);

}  // namespace samband::core
