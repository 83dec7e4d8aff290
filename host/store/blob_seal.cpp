#include "store/blob_seal.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace samband::store {

namespace {

constexpr unsigned char kVersion = 1;
constexpr std::size_t kNonce = 12;

struct ctx_free {
    void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using cipher_ctx = std::unique_ptr<EVP_CIPHER_CTX, ctx_free>;

void put_be(std::string& s, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t get_be(std::string_view s) {
    std::uint64_t v = 0;
    for (char c : s) v = (v << 8) | static_cast<unsigned char>(c);
    return v;
}

std::array<unsigned char, kNonce> nonce_of(const blob_header& h, std::uint64_t index) {
    std::array<unsigned char, kNonce> n{};
    std::copy(h.prefix.begin(), h.prefix.end(), n.begin());
    for (int i = 0; i < 4; ++i)
        n[8 + i] = static_cast<unsigned char>((index >> (8 * (3 - i))) & 0xff);
    return n;
}

std::string aad_of(const blob_header& h, std::string_view sha256, std::uint64_t index, bool final) {
    std::string a = h.raw;
    a += sha256;
    put_be(a, index, 8);
    a.push_back(final ? '\x01' : '\x00');
    return a;
}

const unsigned char* u(std::string_view s) {
    return reinterpret_cast<const unsigned char*>(s.data());
}

// AES-256-GCM over one chunk; encrypt appends ciphertext and tag to `out`, decrypt writes the
// plaintext to `out` (body.size() bytes) and checks the tag.
bool gcm(bool encrypt, const std::array<unsigned char, 32>& key,
         const std::array<unsigned char, kNonce>& nonce, std::string_view aad,
         std::string_view body, const unsigned char* tag, unsigned char* out,
         unsigned char* tag_out) {
    cipher_ctx c(EVP_CIPHER_CTX_new());
    int len = 0, fin = 0;
    if (!c) return false;
    if (encrypt) {
        return EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
               EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_IVLEN, kNonce, nullptr) == 1 &&
               EVP_EncryptInit_ex(c.get(), nullptr, nullptr, key.data(), nonce.data()) == 1 &&
               EVP_EncryptUpdate(c.get(), nullptr, &len, u(aad), static_cast<int>(aad.size())) ==
                   1 &&
               EVP_EncryptUpdate(c.get(), out, &len, u(body), static_cast<int>(body.size())) == 1 &&
               EVP_EncryptFinal_ex(c.get(), out + len, &fin) == 1 &&
               EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, kBlobTag, tag_out) == 1;
    }
    return EVP_DecryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
           EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_IVLEN, kNonce, nullptr) == 1 &&
           EVP_DecryptInit_ex(c.get(), nullptr, nullptr, key.data(), nonce.data()) == 1 &&
           EVP_DecryptUpdate(c.get(), nullptr, &len, u(aad), static_cast<int>(aad.size())) == 1 &&
           EVP_DecryptUpdate(c.get(), out, &len, u(body), static_cast<int>(body.size())) == 1 &&
           EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_TAG, kBlobTag,
                               const_cast<unsigned char*>(tag)) == 1 &&
           EVP_DecryptFinal_ex(c.get(), out + len, &fin) == 1;
}

}  // namespace

std::optional<blob_header> parse_blob_header(std::string_view first) {
    std::size_t at = kBlobMagic.size();
    if (first.size() < at + 2 || first.substr(0, at) != kBlobMagic ||
        static_cast<unsigned char>(first[at]) != kVersion)
        return std::nullopt;
    std::size_t n = static_cast<unsigned char>(first[at + 1]);
    at += 2;
    if (n == 0 || n > 64 || first.size() < at + n + 8 + 4 + 8) return std::nullopt;
    blob_header h;
    h.key_id = std::string(first.substr(at, n));
    at += n;
    std::copy(first.begin() + static_cast<std::ptrdiff_t>(at),
              first.begin() + static_cast<std::ptrdiff_t>(at + 8), h.prefix.begin());
    at += 8;
    h.chunk = static_cast<std::uint32_t>(get_be(first.substr(at, 4)));
    at += 4;
    h.size = get_be(first.substr(at, 8));
    at += 8;
    if (h.chunk == 0) return std::nullopt;
    h.raw = std::string(first.substr(0, at));
    return h;
}

