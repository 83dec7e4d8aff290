#include "core/services.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace samband::core {

bool daemon_services::log_enabled(std::string_view, samband_log_level level) {
    return log_.enabled(static_cast<log_level>(std::clamp(level, 0, 4)));
}

void daemon_services::log(std::string_view endpoint, samband_log_level level,
                          std::string_view message) {
    log_.log(static_cast<log_level>(std::clamp(level, 0, 4)), "plugin", message,
             {{"endpoint", endpoint}});
}

std::optional<std::string> daemon_services::secret(std::string_view endpoint,
                                                   std::string_view name) {
    auto it = secrets_.find(std::string(name));
    if (it == secrets_.end()) {
        log_.warn("secret", "plugin asked for an unknown secret",
                  {{"endpoint", endpoint}, {"secret", name}});
        return std::nullopt;
    }
    if (!it->second.env.empty()) {
        const char* v = std::getenv(it->second.env.c_str());
        if (!v) {
            log_.warn("secret", "secret's environment variable is not set",
                      {{"endpoint", endpoint}, {"secret", name}, {"env", it->second.env}});
            return std::nullopt;
        }
        return std::string(v);
    }
    std::ifstream in(it->second.file, std::ios::binary);
    if (!in) {
        log_.warn("secret", "secret file cannot be read",
                  {{"endpoint", endpoint}, {"secret", name}, {"file", it->second.file}});
        return std::nullopt;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

samband_status daemon_services::submit(std::string_view endpoint, plugin::submission sub,
                                       std::function<void(const plugin::submit_result&)> done) {
    if (ingest_.stopping()) return SAMBAND_RETRY;
    ingest_.submit(endpoint, std::move(sub), std::move(done));
    return SAMBAND_OK;
}

void daemon_services::complete(std::string_view endpoint, std::uint64_t token,
                               plugin::completion c) {
    engine_.on_complete(std::string(endpoint), token, std::move(c));
}

void daemon_services::receipt(std::string_view endpoint, std::string_view external_id,
                              std::int32_t kind, std::string_view text) {
    engine_.on_receipt(std::string(endpoint), std::string(external_id), kind, std::string(text));
}

boost::system::result<std::size_t> daemon_services::read_attachment(std::uint64_t handle,
                                                                    std::uint64_t offset,
                                                                    std::uint8_t* out,
                                                                    std::size_t capacity) {
    auto sha = handles_.find(handle);
    if (!sha) return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
    return store_.read_attachment(*sha, offset, out, capacity);
}

}  // namespace samband::core
