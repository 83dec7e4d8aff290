// The http plugin's sink: POSTs each delivery's event to a vendor's webhook URL (see docs/http.md).
//
// Each delivery is sent by one of the plugin's own worker threads (deliver() only queues it, so
// the host never waits on the network) with `Idempotency-Key: <delivery id>` (the same on every
// attempt), the configured authentication (a bearer token, an HMAC-SHA256 signature, or an OAuth2
// access token got by client credentials; keys from the host's secrets) and TLS verified against
// the system's or a configured CA, with a client certificate for mutual TLS when the vendor asks
// for one (`client_cert`, `client_key`: each from a file or a host secret). The answer
// decides: 2xx delivered; 408, 429 and 5xx retried (a Retry-After that ends before the attempt's
// deadline is waited out here and the request repeated with the same key, otherwise the host's
// backoff applies); any other status is permanent, with the body's text as the reason; network
// errors and timeouts are retried.
#include "listener.hpp"
#include "net/http.hpp"
#include "net/retry_after.hpp"

#include <samband/json.hpp>
#include <samband/sdk.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <rapidjson/document.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/url/parse.hpp>

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace http = boost::beast::http;
namespace http_out = samband::net;  // the project's HTTP client (plugins/net)
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

// application/x-www-form-urlencoded (RFC 6749 appendix B) for one name or value.
std::string form_encode(std::string_view v) {
    static const char* digits = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : v) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(digits[c >> 4]);
            out.push_back(digits[c & 15]);
        }
    }
    return out;
}

