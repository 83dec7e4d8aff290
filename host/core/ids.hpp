// Identifiers and clocks the host mints: UUIDv7 event ids, SHA-256 hex, unix milliseconds.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace samband::core {

// Milliseconds since the Unix epoch (system clock).
std::int64_t now_ms() noexcept;
// A time-ordered UUIDv7 string (RFC 9562), e.g. "0192f7c8-1a2b-7c3d-8e4f-0123456789ab".
std::string uuid_v7();
// Lowercase hex SHA-256 of `data` (empty only when OpenSSL cannot allocate: never equal to a
// digest).
std::string sha256_hex(std::string_view data);
// The same of the parts one after another (their concatenation, without copying it).
std::string sha256_hex(std::initializer_list<std::string_view> parts);
// Standard base64 (RFC 4648) of bytes, and back; decode fails (nullopt) on malformed input.
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);
// ISO-8601 UTC with milliseconds, e.g. "2026-11-24T10:15:00.123Z".
std::string iso8601_ms(std::int64_t unix_ms);

}  // namespace samband::core

namespace samband::core {
// SHA-256 hex and size of a file, read in 64 KB chunks. Error text names the file.
struct file_digest {
    std::string sha256;
    std::uint64_t size = 0;
};
bool sha256_file(const std::string& path, file_digest& out, std::string& error);
}  // namespace samband::core
