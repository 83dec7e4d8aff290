// The integration harness's HTTP client, compiled once (Beast is the slowest header set to build).
#include "harness.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace samband::test {

http_response http(const std::string& hostport, const std::string& method,
                   const std::string& target, const std::string& body, const std::string& token) {
    namespace beast = boost::beast;
    namespace http = beast::http;
    boost::asio::io_context io;
    boost::asio::ip::tcp::resolver resolver(io);
    auto colon = hostport.rfind(':');
    beast::tcp_stream stream(io);
    boost::system::error_code ec;
    auto results = resolver.resolve(hostport.substr(0, colon), hostport.substr(colon + 1), ec);
    if (ec) return {};
    stream.connect(results, ec);
    if (ec) return {};
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, hostport);
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
    }
    http::write(stream, req, ec);
    if (ec) return {};
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream, buf, parser, ec);
    if (ec) return {};
    return {static_cast<int>(parser.get().result_int()), parser.get().body()};
}

}  // namespace samband::test
