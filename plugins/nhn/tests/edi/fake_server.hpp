// Test support: throwaway keys and the Node fake EDI 2.0 + HelseID server as a child process.
#pragma once

#include "net/http.hpp"

#include <rapidjson/document.h>

#include <sys/types.h>
#include <filesystem>
#include <optional>
#include <string>

namespace samband::nhn::edi {
using namespace samband::net;  // the shared plugin-side HTTP client (plugins/net)
}  // namespace samband::nhn::edi

namespace samband::nhn::edi::test {

// A directory under /tmp removed with everything in it.
struct temp_dir {
    temp_dir();
    ~temp_dir();
    std::filesystem::path path;
};

enum class key_type { rsa, ec };

// Generates a fresh key pair with OpenSSL and writes private.pem (0600) and public.pem.
void write_key_pair(const std::filesystem::path& dir, key_type type);

// The fake server, started with `node server.js` on 127.0.0.1 port 0; stopped (SIGTERM,
// then SIGKILL) by the destructor.
class fake_server {
public:
    fake_server(const std::filesystem::path& public_key, const std::string& client_id);
    ~fake_server();
    fake_server(const fake_server&) = delete;
    fake_server& operator=(const fake_server&) = delete;

    int port() const { return port_; }
    std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    // Test control endpoints: answers status + body.
    std::pair<int, std::string> control(const std::string& method, const std::string& path,
                                        const std::string& body = {});
    // GET /_test/stats parsed.
    rapidjson::Document stats();

private:
    pid_t pid_ = -1;
    int port_ = 0;
    std::optional<http_client> http_;
};

// True when node and the server script exist (tests skip otherwise).

}  // namespace samband::nhn::edi::test
