// `samband config check`: the config file itself, then each endpoint's config against its plugin.
#pragma once

#include <ostream>
#include <string>

namespace samband::core {

// Validates the config (every error by JSON path), then loads the endpoints' plugins and checks
// each endpoint's config against its plugin's schema. Prints the errors or a summary; returns 0
// when valid, else 1.
int run_config_check(const std::string& path, std::ostream& out);

}  // namespace samband::core
