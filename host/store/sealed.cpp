#include "store/sealed.hpp"
#include "store/store.hpp"

#include "core/ids.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cctype>
#include <memory>
#include <stdexcept>

namespace samband::store {

namespace {

constexpr std::string_view kMagic = "SBX1";
constexpr std::size_t kNonce = 12, kTag = 16, kMaxId = 64;

struct ctx_free {
    void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using cipher_ctx = std::unique_ptr<EVP_CIPHER_CTX, ctx_free>;

const unsigned char* u(std::string_view s) {
    return reinterpret_cast<const unsigned char*>(s.data());
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

bool from_hex(std::string_view s, std::string& out) {
    if (s.size() % 2 != 0) return false;
    auto nib = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    out.clear();
    for (std::size_t i = 0; i < s.size(); i += 2) {
        int h = nib(s[i]), l = nib(s[i + 1]);
        if (h < 0 || l < 0) return false;
        out.push_back(static_cast<char>(h * 16 + l));
    }
    return true;
}

struct parsed {
    std::string_view id, nonce, body, tag;
};

bool parse(std::string_view r, parsed& p) {
    if (r.size() < kMagic.size() + 1 || r.substr(0, kMagic.size()) != kMagic) return false;
    std::size_t n = static_cast<unsigned char>(r[kMagic.size()]);
    std::size_t at = kMagic.size() + 1;
    if (n == 0 || n > kMaxId || r.size() < at + n + kNonce + kTag) return false;
    p.id = r.substr(at, n);
    p.nonce = r.substr(at + n, kNonce);
    p.body = r.substr(at + n + kNonce, r.size() - (at + n + kNonce + kTag));
    p.tag = r.substr(r.size() - kTag);
    return true;
}

}  // namespace

void keyring::add(const std::string& id, std::string_view material) {
    if (id.empty() || id.size() > kMaxId)
        throw std::invalid_argument("encryption key id \"" + id + "\" must be 1 to 64 characters");
    std::string_view m = trim(material);
    std::string raw;
    if (!(m.size() == 64 && from_hex(m, raw))) {
        auto b = core::base64_decode(m);
        raw = b ? *b : std::string();
    }
    if (raw.size() != 32)
        throw std::invalid_argument("encryption key \"" + id +
                                    "\" must be 32 bytes, written as 64 hex digits or base64");
    std::array<unsigned char, 32> k{};
    std::copy(raw.begin(), raw.end(), k.begin());
    keys_[id] = k;
    if (current_.empty()) current_ = id;
}

void keyring::set_current(const std::string& id) {
    if (!has(id)) throw std::invalid_argument("encryption key \"" + id + "\" is not configured");
    current_ = id;
}

std::string keyring::seal(std::string_view plaintext, std::string_view aad) const {
    auto it = keys_.find(current_);
    if (it == keys_.end()) throw std::logic_error("keyring::seal without a key");
    std::string out(kMagic);
    out.push_back(static_cast<char>(current_.size()));
    out += current_;
    std::size_t nonce_at = out.size();
    out.resize(nonce_at + kNonce + plaintext.size() + kTag);
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    if (RAND_bytes(o + nonce_at, static_cast<int>(kNonce)) != 1)
        throw std::runtime_error("encryption: no random bytes for a nonce");
    cipher_ctx c(EVP_CIPHER_CTX_new());
    int len = 0, fin = 0;
    bool ok =
        c && EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
        EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_IVLEN, kNonce, nullptr) == 1 &&
        EVP_EncryptInit_ex(c.get(), nullptr, nullptr, it->second.data(), o + nonce_at) == 1 &&
        EVP_EncryptUpdate(c.get(), nullptr, &len, u(aad), static_cast<int>(aad.size())) == 1 &&
        EVP_EncryptUpdate(c.get(), o + nonce_at + kNonce, &len, u(plaintext),
                          static_cast<int>(plaintext.size())) == 1 &&
        EVP_EncryptFinal_ex(c.get(), o + nonce_at + kNonce + len, &fin) == 1 &&
        EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, kTag,
                            o + nonce_at + kNonce + plaintext.size()) == 1;
    if (!ok) throw std::runtime_error("encryption: OpenSSL AES-256-GCM failed");
    return out;
}

boost::system::result<std::string, std::string> keyring::open(std::string_view sealed,
                                                              std::string_view aad) const {
    parsed p;
    using boost::system::in_place_error;
    if (!parse(sealed, p))
        return {in_place_error, "not a sealed record (too short or no SBX1 header)"};
    auto it = keys_.find(std::string(p.id));
    if (it == keys_.end())
        return {in_place_error, "sealed under encryption key \"" + std::string(p.id) +
                                    "\", which is not configured"};
    std::string out(p.body.size(), '\0');
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    cipher_ctx c(EVP_CIPHER_CTX_new());
    int len = 0, fin = 0;
    std::string tag(p.tag);
    bool ok =
        c && EVP_DecryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
        EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_IVLEN, kNonce, nullptr) == 1 &&
        EVP_DecryptInit_ex(c.get(), nullptr, nullptr, it->second.data(), u(p.nonce)) == 1 &&
        EVP_DecryptUpdate(c.get(), nullptr, &len, u(aad), static_cast<int>(aad.size())) == 1 &&
        EVP_DecryptUpdate(c.get(), o, &len, u(p.body), static_cast<int>(p.body.size())) == 1 &&
        EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_TAG, kTag, tag.data()) == 1 &&
        EVP_DecryptFinal_ex(c.get(), o + len, &fin) == 1;
    if (!ok)
        return {in_place_error,
                "authentication failed under encryption key \"" + std::string(p.id) +
                    "\" (the record was changed, belongs to another row, or the key is wrong)"};
    return {boost::system::in_place_value, std::move(out)};
}

