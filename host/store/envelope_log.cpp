#include "store/envelope_log.hpp"

#include "store/fsync_dir.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace samband::store {

namespace fs = std::filesystem;
using boost::system::error_code;

namespace {

constexpr char kMagic[4] = {'S', 'E', 'V', '1'};
constexpr const char* kSuffix = ".envlog";

error_code errno_code(int e) {
    return error_code(e, boost::system::generic_category());
}
error_code bad_record() {
    return boost::system::errc::make_error_code(boost::system::errc::illegal_byte_sequence);
}

std::uint32_t crc_of(const void* p, std::size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const auto* b = static_cast<const Bytef*>(p);
    // zlib takes a uInt length: 1 GiB at a time.
    while (n > 0) {
        uInt step = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
        c = crc32(c, b, step);
        b += step;
        n -= step;
    }
    return static_cast<std::uint32_t>(c);
}

void put_u32(unsigned char* p, std::uint32_t v) {
    p[0] = static_cast<unsigned char>(v);
    p[1] = static_cast<unsigned char>(v >> 8);
    p[2] = static_cast<unsigned char>(v >> 16);
    p[3] = static_cast<unsigned char>(v >> 24);
}
std::uint32_t get_u32(const unsigned char* p) {
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

std::uint64_t key_hash(std::string_view key) {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : key) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}
void put_u64(unsigned char* p, std::uint64_t v) {
    put_u32(p, static_cast<std::uint32_t>(v));
    put_u32(p + 4, static_cast<std::uint32_t>(v >> 32));
}
std::uint64_t get_u64(const unsigned char* p) {
    return static_cast<std::uint64_t>(get_u32(p)) | static_cast<std::uint64_t>(get_u32(p + 4))
                                                        << 32;
}

// Reads the record at `ref` from `fd` and checks it: the header into a buffer of its own and the
// payload straight into the string returned (no copy to strip the header).
boost::system::result<std::string> read_record(int fd, const envelope_ref& ref,
                                               std::string_view key) {
    if (ref.offset < 0 || ref.length < 0 || ref.length > 0xffffffffll) return bad_record();
    unsigned char h[envelope_log::kHeaderBytes];
    std::string payload(static_cast<std::size_t>(ref.length), '\0');
    const std::size_t total = sizeof h + payload.size();
    std::size_t got = 0;
    while (got < total) {
        iovec v[2];
        int n = 0;
        if (got < sizeof h) v[n++] = {h + got, sizeof h - got};
        const std::size_t in = got < sizeof h ? 0 : got - sizeof h;
        if (in < payload.size()) v[n++] = {payload.data() + in, payload.size() - in};
        ssize_t r = ::preadv(fd, v, n, static_cast<off_t>(ref.offset) + static_cast<off_t>(got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno_code(errno);
        if (r == 0) return bad_record();  // past the end: never written whole
        got += static_cast<std::size_t>(r);
    }
    if (std::memcmp(h, kMagic, 4) != 0 ||
        get_u32(h + 4) != static_cast<std::uint32_t>(ref.length) ||
        get_u64(h + 12) != key_hash(key) || get_u32(h + 20) != crc_of(h, 20))
        return bad_record();
    if (get_u32(h + 8) != crc_of(payload.data(), payload.size())) return bad_record();
    return payload;
}

}  // namespace

envelope_log::segment::~segment() {
    if (fd >= 0) ::close(fd);
}

fs::path envelope_log::segment_path(const fs::path& dir, std::int64_t n) {
    char name[32];
    std::snprintf(name, sizeof name, "%010lld%s", static_cast<long long>(n), kSuffix);
    return dir / name;
}

std::vector<std::int64_t> envelope_log::list_segments(const fs::path& dir) {
    std::vector<std::int64_t> out;
    std::error_code ec;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
        std::string n = it->path().filename().string();
        if (n.size() != 10 + std::strlen(kSuffix) || n.substr(10) != kSuffix) continue;
        if (n.find_first_not_of("0123456789") != 10) continue;
        out.push_back(std::stoll(n.substr(0, 10)));
    }
    std::sort(out.begin(), out.end());
    return out;
}

envelope_log::envelope_log(fs::path dir, std::uint64_t segment_bytes)
    : dir_(std::move(dir)), segment_bytes_(segment_bytes) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec)
        throw std::runtime_error("cannot create the envelope log folder " + dir_.string() + ": " +
                                 ec.message());
    auto have = list_segments(dir_);
    std::lock_guard lock(mu_);
    cur_ = create_segment(have.empty() ? 1 : have.back() + 1);
    if (!cur_)
        throw std::runtime_error("cannot create a segment in the envelope log folder " +
                                 dir_.string() + ": " + std::strerror(errno));
    // The folder entry before anything refers to it (sync() does it again for later segments).
    if (!fsync_dir(dir_) || (dir_.has_parent_path() && !fsync_dir(dir_.parent_path())))
        throw std::runtime_error("cannot fsync the envelope log folder " + dir_.string() + ": " +
                                 std::strerror(errno));
    dir_dirty_ = false;
}

