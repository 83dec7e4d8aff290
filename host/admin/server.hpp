// The admin HTTP server: asynchronous Beast on Asio, limits and deadlines per connection, TLS.
#pragma once

#include "admin/backend.hpp"
#include "core/log.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace samband::admin {

// TLS for the admin API. Required when it listens beyond loopback.
struct tls_options {
    std::string cert_file;       // PEM certificate chain; empty = plain HTTP (loopback only)
    std::string key_file;        // PEM private key
    std::string client_ca_file;  // set = mutual TLS: clients must present a certificate it signed
};

struct server_options {
    std::string listen = "127.0.0.1:8780";
    std::string token_file;  // see admin/auth.hpp; empty = only the health endpoints answer
    bool metrics_open = false;
    core::logger* log = nullptr;  // refusals are logged here (warn); not owned
    tls_options tls;
    std::size_t max_header_bytes = 16 * 1024;
    std::size_t max_body_bytes = 64 * 1024 * 1024;
    // Deadlines of one connection: the whole request header (and an idle keep-alive connection),
    // the body, and writing the answer. A connection that misses one is closed.
    std::chrono::milliseconds header_timeout{10'000};
    std::chrono::milliseconds body_timeout{60'000};
    std::chrono::milliseconds write_timeout{30'000};
    std::size_t max_connections = 1024;  // beyond this a new connection is closed at once
    unsigned work_threads = 2;           // handlers (store reads) run here, never on the I/O thread
};

class server {
public:
    // Binds at once. Throws std::runtime_error with a clear message on a bad or taken address,
    // on a non-loopback address without TLS, or on unreadable certificates or token file.
    server(server_options opts, backend& b);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // "HOST:PORT" as bound (PORT resolved when 0 was asked for).
    std::string address() const;
    void start();
    // Stops accepting, closes every connection and joins the threads. Idempotent.
    void stop();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace samband::admin
