// Turns HTTP answers into ok / retry / permanent (Retry-After, server error text).
#pragma once

#include "net/common.hpp"
#include "net/retry_after.hpp"  // parse_retry_after (in samband_http)

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace samband::net {

// The readable error text of an error body: EDI 2.0's ErrorMessage ("error" plus
// "validationErrors"), an OAuth error ("error: error_description"), or the start of a plain text
// body with control characters removed. At most `max_chars` characters.
std::string server_message(std::string_view body, std::size_t max_chars = 500);

// Classifies a non-2xx HTTP status: 408, 425, 429 and 5xx retry (with Retry-After honoured);
// any other status is permanent. `retry_after_header` may be empty.
failure classify_http_failure(int status, std::string_view retry_after_header,
                              std::string_view body, std::chrono::system_clock::time_point now);

}  // namespace samband::net
