// The embedded SQLite store: WAL, one writer thread with group commit, each commit synced (as
// synchronous=FULL would) by a syncer thread before anything of it is acknowledged.
#include "store/audit_chain.hpp"
#include "store/blob_guard.hpp"
#include "store/blob_seal.hpp"
#include "store/envelope_log.hpp"
#include "store/fsync_dir.hpp"
#include "store/sealed.hpp"
#include "store/sqlite_db.hpp"
#include "store/sqlite_plans.hpp"
#include "store/store.hpp"
#include "store/wal_gather_vfs.hpp"

#include "core/ids.hpp"
#include "core/thread_name.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>

namespace samband::store {

namespace fs = std::filesystem;
using boost::system::error_code;

std::string_view to_string(delivery_state s) noexcept {
    switch (s) {
        case delivery_state::pending:
            return "pending";
        case delivery_state::in_flight:
            return "in_flight";
        case delivery_state::delivered:
            return "delivered";
        case delivery_state::acknowledged:
            return "acknowledged";
        case delivery_state::failed:
            return "failed";
        case delivery_state::dead:
            return "dead";
        case delivery_state::blocked:
            return "blocked";
        case delivery_state::held:
            return "held";
    }
    return "pending";
}

std::optional<delivery_state> parse_delivery_state(std::string_view s) noexcept {
    for (auto st : all_delivery_states)
        if (to_string(st) == s) return st;
    return std::nullopt;
}

std::optional<delivery_state> from_code(std::int64_t c) noexcept {
    for (auto st : all_delivery_states)
        if (code(st) == c) return st;
    return std::nullopt;
}

bool transition_allowed(delivery_state from, delivery_state to) noexcept {
    using enum delivery_state;
    switch (from) {
        case pending:
            return to == in_flight || to == held || to == blocked || to == dead || to == failed ||
                   to == pending || to == delivered;
        case in_flight:
            return to == delivered || to == failed || to == dead || to == pending || to == held ||
                   to == blocked;
        case failed:
            return to == in_flight || to == pending || to == dead || to == delivered;
        case delivered:
            return to == acknowledged || to == dead || to == pending;
        case acknowledged:
            return to == pending;
        case dead:
            return to == pending || to == delivered;
        case held:
            return to == pending || to == blocked;
        case blocked:
            return to == pending || to == held;
    }
    return false;
}

namespace {

// A file descriptor and the path it was opened from, closed with its owner.
class owned_fd {
public:
    owned_fd() = default;
    owned_fd(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
    owned_fd(owned_fd&& o) noexcept : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}
    owned_fd& operator=(owned_fd&& o) noexcept {
        if (this != &o) {
            if (fd_ >= 0) ::close(fd_);
            path_ = std::move(o.path_);
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    owned_fd(const owned_fd&) = delete;
    owned_fd& operator=(const owned_fd&) = delete;
    ~owned_fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    int fd_ = -1;
};

// The columns read_delivery() expects, in order.
#define DELIVERY_COLUMNS                                                                  \
    "d.id, e.id, d.destination, d.route, d.state, d.attempts, d.next_ms, d.external_id, " \
    "d.reason, d.order_key, e.type, d.created_ms, d.updated_ms, d.overridden, d.attempts_base"

// Versioned migrations: index i brings the schema from version i to i+1. Append only.
const char* const kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE events(
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  source TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  type TEXT NOT NULL,
  occurred_at TEXT NOT NULL DEFAULT '',
  treatment_id TEXT NOT NULL DEFAULT '',
  order_key TEXT NOT NULL DEFAULT '',
  received_ms INTEGER NOT NULL,
  UNIQUE(source, idempotency_key));
CREATE INDEX events_treatment ON events(treatment_id, seq) WHERE treatment_id <> '';
CREATE TABLE payloads(event_seq INTEGER PRIMARY KEY, envelope TEXT NOT NULL);
CREATE TABLE attachments(
  event_seq INTEGER NOT NULL, att_id TEXT NOT NULL, filename TEXT NOT NULL,
  media_type TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
  PRIMARY KEY(event_seq, att_id));
CREATE INDEX attachments_sha ON attachments(sha256);
CREATE TABLE deliveries(
  id INTEGER PRIMARY KEY,
  event_seq INTEGER NOT NULL,
  destination TEXT NOT NULL,
  route TEXT NOT NULL DEFAULT '',
  state INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_ms INTEGER NOT NULL DEFAULT 0,
  order_key TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  external_id TEXT,
  reason TEXT NOT NULL DEFAULT '');
CREATE INDEX deliveries_ready ON deliveries(destination, id) WHERE state IN (0, 4);
CREATE INDEX deliveries_order ON deliveries(destination, order_key, id) WHERE state IN (0, 1, 4, 7);
CREATE INDEX deliveries_event ON deliveries(event_seq);
CREATE INDEX deliveries_state ON deliveries(state, destination, id);
CREATE INDEX deliveries_ext ON deliveries(destination, external_id) WHERE external_id IS NOT NULL;
CREATE TABLE attempts(
  delivery_id INTEGER NOT NULL, n INTEGER NOT NULL, started_ms INTEGER NOT NULL,
  ended_ms INTEGER NOT NULL, state INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(delivery_id, n));
CREATE TABLE receipts(
  id INTEGER PRIMARY KEY, destination TEXT NOT NULL, external_id TEXT NOT NULL,
  kind INTEGER NOT NULL, text TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE audit(
  id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
  subject TEXT NOT NULL, detail TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX audit_subject ON audit(subject, id);
CREATE TABLE errors(
  id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL,
  idempotency_key TEXT NOT NULL DEFAULT '', payload TEXT NOT NULL);
)sql",
    // 2: attempts are opened at their claim (outcome 'open') and closed by the engine or, after a
    // crash, by recovery ('died'); the override is a column, not an audit-text search;
    // attempts_base is where the current attempt budget starts (an operator retry renews it).
    R"sql(
ALTER TABLE attempts ADD COLUMN outcome TEXT NOT NULL DEFAULT 'closed';
ALTER TABLE deliveries ADD COLUMN overridden INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN attempts_base INTEGER NOT NULL DEFAULT 0;
CREATE INDEX attempts_open ON attempts(delivery_id) WHERE outcome = 'open';
)sql",
    // 3: retention finds old events by an index, not by a scan of every event inside the writer's
    // transaction (a store with 1,000,000 pending events stalled every commit while it ran).
    R"sql(
CREATE INDEX events_received ON events(received_ms);
)sql",
    // 4: the content hash of each event, so a reused idempotency key with other content is a
    // conflict rather than a silent duplicate ('' for events stored before: not compared); the
    // audit chain's hash format per row (1 before this, 2 = length-prefixed fields).
    R"sql(
ALTER TABLE events ADD COLUMN content_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN hash_v INTEGER NOT NULL DEFAULT 1;
)sql",
    // 5: the open attempt lives in its delivery row (attempts counts it, attempt_started_ms says
    // when it began): a claim updates one row instead of also inserting an attempts row that its
    // completion updates again. The attempts row is written once, when the attempt ends (or
    // by recovery as 'died'). Open attempts rows from before stay readable and are recovered.
    R"sql(
ALTER TABLE deliveries ADD COLUMN attempt_started_ms INTEGER NOT NULL DEFAULT 0;
)sql",
    // 6: each (destination, order_key) chain marks its head: the first of its deliveries still
    // waiting, in flight or held (states 0, 1, 4, 7), the only one of them a claim may take.
    // Claims read marked heads (deliveries_due), not every waiting delivery: with one patient's
    // 100,000 waiting, each claim scanned them all to find the few that were due (458 delivered/s
    // against 12,232 with the same backlog spread over many patients). The mark of a delivery
    // outside those states means nothing.
    R"sql(
ALTER TABLE deliveries ADD COLUMN head INTEGER NOT NULL DEFAULT 0;
UPDATE deliveries SET head = 1 WHERE id IN (SELECT MIN(id) FROM deliveries
  WHERE state IN (0, 1, 4, 7) GROUP BY destination, order_key);
DROP INDEX deliveries_ready;
CREATE INDEX deliveries_due ON deliveries(destination, id) WHERE state IN (0, 4) AND head = 1;
)sql",
    // 7: a new event's envelope is stored in its events row (one row and one statement less per
    // event than a payloads row beside it). Events stored before keep theirs in payloads: reads
    // take the events row's envelope, else the payloads row's (ENVELOPE, EVENTS_WITH_ENVELOPE).
    R"sql(
ALTER TABLE events ADD COLUMN envelope TEXT;
)sql",
    // 8: deliveries_state leaves out in_flight and delivered, the two states every delivery
    // passes through: the full index took 5 entry changes per delivered event (insert, claim,
    // completion), now 2. Lists of those two states (the console's, recovery's at start, the
    // receipt window's, replay's) read the table in id order instead.
    R"sql(
DROP INDEX deliveries_state;
CREATE INDEX deliveries_state ON deliveries(state, destination, id) WHERE state NOT IN (1, 2);
)sql",
    // 9: deliveries_order's condition, the open states 0, 1, 4 and 7, is two lists of two
    // (OPEN_STATE). SQLite tests a constant IN list of more than two values through an ephemeral
    // table it builds on every run of a statement, so on every delivery written; two values it
    // compares directly. The same rows in the same order.
    R"sql(
DROP INDEX deliveries_order;
CREATE INDEX deliveries_order ON deliveries(destination, order_key, id)
  WHERE state IN (0, 1) OR state IN (4, 7);
)sql",
    // 10: a chain is a list, not an index over every open delivery. deliveries_order put each
    // delivery at the place of its (destination, patient), a random leaf: every commit dirtied
    // about one page per delivery once the open deliveries outgrew a commit (about 5 KB written
    // per event; beside a hung destination, whose queue only grows, more). Now chains holds one
    // row per open chain (bounded by patients, not by deliveries) naming its last delivery, and
    // each open delivery names the one it waits behind (prev, 0 for the chain's head, the one
    // marked head = 1); deliveries_next finds the delivery behind another. Its keys are ids of
    // recent tails and of leaving heads: it grows at one end and shrinks at the other. The
    // links are written in id order, from a temporary table (in chain order, one random row per
    // delivery: 1,000,000 pending took 9-11 s instead of 2-3.5 s).
    R"sql(
ALTER TABLE deliveries ADD COLUMN prev INTEGER NOT NULL DEFAULT 0;
CREATE TABLE chains(
  destination TEXT NOT NULL, order_key TEXT NOT NULL, tail INTEGER NOT NULL,
  PRIMARY KEY(destination, order_key)) WITHOUT ROWID;
CREATE TEMP TABLE chain_prev(id INTEGER PRIMARY KEY, p INTEGER NOT NULL);
INSERT INTO chain_prev SELECT id, p FROM (SELECT id, LAG(id, 1, 0) OVER (PARTITION BY destination,
  order_key ORDER BY id) AS p FROM deliveries WHERE state IN (0, 1) OR state IN (4, 7))
  WHERE p <> 0 ORDER BY id;
UPDATE deliveries SET prev = c.p FROM chain_prev AS c WHERE deliveries.id = c.id;
DROP TABLE chain_prev;
INSERT INTO chains(destination, order_key, tail) SELECT destination, order_key, MAX(id)
  FROM deliveries WHERE state IN (0, 1) OR state IN (4, 7) GROUP BY destination, order_key;
DROP INDEX deliveries_order;
CREATE INDEX deliveries_next ON deliveries(prev) WHERE prev > 0;
)sql",
    // 11 (issue 10): a new event's envelope is in the envelope log
    // (store/envelope_log, <path>.envelopes/), the events row names its record (segment, offset,
    // length) and its envelope column is NULL. Events stored before keep theirs inline: reads
    // take whichever is set (read_event).
    R"sql(
ALTER TABLE events ADD COLUMN env_seg INTEGER;
ALTER TABLE events ADD COLUMN env_off INTEGER;
ALTER TABLE events ADD COLUMN env_len INTEGER;
)sql",
    // 12 (issue 10): the envelope log may be synced after the COMMIT of the rows that
    // name its records (late sync: nothing is acknowledged before both are synced). envlog_durable
    // holds the watermark: every events row with seq <= it has its record on disk (written by the
    // writer in its commits, sqlite_store::note_durable); the open checks the records of the rows
    // above it and marks an event whose record did not survive lost (lost_ms), its open
    // deliveries dead. Rows stored before hold their envelopes inline (or, on a store of the
    // unreleased schema 11, synced before their commit): the watermark starts at the newest.
    R"sql(
ALTER TABLE events ADD COLUMN lost_ms INTEGER;
CREATE TABLE envlog_durable(id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
INSERT INTO envlog_durable VALUES(1, (SELECT COALESCE(MAX(seq), 0) FROM events));
)sql",
};
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

bool is_fatal(int rc) {
    int primary = rc & 0xff;
    return primary == SQLITE_IOERR || primary == SQLITE_FULL || primary == SQLITE_CORRUPT ||
           primary == SQLITE_NOTADB || primary == SQLITE_CANTOPEN;
}

// Every audit row, oldest first, as the chain check reads them.
constexpr const char* kAuditRowsSql =
    "SELECT id, at_ms, actor, action, subject, detail, hash, hash_v FROM audit ORDER BY id";

// An event's envelope: in its events row since schema 7, in payloads for events stored before.
#define ENVELOPE "COALESCE(e.envelope, p.envelope)"
#define EVENTS_WITH_ENVELOPE "events e LEFT JOIN payloads p ON p.event_seq = e.seq"
// Since schema 11 the envelope may be in the envelope log instead: the record's reference,
// columns 9-11 of the event reads (read_event), NULL for an envelope stored inline.
#define ENVELOPE_REF "e.env_seg, e.env_off, e.env_len"
// The columns read_event() expects, in order. Column 12, lost_ms (schema 12): set, the event
// was lost by a crash before its acknowledgement and its record is not read.
#define EVENT_COLUMNS                                             \
    "e.seq, e.id, e.source, e.idempotency_key, e.type, " ENVELOPE \
    ", e.treatment_id, e.order_key, e.received_ms, " ENVELOPE_REF ", e.lost_ms"

// A treatment's events, oldest first: the history the consent gate decides on. The term
// treatment_id <> '' lets SQLite use the partial events_treatment (without it each read scanned
// every event, envelopes and all); a treatment is never '' (no history then). An event a crash
// lost (lost_ms, schema 12) was never acknowledged, so never accepted: it is no part of the
// history (its source sends it again, as a new event), and it has no envelope to decide on.
constexpr const char* kTreatmentHistorySql =
    "SELECT " EVENT_COLUMNS " FROM " EVENTS_WITH_ENVELOPE
    " WHERE e.treatment_id = ? AND e.treatment_id <> '' AND e.lost_ms IS NULL ORDER BY e.seq";
// The same on a store of schema 7-11 (no envelope log yet, or only the unreleased prototype's).
constexpr const char* kTreatmentHistorySqlV10 =
    "SELECT e.seq, e.id, e.source, e.idempotency_key, e.type, " ENVELOPE
    ", e.treatment_id, e.order_key, e.received_ms FROM " EVENTS_WITH_ENVELOPE
    " WHERE e.treatment_id = ? AND e.treatment_id <> '' ORDER BY e.seq";
// The same on a store not yet migrated to schema 7 (read-only readers migrate nothing).
constexpr const char* kTreatmentHistorySqlV6 =
    "SELECT e.seq, e.id, e.source, e.idempotency_key, e.type, p.envelope, e.treatment_id, "
    "e.order_key, e.received_ms FROM events e JOIN payloads p ON p.event_seq = e.seq "
    "WHERE e.treatment_id = ? AND e.treatment_id <> '' ORDER BY e.seq";

