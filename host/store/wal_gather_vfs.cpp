// The WAL-gathering VFS: see wal_gather_vfs.hpp. SQLite 3.40's wal.c, which this relies on:
// sqlite3WalFrames writes each new frame as two contiguous writes (walWriteOneFrame: header,
// then page), the commit frame last with its header's bytes 4-7 the database size (non-zero);
// then, only when a page was written twice in one transaction, it reads frames back and rewrites
// headers in place (walRewriteChecksums: reads and writes elsewhere, both written through here);
// then walIndexWriteHdr publishes the commit behind sqlite3OsShmBarrier on the database file.
#include "store/wal_gather_vfs.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <utility>

namespace samband::store {

namespace {

constexpr int kFrameHeader = 24;  // a WAL frame's header (WAL_FRAME_HDRSIZE)
// The most the unix VFS writes in one call: its seekAndWriteFd masks the size with 0x1ffff
// (asserting that it fits), so a larger write would be cut short and fail as SQLITE_FULL.
constexpr std::size_t kMaxWrite = 0x1ffff;

}  // namespace

struct wal_gather_vfs::wal_file {
    wal_file(sqlite3_file* real, std::size_t cap)
        : real(real), buf(new unsigned char[cap]), cap(cap) {}
    sqlite3_file* real;  // the default VFS's file
    std::unique_ptr<unsigned char[]> buf;
    std::size_t cap;
    sqlite3_int64 off = 0;  // where buf[0] goes in the file
    std::size_t len = 0;
    sqlite3_int64 run_end = -1;         // the end of the last write: the next one gathers there
    sqlite3_int64 commit_page_at = -1;  // the page of a commit frame whose header is buffered
    int rc = SQLITE_OK;                 // a failed write of the buffer: every later call fails
};

struct wal_gather_vfs::any_file {
    sqlite3_file base;  // SQLite's handle: base.pMethods is one of the tables below
    wal_gather_vfs* owner;
    wal_file* wal;       // the WAL's buffer; null for every other file
    sqlite3_file* real;  // the default VFS's file, right after this header
};

namespace {

constexpr std::size_t kHead = (sizeof(wal_gather_vfs::any_file) + 15) / 16 * 16;

}  // namespace

struct wal_gather_vfs::callbacks {
    static any_file* file(sqlite3_file* f) { return reinterpret_cast<any_file*>(f); }
    static sqlite3_file* real(sqlite3_file* f) { return file(f)->real; }
    static wal_gather_vfs* self(sqlite3_vfs* v) {
        return static_cast<wal_gather_vfs*>(v->pAppData);
    }
    static sqlite3_vfs* base(sqlite3_vfs* v) { return self(v)->base_; }

    // Writes the WAL's buffer; a failure sticks.
    static int flush(wal_gather_vfs* owner, wal_file* w) {
        sqlite3_file* r = w->real;
        if (w->rc != SQLITE_OK) return w->rc;
        if (w->len == 0) return SQLITE_OK;
        write_fn hook = owner->flush_write_.load();
        int rc = hook ? hook(r, w->buf.get(), static_cast<int>(w->len), w->off)
                      : r->pMethods->xWrite(r, w->buf.get(), static_cast<int>(w->len), w->off);
        owner->flushes_.fetch_add(1, std::memory_order_relaxed);
        owner->buffered_.store(0, std::memory_order_relaxed);
        w->len = 0;
        // The underlying file's own code (an I/O error or a full disk), as a direct write's.
        if (rc != SQLITE_OK)
            w->rc = ((rc & 0xff) == SQLITE_IOERR || rc == SQLITE_FULL) ? rc : SQLITE_IOERR_WRITE;
        return w->rc;
    }
    static int flush(sqlite3_file* f) {
        any_file* a = file(f);
        return a->wal ? flush(a->owner, a->wal) : SQLITE_OK;
    }
    // Every WAL of the connection (from the database file's barrier and locks).
    static int flush_wals(wal_gather_vfs* owner) {
        int rc = SQLITE_OK;
        for (auto& w : owner->wals_) {
            int r = flush(owner, w.get());
            if (rc == SQLITE_OK) rc = r;
        }
        return rc;
    }

