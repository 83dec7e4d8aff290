// NHN EDI 2.0 REST client with HelseID machine-to-machine auth (private_key_jwt + DPoP).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace samband::nhn::edi {

// JOSE helpers (OpenSSL EVP): a private key from PEM, its public JWK, and compact JWS signing.
// ES256 for EC P-256 keys, RS256 for RSA keys.
class signing_key {
public:
    // Throws std::runtime_error naming the problem (never the key material).
    static signing_key from_pem(const std::string& pem);
    std::string alg() const;              // "ES256" or "RS256"
    std::string public_jwk_json() const;  // {"kty":…} without private parts
    std::string sign_jws(const std::string& header_json, const std::string& payload_json) const;
    ~signing_key();
    signing_key(signing_key&&) noexcept;
    signing_key& operator=(signing_key&&) noexcept;

private:
    signing_key() = default;
    void* pkey_ = nullptr;  // EVP_PKEY*
};

std::string base64url(const std::string& bytes);
std::string random_id();

using clock_fn = std::function<std::int64_t()>;  // unix seconds; injectable for tests

struct client_options {
    std::string
        token_url;  // HelseID token endpoint, e.g. https://helseid-sts.test.nhn.no/connect/token
    std::string audience;  // the client assertion's aud (HelseID's issuer); default token_url
    std::string api_base;  // e.g. https://api.tjener.test.melding.nhn.no
    std::string client_id;
    std::string scope;            // e.g. nhn:msh/api
    std::string private_key_pem;  // a secret: from the host's get_secret, never from config text
    std::string api_version = "2";
    std::string source_system = "samband";
    std::chrono::milliseconds timeout{30000};
    bool allow_plain_http_loopback = false;  // tests against a fake server on 127.0.0.1 only
    std::string ca_file;
    clock_fn now;  // default: system clock
};

// How a call ended, for the delivery engine: ok, retry (429, 5xx, timeouts, dropped
// connections; honour retry_after) or permanent (other 4xx, with the server's message).
struct outcome {
    enum class kind { ok, retry, permanent } what = kind::ok;
    int http_status = 0;
    std::int64_t retry_after_s = 0;
    std::string message;
    std::string body;
};

struct inbox_message {
    std::string id;
    std::int64_t receiver_her_id = 0;
};

class client {
public:
    explicit client(client_options opts);  // throws on a bad key or URL
    ~client();

    // POST /Messages: the business document (UTF-8 XML), base64 in JSON; the receivers are those
    // of its MsgHead. On ok, body = the EDI 2.0 message id.
    outcome send(const std::string& xml);
    // GET /Messages?ReceiverHerIds=…: unread messages for our HER-ids.
    outcome list_unread(std::int64_t receiver_her_id, std::vector<inbox_message>& out);
    // GET /Messages/{id}/business-document: the decoded XML.
    outcome fetch(const std::string& id, std::string& xml);
    // PUT /Messages/{id}/read/{herId}.
    outcome mark_read(const std::string& id, std::int64_t her_id);
    // GET /Messages/{id}/status (raw JSON in body).
    outcome status(const std::string& id);
    // POST /Messages/{id}/apprec/{appRecSenderHerId}: our Apprec for a received message; the API
    // builds the Apprec from the status ("Ok", "Rejected", "OkErrorInMessagePart") and errors
    // (8221 code, details).
    outcome send_apprec(const std::string& id, std::int64_t apprec_sender_her_id,
                        const std::string& status,
                        const std::vector<std::pair<std::string, std::string>>& errors = {});

    // The access token (fetched and cached until shortly before it expires). For tests.
    outcome token(std::string& access_token);
    int token_requests() const { return token_requests_; }

private:
    struct http_answer;
    outcome call(const std::string& method, const std::string& path, const std::string& body,
                 const std::string& content_type);
    outcome fetch_token();

    client_options opts_;
    signing_key key_;
    std::mutex mu_;
    std::string access_token_;
    std::int64_t token_expires_ = 0;
    std::string dpop_nonce_;
    int token_requests_ = 0;
};

}  // namespace samband::nhn::edi