// The statements that need a given index on deliveries, by name (sqlite_query_plans checks them).
// A delivery open in its chain (pending, in flight, failed, held): in its (destination, patient)
// chain's list (schema 10). `t` is the table's alias with its dot, or "". Written as two IN lists
// of two: SQLite builds an ephemeral table per run for a constant list of more than two.
#define OPEN_STATE(t) "(" t "state IN (0, 1) OR " t "state IN (4, 7))"
// The last open delivery of a (destination, patient) chain; no row: the chain is idle.
constexpr char kChainTailSql[] =
    "SELECT tail FROM chains WHERE destination = ?1 AND order_key = ?2";
// The chain's new last delivery (a chain opens with its first).
constexpr char kSetChainTailSql[] =
    "INSERT INTO chains(destination, order_key, tail) VALUES(?1, ?2, ?3) ON CONFLICT(destination, "
    "order_key) DO UPDATE SET tail = excluded.tail";
// The chain's last delivery left it: the chain is idle.
constexpr char kDropChainSql[] = "DELETE FROM chains WHERE destination = ?1 AND order_key = ?2";
// The delivery waiting right behind another in its chain (deliveries_next).
constexpr char kBehindSql[] = "SELECT id FROM deliveries WHERE prev = ?1 AND prev > 0";
// A delivery's place in its chain: the one it waits behind (0: none) and whether it heads it.
constexpr char kRelinkSql[] = "UPDATE deliveries SET prev = ?1, head = ?1 = 0 WHERE id = ?2";
// A delivery's place, read to walk a chain back from its tail (a rejoin: rare).
constexpr char kPrevOfSql[] = "SELECT prev FROM deliveries WHERE id = ?1";
// A new delivery, pending (or held, blocked: ?4) as routed, behind its chain's last delivery ?8
// (0: it heads its chain). Its id is the last rowid: no RETURNING, no derived table (each an
// ephemeral table SQLite builds per insert, about 53,000 instructions per delivery).
constexpr char kInsertDeliverySql[] =
    "INSERT INTO deliveries(event_seq, destination, route, state, order_key, created_ms, "
    "updated_ms, reason, prev, head) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?8 = 0)";
// Claimed at accept, its chain idle: stored in flight, heading its chain, with its first attempt
// counted.
constexpr char kInsertClaimedDeliverySql[] =
    "INSERT INTO deliveries(event_seq, destination, route, state, order_key, created_ms, "
    "updated_ms, reason, head, attempts, attempt_started_ms) VALUES(?1, ?2, ?3, 1, ?4, ?5, ?5, ?6, "
    "1, 1, ?5)";
// The due heads of a destination (deliveries_due), never the deliveries queued behind them.
constexpr char kClaimSql[] =
    "SELECT " DELIVERY_COLUMNS
    " FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.destination = ?1 AND "
    "d.state IN (0, 4) AND d.head = 1 AND d.next_ms <= ?2 ORDER BY d.id LIMIT ?3";
// A claimed delivery: in flight, its attempt counted.
constexpr char kClaimOneSql[] =
    "UPDATE deliveries SET state = 1, attempts = attempts + 1, attempt_started_ms = ?1, "
    "updated_ms = ?1 WHERE id = ?2";
// A delivery's new state (a completion, a receipt, an operator's action); ?10: whether it stays
// in its chain (else it no longer waits behind anyone).
constexpr char kSetStateSql[] =
    "UPDATE deliveries SET state = ?1, reason = ?2, next_ms = ?3, updated_ms = ?4, "
    "attempts = MAX(attempts - ?5, 0), external_id = COALESCE(NULLIF(?6, ''), "
    "external_id), overridden = MAX(overridden, ?8), attempts_base = CASE WHEN ?9 THEN "
    "attempts ELSE attempts_base END, prev = CASE WHEN ?10 THEN prev ELSE 0 END WHERE id = ?7";
// After a replay: the destination's chains anew, from its open deliveries in id order. It reads
// every delivery of the destination, as the replay's own state change does.
constexpr char kReplayDropChainsSql[] = "DELETE FROM chains WHERE destination = ?1";
constexpr char kReplayLinksSql[] =
    "UPDATE deliveries SET prev = o.p, head = o.p = 0 FROM (SELECT id, LAG(id, 1, 0) OVER "
    "(PARTITION BY order_key ORDER BY id) AS p FROM deliveries WHERE destination = ?1 "
    "AND " OPEN_STATE("") ") AS o WHERE deliveries.id = o.id";
constexpr char kReplayChainsSql[] =
    "INSERT INTO chains(destination, order_key, tail) SELECT ?1, order_key, MAX(id) FROM "
    "deliveries WHERE destination = ?1 AND " OPEN_STATE("") " GROUP BY order_key";
// Retention: old events whose every delivery is delivered or acknowledged (deliveries_event).
constexpr char kPruneSetSql[] =
    "INSERT INTO prune_set SELECT e.seq FROM events e WHERE e.received_ms < ? AND NOT EXISTS "
    "(SELECT 1 FROM deliveries x WHERE x.event_seq = e.seq AND x.state NOT IN (2, 3))";
constexpr char kDeliveriesOfTreatmentSql[] =
    "SELECT " DELIVERY_COLUMNS
    " FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE e.treatment_id = ? AND "
    "e.treatment_id <> '' ORDER BY d.id";
constexpr char kByExternalIdSql[] =
    "SELECT id FROM deliveries WHERE destination = ? AND external_id = ? ORDER BY id DESC LIMIT 1";

// The console's (and the receipt window's) list of deliveries for `dq`.
std::string list_deliveries_sql(const delivery_query& dq) {
    std::string sql = "SELECT " DELIVERY_COLUMNS
                      " FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id > ?1";
    if (dq.state) sql += " AND d.state = ?2";
    // The term that lets SQLite use the partial deliveries_state (schema 8).
    if (dq.state && *dq.state != delivery_state::in_flight &&
        *dq.state != delivery_state::delivered)
        sql += " AND d.state NOT IN (1, 2)";
    if (!dq.destination.empty()) sql += " AND d.destination = ?3";
    if (!dq.event_id.empty()) sql += " AND e.id = ?4";
    if (dq.since_ms > 0) sql += " AND d.created_ms >= ?5";
    if (dq.updated_before_ms > 0) sql += " AND d.updated_ms < ?7";
    sql += " ORDER BY d.id LIMIT ?6";
    return sql;
}

error_code io_error() {
    return boost::system::errc::make_error_code(boost::system::errc::io_error);
}
// True when the store at `d` keeps envelopes in its events rows (schema 7 and later).
bool has_event_envelopes(db& d) {
    auto& q = d.prepare("SELECT COUNT(*) FROM pragma_table_info('events') WHERE name = 'envelope'");
    bool yes = q.step() && q.i64(0) > 0;
    q.reset();
    return yes;
}

// True when the store at `d` keeps envelopes in the envelope log and marks events a crash lost
// (schema 12 and later; 11 was only the unreleased prototype's).
bool has_envelope_log(db& d) {
    auto& q = d.prepare("SELECT COUNT(*) FROM pragma_table_info('events') WHERE name = 'lost_ms'");
    bool yes = q.step() && q.i64(0) > 0;
    q.reset();
    return yes;
}

// An events row whose envelope is in the envelope log.
struct logged_event {
    std::int64_t seq;
    std::string id;
    envelope_ref ref;
};
// The events after seq `after` whose envelopes are in the envelope log and that a crash did not
// lose, oldest first, at most `limit` (-1: all).
std::vector<logged_event> logged_events(db& d, std::int64_t after, std::int64_t limit = -1) {
    auto& q = d.prepare(
        "SELECT seq, id, env_seg, env_off, env_len FROM events WHERE seq > ? AND env_seg IS NOT "
        "NULL AND lost_ms IS NULL ORDER BY seq LIMIT ?");
    q.bind(1, after).bind(2, limit);
    std::vector<logged_event> out;
    while (q.step()) out.push_back({q.i64(0), q.text(1), {q.i64(2), q.i64(3), q.i64(4)}});
    q.reset();
    return out;
}

// The envelope log's reference in columns `at`..`at`+2 of `q`; nullopt when the envelope is inline.
std::optional<envelope_ref> envelope_ref_at(const stmt& q, int at) {
    if (q.is_null(at)) return std::nullopt;
    return envelope_ref{q.i64(at), q.i64(at + 1), q.i64(at + 2)};
}

// The envelope log's folder for the store at `path`.
fs::path envelope_dir(const std::string& path) {
    return fs::path(path + ".envelopes");
}

error_code busy_error() {
    return boost::system::errc::make_error_code(
        boost::system::errc::resource_unavailable_try_again);
}

// What write_blob did: wrote the blob, or failed reading the source's file (the input's trouble)
// or writing the folder (the folder's trouble, with the errno text).
enum class blob_write { written, source_failed, folder_failed };

// The header of the sealed blob file `fd`, nullopt when it is plain (or too short to be sealed).
std::optional<blob_header> read_blob_header(int fd) {
    std::string first(kBlobHeaderMax, '\0');
    ssize_t n = ::pread(fd, first.data(), first.size(), 0);
    if (n <= 0) return std::nullopt;
    first.resize(static_cast<std::size_t>(n));
    return parse_blob_header(first);
}

