#include "net/jose.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace samband::net {

namespace {

constexpr char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string encode_with(const char* alphabet, const std::uint8_t* p, std::size_t n, bool pad) {
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        const std::uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
        out.push_back(alphabet[(v >> 18) & 63]);
        out.push_back(alphabet[(v >> 12) & 63]);
        out.push_back(alphabet[(v >> 6) & 63]);
        out.push_back(alphabet[v & 63]);
    }
    if (n - i == 1) {
        const std::uint32_t v = p[i] << 16;
        out.push_back(alphabet[(v >> 18) & 63]);
        out.push_back(alphabet[(v >> 12) & 63]);
        if (pad) out += "==";
    } else if (n - i == 2) {
        const std::uint32_t v = (p[i] << 16) | (p[i + 1] << 8);
        out.push_back(alphabet[(v >> 18) & 63]);
        out.push_back(alphabet[(v >> 12) & 63]);
        out.push_back(alphabet[(v >> 6) & 63]);
        if (pad) out.push_back('=');
    }
    return out;
}

int decode_char(char c, bool url) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

// Decodes groups of 4 (the last may be 2 or 3 characters). Padding has been stripped.
std::optional<std::string> decode_core(std::string_view s, bool url, std::size_t max_decoded) {
    if (s.size() % 4 == 1) return std::nullopt;
    if (s.size() / 4 * 3 > max_decoded) return std::nullopt;
    std::string out;
    out.reserve(s.size() / 4 * 3 + 3);
    std::uint32_t acc = 0;
    int bits = 0;
    for (const char c : s) {
        const int v = decode_char(c, url);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    // Leftover bits must be zero (canonical encoding).
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
    if (out.size() > max_decoded) return std::nullopt;
    return out;
}

std::string openssl_error() {
    const unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0) return "unknown OpenSSL error";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

// Never prompt on a terminal for a passphrase: encrypted keys are refused.
int no_passphrase(char*, int, int, void*) {
    return -1;
}

std::string bn_to_b64url(const BIGNUM* bn, int width) {
    std::vector<std::uint8_t> buf(width > 0 ? static_cast<std::size_t>(width)
                                            : static_cast<std::size_t>(BN_num_bytes(bn)));
    if (width > 0) {
        BN_bn2binpad(bn, buf.data(), width);
    } else {
        BN_bn2bin(bn, buf.data());
    }
    return base64url_encode(buf);
}

struct bn_free {
    void operator()(BIGNUM* b) const { BN_free(b); }
};
using bn_ptr = std::unique_ptr<BIGNUM, bn_free>;

bn_ptr get_bn(const EVP_PKEY* key, const char* name) {
    BIGNUM* bn = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) return nullptr;
    return bn_ptr(bn);
}

}  // namespace

std::string base64url_encode(std::span<const std::uint8_t> bytes) {
    return encode_with(b64url_alphabet, bytes.data(), bytes.size(), false);
}

std::string base64url_encode(std::string_view bytes) {
    return encode_with(b64url_alphabet, reinterpret_cast<const std::uint8_t*>(bytes.data()),
                       bytes.size(), false);
}

std::optional<std::string> base64url_decode(std::string_view text) {
    while (!text.empty() && text.back() == '=') text.remove_suffix(1);
    return decode_core(text, true, SIZE_MAX);
}

std::string base64_encode(std::string_view bytes) {
    return encode_with(b64_alphabet, reinterpret_cast<const std::uint8_t*>(bytes.data()),
                       bytes.size(), true);
}

std::optional<std::string> base64_decode(std::string_view text, std::size_t max_decoded) {
    std::string compact;
    compact.reserve(text.size());
    for (const char c : text) {
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        compact.push_back(c);
    }
    if (compact.size() % 4 != 0) return std::nullopt;
    std::string_view s = compact;
    int pad = 0;
    while (!s.empty() && s.back() == '=' && pad < 2) {
        s.remove_suffix(1);
        ++pad;
    }
    return decode_core(s, false, max_decoded);
}

std::array<std::uint8_t, 32> sha256(std::string_view bytes) {
    std::array<std::uint8_t, 32> out{};
    unsigned int len = 0;
    EVP_Digest(bytes.data(), bytes.size(), out.data(), &len, EVP_sha256(), nullptr);
    return out;
}

std::string random_jti() {
    std::array<std::uint8_t, 16> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
        throw std::runtime_error("OpenSSL RAND_bytes failed");
    }
    return base64url_encode(bytes);
}

std::string_view to_string(jws_alg alg) {
    switch (alg) {
        case jws_alg::rs256:
            return "RS256";
        case jws_alg::ps256:
            return "PS256";
        case jws_alg::es256:
            return "ES256";
    }
    return "RS256";
}

std::optional<jws_alg> parse_jws_alg(std::string_view name) {
    if (name == "RS256") return jws_alg::rs256;
    if (name == "PS256") return jws_alg::ps256;
    if (name == "ES256") return jws_alg::es256;
    return std::nullopt;
}

void jws_key::pkey_deleter::operator()(EVP_PKEY* p) const {
    EVP_PKEY_free(p);
}

jws_key::jws_key(jws_key&&) noexcept = default;
jws_key& jws_key::operator=(jws_key&&) noexcept = default;
jws_key::~jws_key() = default;

