// The operator CLI: `samband status|deliveries|replay|send|errors|token`, mostly admin API clients.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace samband::admin {

// Adds the client subcommands to `app`; each sets the exit status through `set_exit`
// (0 ok, 1 the API refused, 2 usage, 3 cannot reach the daemon).
void add_client_commands(CLI::App& app, std::function<void(int)> set_exit);

// `samband token add NAME --role R --file F`: a new admin token, printed once, stored hashed.
void add_token_commands(CLI::App& app, std::function<void(int)> set_exit);

}  // namespace samband::admin
