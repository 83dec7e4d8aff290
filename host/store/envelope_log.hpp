// The envelope log (issue 10): events' envelope bytes in append-only segment files
// beside the SQLite store (<db path>.envelopes/), so the writer's transaction holds only a
// reference (segment, offset, length) instead of 8 KB of overflow pages, their WAL frames and
// their checkpoint copies.
//
// Each record is a 24-byte header (magic "SEV1", the payload's length, the payload's CRC32, a
// 64-bit FNV-1a hash of the record's key (the event id), the CRC32 of the header's first 20
// bytes) and the payload. A read checks all of them against the reference and the key it
// expects, so a torn, overwritten or foreign record (another event's, or one of an earlier
// folder at the same segment number and offset) reads as an error, never as other bytes.
//
// Durability: append() writes (pwrite, no sync) and returns a ticket; sync() fdatasyncs every
// segment written since the last sync (and the folder when a segment was created) and then
// publishes synced_through(): every append whose ticket is at most that value is on disk. The
// store acknowledges a submit only once its ticket is synced, but commits the row before that
// (the log is synced beside the WAL), so after a power loss a committed row may name a record
// that is not on disk: the store's open checks the rows above its durable watermark and marks
// those events lost (sqlite_store::recover_lost).
//
// Ownership: a segment is only ever appended to by the envelope_log that created it (O_EXCL):
// each open starts a fresh segment. What a crash left at the end of an older segment (appends
// never synced, never referenced) stays there unread until the segment is removed.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace samband::store {

struct envelope_ref {
    std::int64_t segment = 0;  // the segment file's number
    std::int64_t offset = 0;   // of the record's header in that file
    std::int64_t length = 0;   // payload bytes
};

class envelope_log {
public:
    static constexpr std::uint64_t kDefaultSegmentBytes = 64ull << 20;
    static constexpr std::size_t kHeaderBytes = 24;

    // Opens (creating) the folder and creates a fresh segment to append to. Throws
    // std::runtime_error naming the folder when it cannot (a start-up error, as the store's own).
    explicit envelope_log(std::filesystem::path dir,
                          std::uint64_t segment_bytes = kDefaultSegmentBytes);
    ~envelope_log();
    envelope_log(const envelope_log&) = delete;
    envelope_log& operator=(const envelope_log&) = delete;

    struct appended {
        envelope_ref ref;
        std::uint64_t ticket = 0;  // durable once synced_through() >= ticket
    };
    // Thread-safe: reserves the record's place under a mutex (rolling to a new segment when the
    // current one is full) and writes it outside. Not synced.
    boost::system::result<appended> append(std::string_view payload, std::string_view key);

    // Makes every append that had returned when it was called durable: fdatasync of each segment
    // written since the last sync (the folder too when a segment was created since), then
    // synced_through() moves on. One caller at a time (the store's log-sync thread).
    boost::system::error_code sync();
    std::uint64_t synced_through() const { return synced_.load(std::memory_order_acquire); }
    // Appends reserved so far (the last ticket handed out).
    std::uint64_t reserved() const;

    // Reads and checks one record. Thread-safe.
    boost::system::result<std::string> read(const envelope_ref& ref, std::string_view key) const;
    // The same without an open log (read-only tools): opens the segment for this one read.
    static boost::system::result<std::string> read_from(const std::filesystem::path& dir,
                                                        const envelope_ref& ref,
                                                        std::string_view key);

    // Removes each record's bytes (header and payload) from its segment and syncs it: a hole
    // punched (the file reads zeros there, the blocks freed; zeros written where the file system
    // cannot punch): what a pruned or re-sealed envelope leaves (SQLite's SECURE_DELETE zeroes
    // freed pages). Freed blocks may keep the bytes on the device, as a removed segment's do. Safe
    // beside the log's appender: a record is never written again once appended. A segment
    // already removed is skipped. Thread-safe, and usable without an open log.
    static boost::system::error_code scrub(const std::filesystem::path& dir,
                                           const std::vector<envelope_ref>& refs);

    // fdatasyncs the named segments (read-only opens; a segment that is gone is skipped): the
    // store's open makes the records it checked durable before it records them as such.
    static boost::system::error_code sync_segments(const std::filesystem::path& dir,
                                                   const std::set<std::int64_t>& segments);
    // Whether `ec` (from read/read_from) says the record is not there: torn, changed, foreign,
    // past the segment's end, or its segment gone. Any other error is the disk's.
    static bool record_missing(const boost::system::error_code& ec);

    // Removes the segment files numbered below `below`, never the one appended to now. Returns
    // how many were removed.
    std::size_t remove_below(std::int64_t below);
    std::int64_t current_segment() const;
    const std::filesystem::path& dir() const { return dir_; }

    static std::filesystem::path segment_path(const std::filesystem::path& dir, std::int64_t n);
    // The numbers of the segment files in `dir`, ascending.
    static std::vector<std::int64_t> list_segments(const std::filesystem::path& dir);

private:
    struct segment {
        std::int64_t number = 0;
        int fd = -1;
        std::uint64_t size = 0;         // bytes reserved (the next record's offset)
        std::uint64_t last_ticket = 0;  // the last append reserved in it
        ~segment();
    };
    std::shared_ptr<segment> create_segment(std::int64_t number);  // mu_ held
    std::shared_ptr<segment> reader_for(std::int64_t number) const;

    std::filesystem::path dir_;
    std::uint64_t segment_bytes_;
    mutable std::mutex mu_;
    std::shared_ptr<segment> cur_;
    std::vector<std::shared_ptr<segment>> rolled_;  // rolled, not yet synced through their end
    bool dir_dirty_ = false;                        // a segment created since the last sync
    std::uint64_t reserved_ = 0;
    std::set<std::uint64_t> writing_;  // tickets reserved whose pwrite has not returned
    std::atomic<std::uint64_t> synced_{0};
    // Read side: open segments by number (the current one shares the appender's fd).
    mutable std::mutex rmu_;
    mutable std::map<std::int64_t, std::shared_ptr<segment>> readers_;
};

}  // namespace samband::store