    // ---- the WAL ----
    static int wal_close(sqlite3_file* f) {
        any_file* a = file(f);
        int rc = flush(f);
        int rc2 = a->real->pMethods ? a->real->pMethods->xClose(a->real) : SQLITE_OK;
        std::erase_if(a->owner->wals_, [w = a->wal](const auto& p) { return p.get() == w; });
        a->wal = nullptr;
        return rc != SQLITE_OK ? rc : rc2;
    }
    static int wal_read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) {
        if (int rc = flush(f)) return rc;
        return real(f)->pMethods->xRead(real(f), p, n, off);
    }
    static int wal_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
        any_file* a = file(f);
        wal_file* w = a->wal;
        if (w->rc != SQLITE_OK) return w->rc;
        // A commit frame's header: its page, next, ends the commit's frames.
        const auto* b = static_cast<const unsigned char*>(p);
        bool commit_header = n == kFrameHeader && (b[4] | b[5] | b[6] | b[7]) != 0;
        bool commit_page = off == std::exchange(w->commit_page_at, commit_header ? off + n : -1);
        bool contiguous = off == w->run_end;
        auto size = static_cast<std::size_t>(n);
        if (!contiguous || w->len + size > w->cap) {
            if (int rc = flush(a->owner, w)) return rc;
        }
        w->run_end = off + n;
        if (!contiguous || size > w->cap) {
            a->owner->through_.fetch_add(1, std::memory_order_relaxed);
            return a->real->pMethods->xWrite(a->real, p, n, off);
        }
        if (w->len == 0) w->off = off;
        std::memcpy(w->buf.get() + w->len, p, size);
        w->len += size;
        a->owner->gathered_.fetch_add(1, std::memory_order_relaxed);
        a->owner->buffered_.store(w->len, std::memory_order_relaxed);
        // The page of a commit frame: the commit's frames go to the file now, so that COMMIT
        // fails if they cannot (the barrier that follows cannot return an error).
        return commit_page ? flush(a->owner, w) : SQLITE_OK;
    }
    static int wal_truncate(sqlite3_file* f, sqlite3_int64 size) {
        if (int rc = flush(f)) return rc;
        wal_file* w = file(f)->wal;
        if (w->run_end > size) w->run_end = -1;
        return real(f)->pMethods->xTruncate(real(f), size);
    }
    static int wal_sync(sqlite3_file* f, int flags) {
        if (int rc = flush(f)) return rc;
        return real(f)->pMethods->xSync(real(f), flags);
    }
    static int wal_file_size(sqlite3_file* f, sqlite3_int64* size) {
        if (int rc = flush(f)) return rc;
        return real(f)->pMethods->xFileSize(real(f), size);
    }
    static int wal_file_control(sqlite3_file* f, int op, void* arg) {
        if (int rc = flush(f)) return rc;
        return real(f)->pMethods->xFileControl(real(f), op, arg);
    }
    static int wal_fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** pp) {
        *pp = nullptr;
        if (int rc = flush(f)) return rc;
        sqlite3_file* r = real(f);
        return r->pMethods->iVersion >= 3 ? r->pMethods->xFetch(r, off, n, pp) : SQLITE_OK;
    }

    // ---- every file: passed through ----
    static int close(sqlite3_file* f) {
        sqlite3_file* r = real(f);
        return r->pMethods ? r->pMethods->xClose(r) : SQLITE_OK;
    }
    static int read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) {
        return real(f)->pMethods->xRead(real(f), p, n, off);
    }
    static int write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
        return real(f)->pMethods->xWrite(real(f), p, n, off);
    }
    static int truncate(sqlite3_file* f, sqlite3_int64 size) {
        return real(f)->pMethods->xTruncate(real(f), size);
    }
    static int sync(sqlite3_file* f, int flags) { return real(f)->pMethods->xSync(real(f), flags); }
    static int file_size(sqlite3_file* f, sqlite3_int64* size) {
        return real(f)->pMethods->xFileSize(real(f), size);
    }
    static int lock(sqlite3_file* f, int l) { return real(f)->pMethods->xLock(real(f), l); }
    static int unlock(sqlite3_file* f, int l) { return real(f)->pMethods->xUnlock(real(f), l); }
    static int check_reserved_lock(sqlite3_file* f, int* out) {
        return real(f)->pMethods->xCheckReservedLock(real(f), out);
    }
    static int file_control(sqlite3_file* f, int op, void* arg) {
        return real(f)->pMethods->xFileControl(real(f), op, arg);
    }
    static int sector_size(sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); }
    static int device_characteristics(sqlite3_file* f) {
        return real(f)->pMethods->xDeviceCharacteristics(real(f));
    }
    static int shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** pp) {
        sqlite3_file* r = real(f);
        if (r->pMethods->iVersion < 2 || !r->pMethods->xShmMap) return SQLITE_IOERR_SHMMAP;
        return r->pMethods->xShmMap(r, region, size, extend, pp);
    }
    static int shm_lock(sqlite3_file* f, int offset, int n, int flags) {
        sqlite3_file* r = real(f);
        if (r->pMethods->iVersion < 2 || !r->pMethods->xShmLock) return SQLITE_IOERR_SHMLOCK;
        // Taking or leaving a lock ends or begins a write: nothing of the WAL stays behind.
        int rc = flush_wals(file(f)->owner);
        if (rc != SQLITE_OK && !(flags & SQLITE_SHM_UNLOCK)) return rc;
        return r->pMethods->xShmLock(r, offset, n, flags);
    }
    static void shm_barrier(sqlite3_file* f) {
        // Before SQLite publishes a commit: readers must find every frame it names in the file.
        // An error here has nowhere to go but the WAL's next call (the commit frame's page
        // already wrote a commit's frames; this is for frames that are not a commit's).
        flush_wals(file(f)->owner);
        sqlite3_file* r = real(f);
        if (r->pMethods->iVersion >= 2 && r->pMethods->xShmBarrier) r->pMethods->xShmBarrier(r);
    }
    static int shm_unmap(sqlite3_file* f, int delete_flag) {
        sqlite3_file* r = real(f);
        if (r->pMethods->iVersion < 2 || !r->pMethods->xShmUnmap) return SQLITE_OK;
        flush_wals(file(f)->owner);
        return r->pMethods->xShmUnmap(r, delete_flag);
    }
    static int fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** pp) {
        *pp = nullptr;
        sqlite3_file* r = real(f);
        return r->pMethods->iVersion >= 3 ? r->pMethods->xFetch(r, off, n, pp) : SQLITE_OK;
    }
    static int unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
        sqlite3_file* r = real(f);
        return r->pMethods->iVersion >= 3 ? r->pMethods->xUnfetch(r, off, p) : SQLITE_OK;
    }

    static constexpr sqlite3_io_methods pass_methods{3,
                                                     &close,
                                                     &read,
                                                     &write,
                                                     &truncate,
                                                     &sync,
                                                     &file_size,
                                                     &lock,
                                                     &unlock,
                                                     &check_reserved_lock,
                                                     &file_control,
                                                     &sector_size,
                                                     &device_characteristics,
                                                     &shm_map,
                                                     &shm_lock,
                                                     &shm_barrier,
                                                     &shm_unmap,
                                                     &fetch,
                                                     &unfetch};
    static constexpr sqlite3_io_methods wal_methods{3,
                                                    &wal_close,
                                                    &wal_read,
                                                    &wal_write,
                                                    &wal_truncate,
                                                    &wal_sync,
                                                    &wal_file_size,
                                                    &lock,
                                                    &unlock,
                                                    &check_reserved_lock,
                                                    &wal_file_control,
                                                    &sector_size,
                                                    &device_characteristics,
                                                    &shm_map,
                                                    &shm_lock,
                                                    &shm_barrier,
                                                    &shm_unmap,
                                                    &wal_fetch,
                                                    &unfetch};

    // ---- the VFS ----
    static int open(sqlite3_vfs* v, const char* name, sqlite3_file* f, int flags, int* out_flags) {
        any_file* a = file(f);
        a->base.pMethods = nullptr;
        a->owner = self(v);
        a->wal = nullptr;
        a->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kHead);
        int rc = base(v)->xOpen(base(v), name, a->real, flags, out_flags);
        if (a->real->pMethods == nullptr) return rc;  // nothing to close
        if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL)) {
            try {
                a->owner->wals_.push_back(
                    std::make_unique<wal_file>(a->real, a->owner->buffer_bytes_));
                a->wal = a->owner->wals_.back().get();
            } catch (const std::bad_alloc&) {
                a->real->pMethods->xClose(a->real);
                return SQLITE_NOMEM;
            }
        }
        a->base.pMethods = a->wal ? &wal_methods : &pass_methods;
        return rc;
    }
    static int remove(sqlite3_vfs* v, const char* name, int sync_dir) {
        return base(v)->xDelete(base(v), name, sync_dir);
    }
    static int access(sqlite3_vfs* v, const char* name, int flags, int* out) {
        return base(v)->xAccess(base(v), name, flags, out);
    }
    static int full_pathname(sqlite3_vfs* v, const char* name, int n, char* out) {
        return base(v)->xFullPathname(base(v), name, n, out);
    }
    static void* dl_open(sqlite3_vfs* v, const char* name) {
        return base(v)->xDlOpen(base(v), name);
    }
    static void dl_error(sqlite3_vfs* v, int n, char* out) { base(v)->xDlError(base(v), n, out); }
    static void (*dl_sym(sqlite3_vfs* v, void* h, const char* sym))(void) {
        return base(v)->xDlSym(base(v), h, sym);
    }
    static void dl_close(sqlite3_vfs* v, void* h) { base(v)->xDlClose(base(v), h); }
    static int randomness(sqlite3_vfs* v, int n, char* out) {
        return base(v)->xRandomness(base(v), n, out);
    }
    static int sleep(sqlite3_vfs* v, int us) { return base(v)->xSleep(base(v), us); }
    static int current_time(sqlite3_vfs* v, double* out) {
        return base(v)->xCurrentTime(base(v), out);
    }
    static int get_last_error(sqlite3_vfs* v, int n, char* out) {
        return base(v)->xGetLastError ? base(v)->xGetLastError(base(v), n, out) : 0;
    }
    static int current_time_int64(sqlite3_vfs* v, sqlite3_int64* out) {
        return base(v)->xCurrentTimeInt64(base(v), out);
    }
    static int set_system_call(sqlite3_vfs* v, const char* name, sqlite3_syscall_ptr p) {
        return base(v)->xSetSystemCall(base(v), name, p);
    }
    static sqlite3_syscall_ptr get_system_call(sqlite3_vfs* v, const char* name) {
        return base(v)->xGetSystemCall(base(v), name);
    }
    static const char* next_system_call(sqlite3_vfs* v, const char* name) {
        return base(v)->xNextSystemCall(base(v), name);
    }
};

