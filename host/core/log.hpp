// Structured logging: one logfmt line per step, identifiers masked, to stderr or a file.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace samband::core {

enum class log_level { trace = 0, debug = 1, info = 2, warn = 3, error = 4 };

// Masks every run of exactly 11 digits (a fødselsnummer or D-number) as its first 6 digits
// followed by "*****", so logs keep the birth date's shape but never the person.
std::string mask_identifiers(std::string_view text);

// "key=value" pairs of one log line; values are quoted and escaped as logfmt needs.
using log_field = std::pair<std::string_view, std::string_view>;

// A logger writing logfmt lines: `ts=... level=info step=deliver event=... delivery=... msg="..."`.
// Every value is passed through mask_identifiers. THREAD: safe from any thread.
class logger {
public:
    explicit logger(log_level min = log_level::info, bool json = false);
    void set_level(log_level min) { min_ = min; }
    // log.format: one JSON object per line (true) or logfmt.
    void set_json(bool json) { json_ = json; }
    log_level level() const { return min_; }
    bool enabled(log_level l) const { return static_cast<int>(l) >= static_cast<int>(min_); }

    void log(log_level l, std::string_view step, std::string_view msg,
             std::initializer_list<log_field> fields = {});
    void info(std::string_view step, std::string_view msg,
              std::initializer_list<log_field> f = {}) {
        log(log_level::info, step, msg, f);
    }
    void warn(std::string_view step, std::string_view msg,
              std::initializer_list<log_field> f = {}) {
        log(log_level::warn, step, msg, f);
    }
    void error(std::string_view step, std::string_view msg,
               std::initializer_list<log_field> f = {}) {
        log(log_level::error, step, msg, f);
    }
    void debug(std::string_view step, std::string_view msg,
               std::initializer_list<log_field> f = {}) {
        log(log_level::debug, step, msg, f);
    }

    // Where lines go (default stderr). Not owned.
    void set_sink(std::FILE* f) { sink_ = f; }

private:
    log_level min_;
    std::atomic<bool> json_;
    std::FILE* sink_;
    std::mutex mu_;
};

std::string_view to_string(log_level l) noexcept;
bool parse_log_level(std::string_view s, log_level& out) noexcept;

}  // namespace samband::core
