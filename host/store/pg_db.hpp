// A thin RAII layer over libpq: a connection with cached prepared statements, binary-safe params.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace samband::store {

// A PostgreSQL failure: the SQLSTATE, and whether the connection itself is gone.
class pg_error : public std::runtime_error {
public:
    pg_error(std::string sqlstate, bool connection_lost, const std::string& what)
        : std::runtime_error(what), state_(std::move(sqlstate)), lost_(connection_lost) {}
    const std::string& sqlstate() const noexcept { return state_; }
    bool connection_lost() const noexcept { return lost_; }
    // Integrity constraint violation (class 23): the job's input, not the database.
    bool constraint() const noexcept { return state_.rfind("23", 0) == 0; }

private:
    std::string state_;
    bool lost_;
};

// Parameters of one statement: text for numbers and strings, binary for bytes.
class pg_params {
public:
    pg_params& add(std::int64_t v) {
        keep_.push_back(std::to_string(v));
        lengths_.push_back(0);
        formats_.push_back(0);
        return *this;
    }
    pg_params& add(int v) { return add(static_cast<std::int64_t>(v)); }
    pg_params& add(bool v) { return add(static_cast<std::int64_t>(v ? 1 : 0)); }
    pg_params& add(std::string_view v) {
        keep_.emplace_back(v);
        lengths_.push_back(0);
        formats_.push_back(0);
        return *this;
    }
    pg_params& add(const std::string& v) { return add(std::string_view(v)); }
    pg_params& add(const char* v) { return add(std::string_view(v)); }
    // Raw bytes (a bytea parameter), passed in binary: no escaping, NULs kept.
    pg_params& add_bytes(std::string_view v) {
        keep_.emplace_back(v);
        lengths_.push_back(static_cast<int>(v.size()));
        formats_.push_back(1);
        return *this;
    }
    int size() const { return static_cast<int>(keep_.size()); }
    // Pointers into the kept strings (valid until the next add).
    std::vector<const char*> values() const {
        std::vector<const char*> v;
        v.reserve(keep_.size());
        for (const auto& s : keep_) v.push_back(s.data());
        return v;
    }
    const int* lengths() const { return lengths_.data(); }
    const int* formats() const { return formats_.data(); }

private:
    std::vector<std::string> keep_;
    std::vector<int> lengths_;
    std::vector<int> formats_;
};

// A query result (owned; cleared on destruction).
class pg_result {
public:
    explicit pg_result(PGresult* r) : r_(r) {}
    pg_result(pg_result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    pg_result& operator=(pg_result&& o) noexcept {
        if (this != &o) {
            PQclear(r_);
            r_ = o.r_;
            o.r_ = nullptr;
        }
        return *this;
    }
    pg_result(const pg_result&) = delete;
    pg_result& operator=(const pg_result&) = delete;
    ~pg_result() { PQclear(r_); }

    PGresult* raw() const { return r_; }
    int rows() const { return PQntuples(r_); }
    bool null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
    std::string text(int row, int col) const {
        return std::string(PQgetvalue(r_, row, col),
                           static_cast<std::size_t>(PQgetlength(r_, row, col)));
    }
    std::int64_t i64(int row, int col) const {
        return null(row, col) ? 0 : std::strtoll(PQgetvalue(r_, row, col), nullptr, 10);
    }
    // A column's raw bytes (binary result format).
    std::string_view bytes(int row, int col) const {
        return {PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col))};
    }
    // Rows an UPDATE/DELETE/INSERT touched.
    std::size_t affected() const {
        const char* n = PQcmdTuples(r_);
        return n && *n ? static_cast<std::size_t>(std::strtoull(n, nullptr, 10)) : 0;
    }

private:
    PGresult* r_ = nullptr;
};

// One connection. Not thread-safe: each thread (or a mutex) owns one.
class pg_conn {
public:
    // Connects; throws pg_error naming the server's message (libpq's messages do not carry the
    // password) when the connection fails.
    explicit pg_conn(const std::string& conninfo) : c_(PQconnectdb(conninfo.c_str())) {
        if (!c_ || PQstatus(c_) != CONNECTION_OK) {
            std::string msg = c_ ? PQerrorMessage(c_) : "out of memory";
            while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
            PQfinish(c_);
            c_ = nullptr;
            throw pg_error("08001", true, "cannot connect to PostgreSQL: " + msg);
        }
        // Notices (e.g. "relation already exists, skipping") are not errors; keep them quiet.
        PQsetNoticeProcessor(
            c_, [](void*, const char*) {}, nullptr);
    }
    pg_conn(const pg_conn&) = delete;
    pg_conn& operator=(const pg_conn&) = delete;
    ~pg_conn() { PQfinish(c_); }

    bool ok() const { return c_ && PQstatus(c_) == CONNECTION_OK; }
    PGconn* raw() const { return c_; }

    // Runs one or more statements without parameters (the simple query protocol).
    void exec(const std::string& sql) {
        pg_result r(PQexec(c_, sql.c_str()));
        check(r, sql);
    }

    // Runs `sql` ($1, $2, ... placeholders) as a prepared statement, prepared once per connection.
    // result_format 1 returns every column in binary (for bytea).
    pg_result query(const std::string& sql, const pg_params& p = {}, int result_format = 0) {
        auto it = prepared_.find(sql);
        if (it == prepared_.end()) {
            std::string name = "s" + std::to_string(prepared_.size() + 1);
            pg_result r(PQprepare(c_, name.c_str(), sql.c_str(), 0, nullptr));
            check(r, sql);
            it = prepared_.emplace(sql, std::move(name)).first;
        }
        auto vals = p.values();
        pg_result r(PQexecPrepared(c_, it->second.c_str(), p.size(), vals.data(), p.lengths(),
                                   p.formats(), result_format));
        check(r, sql);
        return r;
    }

private:
    void check(const pg_result& r, const std::string& sql) const;

    PGconn* c_ = nullptr;
    std::unordered_map<std::string, std::string> prepared_;  // sql → statement name
};

inline void pg_conn::check(const pg_result& r, const std::string& sql) const {
    ExecStatusType st = r.raw() ? PQresultStatus(r.raw()) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) return;
    const char* code = r.raw() ? PQresultErrorField(r.raw(), PG_DIAG_SQLSTATE) : nullptr;
    std::string state = code ? code : "";
    std::string msg = r.raw() ? PQresultErrorMessage(r.raw()) : PQerrorMessage(c_);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    // Class 08 (connection exception) and 57P (operator intervention: the server shuts down) end
    // the session as surely as a closed socket.
    bool lost = PQstatus(c_) != CONNECTION_OK || state.rfind("08", 0) == 0 ||
                state.rfind("57P", 0) == 0 || state.empty();
    std::string first_line = sql.substr(0, sql.find('\n')).substr(0, 120);
    throw pg_error(state, lost, "postgresql: " + msg + " in: " + first_line);
}

}  // namespace samband::store