blob_sealer::blob_sealer(const keyring& keys, std::string_view sha256, std::uint64_t size,
                         std::size_t chunk)
    : key_(keys.material(keys.current())), sha_(sha256) {
    if (!key_) throw std::logic_error("blob_sealer without a key");
    h_.key_id = keys.current();
    h_.chunk = static_cast<std::uint32_t>(chunk);
    h_.size = size;
    if (RAND_bytes(h_.prefix.data(), static_cast<int>(h_.prefix.size())) != 1)
        throw std::runtime_error("encryption: no random bytes for a nonce");
    h_.raw = std::string(kBlobMagic);
    h_.raw.push_back(static_cast<char>(kVersion));
    h_.raw.push_back(static_cast<char>(h_.key_id.size()));
    h_.raw += h_.key_id;
    h_.raw.append(reinterpret_cast<const char*>(h_.prefix.data()), h_.prefix.size());
    put_be(h_.raw, h_.chunk, 4);
    put_be(h_.raw, h_.size, 8);
    pending_.reserve(chunk);
}

void blob_sealer::seal_chunk(std::string& out, bool final) {
    std::size_t at = out.size();
    out.resize(at + pending_.size() + kBlobTag);
    auto* o = reinterpret_cast<unsigned char*>(out.data()) + at;
    if (!gcm(true, *key_, nonce_of(h_, index_), aad_of(h_, sha_, index_, final), pending_, nullptr,
             o, o + pending_.size()))
        throw std::runtime_error("encryption: OpenSSL AES-256-GCM failed");
    ++index_;
    pending_.clear();
}

bool blob_sealer::update(std::string_view plain, std::string& out) {
    if (fed_ + plain.size() > h_.size) return false;
    fed_ += plain.size();
    while (!plain.empty()) {
        std::size_t take = std::min<std::size_t>(plain.size(), h_.chunk - pending_.size());
        pending_.append(plain.substr(0, take));
        plain.remove_prefix(take);
        // A full chunk is sealed now unless it is the last one (finish seals that, as final).
        if (pending_.size() == h_.chunk && index_ + 1 < h_.chunks()) seal_chunk(out, false);
    }
    return true;
}

bool blob_sealer::finish(std::string& out) {
    if (fed_ != h_.size) return false;
    seal_chunk(out, true);
    return true;
}

boost::system::result<std::size_t, blob_fault> read_sealed_blob(
    const keyring* keys, const blob_header& h, std::string_view sha256, std::uint64_t stored_size,
    std::uint64_t offset, std::uint8_t* out, std::size_t capacity, const blob_raw_reader& raw) {
    using boost::system::in_place_error;
    std::string name = "attachment sha256 " + std::string(sha256);
    const std::array<unsigned char, 32>* key = keys ? keys->material(h.key_id) : nullptr;
    if (!key)
        return {in_place_error,
                blob_fault{true, name + ": sealed under encryption key \"" + h.key_id + "\", " +
                                     (keys ? "which is not configured"
                                           : "but store.encryption is not configured")}};
    if (stored_size != h.sealed_size())
        return {in_place_error,
                blob_fault{true, name + ": its stored length does not match its header "
                                        "(truncated or extended)"}};
    if (h.size == 0 && offset == 0) {
        // The one empty chunk: its tag still proves the blob (and its header) are as sealed.
        std::string tag;
        if (!raw(h.raw.size(), kBlobTag, tag))
            return {in_place_error, blob_fault{false, name + ": its stored bytes cannot be read"}};
        unsigned char none = 0;
        if (tag.size() != kBlobTag || !gcm(false, *key, nonce_of(h, 0), aad_of(h, sha256, 0, true),
                                           {}, u(tag), &none, nullptr))
            return {in_place_error,
                    blob_fault{true, name + ": authentication failed under encryption key \"" +
                                         h.key_id + "\""}};
        return {boost::system::in_place_value, std::size_t{0}};
    }
    if (offset >= h.size || capacity == 0) return {boost::system::in_place_value, std::size_t{0}};
    std::uint64_t end = std::min<std::uint64_t>(h.size, offset + capacity);
    std::uint64_t first = offset / h.chunk, last = (end - 1) / h.chunk;
    std::uint64_t step = std::uint64_t{h.chunk} + kBlobTag;
    std::string stored;
    std::uint64_t raw_at = h.raw.size() + first * step;
    std::uint64_t raw_end = std::min(stored_size, h.raw.size() + (last + 1) * step);
    if (!raw(raw_at, static_cast<std::size_t>(raw_end - raw_at), stored))
        return {in_place_error, blob_fault{false, name + ": its stored bytes cannot be read"}};
    std::string plain;
    std::size_t copied = 0;
    for (std::uint64_t i = first; i <= last; ++i) {
        std::uint64_t plain_at = i * h.chunk;
        std::size_t len =
            static_cast<std::size_t>(std::min<std::uint64_t>(h.chunk, h.size - plain_at));
        std::size_t pos = static_cast<std::size_t>((i - first) * step);
        if (stored.size() < pos + len + kBlobTag)
            return {in_place_error, blob_fault{true, name + ": truncated"}};
        plain.resize(len);
        bool final = i + 1 == h.chunks();
        if (!gcm(false, *key, nonce_of(h, i), aad_of(h, sha256, i, final),
                 std::string_view(stored).substr(pos, len), u(stored) + pos + len,
                 reinterpret_cast<unsigned char*>(plain.data()), nullptr))
            return {in_place_error,
                    blob_fault{true, name + ": authentication failed under encryption key \"" +
                                         h.key_id +
                                         "\" (the bytes were changed, or the key is wrong)"}};
        std::uint64_t from = std::max(offset, plain_at);
        std::uint64_t to = std::min<std::uint64_t>(end, plain_at + len);
        std::memcpy(out + copied, plain.data() + (from - plain_at),
                    static_cast<std::size_t>(to - from));
        copied += static_cast<std::size_t>(to - from);
    }
    return {boost::system::in_place_value, copied};
}

