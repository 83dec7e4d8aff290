#include "listener.hpp"

#include <samband/json.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <mutex>

namespace samband::http_source {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using samband::sdk::error;
using samband::sdk::log_level;

struct runtime {
    net::io_context io{1};
    std::optional<ssl::context> tls;
    std::optional<tcp::acceptor> acceptor;
    std::mutex mu;
    bool running = true;
    std::size_t connections = 0;  // io thread only

    template <class F>
    void post(F&& f) {
        std::lock_guard lock(mu);
        if (running) net::post(io, std::forward<F>(f));
    }
};

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(digits[p[i] >> 4]);
        out.push_back(digits[p[i] & 15]);
    }
    return out;
}

bool same(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string now_iso() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = c < 0x80         ? 0
                        : (c >> 5) == 6  ? 1
                        : (c >> 4) == 14 ? 2
                        : (c >> 3) == 30 ? 3
                                         : 9;
        if (n == 9 || i + n >= s.size() + (n ? 0 : 1)) return false;
        for (std::size_t k = 1; k <= n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
        i += n + 1;
    }
    return true;
}

// The input as text for the error store: as sent when it is UTF-8, else with \xHH escapes.
std::string printable(std::string_view body) {
    body = body.substr(0, 64 * 1024);
    if (valid_utf8(body)) return std::string(body);
    std::string out;
    char b[8];
    for (unsigned char c : body) {
        if (c >= 0x20 && c < 0x7f) {
            out.push_back(static_cast<char>(c));
        } else {
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        }
    }
    return out;
}

std::string json_text(const rapidjson::Value& v) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    v.Accept(w);
    return std::string(sb.GetString(), sb.GetSize());
}

std::string error_body(std::string_view why) {
    rapidjson::Document d(rapidjson::kObjectType);
    auto& a = d.GetAllocator();
    d.AddMember("error",
                rapidjson::Value(why.data(), static_cast<rapidjson::SizeType>(why.size()), a), a);
    return json_text(d) + "\n";
}

struct answer {
    http::status status = http::status::internal_server_error;
    std::string body;
    bool close = false;
};

answer refuse(http::status s, std::string_view why, bool close = false) {
    return {s, error_body(why), close};
}

using request = http::request<http::string_body>;

// Waits for the host's `done` on the io thread: the coroutine resumes after the commit.
template <class Token>
auto async_submit(std::shared_ptr<runtime> rt, samband::sdk::host host, std::string envelope,
                  Token&& token) {
    return net::async_initiate<Token, void(samband::sdk::submit_result)>(
        [](auto handler, std::shared_ptr<runtime> rt, samband::sdk::host host,
           std::string envelope) {
            using H = std::decay_t<decltype(handler)>;
            auto h = std::make_shared<std::optional<H>>(std::move(handler));
            auto st = host.submit(envelope, {}, [rt, h](const samband::sdk::submit_result& r) {
                rt->post([h, r] {
                    if (*h) std::move (**h)(r);
                });
            });
            if (st != SAMBAND_OK) {
                samband::sdk::submit_result r;
                r.status = st;
                r.message = "the host cannot take the event now";
                rt->post([h, r] {
                    if (*h) std::move (**h)(r);
                });
            }
        },
        token, std::move(rt), host, std::move(envelope));
}

// Owned by its coroutines (never by the runtime, whose io_context holds them: no cycle).
class server : public std::enable_shared_from_this<server> {
public:
    server(config cfg, samband::sdk::host host, const std::shared_ptr<runtime>& rt)
        : cfg_(std::move(cfg)), host_(host), weak_(rt), rt_(rt.get()) {}

    net::awaitable<void> accept_loop() {
        for (;;) {
            beast::error_code ec;
            tcp::socket s =
                co_await rt_->acceptor->async_accept(net::redirect_error(net::use_awaitable, ec));
            if (ec == net::error::operation_aborted || !rt_->acceptor->is_open()) co_return;
            if (ec) continue;
            if (rt_->connections >= cfg_.max_connections) {
                host_.log(log_level::warn,
                          "http: connection refused: " + std::to_string(cfg_.max_connections) +
                              " connections already open (max_connections)");
                s.close(ec);
                continue;
            }
            ++rt_->connections;
            net::co_spawn(
                rt_->io, connection(std::move(s)),
                [self = shared_from_this()](std::exception_ptr) { --self->rt_->connections; });
        }
    }

private:
    net::awaitable<void> connection(tcp::socket s) {
        auto stream = std::make_shared<beast::tcp_stream>(std::move(s));
        if (!rt_->tls) {
            co_await session(*stream, stream);
            co_return;
        }
        auto secure = std::make_shared<beast::ssl_stream<beast::tcp_stream&>>(*stream, *rt_->tls);
        beast::error_code ec;
        stream->expires_after(cfg_.request_timeout);
        co_await secure->async_handshake(ssl::stream_base::server,
                                         net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            host_.log(log_level::warn, "http: TLS handshake refused: " + ec.message());
            co_return;
        }
        stream->expires_never();
        co_await session(*secure, stream);
        stream->expires_after(std::chrono::seconds(2));
        co_await secure->async_shutdown(net::redirect_error(net::use_awaitable, ec));
    }

