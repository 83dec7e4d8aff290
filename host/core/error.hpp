// The host's one error model: a small closed kind and a message; the admin API maps kinds to HTTP.
#pragma once

#include <boost/system/errc.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <stdexcept>
#include <string>
#include <string_view>

namespace samband::core {

enum class error_kind {
    invalid,    // the request or input is wrong; repeating it fails again
    not_found,  // what it names does not exist
    conflict,   // not allowed in the current state (e.g. the state machine refuses it)
    retry,      // transient (busy store, timeout): the same request may succeed later
    io_fatal    // storage or I/O failed; the daemon cannot go on safely
};

struct error {
    error_kind kind = error_kind::io_fatal;
    std::string message;
};

template <class T>
using result = boost::system::result<T, error>;

constexpr std::string_view to_string(error_kind k) noexcept {
    switch (k) {
        case error_kind::invalid:
            return "invalid";
        case error_kind::not_found:
            return "not_found";
        case error_kind::conflict:
            return "conflict";
        case error_kind::retry:
            return "retry";
        case error_kind::io_fatal:
            return "io_fatal";
    }
    return "io_fatal";
}

// The HTTP status the admin API answers for a kind.
constexpr int http_status(error_kind k) noexcept {
    switch (k) {
        case error_kind::invalid:
            return 400;
        case error_kind::not_found:
            return 404;
        case error_kind::conflict:
            return 409;
        case error_kind::retry:
            return 503;
        case error_kind::io_fatal:
            return 500;
    }
    return 500;
}

// A store error code as an error: busy → retry, a bad argument → invalid, else io_fatal.
inline error from_store(boost::system::error_code ec, std::string_view what) {
    namespace errc = boost::system::errc;
    error_kind k = error_kind::io_fatal;
    if (ec == errc::resource_unavailable_try_again || ec == errc::timed_out)
        k = error_kind::retry;
    else if (ec == errc::invalid_argument)
        k = error_kind::invalid;
    else if (ec == errc::no_such_file_or_directory)
        k = error_kind::not_found;
    return {k, std::string(what) + ": " + ec.message()};
}

// result<T>::value() on an error throws this (boost::system::result finds it by ADL).
[[noreturn]] inline void throw_exception_from_error(const error& e, const boost::source_location&) {
    throw std::runtime_error(std::string(to_string(e.kind)) + ": " + e.message);
}

}  // namespace samband::core