boost::system::result<void, blob_fault> reseal_blob(
    const keyring& keys, std::string_view sha256, std::uint64_t stored_size,
    const blob_raw_reader& raw, const std::function<bool(std::string_view)>& out) {
    using boost::system::in_place_error;
    std::string name = "attachment sha256 " + std::string(sha256);
    auto io = [&] {
        return boost::system::result<void, blob_fault>(
            in_place_error,
            blob_fault{false, name + ": its stored bytes cannot be read or written"});
    };
    std::string first;
    if (!raw(0, kBlobHeaderMax, first)) return io();
    auto h = parse_blob_header(first);
    std::uint64_t size = h ? h->size : stored_size;
    blob_sealer sealer(keys, sha256, size);
    if (!out(sealer.header())) return io();
    std::string piece, sealed;
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!h && (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1))
        throw std::runtime_error("encryption: OpenSSL SHA-256 failed");
    for (std::uint64_t at = 0; at < size;) {
        std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kBlobChunk, size - at));
        if (h) {
            piece.resize(want);
            auto n = read_sealed_blob(&keys, *h, sha256, stored_size, at,
                                      reinterpret_cast<std::uint8_t*>(piece.data()), want, raw);
            if (!n) return {in_place_error, n.error()};
            piece.resize(*n);
        } else {
            if (!raw(at, want, piece)) return io();
            EVP_DigestUpdate(md.get(), piece.data(), piece.size());
        }
        if (piece.empty()) return {in_place_error, blob_fault{true, name + ": truncated"}};
        sealed.clear();
        if (!sealer.update(piece, sealed) || !out(sealed)) return io();
        at += piece.size();
    }
    if (!h) {
        unsigned char d[32];
        unsigned int len = 0;
        EVP_DigestFinal_ex(md.get(), d, &len);
        static const char* hex = "0123456789abcdef";
        std::string got;
        for (unsigned char c : d) {
            got.push_back(hex[c >> 4]);
            got.push_back(hex[c & 15]);
        }
        if (got != sha256)
            return {in_place_error,
                    blob_fault{true, name + ": its plain bytes do not hash to its name (changed)"}};
    } else if (size == 0) {
        std::uint8_t none = 0;
        auto n = read_sealed_blob(&keys, *h, sha256, stored_size, 0, &none, 0, raw);
        if (!n) return {in_place_error, n.error()};
    }
    sealed.clear();
    if (!sealer.finish(sealed) || !out(sealed)) return io();
    return {};
}

}  // namespace samband::store
