#include "net/http.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/system/system_error.hpp>
#include <boost/throw_exception.hpp>

#include <openssl/ssl.h>

#include <charconv>
#include <exception>
#include <optional>
#include <stdexcept>

namespace samband::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t read_buffer_reserve = 64 * 1024;  // DESIGN §5: 64 KB, not Beast's 512 B

bool is_ip_literal(const std::string& host) {
    boost::system::error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

template <class Stream>
asio::awaitable<void> write_then_read(Stream& stream, http_request& req, http_response& res,
                                      std::size_t body_limit, boost::system::error_code& ec,
                                      http_step& step, const bool& abandoned) {
    step = http_step::send;
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || abandoned) co_return;
    step = http_step::receive;
    beast::flat_buffer buffer;
    buffer.reserve(read_buffer_reserve);
    http::response_parser<http::string_body> parser;
    parser.body_limit(body_limit);
    parser.header_limit(64 * 1024);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    res = parser.release();
}

}  // namespace

std::string endpoint_url::authority() const {
    const bool default_port = (tls() && port == 443) || (!tls() && port == 80);
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return default_port ? h : h + ":" + std::to_string(port);
}

std::string endpoint_url::origin() const {
    return scheme + "://" + authority();
}

std::optional<endpoint_url> parse_endpoint_url(std::string_view url) {
    endpoint_url out;
    const auto sep = url.find("://");
    if (sep == std::string_view::npos) return std::nullopt;
    out.scheme = std::string(url.substr(0, sep));
    for (auto& c : out.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (out.scheme != "https" && out.scheme != "http") return std::nullopt;
    out.port = out.tls() ? 443 : 80;
    std::string_view rest = url.substr(sep + 3);
    const auto path_start = rest.find_first_of("/?#");
    std::string_view auth = rest.substr(0, path_start);
    std::string_view path =
        path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
    if (auth.empty() || auth.find('@') != std::string_view::npos) return std::nullopt;
    std::string_view port_text;
    if (auth.front() == '[') {
        const auto close = auth.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        out.host = std::string(auth.substr(1, close - 1));
        auto after = auth.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return std::nullopt;
            port_text = after.substr(1);
        }
    } else {
        const auto colon = auth.rfind(':');
        out.host = std::string(auth.substr(0, colon));
        if (colon != std::string_view::npos) port_text = auth.substr(colon + 1);
    }
    if (out.host.empty()) return std::nullopt;
    for (auto& c : out.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!port_text.empty()) {
        unsigned p = 0;
        const auto [ptr, ec] =
            std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
        if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || p == 0 ||
            p > 65535) {
            return std::nullopt;
        }
        out.port = static_cast<std::uint16_t>(p);
    }
    const auto qf = path.find_first_of("?#");
    if (qf != std::string_view::npos) path = path.substr(0, qf);
    out.path = path.empty() ? "/" : std::string(path);
    return out;
}

http_client::http_client(const endpoint_url& origin, const tls_options& tls, log_fn log,
                         std::size_t max_response_bytes)
    : origin_(origin), max_response_bytes_(max_response_bytes) {
    if (!origin_.tls()) {
        if (tls.allow_plain_http_anywhere) return;
        if (!tls.allow_plain_http_loopback) {
            throw std::runtime_error("plain http to " + origin_.origin() +
                                     " refused: use https (plain http is only for 127.0.0.1 "
                                     "test endpoints with allow_plain_http_loopback)");
        }
        if (origin_.host != "127.0.0.1") {
            throw std::runtime_error("plain http to " + origin_.origin() +
                                     " refused: allow_plain_http_loopback covers 127.0.0.1 only");
        }
        return;
    }
    tls_ctx_ = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    tls_ctx_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                          asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                          asio::ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    if (tls.ca_file.empty() || !tls.ca_file_only) tls_ctx_->set_default_verify_paths(ec);
    if (ec && log) {
        log(log_level::warning, "OpenSSL default CA paths could not be loaded: " + ec.message());
    }
    if (!tls.ca_file.empty()) {
        tls_ctx_->load_verify_file(tls.ca_file.string(), ec);
        if (ec) {
            throw std::runtime_error("cannot load CA file " + tls.ca_file.string() + ": " +
                                     ec.message());
        }
    }
    if (!tls.client_cert_file.empty()) {
        tls_ctx_->use_certificate_chain_file(tls.client_cert_file.string(), ec);
        if (!ec) {
            const auto& key =
                tls.client_key_file.empty() ? tls.client_cert_file : tls.client_key_file;
            tls_ctx_->use_private_key_file(key.string(), asio::ssl::context::pem, ec);
        }
        if (ec) {
            throw std::runtime_error("cannot use the client certificate " +
                                     tls.client_cert_file.string() + ": " + ec.message());
        }
    }
    if (tls.insecure_skip_verify) {
        verify_ = false;
        tls_ctx_->set_verify_mode(asio::ssl::verify_none);
        if (log) {
            log(log_level::warning, "TLS certificate verification is OFF for " + origin_.origin() +
                                        " (insecure_skip_verify): never use this in production");
        }
    } else {
        tls_ctx_->set_verify_mode(asio::ssl::verify_peer);
    }
}

