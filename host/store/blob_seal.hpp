// Chunked AES-256-GCM sealing of attachment bytes at rest (issue 15 item 7), read back by range.
#pragma once

#include "store/sealed.hpp"

#include <boost/system/result.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace samband::store {

// A sealed blob is a header, then the plaintext in chunks of `chunk` bytes (the last one shorter,
// an empty blob one empty chunk), each sealed on its own and followed by its 16-byte tag:
//   magic "\x89SBLOB\r\n" | version 1 | key id length (1 byte) | key id | nonce prefix (8 random
//   bytes) | chunk size (u32 BE) | plaintext size (u64 BE)
// Chunk i's nonce is the prefix then i (u32 BE); its additional data is the whole header, the
// blob's sha256 (its name, computed over the plaintext), i (u64 BE) and a final-chunk flag, so a
// chunk moved, dropped, repeated, a blob truncated or renamed, a header changed or a wrong key
// fails authentication. Memory stays at one chunk whatever the blob's size.
constexpr std::size_t kBlobChunk = 64 * 1024;
constexpr std::size_t kBlobTag = 16;
constexpr std::string_view kBlobMagic = "\x89SBLOB\r\n";
// Bytes enough to parse any header (a longer read is fine).
constexpr std::size_t kBlobHeaderMax = 8 + 1 + 1 + 64 + 8 + 4 + 8;

struct blob_header {
    std::string key_id;
    std::array<unsigned char, 8> prefix{};
    std::uint32_t chunk = 0;
    std::uint64_t size = 0;  // plaintext bytes
    std::string raw;         // the header as stored
    std::uint64_t chunks() const { return size == 0 ? 1 : (size + chunk - 1) / chunk; }
    std::uint64_t sealed_size() const { return raw.size() + chunks() * kBlobTag + size; }
};

// The header of a sealed blob from its first bytes; nullopt when they are not one (a plain blob,
// written before encryption was turned on).
std::optional<blob_header> parse_blob_header(std::string_view first);

// Seals a blob as its plaintext arrives, one chunk in memory at a time. THREAD: one thread.
class blob_sealer {
public:
    // Under `keys`' current key; `size` is the plaintext's length (it is in the header). Throws
    // std::logic_error when the keyring is empty.
    blob_sealer(const keyring& keys, std::string_view sha256, std::uint64_t size,
                std::size_t chunk = kBlobChunk);
    const std::string& header() const { return h_.raw; }
    // Appends the chunks completed by `plain` (sealed, with their tags) to `out`. False when more
    // bytes came than the header's size.
    bool update(std::string_view plain, std::string& out);
    // Seals the last chunk into `out`; false when fewer bytes came than the header's size.
    bool finish(std::string& out);

private:
    void seal_chunk(std::string& out, bool final);

    const std::array<unsigned char, 32>* key_;
    std::string sha_;
    blob_header h_;
    std::string pending_;
    std::uint64_t index_ = 0, fed_ = 0;
};

// Why a sealed blob did not read: its stored bytes could not be read (io) or did not open (a
// changed byte, a wrong or missing key: auth). `why` names the blob by sha256, never a file name.
struct blob_fault {
    bool auth = false;
    std::string why;
};

// Reads stored bytes [offset, offset + length) into `into`; false on an I/O error (a short read
// at the end is not an error: it is seen as a truncated blob).
using blob_raw_reader =
    std::function<bool(std::uint64_t offset, std::size_t length, std::string& into)>;

// Plaintext bytes [offset, offset + capacity) of the sealed blob `h` named `sha256` whose stored
// length is `stored_size`: the number copied into `out`, 0 at the end. Opens only the chunks the
// range touches. `keys` null = encryption off (then a sealed blob is an auth fault).
boost::system::result<std::size_t, blob_fault> read_sealed_blob(
    const keyring* keys, const blob_header& h, std::string_view sha256, std::uint64_t stored_size,
    std::uint64_t offset, std::uint8_t* out, std::size_t capacity, const blob_raw_reader& raw);

// Re-seals the stored blob named `sha256` (plain, or sealed under any key of `keys`) under the
// current key, one chunk in memory: `raw` reads the stored bytes (`stored_size` of them), `out`
// takes the new blob in pieces (false: stop, an io fault). A plain blob whose bytes do not hash to
// its name is an auth fault (it was changed); so is a sealed one that does not open.
boost::system::result<void, blob_fault> reseal_blob(
    const keyring& keys, std::string_view sha256, std::uint64_t stored_size,
    const blob_raw_reader& raw, const std::function<bool(std::string_view)>& out);

}  // namespace samband::store
