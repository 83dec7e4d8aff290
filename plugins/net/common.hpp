// Shared pieces of the plugin-side HTTP client: the call outcome, the injectable clock, the log
// hook.
#pragma once

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace samband::net {

// Wall clock used for JWT times (iat/nbf/exp), token expiry and Retry-After dates. Injectable so
// tests can move time; network deadlines always use std::chrono::steady_clock.
using wall_clock_fn = std::function<std::chrono::system_clock::time_point()>;

inline wall_clock_fn system_clock_fn() {
    return [] { return std::chrono::system_clock::now(); };
}

enum class log_level { debug, info, warning, error };

// Log hook (the plugin forwards it to the host's log). Never receives keys, tokens or proofs.
using log_fn = std::function<void(log_level, std::string_view)>;

// What the caller should do with a failed call: try again later, or give up (dead-letter).
enum class failure_kind { retry, permanent };

// A failed call. `http_status` is 0 when no HTTP answer arrived (timeout, refused, dropped, TLS).
struct failure {
    failure_kind kind = failure_kind::retry;
    int http_status = 0;
    // From Retry-After (seconds or HTTP date), 0 when the server gave none.
    std::chrono::seconds retry_after{0};
    // The server's error text (ErrorMessage.error + validationErrors, or OAuth error_description)
    // or a transport description. Never contains key material, tokens or proofs.
    std::string message;
};

// ok / retry / permanent: has_value() is ok, otherwise error().kind.
template <class T>
using result = boost::system::result<T, failure>;

// Lets result<T>::value() throw when called on a failure.
[[noreturn]] void throw_exception_from_error(failure const& f, boost::source_location const& loc);

inline failure retry_failure(std::string message, int http_status = 0) {
    return failure{failure_kind::retry, http_status, std::chrono::seconds{0}, std::move(message)};
}
inline failure permanent_failure(std::string message, int http_status = 0) {
    return failure{failure_kind::permanent, http_status, std::chrono::seconds{0},
                   std::move(message)};
}

}  // namespace samband::net
