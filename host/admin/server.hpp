// The admin HTTP API (Boost.Beast): health, metrics, events, deliveries, operator actions.
#pragma once

#include "admin/backend.hpp"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

namespace samband::admin {

struct server_options {
    std::string listen = "127.0.0.1:8780";  // loopback only (TLS for other addresses comes later)
    std::string token_file;                 // "name:token" per line; empty = no tokens
    std::size_t max_body_bytes = 64 * 1024 * 1024;
};

// Reads operator tokens ("name:token" lines; '#' comments). Throws naming the file.
std::map<std::string, std::string> read_tokens(const std::string& path);

class server {
public:
    // Binds at once; throws std::runtime_error with a clear message on a bad or taken address.
    server(server_options opts, backend& b);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // "127.0.0.1:PORT" as bound (PORT resolved when 0 was asked for).
    std::string address() const;
    void start();
    void stop();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace samband::admin