jws_key::jws_key(std::unique_ptr<EVP_PKEY, pkey_deleter> key, std::optional<jws_alg> alg,
                 std::string_view what)
    : key_(std::move(key)) {
    const EVP_PKEY* k = key_.get();
    if (EVP_PKEY_is_a(k, "RSA")) {
        if (EVP_PKEY_get_bits(k) < 2048) {
            throw std::runtime_error(std::string(what) + ": RSA keys must have at least 2048 bits");
        }
        alg_ = alg.value_or(jws_alg::rs256);
        if (alg_ == jws_alg::es256) {
            throw std::runtime_error(std::string(what) + ": ES256 needs an EC P-256 key, not RSA");
        }
        const auto n = get_bn(k, OSSL_PKEY_PARAM_RSA_N);
        const auto e = get_bn(k, OSSL_PKEY_PARAM_RSA_E);
        if (!n || !e) throw std::runtime_error(std::string(what) + ": unreadable RSA key");
        public_jwk_ = R"({"e":")" + bn_to_b64url(e.get(), 0) + R"(","kty":"RSA","n":")" +
                      bn_to_b64url(n.get(), 0) + R"("})";
    } else if (EVP_PKEY_is_a(k, "EC")) {
        char curve[64] = {};
        std::size_t len = 0;
        if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof curve,
                                           &len) != 1 ||
            std::string_view(curve) != "prime256v1") {
            throw std::runtime_error(std::string(what) +
                                     ": EC keys must be on curve P-256 (ES256)");
        }
        if (alg && *alg != jws_alg::es256) {
            throw std::runtime_error(std::string(what) + ": an EC P-256 key signs ES256 only");
        }
        alg_ = jws_alg::es256;
        const auto x = get_bn(k, OSSL_PKEY_PARAM_EC_PUB_X);
        const auto y = get_bn(k, OSSL_PKEY_PARAM_EC_PUB_Y);
        if (!x || !y) throw std::runtime_error(std::string(what) + ": unreadable EC key");
        public_jwk_ = R"({"crv":"P-256","kty":"EC","x":")" + bn_to_b64url(x.get(), 32) +
                      R"(","y":")" + bn_to_b64url(y.get(), 32) + R"("})";
    } else {
        throw std::runtime_error(std::string(what) + ": only RSA and EC P-256 keys are supported");
    }
}

jws_key jws_key::from_pem(std::string_view pem, std::optional<jws_alg> alg) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
    if (!bio) throw std::runtime_error("out of memory reading a PEM key");
    EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, &no_passphrase, nullptr);
    if (!raw) {
        ERR_clear_error();
        throw std::runtime_error(
            "not an unencrypted PEM private key (PKCS#8 or traditional RSA/EC)");
    }
    return jws_key(std::unique_ptr<EVP_PKEY, pkey_deleter>(raw), alg, "private key");
}

jws_key jws_key::load_pem_file(const std::filesystem::path& path, std::optional<jws_alg> alg) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open key file " + path.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string pem = ss.str();
    try {
        auto key = from_pem(pem, alg);
        OPENSSL_cleanse(pem.data(), pem.size());
        return key;
    } catch (const std::exception& e) {
        OPENSSL_cleanse(pem.data(), pem.size());
        throw std::runtime_error("key file " + path.string() + ": " + e.what());
    }
}

jws_key jws_key::generate_p256() {
    EVP_PKEY* raw = EVP_EC_gen("P-256");
    if (!raw) throw std::runtime_error("cannot generate a P-256 key: " + openssl_error());
    return jws_key(std::unique_ptr<EVP_PKEY, pkey_deleter>(raw), jws_alg::es256, "generated key");
}

std::string jws_key::thumbprint() const {
    const auto digest = sha256(public_jwk_);
    return base64url_encode(digest);
}

std::string jws_key::sign_jwt(std::string_view header_json, std::string_view claims_json) const {
    std::string input = base64url_encode(header_json);
    input.push_back('.');
    input += base64url_encode(claims_json);

    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    EVP_PKEY_CTX* pctx = nullptr;
    if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key_.get()) != 1) {
        ERR_clear_error();
        return {};
    }
    if (alg_ == jws_alg::ps256) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1) {
            ERR_clear_error();
            return {};
        }
    }
    std::size_t sig_len = 0;
    const auto* data = reinterpret_cast<const unsigned char*>(input.data());
    if (EVP_DigestSign(ctx.get(), nullptr, &sig_len, data, input.size()) != 1) {
        ERR_clear_error();
        return {};
    }
    std::vector<std::uint8_t> sig(sig_len);
    if (EVP_DigestSign(ctx.get(), sig.data(), &sig_len, data, input.size()) != 1) {
        ERR_clear_error();
        return {};
    }
    sig.resize(sig_len);

    if (alg_ == jws_alg::es256) {
        // OpenSSL gives DER (SEQUENCE of r, s); JWS wants r || s, 32 bytes each (RFC 7518 §3.4).
        const unsigned char* p = sig.data();
        std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> es(
            d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())), &ECDSA_SIG_free);
        if (!es) {
            ERR_clear_error();
            return {};
        }
        std::array<std::uint8_t, 64> raw{};
        BN_bn2binpad(ECDSA_SIG_get0_r(es.get()), raw.data(), 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es.get()), raw.data() + 32, 32);
        sig.assign(raw.begin(), raw.end());
    }
    input.push_back('.');
    input += base64url_encode(sig);
    return input;
}

}  // namespace samband::net
