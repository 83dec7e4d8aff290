// The source's HTTP(S) endpoint (Beast, asynchronous, one thread): FHIR resources and Bundles in,
// 200/201 only after the host committed every event, 400 + OperationOutcome naming the element
// otherwise. Inbound auth: bearer tokens (from the host's secrets) and/or mutual TLS.
#pragma once

#include "fhir/inbound.hpp"

#include <samband/sdk.hpp>

#include <rapidjson/document.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace samband::fhir {

struct listener_config {
    std::string address = "127.0.0.1";
    std::uint16_t port = 0;  // 0: any free port (see port_file)
    std::string port_file;   // the bound port is written here (write, then rename)
    std::string base_path;   // e.g. "/fhir"; requests are answered below it
    std::size_t max_body_bytes = 4u * 1024 * 1024;
    std::size_t max_connections = 64;
    std::uint32_t commit_timeout_ms = 30000;  // no commit by then: 503, the client sends again
    std::vector<std::string> bearer_tokens;   // any of them is accepted; empty: none needed
    std::string tls_cert_file, tls_key_file, tls_ca_file;  // ca: client certificates required
    inbound_options inbound;

    // Reads the "listen" object; throws sdk::error(SAMBAND_INVALID) naming the field. Bearer
    // tokens come from the secrets named in "bearer_token_secrets". A listener on anything but
    // loopback needs TLS and either bearer tokens or client certificates.
    static listener_config from_json(const rapidjson::Value& v, const samband::sdk::host& host);
};

class listener {
public:
    listener(listener_config config, samband::sdk::host host);
    ~listener();
    listener(const listener&) = delete;
    listener& operator=(const listener&) = delete;

    // Binds (throws sdk::error on failure, naming the address) and starts the thread.
    void start();
    // Stops accepting, closes connections, joins the thread. Idempotent.
    void stop();
    std::uint16_t port() const { return port_.load(); }

    struct impl;

private:
    std::shared_ptr<impl> impl_;
    std::thread thread_;
    std::atomic<std::uint16_t> port_{0};
};

}  // namespace samband::fhir
