#include "fhir/listener.hpp"

#include <samband/json.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

namespace samband::fhir {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using samband::sdk::error;
using samband::sdk::log_level;

namespace {

const rapidjson::Value* member(const rapidjson::Value& o, const char* n) {
    if (!o.IsObject()) return nullptr;
    auto it = o.FindMember(n);
    return it == o.MemberEnd() ? nullptr : &it->value;
}
std::string str(const rapidjson::Value& o, const char* n) {
    const auto* v = member(o, n);
    if (!v) return {};
    if (!v->IsString())
        throw error(SAMBAND_INVALID, std::string("fhir: listen.") + n + " must be a string");
    return v->GetString();
}
std::uint64_t num(const rapidjson::Value& o, const char* n, std::uint64_t fallback,
                  std::uint64_t lo, std::uint64_t hi) {
    const auto* v = member(o, n);
    if (!v) return fallback;
    if (!v->IsUint64() || v->GetUint64() < lo || v->GetUint64() > hi)
        throw error(SAMBAND_INVALID, std::string("fhir: listen.") + n + " must be a whole " +
                                         "number from " + std::to_string(lo) + " to " +
                                         std::to_string(hi));
    return v->GetUint64();
}

// Base64 of raw bytes (for an input that is not valid UTF-8 text).
std::string base64(std::string_view body) {
    std::string out(4 * ((body.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(body.data()),
                                  static_cast<int>(body.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string sha256_hex(std::string_view s) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out.push_back(hex[md[i] >> 4]);
        out.push_back(hex[md[i] & 15]);
    }
    return out;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

listener_config listener_config::from_json(const rapidjson::Value& v,
                                           const samband::sdk::host& host) {
    if (!v.IsObject()) throw error(SAMBAND_INVALID, "fhir: listen must be an object");
    static constexpr const char* known[] = {"address",
                                            "port_file",
                                            "base_path",
                                            "max_body_bytes",
                                            "max_connections",
                                            "commit_timeout_ms",
                                            "bearer_token_secrets",
                                            "tls",
                                            "allow_synthetic_ids",
                                            "max_depth",
                                            "max_entries"};
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
        bool ok = false;
        for (const char* k : known) ok = ok || std::string_view(k) == it->name.GetString();
        if (!ok)
            throw error(SAMBAND_INVALID,
                        std::string("fhir: listen.") + it->name.GetString() + " is not a setting");
    }
    listener_config c;
    std::string addr = str(v, "address");
    if (addr.empty()) addr = "127.0.0.1:0";
    const auto colon = addr.rfind(':');
    if (colon == std::string::npos)
        throw error(SAMBAND_INVALID, "fhir: listen.address must be IP:port, e.g. 127.0.0.1:8443");
    c.address = addr.substr(0, colon);
    try {
        const unsigned long p = std::stoul(addr.substr(colon + 1));
        if (p > 65535) throw std::out_of_range("port");
        c.port = static_cast<std::uint16_t>(p);
    } catch (const std::exception&) {
        throw error(SAMBAND_INVALID, "fhir: listen.address has no valid port: " + addr);
    }
    boost::system::error_code ec;
    const auto ip = asio::ip::make_address(c.address, ec);
    if (ec) throw error(SAMBAND_INVALID, "fhir: listen.address is not an IP address: " + addr);
    c.port_file = str(v, "port_file");
    c.base_path = str(v, "base_path");
    while (!c.base_path.empty() && c.base_path.back() == '/') c.base_path.pop_back();
    if (!c.base_path.empty() && c.base_path.front() != '/')
        throw error(SAMBAND_INVALID, "fhir: listen.base_path must start with /");
    c.max_body_bytes = num(v, "max_body_bytes", c.max_body_bytes, 1024, 256u * 1024 * 1024);
    c.inbound.max_bytes = c.max_body_bytes;
    c.max_connections = num(v, "max_connections", c.max_connections, 1, 10000);
    c.commit_timeout_ms =
        static_cast<std::uint32_t>(num(v, "commit_timeout_ms", c.commit_timeout_ms, 100, 600000));
    c.inbound.max_depth = num(v, "max_depth", c.inbound.max_depth, 8, 128);
    c.inbound.max_entries = num(v, "max_entries", c.inbound.max_entries, 1, 10000);
    if (const auto* s = member(v, "allow_synthetic_ids")) {
        if (!s->IsBool())
            throw error(SAMBAND_INVALID, "fhir: listen.allow_synthetic_ids must be true/false");
        c.inbound.allow_synthetic_ids = s->GetBool();
    }
    if (const auto* secrets = member(v, "bearer_token_secrets")) {
        if (!secrets->IsArray())
            throw error(SAMBAND_INVALID, "fhir: listen.bearer_token_secrets must be an array");
        for (const auto& s : secrets->GetArray()) {
            if (!s.IsString())
                throw error(SAMBAND_INVALID, "fhir: listen.bearer_token_secrets: names only");
            auto tok = host.secret(s.GetString());
            if (!tok || tok->empty())
                throw error(SAMBAND_INVALID, std::string("fhir: listen.bearer_token_secrets: no "
                                                         "secret named ") +
                                                 s.GetString());
            while (!tok->empty() && (tok->back() == '\n' || tok->back() == '\r')) tok->pop_back();
            c.bearer_tokens.push_back(std::move(*tok));
        }
    }
    if (const auto* tls = member(v, "tls")) {
        if (!tls->IsObject()) throw error(SAMBAND_INVALID, "fhir: listen.tls must be an object");
        c.tls_cert_file = str(*tls, "cert_file");
        c.tls_key_file = str(*tls, "key_file");
        c.tls_ca_file = str(*tls, "ca_file");
        if (c.tls_cert_file.empty() || c.tls_key_file.empty())
            throw error(SAMBAND_INVALID, "fhir: listen.tls needs cert_file and key_file");
    }
    if (!ip.is_loopback() &&
        (c.tls_cert_file.empty() || (c.bearer_tokens.empty() && c.tls_ca_file.empty())))
        throw error(SAMBAND_INVALID,
                    "fhir: listen.address " + addr +
                        " is not loopback: it needs tls (cert_file, key_file) and bearer tokens "
                        "or client certificates (tls.ca_file)");
    return c;
}

namespace {
struct submit_answer {
    bool done = false;
    samband_status status = SAMBAND_INTERNAL;
    std::string event_id;
    bool duplicate = false;
    std::string message;
};
}  // namespace

struct listener::impl : std::enable_shared_from_this<listener::impl> {
    listener_config cfg;
    samband::sdk::host host;
    asio::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    std::optional<asio::ssl::context> tls;
    std::size_t connections = 0;  // THREAD: the io thread only

    impl(listener_config c, samband::sdk::host h) : cfg(std::move(c)), host(h) {}

    using response = http::response<http::string_body>;

    response answer(http::status st, std::string body, unsigned version) {
        response r{st, version};
        r.set(http::field::content_type, "application/fhir+json; charset=utf-8");
        r.set(http::field::server, "Samband");
        r.body() = std::move(body);
        r.prepare_payload();
        return r;
    }
    response refuse(http::status st, const mapping_error& e, unsigned version,
                    std::string_view code = "invalid") {
        return answer(st, operation_outcome(e, code), version);
    }

    // Submits every event; answers once all are committed (or one is refused).
    // `message`: the request body of a $process-message (answered with a message Bundle).
    asio::awaitable<response> take(std::vector<inbound_event> events, bool single, unsigned version,
                                   std::string_view message = {}) {
        struct state {
            std::size_t left;
            std::vector<submit_answer> answers;
            asio::steady_timer timer;
            state(asio::io_context& io, std::size_t n) : left(n), answers(n), timer(io) {}
        };
        auto st = std::make_shared<state>(ioc, events.size());
        st->timer.expires_after(std::chrono::milliseconds(cfg.commit_timeout_ms));
        for (std::size_t i = 0; i < events.size(); ++i) {
            auto self = shared_from_this();
            samband_status s = host.submit(
                events[i].envelope_json, {}, [self, st, i](const samband::sdk::submit_result& r) {
                    asio::post(self->ioc, [st, i, r] {
                        st->answers[i] = {true, r.status, r.event_id, r.duplicate, r.message};
                        if (--st->left == 0) st->timer.cancel();
                    });
                });
            if (s != SAMBAND_OK) {
                st->answers[i] = {true, s, {}, false, "the host did not take the event"};
                --st->left;
            }
        }
        if (st->left > 0) {
            boost::system::error_code ec;
            co_await st->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
        if (st->left > 0) {
            auto r = refuse(http::status::service_unavailable,
                            {"not committed within the time limit; send it again (it is stored "
                             "once)",
                             ""},
                            version, "transient");
            r.set(http::field::retry_after, "5");
            co_return r;
        }
        std::string ids;
        for (std::size_t i = 0; i < events.size(); ++i) {
            const auto& a = st->answers[i];
            if (a.status == SAMBAND_INVALID || a.status == SAMBAND_PERMANENT)
                co_return refuse(http::status::bad_request, {a.message, events[i].path}, version);
            if (a.status != SAMBAND_OK) {
                auto r = refuse(http::status::service_unavailable,
                                {"not stored (" + a.message + "); send it again", events[i].path},
                                version, "transient");
                r.set(http::field::retry_after, "5");
                co_return r;
            }
            if (!ids.empty()) ids += ", ";
            ids += a.event_id + (a.duplicate ? " (already known)" : "");
        }
        if (!message.empty())
            co_return answer(http::status::ok,
                             message_response(message, "accepted as event " + ids), version);
        co_return answer(single ? http::status::created : http::status::ok,
                         operation_outcome_info("accepted as event " + ids), version);
    }

    // Keeps a refused request in the host's error store (samband.input.rejected) with its
    // reason, and waits for the commit (bounded), so nothing refused is lost.
    asio::awaitable<void> keep_rejected(std::string_view target, std::string_view body,
                                        const std::string& reason) {
        const std::string why = "POST " + cfg.base_path + std::string(target) + ": " + reason;
        std::string text = rejection(target, body, why, std::string(body));
        rapidjson::Document check;
        if (!samband::json::parse(text, check).empty())  // not UTF-8 text: keep the bytes
            text = rejection(target, body, why, "base64:" + base64(body));
        auto timer = std::make_shared<asio::steady_timer>(ioc);
        timer->expires_after(std::chrono::milliseconds(cfg.commit_timeout_ms));
        auto self = shared_from_this();
        if (host.submit(text, {}, [self, timer](const samband::sdk::submit_result&) {
                asio::post(self->ioc, [timer] { timer->cancel(); });
            }) != SAMBAND_OK)
            co_return;
        boost::system::error_code ec;
        co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }

    static std::string rejection(std::string_view target, std::string_view body,
                                 const std::string& why, const std::string& input) {
        rapidjson::StringBuffer b;
        rapidjson::Writer<rapidjson::StringBuffer> w(b);
        w.StartObject();
        w.Key("schema");
        w.String("samband.event/1");
        w.Key("type");
        w.String("samband.input.rejected");
        w.Key("idempotency_key");
        w.String(("fhir-rejected-" + sha256_hex(std::string(target) + "\n" + std::string(body)))
                     .c_str());
        w.Key("rejected");
        w.StartObject();
        w.Key("reason");
        w.String(why.data(), static_cast<rapidjson::SizeType>(why.size()));
        w.Key("input");
        w.String(input.data(), static_cast<rapidjson::SizeType>(input.size()));
        w.EndObject();
        w.EndObject();
        return {b.GetString(), b.GetSize()};
    }

    asio::awaitable<response> handle(http::request<http::string_body>& req) {
        const unsigned v = req.version();
        if (!cfg.bearer_tokens.empty()) {
            const auto auth = req[http::field::authorization];
            bool ok = false;
            if (auth.size() > 7 &&
                (auth.substr(0, 7) == "Bearer " || auth.substr(0, 7) == "bearer "))
                for (const auto& t : cfg.bearer_tokens)
                    ok = ok || equal_constant_time(auth.substr(7), t);
            if (!ok) {
                auto r = refuse(http::status::unauthorized,
                                {"a valid bearer token is required", ""}, v, "login");
                r.set(http::field::www_authenticate, "Bearer");
                co_return r;
            }
        }
        std::string_view target(req.target().data(), req.target().size());
        if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
        if (!cfg.base_path.empty()) {
            if (target.substr(0, cfg.base_path.size()) != cfg.base_path ||
                (target.size() > cfg.base_path.size() && target[cfg.base_path.size()] != '/'))
                co_return refuse(http::status::not_found,
                                 {"no FHIR endpoint at " + std::string(target), ""}, v,
                                 "not-found");
            target.remove_prefix(cfg.base_path.size());
        }
        if (req.method() != http::verb::post)
            co_return refuse(http::status::method_not_allowed,
                             {"only POST is answered here (resources, Bundles, "
                              "$process-message)",
                              ""},
                             v, "not-supported");
        const auto ct = req[http::field::content_type];
        if (ct.find("json") == std::string_view::npos)
            co_return refuse(http::status::unsupported_media_type,
                             {"Content-Type must be application/fhir+json", ""}, v,
                             "not-supported");
        auto parsed = parse_incoming(target, req.body(), cfg.inbound);
        if (!parsed) {
            if (host.log_enabled(log_level::info))
                host.log(log_level::info, "fhir: refused a POST to " + std::string(target) + ": " +
                                              parsed.error().text());
            co_await keep_rejected(target, req.body(), parsed.error().text());
            co_return refuse(http::status::bad_request, parsed.error(), v);
        }
        const bool single = target.size() > 1 && target != "/$process-message";
        const std::string_view message =
            target == "/$process-message" ? std::string_view(req.body()) : std::string_view();
        co_return co_await take(std::move(*parsed), single, v, message);
    }

    template <class Stream>
    asio::awaitable<void> serve(Stream& stream) {
        beast::flat_buffer buffer;
        buffer.reserve(64 * 1024);
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.body_limit(cfg.max_body_bytes);
            parser.header_limit(16 * 1024);
            beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
            auto [ec, n] = co_await http::async_read(stream, buffer, parser,
                                                     asio::as_tuple(asio::use_awaitable));
            (void)n;
            if (ec == http::error::body_limit) {
                auto r = refuse(http::status::payload_too_large,
                                {"the body is over the limit of " +
                                     std::to_string(cfg.max_body_bytes) + " bytes",
                                 ""},
                                11, "too-costly");
                r.keep_alive(false);
                co_await http::async_write(stream, r, asio::as_tuple(asio::use_awaitable));
                co_return;
            }
            if (ec) co_return;
            auto req = parser.release();
            beast::get_lowest_layer(stream).expires_never();
            auto res = co_await handle(req);
            res.keep_alive(req.keep_alive());
            beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
            auto [wec, wn] =
                co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
            (void)wn;
            if (wec || !res.keep_alive()) co_return;
        }
    }

    asio::awaitable<void> session(tcp::socket sock) {
        ++connections;
        struct guard {
            std::size_t& n;
            ~guard() { --n; }
        } g{connections};
        if (tls) {
            beast::ssl_stream<beast::tcp_stream> s(beast::tcp_stream(std::move(sock)), *tls);
            beast::get_lowest_layer(s).expires_after(std::chrono::seconds(30));
            auto [ec] = co_await s.async_handshake(asio::ssl::stream_base::server,
                                                   asio::as_tuple(asio::use_awaitable));
            if (ec) {
                host.log(log_level::warn, "fhir: TLS handshake refused: " + ec.message());
                co_return;
            }
            co_await serve(s);
            beast::get_lowest_layer(s).expires_after(std::chrono::seconds(5));
            co_await s.async_shutdown(asio::as_tuple(asio::use_awaitable));
        } else {
            beast::tcp_stream s(std::move(sock));
            co_await serve(s);
            boost::system::error_code ignored;
            s.socket().shutdown(tcp::socket::shutdown_send, ignored);
        }
    }

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, sock] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
            if (ec) {
                if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
                continue;
            }
            if (connections >= cfg.max_connections) {
                boost::system::error_code ignored;
                sock.close(ignored);
                continue;
            }
            asio::co_spawn(ioc, session(std::move(sock)), asio::detached);
        }
    }
};

listener::listener(listener_config config, samband::sdk::host host)
    : impl_(std::make_shared<impl>(std::move(config), host)) {}

listener::~listener() {
    stop();
}

void listener::start() {
    auto& i = *impl_;
    const auto& c = i.cfg;
    if (!c.tls_cert_file.empty()) {
        i.tls.emplace(asio::ssl::context::tls_server);
        i.tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                           asio::ssl::context::no_tlsv1_1);
        boost::system::error_code ec;
        i.tls->use_certificate_chain_file(c.tls_cert_file, ec);
        if (!ec) i.tls->use_private_key_file(c.tls_key_file, asio::ssl::context::pem, ec);
        if (ec)
            throw error(SAMBAND_INVALID, "fhir: listen.tls: cannot load " + c.tls_cert_file +
                                             " / " + c.tls_key_file + ": " + ec.message());
        if (!c.tls_ca_file.empty()) {
            i.tls->load_verify_file(c.tls_ca_file, ec);
            if (ec)
                throw error(SAMBAND_INVALID, "fhir: listen.tls.ca_file: cannot load " +
                                                 c.tls_ca_file + ": " + ec.message());
            i.tls->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
        }
    }
    boost::system::error_code ec;
    tcp::endpoint ep(asio::ip::make_address(c.address), c.port);
    i.acceptor.open(ep.protocol(), ec);
    if (!ec) i.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) i.acceptor.bind(ep, ec);
    if (!ec) i.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
        throw error(SAMBAND_RETRY, "fhir: cannot listen on " + c.address + ":" +
                                       std::to_string(c.port) + ": " + ec.message());
    port_ = i.acceptor.local_endpoint().port();
    if (!c.port_file.empty()) {
        const std::string tmp = c.port_file + ".tmp";
        {
            std::ofstream out(tmp, std::ios::trunc);
            out << port_.load() << "\n";
            if (!out) throw error(SAMBAND_INVALID, "fhir: cannot write listen.port_file " + tmp);
        }
        std::filesystem::rename(tmp, c.port_file);
    }
    i.host.log(log_level::info, "fhir: listening on " + c.address + ":" +
                                    std::to_string(port_.load()) + (i.tls ? " (TLS)" : ""));
    asio::co_spawn(i.ioc, i.accept_loop(), asio::detached);
    thread_ = std::thread([p = impl_] { p->ioc.run(); });
}

void listener::stop() {
    if (!thread_.joinable()) return;
    auto p = impl_;
    asio::post(p->ioc, [p] {
        boost::system::error_code ignored;
        p->acceptor.close(ignored);
        p->ioc.stop();
    });
    thread_.join();
}

}  // namespace samband::fhir