wal_gather_vfs::wal_gather_vfs(std::size_t buffer_bytes)
    : base_(sqlite3_vfs_find(nullptr)),
      buffer_bytes_(std::clamp<std::size_t>(buffer_bytes, 4096, kMaxWrite)) {
    if (!base_) throw std::runtime_error("SQLite has no default VFS");
    char name[64];
    std::snprintf(name, sizeof name, "samband-wal-gather-%p", static_cast<void*>(this));
    name_ = name;
    using c = callbacks;
    vfs_.iVersion = std::min(base_->iVersion, 3);
    vfs_.szOsFile = static_cast<int>(kHead) + base_->szOsFile;
    vfs_.mxPathname = base_->mxPathname;
    vfs_.zName = name_.c_str();
    vfs_.pAppData = this;
    vfs_.xOpen = &c::open;
    vfs_.xDelete = &c::remove;
    vfs_.xAccess = &c::access;
    vfs_.xFullPathname = &c::full_pathname;
    vfs_.xDlOpen = &c::dl_open;
    vfs_.xDlError = &c::dl_error;
    vfs_.xDlSym = &c::dl_sym;
    vfs_.xDlClose = &c::dl_close;
    vfs_.xRandomness = &c::randomness;
    vfs_.xSleep = &c::sleep;
    vfs_.xCurrentTime = &c::current_time;
    vfs_.xGetLastError = &c::get_last_error;
    if (vfs_.iVersion >= 2) vfs_.xCurrentTimeInt64 = &c::current_time_int64;
    if (vfs_.iVersion >= 3) {
        vfs_.xSetSystemCall = &c::set_system_call;
        vfs_.xGetSystemCall = &c::get_system_call;
        vfs_.xNextSystemCall = &c::next_system_call;
    }
    if (int rc = sqlite3_vfs_register(&vfs_, 0); rc != SQLITE_OK)
        throw std::runtime_error(std::string("cannot register the SQLite VFS ") + name_ + ": " +
                                 sqlite3_errstr(rc));
}

wal_gather_vfs::~wal_gather_vfs() {
    sqlite3_vfs_unregister(&vfs_);
}

wal_gather_vfs::counters wal_gather_vfs::stats() const {
    return {gathered_.load(std::memory_order_relaxed), flushes_.load(std::memory_order_relaxed),
            through_.load(std::memory_order_relaxed)};
}

std::size_t wal_gather_vfs::buffered() const {
    return buffered_.load(std::memory_order_relaxed);
}

wal_gather_vfs* wal_gather_vfs::of(sqlite3_vfs* v) {
    return v && v->xOpen == &callbacks::open ? static_cast<wal_gather_vfs*>(v->pAppData) : nullptr;
}

}  // namespace samband::store
