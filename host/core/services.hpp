// The host services every plugin instance gets: logging, secrets, submit, complete, receipts.
#pragma once

#include "core/log.hpp"
#include "delivery/engine.hpp"
#include "ingest/ingest.hpp"
#include "plugin/plugin_host.hpp"
#include "store/store.hpp"

#include <map>
#include <string>

namespace samband::core {

// Where a named secret comes from (config `secrets`): a file or an environment variable.
struct secret_source {
    std::string file;
    std::string env;
};

class daemon_services final : public plugin::host_services {
public:
    daemon_services(logger& log, ingest::ingest& in, delivery::engine& eng,
                    delivery::attachment_handles& handles, store::store& st,
                    std::map<std::string, secret_source> secrets)
        : log_(log),
          ingest_(in),
          engine_(eng),
          handles_(handles),
          store_(st),
          secrets_(std::move(secrets)) {}

    bool log_enabled(std::string_view, samband_log_level level) override;
    void log(std::string_view endpoint, samband_log_level level, std::string_view message) override;
    std::optional<std::string> secret(std::string_view endpoint, std::string_view name) override;
    samband_status submit(std::string_view endpoint, plugin::submission sub,
                          std::function<void(const plugin::submit_result&)> done) override;
    void complete(std::string_view endpoint, std::uint64_t token, plugin::completion c) override;
    void receipt(std::string_view endpoint, std::string_view external_id, std::int32_t kind,
                 std::string_view text) override;
    boost::system::result<std::size_t> read_attachment(std::uint64_t handle, std::uint64_t offset,
                                                       std::uint8_t* out,
                                                       std::size_t capacity) override;

private:
    logger& log_;
    ingest::ingest& ingest_;
    delivery::engine& engine_;
    delivery::attachment_handles& handles_;
    store::store& store_;
    std::map<std::string, secret_source> secrets_;
};

}  // namespace samband::core