    template <class Stream>
    net::awaitable<void> session(Stream& io, std::shared_ptr<beast::tcp_stream> lowest) {
        beast::flat_buffer buf;
        buf.reserve(16 * 1024);
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(static_cast<std::uint32_t>(cfg_.max_header_bytes));
            parser.body_limit(cfg_.max_body_bytes);
            // The whole request, headers and body, within request_timeout: a slow sender is cut
            // off with 408 (the read is cancelled, the socket stays open for the answer).
            auto timer = std::make_shared<net::steady_timer>(rt_->io, cfg_.request_timeout);
            auto timed_out = std::make_shared<bool>(false);
            timer->async_wait([lowest, timed_out](beast::error_code ec) {
                if (ec) return;
                *timed_out = true;
                beast::error_code ignored;
                lowest->socket().cancel(ignored);
            });
            beast::error_code ec;
            co_await http::async_read(io, buf, parser, net::redirect_error(net::use_awaitable, ec));
            timer->cancel();
            answer a;
            bool keep_alive = false;
            if (ec) {
                const bool nothing_yet = !parser.got_some();
                if (*timed_out && nothing_yet) co_return;  // an idle keep-alive connection
                if (*timed_out) {
                    a = refuse(http::status::request_timeout,
                               "the request did not arrive within " +
                                   std::to_string(cfg_.request_timeout.count()) +
                                   " ms (request_timeout_ms)",
                               true);
                } else if (ec == http::error::body_limit) {
                    a = refuse(http::status::payload_too_large,
                               "the body is larger than " + std::to_string(cfg_.max_body_bytes) +
                                   " bytes (max_body_bytes)",
                               true);
                } else if (ec == http::error::header_limit) {
                    a = refuse(http::status::request_header_fields_too_large,
                               "the headers are larger than " +
                                   std::to_string(cfg_.max_header_bytes) +
                                   " bytes (max_header_bytes)",
                               true);
                } else if (ec == http::error::end_of_stream || ec == net::error::eof ||
                           ec == net::error::connection_reset || nothing_yet) {
                    co_return;
                } else {
                    a = refuse(http::status::bad_request, "malformed HTTP: " + ec.message(), true);
                }
                host_.log(log_level::warn, "http: request refused: " + a.body);
            } else {
                request req = parser.release();
                keep_alive = req.keep_alive();
                a = co_await handle(req);
            }
            http::response<http::string_body> res{a.status, 11};
            res.set(http::field::server, "samband-http");
            res.set(http::field::content_type, "application/json");
            if (a.status == http::status::unauthorized && cfg_.auth == "bearer")
                res.set(http::field::www_authenticate, "Bearer");
            if (a.status == http::status::service_unavailable)
                res.set(http::field::retry_after, "1");
            if (a.status == http::status::method_not_allowed) res.set(http::field::allow, "POST");
            res.keep_alive(keep_alive && !a.close);
            res.body() = std::move(a.body);
            res.prepare_payload();
            lowest->expires_after(cfg_.request_timeout);
            co_await http::async_write(io, res, net::redirect_error(net::use_awaitable, ec));
            lowest->expires_never();
            if (ec || !keep_alive || a.close) {
                beast::error_code ignored;
                lowest->socket().shutdown(tcp::socket::shutdown_send, ignored);
                co_return;
            }
        }
    }

    // Empty when the request is authentic, else the reason for a 401.
    std::string authenticate(const request& req) const {
        if (cfg_.auth == "bearer") {
            auto it = req.find(http::field::authorization);
            if (it == req.end()) return "no Authorization header (Bearer token)";
            std::string_view v = it->value();
            if (v.substr(0, 7) != "Bearer " || !same(v.substr(7), cfg_.secret))
                return "the bearer token is wrong";
        } else if (cfg_.auth == "hmac") {
            auto it = req.find(cfg_.header);
            if (it == req.end()) return "no " + cfg_.header + " header (HMAC signature)";
            std::string v(it->value());
            // t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
            auto comma = v.find(",v1=");
            if (v.rfind("t=", 0) != 0 || comma == std::string::npos || comma == 2 ||
                v.find_first_not_of("0123456789", 2) != comma)
                return "the " + cfg_.header + " header is not t=<unix time>,v1=<hex>";
            long long t = std::stoll(v.substr(2, std::min<std::size_t>(comma - 2, 15)));
            long long now = static_cast<long long>(std::time(nullptr));
            if (t < now - cfg_.signature_tolerance.count() ||
                t > now + cfg_.signature_tolerance.count())
                return "the signature's time t is more than " +
                       std::to_string(cfg_.signature_tolerance.count()) + " s off";
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int len = 0;
            std::string signed_text = v.substr(2, comma - 2) + "." + req.body();
            HMAC(EVP_sha256(), cfg_.secret.data(), static_cast<int>(cfg_.secret.size()),
                 reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size(), md,
                 &len);
            if (!same(v.substr(comma + 4), hex(md, len))) return "the signature is wrong";
        }
        return {};
    }

    net::awaitable<answer> handle(const request& req) {
        std::string path(req.target().substr(0, req.target().find('?')));
        const http_map::mapping* m = nullptr;
        if (path != cfg_.envelope_path) {
            for (const auto& x : cfg_.mappings)
                if (x.path == path) m = &x;
            if (!m) co_return refuse(http::status::not_found, "no endpoint at " + path);
        }
        if (req.method() != http::verb::post)
            co_return refuse(http::status::method_not_allowed, "only POST is taken");
        if (std::string why = authenticate(req); !why.empty()) {
            host_.log(log_level::warn, "http: " + path + ": 401, " + why + " (nothing stored)");
            co_return refuse(http::status::unauthorized, why);
        }
        std::string key;
        if (auto it = req.find("Idempotency-Key"); it != req.end()) key = std::string(it->value());
        if (key.size() > 200)
            co_return refuse(http::status::bad_request,
                             "the Idempotency-Key header is longer than 200 characters");

        std::string envelope, problem;
        if (m) {
            auto r = http_map::map_body(*m, req.body(), key, now_iso());
            envelope = std::move(r.envelope);
            problem = std::move(r.error);
        } else {
            problem = envelope_with_key(req.body(), key, envelope);
        }
        if (!problem.empty()) {
            // Nothing lost: the refused input goes to the host's error store with the reason.
            co_await async_submit(weak_.lock(), host_, rejection(path, req.body(), problem),
                                  net::use_awaitable);
            host_.log(log_level::info, "http: " + path + ": 422, " + problem);
            co_return refuse(http::status::unprocessable_entity, problem);
        }
        auto r =
            co_await async_submit(weak_.lock(), host_, std::move(envelope), net::use_awaitable);
        if (r.status == SAMBAND_OK) {
            rapidjson::Document d(rapidjson::kObjectType);
            auto& a = d.GetAllocator();
            d.AddMember("event_id", rapidjson::Value(r.event_id.c_str(), a), a);
            d.AddMember("duplicate", r.duplicate, a);
            co_return answer{http::status::accepted, json_text(d) + "\n", false};
        }
        if (r.status == SAMBAND_INVALID || r.status == SAMBAND_PERMANENT) {
            host_.log(log_level::info, "http: " + path + ": 422, " + r.message);
            co_return refuse(http::status::unprocessable_entity, r.message);
        }
        co_return refuse(http::status::service_unavailable,
                         r.message.empty() ? "the host cannot take the event now" : r.message);
    }

    // A Samband envelope as sent, with the Idempotency-Key header as its key. Returns the
    // problem, or empty with `out` set.
    static std::string envelope_with_key(const std::string& body, const std::string& key,
                                         std::string& out) {
        if (key.empty()) {
            out = body;  // the host checks it, including its idempotency_key
            return {};
        }
        rapidjson::Document d;
        if (std::string err = samband::json::parse(body, d); !err.empty())
            return "the body is not JSON: " + err;
        if (!d.IsObject()) return "the body must be a JSON object (a Samband envelope)";
        const rapidjson::Value& cd = d;  // const iterators (clang: no ambiguous !=)
        if (auto it = cd.FindMember("idempotency_key"); it != cd.MemberEnd()) {
            if (!it->value.IsString() || it->value.GetString() != key)
                return "field /idempotency_key differs from the Idempotency-Key header";
            out = body;
            return {};
        }
        d.AddMember("idempotency_key", rapidjson::Value(key.c_str(), d.GetAllocator()),
                    d.GetAllocator());
        out = json_text(d);
        return {};
    }

    static std::string rejection(const std::string& path, std::string_view body,
                                 const std::string& reason) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        std::string keyed = path + "\n" + std::string(body);
        SHA256(reinterpret_cast<const unsigned char*>(keyed.data()), keyed.size(), md);
        rapidjson::Document d(rapidjson::kObjectType);
        auto& a = d.GetAllocator();
        d.AddMember("schema", "samband.event/1", a);
        d.AddMember("type", "samband.input.rejected", a);
        std::string key = "http-rejected-" + hex(md, sizeof md);
        d.AddMember("idempotency_key", rapidjson::Value(key.c_str(), a), a);
        rapidjson::Value r(rapidjson::kObjectType);
        std::string why = "POST " + path + ": " + reason;
        r.AddMember("reason", rapidjson::Value(why.c_str(), a), a);
        std::string in = printable(body);
        r.AddMember("input",
                    rapidjson::Value(in.c_str(), static_cast<rapidjson::SizeType>(in.size()), a),
                    a);
        d.AddMember("rejected", r, a);
        return json_text(d);
    }

    config cfg_;
    samband::sdk::host host_;
    std::weak_ptr<runtime> weak_;  // for the host's callbacks, which may outlive the listener
    runtime* rt_;                  // alive while any coroutine runs (it owns the io_context)
};

}  // namespace