// Reads up to `len` bytes of `fd` at `at` into `into` (fewer at the end of the file); false on
// a read error. The sealed-blob readers' way to fetch a range of a blob file.
bool pread_range(int fd, std::uint64_t at, std::size_t len, std::string& into) {
    into.resize(len);
    std::size_t got = 0;
    while (got < len) {
        ssize_t r = ::pread(fd, into.data() + got, len - got, static_cast<off_t>(at + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return false;
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    into.resize(got);
    return true;
}

// True when the blob file holds `size` plaintext bytes, plain or sealed.
bool blob_present(const fs::path& target, std::uint64_t size) {
    std::error_code ec;
    auto on_disk = fs::file_size(target, ec);
    if (ec) return false;
    if (on_disk == size) return true;
    int fd = ::open(target.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    auto h = read_blob_header(fd);
    ::close(fd);
    return h && h->size == size && h->sealed_size() == on_disk;
}

// Writes one blob file: tmp → fsync → rename → fsync dir. `error` names the folder operation and
// the errno text (never the attachment's name: it may name the patient).
// With `keys` the file is sealed (store/blob_seal: chunked AES-256-GCM, one chunk in memory).
blob_write write_blob(const fs::path& target, const attachment_input& a, const keyring* keys,
                      std::string& error) {
    std::error_code ec;
    auto folder_failed = [&](const std::string& what, int err) {
        error = what + ": " + std::strerror(err);
        return blob_write::folder_failed;
    };
    fs::create_directories(target.parent_path(), ec);
    if (ec) return folder_failed("cannot create " + target.parent_path().string(), ec.value());
    fs::path tmp = target;
    tmp += ".tmp" + std::to_string(::getpid()) + "-" +
           std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return folder_failed("cannot create " + tmp.string(), errno);
    int werr = 0;
    auto write_all = [&](const char* p, std::size_t n) {
        while (n > 0) {
            ssize_t w = ::write(fd, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                werr = w < 0 ? errno : ENOSPC;
                return false;
            }
            p += w;
            n -= static_cast<std::size_t>(w);
        }
        return true;
    };
    bool ok = true, source_ok = true;
    std::optional<blob_sealer> sealer;
    std::string sealed;
    if (keys) {
        sealer.emplace(*keys, a.meta.sha256, a.path.empty() ? a.bytes.size() : a.meta.size);
        ok = write_all(sealer->header().data(), sealer->header().size());
    }
    // Plaintext out: sealed first when encryption is on (the sealer keeps one chunk).
    auto put = [&](const char* p, std::size_t n) {
        if (!sealer) return write_all(p, n);
        sealed.clear();
        if (!sealer->update(std::string_view(p, n), sealed)) {
            source_ok = false;  // more bytes than the attachment's recorded size
            return false;
        }
        return write_all(sealed.data(), sealed.size());
    };
    if (ok && a.path.empty()) {
        ok = put(a.bytes.data(), a.bytes.size());
    } else if (ok) {
        int in = ::open(a.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            source_ok = false;
        } else {
            std::string buf(64 * 1024, '\0');
            for (;;) {
                ssize_t r = ::read(in, buf.data(), buf.size());
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) source_ok = false;
                if (r <= 0) break;
                if (!put(buf.data(), static_cast<std::size_t>(r))) {
                    ok = false;
                    break;
                }
            }
            ::close(in);
        }
    }
    if (ok && source_ok && sealer) {
        sealed.clear();
        if (!sealer->finish(sealed))
            source_ok = false;  // fewer bytes than the attachment's recorded size
        else
            ok = write_all(sealed.data(), sealed.size());
    }
    if (ok && source_ok && ::fsync(fd) != 0) {
        ok = false;
        werr = errno;
    }
    ::close(fd);
    if (!ok || !source_ok) {
        fs::remove(tmp, ec);
        if (!source_ok) {
            error = "cannot read the attachment's source file (or its size changed)";
            return blob_write::source_failed;
        }
        return folder_failed("cannot write " + tmp.string(), werr);
    }
    fs::rename(tmp, target, ec);
    if (ec) {
        fs::remove(tmp, ec);
        return folder_failed("cannot rename into " + target.parent_path().string(), ec.value());
    }
    if (!fsync_dir(target.parent_path()))
        return folder_failed("cannot fsync " + target.parent_path().string(), errno);
    return blob_write::written;
}

class sqlite_store final : public store {
public:
    explicit sqlite_store(const sqlite_options& opts)
        : opts_(opts),
          blobs_(opts.path + ".blobs"),
          wdb_(open_db(opts, true, false, wal_vfs_.name())),
          rdb_(open_db(opts, false)) {
        migrate();
        // Before check_keys, which may read the newest envelope from it.
        log_ = std::make_unique<envelope_log>(envelope_dir(opts.path));
        last_hash_ = load_last_hash();
        // Before check_keys: the newest event's record may be one a crash lost.
        recover_lost();
        check_keys();
        check_blob_keys();
        // WAL checkpoints run on their own connection and thread, not inside the writer's
        // commits: a checkpoint copies megabytes into the database file and syncs it, which held
        // every queued submit and claim for tens of milliseconds (the p99 at half rate).
        ckdb_ = std::make_unique<db>(open_db(opts, false, opts.synchronous_full));
        sqlite3_wal_hook(wdb_.raw(), &sqlite_store::on_wal, this);
        if (opts.synchronous_full) wal_ = open_wal(wdb_);
        checkpointer_ = std::thread([this] {
            core::name_this_thread("store-checkpt");
            checkpoint_loop();
        });
        syncer_ = std::thread([this] {
            core::name_this_thread("store-sync");
            sync_loop();
        });
        log_syncer_ = std::thread([this] {
            core::name_this_thread("store-envsync");
            log_sync_loop();
        });
        writer_ = std::thread([this] {
            core::name_this_thread("store-writer");
            writer_loop();
        });
    }

    ~sqlite_store() override {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        if (writer_.joinable()) writer_.join();
        {
            std::lock_guard lock(sync_mu_);
            sync_stop_ = true;
        }
        sync_cv_.notify_all();
        // Every commit acknowledged first: the syncer waits for the log's syncs, so the log-sync
        // thread stops after it.
        if (syncer_.joinable()) syncer_.join();
        {
            std::lock_guard lock(log_mu_);
            log_stop_ = true;
        }
        log_cv_.notify_all();
        if (log_syncer_.joinable()) log_syncer_.join();
        // A clean close: every record is synced (each acknowledged commit waited for it), so
        // the next open checks none. Best effort: an older watermark only makes it check more.
        if (!failed_ && !log_failed_.load() && !sync_failed_) {
            try {
                wdb_.exec(
                    "UPDATE envlog_durable SET seq = (SELECT COALESCE(MAX(seq), 0) FROM events)");
            } catch (const std::exception&) {
            }
        }
        {
            std::lock_guard lock(ck_mu_);
            ck_stop_ = true;
        }
        ck_cv_.notify_all();
        if (checkpointer_.joinable()) checkpointer_.join();
    }

    // ---- writes (queued for the writer thread) ----

    void submit(new_event ev, submit_handler done) override {
        // Blobs are written and fsynced by the caller's thread, before the commit that names them.
        // Each blob is referenced (blob_refs_) from before it is written until after that commit,
        // so retention never deletes it as an orphan in between.
        std::vector<std::string> shas;
        for (const auto& a : ev.attachments) shas.push_back(a.meta.sha256);
        ref_blobs(shas, +1);
        for (const auto& a : ev.attachments) {
            // While the folder is in trouble only one write per back-off delay tries it (the
            // probe); the other submits are refused at once, with no disk I/O and no log line.
            fs::path target = blob_file(a.meta.sha256);
            if (blob_present(target, a.meta.size)) continue;
            error_code ec;
            if (!blob_guard_.may_write()) {
                ec = blob_folder_error();
            } else {
                std::string err;
                switch (write_blob(target, a, opts_.keys.get(), err)) {
                    case blob_write::written:
                        blob_guard_.succeeded();
                        break;
                    case blob_write::source_failed:
                        blob_guard_.succeeded();  // the folder took what it was given
                        ec = io_error();
                        break;
                    case blob_write::folder_failed:
                        blob_guard_.failed(err);
                        ec = blob_folder_error();
                        break;
                }
            }
            if (ec) {
                ref_blobs(shas, -1);
                done(ec, {});
                return;
            }
        }
        // The envelope goes to the envelope log here, on the submitting thread (sealed first
        // when encryption is on); the events row will hold only its reference. The record is
        // synced beside the WAL after the row's COMMIT, and nothing about the event is told
        // before both syncs (sync_loop); a crash in between leaves a row whose record may be
        // gone, found and marked lost at the next open (recover_lost).
        std::string sealed;
        std::string_view bytes = ev.envelope_json;
        if (opts_.keys) {
            sealed = seal_column(opts_.keys.get(), ev.envelope_json, "payload:" + ev.id);
            bytes = sealed;
        }
        auto a = log_->append(bytes, ev.id);
        if (!a) {
            ref_blobs(shas, -1);
            done(io_error(), {});
            return;
        }
        std::string{}.swap(sealed);
        std::string{}.swap(ev.envelope_json);  // in the log now; the job needs only the reference
        hold_segment(a->ref.segment, +1);
        auto e = std::make_shared<new_event>(std::move(ev));
        auto out = std::make_shared<submit_outcome>();
        enqueue(job{[this, e, out, ref = a->ref](db& d) { do_submit(d, *e, ref, *out); },
                    [this, done = std::move(done), out, shas = std::move(shas),
                     seg = a->ref.segment](error_code ec) {
                        ref_blobs(shas, -1);
                        hold_segment(seg, -1);
                        done(ec, *out);
                    },
                    a->ticket});
    }

    void record_error(error_record rec, std::function<void(error_code)> done) override {
        auto r = std::make_shared<error_record>(std::move(rec));
        enqueue(job{[this, r](db& d) {
                        auto& st = d.prepare(
                            "INSERT INTO errors(at_ms, source, reason, idempotency_key, payload) "
                            "VALUES(?,?,?,?,?)");
                        st.bind(1, core::now_ms()).bind(2, r->source).bind(3, r->reason);
                        st.bind(4, r->idempotency_key)
                            .bind(5, seal_column(opts_.keys.get(), r->payload,
                                                 "error:" + r->source + ":" + r->idempotency_key));
                        st.exec();
                        add_audit(d, "ingest", "event.rejected", "source:" + r->source, r->reason);
                    },
                    std::move(done)});
    }

    void update(std::vector<delivery_update> ups, std::function<void(error_code)> done) override {
        auto u = std::make_shared<std::vector<delivery_update>>(std::move(ups));
        enqueue(job{[this, u](db& d) {
                        for (const auto& x : *u) do_update(d, x);
                    },
                    std::move(done)},
                lane::engine);
    }

    void record_receipt(receipt_record r, std::function<void(error_code)> done) override {
        auto rp = std::make_shared<receipt_record>(std::move(r));
        enqueue(job{[rp](db& d) {
                        auto& st = d.prepare(
                            "INSERT INTO receipts(destination, external_id, kind, text, at_ms) "
                            "VALUES(?,?,?,?,?)");
                        st.bind(1, rp->destination).bind(2, rp->external_id).bind(3, rp->kind);
                        st.bind(4, rp->text).bind(5, core::now_ms());
                        st.exec();
                    },
                    std::move(done)});
    }

    void audit(std::string actor, std::string action, std::string subject,
               std::string detail) override {
        auto a = std::make_shared<std::array<std::string, 4>>(std::array<std::string, 4>{
            std::move(actor), std::move(action), std::move(subject), std::move(detail)});
        // The engine lane: an audit row the engine or an operator writes beside a state change
        // stays in order with it.
        enqueue(job{[this, a](db& d) { add_audit(d, (*a)[0], (*a)[1], (*a)[2], (*a)[3]); }, {}},
                lane::engine);
    }

    bool set_accept_claims(accept_claims c) override {
        std::lock_guard lock(accept_mu_);
        if (c.take && c.give_back && c.claimed && c.due)
            accept_ = std::make_shared<const accept_claims>(std::move(c));
        else
            accept_.reset();
        return true;
    }

    void claim_due_async(std::string_view destination, std::int64_t now_ms, std::size_t limit,
                         int max_attempts, claim_handler done) override {
        auto rows = std::make_shared<std::vector<delivery_row>>();
        std::string dest(destination);
        enqueue(job{[this, rows, dest, now_ms, limit, max_attempts](db& d) {
                        do_claim(d, dest, now_ms, limit, max_attempts, *rows);
                    },
                    [rows, done = std::move(done)](error_code ec) {
                        if (ec) rows->clear();
                        done(ec, std::move(*rows));
                    }},
                lane::claim);
    }

    // ---- reads (own connection) ----

    boost::system::result<std::vector<std::pair<std::int64_t, error_record>>> list_errors(
        std::size_t limit) override {
        return read([&] {
            std::vector<std::pair<std::int64_t, error_record>> out;
            auto& q = rdb_.prepare(
                "SELECT id, source, reason, payload, idempotency_key FROM errors ORDER BY id DESC "
                "LIMIT ?");
            q.bind(1, static_cast<std::int64_t>(limit));
            while (q.step()) {
                error_record r{q.text(1), q.text(2), q.text(3), q.text(4)};
                r.payload = open_column(opts_.keys.get(), std::move(r.payload),
                                        "error:" + r.source + ":" + r.idempotency_key);
                out.emplace_back(q.i64(0), std::move(r));
            }
            q.reset();
            return out;
        });
    }

    boost::system::result<std::optional<error_record>> get_error(std::int64_t id) override {
        return read([&] {
            std::optional<error_record> out;
            auto& q = rdb_.prepare(
                "SELECT source, reason, payload, idempotency_key FROM errors WHERE id = ?");
            q.bind(1, id);
            if (q.step()) {
                out = error_record{q.text(0), q.text(1), q.text(2), q.text(3)};
                out->payload = open_column(opts_.keys.get(), std::move(out->payload),
                                           "error:" + out->source + ":" + out->idempotency_key);
            }
            q.reset();
            return out;
        });
    }

    boost::system::result<std::optional<std::int64_t>> find_by_external_id(
        std::string_view destination, std::string_view external_id) override {
        return read([&] {
            auto& q = rdb_.prepare(kByExternalIdSql);
            q.bind(1, destination).bind(2, external_id);
            std::optional<std::int64_t> out;
            if (q.step()) out = q.i64(0);
            q.reset();
            return out;
        });
    }

    boost::system::result<std::optional<event_row>> get_event(std::string_view id) override {
        return read([&] { return event_by_id(id); });
    }

    // One read transaction for the lot: SQLite drops its page cache at every read transaction
    // that finds the database changed (the writer commits every few milliseconds), so each event
    // read alone read the b-tree pages above it again, and took and released the WAL read lock.
    std::vector<boost::system::result<std::optional<event_row>>> get_events(
        const std::vector<std::string>& ids) override {
        using one = boost::system::result<std::optional<event_row>>;
        std::vector<one> out;
        out.reserve(ids.size());
        auto all = read([&] {
            rdb_.exec("BEGIN;");  // read() rolls it back if a read throws
            for (const auto& id : ids) {
                try {
                    std::optional<event_row> ev = event_by_id(id);
                    out.emplace_back(std::move(ev));
                } catch (const sealed_failure&) {
                    rdb_.reset_all();
                    out.push_back(sealed_record_error());
                }
            }
            rdb_.exec("COMMIT;");
            return std::monostate{};
        });
        if (!all) {
            // A storage error: every event not read yet fails with it (the read ones stand).
            while (out.size() < ids.size()) out.push_back(all.error());
        }
        return out;
    }

    boost::system::result<std::vector<event_row>> events_of_treatment(
        std::string_view treatment_id) override {
        // The whole history: the gate decides on all of it (no row limit).
        return read([&] {
            auto& q = rdb_.prepare(kTreatmentHistorySql);
            q.bind(1, treatment_id);
            std::vector<event_row> out;
            while (q.step()) out.push_back(read_event(q));
            q.reset();
            return out;
        });
    }

    boost::system::result<void> for_each_event(
        std::string_view type_prefix, const std::function<void(const event_row&)>& fn) override {
        auto r = read([&] {
            auto& q = rdb_.prepare(
                "SELECT " EVENT_COLUMNS " FROM " EVENTS_WITH_ENVELOPE
                " WHERE substr(e.type, 1, length(?1)) = ?1 AND e.lost_ms IS NULL ORDER BY e.seq");
            q.bind(1, type_prefix);
            while (q.step()) fn(read_event(q));  // a lost event (schema 12) was never accepted
            q.reset();
            return std::monostate{};
        });
        if (!r) return r.error();
        return {};
    }

    boost::system::result<std::vector<attempt_row>> list_attempts(
        std::int64_t delivery_id) override {
        return read([&] {
            std::vector<attempt_row> out;
            // The attempt in flight is in the delivery row (schema 5) until it ends.
            auto& q = rdb_.prepare(
                "SELECT n, started_ms, ended_ms, state, outcome, reason FROM attempts "
                "WHERE delivery_id = ?1 UNION ALL SELECT d.attempts, d.attempt_started_ms, 0, 1, "
                "'open', '' FROM deliveries d WHERE d.id = ?1 AND d.state = 1 AND "
                "d.attempt_started_ms > 0 AND NOT EXISTS (SELECT 1 FROM attempts a WHERE "
                "a.delivery_id = d.id AND a.n = d.attempts) ORDER BY 1");
            q.bind(1, delivery_id);
            while (q.step()) {
                attempt_row a;
                a.n = q.i64(0);
                a.started_ms = q.i64(1);
                a.ended_ms = q.i64(2);
                std::string outcome = q.text(4);
                a.outcome = outcome == "closed"
                                ? std::string(to_string(static_cast<delivery_state>(q.i64(3))))
                                : outcome;
                a.reason = q.text(5);
                out.push_back(std::move(a));
            }
            q.reset();
            return out;
        });
    }

    boost::system::result<std::vector<receipt_row>> list_receipts(
        std::string_view destination, std::string_view external_id) override {
        return read([&] {
            std::vector<receipt_row> out;
            auto& q = rdb_.prepare(
                "SELECT at_ms, kind, text FROM receipts WHERE destination = ? AND external_id = ? "
                "ORDER BY id");
            q.bind(1, destination);
            q.bind(2, external_id);
            while (q.step())
                out.push_back(
                    receipt_row{q.i64(0), static_cast<std::int32_t>(q.i64(1)), q.text(2)});
            q.reset();
            return out;
        });
    }

    boost::system::result<std::optional<delivery_row>> get_delivery(std::int64_t id) override {
        return read([&] {
            auto& q = rdb_.prepare("SELECT " DELIVERY_COLUMNS
                                   " FROM deliveries d JOIN events e ON e.seq = d.event_seq "
                                   "WHERE d.id = ?");
            q.bind(1, id);
            std::optional<delivery_row> out;
            if (q.step()) out = read_delivery(q);
            q.reset();
            return out;
        });
    }

    boost::system::result<std::vector<delivery_row>> list_deliveries(
        const delivery_query& dq) override {
        return read([&] {
            auto& q = rdb_.prepare(list_deliveries_sql(dq));
            q.bind(1, dq.after_id);
            if (dq.state) q.bind(2, code(*dq.state));
            if (!dq.destination.empty()) q.bind(3, dq.destination);
            if (!dq.event_id.empty()) q.bind(4, dq.event_id);
            if (dq.since_ms > 0) q.bind(5, dq.since_ms);
            q.bind(6, static_cast<std::int64_t>(dq.limit));
            if (dq.updated_before_ms > 0) q.bind(7, dq.updated_before_ms);
            std::vector<delivery_row> out;
            while (q.step()) out.push_back(read_delivery(q));
            q.reset();
            return out;
        });
    }

    boost::system::result<std::vector<destination_stats>> stats() override {
        return read([&] {
            std::map<std::string, destination_stats> by;
            auto& q = rdb_.prepare(
                "SELECT destination, state, COUNT(*), MIN(created_ms) FROM deliveries GROUP BY "
                "destination, state");
            while (q.step()) {
                auto& s = by[q.text(0)];
                s.destination = q.text(0);
                auto st = from_code(q.i64(1));
                if (!st) continue;
                s.by_state[code(*st)] = q.i64(2);
                if (*st == delivery_state::pending || *st == delivery_state::failed ||
                    *st == delivery_state::in_flight) {
                    std::int64_t oldest = q.i64(3);
                    if (s.oldest_pending_ms == 0 || oldest < s.oldest_pending_ms)
                        s.oldest_pending_ms = oldest;
                }
            }
            q.reset();
            std::vector<destination_stats> out;
            for (auto& [k, v] : by) out.push_back(v);
            return out;
        });
    }

    boost::system::result<std::size_t> read_attachment(std::string_view sha256,
                                                       std::uint64_t offset, std::uint8_t* out,
                                                       std::size_t capacity) override {
        if (sha256.size() != 64 ||
            sha256.find_first_not_of("0123456789abcdef") != std::string_view::npos)
            return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
        int fd = ::open(blob_file(sha256).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return boost::system::errc::make_error_code(
                boost::system::errc::no_such_file_or_directory);
        struct fd_close {
            int fd;
            ~fd_close() { ::close(fd); }
        } closer{fd};
        if (auto h = read_blob_header(fd)) {
            struct stat st {};
            if (::fstat(fd, &st) != 0) return io_error();
            auto n = read_sealed_blob(opts_.keys.get(), *h, sha256,
                                      static_cast<std::uint64_t>(st.st_size), offset, out, capacity,
                                      [fd](std::uint64_t at, std::size_t len, std::string& into) {
                                          return pread_range(fd, at, len, into);
                                      });
            if (!n) return n.error().auth ? sealed_record_error() : io_error();
            return *n;
        }
        ssize_t n = ::pread(fd, out, capacity, static_cast<off_t>(offset));
        if (n < 0) return io_error();
        return static_cast<std::size_t>(n);
    }

    // A sealed blob has no file a plugin can read: "" (the host hands a decrypted copy instead).
    std::string blob_path(std::string_view sha256) const override {
        fs::path p = blob_file(sha256);
        int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return p.string();  // missing: the plugin's open fails naming it
        bool sealed = read_blob_header(fd).has_value();
        ::close(fd);
        return sealed ? std::string() : p.string();
    }

    boost::system::result<std::vector<delivery_row>> deliveries_of_treatment(
        std::string_view treatment_id) override {
        return read([&] {
            auto& q = rdb_.prepare(kDeliveriesOfTreatmentSql);
            q.bind(1, treatment_id);
            std::vector<delivery_row> out;
            while (q.step()) out.push_back(read_delivery(q));
            q.reset();
            return out;
        });
    }

    boost::system::result<std::vector<audit_row>> list_audit(std::string_view subject,
                                                             std::size_t limit) override {
        return read([&] {
            auto& q = subject.empty()
                          ? rdb_.prepare(
                                "SELECT id, at_ms, actor, action, subject, detail, hash, hash_v "
                                "FROM audit ORDER BY id DESC LIMIT ?2")
                          : rdb_.prepare(
                                "SELECT id, at_ms, actor, action, subject, detail, hash, hash_v "
                                "FROM audit WHERE subject = ?1 ORDER BY id LIMIT ?2");
            if (!subject.empty()) q.bind(1, subject);
            q.bind(2, static_cast<std::int64_t>(limit));
            std::vector<audit_row> out;
            while (q.step())
                out.push_back({q.i64(0), q.i64(1), q.text(2), q.text(3), q.text(4), q.text(5),
                               q.text(6), static_cast<int>(q.i64(7))});
            q.reset();
            return out;
        });
    }

    boost::system::result<std::optional<std::int64_t>> verify_audit_chain() override {
        return read([&] {
            auto& q = rdb_.prepare(kAuditRowsSql);
            audit_chain_check check;
            while (q.step() && check.add(q.i64(0), static_cast<int>(q.i64(7)), q.i64(1), q.text(2),
                                         q.text(3), q.text(4), q.text(5), q.text(6))) {
            }
            q.reset();
            return check.broken_at();
        });
    }

    boost::system::result<std::size_t> recover_in_flight() override {
        return run_sync([](db& d) {
            // The attempts open at the crash stay counted: a delivery that kills the process
            // ends dead after max_attempts of them instead of crashing it forever.
            auto& at = d.prepare(
                "UPDATE attempts SET outcome = 'died', ended_ms = ?1, reason = 'the process ended "
                "during this attempt' WHERE outcome = 'open'");
            at.bind(1, core::now_ms());
            at.exec();
            // Since schema 5 the open attempt is in the delivery row: it becomes a 'died' row.
            auto& died = d.prepare(
                "INSERT OR IGNORE INTO attempts(delivery_id, n, started_ms, ended_ms, state, "
                "reason, outcome) SELECT id, attempts, attempt_started_ms, ?1, 1, 'the process "
                "ended during this attempt', 'died' FROM deliveries WHERE state = 1 AND attempts "
                "> 0");
            died.bind(1, core::now_ms());
            died.exec();
            auto& st = d.prepare(
                "UPDATE deliveries SET state = 0, reason = 'the process ended during attempt ' || "
                "attempts || '; recovered after restart' WHERE state = 1");
            st.exec();
            return static_cast<std::size_t>(d.changes());
        });
    }

    boost::system::result<std::size_t> prune(std::int64_t older_than_ms) override {
        auto refs = std::make_shared<std::vector<envelope_ref>>();
        auto pruned = prune_rows(older_than_ms, refs);
        // The envelope log's segments only after the commit (a rolled-back prune keeps them);
        // the pruned envelopes in segments that stay are overwritten with zeros.
        if (pruned && *pruned > 0) {
            remove_pruned_segments();
            envelope_log::scrub(log_->dir(), *refs);
        }
        return pruned;
    }

    boost::system::result<std::size_t> prune_rows(std::int64_t older_than_ms,
                                                  std::shared_ptr<std::vector<envelope_ref>> refs) {
        return run_sync([this, older_than_ms, refs](db& d) {
            // Events whose every delivery is delivered/acknowledged (or that have none) and
            // that are older than the cut-off. dead/held/blocked keep their event.
            d.exec(
                "CREATE TEMP TABLE IF NOT EXISTS prune_set(seq INTEGER PRIMARY KEY); DELETE FROM "
                "prune_set;");
            auto& ins = d.prepare(kPruneSetSql);
            ins.bind(1, older_than_ms);
            ins.exec();
            std::size_t n = static_cast<std::size_t>(d.changes());
            if (n == 0) return n;
            refs->clear();  // the job may run a second time
            auto& logged = d.prepare(
                "SELECT e.env_seg, e.env_off, e.env_len FROM prune_set s JOIN events e ON e.seq = "
                "s.seq WHERE e.env_seg IS NOT NULL");
            while (logged.step()) refs->push_back(*envelope_ref_at(logged, 0));
            logged.reset();
            d.exec(
                "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE "
                "event_seq IN (SELECT seq FROM prune_set));"
                "DELETE FROM deliveries WHERE event_seq IN (SELECT seq FROM prune_set);"
                "DELETE FROM payloads WHERE event_seq IN (SELECT seq FROM prune_set);"
                "CREATE TEMP TABLE IF NOT EXISTS prune_blobs(sha256 TEXT PRIMARY KEY);"
                "DELETE FROM prune_blobs;"
                "INSERT OR IGNORE INTO prune_blobs SELECT sha256 FROM attachments WHERE event_seq "
                "IN (SELECT seq FROM prune_set);"
                "DELETE FROM attachments WHERE event_seq IN (SELECT seq FROM prune_set);"
                "DELETE FROM events WHERE seq IN (SELECT seq FROM prune_set);");
            auto& orphans = d.prepare(
                "SELECT b.sha256 FROM prune_blobs b WHERE NOT EXISTS (SELECT 1 FROM attachments a "
                "WHERE a.sha256 = b.sha256)");
            std::vector<std::string> gone;
            while (orphans.step()) gone.push_back(orphans.text(0));
            orphans.reset();
            // Files go only after the commit (a rolled-back prune keeps them), and only when no
            // submit holds a reference to the same bytes (its rows may be in a later commit).
            after_commit([this, gone = std::move(gone)] {
                std::lock_guard lock(blob_mu_);
                for (const auto& sha : gone) {
                    if (blob_refs_.count(sha)) continue;
                    std::error_code ec;
                    fs::remove(blob_file(sha), ec);
                }
            });
            add_audit(d, "retention", "events.pruned", "store", std::to_string(n) + " events");
            return n;
        });
    }

    boost::system::result<std::size_t> replay(std::string_view destination, std::int64_t since_ms,
                                              std::string actor) override {
        std::string dest(destination);
        return run_sync([this, dest, since_ms, actor](db& d) {
            auto& st = d.prepare(
                "UPDATE deliveries SET state = 0, next_ms = 0, updated_ms = ?3, attempts_base = "
                "attempts, reason = 'replay by ' || ?4 WHERE destination = ?1 AND created_ms >= ?2 "
                "AND state IN (2, 3, 5)");
            st.bind(1, dest).bind(2, since_ms).bind(3, core::now_ms()).bind(4, actor);
            st.exec();
            std::size_t n = static_cast<std::size_t>(d.changes());
            // Replayed deliveries rejoin their chains: the destination's chains anew.
            for (const char* sql : {kReplayDropChainsSql, kReplayLinksSql, kReplayChainsSql}) {
                auto& q = d.prepare(sql);
                q.bind(1, dest);
                q.exec();
            }
            mark_due(dest);
            add_audit(d, actor, "deliveries.replay", "destination:" + dest,
                      std::to_string(n) + " deliveries since " + std::to_string(since_ms));
            return n;
        });
    }

    void flush() override {
        std::promise<void> p;
        auto f = p.get_future();
        enqueue(job{[](db&) {}, [&p](error_code) { p.set_value(); }});
        f.wait();
    }

    void on_commit(std::function<void(const commit_info&)> fn) override {
        std::lock_guard lock(mu_);
        on_commit_ = std::move(fn);
    }
    open_check opened() const override { return opened_; }

    void on_fatal(std::function<void(std::string)> fn) override {
        std::lock_guard lock(mu_);
        on_fatal_ = std::move(fn);
    }
    blob_health blob_state() const override { return blob_guard_.state(); }
    void on_blob_state(std::function<void(const blob_health&)> fn) override {
        blob_guard_.on_change(std::move(fn));
    }

private:
    struct job {
        std::function<void(db&)> run;
        std::function<void(error_code)> done;
        // The envelope log's ticket of the job's envelope (0: none): the job's commit is
        // acknowledged only once the log is synced through it (sync_loop).
        std::uint64_t log_ticket = 0;
    };
    // The engine's state changes go in the next commit ahead of queued submits, and its claims
    // after them: a claim that waited behind a full batch of 8 KB submits would cap delivery at
    // one claim per two commits while ingest runs, and a claim after the submits takes what that
    // same commit stored (one commit's fsync less between accept and delivery). All lanes share
    // each commit (and its fsync).
    enum class lane { ingest, engine, claim };

    // After each commit (writer thread): wakes the checkpointer once the WAL holds
    // kCheckpointPages. The WAL starts over only after a checkpoint that caught up with the last
    // commit, which a checkpoint running beside a busy writer rarely does: so the writer
    // checkpoints itself, as SQLite's auto-checkpoint would, copying only what the checkpointer
    // has not, once the WAL reaches 2x that size with no job waiting, and at 4x in any case (or
    // should the checkpointer fail). At full rate jobs always wait: at 2x regardless the writer
    // copied half the WAL itself (a fifth of its time, session 16's perf); at 4x regardless the
    // WAL grew to 17 MB and a run in five at 1,500 events/s stalled for 0.6-0.9 s (566293b).
    static int on_wal(void* self_ptr, sqlite3* raw, const char* name, int pages) {
        auto* self = static_cast<sqlite_store*>(self_ptr);
        bool now = pages >= kCheckpointPages * 4 || self->ck_failed_.load();
        if (!now && pages >= kCheckpointPages * 2) {
            std::lock_guard lock(self->mu_);
            now = self->nothing_queued();
        }
        if (now) {
            sqlite3_wal_checkpoint_v2(raw, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
            return SQLITE_OK;
        }
        if (pages >= kCheckpointPages) {
            {
                std::lock_guard lock(self->ck_mu_);
                self->ck_due_ = true;
            }
            self->ck_cv_.notify_one();
        }
        return SQLITE_OK;
    }

    void checkpoint_loop() {
        std::unique_lock lock(ck_mu_);
        for (;;) {
            ck_cv_.wait(lock, [&] { return ck_stop_ || ck_due_; });
            if (ck_stop_) return;
            ck_due_ = false;
            lock.unlock();
            // PASSIVE: copies what no reader still needs, never waits for the writer.
            int rc = sqlite3_wal_checkpoint_v2(ckdb_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                               nullptr, nullptr);
            int primary = rc & 0xff;
            if (rc != SQLITE_OK && primary != SQLITE_BUSY && primary != SQLITE_LOCKED)
                ck_failed_.store(true);  // the writer checkpoints from now on
            lock.lock();
        }
    }

    static db open_db(const sqlite_options& o, bool writer, bool sync_full = false,
                      const char* vfs = nullptr) {
        fs::path p(o.path);
        if (p.has_parent_path()) {
            std::error_code ec;
            fs::create_directories(p.parent_path(), ec);
        }
        db d(o.path, false, vfs);
        d.exec("PRAGMA busy_timeout = 10000;");
        if (writer) {
            d.exec("PRAGMA journal_mode = WAL;");
            // NORMAL on the writer's connection: its commits do not sync the WAL. With
            // synchronous_full the store syncs it itself (sync_loop) before any job of the commit
            // is acknowledged, while the writer runs the next batch; checkpoints still sync the
            // WAL before copying it and the database file after, as SQLite does in both modes.
            d.exec("PRAGMA synchronous = NORMAL;");
            d.exec(
                "PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY; PRAGMA cache_size = "
                "-16000;");
        } else {
            d.exec("PRAGMA cache_size = -8000;");
            // The checkpointer's connection syncs the database file as the writer would.
            if (sync_full) d.exec("PRAGMA synchronous = FULL;");
        }
        return d;
    }

    void migrate() {
        wdb_.exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);");
        int v = 0;
        {
            auto& q = wdb_.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
            if (q.step()) v = static_cast<int>(q.i64(0));
            q.reset();
        }
        if (v > kSchemaVersion) {
            throw std::runtime_error("store " + opts_.path + " has schema version " +
                                     std::to_string(v) + ", newer than this samband knows (" +
                                     std::to_string(kSchemaVersion) +
                                     "); run the newer samband or restore a backup");
        }
        // Migrations sort and stage whole tables (10: every open delivery): in temporary files,
        // not in memory (on 1,000,000 pending, migration 10's peak was about 95 MB above the
        // start in memory, 34 MB with files, and no slower).
        if (v < kSchemaVersion) wdb_.exec("PRAGMA temp_store = FILE;");
        for (; v < kSchemaVersion; ++v) {
            wdb_.exec("BEGIN IMMEDIATE;");
            try {
                wdb_.exec(kMigrations[v]);
                wdb_.exec("DELETE FROM schema_version; INSERT INTO schema_version VALUES(" +
                          std::to_string(v + 1) + ");");
                wdb_.exec("COMMIT;");
            } catch (...) {
                wdb_.exec("ROLLBACK;");
                throw;
            }
        }
        wdb_.exec("PRAGMA temp_store = MEMORY;");
    }

    std::string load_last_hash() {
        auto& q = wdb_.prepare("SELECT hash FROM audit ORDER BY id DESC LIMIT 1");
        std::string h;
        if (q.step()) h = q.text(0);
        q.reset();
        return h;
    }

    // Start-up, before the threads (late sync, schema 12): the records of the rows above the
    // durable watermark (envlog_durable) are checked; an event whose record is missing, torn or
    // another's was committed but never acknowledged (acknowledgements and hand-offs wait for
    // the log's sync: sync_loop), so it is marked lost, its open deliveries go dead and both are
    // audited; a resend of its key replaces it (do_submit). The records that read whole are
    // synced, and the watermark moves to the newest row, in one commit with the marks.
    void recover_lost() {
        std::int64_t durable = 0;
        {
            auto& q = wdb_.prepare("SELECT seq FROM envlog_durable WHERE id = 1");
            if (q.step()) durable = q.i64(0);
            q.reset();
        }
        const std::vector<logged_event> rows = logged_events(wdb_, durable);
        // Every commit after the first lost record's was never acknowledged either
        // (acknowledgements go in commit order, each after its records' sync), and rows go in
        // commit order by seq: the events after it are set aside too, so that the source's
        // resends are stored in the order it sends them. Kept, a later event of the same patient
        // (an avslutningsnotat, say) would be delivered ahead of the resend of the lost one (an
        // objection to it).
        std::set<std::int64_t> segments;
        std::vector<const logged_event*> lost;
        const logged_event* first_lost = nullptr;
        for (const auto& r : rows) {
            if (first_lost) {
                lost.push_back(&r);
                continue;
            }
            auto got = log_->read(r.ref, r.id);
            if (got) {
                segments.insert(r.ref.segment);
                continue;
            }
            if (!envelope_log::record_missing(got.error()))
                throw std::runtime_error("store " + opts_.path + ": cannot read the envelope of " +
                                         "event " + r.id + " at open: " + got.error().message());
            first_lost = &r;
            lost.push_back(&r);
        }
        opened_.envelopes_checked = rows.size();
        for (const logged_event* r : lost) opened_.lost_events.push_back(r->id);
        if (auto ec = envelope_log::sync_segments(log_->dir(), segments))
            throw std::runtime_error("store " + opts_.path +
                                     ": cannot sync the envelope log: " + ec.message());
        std::int64_t newest = 0;
        {
            auto& q = wdb_.prepare("SELECT COALESCE(MAX(seq), 0) FROM events");
            if (q.step()) newest = q.i64(0);
            q.reset();
        }
        durable_seq_ = durable;
        max_seq_ = newest;
        if (lost.empty() && durable == newest) return;  // a clean stop: nothing to write
        std::int64_t now = core::now_ms();
        wdb_.exec("BEGIN IMMEDIATE;");
        try {
            pending_hash_ = last_hash_;
            for (const logged_event* r : lost) {
                auto& up = wdb_.prepare("UPDATE events SET lost_ms = ? WHERE seq = ?");
                up.bind(1, now).bind(2, r->seq);
                up.exec();
                // Its open deliveries go dead through the transition table, as any state change;
                // one claimed at accept (in flight) never reached its sink: its attempt is handed
                // back, not counted. One held or blocked by an operator stays so (the table
                // allows no dead from there); released, the engine finds the event lost.
                std::vector<std::pair<std::int64_t, bool>> open;  // id, in flight
                auto& q = wdb_.prepare(
                    "SELECT id, state FROM deliveries WHERE event_seq = ? AND state IN (0, 1, 4) "
                    "ORDER BY id");
                q.bind(1, r->seq);
                while (q.step())
                    open.emplace_back(q.i64(0), q.i64(1) == code(delivery_state::in_flight));
                q.reset();
                for (auto [id, in_flight] : open) {
                    delivery_update u;
                    u.delivery_id = id;
                    u.state = delivery_state::dead;
                    u.reason = kLostReason;
                    u.hand_back = in_flight;
                    u.actor = "store";
                    do_update(wdb_, u);
                }
                add_audit(wdb_, "store", "event.lost", "event:" + r->id,
                          std::string(kLostReason) +
                              (r == first_lost
                                   ? " (its envelope log record, segment " +
                                         std::to_string(r->ref.segment) + " offset " +
                                         std::to_string(r->ref.offset) + ", did not survive)"
                                   : " (stored after event " + first_lost->id +
                                         ", whose envelope did not survive; set aside so that "
                                         "the resends keep their order)"));
            }
            wdb_.exec(
                "UPDATE envlog_durable SET seq = (SELECT COALESCE(MAX(seq), 0) FROM events);");
            wdb_.exec("COMMIT;");
        } catch (...) {
            wdb_.reset_all();
            wdb_.exec("ROLLBACK;");
            throw;
        }
        last_hash_ = pending_hash_;
        due_.clear();
        durable_seq_ = newest;
    }

    // Writer thread only.
    void add_audit(db& d, const std::string& actor, const std::string& action,
                   const std::string& subject, const std::string& detail) {
        std::int64_t at = core::now_ms();
        std::string h =
            audit_hash(kAuditHashVersion, pending_hash_, at, actor, action, subject, detail);
        auto& st = d.prepare(
            "INSERT INTO audit(at_ms, actor, action, subject, detail, hash, hash_v) "
            "VALUES(?,?,?,?,?,?,?)");
        st.bind(1, at).bind(2, actor).bind(3, action).bind(4, subject).bind(5, detail).bind(6, h);
        st.bind(7, static_cast<std::int64_t>(kAuditHashVersion));
        st.exec();
        pending_hash_ = h;
    }

    // Start-up: the oldest and the newest stored envelope must open with the configured keys (a
    // missing or wrong key is a clear error naming the key id, not garbage read later).
    // Start-up: the newest attachment must open too (a blob sealed under a key that is not
    // configured stops the start naming the key id, as an envelope does).
    void check_blob_keys() {
        auto& q = rdb_.prepare("SELECT sha256 FROM attachments ORDER BY rowid DESC LIMIT 1");
        std::string sha = q.step() ? q.text(0) : std::string();
        q.reset();
        if (sha.empty()) return;
        int fd = ::open(blob_file(sha).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return;  // pruned or lost: its delivery says so
        auto h = read_blob_header(fd);
        ::close(fd);
        if (!h) return;
        std::uint8_t first = 0;
        auto r = read_attachment(sha, 0, &first, 1);
        if (!r && r.error() == sealed_record_error())
            throw std::runtime_error(
                "store " + opts_.path + ": stored attachments do not open with the configured " +
                "keys: attachment sha256 " + sha + " is sealed under encryption key \"" +
                h->key_id + "\"" +
                (!opts_.keys                   ? ", but store.encryption is not configured"
                 : !opts_.keys->has(h->key_id) ? ", which is not configured"
                                               : " and failed authentication"));
    }

    void check_keys() {
        for (const char* order : {"ASC", "DESC"}) {
            auto& q = rdb_.prepare(std::string("SELECT e.id, " ENVELOPE ", " ENVELOPE_REF
                                               " FROM " EVENTS_WITH_ENVELOPE
                                               " WHERE e.lost_ms IS NULL ORDER BY e.seq ") +
                                   order + " LIMIT 1");
            std::string id, stored;
            if (q.step()) {
                id = q.text(0);
                try {
                    stored = stored_envelope(q, 1, 2, id);
                } catch (const std::runtime_error& e) {
                    q.reset();
                    throw std::runtime_error("store " + opts_.path + ": " + e.what());
                }
            }
            q.reset();
            if (stored.empty()) return;
            try {
                open_column(opts_.keys.get(), stored, "payload:" + id);
            } catch (const sealed_failure& e) {
                throw std::runtime_error("store " + opts_.path +
                                         ": stored events do not open with "
                                         "the configured keys: " +
                                         e.what());
            }
        }
    }

    fs::path blob_file(std::string_view sha) const {
        std::string s(sha);
        return blobs_ / s.substr(0, 2) / s;
    }

    void do_submit(db& d, const new_event& ev, const envelope_ref& ref, submit_outcome& out) {
        out = submit_outcome{};  // the job may run a second time (see writer_loop)
        std::int64_t now = core::now_ms();
        // Inserted unless the source's key is stored already (the unique index finds out in the
        // same step: no lookup of its own before each insert).
        auto insert = [&] {
            auto& ins = d.prepare(
                "INSERT INTO events(id, source, idempotency_key, type, occurred_at, treatment_id, "
                "order_key, received_ms, content_sha256, env_seg, env_off, env_len) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(source, idempotency_key) DO NOTHING");
            ins.bind(1, ev.id).bind(2, ev.source).bind(3, ev.idempotency_key).bind(4, ev.type);
            ins.bind(5, ev.occurred_at).bind(6, ev.treatment_id).bind(7, ev.order_key).bind(8, now);
            ins.bind(9, ev.content_sha256);
            // The envelope is in the envelope log: its reference only.
            ins.bind(10, ref.segment).bind(11, ref.offset).bind(12, ref.length);
            ins.exec();
            return d.changes() != 0;
        };
        if (!insert()) {
            // The source gave this key before: the same content is a duplicate (the first event
            // answers), other content a conflict; an event lost by a crash (never acknowledged,
            // recover_lost) is replaced.
            auto& dup = d.prepare(
                "SELECT id, content_sha256, seq, lost_ms FROM events WHERE source = ? AND "
                "idempotency_key = ?");
            dup.bind(1, ev.source).bind(2, ev.idempotency_key);
            if (!dup.step()) {
                dup.reset();
                throw std::runtime_error("event " + ev.id + " was neither stored nor found");
            }
            out.event_id = dup.text(0);
            std::string first = dup.text(1);
            std::int64_t lost_seq = dup.is_null(3) ? 0 : dup.i64(2);
            dup.reset();
            if (lost_seq != 0) {
                // The resend is stored as a new event under the id it came with (its envelope
                // record and seal are bound to that id); the lost row keeps its id, dead
                // deliveries and audit rows, its key moved aside so the new row takes it.
                auto& aside = d.prepare(
                    "UPDATE events SET idempotency_key = idempotency_key || char(31) || 'lost:' || "
                    "id WHERE seq = ?");
                aside.bind(1, lost_seq);
                aside.exec();
                add_audit(d, "source:" + ev.source, "event.replaced", "event:" + out.event_id,
                          "lost before acknowledgement; sent again as event:" + ev.id);
                if (!insert())
                    throw std::runtime_error("event " + ev.id + " did not replace lost event " +
                                             out.event_id);
            } else {
                if (!first.empty() && !ev.content_sha256.empty() && first != ev.content_sha256) {
                    out.conflict = true;
                    return;
                }
                out.duplicate = true;
                return;
            }
        }
        ++counts_.events;
        std::int64_t seq = d.last_rowid();
        batch_min_seq_ = std::min(batch_min_seq_, seq);
        batch_max_seq_ = std::max(batch_max_seq_, seq);
        for (const auto& a : ev.attachments) {
            auto& at = d.prepare(
                "INSERT INTO attachments(event_seq, att_id, filename, media_type, sha256, size) "
                "VALUES(?,?,?,?,?,?)");
            at.bind(1, seq).bind(2, a.meta.id).bind(3, a.meta.filename).bind(4, a.meta.media_type);
            at.bind(5, a.meta.sha256).bind(6, static_cast<std::int64_t>(a.meta.size));
            at.exec();
        }
        auto claims = accepting();
        std::shared_ptr<accepted> took_now;
        for (const auto& nd : ev.deliveries) {
            // Claimed at accept when the engine has room at the destination and the chain is
            // idle: stored in flight with its attempt counted, in this commit.
            bool took =
                claims && nd.state == delivery_state::pending && claims->take(nd.destination);
            if (took) {
                // Held until the insert says what became of it (given back if it throws).
                if (!took_now) took_now = std::make_shared<accepted>(claims);
                took_now->slots.push_back(nd.destination);
            }
            // Claimed only when its chain is idle; else stored as routed, behind its chain's
            // last delivery (heading the chain when it has none).
            bool in_chain = chained(nd.state);
            std::int64_t tail = in_chain ? chain_tail(d, nd.destination, ev.order_key) : 0;
            bool idle = took && tail == 0;
            if (idle) {
                auto& ins = d.prepare(kInsertClaimedDeliverySql);
                ins.bind(1, seq).bind(2, nd.destination).bind(3, nd.route).bind(4, ev.order_key);
                ins.bind(5, now).bind(6, nd.reason);
                ins.exec();
            } else {
                auto& ins = d.prepare(kInsertDeliverySql);
                ins.bind(1, seq).bind(2, nd.destination).bind(3, nd.route);
                ins.bind(4, static_cast<std::int64_t>(nd.state)).bind(5, ev.order_key);
                ins.bind(6, now).bind(7, nd.reason).bind(8, tail);
                ins.exec();
            }
            std::int64_t id = d.last_rowid();
            if (in_chain) set_chain_tail(d, nd.destination, ev.order_key, id);
            std::int64_t state = idle ? code(delivery_state::in_flight) : code(nd.state);
            if (took) took_now->slots.pop_back();
            if (state == code(delivery_state::in_flight)) {
                ++counts_.claimed;
                delivery_row r;
                r.id = id;
                r.event_id = ev.id;
                r.destination = nd.destination;
                r.route = nd.route;
                r.state = delivery_state::in_flight;
                r.attempts = 1;
                r.reason = nd.reason;
                r.order_key = ev.order_key;
                r.event_type = ev.type;
                r.created_ms = now;
                r.updated_ms = now;
                took_now->rows.push_back(std::move(r));
                continue;
            }
            if (took) claims->give_back(nd.destination);  // its chain was busy
            if (state == code(delivery_state::pending)) mark_due(nd.destination);
        }
        // Handed to the engine after the commit, with the rest of the commit's (hand_accepted);
        // given back if the job rolls back instead.
        if (took_now && !took_now->rows.empty())
            after_commit([this, took_now] { to_hand_.push_back(took_now); });
        add_audit(d, "source:" + ev.source, "event.accepted", "event:" + ev.id,
                  ev.type + " deliveries=" + std::to_string(ev.deliveries.size()));
        out.event_id = ev.id;
        out.duplicate = false;
    }

    // Deliveries claimed at accept by one job: handed to the engine after its commit, or their
    // slots given back when the job rolls back (the after-commit function is dropped).
    struct accepted {
        explicit accepted(std::shared_ptr<const accept_claims> c) : claims(std::move(c)) {}
        ~accepted() {
            for (const auto& dest : slots) claims->give_back(dest);
            if (!handed)
                for (const auto& r : rows) claims->give_back(r.destination);
        }
        accepted(const accepted&) = delete;
        accepted& operator=(const accepted&) = delete;
        std::shared_ptr<const accept_claims> claims;
        std::vector<delivery_row> rows;
        std::vector<std::string> slots;  // taken, the insert not done yet
        bool handed = false;
    };
    // Writer thread, after a commit: the deliveries its accepts claimed go to the engine in one
    // hand-off (one batch for the engine's workers and the sink's call), not one per event.
    void hand_accepted() {
        std::vector<delivery_row> rows;
        std::shared_ptr<const accept_claims> to;
        for (auto& a : to_hand_) {
            if (to && a->claims != to) {
                to->claimed(std::move(rows));
                rows.clear();
            }
            to = a->claims;
            for (auto& r : a->rows) rows.push_back(std::move(r));
            a->rows.clear();
            a->handed = true;
        }
        to_hand_.clear();
        if (to && !rows.empty()) to->claimed(std::move(rows));
    }
    std::shared_ptr<const accept_claims> accepting() {
        std::lock_guard lock(accept_mu_);
        return accept_;
    }
    // Writer thread: notes that a delivery of `dest` may be due that no claim has seen; the engine
    // is told once per destination per commit (tell_due), not once per delivery (a lookup under
    // the engine's locks and a wake-up each, on the writer thread).
    void mark_due(const std::string& dest) {
        if (std::find(due_.begin(), due_.end(), dest) == due_.end()) due_.push_back(dest);
    }
    // Writer thread, once the batch's jobs have run and before its commit (the engine's claim
    // then goes in the next commit, as it did when told at each delivery). Told also when the
    // commit fails: a claim that finds nothing due costs only itself.
    void tell_due() {
        if (due_.empty()) return;
        if (auto c = accepting())
            for (const auto& dest : due_) c->due(dest);
        due_.clear();
    }

    // Writer thread: selects the due deliveries of `dest` and opens one counted attempt each.
    // Only chain heads can be due: the claim reads the destination's marked heads in id order
    // (deliveries_due), never the deliveries queued behind them.
    void do_claim(db& d, const std::string& dest, std::int64_t now_ms, std::size_t limit,
                  int max_attempts, std::vector<delivery_row>& rows) {
        rows.clear();  // the job may run a second time (see writer_loop)
        auto& q = d.prepare(kClaimSql);
        q.bind(1, dest).bind(2, now_ms).bind(3, static_cast<std::int64_t>(limit));
        while (q.step()) rows.push_back(read_delivery(q));
        q.reset();
        std::int64_t now = core::now_ms();
        // The attempt is counted (durably, in this commit) before any plugin sees the delivery;
        // its attempts row is written when it ends.
        auto& up = d.prepare(kClaimOneSql);
        for (auto& r : rows) {
            if (max_attempts > 0 && r.attempts - r.attempts_base >= max_attempts) {
                exhaust(d, r, now);
                continue;
            }
            up.bind(1, now).bind(2, r.id);
            up.exec();
            ++counts_.claimed;
            r.attempts += 1;
            r.state = delivery_state::in_flight;
        }
    }

    // A due delivery that already used its attempts: only when the process died during them
    // (or max_attempts was lowered). It goes dead, saying so, without reaching a plugin again.
    void exhaust(db& d, delivery_row& r, std::int64_t now) {
        auto& c = d.prepare(
            "SELECT COUNT(*) FROM attempts WHERE delivery_id = ? AND n > ? AND outcome = 'died'");
        c.bind(1, r.id).bind(2, r.attempts_base);
        std::int64_t died = c.step() ? c.i64(0) : 0;
        c.reset();
        int used = r.attempts - r.attempts_base;
        std::string why = died == used
                              ? "the process died during " + std::to_string(used) + " attempts"
                              : "gave up after " + std::to_string(used) +
                                    " attempts; the process died during " + std::to_string(died) +
                                    " of them";
        auto& st = d.prepare(
            "UPDATE deliveries SET state = 5, reason = ?, updated_ms = ?, prev = 0 WHERE id = ?");
        st.bind(1, why).bind(2, now).bind(3, r.id);
        st.exec();
        // A claimed delivery was its chain's head.
        leave_chain(d, {r.id, 0, r.destination, r.order_key});
        add_audit(d, "engine", "delivery.dead", "delivery:" + std::to_string(r.id), "dead: " + why);
        r.state = delivery_state::dead;
        r.reason = why;
    }

    void do_update(db& d, const delivery_update& u) {
        std::int64_t now = core::now_ms();
        std::string subject = "delivery:" + std::to_string(u.delivery_id);
        auto& cur = d.prepare(
            "SELECT state, destination, order_key, prev, attempt_started_ms FROM deliveries "
            "WHERE id = ?");
        cur.bind(1, u.delivery_id);
        std::optional<delivery_state> from;
        chain_place place{u.delivery_id, 0, {}, {}};
        std::int64_t attempt_started_ms = 0;
        bool found = cur.step();
        if (found) {
            from = from_code(cur.i64(0));
            place.dest = cur.text(1);
            place.key = cur.text(2);
            place.prev = cur.i64(3);
            attempt_started_ms = cur.i64(4);
        }
        cur.reset();
        const std::string& dest = place.dest;
        if (!found) return;
        if (!from || !transition_allowed(*from, u.state)) {
            add_audit(d, u.actor, "delivery.transition_refused", subject,
                      std::string(from ? to_string(*from) : "unknown") + " -> " +
                          std::string(to_string(u.state)) +
                          (u.reason.empty() ? "" : ": " + u.reason));
            return;
        }
        if (u.closes_attempt > 0) {
            // The attempts row, written once: started when the delivery row says (read above;
            // an open row from before schema 5 is closed instead).
            auto& at = d.prepare(
                "INSERT INTO attempts(delivery_id, n, started_ms, ended_ms, state, reason, "
                "outcome) VALUES(?5, ?6, ?7, ?1, ?2, ?3, ?4) ON CONFLICT(delivery_id, n) DO "
                "UPDATE SET ended_ms = excluded.ended_ms, state = excluded.state, reason = "
                "excluded.reason, outcome = excluded.outcome");
            at.bind(1, now).bind(2, code(u.state)).bind(3, u.reason);
            at.bind(4, to_string(u.state)).bind(5, u.delivery_id);
            at.bind(6, u.closes_attempt).bind(7, attempt_started_ms);
            at.exec();
        } else if (*from == delivery_state::in_flight && u.state != delivery_state::in_flight &&
                   !u.hand_back) {
            // Moved out of flight without ending its attempt (an operator's hold): the attempt
            // stays on record as open, as it did before schema 5.
            auto& at = d.prepare(
                "INSERT OR IGNORE INTO attempts(delivery_id, n, started_ms, ended_ms, state, "
                "reason, outcome) SELECT id, attempts, attempt_started_ms, 0, 1, '', 'open' FROM "
                "deliveries WHERE id = ? AND attempts > 0");
            at.bind(1, u.delivery_id);
            at.exec();
        }
        if (u.hand_back) {
            auto& del =
                d.prepare("DELETE FROM attempts WHERE delivery_id = ? AND outcome = 'open'");
            del.bind(1, u.delivery_id);
            del.exec();
        }
        auto& st = d.prepare(kSetStateSql);
        st.bind(1, code(u.state)).bind(2, u.reason).bind(3, u.next_attempt_ms);
        st.bind(4, now)
            .bind(5, u.hand_back ? 1 : 0)
            .bind(6, u.external_id)
            .bind(7, u.delivery_id)
            .bind(8, u.override_gate ? 1 : 0)
            .bind(9, u.renew_attempts ? 1 : 0)
            .bind(10, chained(u.state) ? 1 : 0);
        st.exec();
        ++counts_.state_changes;
        if (chained(*from) && !chained(u.state)) leave_chain(d, place);
        if (!chained(*from) && chained(u.state)) join_chain(d, place);
        if (u.state == delivery_state::pending || u.state == delivery_state::failed) mark_due(dest);
        if (u.override_gate) add_audit(d, u.actor, "gate.override", subject, u.reason);
        std::string detail(to_string(u.state));
        if (!u.reason.empty()) detail += ": " + u.reason;
        if (!u.external_id.empty()) detail += " external_id=" + u.external_id;
        add_audit(d, u.actor, "delivery." + std::string(to_string(u.state)), subject, detail);
    }

    // States that keep a delivery in its (destination, order_key) chain: the one with the lowest
    // id among them is the chain's head, marked deliveries.head = 1 (and prev = 0); each of the
    // others waits behind the one before it (prev), and chains names the last (schema 10).
    static bool chained(delivery_state s) {
        return s == delivery_state::pending || s == delivery_state::in_flight ||
               s == delivery_state::failed || s == delivery_state::held;
    }

    // A delivery and its chain: the one it waited behind (0: it headed the chain).
    struct chain_place {
        std::int64_t id, prev;
        std::string dest, key;
    };

    // The chain's last open delivery; 0 when the chain is idle.
    std::int64_t chain_tail(db& d, const std::string& dest, const std::string& key) {
        auto& q = d.prepare(kChainTailSql);
        q.bind(1, dest).bind(2, key);
        std::int64_t tail = q.step() ? q.i64(0) : 0;
        q.reset();
        return tail;
    }
    void set_chain_tail(db& d, const std::string& dest, const std::string& key, std::int64_t id) {
        auto& q = d.prepare(kSetChainTailSql);
        q.bind(1, dest).bind(2, key).bind(3, id);
        q.exec();
    }
    // `id` now waits behind `prev` (0: it heads its chain).
    void relink(db& d, std::int64_t id, std::int64_t prev) {
        auto& q = d.prepare(kRelinkSql);
        q.bind(1, prev).bind(2, id);
        q.exec();
    }

    // A delivery left its chain (its own prev already 0): the one behind it takes its place,
    // heading the chain if it did (and may then be due); with none behind it, the chain ends
    // at the one it waited behind, or is idle.
    void leave_chain(db& d, const chain_place& p) {
        auto& q = d.prepare(kBehindSql);
        q.bind(1, p.id);
        std::int64_t behind = q.step() ? q.i64(0) : 0;
        q.reset();
        if (behind != 0) {
            relink(d, behind, p.prev);
            if (p.prev == 0) mark_due(p.dest);  // the new head may be due
        } else if (p.prev != 0) {
            set_chain_tail(d, p.dest, p.key, p.prev);
        } else {
            auto& drop = d.prepare(kDropChainSql);
            drop.bind(1, p.dest).bind(2, p.key);
            drop.exec();
        }
    }

    // A delivery rejoined its chain (an operator's retry, the gate's release): at its place by
    // id, found walking back from the chain's last delivery (rare; the chain's open deliveries
    // after it, read one by one). It may now head the chain, ahead of one in flight.
    void join_chain(db& d, const chain_place& p) {
        std::int64_t tail = chain_tail(d, p.dest, p.key);
        if (tail == 0 || tail < p.id) {
            relink(d, p.id, tail);
            set_chain_tail(d, p.dest, p.key, p.id);
            return;
        }
        // `after`: the first open delivery after p.id; `before`: the one it waited behind.
        std::int64_t after = tail, before = 0;
        auto& q = d.prepare(kPrevOfSql);
        for (;;) {
            q.bind(1, after);
            before = q.step() ? q.i64(0) : 0;
            q.reset();
            if (before < p.id) break;  // 0 included: `after` headed the chain
            after = before;
        }
        relink(d, p.id, before);
        relink(d, after, p.id);
    }

    static delivery_row read_delivery(stmt& q) {
        delivery_row r;
        r.id = q.i64(0);
        r.event_id = q.text(1);
        r.destination = q.text(2);
        r.route = q.text(3);
        auto st = from_code(q.i64(4));
        if (!st)
            throw std::runtime_error("delivery " + std::to_string(r.id) + " has state code " +
                                     std::to_string(q.i64(4)) + " that this samband does not know");
        r.state = *st;
        r.attempts = static_cast<std::int32_t>(q.i64(5));
        r.next_attempt_ms = q.i64(6);
        r.external_id = q.text(7);
        r.reason = q.text(8);
        r.order_key = q.text(9);
        r.event_type = q.text(10);
        r.created_ms = q.i64(11);
        r.updated_ms = q.i64(12);
        r.overridden = q.i64(13) != 0;
        r.attempts_base = static_cast<std::int32_t>(q.i64(14));
        return r;
    }

    event_row read_event(stmt& q) const {
        event_row r;
        r.id = q.text(1);
        r.source = q.text(2);
        r.idempotency_key = q.text(3);
        r.type = q.text(4);
        // A lost event's record never reached the disk (recover_lost): not read, no envelope.
        if (!q.is_null(12))
            r.lost_ms = q.i64(12);
        else
            r.envelope_json =
                open_column(opts_.keys.get(), stored_envelope(q, 5, 9, r.id), "payload:" + r.id);
        r.treatment_id = q.text(6);
        r.order_key = q.text(7);
        r.received_ms = q.i64(8);
        return r;
    }

    // Read connection, under rmu_: one event with its attachments. Throws as read() expects.
    std::optional<event_row> event_by_id(std::string_view id) {
        auto& q =
            rdb_.prepare("SELECT " EVENT_COLUMNS " FROM " EVENTS_WITH_ENVELOPE " WHERE e.id = ?");
        q.bind(1, id);
        std::optional<event_row> out;
        std::int64_t seq = 0;
        if (q.step()) {
            seq = q.i64(0);
            out = read_event(q);
        }
        q.reset();
        if (out) load_attachments(seq, *out);
        return out;
    }

    // The envelope as stored (sealed or plain): inline in column `inline_col`, or, when that is
    // NULL, the envelope log's record named in columns `ref_col`..`ref_col`+2.
    // `id`: the event's, which the record must carry.
    std::string stored_envelope(const stmt& q, int inline_col, int ref_col,
                                std::string_view id) const {
        auto ref = q.is_null(inline_col) ? envelope_ref_at(q, ref_col) : std::nullopt;
        if (!ref) return q.text(inline_col);
        auto r = log_->read(*ref, id);
        if (!r) {
            std::string why = "envelope log record " + std::to_string(ref->segment) + ":" +
                              std::to_string(ref->offset) + ": " + r.error().message();
            // Changed or torn bytes, or a segment that is gone: no retry reads it, so it reads
            // as a record that does not open (a delivery goes dead at once, as for a failed
            // seal). Another I/O error may pass: an I/O error, retried (read()).
            if (envelope_log::record_missing(r.error())) throw sealed_failure(why);
            throw std::runtime_error(why);
        }
        return std::move(*r);
    }

    void load_attachments(std::int64_t seq, event_row& ev) {
        auto& q = rdb_.prepare(
            "SELECT att_id, filename, media_type, sha256, size FROM attachments WHERE event_seq = "
            "? ORDER BY rowid");
        q.bind(1, seq);
        while (q.step()) {
            ev.attachments.push_back(
                {q.text(0), q.text(1), q.text(2), q.text(3), static_cast<std::uint64_t>(q.i64(4))});
        }
        q.reset();
    }

    // Runs a read on the read connection; a storage error becomes an error code, never a throw.
    // A read that throws inside a transaction it began leaves the connection out of it.
    template <class F>
    auto read(F fn) -> boost::system::result<decltype(fn())> {
        std::lock_guard lock(rmu_);
        auto reset = [&] {
            rdb_.reset_all();
            if (!sqlite3_get_autocommit(rdb_.raw()))
                sqlite3_exec(rdb_.raw(), "ROLLBACK;", nullptr, nullptr, nullptr);
        };
        try {
            return fn();
        } catch (const sqlite_error& e) {
            reset();
            int primary = e.code() & 0xff;
            if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return busy_error();
            return io_error();
        } catch (const sealed_failure&) {
            reset();
            return sealed_record_error();
        } catch (const std::exception&) {
            reset();
            return io_error();
        }
    }

    // Writer thread, inside a job: `fn` runs after the commit that holds the job (dropped when
    // the job rolls back).
    void after_commit(std::function<void()> fn) { job_after_.push_back(std::move(fn)); }

    void ref_blobs(const std::vector<std::string>& shas, int delta) {
        std::lock_guard lock(blob_mu_);
        for (const auto& sha : shas) {
            int& n = blob_refs_[sha];
            n += delta;
            if (n <= 0) blob_refs_.erase(sha);
        }
    }

    template <class F>
    auto run_sync(F fn) -> boost::system::result<decltype(fn(std::declval<db&>()))> {
        using T = decltype(fn(std::declval<db&>()));
        auto value = std::make_shared<T>();
        std::promise<error_code> p;
        auto f = p.get_future();
        enqueue(
            job{[value, fn](db& d) { *value = fn(d); }, [&p](error_code ec) { p.set_value(ec); }});
        error_code ec = f.get();
        if (ec) return ec;
        return *value;
    }

    void enqueue(job j, lane l = lane::ingest) {
        {
            std::lock_guard lock(mu_);
            if (failed_) {
                auto done = std::move(j.done);
                if (done) done(io_error());
                return;
            }
            (l == lane::engine  ? engine_queue_
             : l == lane::claim ? claim_queue_
                                : queue_)
                .push_back(std::move(j));
        }
        cv_.notify_one();
    }

    // No job of any lane waits for the writer. Under mu_.
    bool nothing_queued() const {
        return queue_.empty() && engine_queue_.empty() && claim_queue_.empty();
    }
    void kick_log_sync() {
        {
            std::lock_guard lock(log_mu_);
            log_kick_ = true;
        }
        log_cv_.notify_one();
    }

    // Syncer thread: waits until the envelope log is synced through `ticket` (0: nothing to
    // wait for), the sync itself running on store-envsync beside the syncer's WAL sync. Throws
    // when the log's sync failed (the store is then failed).
    void wait_log_synced(std::uint64_t ticket) {
        if (ticket == 0 || log_->synced_through() >= ticket) return;
        std::unique_lock lock(log_mu_);
        // A pass that found an earlier append still writing stops short of `ticket`: asked again
        // (nothing else would ask).
        while (!log_failed_ && log_->synced_through() < ticket) {
            log_kick_ = true;
            log_cv_.notify_one();
            log_synced_cv_.wait(lock);
        }
        if (log_->synced_through() < ticket)
            throw std::runtime_error("the envelope log's sync failed");
    }

    // The log-sync thread: one fdatasync pass over the envelope log covers every append that
    // returned before it (appends go on meanwhile: the next pass takes them), then the syncer,
    // waiting to acknowledge the commits that name those records, is woken. A failed sync is
    // fatal, as the WAL's is: every queued job fails and nothing more is acknowledged.
    void log_sync_loop() {
        std::unique_lock lock(log_mu_);
        for (;;) {
            log_cv_.wait(lock, [&] { return log_stop_ || log_kick_; });
            if (!log_kick_) return;  // stopping, every append synced
            log_kick_ = false;
            lock.unlock();
            if (!log_failed_.load()) {
                error_code ec;
                if (opts_.before_envelope_sync) ec = opts_.before_envelope_sync();
                if (!ec) ec = log_->sync();
                if (ec) {
                    log_failed_.store(true);
                    std::deque<job> rest;
                    std::function<void(std::string)> fatal_cb;
                    {
                        std::lock_guard mlock(mu_);
                        failed_ = true;
                        take_queued(rest);
                        fatal_cb = on_fatal_;
                    }
                    for (auto& j : rest)
                        if (j.done) j.done(io_error());
                    if (fatal_cb)
                        fatal_cb("cannot sync the store's envelope log " + log_->dir().string() +
                                 ": " + ec.message());
                }
            }
            lock.lock();
            // The syncer reads synced_through() under log_mu_: it has seen the new value, or it
            // is waiting and gets this notification.
            log_synced_cv_.notify_all();
        }
    }

    // A submit's envelope is in `segment` and its row not yet committed (or failed): prune keeps
    // the segment meanwhile.
    void hold_segment(std::int64_t segment, int delta) {
        std::lock_guard lock(hold_mu_);
        int& n = holds_[segment];
        n += delta;
        if (n <= 0) holds_.erase(segment);
    }

    // After a prune's commit: removes the envelope log's segments below the oldest one that an
    // event still names. The floor from the submits in flight and the current segment is read
    // first: an envelope appended before that is either held (counted) or its row committed
    // before, so the events read below see it.
    void remove_pruned_segments() {
        std::int64_t floor = log_->current_segment();
        {
            std::lock_guard lock(hold_mu_);
            if (!holds_.empty()) floor = std::min(floor, holds_.begin()->first);
        }
        // A scan of every events row (no index on env_seg: each insert would pay for one, for a
        // query that runs after an hourly prune), on a connection of its own so the engine's
        // reads do not wait behind it.
        std::optional<std::int64_t> oldest;
        try {
            db d(opts_.path, true);
            auto& q = d.prepare("SELECT MIN(env_seg) FROM events");
            if (q.step() && !q.is_null(0)) oldest = q.i64(0);
            q.reset();
        } catch (const std::exception&) {
            return;  // tried again after the next prune
        }
        if (oldest) floor = std::min(floor, *oldest);
        log_->remove_below(floor);
    }

    void writer_loop() {
        std::vector<job> batch;
        for (;;) {
            {
                // One commit syncing and the next being written, not more: a writer that ran
                // further ahead made a commit per few events at half rate (each rewriting the
                // same B-tree pages into the WAL) and slowed every sync.
                std::unique_lock lock(sync_mu_);
                unsynced_cv_.wait(lock, [&] { return unsynced_ < kUnsyncedCommits; });
            }
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stop_ || !nothing_queued(); });
                if (nothing_queued() && stop_) return;
                // Every engine job queued so far (a batch of state changes each), submits up to
                // max_batch, then every claim queued so far. A job queued before a flush() is
                // always in its commit or an earlier one.
                std::size_t max = std::max<std::size_t>(opts_.max_batch, 1);
                batch.clear();
                for (auto* q : {&engine_queue_, &queue_, &claim_queue_}) {
                    while (!q->empty() && (batch.size() < max || q != &queue_)) {
                        batch.push_back(std::move(q->front()));
                        q->pop_front();
                    }
                }
            }
            auto t0 = std::chrono::steady_clock::now();
            error_code ec;
            std::string fatal;
            pending_hash_ = last_hash_;
            // The newest envelope log record this commit's rows name: the commit is
            // acknowledged once the log is synced through it (sync_loop), and its rows count as
            // durable from then on (note_durable).
            std::uint64_t log_need = 0;
            for (const auto& j : batch) log_need = std::max(log_need, j.log_ticket);
            // A job that fails rolls back alone and gets its own error; the others commit. A
            // fatal I/O error or a failed commit fails the whole batch. The batch runs first
            // without savepoints (a savepoint per job copied every page a job touched into the
            // statement journal: about a tenth of the writer's time); only when a job fails is
            // the batch rolled back and run again with one savepoint per job. Jobs may run twice
            // for that reason: they keep nothing outside the database but their results.
            std::vector<error_code> job_ec(batch.size());
            std::vector<std::function<void()>> after;
            try {
                // Prepared once (cached), not parsed again for every commit and job.
                counts_ = {};
                batch_min_seq_ = kNoSeq;
                batch_max_seq_ = 0;
                wdb_.prepare("BEGIN IMMEDIATE").exec();
                bool clean = true;
                for (std::size_t i = 0; i < batch.size() && clean; ++i) {
                    job_after_.clear();
                    try {
                        batch[i].run(wdb_);
                        for (auto& f : job_after_) after.push_back(std::move(f));
                    } catch (const sqlite_error& e) {
                        if (is_fatal(e.code())) throw;
                        clean = false;
                    } catch (const std::exception&) {
                        clean = false;
                    }
                }
                if (!clean) {
                    wdb_.reset_all();
                    wdb_.prepare("ROLLBACK").exec();
                    pending_hash_ = last_hash_;
                    after.clear();
                    counts_ = {};
                    wdb_.prepare("BEGIN IMMEDIATE").exec();
                }
                for (std::size_t i = 0; i < batch.size() && !clean; ++i) {
                    std::string hash_before = pending_hash_;
                    commit_info counts_before = counts_;
                    job_after_.clear();
                    wdb_.prepare("SAVEPOINT job").exec();
                    try {
                        batch[i].run(wdb_);
                        wdb_.prepare("RELEASE job").exec();
                        for (auto& f : job_after_) after.push_back(std::move(f));
                    } catch (const sqlite_error& e) {
                        if (is_fatal(e.code())) throw;
                        wdb_.reset_all();
                        wdb_.exec("ROLLBACK TO job; RELEASE job;");
                        pending_hash_ = hash_before;
                        counts_ = counts_before;
                        int primary = e.code() & 0xff;
                        job_ec[i] = primary == SQLITE_CONSTRAINT
                                        ? boost::system::errc::make_error_code(
                                              boost::system::errc::invalid_argument)
                                        : busy_error();
                    } catch (const std::exception&) {
                        wdb_.reset_all();
                        wdb_.exec("ROLLBACK TO job; RELEASE job;");
                        pending_hash_ = hash_before;
                        counts_ = counts_before;
                        job_ec[i] = boost::system::errc::make_error_code(
                            boost::system::errc::invalid_argument);
                    }
                }
                job_after_.clear();
                tell_due();
                std::int64_t durable = note_durable(wdb_);
                wdb_.prepare("COMMIT").exec();
                last_hash_ = pending_hash_;
                durable_seq_ = durable;
                if (batch_max_seq_ != 0) {
                    // Its rows are durable once the log is synced through the batch's tickets.
                    unsynced_commits_.push_back({batch_min_seq_, log_need});
                    max_seq_ = std::max(max_seq_, batch_max_seq_);
                }
            } catch (const sqlite_error& e) {
                wdb_.reset_all();
                try {
                    wdb_.exec("ROLLBACK;");
                } catch (...) {
                }
                ec = is_fatal(e.code()) ? io_error() : busy_error();
                if (is_fatal(e.code())) fatal = e.what();
                after.clear();
            } catch (const std::exception& e) {
                wdb_.reset_all();
                try {
                    wdb_.exec("ROLLBACK;");
                } catch (...) {
                }
                ec = busy_error();
                after.clear();
            }
            // The commit's callbacks run on the syncer thread once its WAL frames are on disk
            // (sync_loop), in commit order; the writer goes on with the next batch meanwhile.
            acked a;
            a.counts = counts_;
            a.counts.jobs = batch.size();
            a.counts.seconds =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            a.batch = std::move(batch);
            batch = {};
            a.job_ec = std::move(job_ec);
            a.ec = ec;
            a.sync = !ec && wal_.get() >= 0;
            a.after = std::move(after);
            a.fatal = std::move(fatal);
            if (!a.fatal.empty()) {
                // Fail everything still queued: nothing more is acknowledged.
                std::lock_guard lock(mu_);
                failed_ = true;
                take_queued(a.rest);
            }
            {
                std::lock_guard lock(sync_mu_);
                sync_queue_.push_back(std::move(a));
                ++unsynced_;
            }
            sync_cv_.notify_one();
        }
    }

    // Writer thread, inside the batch's transaction, before its COMMIT: the durable watermark
    // (envlog_durable, schema 12) that this commit records, written when it moved. Every events
    // row with seq <= it has its envelope record on disk: the rows of each earlier commit whose
    // tickets the log has synced (commits whose rows may not be, and this batch's own rows, keep
    // it below their lowest seq; seq may be reused after a prune emptied the table's end). A
    // crash keeps this row only with the commit, so the open (recover_lost) checks every row the
    // surviving watermark does not cover: a few commits' rows, not the backlog.
    std::int64_t note_durable(db& d) {
        std::uint64_t synced = log_->synced_through();
        std::erase_if(unsynced_commits_,
                      [&](const unsynced_commit& c) { return c.ticket <= synced; });
        std::int64_t mark = max_seq_;
        for (const auto& c : unsynced_commits_) mark = std::min(mark, c.min_seq - 1);
        if (batch_min_seq_ != kNoSeq) mark = std::min(mark, batch_min_seq_ - 1);
        if (mark != durable_seq_) {
            auto& up = d.prepare("UPDATE envlog_durable SET seq = ? WHERE id = 1");
            up.bind(1, mark);
            up.exec();
        }
        return mark;
    }

    // The commits the writer has made and not yet acknowledged: their jobs' results, the
    // after-commit functions, and whether the WAL must be synced before any of it is told.
    struct acked {
        std::vector<job> batch;
        std::vector<error_code> job_ec;
        error_code ec;
        bool sync = false;
        std::vector<std::function<void()>> after;
        commit_info counts;
        std::string fatal;     // the commit's fatal I/O error, if any
        std::deque<job> rest;  // queued jobs failed with it
    };

    // mu_ held: moves every queued job of every lane into `out`.
    void take_queued(std::deque<job>& out) {
        for (auto* q : {&engine_queue_, &queue_, &claim_queue_}) {
            for (auto& j : *q) out.push_back(std::move(j));
            q->clear();
        }
    }

    static owned_fd open_wal(db& d) {
        const char* main = sqlite3_db_filename(d.raw(), "main");
        const char* wal = main ? sqlite3_filename_wal(main) : nullptr;
        if (!wal || !*wal) throw std::runtime_error("the SQLite store has no WAL file name");
        owned_fd fd(wal, ::open(wal, O_RDONLY | O_CLOEXEC));
        if (fd.get() < 0)
            throw std::runtime_error(std::string("cannot open the SQLite store's WAL ") + wal +
                                     ": " + std::strerror(errno));
        return fd;
    }

    // The syncer thread: one fdatasync of the WAL covers every commit queued so far (each
    // commit's frames follow the ones before it, and recovery reads the WAL only up to its first
    // frame that is not whole), then their callbacks run in commit order. A failed sync is fatal:
    // no job of that commit or a later one is acknowledged, and the daemon exits for a clean
    // restart (what was not synced is then either recovered whole or not at all).
    void sync_loop() {
        std::unique_lock lock(sync_mu_);
        for (;;) {
            sync_cv_.wait(lock, [&] { return sync_stop_ || !sync_queue_.empty(); });
            if (sync_queue_.empty()) return;  // stopping, every commit acknowledged
            std::deque<acked> items;
            items.swap(sync_queue_);
            lock.unlock();
            bool need =
                std::any_of(items.begin(), items.end(), [](const acked& a) { return a.sync; });
            // The envelope log's records these commits name, synced beside the WAL (whether or
            // not the WAL is synced here: without synchronous_full, too, nothing is acknowledged
            // and no claimed delivery handed out before its record is on disk).
            std::uint64_t need_ticket = 0;
            for (const auto& a : items)
                for (const auto& j : a.batch) need_ticket = std::max(need_ticket, j.log_ticket);
            double sync_secs = 0;
            if ((need || need_ticket != 0) && !sync_failed_) {
                auto t0 = std::chrono::steady_clock::now();
                if (need_ticket != 0) kick_log_sync();  // in parallel with the WAL's, below
                if (need && ::fdatasync(wal_.get()) != 0) {
                    sync_failed_ = true;
                    std::string why =
                        "cannot sync the store's WAL " + wal_.path() + ": " + std::strerror(errno);
                    std::function<void(std::string)> fatal_cb;
                    {
                        std::lock_guard mlock(mu_);
                        failed_ = true;
                        fatal_cb = on_fatal_;
                    }
                    if (fatal_cb) fatal_cb(why);
                }
                // The writer did not wait for the envelope log before its COMMIT; its records
                // are synced by store-envsync in parallel with the WAL's sync above, and
                // nothing of these commits is acknowledged (acknowledge: the jobs' callbacks, the
                // accept claims' hand-off, the after-commit functions) before both. The WAL's
                // frames may reach the disk before the log's (writeback), so a crash can leave a
                // committed row naming a record that is not there: never acknowledged, found at
                // the next open and marked lost (recover_lost).
                if (need_ticket != 0 && !sync_failed_) {
                    try {
                        wait_log_synced(need_ticket);
                    } catch (const std::exception&) {
                        sync_failed_ = true;
                    }
                }
                sync_secs =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            }
            for (auto& a : items) {
                acknowledge(a, a.sync ? sync_secs : 0.0);
                if (a.sync) sync_secs = 0;  // one sync, counted with the first commit it covered
            }
            lock.lock();
            unsynced_ -= items.size();
            unsynced_cv_.notify_one();
        }
    }

    // Syncer thread: tells one commit's jobs how they ended, after its after-commit functions.
    void acknowledge(acked& a, double sync_secs) {
        error_code ec = a.ec;
        if (!ec && sync_failed_) ec = io_error();
        if (!ec) {
            for (auto& f : a.after) f();
            hand_accepted();
        }
        a.after.clear();  // a commit not acknowledged gives its claimed slots back
        std::function<void(const commit_info&)> commit_cb;
        std::function<void(std::string)> fatal_cb;
        {
            std::lock_guard lock(mu_);
            commit_cb = on_commit_;
            fatal_cb = on_fatal_;
        }
        a.counts.sync_seconds = sync_secs;
        if (!ec && commit_cb) commit_cb(a.counts);
        for (std::size_t i = 0; i < a.batch.size(); ++i)
            if (a.batch[i].done) a.batch[i].done(ec ? ec : a.job_ec[i]);
        if (!a.fatal.empty() && fatal_cb) fatal_cb(a.fatal);
        for (auto& j : a.rest)
            if (j.done) j.done(io_error());
    }

    sqlite_options opts_;
    fs::path blobs_;
    // The writer's connection writes the WAL through it: a few large writes per commit instead
    // of two per page (each frame's header, then its page).
    wal_gather_vfs wal_vfs_;
    db wdb_;
    db rdb_;
    std::mutex rmu_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<job> queue_;         // ingest lane: submits, errors, audit, operator jobs
    std::deque<job> engine_queue_;  // engine lane: delivery state changes, audit rows
    std::deque<job> claim_queue_;   // claims: after the submits of the same commit
    bool stop_ = false;
    bool failed_ = false;
    std::string last_hash_, pending_hash_;
    std::function<void(const commit_info&)> on_commit_;
    commit_info counts_;  // writer thread: what the commit being written holds so far
    std::function<void(std::string)> on_fatal_;
    std::vector<std::function<void()>> job_after_;  // writer thread
    std::vector<std::string> due_;  // writer thread: destinations told at the commit (mark_due)
    std::vector<std::shared_ptr<accepted>> to_hand_;  // syncer thread: claimed by the commit
    std::mutex accept_mu_;
    std::shared_ptr<const accept_claims> accept_;  // claims at accept time; null: none
    std::mutex blob_mu_;
    std::unordered_map<std::string, int> blob_refs_;  // blobs written for a submit not committed
    blob_guard blob_guard_{std::chrono::milliseconds(500), std::chrono::seconds(30)};
    std::thread writer_;
    owned_fd wal_;  // the WAL, synced by the syncer (synchronous_full only)
    std::mutex sync_mu_;
    std::condition_variable sync_cv_;
    std::condition_variable unsynced_cv_;  // the writer waits here for the syncer
    std::size_t unsynced_ = 0;             // commits handed to the syncer, not yet acknowledged
    static constexpr std::size_t kUnsyncedCommits = 2;
    std::deque<acked> sync_queue_;
    bool sync_stop_ = false;
    bool sync_failed_ = false;  // syncer thread
    std::thread syncer_;
    static constexpr int kCheckpointPages = 1000;  // SQLite's default auto-checkpoint size
    std::unique_ptr<db> ckdb_;                     // the checkpointer's connection
    std::mutex ck_mu_;
    std::condition_variable ck_cv_;
    bool ck_stop_ = false;
    bool ck_due_ = false;
    std::atomic<bool> ck_failed_{false};
    std::thread checkpointer_;
    // The envelope log (schemas 11 and 12) and its sync thread.
    std::unique_ptr<envelope_log> log_;
    std::mutex log_mu_;
    std::condition_variable log_cv_;
    bool log_kick_ = false;  // appends since the last pass
    bool log_stop_ = false;
    std::condition_variable log_synced_cv_;  // the syncer waits here (wait_log_synced)
    std::atomic<bool> log_failed_{false};
    std::thread log_syncer_;
    std::mutex hold_mu_;
    std::map<std::int64_t, int> holds_;  // segment -> submits in flight with an envelope in it
    // The durable watermark (note_durable; writer thread, and recover_lost before it starts).
    static constexpr std::int64_t kNoSeq = std::numeric_limits<std::int64_t>::max();
    struct unsynced_commit {
        std::int64_t min_seq;  // its lowest events seq
        std::uint64_t ticket;  // the highest envelope log ticket of its batch
    };
    std::vector<unsynced_commit> unsynced_commits_;
    std::int64_t durable_seq_ = 0;                             // as envlog_durable holds it
    std::int64_t max_seq_ = 0;                                 // the highest events seq committed
    std::int64_t batch_min_seq_ = kNoSeq, batch_max_seq_ = 0;  // the batch's new rows
    open_check opened_;                                        // by recover_lost
};

}  // namespace

namespace {

// Re-seals every blob file under `folder` not sealed under the current key: a new file beside it
// (fsynced), renamed over the old one, the folder fsynced. A reader with the old file open keeps
// reading it; either file gives the same plaintext. The error names the attachment by sha256.
std::string rotate_blob_files(const fs::path& folder, const keyring& keys, rotate_report& rep) {
    std::error_code ec;
    if (!fs::exists(folder, ec)) return {};
    std::vector<fs::path> files;
    for (auto it = fs::recursive_directory_iterator(folder, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        std::string n = it->path().filename().string();
        if (it->is_regular_file(ec) && n.size() == 64 &&
            n.find_first_not_of("0123456789abcdef") == std::string::npos)
            files.push_back(it->path());
    }
    if (ec) return "cannot list " + folder.string() + ": " + ec.message();
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        const std::string sha = f.filename().string();
        int in = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            if (errno == ENOENT) continue;  // pruned meanwhile
            return "attachment sha256 " + sha + ": cannot open: " + std::strerror(errno);
        }
        struct stat st {};
        ::fstat(in, &st);
        auto h = read_blob_header(in);
        if (h && h->key_id == keys.current()) {
            ::close(in);
            ++rep.blobs_already;
            continue;
        }
        fs::path tmp = f;
        tmp += ".tmp-rotate" + std::to_string(::getpid());
        int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (out < 0) {
            ::close(in);
            return "attachment sha256 " + sha + ": cannot create " + tmp.string() + ": " +
                   std::strerror(errno);
        }
        auto r = reseal_blob(
            keys, sha, static_cast<std::uint64_t>(st.st_size),
            [in](std::uint64_t at, std::size_t len, std::string& into) {
                return pread_range(in, at, len, into);
            },
            [out](std::string_view piece) {
                while (!piece.empty()) {
                    ssize_t n = ::write(out, piece.data(), piece.size());
                    if (n < 0 && errno == EINTR) continue;
                    if (n <= 0) return false;
                    piece.remove_prefix(static_cast<std::size_t>(n));
                }
                return true;
            });
        ::close(in);
        bool synced = ::fsync(out) == 0;
        ::close(out);
        if (!r || !synced) {
            fs::remove(tmp, ec);
            return r ? "attachment sha256 " + sha + ": cannot fsync " + tmp.string()
                     : r.error().why;
        }
        fs::rename(tmp, f, ec);
        if (ec) {
            fs::remove(tmp, ec);
            return "attachment sha256 " + sha + ": cannot rename over it: " + ec.message();
        }
        fsync_dir(f.parent_path());
        ++rep.blobs_resealed;
    }
    return {};
}

}  // namespace

