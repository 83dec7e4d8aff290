#include "directory/fastlegeregisteret.hpp"

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

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "core/ids.hpp"

#include <cstring>
#include <optional>

namespace samband::directory {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

constexpr const char* kAction =
    "http://schemas.nhn.no/reg/flr/IFlrReadOperations/GetPatientGPDetails";
constexpr std::size_t kMaxAnswer = 1024 * 1024;

std::string xml_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '&':
                out += "&amp;";
                break;
            case '"':
                out += "&quot;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

const xmlNode* find(const xmlNode* n, const char* local) {
    for (; n; n = n->next) {
        if (n->type == XML_ELEMENT_NODE &&
            std::strcmp(reinterpret_cast<const char*>(n->name), local) == 0)
            return n;
        if (const xmlNode* c = find(n->children, local)) return c;
    }
    return nullptr;
}

std::string text_of(const xmlNode* n) {
    if (!n) return {};
    xmlChar* t = xmlNodeGetContent(n);
    std::string s = t ? reinterpret_cast<const char*>(t) : "";
    xmlFree(t);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    std::size_t b = 0;
    while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    return s.substr(b);
}

using lookup = boost::system::result<std::optional<gp_info>, std::string>;
lookup lookup_error(std::string msg) {
    return lookup(boost::system::in_place_error, std::move(msg));
}

// A transport failure (a distinct type: result<std::string, std::string> would be ambiguous).
struct transport_error {
    std::string message;
};
using transport = boost::system::result<std::string, transport_error>;

struct doc_deleter {
    void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};

class flr_directory final : public gp_directory {
public:
    flr_directory(flr_options o, std::unique_ptr<gp_directory> names)
        : opts_(std::move(o)), names_(std::move(names)) {
        auto u = boost::urls::parse_uri(opts_.url);
        if (!u || (u->scheme() != "https" && u->scheme() != "http"))
            throw std::runtime_error("fastlegeregisteret: url must be https://… (got \"" +
                                     opts_.url + "\")");
        https_ = u->scheme() == "https";
        host_ = u->host();
        port_ = u->has_port() ? std::string(u->port()) : (https_ ? "443" : "80");
        target_ = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
        if (!https_ && host_ != "127.0.0.1" && host_ != "localhost")
            throw std::runtime_error(
                "fastlegeregisteret: plain http is only allowed on loopback (tests)");
    }

    boost::system::result<std::optional<gp_info>, std::string> find_gp(
        std::string_view patient_id) override {
        auto body = post(flr_request(patient_id));
        if (!body) return lookup_error(body.error().message);
        auto answer = parse_flr_response(*body);
        if (!answer) return lookup_error("Fastlegeregisteret: " + answer.error());
        if (!answer->gp_her_id) return std::optional<gp_info>();
        if (names_) {
            auto named = names_->find_by_her_id(*answer->gp_her_id);
            if (named && *named) return named;
        }
        gp_info g;
        g.gp_her_id = *answer->gp_her_id;
        return std::optional<gp_info>(g);
    }

    boost::system::result<std::optional<gp_info>, std::string> find_by_her_id(
        std::string_view her_id) override {
        if (names_) return names_->find_by_her_id(her_id);
        gp_info g;
        g.gp_her_id = std::string(her_id);
        return std::optional<gp_info>(g);
    }

private:
    // One request/answer on a connected stream, as asynchronous operations: the deadline timer
    // of post() cancels them (blocking Beast calls would ignore any timeout).
    template <class Stream>
    asio::awaitable<transport> exchange(Stream& stream, const std::string& body) {
        http::request<http::string_body> req{http::verb::post, target_, 11};
        req.set(http::field::host, host_);
        req.set(http::field::content_type, "text/xml; charset=utf-8");
        req.set("SOAPAction", std::string("\"") + kAction + "\"");
        req.set(http::field::authorization,
                "Basic " + core::base64_encode(opts_.username + ":" + opts_.password));
        req.body() = body;
        req.prepare_payload();
        boost::system::error_code ec;
        auto tok = asio::redirect_error(asio::use_awaitable, ec);
        co_await http::async_write(stream, req, tok);
        if (ec) co_return transport_error{"Fastlegeregisteret: sending failed: " + ec.message()};
        beast::flat_buffer buf;
        http::response_parser<http::string_body> parser;
        parser.body_limit(kMaxAnswer);
        co_await http::async_read(stream, buf, parser, tok);
        if (ec) co_return transport_error{"Fastlegeregisteret: no answer: " + ec.message()};
        auto status = parser.get().result_int();
        if (status == 401 || status == 403)
            co_return transport_error{"Fastlegeregisteret refused the credentials (HTTP " +
                                      std::to_string(status) + ")"};
        // SOAP faults come with HTTP 500 and are read like any answer.
        if (status != 200 && status != 500)
            co_return transport_error{"Fastlegeregisteret answered HTTP " + std::to_string(status)};
        co_return transport(boost::system::in_place_value, parser.get().body());
    }

    asio::awaitable<transport> plain(asio::ip::tcp::resolver& resolver, beast::tcp_stream& stream,
                                     const std::string& body) {
        boost::system::error_code ec;
        auto tok = asio::redirect_error(asio::use_awaitable, ec);
        auto results = co_await resolver.async_resolve(host_, port_, tok);
        if (ec)
            co_return transport_error{"Fastlegeregisteret: cannot resolve " + host_ + ": " +
                                      ec.message()};
        co_await stream.async_connect(results, tok);
        if (ec) co_return transport_error{"Fastlegeregisteret: cannot connect: " + ec.message()};
        co_return co_await exchange(stream, body);
    }

