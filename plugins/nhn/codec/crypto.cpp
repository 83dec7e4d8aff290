#include "nhn/codec/crypto.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace samband::nhn {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

std::string to_hex(const unsigned char* p, std::size_t n) {
    std::string out(n * 2, '0');
    for (std::size_t i = 0; i < n; ++i) {
        out[2 * i] = hex_digits[p[i] >> 4];
        out[2 * i + 1] = hex_digits[p[i] & 0xf];
    }
    return out;
}

std::array<unsigned char, 32> sha256(const void* data, std::size_t n) {
    std::array<unsigned char, 32> md{};
    unsigned int len = 0;
    if (EVP_Digest(data, n, md.data(), &len, EVP_sha256(), nullptr) != 1 || len != 32)
        throw std::runtime_error("nhn codec: OpenSSL SHA-256 failed");
    return md;
}

std::string format_uuid(std::array<unsigned char, 16> b) {
    std::string h = to_hex(b.data(), b.size());
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
           "-" + h.substr(20, 12);
}

// 0-63 for the base64 alphabet, 64 for '=', 65 for XML whitespace, 255 otherwise.
constexpr std::array<unsigned char, 256> make_table() {
    std::array<unsigned char, 256> t{};
    for (auto& v : t) v = 255;
    const char* alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i)
        t[static_cast<unsigned char>(alpha[i])] = static_cast<unsigned char>(i);
    t['='] = 64;
    t[' '] = t['\t'] = t['\n'] = t['\r'] = 65;
    return t;
}
constexpr auto b64_table = make_table();

}  // namespace

std::string base64_encode(std::span<const std::uint8_t> bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3), '\0');
    if (bytes.empty()) return out;
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                            static_cast<int>(bytes.size()));
    if (n < 0) throw std::runtime_error("nhn codec: OpenSSL base64 encode failed");
    out.resize(static_cast<std::size_t>(n));
    return out;
}

codec_result<std::vector<std::uint8_t>> base64_decode(std::string_view text,
                                                      std::size_t max_decoded) {
    // Compact (drop whitespace) and check the alphabet and padding ourselves: EVP_DecodeBlock
    // accepts some inputs it should not (and reports padding as zero bytes).
    std::string compact;
    compact.reserve(text.size());
    std::size_t pad = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        unsigned char v = b64_table[static_cast<unsigned char>(text[i])];
        if (v == 65) continue;
        if (v == 255)
            return make_error(codec_errc::bad_base64,
                              "character not allowed in base64 at offset " + std::to_string(i));
        if (v == 64) {
            ++pad;
        } else if (pad > 0) {
            return make_error(codec_errc::bad_base64,
                              "base64 data after '=' padding at offset " + std::to_string(i));
        }
        compact.push_back(text[i]);
    }
    if (compact.size() % 4 != 0)
        return make_error(codec_errc::bad_base64, "base64 length " +
                                                      std::to_string(compact.size()) +
                                                      " is not a multiple of 4 (truncated?)");
    if (pad > 2) return make_error(codec_errc::bad_base64, "more than two '=' padding characters");
    std::size_t decoded = compact.size() / 4 * 3 - pad;
    if (decoded > max_decoded)
        return make_error(
            codec_errc::too_large,
            "decoded attachment of " + std::to_string(decoded) + " bytes is over the limit");
    std::vector<std::uint8_t> out(compact.size() / 4 * 3);
    if (!compact.empty()) {
        int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(compact.data()),
                                static_cast<int>(compact.size()));
        if (n < 0) return make_error(codec_errc::bad_base64, "base64 decoding failed");
    }
    out.resize(decoded);
    return out;
}

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
    auto md = sha256(bytes.data(), bytes.size());
    return to_hex(md.data(), md.size());
}

std::string sha256_hex(std::string_view bytes) {
    auto md = sha256(bytes.data(), bytes.size());
    return to_hex(md.data(), md.size());
}

std::string derive_uuid(std::string_view seed) {
    auto md = sha256(seed.data(), seed.size());
    std::array<unsigned char, 16> b{};
    for (std::size_t i = 0; i < 16; ++i) b[i] = md[i];
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x80);  // version 8 (custom, name-based)
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
    return format_uuid(b);
}

std::string random_uuid() {
    std::array<unsigned char, 16> b{};
    if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1)
        throw std::runtime_error("nhn codec: OpenSSL RAND_bytes failed");
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
    return format_uuid(b);
}

}  // namespace samband::nhn