boost::system::result<rotate_report, std::string> rotate_sqlite_keys(const std::string& path,
                                                                     const keyring& keys,
                                                                     std::size_t batch) {
    using boost::system::in_place_error;
    std::error_code fec;
    if (!fs::exists(path, fec)) return {in_place_error, "there is no store file " + path};
    if (batch == 0) batch = 1;
    const std::string current = keys.current();
    auto is_current = [&](const std::string& stored) {
        return column_sealed_under(stored, current);
    };
    try {
        db d(path);
        d.exec("PRAGMA busy_timeout = 10000;");
        d.exec("PRAGMA synchronous = FULL;");
        rotate_report rep;
        struct row {
            std::int64_t key;
            std::string aad, stored;
        };
        // One table at a time, in key order, a batch per transaction.
        auto pass = [&](const char* select, const char* update) {
            std::int64_t after = 0;
            for (;;) {
                std::vector<row> rows;
                auto& q = d.prepare(select);
                q.bind(1, after).bind(2, static_cast<std::int64_t>(batch));
                while (q.step()) rows.push_back({q.i64(0), q.text(1), q.text(2)});
                q.reset();
                if (rows.empty()) return;
                d.exec("BEGIN IMMEDIATE;");
                for (auto& r : rows) {
                    after = r.key;
                    if (is_current(r.stored)) {
                        ++rep.already;
                        continue;
                    }
                    std::string plain = open_column(&keys, std::move(r.stored), r.aad);
                    auto& u = d.prepare(update);
                    u.bind(1, seal_column(&keys, plain, r.aad)).bind(2, r.key);
                    u.exec();
                    ++rep.resealed;
                }
                d.exec("COMMIT;");
            }
        };
        pass(
            "SELECT p.event_seq, 'payload:' || e.id, p.envelope FROM payloads p JOIN events e ON "
            "e.seq = p.event_seq WHERE p.event_seq > ? ORDER BY p.event_seq LIMIT ?",
            "UPDATE payloads SET envelope = ? WHERE event_seq = ?");
        if (has_event_envelopes(d))
            pass(
                "SELECT seq, 'payload:' || id, envelope FROM events WHERE seq > ? AND envelope "
                "IS NOT NULL ORDER BY seq LIMIT ?",
                "UPDATE events SET envelope = ? WHERE seq = ?");
        if (has_envelope_log(d)) {
            // Envelopes in the envelope log (schema 12): re-sealed into the events row itself,
            // the reference cleared. This tool runs beside the daemon, and a segment has one
            // appender (the daemon's log), so it writes no record of its own; rotation is rare
            // and the row's inline envelope is read as before schema 11. The old record stays
            // in its segment until retention removes the segment.
            const fs::path dir = envelope_dir(path);
            std::int64_t after = 0;
            for (;;) {
                std::vector<envelope_ref> moved;
                // An event lost by a crash has no record to re-seal: left as it is.
                const auto rows = logged_events(d, after, static_cast<std::int64_t>(batch));
                if (rows.empty()) break;
                d.exec("BEGIN IMMEDIATE;");
                try {
                    for (auto& r : rows) {
                        after = r.seq;
                        auto stored = envelope_log::read_from(dir, r.ref, r.id);
                        if (!stored)
                            throw std::runtime_error("event seq " + std::to_string(r.seq) +
                                                     ": cannot read its envelope log record: " +
                                                     stored.error().message());
                        if (is_current(*stored)) {
                            ++rep.already;
                            continue;
                        }
                        const std::string aad = "payload:" + r.id;
                        std::string plain = open_column(&keys, std::move(*stored), aad);
                        auto& u = d.prepare(
                            "UPDATE events SET envelope = ?, env_seg = NULL, env_off = NULL, "
                            "env_len = NULL WHERE seq = ?");
                        u.bind(1, seal_column(&keys, plain, aad)).bind(2, r.seq);
                        u.exec();
                        moved.push_back(r.ref);
                        ++rep.resealed;
                    }
                } catch (...) {
                    d.exec("ROLLBACK;");
                    throw;
                }
                d.exec("COMMIT;");
                // The records under the old key (or plain) overwritten, after the commit that
                // stopped naming them.
                if (auto ec = envelope_log::scrub(dir, moved))
                    throw std::runtime_error("cannot overwrite the old envelope log records: " +
                                             ec.message());
            }
        }
        pass(
            "SELECT id, 'error:' || source || ':' || idempotency_key, payload FROM errors WHERE "
            "id > ? ORDER BY id LIMIT ?",
            "UPDATE errors SET payload = ? WHERE id = ?");
        if (auto bad = rotate_blob_files(fs::path(path + ".blobs"), keys, rep); !bad.empty())
            return {in_place_error, bad};
        return {boost::system::in_place_value, rep};
    } catch (const sealed_failure& e) {
        return {in_place_error, e.what()};
    } catch (const std::exception& e) {
        return {in_place_error, std::string("store error: ") + e.what()};
    }
}