listener::listener(config cfg, samband::sdk::host host)
    : cfg_(std::move(cfg)), host_(host), rt_(std::make_shared<runtime>()) {
    if (cfg_.tls) {
        rt_->tls.emplace(ssl::context::tls_server);
        auto& c = *rt_->tls;
        c.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
        boost::system::error_code ec;
        c.use_certificate_chain_file(cfg_.cert_file, ec);
        if (ec)
            throw error(SAMBAND_INVALID, "http plugin: tls.cert_file " + cfg_.cert_file +
                                             " cannot be used: " + ec.message());
        c.use_private_key_file(cfg_.key_file, ssl::context::pem, ec);
        if (ec)
            throw error(SAMBAND_INVALID, "http plugin: tls.key_file " + cfg_.key_file +
                                             " cannot be used: " + ec.message());
        if (!cfg_.client_ca_file.empty()) {
            c.load_verify_file(cfg_.client_ca_file, ec);
            if (ec)
                throw error(SAMBAND_INVALID, "http plugin: tls.client_ca_file " +
                                                 cfg_.client_ca_file +
                                                 " cannot be used: " + ec.message());
            c.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
        }
    }
}

listener::~listener() {
    stop();
}

void listener::start() {
    auto colon = cfg_.listen.rfind(':');
    std::string host = cfg_.listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    boost::system::error_code ec;
    auto addr = net::ip::make_address(host, ec);
    if (ec) throw error(SAMBAND_INVALID, "http plugin: \"listen\" host must be an IP address");
    tcp::endpoint ep(addr, static_cast<unsigned short>(std::stoi(cfg_.listen.substr(colon + 1))));
    auto& acc = rt_->acceptor.emplace(rt_->io);
    acc.open(ep.protocol(), ec);
    if (!ec) acc.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acc.bind(ep, ec);
    if (!ec) acc.listen(net::socket_base::max_listen_connections, ec);
    if (ec)
        throw error(SAMBAND_INVALID,
                    "http plugin: cannot listen on " + cfg_.listen + ": " + ec.message());
    unsigned short bound = acc.local_endpoint().port();
    host_.log(log_level::info, std::string("http: listening for ") + (cfg_.tls ? "HTTPS" : "HTTP") +
                                   " on " + host + ":" + std::to_string(bound));
    if (!cfg_.port_file.empty()) {
        std::string tmp = cfg_.port_file + ".tmp";
        std::ofstream(tmp) << bound << "\n";
        std::rename(tmp.c_str(), cfg_.port_file.c_str());
    }
    auto srv = std::make_shared<server>(cfg_, host_, rt_);
    net::co_spawn(rt_->io, srv->accept_loop(), [srv](std::exception_ptr) {});
    thread_ = std::thread([rt = rt_] { rt->io.run(); });
}

void listener::stop() {
    {
        std::lock_guard lock(rt_->mu);
        if (!rt_->running) return;
        rt_->running = false;
    }
    // Open connections end here; a sender whose request had no answer sends it again, and its
    // Idempotency-Key finds the event if it was committed.
    rt_->io.stop();
    if (thread_.joinable()) thread_.join();
    boost::system::error_code ec;
    if (rt_->acceptor) rt_->acceptor->close(ec);
}

}  // namespace samband::http_source