namespace {
class sealed_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "samband.sealed"; }
    std::string message(int) const override {
        return "a stored record failed authentication (changed bytes, another row's data, or an "
               "encryption key that is wrong or not configured)";
    }
};
}  // namespace

boost::system::error_code sealed_record_error() noexcept {
    static const sealed_category c;
    return {1, c};
}

namespace {
// A sealed column value: this prefix, then the sealed record in base64 (the columns are TEXT).
constexpr std::string_view kSealedPrefix = "\x01sbx1:";
}  // namespace

std::string seal_column(const keyring* keys, std::string_view plain, std::string_view aad) {
    if (!keys) return std::string(plain);
    return std::string(kSealedPrefix) + core::base64_encode(keys->seal(plain, aad));
}

std::string open_column(const keyring* keys, std::string stored, std::string_view aad) {
    if (std::string_view(stored).substr(0, kSealedPrefix.size()) != kSealedPrefix) return stored;
    auto raw = core::base64_decode(std::string_view(stored).substr(kSealedPrefix.size()));
    if (!raw) throw sealed_failure(std::string(aad) + ": the sealed record is not base64");
    if (!keys)
        throw sealed_failure(std::string(aad) + ": sealed under encryption key \"" +
                             keyring::key_id_of(*raw) +
                             "\", but store.encryption is not configured");
    auto plain = keys->open(*raw, aad);
    if (!plain) throw sealed_failure(std::string(aad) + ": " + plain.error());
    return std::move(*plain);
}

bool column_sealed_under(std::string_view stored, std::string_view key_id) {
    if (stored.substr(0, kSealedPrefix.size()) != kSealedPrefix) return false;
    auto raw = core::base64_decode(stored.substr(kSealedPrefix.size()));
    return raw && keyring::key_id_of(*raw) == key_id;
}

bool keyring::is_sealed(std::string_view record) {
    parsed p;
    return parse(record, p);
}

std::string keyring::key_id_of(std::string_view record) {
    parsed p;
    return parse(record, p) ? std::string(p.id) : std::string();
}

}  // namespace samband::store