boost::system::result<std::optional<std::vector<std::string>>> read_treatment_history(
    const std::string& path, std::string_view treatment_id, const keyring* keys) {
    std::error_code fec;
    if (!fs::exists(path, fec)) return std::optional<std::vector<std::string>>();
    try {
        db d(path, true);
        d.exec("PRAGMA busy_timeout = 10000;");
        const bool refs = has_envelope_log(d);
        auto& q = d.prepare(refs                     ? kTreatmentHistorySql
                            : has_event_envelopes(d) ? kTreatmentHistorySqlV10
                                                     : kTreatmentHistorySqlV6);
        q.bind(1, treatment_id);
        std::vector<std::string> out;
        const fs::path dir = envelope_dir(path);
        while (q.step()) {
            std::string stored;
            auto ref = refs && q.is_null(5) ? envelope_ref_at(q, 9) : std::nullopt;
            if (ref) {
                auto r = envelope_log::read_from(dir, *ref, q.text(1));
                if (!r) {
                    q.reset();
                    return io_error();
                }
                stored = std::move(*r);
            } else {
                stored = q.text(5);
            }
            out.push_back(open_column(keys, std::move(stored), "payload:" + q.text(1)));
        }
        q.reset();
        return std::optional<std::vector<std::string>>(std::move(out));
    } catch (const sealed_failure&) {
        return sealed_record_error();
    } catch (const std::exception&) {
        return io_error();
    }
}

