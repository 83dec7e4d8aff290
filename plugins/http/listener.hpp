// The http plugin's source: HTTPS endpoints that take Samband envelopes or a vendor's JSON.
//
// One io thread serves every connection as a coroutine. A request is answered 202 only after the
// host committed its event (or found it already stored: the same Idempotency-Key is stored once);
// 401 when the bearer token or the HMAC signature is missing or wrong (nothing is stored); 404,
// 405, 413 (body), 431 (headers), 408 (a sender slower than request_timeout_ms) with a reason;
// 422 with the reason naming the field when the body cannot become an event (kept in the host's
// error store as samband.input.rejected, or by the host's own validation); 503 when the host cannot
// take it now. Only this plugin's code: it sees the host through the SDK alone.
#pragma once

#include "mapping.hpp"

#include <samband/sdk.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace samband::http_source {

struct config {
    std::string listen;     // "127.0.0.1:8443"
    std::string port_file;  // the bound port is written here (tests, port 0)
    bool tls = false;
    std::string cert_file, key_file, client_ca_file;  // client_ca_file: mutual TLS required
    std::string auth;                                 // "", "bearer" or "hmac"
    std::string secret;                               // the token or the HMAC key
    std::string header = "X-Samband-Signature";
    std::chrono::seconds signature_tolerance{300};
    std::string envelope_path = "/v1/events";
    std::vector<http_map::mapping> mappings;
    std::size_t max_header_bytes = 16 * 1024;
    std::size_t max_body_bytes = 1024 * 1024;
    std::chrono::milliseconds request_timeout{10000};  // the whole request, headers and body
    std::size_t max_connections = 512;
};

struct runtime;

class listener {
public:
    listener(config cfg, samband::sdk::host host);
    ~listener();
    listener(const listener&) = delete;
    listener& operator=(const listener&) = delete;

    void start();  // binds (throws sdk::error INVALID naming the problem) and serves
    void stop();   // refuses new connections, ends the open ones, joins the thread

private:
    config cfg_;
    samband::sdk::host host_;
    std::shared_ptr<runtime> rt_;
    std::thread thread_;
};

}  // namespace samband::http_source
