// Base64, SHA-256 and name-based ids for the NHN codec, on OpenSSL EVP.
#pragma once

#include "nhn/codec/error.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace samband::nhn {

// Standard base64 (RFC 4648, with padding, no line breaks).
std::string base64_encode(std::span<const std::uint8_t> bytes);

// Decodes base64 as xs:base64Binary allows it: XML whitespace anywhere is skipped; anything else
// outside the alphabet, a wrong length or misplaced padding is refused (bad_base64, with the
// offset). `max_decoded` bounds the output.
codec_result<std::vector<std::uint8_t>> base64_decode(std::string_view text,
                                                      std::size_t max_decoded = SIZE_MAX);

// Lower-case hex SHA-256.
std::string sha256_hex(std::span<const std::uint8_t> bytes);
std::string sha256_hex(std::string_view bytes);

// A UUID-formatted id derived from `seed` (SHA-256, version/variant bits set as for a v8 UUID).
// The same seed always gives the same id: use it for a MsgId that must stay the same across the
// retries of one delivery (seed = the delivery id) or an Apprec id (seed = "apprec:" + MsgId).
std::string derive_uuid(std::string_view seed);

// A random UUID v4 (OpenSSL RAND_bytes).
std::string random_uuid();

}  // namespace samband::nhn
