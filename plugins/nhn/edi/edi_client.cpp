#include "edi_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstring>
#include <stdexcept>

namespace samband::nhn::edi {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

std::string b64(const unsigned char* p, std::size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

std::string b64_decode(const std::string& in, bool& ok) {
    std::string clean;
    for (char c : in)
        if (!std::isspace(static_cast<unsigned char>(c))) clean += c;
    ok = clean.size() % 4 == 0;
    if (!ok) return {};
    std::string out(clean.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(clean.data()),
                            static_cast<int>(clean.size()));
    if (n < 0) {
        ok = false;
        return {};
    }
    std::size_t pad = (!clean.empty() && clean.back() == '=') +
                      (clean.size() > 1 && clean[clean.size() - 2] == '=');
    out.resize(static_cast<std::size_t>(n) - pad);
    return out;
}

std::string sha256(const std::string& s) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
    return std::string(reinterpret_cast<char*>(md), len);
}

std::string bn_bytes(EVP_PKEY* k, const char* name, std::size_t pad_to = 0) {
    BIGNUM* bn = nullptr;
    if (!EVP_PKEY_get_bn_param(k, name, &bn)) return {};
    std::size_t n = static_cast<std::size_t>(BN_num_bytes(bn));
    std::size_t len = std::max(n, pad_to);
    std::string out(len, '\0');
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(len));
    BN_free(bn);
    return out;
}

std::string json_escape(const std::string& s) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    w.String(s.c_str(), static_cast<rapidjson::SizeType>(s.size()));
    return sb.GetString();
}

std::string url_encode(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", c);
            out += buf;
        }
    }
    return out;
}

struct answer {
    int status = 0;  // 0: no answer (connection failed or timed out)
    std::string body;
    std::string retry_after;
    std::string dpop_nonce;
    std::string error;
};

answer request(const client_options& o, const std::string& method, const std::string& url,
               const std::map<std::string, std::string>& headers, const std::string& body) {
    answer a;
    auto u = boost::urls::parse_uri(url);
    if (!u) {
        a.error = "bad URL " + url;
        return a;
    }
    bool https = u->scheme() == "https";
    std::string host = u->host();
    std::string port = u->has_port() ? std::string(u->port()) : (https ? "443" : "80");
    std::string target = std::string(u->encoded_path().empty() ? "/" : u->encoded_path());
    if (u->has_query()) target += "?" + std::string(u->encoded_query());
    if (!https && !(o.allow_plain_http_loopback && (host == "127.0.0.1" || host == "localhost"))) {
        a.error = "plain http is refused (" + url + "); NHN and HelseID need https";
        return a;
    }
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    bool default_port = (https && port == "443") || (!https && port == "80");
    req.set(http::field::host, default_port ? host : host + ":" + port);
    req.set(http::field::user_agent, "samband-nhn");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    asio::io_context io;
    boost::system::error_code ec;
    auto results = asio::ip::tcp::resolver(io).resolve(host, port, ec);
    if (ec) {
        a.error = "cannot resolve " + host + ": " + ec.message();
        return a;
    }
    auto exchange = [&](auto& stream) {
        http::write(stream, req, ec);
        if (ec) {
            a.error = "sending failed: " + ec.message();
            return;
        }
        beast::flat_buffer buf;
        buf.reserve(64 * 1024);
        http::response_parser<http::string_body> p;
        p.body_limit(64 * 1024 * 1024);
        http::read(stream, buf, p, ec);
        if (ec) {
            a.error = "no answer: " + ec.message();
            return;
        }
        a.status = static_cast<int>(p.get().result_int());
        a.body = p.get().body();
        a.retry_after = std::string(p.get()[http::field::retry_after]);
        a.dpop_nonce = std::string(p.get()["DPoP-Nonce"]);
    };
    if (!https) {
        beast::tcp_stream s(io);
        s.expires_after(o.timeout);
        s.connect(results, ec);
        if (ec) {
            a.error = "cannot connect to " + host + ":" + port + ": " + ec.message();
            return a;
        }
        exchange(s);
        return a;
    }
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.set_default_verify_paths();
    if (!o.ca_file.empty()) ctx.load_verify_file(o.ca_file, ec);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> s(io, ctx);
    s.set_verify_callback(asio::ssl::host_name_verification(host));
    SSL_set_tlsext_host_name(s.native_handle(), host.c_str());
    beast::get_lowest_layer(s).expires_after(o.timeout);
    beast::get_lowest_layer(s).connect(results, ec);
    if (!ec) s.handshake(asio::ssl::stream_base::client, ec);
    if (ec) {
        a.error = "TLS connection to " + host + " failed: " + ec.message();
        return a;
    }
    exchange(s);
    return a;
}