std::string base64(std::string_view v) {
    std::string out(4 * ((v.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(v.data()),
                            static_cast<int>(v.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

// Where a request goes: the vendor's webhook or the OAuth2 token endpoint.
struct target {
    bool tls = false;
    std::string host, port, path;
    http_out::endpoint_url origin;                  // the same URL as the client reads it
    std::shared_ptr<http_out::http_client> client;  // to scheme://host:port, made at start
};

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
            "client_cert": {
              "type": "object",
              "description": "sink, mutual TLS: the client certificate (PEM chain) from a file or a host secret",
              "properties": {"file": {"type": "string"}, "secret": {"type": "string"}}
            },
            "client_key": {
              "type": "object",
              "description": "sink, mutual TLS: the client certificate's unencrypted PEM key from a file or a host secret",
              "properties": {"file": {"type": "string"}, "secret": {"type": "string"}}
            },
            "timeout_ms": {"type": "integer", "minimum": 100, "default": 10000},
            "workers": {"type": "integer", "minimum": 1, "maximum": 64, "default": 4},
            "auth": {
              "type": "object",
              "required": ["kind", "secret"],
              "properties": {
                "kind": {"enum": ["bearer", "hmac", "oauth2"]},
                "secret": {"type": "string", "description": "the name of a host secret (oauth2: the client secret)"},
                "token_url": {"type": "string", "description": "oauth2: the token endpoint (client credentials)"},
                "client_id": {"type": "string", "description": "oauth2: the client id"},
                "scope": {"type": "string", "description": "oauth2: the scope asked for"},
                "header": {"type": "string", "default": "X-Samband-Signature"}
              }
            }
          },
          "examples": [{"url": "http://127.0.0.1:9/hooks/samband", "timeout_ms": 1000}]
        })json";

    http_plugin(samband::sdk::host h, std::string_view config)
        : host_(h), ssl_(std::make_shared<ssl::context>(ssl::context::tls_client)) {
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
            if (auth_ != "bearer" && auth_ != "hmac" && auth_ != "oauth2")
                throw error(SAMBAND_INVALID,
                            "http plugin: auth.kind must be \"bearer\", \"hmac\" or \"oauth2\"");
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
            if (auth_ == "oauth2") {
                token_url_ = str(a, "token_url");
                client_id_ = str(a, "client_id");
                scope_ = str(a, "scope");
                if (token_url_.empty() || client_id_.empty())
                    throw error(SAMBAND_INVALID,
                                "http plugin: auth.kind \"oauth2\" needs \"token_url\" and "
                                "\"client_id\" (auth.secret names the client secret)");
            }
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
        if (url.empty())
            throw error(SAMBAND_INVALID,
                        "http plugin: the config needs \"url\" (a sink) or \"listen\" (a source)");
        vendor_ = parse_target(url, "url", plain_ok);
        if (auth_ == "oauth2")
            token_endpoint_ = parse_target(token_url_, "auth.token_url", plain_ok);
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
        if (vendor_.tls || token_endpoint_.tls) {
            ssl_->set_verify_mode(ssl::verify_peer);
            std::string ca = str(d, "ca_file");
            boost::system::error_code ec;
            if (ca.empty())
                ssl_->set_default_verify_paths(ec);
            else
                ssl_->load_verify_file(ca, ec);
            if (ec)
                throw error(SAMBAND_INVALID,
                            "http plugin: cannot load CA certificates: " + ec.message());
        }
        load_client_certificate(d);
        connect_to(vendor_);
        if (auth_ == "oauth2") connect_to(token_endpoint_);
    }

    ~http_plugin() { stop(); }

    // Mutual TLS: `client_cert` (a PEM chain) and `client_key` (its unencrypted PEM key), each
    // {"file": PATH} or {"secret": NAME}, shown to a vendor (or token endpoint) that asks for a
    // client certificate. Errors name the setting and never quote the key.
    void load_client_certificate(const rapidjson::Value& d) {
        auto pem = [&](const char* k, std::string& from) -> std::optional<std::string> {
            auto it = d.FindMember(k);
            if (it == d.MemberEnd()) return std::nullopt;
            const rapidjson::Value& v = it->value;
            auto text = [&](const char* m) -> std::string {
                auto f = v.FindMember(m);
                if (f == v.MemberEnd()) return {};
                if (!f->value.IsString() || f->value.GetStringLength() == 0)
                    throw error(SAMBAND_INVALID, std::string("http plugin: \"") + k + "\"." + m +
                                                     " must be a non-empty string");
                return f->value.GetString();
            };
            std::string file = v.IsObject() ? text("file") : std::string();
            std::string secret = v.IsObject() ? text("secret") : std::string();
            if (file.empty() == secret.empty())
                throw error(SAMBAND_INVALID, std::string("http plugin: \"") + k +
                                                 "\" must be {\"file\": PATH} or {\"secret\": "
                                                 "NAME} (one of the two)");
            if (!file.empty()) {
                from = std::string(k) + ".file " + file;
                std::ifstream in(file, std::ios::binary);
                std::stringstream ss;
                ss << in.rdbuf();
                if (!in || ss.str().empty())
                    throw error(SAMBAND_INVALID, "http plugin: " + from + " cannot be read");
                return ss.str();
            }
            from = std::string(k) + ".secret " + secret;
            auto value = host_.secret(secret);
            if (!value || value->empty())
                throw error(SAMBAND_INVALID,
                            "http plugin: the host has no secret \"" + secret + "\" (" + k + ")");
            return value;
        };
        std::string cert_from, key_from;
        auto cert = pem("client_cert", cert_from);
        auto key = pem("client_key", key_from);
        struct wipe {  // the key's text does not outlive the context that copied it
            std::optional<std::string>& s;
            ~wipe() {
                if (s && !s->empty()) OPENSSL_cleanse(s->data(), s->size());
            }
        } wipe_key{key};
        if (cert.has_value() != key.has_value())
            throw error(SAMBAND_INVALID,
                        "http plugin: \"client_cert\" and \"client_key\" go together (mutual "
                        "TLS needs both)");
        if (!cert) return;
        if (!vendor_.tls)
            throw error(SAMBAND_INVALID,
                        "http plugin: \"client_cert\" needs an https:// \"url\" (mutual TLS)");
        boost::system::error_code ec;
        ssl_->use_certificate_chain(net::buffer(*cert), ec);
        if (ec)
            throw error(SAMBAND_INVALID, "http plugin: " + cert_from +
                                             " is not a PEM certificate chain: " + ec.message());
        ssl_->use_private_key(net::buffer(*key), ssl::context::pem, ec);
        if (ec)
            throw error(SAMBAND_INVALID,
                        "http plugin: " + key_from +
                            " is not an unencrypted PEM private key: " + ec.message());
        if (SSL_CTX_check_private_key(ssl_->native_handle()) != 1)
            throw error(SAMBAND_INVALID,
                        "http plugin: " + key_from + " is not the key of " + cert_from);
        client_cert_ = true;
    }

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
        std::string token;
        bool renewed = false;
        if (auth_ == "oauth2") {
            std::string why;
            token = access_token({}, why);
            if (token.empty()) {
                d.retry(why);
                return;
            }
        }
        for (int round = 0;; ++round) {
            outcome o = post(d.id(), body, token);
            if (o.status == 401 && auth_ == "oauth2" && !renewed) {
                // The token was revoked or expired early: one new token, the same request again.
                renewed = true;
                std::string why;
                token = access_token(token, why);
                if (token.empty()) {
                    d.retry(why);
                    return;
                }
                continue;
            }
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

    // The delivery's POST to the vendor, with its Idempotency-Key and authentication.
    outcome post(std::string_view key, const std::string& body, const std::string& token) {
        http_out::http_request req{http::verb::post, vendor_.path, 11};
        req.set(http::field::user_agent, "samband-http/0.1");
        req.set(http::field::content_type, "application/json");
        req.set("Idempotency-Key", key);
        if (auth_ == "bearer") req.set(http::field::authorization, "Bearer " + secret_);
        if (auth_ == "oauth2") req.set(http::field::authorization, "Bearer " + token);
        if (auth_ == "hmac") {
            std::string t = std::to_string(std::time(nullptr));
            req.set(header_, "t=" + t + ",v1=" + hmac_sha256_hex(secret_, t + "." + body));
        }
        req.body() = body;
        return exchange_with(vendor_, std::move(req));
    }

    // OAuth2 client credentials (RFC 6749 §4.4): the cached access token, or a new one from the
    // token endpoint when none is cached, it expires within 30 s, or the cached one is `stale`
    // (the vendor refused it). Empty with `why` set when the endpoint gives none; the delivery
    // is then retried (a wrong client secret is fixed by the operator, nothing is lost).
    std::string access_token(const std::string& stale, std::string& why) {
        std::lock_guard lock(token_mu_);  // one fetch at a time; the others take its token
        auto now = std::chrono::steady_clock::now();
        if (!token_.empty() && token_ != stale && now + std::chrono::seconds(30) < token_expires_)
            return token_;
        http_out::http_request req{http::verb::post, token_endpoint_.path, 11};
        req.set(http::field::user_agent, "samband-http/0.1");
        req.set(http::field::content_type, "application/x-www-form-urlencoded");
        req.set(http::field::accept, "application/json");
        req.set(http::field::authorization,
                "Basic " + base64(form_encode(client_id_) + ":" + form_encode(secret_)));
        req.body() = "grant_type=client_credentials";
        if (!scope_.empty()) req.body() += "&scope=" + form_encode(scope_);
        outcome o = exchange_with(token_endpoint_, std::move(req));
        std::string where = "OAuth2 token endpoint " + token_endpoint_.host + ": ";
        if (o.status == 0) {
            why = where + o.text;
            return {};
        }
        if (o.status != 200) {
            why = where + "HTTP " + std::to_string(o.status) + ": " + reason_text(o.text);
            return {};
        }
        rapidjson::Document d;
        if (std::string err = samband::json::parse(o.text, d); !err.empty() || !d.IsObject()) {
            why = where + "the answer is not a JSON object";
            return {};
        }
        const rapidjson::Value& cd = d;
        auto at = cd.FindMember("access_token");
        if (at == cd.MemberEnd() || !at->value.IsString() || at->value.GetStringLength() == 0) {
            why = where + "the answer has no access_token";
            return {};
        }
        if (auto tt = cd.FindMember("token_type"); tt != cd.MemberEnd()) {
            std::string type = tt->value.IsString() ? tt->value.GetString() : "";
            for (auto& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (type != "bearer") {
                why = where + "token_type is not Bearer";
                return {};
            }
        }
        std::int64_t expires_in = 300;  // when the endpoint does not say
        if (auto ex = cd.FindMember("expires_in");
            ex != cd.MemberEnd() && ex->value.IsInt64() && ex->value.GetInt64() > 0)
            expires_in = ex->value.GetInt64();
        token_ = at->value.GetString();
        token_expires_ = now + std::chrono::seconds(expires_in);
        host_.log(log_level::info, "http: got an OAuth2 access token from " + token_endpoint_.host +
                                       " for " + std::to_string(expires_in) + " s");
        return token_;
    }

    static target parse_target(const std::string& url, const char* key, bool plain_ok) {
        auto u = boost::urls::parse_uri(url);
        if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->host().empty())
            throw error(SAMBAND_INVALID, std::string("http plugin: \"") + key +
                                             "\" must be an http:// or https:// URL");
        target t;
        t.tls = u->scheme() == "https";
        t.host = u->host();
        t.port = u->has_port() ? std::string(u->port()) : (t.tls ? "443" : "80");
        t.path = std::string(u->encoded_path());
        if (t.path.empty()) t.path = "/";
        if (u->has_query()) t.path += "?" + std::string(u->encoded_query());
        auto origin = http_out::parse_endpoint_url(url);
        if (!origin)
            throw error(SAMBAND_INVALID, std::string("http plugin: \"") + key +
                                             "\" needs a port from 1 to 65535 and no user info");
        t.origin = std::move(*origin);
        // Boost.URL keeps an IPv6 literal's brackets in host(): "[::1]", not "::1".
        const bool this_machine = t.host == "127.0.0.1" || t.host == "localhost" ||
                                  (u->host_type() == boost::urls::host_type::ipv6 &&
                                   u->host_ipv6_address().is_loopback());
        if (!t.tls && !this_machine && !plain_ok)
            throw error(SAMBAND_INVALID,
                        std::string("http plugin: \"") + key +
                            "\" must be https:// (plain http only to this machine, or with "
                            "\"allow_plain_http\": true)");
        return t;
    }

    // The client for `t`'s origin, over this plugin's TLS context (its CAs and client
    // certificate); parse_target() has applied the plain-http policy.
    void connect_to(target& t) {
        t.client = std::make_shared<http_out::http_client>(t.origin, ssl_, 1024 * 1024);
    }

    // One request under one deadline (timeout_ for everything: resolve, connect, TLS, write,
    // read), through the project's HTTP client, which abandons the exchange at the deadline.
    outcome exchange_with(const target& to, http_out::http_request req) {
        boost::system::result<http_out::http_response, http_out::transport_error> sent =
            http_out::transport_error{};
        try {
            sent = to.client->exchange(std::move(req), std::chrono::steady_clock::now() + timeout_);
        } catch (const std::exception&) {
            return {0, "request to " + to.host + " failed", {}};
        }
        if (sent) {
            outcome o;
            o.status = static_cast<int>(sent->result_int());
            o.text = std::move(sent->body());
            // Seconds or an HTTP date (RFC 9110 §10.2.3), capped at a day.
            if (auto ra = sent->find(http::field::retry_after); ra != sent->end()) {
                if (auto secs =
                        http_out::parse_retry_after(ra->value(), std::chrono::system_clock::now()))
                    o.retry_after = static_cast<int>(secs->count());
            }
            return o;
        }
        const auto& [ec, step] = sent.error();
        const std::string stage =
            step == http_out::http_step::send || step == http_out::http_step::receive
                ? std::string("exchange")
                : std::string(http_out::step_name(step));
        if (ec == boost::beast::error::timeout)
            return {0,
                    "no answer from " + to.host + ":" + to.port + " within " +
                        std::to_string(timeout_.count()) + " ms (" + stage + ")",
                    {}};
        if (ec.category() == net::error::get_ssl_category() ||
            ec.category() == ssl::error::get_stream_category()) {
            // A refused handshake (or the server's alert after it, in TLS 1.3) names TLS, and
            // says when the vendor wants a client certificate that is not configured.
            std::string why = ec.message();
            bool wants_cert = why.find("certificate required") != std::string::npos ||
                              why.find("handshake failure") != std::string::npos;
            return {0,
                    "TLS with " + to.host + ":" + to.port + " failed (" + stage + "): " + why +
                        (wants_cert && !client_cert_
                             ? " (the server asks for a client certificate: set \"client_cert\" "
                               "and \"client_key\")"
                             : std::string()),
                    {}};
        }
        return {0, stage + " with " + to.host + ":" + to.port + " failed: " + ec.message(), {}};
    }

    samband::sdk::host host_;
    std::shared_ptr<ssl::context> ssl_;  // shared with the clients of vendor_ and token_endpoint_
    target vendor_, token_endpoint_;
    bool client_cert_ = false;  // a client certificate is configured (mutual TLS)
    std::chrono::milliseconds timeout_{10000};
    int workers_ = 4;
    std::string auth_, secret_, header_;
    std::string token_url_, client_id_, scope_;  // auth.kind "oauth2"
    std::mutex token_mu_;
    std::string token_;  // the cached access token
    std::chrono::steady_clock::time_point token_expires_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool running_ = false;
    std::deque<samband::sdk::delivery> queue_;
    std::vector<std::thread> threads_;
    std::optional<samband::http_source::listener> listener_;  // a source endpoint
};

}  // namespace

SAMBAND_PLUGIN(http_plugin)
