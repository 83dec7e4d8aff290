// Reads an HTTP Retry-After value (RFC 9110 §10.2.3): delta-seconds or an HTTP date.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace samband::net {

// Parses a Retry-After value: delta-seconds, or an HTTP date (IMF-fixdate, RFC 850, asctime)
// measured against `now`. A date in the past gives 0 s. Capped at one day. nullopt if unreadable.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now);

}  // namespace samband::net