// Maps an HTTP answer to the engine's view.
outcome classify(const answer& a, std::int64_t now) {
    outcome o;
    o.http_status = a.status;
    o.body = a.body;
    if (a.status == 0) {
        o.what = outcome::kind::retry;
        o.message = a.error;
        return o;
    }
    if (a.status >= 200 && a.status < 300) return o;
    // The server's own words (ErrorMessage JSON or text), never our request.
    std::string text = a.body.substr(0, 500);
    rapidjson::Document d;
    d.Parse(a.body.c_str());
    if (!d.HasParseError() && d.IsObject()) {
        for (const char* k : {"errorMessage", "message", "error_description", "error", "title"}) {
            if (d.HasMember(k) && d[k].IsString()) {
                text = d[k].GetString();
                break;
            }
        }
    }
    o.message = "HTTP " + std::to_string(a.status) + ": " + text;
    if (a.status == 429 || a.status >= 500 || a.status == 408) {
        o.what = outcome::kind::retry;
        if (!a.retry_after.empty()) {
            if (a.retry_after.find_first_not_of("0123456789") == std::string::npos) {
                o.retry_after_s = std::stoll(a.retry_after);
            } else {
                std::tm tm{};
                if (strptime(a.retry_after.c_str(), "%a, %d %b %Y %H:%M:%S", &tm))
                    o.retry_after_s = std::max<std::int64_t>(0, timegm(&tm) - now);
            }
            o.message += " (retry after " + std::to_string(o.retry_after_s) + " s)";
        }
    } else {
        o.what = outcome::kind::permanent;
    }
    return o;
}

}  // namespace

std::string base64url(const std::string& bytes) {
    std::string s = b64(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
    for (char& c : s) {
        if (c == '+') c = '-';
        if (c == '/') c = '_';
    }
    while (!s.empty() && s.back() == '=') s.pop_back();
    return s;
}

std::string random_id() {
    unsigned char r[16];
    RAND_bytes(r, sizeof r);
    return base64url(std::string(reinterpret_cast<char*>(r), sizeof r));
}

signing_key signing_key::from_pem(const std::string& pem) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    EVP_PKEY* k = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    if (!k) throw std::runtime_error("HelseID key: not a PEM private key");
    int id = EVP_PKEY_get_base_id(k);
    if (id != EVP_PKEY_EC && id != EVP_PKEY_RSA) {
        EVP_PKEY_free(k);
        throw std::runtime_error(
            "HelseID key: only EC P-256 (ES256) and RSA (RS256) keys are supported");
    }
    signing_key out;
    out.pkey_ = k;
    return out;
}

signing_key::~signing_key() {
    if (pkey_) EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_));
}
signing_key::signing_key(signing_key&& o) noexcept : pkey_(std::exchange(o.pkey_, nullptr)) {}
signing_key& signing_key::operator=(signing_key&& o) noexcept {
    std::swap(pkey_, o.pkey_);
    return *this;
}

std::string signing_key::alg() const {
    return EVP_PKEY_get_base_id(static_cast<EVP_PKEY*>(pkey_)) == EVP_PKEY_EC ? "ES256" : "RS256";
}

std::string signing_key::public_jwk_json() const {
    auto* k = static_cast<EVP_PKEY*>(pkey_);
    if (alg() == "ES256") {
        return "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" +
               base64url(bn_bytes(k, OSSL_PKEY_PARAM_EC_PUB_X, 32)) + "\",\"y\":\"" +
               base64url(bn_bytes(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32)) + "\"}";
    }
    return "{\"kty\":\"RSA\",\"e\":\"" + base64url(bn_bytes(k, OSSL_PKEY_PARAM_RSA_E)) +
           "\",\"n\":\"" + base64url(bn_bytes(k, OSSL_PKEY_PARAM_RSA_N)) + "\"}";
}

std::string signing_key::sign_jws(const std::string& header_json,
                                  const std::string& payload_json) const {
    std::string input = base64url(header_json) + "." + base64url(payload_json);
    auto* k = static_cast<EVP_PKEY*>(pkey_);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::size_t len = 0;
    std::string sig;
    if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, k) == 1 &&
        EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                       input.size()) == 1) {
        sig.resize(len);
        if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                           reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
            sig.clear();
        sig.resize(len);
    }
    EVP_MD_CTX_free(ctx);
    if (sig.empty()) throw std::runtime_error("JWS signing failed");
    if (alg() == "ES256") {  // DER ECDSA signature → raw r||s (RFC 7518 §3.4)
        const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
        ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
        if (!es) throw std::runtime_error("JWS signing: bad ECDSA signature");
        const BIGNUM *r = nullptr, *s = nullptr;
        ECDSA_SIG_get0(es, &r, &s);
        std::string raw(64, '\0');
        BN_bn2binpad(r, reinterpret_cast<unsigned char*>(raw.data()), 32);
        BN_bn2binpad(s, reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
        ECDSA_SIG_free(es);
        sig = raw;
    }
    return input + "." + base64url(sig);
}

