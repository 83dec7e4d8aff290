// One SOAP request over HTTP(S) with a single deadline, shared by the register clients.
#pragma once

#include <boost/system/result.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace samband::net {
class http_client;
}

namespace samband::directory {

struct soap_http_options {
    std::string what;      // the register's name in messages, e.g. "Fastlegeregisteret"
    std::string url;       // https://…, or http:// on loopback only (tests)
    std::string username;  // HTTP Basic when set
    std::string password;  // from a secret, never from the config text
    std::chrono::milliseconds timeout{10000};
    std::string ca_file;     // extra trust anchors (PEM); system store otherwise
    bool verify_tls = true;  // off only for tests against plain http on loopback
};

// Posts SOAP requests to one endpoint through net::http_client. Throws std::runtime_error naming
// the register when the url is not http(s), is plain http beyond loopback, or the CA file cannot
// be loaded. THREAD: post() is safe from any thread.
class soap_http {
public:
    explicit soap_http(soap_http_options o);
    ~soap_http();
    soap_http(soap_http&&) noexcept;
    soap_http& operator=(soap_http&&) noexcept;

    // The whole exchange (resolve, connect, TLS, request, answer) ends by the timeout. The answer
    // body of HTTP 200 or 500 (a SOAP fault), else an error naming the register, the URL and the
    // step that failed.
    boost::system::result<std::string, std::string> post(
        const std::string& body, const std::string& content_type,
        const std::vector<std::pair<std::string, std::string>>& headers = {}) const;

    const soap_http_options& options() const { return opts_; }

private:
    soap_http_options opts_;
    std::string target_;
    std::unique_ptr<net::http_client> http_;
};

}  // namespace samband::directory
