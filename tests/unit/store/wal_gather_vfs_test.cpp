// The WAL-gathering VFS (store/wal_gather_vfs): a commit's frames are in the file before COMMIT
// returns and before any reader can see it; a failed write fails the commit; it gathers.
#include "store/wal_gather_vfs.hpp"

#include "core/ids.hpp"

#include <sqlite3.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

namespace samband::store {
namespace {

namespace fs = std::filesystem;

// A connection of the test's: through `vfs` (null: the default VFS).
class conn {
public:
    conn(const fs::path& path, const char* vfs) {
        int rc =
            sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
        if (rc != SQLITE_OK) throw std::runtime_error(sqlite3_errstr(rc));
        sqlite3_extended_result_codes(db_, 1);
        exec("PRAGMA busy_timeout = 10000");
    }
    ~conn() { sqlite3_close(db_); }
    conn(const conn&) = delete;
    conn& operator=(const conn&) = delete;
    // The statement's extended result code (SQLITE_OK when it ran to the end).
    int exec(const std::string& sql) {
        return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    }
    sqlite3* raw() const { return db_; }

private:
    sqlite3* db_ = nullptr;
};

// Row `id`'s payload (10,000 bytes: three pages' worth), different for every row.
std::string payload(std::int64_t id, std::size_t size = 10000) {
    std::string s(size, ' ');
    for (std::size_t i = 0; i < s.size(); ++i)
        s[i] = static_cast<char>('a' + (static_cast<std::size_t>(id) * 7 + i) % 26);
    return s;
}

// Inserts rows [first, first + n) in one transaction; its COMMIT's result code.
int insert_rows(conn& c, std::int64_t first, int n, std::size_t size = 10000) {
    if (int rc = c.exec("BEGIN IMMEDIATE")) return rc;
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(c.raw(), "INSERT INTO t(id, v) VALUES(?, ?)", -1, &q, nullptr);
    int rc = SQLITE_OK;
    for (std::int64_t id = first; id < first + n && rc == SQLITE_OK; ++id) {
        std::string v = payload(id, size);
        sqlite3_bind_int64(q, 1, id);
        sqlite3_bind_text(q, 2, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
        rc = sqlite3_step(q) == SQLITE_DONE ? SQLITE_OK : sqlite3_extended_errcode(c.raw());
        sqlite3_reset(q);
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_OK) {
        c.exec("ROLLBACK");
        return rc;
    }
    return c.exec("COMMIT");
}

class wal_gather_vfs_test : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("samband-walvfs-" + core::uuid_v7());
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    // The writer's connection through the VFS, as the store opens it.
    std::unique_ptr<conn> writer() {
        auto c = std::make_unique<conn>(dir_ / "t.db", vfs_.name());
        EXPECT_EQ(c->exec("PRAGMA journal_mode = WAL"), SQLITE_OK);
        EXPECT_EQ(c->exec("PRAGMA synchronous = NORMAL"), SQLITE_OK);
        EXPECT_EQ(c->exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)"),
                  SQLITE_OK);
        return c;
    }
    fs::path dir_;
    wal_gather_vfs vfs_;
};

// A reader on another connection (the default VFS, as the store's readers) reads every row the
// writer has committed, whole, while the writer keeps committing: the frames a commit names are
// in the file before readers can see the commit. The WAL is checkpointed and starts over on the
// way (wal_autocheckpoint), so stale frames of an earlier round would show as wrong bytes.
TEST_F(wal_gather_vfs_test, a_reader_reads_every_committed_row_whole_while_the_writer_commits) {
    auto w = writer();
    ASSERT_EQ(w->exec("PRAGMA wal_autocheckpoint = 300"), SQLITE_OK);
    constexpr int commits = 150, rows = 20;
    std::atomic<std::int64_t> committed{0};  // rows [0, committed) are committed
    std::atomic<bool> done{false};
    std::atomic<int> checked{0};
    std::string failure;
    std::thread reader([&] {
        conn r(dir_ / "t.db", nullptr);
        sqlite3_stmt* q = nullptr;
        sqlite3_prepare_v2(r.raw(), "SELECT id, v FROM t WHERE id >= ? ORDER BY id", -1, &q,
                           nullptr);
        std::int64_t from = 0;  // rows below were read whole already
        while (failure.empty()) {
            bool last = done.load();
            std::int64_t known = committed.load();  // before the read: it must see these
            r.exec("BEGIN");
            sqlite3_bind_int64(q, 1, std::max<std::int64_t>(from - 5, 0));
            std::int64_t seen = 0;
            int rc;
            while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
                std::int64_t id = sqlite3_column_int64(q, 0);
                const char* v = reinterpret_cast<const char*>(sqlite3_column_text(q, 1));
                std::string got(v ? v : "", static_cast<std::size_t>(sqlite3_column_bytes(q, 1)));
                if (got != payload(id)) {
                    failure = "row " + std::to_string(id) + " read back different";
                    break;
                }
                seen = id + 1;
                ++checked;
            }
            if (rc != SQLITE_DONE && failure.empty())
                failure = std::string("read failed: ") + sqlite3_errmsg(r.raw());
            sqlite3_reset(q);
            r.exec("COMMIT");
            if (failure.empty() && seen < known)
                failure = "committed rows up to " + std::to_string(known) + ", read " +
                          std::to_string(seen);
            from = seen;
            if (last) break;
        }
        sqlite3_finalize(q);
    });
    int rc = SQLITE_OK;
    for (int i = 0; i < commits && rc == SQLITE_OK; ++i) {
        rc = insert_rows(*w, std::int64_t{i} * rows, rows);
        if (rc == SQLITE_OK) committed.store(std::int64_t{i + 1} * rows);
        if (i % 10 == 0) std::this_thread::yield();
    }
    done.store(true);
    reader.join();
    ASSERT_EQ(rc, SQLITE_OK) << sqlite3_errstr(rc);
    EXPECT_EQ(failure, "");
    EXPECT_GE(checked.load(), commits * rows);
    auto s = vfs_.stats();
    EXPECT_GT(s.flushes, 0u);
    // About 8 pages a row: 2 writes a frame, gathered into a few writes a commit.
    EXPECT_GT(s.gathered, 20 * s.flushes) << "the WAL's writes are not gathered";
}

