#include "directory/soap_http.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include "core/ids.hpp"

#include <optional>
#include <stdexcept>

namespace samband::directory {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

constexpr std::size_t kMaxAnswer = 4 * 1024 * 1024;

// A transport failure (a distinct type: result<std::string, std::string> would be ambiguous).
struct transport_error {
    std::string message;
};
using transport = boost::system::result<std::string, transport_error>;
using headers_t = std::vector<std::pair<std::string, std::string>>;

struct exchange_args {
    const soap_http_options& opts;
    const std::string& host;
    const std::string& port;
    const std::string& target;
    const std::string& body;
    const std::string& content_type;
    const headers_t& headers;
};

// One request/answer on a connected stream, as asynchronous operations: the deadline timer of
// post() cancels them (blocking Beast calls would ignore any timeout).
template <class Stream>
asio::awaitable<transport> exchange(Stream& stream, exchange_args a) {
    const std::string& what = a.opts.what;
    http::request<http::string_body> req{http::verb::post, a.target, 11};
    req.set(http::field::host, a.host);
    req.set(http::field::content_type, a.content_type);
    for (const auto& [k, v] : a.headers) req.set(k, v);
    if (!a.opts.username.empty())
        req.set(http::field::authorization,
                "Basic " + core::base64_encode(a.opts.username + ":" + a.opts.password));
    req.body() = a.body;
    req.prepare_payload();
    boost::system::error_code ec;
    auto tok = asio::redirect_error(asio::use_awaitable, ec);
    co_await http::async_write(stream, req, tok);
    if (ec) co_return transport_error{what + ": sending failed: " + ec.message()};
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxAnswer);
    co_await http::async_read(stream, buf, parser, tok);
    if (ec) co_return transport_error{what + ": no answer: " + ec.message()};
    auto status = parser.get().result_int();
    if (status == 401 || status == 403)
        co_return transport_error{what + " refused the credentials (HTTP " +
                                  std::to_string(status) + ")"};
    // SOAP faults come with HTTP 500 and are read like any answer.
    if (status != 200 && status != 500)
        co_return transport_error{what + " answered HTTP " + std::to_string(status)};
    co_return transport(boost::system::in_place_value, parser.get().body());
}

asio::awaitable<transport> plain(asio::ip::tcp::resolver& resolver, beast::tcp_stream& stream,
                                 exchange_args a) {
    boost::system::error_code ec;
    auto tok = asio::redirect_error(asio::use_awaitable, ec);
    auto results = co_await resolver.async_resolve(a.host, a.port, tok);
    if (ec)
        co_return transport_error{a.opts.what + ": cannot resolve " + a.host + ": " + ec.message()};
    co_await stream.async_connect(results, tok);
    if (ec) co_return transport_error{a.opts.what + ": cannot connect: " + ec.message()};
    co_return co_await exchange(stream, a);
}

asio::awaitable<transport> tls(asio::ip::tcp::resolver& resolver,
                               beast::ssl_stream<beast::tcp_stream>& stream, exchange_args a) {
    boost::system::error_code ec;
    auto tok = asio::redirect_error(asio::use_awaitable, ec);
    auto results = co_await resolver.async_resolve(a.host, a.port, tok);
    if (ec)
        co_return transport_error{a.opts.what + ": cannot resolve " + a.host + ": " + ec.message()};
    co_await beast::get_lowest_layer(stream).async_connect(results, tok);
    if (!ec) co_await stream.async_handshake(asio::ssl::stream_base::client, tok);
    if (ec) co_return transport_error{a.opts.what + ": TLS connection failed: " + ec.message()};
    co_return co_await exchange(stream, a);
}

}  // namespace

soap_http::soap_http(soap_http_options o) : opts_(std::move(o)) {
    auto u = boost::urls::parse_uri(opts_.url);
    if (!u || (u->scheme() != "https" && u->scheme() != "http"))
        throw std::runtime_error(opts_.what + ": url must be https://… (got \"" + opts_.url +
                                 "\")");
    https_ = u->scheme() == "https";
    host_ = u->host();
    port_ = u->has_port() ? std::string(u->port()) : (https_ ? "443" : "80");
    target_ = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
    if (!https_ && host_ != "127.0.0.1" && host_ != "localhost")
        throw std::runtime_error(opts_.what + ": plain http is only allowed on loopback (tests)");
}

// The whole lookup (resolve, connect, TLS, request, answer) has one deadline, opts_.timeout: when
// it passes, the timer closes the socket and the lookup fails naming the timeout.
boost::system::result<std::string, std::string> soap_http::post(const std::string& body,
                                                                const std::string& content_type,
                                                                const headers_t& headers) const {
    using out_t = boost::system::result<std::string, std::string>;
    asio::io_context io;
    asio::ip::tcp::resolver resolver(io);
    asio::steady_timer deadline(io);
    bool timed_out = false;
    std::optional<transport> out;
    exchange_args args{opts_, host_, port_, target_, body, content_type, headers};
    auto run = [&](auto& stream, auto op) {
        deadline.expires_after(opts_.timeout);
        deadline.async_wait([&](boost::system::error_code ec) {
            if (ec) return;
            timed_out = true;
            resolver.cancel();
            boost::system::error_code ignored;
            beast::get_lowest_layer(stream).socket().close(ignored);
        });
        asio::co_spawn(io, std::move(op), [&](std::exception_ptr e, transport r) {
            deadline.cancel();
            if (e)
                out = transport_error{opts_.what + ": lookup failed"};
            else
                out = std::move(r);
        });
        io.run();
    };
    if (!https_) {
        beast::tcp_stream stream(io);
        run(stream, plain(resolver, stream, args));
    } else {
        boost::system::error_code ec;
        asio::ssl::context ctx(asio::ssl::context::tls_client);
        ctx.set_default_verify_paths();
        if (!opts_.ca_file.empty()) ctx.load_verify_file(opts_.ca_file, ec);
        ctx.set_verify_mode(opts_.verify_tls ? asio::ssl::verify_peer : asio::ssl::verify_none);
        beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
        if (opts_.verify_tls) stream.set_verify_callback(asio::ssl::host_name_verification(host_));
        SSL_set_tlsext_host_name(stream.native_handle(), host_.c_str());
        run(stream, tls(resolver, stream, args));
    }
    if (timed_out)
        return out_t(boost::system::in_place_error, opts_.what + ": no answer within " +
                                                        std::to_string(opts_.timeout.count()) +
                                                        " ms (timeout)");
    if (!out) return out_t(boost::system::in_place_error, opts_.what + ": lookup did not complete");
    if (!*out) return out_t(boost::system::in_place_error, std::move(out->error().message));
    return out_t(boost::system::in_place_value, std::move(**out));
}

}  // namespace samband::directory
