// The admin API's routes and handlers, apart from the transport: who may call what, and the
// answers.
#pragma once

#include "admin/backend.hpp"

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace samband::admin {

namespace http = boost::beast::http;

// One answer: status, JSON (or Prometheus text) body.
struct reply {
    http::status status = http::status::ok;
    std::string body;
    std::string content_type = "application/json";
};

// {"error":{"code":…,"message":…}} with the status.
reply error_reply(http::status st, std::string_view code, std::string_view message);

// Reads operator tokens ("name:token" lines; '#' comments). Throws naming the file.
std::map<std::string, std::string> read_tokens(const std::string& path);

class api {
public:
    // Throws std::runtime_error naming the token file when it cannot be read or is malformed.
    api(backend& b, const std::string& token_file);
    ~api();
    api(const api&) = delete;
    api& operator=(const api&) = delete;

    // Decides on the request line and header alone, before any byte of the body is read:
    // nullopt = read the body and call handle(); otherwise the refusal to send (and close).
    std::optional<reply> admit(const http::request_header<>& h) const;

    // Answers a complete request. `done` is called exactly once, possibly later on another
    // thread (a submit answers after the store's commit). THREAD: any; never blocks on a commit.
    void handle(http::request<http::string_body> req, std::function<void(reply)> done);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace samband::admin