// When COMMIT returns, every frame of the commit is in the file (the store's syncer then syncs
// the file through a descriptor of its own): the WAL holds as many bytes as its frames need.
TEST_F(wal_gather_vfs_test, every_frame_of_a_commit_is_in_the_file_when_commit_returns) {
    auto w = writer();
    ASSERT_EQ(w->exec("PRAGMA wal_autocheckpoint = 0"), SQLITE_OK);  // the WAL only grows
    int frames = 0;
    sqlite3_wal_hook(
        w->raw(),
        [](void* p, sqlite3*, const char*, int n) {
            *static_cast<int*>(p) = n;
            return SQLITE_OK;
        },
        &frames);
    for (int i = 0; i < 20; ++i) {
        ASSERT_EQ(insert_rows(*w, std::int64_t{i} * 7, 7), SQLITE_OK);
        ASSERT_GT(frames, 0);
        auto need = 32 + static_cast<std::uintmax_t>(frames) * (4096 + 24);
        EXPECT_GE(fs::file_size(dir_ / "t.db-wal"), need) << "commit " << i;
        EXPECT_EQ(vfs_.buffered(), 0u) << "commit " << i;
    }
}

// Writes as the default VFS would, but fails a write that holds a commit frame (its header's
// bytes 4-7, the database size, are not zero; 4 KB pages).
int fail_commit_frames(sqlite3_file* f, const void* data, int n, sqlite3_int64 off) {
    constexpr sqlite3_int64 frame = 4096 + 24;
    const auto* b = static_cast<const unsigned char*>(data);
    sqlite3_int64 at = off <= 32 ? 32 : 32 + (off - 32 + frame - 1) / frame * frame;
    for (; at + 24 <= off + n; at += frame) {
        const unsigned char* h = b + (at - off);
        if (h[4] | h[5] | h[6] | h[7]) return SQLITE_IOERR_WRITE;
    }
    return f->pMethods->xWrite(f, data, n, off);
}

// A failed write of the frames of a commit fails that COMMIT with the write's error, wherever the
// commit frame falls in the buffer (commits of 25 to 40 pages: the buffer holds 31 frames), and
// then every later commit: the store then stops (a fatal I/O error). Readers never see it.
TEST_F(wal_gather_vfs_test, a_failed_write_of_a_commits_frames_fails_that_commit_and_the_next) {
    for (int rows = 25; rows <= 40; ++rows) {
        SCOPED_TRACE("a commit of " + std::to_string(rows) + " rows of 3,000 bytes");
        fs::path dir = dir_ / std::to_string(rows);
        fs::create_directories(dir);
        wal_gather_vfs vfs;
        auto w = std::make_unique<conn>(dir / "t.db", vfs.name());
        ASSERT_EQ(w->exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE "
                          "t(id INTEGER PRIMARY KEY, v TEXT)"),
                  SQLITE_OK);
        ASSERT_EQ(insert_rows(*w, 0, 5, 3000), SQLITE_OK);
        vfs.set_flush_write(&fail_commit_frames);
        EXPECT_EQ(insert_rows(*w, 5, rows, 3000), SQLITE_IOERR_WRITE);
        vfs.set_flush_write(nullptr);
        int rc = insert_rows(*w, 100, 1, 3000);
        EXPECT_EQ(rc & 0xff, SQLITE_IOERR) << "after a failed write: " << sqlite3_errstr(rc);
        conn r(dir / "t.db", nullptr);
        sqlite3_stmt* q = nullptr;
        sqlite3_prepare_v2(r.raw(), "SELECT COUNT(*) FROM t", -1, &q, nullptr);
        ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
        EXPECT_EQ(sqlite3_column_int64(q, 0), 5) << "only the first commit is visible";
        sqlite3_finalize(q);
    }
}

// The VFS is registered under its name while it lives, and found again by it.
TEST(wal_gather_vfs, is_registered_while_it_lives) {
    std::string name;
    {
        wal_gather_vfs v;
        name = v.name();
        EXPECT_EQ(wal_gather_vfs::of(sqlite3_vfs_find(v.name())), &v);
        EXPECT_EQ(wal_gather_vfs::of(sqlite3_vfs_find(nullptr)), nullptr) << "not the default";
    }
    EXPECT_EQ(sqlite3_vfs_find(name.c_str()), nullptr);
}

}  // namespace
}  // namespace samband::store
