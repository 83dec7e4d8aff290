// AES-256-GCM sealing of stored records under named keys (issue 15 item 7: encryption at rest).
#pragma once

#include <boost/system/result.hpp>

#include <array>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

namespace samband::store {

// The keys records are sealed with: one current key seals, every key opens what it sealed (so a
// key rotation can run while records under the old key are still read). A sealed record is
//   "SBX1" | key id length (1 byte) | key id | nonce (12 random bytes) | ciphertext | tag (16)
// and its additional data (the record's kind and id, e.g. "payload:<event id>") is authenticated,
// so a record moved to another row, a flipped byte or a wrong key is an error, never garbage.
// THREAD: const members are safe from any thread once built.
class keyring {
public:
    // Adds a key. `material` is 32 bytes as 64 hex digits or as base64 (surrounding whitespace is
    // ignored). Throws std::invalid_argument naming the key id (never the material) when the id is
    // empty or longer than 64 bytes or the material is not 32 bytes. The first key added is
    // current until set_current.
    void add(const std::string& id, std::string_view material);
    // Throws std::invalid_argument naming the id when no such key was added.
    void set_current(const std::string& id);
    const std::string& current() const { return current_; }
    bool empty() const { return keys_.empty(); }
    bool has(std::string_view id) const { return keys_.count(std::string(id)) > 0; }

    // Seals under the current key with a fresh random nonce. Throws std::logic_error when the
    // keyring is empty and std::runtime_error when OpenSSL fails (no random bytes).
    std::string seal(std::string_view plaintext, std::string_view aad) const;
    // Opens a sealed record; the error names the key id when it is not configured, or says that
    // authentication failed (changed bytes, another record's data, a wrong key).
    boost::system::result<std::string, std::string> open(std::string_view sealed,
                                                         std::string_view aad) const;

    static bool is_sealed(std::string_view record);
    // The 32 key bytes of `id`, null when not configured (for store/blob_seal's chunked sealing).
    const std::array<unsigned char, 32>* material(std::string_view id) const {
        auto it = keys_.find(std::string(id));
        return it == keys_.end() ? nullptr : &it->second;
    }
    // The key id a sealed record names ("" when it is not a well-formed sealed record).
    static std::string key_id_of(std::string_view record);

private:
    std::map<std::string, std::array<unsigned char, 32>> keys_;
    std::string current_;
};

// A stored column that cannot be opened (names the record and why).
class sealed_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A TEXT column's value for `plain`: sealed under `keys`' current key (a prefix, then base64), or
// `plain` as it is when `keys` is null (encryption off).
std::string seal_column(const keyring* keys, std::string_view plain, std::string_view aad);
// The plain text of a stored column: as stored when it is not sealed (written before encryption
// was on), else opened. Throws sealed_failure naming `aad` (the record) and the key id.
std::string open_column(const keyring* keys, std::string stored, std::string_view aad);
// True when a stored column is sealed under the key `key_id`.
bool column_sealed_under(std::string_view stored, std::string_view key_id);

}  // namespace samband::store