    asio::awaitable<transport> tls(asio::ip::tcp::resolver& resolver,
                                   beast::ssl_stream<beast::tcp_stream>& stream,
                                   const std::string& body) {
        boost::system::error_code ec;
        auto tok = asio::redirect_error(asio::use_awaitable, ec);
        auto results = co_await resolver.async_resolve(host_, port_, tok);
        if (ec)
            co_return transport_error{"Fastlegeregisteret: cannot resolve " + host_ + ": " +
                                      ec.message()};
        co_await beast::get_lowest_layer(stream).async_connect(results, tok);
        if (!ec) co_await stream.async_handshake(asio::ssl::stream_base::client, tok);
        if (ec)
            co_return transport_error{"Fastlegeregisteret: TLS connection failed: " + ec.message()};
        co_return co_await exchange(stream, body);
    }

    // The whole lookup (resolve, connect, TLS, request, answer) has one deadline, opts_.timeout:
    // when it passes, the timer closes the socket and the lookup fails naming the timeout.
    transport post(const std::string& body) {
        asio::io_context io;
        asio::ip::tcp::resolver resolver(io);
        asio::steady_timer deadline(io);
        bool timed_out = false;
        std::optional<transport> out;
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
                    out = transport_error{"Fastlegeregisteret: lookup failed"};
                else
                    out = std::move(r);
            });
            io.run();
        };
        if (!https_) {
            beast::tcp_stream stream(io);
            run(stream, plain(resolver, stream, body));
        } else {
            boost::system::error_code ec;
            asio::ssl::context ctx(asio::ssl::context::tls_client);
            ctx.set_default_verify_paths();
            if (!opts_.ca_file.empty()) ctx.load_verify_file(opts_.ca_file, ec);
            ctx.set_verify_mode(opts_.verify_tls ? asio::ssl::verify_peer : asio::ssl::verify_none);
            beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
            if (opts_.verify_tls)
                stream.set_verify_callback(asio::ssl::host_name_verification(host_));
            SSL_set_tlsext_host_name(stream.native_handle(), host_.c_str());
            run(stream, tls(resolver, stream, body));
        }
        if (timed_out)
            return transport_error{"Fastlegeregisteret: no answer within " +
                                   std::to_string(opts_.timeout.count()) + " ms (timeout)"};
        if (!out) return transport_error{"Fastlegeregisteret: lookup did not complete"};
        return std::move(*out);
    }

    flr_options opts_;
    std::unique_ptr<gp_directory> names_;
    bool https_ = true;
    std::string host_, port_, target_;
};

}  // namespace

std::string flr_request(std::string_view patient_nin) {
    return std::string(
               "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
               "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>"
               "<GetPatientGPDetails xmlns=\"http://schemas.nhn.no/reg/flr\"><patientNin>") +
           xml_escape(patient_nin) + "</patientNin></GetPatientGPDetails></s:Body></s:Envelope>";
}

namespace {
boost::system::result<flr_answer, std::string> flr_fail(std::string msg) {
    return boost::system::result<flr_answer, std::string>(boost::system::in_place_error,
                                                          std::move(msg));
}
}  // namespace

boost::system::result<flr_answer, std::string> parse_flr_response(std::string_view xml) {
    if (xml.size() > kMaxAnswer) return flr_fail(std::string("answer too large"));
    // Hostile input is normal input: no DTD, no entities, no network.
    if (xml.find("<!DOCTYPE") != std::string_view::npos ||
        xml.find("<!ENTITY") != std::string_view::npos)
        return flr_fail(std::string("answer has a DTD (refused)"));
    std::unique_ptr<xmlDoc, doc_deleter> doc(xmlReadMemory(
        xml.data(), static_cast<int>(xml.size()), "flr.xml", nullptr,
        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOBLANKS));
    if (!doc) return flr_fail(std::string("answer is not well-formed XML"));
    const xmlNode* root = xmlDocGetRootElement(doc.get());
    if (!root || std::strcmp(reinterpret_cast<const char*>(root->name), "Envelope") != 0)
        return flr_fail(std::string("answer is not a SOAP envelope"));
    if (const xmlNode* fault = find(root, "Fault")) {
        std::string msg = text_of(find(fault, "Message"));
        if (msg.empty()) msg = text_of(find(fault, "Text"));
        if (msg.empty()) msg = text_of(find(fault, "faultstring"));
        if (msg.find("ikke tilknyttet fastlegekontrakt") != std::string::npos) return flr_answer{};
        return flr_fail("fault: " + (msg.empty() ? std::string("(no text)") : msg));
    }
    const xmlNode* result = find(root, "GetPatientGPDetailsResult");
    if (!result) return flr_fail(std::string("answer has no GetPatientGPDetailsResult"));
    std::string her = text_of(find(result->children, "GPHerId"));
    if (her.empty()) return flr_answer{};
    if (her.find_first_not_of("0123456789") != std::string::npos)
        return flr_fail("GPHerId \"" + her + "\" is not a number");
    return flr_answer{her};
}

std::unique_ptr<gp_directory> open_fastlegeregisteret(flr_options opts,
                                                      std::unique_ptr<gp_directory> names) {
    return std::make_unique<flr_directory>(std::move(opts), std::move(names));
}

}  // namespace samband::directory