client::client(client_options opts)
    : opts_(std::move(opts)), key_(signing_key::from_pem(opts_.private_key_pem)) {
    if (!opts_.now)
        opts_.now = [] {
            return std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                .count();
        };
    if (opts_.audience.empty()) opts_.audience = opts_.token_url;
    if (opts_.token_url.empty() || opts_.api_base.empty() || opts_.client_id.empty())
        throw std::runtime_error("EDI 2.0: token_url, api_base and client_id are required");
    while (!opts_.api_base.empty() && opts_.api_base.back() == '/') opts_.api_base.pop_back();
}

client::~client() {
    std::fill(opts_.private_key_pem.begin(), opts_.private_key_pem.end(), '\0');
}

outcome client::fetch_token() {
    std::int64_t now = opts_.now();
    // The client assertion (private_key_jwt): at most 60 s ahead, a fresh jti each time.
    std::string assertion = key_.sign_jws(
        "{\"alg\":\"" + key_.alg() + "\",\"typ\":\"JWT\"}",
        "{\"iss\":" + json_escape(opts_.client_id) + ",\"sub\":" + json_escape(opts_.client_id) +
            ",\"aud\":" + json_escape(opts_.audience) + ",\"iat\":" + std::to_string(now) +
            ",\"nbf\":" + std::to_string(now) + ",\"exp\":" + std::to_string(now + 60) +
            ",\"jti\":" + json_escape(random_id()) + "}");
    for (int round = 0; round < 2; ++round) {
        std::string proof = key_.sign_jws(
            "{\"typ\":\"dpop+jwt\",\"alg\":\"" + key_.alg() +
                "\",\"jwk\":" + key_.public_jwk_json() + "}",
            "{\"htm\":\"POST\",\"htu\":" + json_escape(opts_.token_url) +
                ",\"iat\":" + std::to_string(now) + ",\"jti\":" + json_escape(random_id()) +
                (dpop_nonce_.empty() ? "" : ",\"nonce\":" + json_escape(dpop_nonce_)) + "}");
        std::string form =
            "grant_type=client_credentials&client_id=" + url_encode(opts_.client_id) +
            "&client_assertion_type=" +
            url_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") +
            "&client_assertion=" + url_encode(assertion) + "&scope=" + url_encode(opts_.scope);
        ++token_requests_;
        answer a =
            request(opts_, "POST", opts_.token_url,
                    {{"Content-Type", "application/x-www-form-urlencoded"}, {"DPoP", proof}}, form);
        if (!a.dpop_nonce.empty()) dpop_nonce_ = a.dpop_nonce;
        if (a.status == 400 && a.body.find("use_dpop_nonce") != std::string::npos && round == 0)
            continue;
        outcome o = classify(a, now);
        if (o.what != outcome::kind::ok) {
            // Without a token nothing is sent; a clinical message is retried, not given up, while
            // the operator fixes the client registration (the message names the cause).
            o.what = outcome::kind::retry;
            o.message = "HelseID token: " + o.message;
            return o;
        }
        rapidjson::Document d;
        d.Parse(a.body.c_str());
        if (d.HasParseError() || !d.IsObject() || !d.HasMember("access_token") ||
            !d["access_token"].IsString())
            return {
                outcome::kind::retry, a.status, 0, "HelseID token: answer has no access_token", {}};
        access_token_ = d["access_token"].GetString();
        std::int64_t expires_in = d.HasMember("expires_in") && d["expires_in"].IsInt64()
                                      ? d["expires_in"].GetInt64()
                                      : 60;
        token_expires_ = now + expires_in;
        return o;
    }
    return {outcome::kind::retry, 0, 0, "HelseID token: nonce handshake failed", {}};
}

outcome client::token(std::string& access_token) {
    std::lock_guard lock(mu_);
    if (access_token_.empty() || opts_.now() >= token_expires_ - 10) {
        outcome o = fetch_token();
        if (o.what != outcome::kind::ok) return o;
    }
    access_token = access_token_;
    return {};
}

