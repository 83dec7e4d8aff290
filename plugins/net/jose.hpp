// JOSE for HelseID: base64url, SHA-256, private keys from PEM, public JWKs and signed JWTs (OpenSSL
// 3).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

typedef struct evp_pkey_st EVP_PKEY;

namespace samband::net {

// RFC 4648 §5 without padding.
std::string base64url_encode(std::span<const std::uint8_t> bytes);
std::string base64url_encode(std::string_view bytes);
// Accepts unpadded or padded base64url; nullopt on any other character.
std::optional<std::string> base64url_decode(std::string_view text);

// Standard base64 with padding (EDI 2.0 business documents, FHIR attachments).
std::string base64_encode(std::string_view bytes);
// Strict standard base64 (whitespace skipped); nullopt if malformed or longer than `max_decoded`.
std::optional<std::string> base64_decode(std::string_view text, std::size_t max_decoded = SIZE_MAX);

std::array<std::uint8_t, 32> sha256(std::string_view bytes);

// 16 random bytes (OpenSSL RAND_bytes) as base64url: a JWT id.
std::string random_jti();

enum class jws_alg { rs256, ps256, es256 };

std::string_view to_string(jws_alg alg);
// "RS256", "PS256" or "ES256"; nullopt otherwise.
std::optional<jws_alg> parse_jws_alg(std::string_view name);

// A private key that signs JWTs. RSA keys (>= 2048 bits) sign RS256 or PS256, EC P-256 keys ES256.
// THREAD: const members may be called from several threads at once.
class jws_key {
public:
    // Loads a PEM private key (PKCS#8 or traditional, unencrypted). `alg` empty: RS256 for RSA,
    // ES256 for EC. Throws std::runtime_error naming the path (never the contents) on failure.
    static jws_key load_pem_file(const std::filesystem::path& path,
                                 std::optional<jws_alg> alg = std::nullopt);
    static jws_key from_pem(std::string_view pem, std::optional<jws_alg> alg = std::nullopt);
    // A fresh EC P-256 key (ES256), e.g. an in-memory DPoP key.
    static jws_key generate_p256();

    jws_key(jws_key&&) noexcept;
    jws_key& operator=(jws_key&&) noexcept;
    ~jws_key();

    jws_alg alg() const { return alg_; }
    // The public key as a JWK with only the RFC 7638 members in lexicographic order and no
    // whitespace, e.g. {"e":"AQAB","kty":"RSA","n":"..."}: fit for a DPoP header and a thumbprint.
    const std::string& public_jwk() const { return public_jwk_; }
    // RFC 7638 JWK SHA-256 thumbprint, base64url.
    std::string thumbprint() const;

    // Compact JWS of `header_json`.`claims_json` (both serialised JSON objects; the header must
    // name this key's alg). Empty string if OpenSSL fails to sign.
    std::string sign_jwt(std::string_view header_json, std::string_view claims_json) const;

private:
    struct pkey_deleter {
        void operator()(EVP_PKEY* p) const;
    };
    jws_key(std::unique_ptr<EVP_PKEY, pkey_deleter> key, std::optional<jws_alg> alg,
            std::string_view what);

    std::unique_ptr<EVP_PKEY, pkey_deleter> key_;
    jws_alg alg_ = jws_alg::rs256;
    std::string public_jwk_;
};

}  // namespace samband::net
