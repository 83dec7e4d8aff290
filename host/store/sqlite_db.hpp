// A thin RAII layer over the SQLite C API: a connection with cached prepared statements.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

namespace samband::store {

// An SQLite failure with its extended result code.
class sqlite_error : public std::runtime_error {
public:
    sqlite_error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

// A prepared statement; reset after use so the connection can reuse it.
class stmt {
public:
    stmt(sqlite3* db, const std::string& sql) : db_(db) {
        if (sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()),
                               SQLITE_PREPARE_PERSISTENT, &s_, nullptr) != SQLITE_OK) {
            throw sqlite_error(
                sqlite3_extended_errcode(db),
                std::string("sqlite prepare: ") + sqlite3_errmsg(db) + " in: " + sql);
        }
    }
    ~stmt() { sqlite3_finalize(s_); }
    stmt(const stmt&) = delete;
    stmt& operator=(const stmt&) = delete;

    stmt& bind(int i, std::int64_t v) {
        check(sqlite3_bind_int64(s_, i, v));
        return *this;
    }
    stmt& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
    stmt& bind(int i, std::string_view v) {
        check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
        return *this;
    }
    stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
    // Binds without a copy: `v` must outlive the statement's next exec() or reset().
    stmt& bind_static(int i, std::string_view v) {
        check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC));
        return *this;
    }
    stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }

    // Steps once; true when a row is available.
    bool step() {
        int rc = sqlite3_step(s_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        int ext = sqlite3_extended_errcode(db_);
        std::string msg = sqlite3_errmsg(db_);
        sqlite3_reset(s_);
        throw sqlite_error(ext, "sqlite step: " + msg);
    }
    // Runs to completion and resets.
    void exec() {
        while (step()) {
        }
        reset();
    }
    void reset() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
    }
    std::int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
    bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
    std::string text(int col) const {
        const unsigned char* p = sqlite3_column_text(s_, col);
        int n = sqlite3_column_bytes(s_, col);
        return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n))
                 : std::string();
    }

private:
    void check(int rc) {
        if (rc != SQLITE_OK)
            throw sqlite_error(rc, std::string("sqlite bind: ") + sqlite3_errmsg(db_));
    }
    sqlite3* db_;
    sqlite3_stmt* s_ = nullptr;
};

// One connection. Not thread-safe: each thread (or a mutex) owns one.
class db {
public:
    // `vfs`: a registered VFS's name (null: the default one).
    explicit db(const std::string& path, bool read_only = false, const char* vfs = nullptr) {
        int rc = sqlite3_open_v2(
            path.c_str(), &db_,
            (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX,
            vfs);
        if (rc != SQLITE_OK) {
            std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            db_ = nullptr;
            throw sqlite_error(rc, "cannot open store " + path + ": " + msg);
        }
        sqlite3_extended_result_codes(db_, 1);
    }
    db(db&& o) noexcept
        : db_(o.db_), cache_(std::move(o.cache_)), by_address_(std::move(o.by_address_)) {
        o.db_ = nullptr;
    }
    db& operator=(db&&) = delete;
    ~db() {
        by_address_.clear();
        cache_.clear();
        if (db_) sqlite3_close(db_);
    }

    void exec(const std::string& sql) {
        char* err = nullptr;
        int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
        if (rc != SQLITE_OK) {
            std::string msg = err ? err : "?";
            sqlite3_free(err);
            throw sqlite_error(sqlite3_extended_errcode(db_), "sqlite: " + msg);
        }
    }
    // A cached prepared statement for `sql` (reset before returning).
    stmt& prepare(const std::string& sql) {
        auto it = cache_.find(sql);
        if (it == cache_.end()) it = cache_.emplace(sql, std::make_unique<stmt>(db_, sql)).first;
        return *it->second;
    }
    // The same for a string literal (or any text that lives as long as the connection): found
    // by its address, without building and hashing a std::string of the SQL on every call (the
    // writer prepares about a dozen statements per delivery).
    template <std::size_t N>
    stmt& prepare(const char (&sql)[N]) {
        auto it = by_address_.find(sql);
        if (it != by_address_.end()) return *it->second;
        stmt& s = prepare(std::string(sql, N - 1));
        by_address_.emplace(sql, &s);
        return s;
    }
    // Resets every cached statement (after an error left one mid-step).
    void reset_all() {
        for (auto& [sql, st] : cache_) st->reset();
    }
    std::int64_t last_rowid() const { return sqlite3_last_insert_rowid(db_); }
    int changes() const { return sqlite3_changes(db_); }
    sqlite3* raw() const { return db_; }

private:
    sqlite3* db_ = nullptr;
    std::unordered_map<std::string, std::unique_ptr<stmt>> cache_;
    std::unordered_map<const char*, stmt*> by_address_;  // string literals → cache_ entries
};

}  // namespace samband::store