outcome client::call(const std::string& method, const std::string& path, const std::string& body,
                     const std::string& content_type) {
    std::string at;
    outcome t = token(at);
    if (t.what != outcome::kind::ok) return t;
    std::string url = opts_.api_base + path;
    std::string htu = url.substr(0, url.find('?'));
    std::string proof = key_.sign_jws(
        "{\"typ\":\"dpop+jwt\",\"alg\":\"" + key_.alg() + "\",\"jwk\":" + key_.public_jwk_json() +
            "}",
        "{\"htm\":" + json_escape(method) + ",\"htu\":" + json_escape(htu) +
            ",\"iat\":" + std::to_string(opts_.now()) + ",\"jti\":" + json_escape(random_id()) +
            ",\"ath\":" + json_escape(base64url(sha256(at))) + "}");
    std::map<std::string, std::string> h{{"Authorization", "DPoP " + at},
                                         {"DPoP", proof},
                                         {"api-version", opts_.api_version},
                                         {"nhn-source-system", opts_.source_system},
                                         {"Accept", "application/json"}};
    if (!content_type.empty()) h["Content-Type"] = content_type;
    answer a = request(opts_, method, url, h, body);
    if (a.status == 401) {  // an expired or revoked token: fetch a new one next time
        std::lock_guard lock(mu_);
        access_token_.clear();
    }
    return classify(a, opts_.now());
}

outcome client::send(const std::string& xml) {
    // The receivers come from the MsgHead itself; the document travels base64 in JSON.
    std::string body =
        "{\"businessDocument\":\"" +
        b64(reinterpret_cast<const unsigned char*>(xml.data()), xml.size()) +
        "\",\"contentType\":\"application/xml\",\"contentTransferEncoding\":\"base64\"}";
    outcome o = call("POST", "/Messages", body, "application/json");
    if (o.what == outcome::kind::ok) {
        rapidjson::Document d;
        d.Parse(o.body.c_str());
        if (!d.HasParseError() && d.IsString()) o.body = d.GetString();
    }
    return o;
}

outcome client::list_unread(std::int64_t her_id, std::vector<inbox_message>& out) {
    outcome o = call("GET", "/Messages?ReceiverHerIds=" + std::to_string(her_id), "", "");
    if (o.what != outcome::kind::ok) return o;
    rapidjson::Document d;
    d.Parse(o.body.c_str());
    if (d.HasParseError() || !d.IsArray())
        return {outcome::kind::retry, o.http_status, 0, "EDI 2.0: GET /Messages is not a list", {}};
    for (auto& m : d.GetArray()) {
        if (!m.IsObject() || !m.HasMember("id") || !m["id"].IsString()) continue;
        inbox_message im;
        im.id = m["id"].GetString();
        im.receiver_her_id = m.HasMember("receiverHerId") && m["receiverHerId"].IsInt64()
                                 ? m["receiverHerId"].GetInt64()
                                 : her_id;
        out.push_back(im);
    }
    return o;
}

outcome client::fetch(const std::string& id, std::string& xml) {
    outcome o = call("GET", "/Messages/" + id + "/business-document", "", "");
    if (o.what != outcome::kind::ok) return o;
    rapidjson::Document d;
    d.Parse(o.body.c_str());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("businessDocument") ||
        !d["businessDocument"].IsString())
        return {
            outcome::kind::permanent, o.http_status, 0, "EDI 2.0: business document missing", {}};
    bool ok = true;
    xml = b64_decode(d["businessDocument"].GetString(), ok);
    if (!ok)
        return {outcome::kind::permanent,
                o.http_status,
                0,
                "EDI 2.0: business document is not base64",
                {}};
    return o;
}

outcome client::mark_read(const std::string& id, std::int64_t her_id) {
    return call("PUT", "/Messages/" + id + "/read/" + std::to_string(her_id), "", "");
}

outcome client::status(const std::string& id) {
    return call("GET", "/Messages/" + id + "/status", "", "");
}

outcome client::send_apprec(const std::string& id, std::int64_t sender, const std::string& status,
                            const std::vector<std::pair<std::string, std::string>>& errors) {
    std::string body = "{\"appRecStatus\":" + json_escape(status) + ",\"appRecErrorList\":[";
    for (std::size_t i = 0; i < errors.size(); ++i)
        body += (i ? "," : "") + std::string("{\"errorCode\":") + json_escape(errors[i].first) +
                ",\"details\":" + json_escape(errors[i].second) + "}";
    body += "]}";
    return call("POST", "/Messages/" + id + "/apprec/" + std::to_string(sender), body,
                "application/json");
}

}  // namespace samband::nhn::edi
