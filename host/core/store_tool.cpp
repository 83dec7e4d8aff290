#include "core/store_tool.hpp"

#include "config/config.hpp"
#include "core/runtime.hpp"
#include "store/sealed.hpp"
#include "store/store.hpp"

#include <exception>

namespace samband::core {

int run_rotate_key(const store_tool_options& opts, std::ostream& out, std::ostream& err) {
    if (opts.config_path.empty()) {
        err << "samband store rotate-key: -c CONFIG is required (its store and keys are used)\n";
        return 2;
    }
    auto loaded = config::load_config(opts.config_path);
    if (!loaded.cfg) {
        err << "samband store rotate-key: config " << opts.config_path << " has errors:\n"
            << config::format_errors(opts.config_path, loaded.errors);
        return 2;
    }
    const config::config& c = *loaded.cfg;
    std::shared_ptr<const store::keyring> keys;
    try {
        keys = store_keys(c);
    } catch (const std::exception& e) {
        err << "samband store rotate-key: " << e.what() << "\n";
        return 2;
    }
    if (!keys) {
        err << "samband store rotate-key: store.encryption is not configured in "
            << opts.config_path << "\n";
        return 2;
    }
    std::string where = c.store.path;
    boost::system::result<store::rotate_report, std::string> r = store::rotate_report{};
    if (c.store.kind == "postgresql") {
        std::string conninfo = secret_value(c, c.store.conninfo_secret);
        if (conninfo.empty()) {
            err << "samband store rotate-key: the secret \"" << c.store.conninfo_secret
                << "\" (the PostgreSQL connection string) is empty or unreadable\n";
            return 2;
        }
        where = "the PostgreSQL store";
        r = store::rotate_postgresql_keys(conninfo, *keys, opts.batch);
    } else {
        r = store::rotate_sqlite_keys(c.store.path, *keys, opts.batch);
    }
    if (!r) {
        err << "samband store rotate-key: " << r.error() << "\n";
        return r.error().rfind("store error", 0) == 0 ||
                       r.error().rfind("there is no store", 0) == 0
                   ? 2
                   : 1;
    }
    out << "re-sealed " << r->resealed << " records under key " << keys->current() << " ("
        << r->already << " already were); every record of " << where
        << " is now under this key, so the keys under store.encryption.previous can be removed\n"
        << "re-sealed " << r->blobs_resealed << " attachments under key " << keys->current() << " ("
        << r->blobs_already << " already were)\n";
    return 0;
}

}  // namespace samband::core
