// The admin API's routes and handlers, apart from the transport: who may call what, and the
// answers.
#pragma once

#include "admin/backend.hpp"
#include "core/log.hpp"

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace samband::admin {

namespace http = boost::beast::http;

// One answer: status, JSON (or Prometheus text) body.
struct reply {
    reply() = default;
    reply(http::status st, std::string b, std::string type = "application/json")
        : status(st), body(std::move(b)), content_type(std::move(type)) {}

    http::status status = http::status::ok;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;  // more fields (the console's CSP)
};

// {"error":{"code":…,"message":…}} with the status.
reply error_reply(http::status st, std::string_view code, std::string_view message);

struct api_options {
    std::string token_file;       // auth.hpp's format; empty = only /healthz and /readyz answer
    bool metrics_open = false;    // /metrics without a token
    core::logger* log = nullptr;  // token file changes are logged here; not owned
};

class api {
public:
    // Throws std::runtime_error naming the token file when it cannot be read or is malformed.
    api(backend& b, api_options opts);
    ~api();
    api(const api&) = delete;
    api& operator=(const api&) = delete;

    // Decides on the request line and header alone, before any byte of the body is read: the
    // token and its roles against the resource. nullopt = read the body and call handle();
    // otherwise the refusal (401 no or bad token, 403 wrong role) to send before closing.
    std::optional<reply> admit(const http::request_header<>& h) const;

    // Answers a complete request. `done` is called exactly once, possibly later on another
    // thread (a submit answers after the store's commit). THREAD: any; never blocks on a commit.
    void handle(http::request<http::string_body> req, std::function<void(reply)> done);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace samband::admin
