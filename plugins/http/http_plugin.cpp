// The http plugin's sink: POSTs each delivery's event to a vendor's webhook URL (see docs/http.md).
//
// Each delivery is sent by one of the plugin's own worker threads (deliver() only queues it, so
// the host never waits on the network) with `Idempotency-Key: <delivery id>` (the same on every
// attempt), the configured authentication (a bearer token or an HMAC-SHA256 signature, keys from
// the host's secrets) and TLS verified against the system's or a configured CA. The answer
// decides: 2xx delivered; 408, 429 and 5xx retried (a Retry-After that ends before the attempt's
// deadline is waited out here and the request repeated with the same key, otherwise the host's
// backoff applies); any other status is permanent, with the body's text as the reason; network
// errors and timeouts are retried.
#include "listener.hpp"

#include <samband/json.hpp>
#include <samband/sdk.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rapidjson/document.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using samband::sdk::error;
using samband::sdk::log_level;

std::string hex(const unsigned char* p, std::size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(digits[p[i] >> 4]);
        out.push_back(digits[p[i] & 15]);
    }
    return out;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
    return hex(md, len);
}

// The reply text as a reason: printable, one line, at most 300 bytes.
std::string reason_text(std::string_view body) {
    std::string out;
    for (char c : body.substr(0, 300)) out.push_back(c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
    return out;
}

struct outcome {
    int status = 0;                  // HTTP status, 0 when no answer
    std::string text;                // body or the network error
    std::optional<int> retry_after;  // seconds
};

class http_plugin {
public:
    static constexpr const char* name = "http";
    static constexpr bool is_source = true;
    static constexpr const char* version = "0.1.0";
    static constexpr const char* description =
        "HTTP webhooks: POSTs events to a vendor URL with Idempotency-Key, bearer or HMAC "
        "authentication and verified TLS (sink); HTTPS endpoints taking Samband envelopes or a "
        "vendor's JSON mapped by JSON Pointer rules, 202 after commit (source)";
    // The endpoint config's JSON Schema; the kit creates the plugin with examples[0].
    static constexpr const char* config_schema = R"json(
        {
          "$schema": "http://json-schema.org/draft-04/schema#",
          "title": "http plugin endpoint config (docs/http.md)",
          "type": "object",
          "oneOf": [{"required": ["url"]}, {"required": ["listen"]}],
          "properties": {
            "listen": {"type": "string", "description": "source: <ip>:<port> to serve"},
            "port_file": {"type": "string", "description": "source: the bound port is written here"},
            "tls": {
              "type": "object",
              "required": ["cert_file", "key_file"],
              "properties": {
                "cert_file": {"type": "string"},
                "key_file": {"type": "string"},
                "client_ca_file": {"type": "string", "description": "mutual TLS: required client certificates"}
              }
            },
            "envelope_path": {"type": "string", "default": "/v1/events"},
            "mappings": {
              "type": "array",
              "items": {
                "type": "object",
                "required": ["path", "type", "fields"],
                "properties": {
                  "path": {"type": "string"},
                  "type": {"type": "string"},
                  "idempotency_key": {"type": "string", "description": "JSON Pointer"},
                  "occurred_at": {"type": "string", "description": "JSON Pointer"},
                  "fields": {"type": "object", "description": "envelope pointer -> vendor pointer, {from, optional} or {value}"}
                }
              }
            },
            "max_header_bytes": {"type": "integer", "minimum": 1024, "default": 16384},
            "max_body_bytes": {"type": "integer", "minimum": 1024, "default": 1048576},
            "request_timeout_ms": {"type": "integer", "minimum": 100, "default": 10000},
            "max_connections": {"type": "integer", "minimum": 1, "default": 512},
            "signature_tolerance_s": {"type": "integer", "minimum": 1, "default": 300},
            "url": {"type": "string", "description": "sink: the vendor's webhook (https://)"},
            "allow_plain_http": {"type": "boolean", "default": false},
            "ca_file": {"type": "string", "description": "sink: PEM CAs to verify the vendor"},
            "timeout_ms": {"type": "integer", "minimum": 100, "default": 10000},
            "workers": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
            "auth": {
              "type": "object",
              "required": ["kind", "secret"],
              "properties": {
                "kind": {"enum": ["bearer", "hmac"]},
                "secret": {"type": "string", "description": "the name of a host secret"},
                "header": {"type": "string", "default": "X-Samband-Signature"}
              }
            }
          },
          "examples": [{"url": "http://127.0.0.1:9/hooks/samband", "timeout_ms": 1000}]
        })json";

    http_plugin(samband::sdk::host h, std::string_view config)
        : host_(h), ssl_(ssl::context::tls_client) {
        rapidjson::Document d;
        if (std::string err = samband::json::parse(config, d); !err.empty() || !d.IsObject())
            throw error(SAMBAND_INVALID, "http plugin: config must be a JSON object" +
                                             (err.empty() ? "" : ": " + err));
        auto str = [&](const rapidjson::Value& o, const char* k, std::string def = {}) {
            auto it = o.FindMember(k);
            if (it == o.MemberEnd()) return def;
            if (!it->value.IsString())
                throw error(SAMBAND_INVALID,
                            std::string("http plugin: \"") + k + "\" must be a string");
            return std::string(it->value.GetString());
        };
        if (d.HasMember("auth")) {
            const auto& a = d["auth"];
            if (!a.IsObject())
                throw error(SAMBAND_INVALID, "http plugin: \"auth\" must be an object");
            auth_ = str(a, "kind");
            std::string secret = str(a, "secret");
            if (auth_ != "bearer" && auth_ != "hmac")
                throw error(SAMBAND_INVALID,
                            "http plugin: auth.kind must be \"bearer\" or \"hmac\"");
            if (secret.empty())
                throw error(SAMBAND_INVALID,
                            "http plugin: auth.secret must name a secret of the host");
            auto value = host_.secret(secret);
            if (!value || value->empty())
                throw error(SAMBAND_INVALID,
                            "http plugin: the host has no secret \"" + secret + "\"");
            secret_ = *value;
            while (!secret_.empty() && (secret_.back() == '\n' || secret_.back() == '\r'))
                secret_.pop_back();
            header_ = str(a, "header", "X-Samband-Signature");
        }
        auto integer = [&](const char* k, std::int64_t def, std::int64_t lo,
                           std::int64_t hi) -> std::int64_t {
            const rapidjson::Value& cd = d;  // const iterators (clang: no ambiguous ==)
            auto it = cd.FindMember(k);
            if (it == cd.MemberEnd()) return def;
            if (!it->value.IsInt64() || it->value.GetInt64() < lo || it->value.GetInt64() > hi)
                throw error(SAMBAND_INVALID, std::string("http plugin: \"") + k +
                                                 "\" must be an integer from " +
                                                 std::to_string(lo) + " to " + std::to_string(hi));
            return it->value.GetInt64();
        };
        const bool plain_ok = d.HasMember("allow_plain_http") && d["allow_plain_http"].IsBool() &&
                              d["allow_plain_http"].GetBool();
        if (d.HasMember("listen")) {
            if (d.HasMember("url"))
                throw error(SAMBAND_INVALID,
                            "http plugin: an endpoint has \"listen\" (a source) or \"url\" (a "
                            "sink), not both");
            samband::http_source::config c;
            c.listen = str(d, "listen");
            auto colon = c.listen.rfind(':');
            if (colon == std::string::npos || colon + 1 == c.listen.size() ||
                c.listen.find_first_not_of("0123456789", colon + 1) != std::string::npos)
                throw error(SAMBAND_INVALID,
                            "http plugin: \"listen\" must be <ip>:<port>, e.g. 127.0.0.1:8443");
            c.port_file = str(d, "port_file");
            c.auth = auth_;
            c.secret = secret_;
            c.header = header_.empty() ? c.header : header_;
            c.envelope_path = str(d, "envelope_path", c.envelope_path);
            c.max_header_bytes =
                static_cast<std::size_t>(integer("max_header_bytes", 16 * 1024, 1024, 1 << 20));
            c.max_body_bytes = static_cast<std::size_t>(
                integer("max_body_bytes", 1024 * 1024, 1024, std::int64_t{256} * 1024 * 1024));
            c.request_timeout =
                std::chrono::milliseconds(integer("request_timeout_ms", 10000, 100, 600000));
            c.max_connections =
                static_cast<std::size_t>(integer("max_connections", 512, 1, 100000));
            c.signature_tolerance =
                std::chrono::seconds(integer("signature_tolerance_s", 300, 1, 86400));
            const rapidjson::Value& cd = d;  // const iterators (clang: no ambiguous !=)
            if (auto t = cd.FindMember("tls"); t != cd.MemberEnd()) {
                if (!t->value.IsObject())
                    throw error(SAMBAND_INVALID, "http plugin: \"tls\" must be an object");
                c.tls = true;
                c.cert_file = str(t->value, "cert_file");
                c.key_file = str(t->value, "key_file");
                c.client_ca_file = str(t->value, "client_ca_file");
                if (c.cert_file.empty() || c.key_file.empty())
                    throw error(SAMBAND_INVALID,
                                "http plugin: tls.cert_file and tls.key_file are required");
            }
            std::string ip = c.listen.substr(0, colon);
            if (!c.tls && ip != "127.0.0.1" && ip != "[::1]" && !plain_ok)
                throw error(SAMBAND_INVALID,
                            "http plugin: \"listen\" on " + ip +
                                " needs \"tls\" (plain HTTP only on 127.0.0.1, or with "
                                "\"allow_plain_http\": true)");
            if (auto m = cd.FindMember("mappings"); m != cd.MemberEnd()) {
                if (!m->value.IsArray())
                    throw error(SAMBAND_INVALID, "http plugin: \"mappings\" must be an array");
                for (rapidjson::SizeType i = 0; i < m->value.Size(); ++i) {
                    try {
                        c.mappings.push_back(samband::http_map::parse_mapping(
                            m->value[i], "mappings[" + std::to_string(i) + "]"));
                    } catch (const std::invalid_argument& e) {
                        throw error(SAMBAND_INVALID, std::string("http plugin: ") + e.what());
                    }
                    if (c.mappings.back().path == c.envelope_path)
                        throw error(SAMBAND_INVALID, "http plugin: mappings[" + std::to_string(i) +
                                                         "].path is the envelope_path " +
                                                         c.envelope_path);
                }
            }
            listener_.emplace(std::move(c), host_);
            return;
        }
        std::string url = str(d, "url");
        auto u = boost::urls::parse_uri(url);
        if (url.empty())
            throw error(SAMBAND_INVALID,
                        "http plugin: the config needs \"url\" (a sink) or \"listen\" (a source)");
        if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->host().empty())
            throw error(SAMBAND_INVALID, "http plugin: \"url\" must be an http:// or https:// URL");
        tls_ = u->scheme() == "https";
        host_name_ = u->host();
        port_ = u->has_port() ? std::string(u->port()) : (tls_ ? "443" : "80");
        target_ = std::string(u->encoded_path());
        if (target_.empty()) target_ = "/";
        if (u->has_query()) target_ += "?" + std::string(u->encoded_query());
        if (!tls_ && host_name_ != "127.0.0.1" && host_name_ != "localhost" &&
            host_name_ != "::1" && !plain_ok)
            throw error(SAMBAND_INVALID,
                        "http plugin: \"url\" must be https:// (plain http only to this machine, "
                        "or with \"allow_plain_http\": true)");
        if (d.HasMember("timeout_ms")) {
            if (!d["timeout_ms"].IsInt() || d["timeout_ms"].GetInt() < 100)
                throw error(SAMBAND_INVALID,
                            "http plugin: \"timeout_ms\" must be an integer >= 100");
            timeout_ = std::chrono::milliseconds(d["timeout_ms"].GetInt());
        }
        int workers = 4;
        if (d.HasMember("workers")) {
            if (!d["workers"].IsInt() || d["workers"].GetInt() < 1 || d["workers"].GetInt() > 64)
                throw error(SAMBAND_INVALID, "http plugin: \"workers\" must be 1..64");
            workers = d["workers"].GetInt();
        }
        workers_ = workers;
        if (tls_) {
            ssl_.set_verify_mode(ssl::verify_peer);
            std::string ca = str(d, "ca_file");
            boost::system::error_code ec;
            if (ca.empty())
                ssl_.set_default_verify_paths(ec);
            else
                ssl_.load_verify_file(ca, ec);
            if (ec)
                throw error(SAMBAND_INVALID,
                            "http plugin: cannot load CA certificates: " + ec.message());
        }
    }

    ~http_plugin() { stop(); }

    void start() {
        if (listener_) return listener_->start();
        std::lock_guard lock(mu_);
        if (running_) return;
        running_ = true;
        for (int i = 0; i < workers_; ++i) threads_.emplace_back([this] { work(); });
    }

    void stop() {
        if (listener_) return listener_->stop();
        {
            std::lock_guard lock(mu_);
            if (!running_) return;
            running_ = false;
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
        threads_.clear();
        // Queued deliveries not sent: their destructors complete them as RETRY.
        std::deque<samband::sdk::delivery> left;
        {
            std::lock_guard lock(mu_);
            left.swap(queue_);
        }
    }

    void deliver(samband::sdk::delivery d) {
        if (listener_) {
            d.fail("this http endpoint is a source (\"listen\"); a sink needs \"url\"");
            return;
        }
        {
            std::lock_guard lock(mu_);
            if (!running_) {
                d.retry("the http endpoint is stopping");
                return;
            }
            queue_.push_back(std::move(d));
        }
        cv_.notify_one();
    }

private:
    void work() {
        for (;;) {
            std::optional<samband::sdk::delivery> d;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return !running_ || !queue_.empty(); });
                if (!running_) return;
                d.emplace(std::move(queue_.front()));
                queue_.pop_front();
            }
            send(*d);
        }
    }

    void send(samband::sdk::delivery& d) {
        std::string body(d.event().envelope_json);
        for (int round = 0;; ++round) {
            outcome o = post(d.id(), body);
            if (o.status >= 200 && o.status < 300) {
                d.succeed(d.id());
                return;
            }
            bool retryable = o.status == 0 || o.status == 408 || o.status == 429 || o.status >= 500;
            std::string why =
                o.status ? "HTTP " + std::to_string(o.status) + ": " + reason_text(o.text) : o.text;
            if (!retryable) {
                d.fail(why);
                return;
            }
            // Retry-After within this attempt's deadline: wait it out and repeat (same key).
            if (o.retry_after && round < 3) {
                auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
                std::int64_t wake = now_ms + std::int64_t(*o.retry_after) * 1000;
                if (d.deadline_unix_ms() == 0 || wake + timeout_.count() < d.deadline_unix_ms()) {
                    std::unique_lock lock(mu_);
                    if (cv_.wait_for(lock, std::chrono::seconds(*o.retry_after),
                                     [&] { return !running_; })) {
                        d.retry(why + " (stopping)");
                        return;
                    }
                    continue;
                }
                why += " (Retry-After " + std::to_string(*o.retry_after) + " s)";
            }
            d.retry(why);
            return;
        }
    }

    template <class Stream>
    static net::awaitable<void> exchange(Stream& stream, http::request<http::string_body>& req,
                                         outcome& o, beast::error_code& ec, const bool& abandoned) {
        co_await http::async_write(stream, req, net::redirect_error(net::use_awaitable, ec));
        if (ec || abandoned) co_return;
        beast::flat_buffer buf;
        buf.reserve(64 * 1024);
        http::response_parser<http::string_body> parser;
        parser.body_limit(1024 * 1024);
        parser.header_limit(64 * 1024);
        co_await http::async_read(stream, buf, parser, net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return;
        auto& res = parser.get();
        o.status = static_cast<int>(res.result_int());
        o.text = res.body();
        auto ra = res.find(http::field::retry_after);
        if (ra != res.end()) {
            std::string v(ra->value());
            if (!v.empty() && v.size() < 7 &&
                v.find_first_not_of("0123456789") == std::string::npos)
                o.retry_after = std::stoi(v);
        }
    }

    // One request under one deadline (timeout_ for everything: resolve, connect, TLS, write,
    // read). Blocking Asio calls ignore expires_after, so the exchange runs as a coroutine on a
    // private io_context that is abandoned when the deadline passes.
    outcome post(std::string_view key, const std::string& body) {
        http::request<http::string_body> req{http::verb::post, target_, 11};
        req.set(http::field::host, host_name_);
        req.set(http::field::user_agent, "samband-http/0.1");
        req.set(http::field::content_type, "application/json");
        req.set("Idempotency-Key", key);
        if (auth_ == "bearer") req.set(http::field::authorization, "Bearer " + secret_);
        if (auth_ == "hmac") {
            std::string t = std::to_string(std::time(nullptr));
            req.set(header_, "t=" + t + ",v1=" + hmac_sha256_hex(secret_, t + "." + body));
        }
        req.keep_alive(false);
        req.body() = body;
        req.prepare_payload();

        net::io_context ioc{1};
        net::ip::tcp::resolver resolver(ioc);
        std::optional<beast::tcp_stream> plain;
        std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
        if (tls_)
            secure.emplace(ioc, ssl_);
        else
            plain.emplace(ioc);
        beast::tcp_stream& lowest = secure ? beast::get_lowest_layer(*secure) : *plain;

        outcome o;
        beast::error_code ec;
        std::string stage = "resolve";
        bool done = false;
        bool abandoned = false;
        auto run = [&]() -> net::awaitable<void> {
            auto token = net::redirect_error(net::use_awaitable, ec);
            auto results = co_await resolver.async_resolve(host_name_, port_, token);
            if (ec || abandoned) co_return;
            stage = "connect";
            co_await lowest.async_connect(results, token);
            if (ec || abandoned) co_return;
            if (secure) {
                stage = "TLS handshake";
                boost::system::error_code literal;
                net::ip::make_address(host_name_, literal);
                if (literal &&
                    !SSL_set_tlsext_host_name(secure->native_handle(), host_name_.c_str())) {
                    ec = net::error::invalid_argument;
                    co_return;
                }
                secure->set_verify_callback(ssl::host_name_verification(host_name_));
                co_await secure->async_handshake(ssl::stream_base::client, token);
                if (ec || abandoned) co_return;
                stage = "exchange";
                co_await exchange(*secure, req, o, ec, abandoned);
            } else {
                stage = "exchange";
                co_await exchange(*plain, req, o, ec, abandoned);
            }
        };
        std::exception_ptr failure;
        net::co_spawn(ioc, run(), [&](std::exception_ptr e) {
            failure = e;
            done = true;
        });
        ioc.run_for(timeout_);
        if (!done) {
            abandoned = true;
            resolver.cancel();
            boost::system::error_code ignored;
            lowest.socket().close(ignored);
            ioc.restart();
            ioc.run();
            return {0,
                    "no answer from " + host_name_ + ":" + port_ + " within " +
                        std::to_string(timeout_.count()) + " ms (" + stage + ")",
                    {}};
        }
        if (failure) return {0, "request to " + host_name_ + " failed", {}};
        if (ec)
            return {
                0, stage + " with " + host_name_ + ":" + port_ + " failed: " + ec.message(), {}};
        boost::system::error_code ignored;
        lowest.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
        lowest.socket().close(ignored);
        return o;
    }

    samband::sdk::host host_;
    ssl::context ssl_;
    bool tls_ = false;
    std::string host_name_, port_, target_;
    std::chrono::milliseconds timeout_{10000};
    int workers_ = 4;
    std::string auth_, secret_, header_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool running_ = false;
    std::deque<samband::sdk::delivery> queue_;
    std::vector<std::thread> threads_;
    std::optional<samband::http_source::listener> listener_;  // a source endpoint
};

}  // namespace

SAMBAND_PLUGIN(http_plugin)
