// An SQLite VFS that writes the WAL in a few large writes instead of two per frame (issue #10).
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace samband::store {

// A VFS over the default one, registered under a name of its own for as long as it lives, for one
// connection (the store's writer: open it with name()). Every file passes through, except that
// the WAL's contiguous writes (SQLite writes each frame as a 24-byte header and then its page) are
// gathered in a buffer and written with one write. The buffer is written before anything that
// could observe the file: a read, sync, truncate, size, file control or close of the WAL, a write
// elsewhere in it, the database file's shared-memory barrier and locks (SQLite's barrier comes
// before it publishes a commit to readers) and, so that a commit's write error fails that COMMIT,
// the page of any frame that marks a commit. A failed write is returned there and by every later
// operation on the WAL (the store treats it as fatal).
//
// One instance per store, not one process-wide registration: the barrier on the database file
// must find the WAL of the same connection, and the instance holds that link; SQLite's VFS list
// is the only shared state, and the name is unique while the instance lives.
class wal_gather_vfs {
public:
    // Writes `n` bytes at `off` to the underlying file (test hook: the gathered writes only).
    using write_fn = int (*)(sqlite3_file* f, const void* data, int n, sqlite3_int64 off);

    struct counters {
        std::uint64_t gathered = 0;  // WAL writes that went into the buffer
        std::uint64_t flushes = 0;   // writes of the buffer
        std::uint64_t through = 0;   // WAL writes written as they came (not contiguous, too big)
    };

    // `buffer_bytes`: at most 128 KB - 1, the most the default VFS writes at once.
    explicit wal_gather_vfs(std::size_t buffer_bytes = 128 * 1024 - 1);
    ~wal_gather_vfs();
    wal_gather_vfs(const wal_gather_vfs&) = delete;
    wal_gather_vfs& operator=(const wal_gather_vfs&) = delete;

    const char* name() const { return name_.c_str(); }
    counters stats() const;
    // The bytes of WAL written by SQLite and not yet written to the file.
    std::size_t buffered() const;
    // Test hook: the buffer is written with `f` instead of the underlying file's xWrite.
    void set_flush_write(write_fn f) { flush_write_.store(f); }
    // The instance behind a registered VFS, or null when `v` is not one of these.
    static wal_gather_vfs* of(sqlite3_vfs* v);

    struct wal_file;   // the WAL's buffer (implementation)
    struct any_file;   // every file opened through this VFS (implementation)
    struct callbacks;  // the sqlite3_vfs and sqlite3_io_methods functions (implementation)

private:
    sqlite3_vfs vfs_{};
    sqlite3_vfs* base_ = nullptr;
    std::string name_;
    std::size_t buffer_bytes_;
    std::vector<std::unique_ptr<wal_file>> wals_;  // open WAL files (the connection's thread)
    std::atomic<write_fn> flush_write_{nullptr};
    std::atomic<std::uint64_t> gathered_{0}, flushes_{0}, through_{0};
    std::atomic<std::size_t> buffered_{0};
};

}  // namespace samband::store