envelope_log::~envelope_log() = default;

std::shared_ptr<envelope_log::segment> envelope_log::create_segment(std::int64_t number) {
    // O_EXCL: a segment has one appender, the log that created it (another process's log, the
    // same store opened twice by mistake, takes the next number).
    for (int tries = 0; tries < 1000; ++tries, ++number) {
        int fd =
            ::open(segment_path(dir_, number).c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) return nullptr;
        auto s = std::make_shared<segment>();
        s->number = number;
        s->fd = fd;
        dir_dirty_ = true;
        return s;
    }
    errno = EEXIST;
    return nullptr;
}

boost::system::result<envelope_log::appended> envelope_log::append(std::string_view payload,
                                                                   std::string_view key) {
    if (payload.size() > 0xffffffffull) return errno_code(EFBIG);
    unsigned char h[kHeaderBytes];
    std::memcpy(h, kMagic, 4);
    put_u32(h + 4, static_cast<std::uint32_t>(payload.size()));
    put_u32(h + 8, crc_of(payload.data(), payload.size()));
    put_u64(h + 12, key_hash(key));
    put_u32(h + 20, crc_of(h, 20));
    const std::uint64_t rec = kHeaderBytes + payload.size();
    std::shared_ptr<segment> seg;
    appended a;
    {
        std::lock_guard lock(mu_);
        if (cur_->size > 0 && cur_->size + rec > segment_bytes_) {
            auto next = create_segment(cur_->number + 1);
            if (!next) return errno_code(errno);
            rolled_.push_back(std::move(cur_));
            cur_ = std::move(next);
        }
        seg = cur_;
        a.ref.segment = seg->number;
        a.ref.offset = static_cast<std::int64_t>(seg->size);
        a.ref.length = static_cast<std::int64_t>(payload.size());
        seg->size += rec;
        a.ticket = ++reserved_;
        seg->last_ticket = a.ticket;
        writing_.insert(a.ticket);
    }
    // Written outside the lock: appends on several threads write their records in parallel.
    iovec iov[2] = {{h, kHeaderBytes}, {const_cast<char*>(payload.data()), payload.size()}};
    std::uint64_t done = 0;
    int err = 0;
    while (done < rec) {
        int first = done < kHeaderBytes ? 0 : 1;
        iovec v[2];
        int n = 0;
        if (first == 0) {
            v[n++] = {h + done, kHeaderBytes - done};
            v[n++] = iov[1];
        } else {
            std::uint64_t in = done - kHeaderBytes;
            v[n++] = {const_cast<char*>(payload.data()) + in, payload.size() - in};
        }
        ssize_t w = ::pwritev(seg->fd, v, n, static_cast<off_t>(a.ref.offset + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err = w < 0 ? errno : ENOSPC;
            break;
        }
        done += static_cast<std::uint64_t>(w);
    }
    {
        std::lock_guard lock(mu_);
        writing_.erase(a.ticket);
    }
    // A failed write leaves a hole nothing refers to; its ticket still counts as done, so later
    // appends are not held up.
    if (err != 0) return errno_code(err);
    return a;
}

std::uint64_t envelope_log::reserved() const {
    std::lock_guard lock(mu_);
    return reserved_;
}

error_code envelope_log::sync() {
    std::uint64_t through;
    std::vector<std::shared_ptr<segment>> segs;
    bool dir;
    {
        std::lock_guard lock(mu_);
        // Every ticket below the first still being written has returned from its pwrite: the
        // fdatasyncs below cover them. Tickets after it wait for the next sync.
        through = writing_.empty() ? reserved_ : *writing_.begin() - 1;
        segs = rolled_;
        segs.push_back(cur_);
        dir = dir_dirty_;
        dir_dirty_ = false;
    }
    for (const auto& s : segs) {
        if (::fdatasync(s->fd) != 0) return errno_code(errno);
    }
    // A new segment's name must be durable before a row that names it commits.
    if (dir && !fsync_dir(dir_)) return errno_code(errno);
    {
        std::lock_guard lock(mu_);
        // A rolled segment whose last append is covered needs no sync again.
        std::erase_if(rolled_, [&](const auto& s) { return s->last_ticket <= through; });
    }
    if (through > synced_.load(std::memory_order_relaxed))
        synced_.store(through, std::memory_order_release);
    return {};
}

std::shared_ptr<envelope_log::segment> envelope_log::reader_for(std::int64_t number) const {
    std::lock_guard lock(rmu_);
    auto it = readers_.find(number);
    if (it != readers_.end()) return it->second;
    int fd = ::open(segment_path(dir_, number).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nullptr;
    auto s = std::make_shared<segment>();
    s->number = number;
    s->fd = fd;
    readers_.emplace(number, s);
    return s;
}

boost::system::result<std::string> envelope_log::read(const envelope_ref& ref,
                                                      std::string_view key) const {
    auto s = reader_for(ref.segment);
    if (!s) return errno_code(errno);
    return read_record(s->fd, ref, key);
}

boost::system::result<std::string> envelope_log::read_from(const fs::path& dir,
                                                           const envelope_ref& ref,
                                                           std::string_view key) {
    int fd = ::open(segment_path(dir, ref.segment).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_code(errno);
    auto r = read_record(fd, ref, key);
    ::close(fd);
    return r;
}

error_code envelope_log::scrub(const fs::path& dir, const std::vector<envelope_ref>& refs) {
    std::map<std::int64_t, std::vector<const envelope_ref*>> by;
    for (const auto& r : refs) by[r.segment].push_back(&r);
    std::string zeros;
    for (const auto& [seg, rs] : by) {
        int fd = ::open(segment_path(dir, seg).c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) continue;
        if (fd < 0) return errno_code(errno);
        error_code ec;
        for (const auto* r : rs) {
            std::size_t n = kHeaderBytes + static_cast<std::size_t>(r->length);
            if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            static_cast<off_t>(r->offset), static_cast<off_t>(n)) == 0)
                continue;
            if (zeros.size() < n) zeros.assign(n, '\0');
            std::size_t done = 0;
            while (done < n && !ec) {
                ssize_t w = ::pwrite(fd, zeros.data() + done, n - done,
                                     static_cast<off_t>(r->offset) + static_cast<off_t>(done));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0)
                    ec = errno_code(w < 0 ? errno : ENOSPC);
                else
                    done += static_cast<std::size_t>(w);
            }
        }
        if (!ec && ::fdatasync(fd) != 0) ec = errno_code(errno);
        ::close(fd);
        if (ec) return ec;
    }
    return {};
}

error_code envelope_log::sync_segments(const fs::path& dir,
                                       const std::set<std::int64_t>& segments) {
    for (auto n : segments) {
        int fd = ::open(segment_path(dir, n).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) continue;
        if (fd < 0) return errno_code(errno);
        int rc = ::fdatasync(fd);
        int e = errno;
        ::close(fd);
        if (rc != 0) return errno_code(e);
    }
    return fsync_dir(dir) ? error_code{} : errno_code(errno);
}

bool envelope_log::record_missing(const error_code& ec) {
    return ec == bad_record() || ec == errno_code(ENOENT);
}

std::int64_t envelope_log::current_segment() const {
    std::lock_guard lock(mu_);
    return cur_->number;
}

std::size_t envelope_log::remove_below(std::int64_t below) {
    below = std::min(below, current_segment());
    std::size_t n = 0;
    for (auto s : list_segments(dir_)) {
        if (s >= below) break;
        {
            std::lock_guard lock(rmu_);
            readers_.erase(s);
        }
        std::error_code ec;
        if (fs::remove(segment_path(dir_, s), ec)) ++n;
    }
    if (n > 0) fsync_dir(dir_);
    return n;
}

}  // namespace samband::store