std::vector<std::pair<std::string, std::string>> sqlite_query_plans(const std::string& path) {
    db d(path, true);
    d.exec(
        "PRAGMA busy_timeout = 10000; CREATE TEMP TABLE IF NOT EXISTS prune_set(seq INTEGER "
        "PRIMARY KEY);");
    delivery_query pending, held_at;
    pending.state = delivery_state::pending;
    held_at.state = delivery_state::held;
    held_at.destination = "gp";
    delivery_query of_event;
    of_event.event_id = "e";
    const std::pair<const char*, std::string> named[] = {
        {"insert", kInsertDeliverySql},
        {"insert_claimed", kInsertClaimedDeliverySql},
        {"claim_one", kClaimOneSql},
        {"set_state", kSetStateSql},
        {"chain_tail", kChainTailSql},
        {"set_chain_tail", kSetChainTailSql},
        {"drop_chain", kDropChainSql},
        {"behind", kBehindSql},
        {"relink", kRelinkSql},
        {"prev_of", kPrevOfSql},
        {"claim", kClaimSql},
        {"replay_links", kReplayLinksSql},
        {"replay_chains", kReplayChainsSql},
        {"prune", kPruneSetSql},
        {"treatment_history", kTreatmentHistorySql},
        {"deliveries_of_treatment", kDeliveriesOfTreatmentSql},
        {"by_external_id", kByExternalIdSql},
        {"list_pending", list_deliveries_sql(pending)},
        {"list_held_at", list_deliveries_sql(held_at)},
        {"list_of_event", list_deliveries_sql(of_event)},
    };
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [name, sql] : named) {
        auto& q = d.prepare("EXPLAIN QUERY PLAN " + sql);
        std::string plan;
        while (q.step()) plan += (plan.empty() ? "" : "; ") + q.text(3);
        q.reset();
        // The program itself: whether it builds an ephemeral table (a constant IN list of more
        // than two values in a condition, of the statement or of a partial index it maintains).
        auto& prog = d.prepare("EXPLAIN " + sql);
        int ephemeral = 0;
        while (prog.step()) ephemeral += prog.text(1) == "OpenEphemeral";
        prog.reset();
        if (ephemeral > 0) plan += "; EPHEMERAL TABLES " + std::to_string(ephemeral);
        out.emplace_back(name, std::move(plan));
    }
    return out;
}

