// A small synchronous HTTP/1.1 client (Beast) with a deadline per call and verified TLS by default.
// The one HTTP client of the project: the plugins (nhn, fhir, HelseID) and the host (the
// Fastlegeregisteret / Adresseregisteret SOAP calls, the `samband` CLI) all send through it, so
// Beast's client side is instantiated in this file alone.
#pragma once

#include "net/common.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace samband::net {

// An absolute http(s) URL split into what a request needs. Hand-written rather than Boost.URL:
// Debian's libboost_url.a is not built with -fPIC (cannot go into the MODULE plugin) and its
// header-only src.hpp exports default-visibility symbols from the plugin.
struct endpoint_url {
    std::string scheme;  // "https" or "http"
    std::string host;    // name or IPv4; IPv6 literals without brackets
    std::uint16_t port = 443;
    std::string path;  // starts with '/', never empty

    bool tls() const { return scheme == "https"; }
    // "host" or "host:port" when the port is not the scheme's default (the Host header).
    std::string authority() const;
    // scheme://authority
    std::string origin() const;
    // origin + path: the DPoP `htu` of a request to this URL (no query, no fragment).
    std::string without_query() const { return origin() + path; }
};

// Parses an absolute http(s) URL with no user info; nullopt otherwise. A query is dropped.
std::optional<endpoint_url> parse_endpoint_url(std::string_view url);

struct tls_options {
    // Extra trust anchors (PEM) on top of OpenSSL's default paths; empty: defaults only.
    std::filesystem::path ca_file;
    // With ca_file: trust it alone, not OpenSSL's default paths too (the CLI's --ca-file).
    bool ca_file_only = false;
    // A client certificate chain (PEM) for mutual TLS; its key (PEM) from client_key_file, or
    // from the same file when that is empty.
    std::filesystem::path client_cert_file;
    std::filesystem::path client_key_file;
    // Turns certificate verification off. Only when explicitly configured; logged as a warning.
    bool insecure_skip_verify = false;
    // Allows plain http, and only to 127.0.0.1 (tests against a local fake server).
    bool allow_plain_http_loopback = false;
    // Allows plain http to any host: only for callers that apply a policy of their own (the CLI,
    // whose URL the operator gives; the register clients, which allow loopback names).
    bool allow_plain_http_anywhere = false;
};

// The step of an exchange a transport error happened in (or that was running at the deadline).
enum class http_step { resolve, connect, tls_handshake, send, receive };

// "resolve", "connect", "TLS handshake", "send", "receive": for messages naming the step.
std::string_view step_name(http_step s);

// A transport failure (no HTTP answer): the error, beast::error::timeout at the deadline, and
// the step it stopped at.
struct transport_error {
    boost::system::error_code code;
    http_step step = http_step::resolve;
};

// Lets result<T, transport_error>::value() throw (a boost::system::system_error).
[[noreturn]] void throw_exception_from_error(transport_error const& e,
                                             boost::source_location const& loc);

using http_response = boost::beast::http::response<boost::beast::http::string_body>;
using http_request = boost::beast::http::request<boost::beast::http::string_body>;

// One origin (scheme, host, port). Each call opens a connection, sends one request, reads one
// response and closes; the whole exchange (resolve, connect, TLS, write, read) must finish
// before the deadline or it is abandoned with beast::error::timeout.
// THREAD: send() may be called from several threads at once (each call has its own io_context).
class http_client {
public:
    // Throws std::runtime_error when `origin` is plain http to anything but 127.0.0.1, or plain
    // http without tls.allow_plain_http_loopback (unless tls.allow_plain_http_anywhere), or the CA
    // file or the client certificate cannot be loaded, naming the file.
    http_client(const endpoint_url& origin, const tls_options& tls, log_fn log,
                std::size_t max_response_bytes = 64u * 1024 * 1024);
    // For a caller that sets up TLS itself (its trust anchors, a client certificate from
    // memory): `tls` serves an https origin, the peer's certificate and host name checked unless
    // its verify mode is verify_none. Plain http goes to any host: the caller applies its policy.
    http_client(const endpoint_url& origin, std::shared_ptr<boost::asio::ssl::context> tls,
                std::size_t max_response_bytes = 64u * 1024 * 1024);
    ~http_client();
    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;

    const endpoint_url& origin() const { return origin_; }

    // Sends `req` (target, method, body and fields set by the caller; Host, Content-Length and
    // User-Agent are filled in). Transport errors, including the deadline, come back as the
    // error code; any HTTP status is a response.
    boost::system::result<http_response> send(http_request req,
                                              std::chrono::steady_clock::time_point deadline);

    // As send(), and a transport error also says at which step it stopped.
    boost::system::result<http_response, transport_error> exchange(
        http_request req, std::chrono::steady_clock::time_point deadline);

private:
    endpoint_url origin_;
    std::size_t max_response_bytes_;
    std::shared_ptr<boost::asio::ssl::context> tls_ctx_;  // null for plain http
    bool verify_ = true;
};

// A readable description of a transport error (timeout, refused, dropped, TLS) for failure.message.
std::string describe_transport_error(const boost::system::error_code& ec);

}  // namespace samband::net
