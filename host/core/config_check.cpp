#include "core/config_check.hpp"

#include "config/config.hpp"
#include "core/runtime.hpp"
#include "plugin/plugin_host.hpp"

#include <filesystem>

namespace samband::core {

int run_config_check(const std::string& path, std::ostream& out) {
    if (int rc = config::check_config_command(path, out); rc != 0) return rc;
    auto loaded = config::load_config(path);
    if (!loaded.cfg) return 1;  // reported above
    // Plugin configs hold paths relative to the config's folder, as the daemon resolves them.
    std::error_code ec;
    auto before = std::filesystem::current_path(ec);
    std::filesystem::current_path(loaded.cfg->base_dir, ec);
    plugin::registry reg;
    auto errors = check_endpoint_configs(*loaded.cfg, reg);
    std::filesystem::current_path(before, ec);
    if (errors.empty()) {
        out << "  endpoint configs: each valid against its plugin's schema\n";
        return 0;
    }
    out << config::format_errors(path, errors);
    out << errors.size() << (errors.size() == 1 ? " error" : " errors")
        << " in the endpoints' plugin configs in " << path << "\n";
    return 1;
}

}  // namespace samband::core