boost::system::result<void> read_audit_rows(const std::string& path,
                                            const std::function<bool(const audit_row&)>& fn) {
    std::error_code fec;
    if (!fs::exists(path, fec))
        return boost::system::error_code(ENOENT, boost::system::generic_category());
    try {
        db d(path, true);
        d.exec("PRAGMA busy_timeout = 10000;");
        auto& q = d.prepare(kAuditRowsSql);
        while (q.step()) {
            audit_row r{q.i64(0),  q.i64(1),  q.text(2), q.text(3),
                        q.text(4), q.text(5), q.text(6), static_cast<int>(q.i64(7))};
            if (!fn(r)) break;
        }
        q.reset();
        return {};
    } catch (const std::exception&) {
        return io_error();
    }
}

boost::system::result<std::vector<delivery_row>> store::claim_due(std::string_view destination,
                                                                  std::int64_t now_ms,
                                                                  std::size_t limit,
                                                                  int max_attempts) {
    std::promise<std::pair<error_code, std::vector<delivery_row>>> p;
    auto f = p.get_future();
    claim_due_async(destination, now_ms, limit, max_attempts,
                    [&p](error_code ec, std::vector<delivery_row> rows) {
                        p.set_value({ec, std::move(rows)});
                    });
    auto [ec, rows] = f.get();
    if (ec) return ec;
    return std::move(rows);
}

std::unique_ptr<run_once_lock> store::try_run_once(std::string_view) {
    // One process owns the store (SQLite): the lock is always this node's.
    struct always final : run_once_lock {
        bool held() override { return true; }
    };
    return std::make_unique<always>();
}

std::unique_ptr<store> open_sqlite(const sqlite_options& opts) {
    if (opts.path.empty()) throw std::runtime_error("store: no path configured");
    return std::make_unique<sqlite_store>(opts);
}

}  // namespace samband::store
