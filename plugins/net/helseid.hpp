// HelseID as a machine client: client credentials with a private_key_jwt assertion, DPoP-bound
// tokens.
#pragma once

#include "net/common.hpp"
#include "net/http.hpp"
#include "net/jose.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace samband::net {

struct helseid_config {
    // e.g. https://helseid-sts.test.nhn.no/connect/token
    std::string token_endpoint;
    // The client assertion's `aud`. Empty: the token endpoint's origin, which is HelseID's issuer
    // (https://helseid-sts.test.nhn.no in test).
    std::string audience;
    // From HelseID Selvbetjening.
    std::string client_id;
    // PEM private key registered for the client (RSA >= 2048 or EC P-256). A secret: read once
    // at start, never logged.
    std::filesystem::path key_file;
    // The same key as PEM text, when it comes from the host's secret store (the plugin ABI's
    // get_secret) rather than a file. Wins over key_file. A secret: never logged.
    std::string key_pem;
    // `kid` of the client assertion header. Empty: the key's RFC 7638 thumbprint.
    std::string key_id;
    // "RS256" (default for RSA), "PS256", or "ES256" (EC keys). Empty: chosen from the key.
    std::string signing_alg;
    // The DPoP key (PEM). Empty: a fresh EC P-256 key is generated in memory at start (tokens are
    // bound to it, so they do not survive a restart; that is fine, they are short-lived).
    std::filesystem::path dpop_key_file;
    // DPoP-bound tokens (HelseID, EDI 2.0). false: plain Bearer tokens (SMART Backend Services
    // servers that do not ask for DPoP); no proof is sent and a Bearer token_type is required.
    bool dpop = true;
    // Space-separated scopes (EDI 2.0: nhn:msh/api; a FHIR server names its own, e.g.
    // system/*.write).
    std::string scope = "nhn:msh/api";
    // Renew this long before `expires_in` runs out (at most half the token's lifetime).
    std::chrono::seconds refresh_margin{60};
    // Lifetime of a client assertion (HelseID allows at most 60 s).
    std::chrono::seconds assertion_lifetime{50};
    tls_options tls;
};

struct access_token {
    std::string value;  // a secret: never logged
    // When the client stops using it: HelseID's expires_in minus the refresh margin.
    std::chrono::system_clock::time_point expires_at;
};

// Fetches and caches DPoP-bound access tokens and makes the DPoP proofs that go with them.
// THREAD: all members may be called from several threads at once.
class token_client {
public:
    // Loads keys and checks the config; throws std::runtime_error naming what is wrong.
    token_client(helseid_config config, wall_clock_fn clock, log_fn log);
    ~token_client();

    // A token valid for at least a little longer, from the cache or from HelseID. Handles one
    // use_dpop_nonce round per request. Failures are classified like any other call (a rejected
    // client is permanent, 5xx/timeouts retry).
    result<access_token> get(std::chrono::steady_clock::time_point deadline);

    // Drops the cached token (after the API refused it).
    void invalidate();

    // A DPoP proof (RFC 9449) for one request: typ dpop+jwt, the public JWK, htm, htu, iat, a
    // fresh jti, `ath` when `access_token` is not empty and `nonce` when not empty.
    std::string dpop_proof(std::string_view method, std::string_view htu,
                           std::string_view access_token, std::string_view nonce) const;

    // The client assertion sent to the token endpoint (exposed for tests).
    std::string client_assertion() const;

    // How many token requests went to HelseID (nonce retries included).
    std::uint64_t token_requests() const { return token_requests_.load(); }
    const jws_key& dpop_key() const { return dpop_key_; }
    const wall_clock_fn& clock() const { return clock_; }

private:
    result<access_token> request_token(std::chrono::steady_clock::time_point deadline);

    helseid_config config_;
    wall_clock_fn clock_;
    log_fn log_;
    endpoint_url token_url_;
    std::string audience_;
    std::string key_id_;
    jws_key client_key_;
    jws_key dpop_key_;
    http_client http_;

    mutable std::mutex mutex_;  // guards cached_ and nonce_
    std::optional<access_token> cached_;
    std::string nonce_;       // the last DPoP-Nonce from HelseID
    std::mutex fetch_mutex_;  // one token request at a time
    std::atomic<std::uint64_t> token_requests_{0};
};

}  // namespace samband::net