http_client::http_client(const endpoint_url& origin, std::shared_ptr<asio::ssl::context> tls,
                         std::size_t max_response_bytes)
    : origin_(origin), max_response_bytes_(max_response_bytes) {
    if (!origin_.tls()) return;
    if (!tls) throw std::invalid_argument("http_client: an https origin needs a TLS context");
    tls_ctx_ = std::move(tls);
    verify_ = SSL_CTX_get_verify_mode(tls_ctx_->native_handle()) != SSL_VERIFY_NONE;
}

http_client::~http_client() = default;

boost::system::result<http_response> http_client::send(
    http_request req, std::chrono::steady_clock::time_point deadline) {
    auto r = exchange(std::move(req), deadline);
    if (!r) return r.error().code;
    return std::move(*r);
}

boost::system::result<http_response, transport_error> http_client::exchange(
    http_request req, std::chrono::steady_clock::time_point deadline) {
    req.set(http::field::host, origin_.authority());
    if (req.find(http::field::user_agent) == req.end()) {
        req.set(http::field::user_agent, "Samband/1");
    }
    req.keep_alive(false);
    req.prepare_payload();

    asio::io_context ioc{1};
    tcp::resolver resolver{ioc};
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
    if (tls_ctx_) {
        secure.emplace(ioc, *tls_ctx_);
    } else {
        plain.emplace(ioc);
    }
    beast::tcp_stream& lowest = secure ? beast::get_lowest_layer(*secure) : *plain;

    boost::system::error_code ec;
    http_step step = http_step::resolve;
    http_response res;
    bool done = false;
    bool abandoned = false;  // set at the deadline: the coroutine starts nothing new after it
    std::exception_ptr failure_ptr;

    auto run = [&]() -> asio::awaitable<void> {
        auto token = asio::redirect_error(asio::use_awaitable, ec);
        if (abandoned) co_return;
        const auto endpoints =
            co_await resolver.async_resolve(origin_.host, std::to_string(origin_.port), token);
        if (ec || abandoned) co_return;
        step = http_step::connect;
        co_await lowest.async_connect(endpoints, token);
        if (ec || abandoned) co_return;
        if (secure) {
            step = http_step::tls_handshake;
            if (!is_ip_literal(origin_.host) &&
                !SSL_set_tlsext_host_name(secure->native_handle(), origin_.host.c_str())) {
                ec = boost::system::error_code(static_cast<int>(::ERR_get_error()),
                                               asio::error::get_ssl_category());
                co_return;
            }
            if (verify_) {
                secure->set_verify_callback(asio::ssl::host_name_verification(origin_.host));
            }
            co_await secure->async_handshake(asio::ssl::stream_base::client, token);
            if (ec || abandoned) co_return;
            co_await write_then_read(*secure, req, res, max_response_bytes_, ec, step, abandoned);
        } else {
            co_await write_then_read(*plain, req, res, max_response_bytes_, ec, step, abandoned);
        }
    };
    asio::co_spawn(ioc, run(), [&](std::exception_ptr e) {
        failure_ptr = e;
        done = true;
    });
    ioc.run_until(deadline);
    if (!done) {
        // Deadline passed: abandon the exchange, let the coroutine unwind, report a timeout.
        abandoned = true;
        resolver.cancel();
        boost::system::error_code ignored;
        lowest.socket().close(ignored);
        ioc.restart();
        ioc.run();
        return transport_error{beast::error::timeout, step};
    }
    if (failure_ptr) std::rethrow_exception(failure_ptr);
    if (ec) return transport_error{ec, step};
    boost::system::error_code ignored;
    lowest.socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest.socket().close(ignored);
    return res;
}

std::string_view step_name(http_step s) {
    switch (s) {
        case http_step::resolve:
            return "resolve";
        case http_step::connect:
            return "connect";
        case http_step::tls_handshake:
            return "TLS handshake";
        case http_step::send:
            return "send";
        case http_step::receive:
            return "receive";
    }
    return "exchange";
}

void throw_exception_from_error(transport_error const& e, boost::source_location const& loc) {
    boost::throw_exception(boost::system::system_error(e.code), loc);
}

std::string describe_transport_error(const boost::system::error_code& ec) {
    if (ec == beast::error::timeout) return "timed out waiting for the server";
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == http::error::partial_message ||
        ec == asio::ssl::error::stream_truncated) {
        return "connection closed by the server before a complete answer (" + ec.message() + ")";
    }
    if (ec == asio::error::connection_refused) return "connection refused";
    if (ec == http::error::body_limit) return "answer larger than the configured limit";
    if (ec.category() == asio::error::get_ssl_category()) return "TLS error: " + ec.message();
    return ec.message();
}

}  // namespace samband::net
