#include "directory/soap_http.hpp"

#include "core/ids.hpp"
#include "net/http.hpp"

#include <boost/beast/core/error.hpp>

#include <exception>
#include <stdexcept>

namespace samband::directory {

namespace {

namespace http = boost::beast::http;

constexpr std::size_t kMaxAnswer = 4 * 1024 * 1024;

using out_t = boost::system::result<std::string, std::string>;

out_t fail(std::string message) {
    return out_t(boost::system::in_place_error, std::move(message));
}

// What the register's error says about a failed step ("cannot connect to URL: connection refused").
std::string step_failed(net::http_step step) {
    switch (step) {
        case net::http_step::resolve:
            return "cannot resolve the host of ";
        case net::http_step::connect:
            return "cannot connect to ";
        case net::http_step::tls_handshake:
            return "TLS connection failed with ";
        case net::http_step::send:
            return "sending failed to ";
        case net::http_step::receive:
            return "no answer from ";
    }
    return "failed with ";
}

}  // namespace

soap_http::soap_http(soap_http_options o) : opts_(std::move(o)) {
    auto u = net::parse_endpoint_url(opts_.url);
    if (!u)
        throw std::runtime_error(opts_.what + ": url must be https://… (got \"" + opts_.url +
                                 "\")");
    if (!u->tls() && u->host != "127.0.0.1" && u->host != "localhost")
        throw std::runtime_error(opts_.what + ": plain http is only allowed on loopback (tests)");
    target_ = u->path;
    net::tls_options tls;
    tls.ca_file = opts_.ca_file;
    tls.insecure_skip_verify = !opts_.verify_tls;
    tls.allow_plain_http_anywhere = true;  // loopback only: checked above
    try {
        http_ = std::make_unique<net::http_client>(*u, tls, nullptr, kMaxAnswer);
    } catch (const std::exception& e) {
        throw std::runtime_error(opts_.what + ": " + e.what());
    }
}

soap_http::~soap_http() = default;
soap_http::soap_http(soap_http&&) noexcept = default;
soap_http& soap_http::operator=(soap_http&&) noexcept = default;

// The whole lookup (resolve, connect, TLS, request, answer) has one deadline, opts_.timeout: when
// it passes, the client abandons the exchange and the lookup fails naming the timeout.
out_t soap_http::post(const std::string& body, const std::string& content_type,
                      const std::vector<std::pair<std::string, std::string>>& headers) const {
    const std::string& what = opts_.what;
    net::http_request req{http::verb::post, target_, 11};
    req.set(http::field::content_type, content_type);
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!opts_.username.empty())
        req.set(http::field::authorization,
                "Basic " + core::base64_encode(opts_.username + ":" + opts_.password));
    req.body() = body;
    boost::system::result<net::http_response, net::transport_error> sent = net::transport_error{};
    try {
        sent = http_->exchange(std::move(req), std::chrono::steady_clock::now() + opts_.timeout);
    } catch (const std::exception& e) {
        return fail(what + ": lookup failed: " + e.what());
    }
    if (!sent) {
        if (sent.error().code == boost::beast::error::timeout)
            return fail(what + ": no answer within " + std::to_string(opts_.timeout.count()) +
                        " ms (timeout)");
        return fail(what + ": " + step_failed(sent.error().step) + opts_.url + ": " +
                    net::describe_transport_error(sent.error().code));
    }
    const int status = static_cast<int>(sent->result_int());
    if (status == 401 || status == 403)
        return fail(what + " refused the credentials (HTTP " + std::to_string(status) + ")");
    // SOAP faults come with HTTP 500 and are read like any answer.
    if (status != 200 && status != 500)
        return fail(what + " answered HTTP " + std::to_string(status));
    return out_t(boost::system::in_place_value, std::move(sent->body()));
}

}  // namespace samband::directory
