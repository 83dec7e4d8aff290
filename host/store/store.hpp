// The durable store interface: events, attachments, deliveries, attempts, receipts, audit, errors.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace samband::store {

// DESIGN §5: pending → in_flight → delivered → acknowledged; failed (retrying); dead; blocked;
// held. The values are the codes stored in the database: they are fixed, never reordered or
// reused (a new state gets a new code); read_delivery() checks them with from_code().
enum class delivery_state : std::int32_t {
    pending = 0,
    in_flight = 1,
    delivered = 2,
    acknowledged = 3,
    failed = 4,
    dead = 5,
    blocked = 6,
    held = 7
};
inline constexpr delivery_state all_delivery_states[] = {
    delivery_state::pending,      delivery_state::in_flight, delivery_state::delivered,
    delivery_state::acknowledged, delivery_state::failed,    delivery_state::dead,
    delivery_state::blocked,      delivery_state::held};
std::string_view to_string(delivery_state s) noexcept;
std::optional<delivery_state> parse_delivery_state(std::string_view s) noexcept;
constexpr std::int32_t code(delivery_state s) noexcept {
    return static_cast<std::int32_t>(s);
}
// The state stored as `c`, or nullopt for a code this samband does not know.
std::optional<delivery_state> from_code(std::int64_t c) noexcept;

// The one transition table of a delivery, used by the store (which refuses and audits any other
// change), the engine, the gate, receipts and the operator API.
//   pending      → in_flight (claim), held/blocked (gate), dead (exhausted), failed,
//                  delivered (late completion)
//   in_flight    → delivered, failed, dead, pending (handed back / restart), held, blocked
//   failed       → in_flight, pending (operator retry), dead, delivered (late completion)
//   delivered    → acknowledged, dead (receipt reject), pending (replay)
//   acknowledged → pending (replay)
//   dead         → pending (retry, replay), delivered (late completion)
//   held         → pending (retry, override, consent change), blocked
//   blocked      → pending (override, consent change), held
bool transition_allowed(delivery_state from, delivery_state to) noexcept;

// One group commit of the store's writer: its time (jobs run, commit and sync) and what it held.
// The counts a backend does not track stay 0 (PostgreSQL: only jobs).
struct commit_info {
    double seconds = 0;
    std::size_t jobs = 0;           // queued jobs of any kind
    std::size_t events = 0;         // events stored (not duplicates)
    std::size_t state_changes = 0;  // delivery state changes (completions, operators, receipts)
    std::size_t claimed = 0;        // deliveries claimed (by the engine's claims or at accept)
    double sync_seconds = 0;        // the WAL sync that made it durable (0: none, or counted
                                    // with an earlier commit it also covered)
};

// The attachment (blob) folder's health: a write there failed (full disk, read-only, gone) and
// the store backs off until a probe write goes through (store/blob_guard.hpp).
struct blob_health {
    bool trouble = false;
    std::int64_t since_ms = 0;      // when the current (or last) trouble began
    std::int64_t recovered_ms = 0;  // when the last trouble ended
    std::int64_t next_probe_ms = 0;
    std::string reason;  // the first error of the trouble: folder operation + errno text
    std::string last_error;
    std::uint64_t episodes = 0;      // troubles begun since start (one alert each)
    std::uint64_t write_errors = 0;  // failed writes to the folder since start
    std::uint64_t probes = 0;        // writes let through while in trouble
    std::uint64_t refused = 0;       // submits refused without a write while backing off
};

// The error a submit gets while the attachment folder is in trouble (a RETRY for the source).
boost::system::error_code blob_folder_error() noexcept;
bool is_blob_folder_error(const boost::system::error_code& ec) noexcept;

// An attachment as stored (bytes content-addressed by sha256).
struct attachment_meta {
    std::string id;  // "a1", "a2", ... within the event
    std::string filename;
    std::string media_type;
    std::string sha256;  // lowercase hex
    std::uint64_t size = 0;
};

// An attachment to store with a new event: bytes in memory, or a file to stream in.
struct attachment_input {
    attachment_meta meta;  // sha256/size filled by ingest before submit
    std::string bytes;     // used when path is empty
    std::string path;      // a file to copy (streamed in chunks, never whole in memory)
};

// A delivery the router created for a new event.
struct new_delivery {
    std::string destination;                         // endpoint name
    std::string route;                               // route name
    delivery_state state = delivery_state::pending;  // pending, held or blocked
    std::string reason;                              // for held/blocked
};

// A validated event to store, with its routing result.
struct new_event {
    std::string id;               // UUIDv7 from ingest
    std::string source;           // endpoint name
    std::string idempotency_key;  // dedupe on (source, idempotency_key)
    std::string type;
    std::string occurred_at;
    std::string order_key;      // per-patient ordering key (a hash of the patient id; never the id)
    std::string treatment_id;   // may be empty
    std::string envelope_json;  // the final envelope (with id, source, attachment metadata)
    // sha256 (hex) of the content as the source sent it: the envelope without its host-given id,
    // attachments by their hashes. A second submission with the same key and another content is a
    // conflict, not a duplicate. Empty: not compared.
    std::string content_sha256;
    std::vector<attachment_input> attachments;
    std::vector<new_delivery> deliveries;
};

struct submit_outcome {
    std::string event_id;  // the stored event's id (the first one's when duplicate)
    bool duplicate = false;
    // The key was used before with another content (content_sha256 differs): nothing was stored;
    // event_id is the first event's.
    bool conflict = false;
};

// Called once after the group commit holding the event (or with the error). THREAD: store thread.
using submit_handler = std::function<void(boost::system::error_code, submit_outcome)>;

// A rejected input kept for the operator (the error store).
struct error_record {
    std::string source;
    std::string reason;           // specific: names the field / check that failed
    std::string payload;          // the raw input as received (truncated to a limit by the caller)
    std::string idempotency_key;  // if known
};

// One delivery as the engine and the API see it.
struct delivery_row {
    std::int64_t id = 0;
    std::string event_id;
    std::string destination;
    std::string route;
    delivery_state state = delivery_state::pending;
    std::int32_t attempts = 0;
    std::int64_t next_attempt_ms = 0;  // unix ms; due when <= now
    std::string external_id;
    std::string reason;  // last error / held / blocked / dead reason
    std::string order_key;
    std::string event_type;
    std::int64_t created_ms = 0;
    std::int64_t updated_ms = 0;
    bool overridden = false;         // an operator overrode the consent gate for this delivery
    std::int32_t attempts_base = 0;  // attempts before the current budget (operator retry/replay)
    std::int64_t fence = 0;  // fencing token: the delivery's claim counter (0 where not kept)
};

// A stored event with its attachments' metadata.
struct event_row {
    std::string id;
    std::string source;
    std::string idempotency_key;
    std::string type;
    std::string envelope_json;
    std::string treatment_id;
    std::string order_key;
    std::int64_t received_ms = 0;
    std::vector<attachment_meta> attachments;
    std::int64_t lost_ms = 0;  // when the open found a crash lost it (no envelope); 0: not lost
};

// A state change of a delivery, with the attempt it closes (if any), written with an audit row.
// A change the transition table does not allow is not applied; it is audited as refused.
struct delivery_update {
    std::int64_t delivery_id = 0;
    delivery_state state = delivery_state::pending;
    std::string reason;
    std::string external_id;           // set on delivered
    std::int64_t next_attempt_ms = 0;  // for failed/pending
    std::int32_t closes_attempt =
        0;                         // the attempt (counted at its claim) this update ends; 0: none
    bool hand_back = false;        // the attempt ends uncounted (shutdown): attempts -= 1
    std::string actor = "engine";  // who: engine, operator:<name>, receipt, gate
    bool override_gate = false;    // records the operator's override of the consent gate
    bool renew_attempts = false;   // an operator retry: a fresh budget of max_attempts
    // The fencing token of the claim this update completes (delivery_row::fence); 0: unfenced
    // (operator, receipt, gate). A store shared by several nodes refuses and audits an update
    // whose token is no longer the delivery's (another node took the delivery over).
    std::int64_t fence = 0;
};

struct receipt_record {
    std::string destination;
    std::string external_id;
    std::int32_t kind = 0;  // SAMBAND_RECEIPT_*
    std::string text;
};

struct audit_row {
    std::int64_t id = 0;
    std::int64_t at_ms = 0;
    std::string actor, action, subject, detail;
    std::string hash;  // hash chain: sha256(prev_hash || row), see audit_chain.hpp
    int hash_version = 0;
};

// One attempt of a delivery, for the console: outcome is the state it ended in, "open" while it
// runs, "died" when the process died during it.
struct attempt_row {
    std::int64_t n = 0;
    std::int64_t started_ms = 0, ended_ms = 0;
    std::string outcome, reason;
};

struct receipt_row {
    std::int64_t at_ms = 0;
    std::int32_t kind = 0;  // SAMBAND_RECEIPT_*
    std::string text;
};

struct delivery_query {
    std::optional<delivery_state> state;
    std::string destination;  // empty = all
    std::string event_id;     // empty = all
    std::int64_t since_ms = 0;
    std::size_t limit = 100;
    std::int64_t after_id = 0;           // paging
    std::int64_t updated_before_ms = 0;  // only rows last changed before this (0 = any)
};

struct destination_stats {
    std::string destination;
    std::int64_t by_state[8] = {};       // indexed by delivery_state
    std::int64_t oldest_pending_ms = 0;  // created_ms of the oldest pending/failed, 0 if none
};

// The outcome of a claim: the claimed rows, or the error. THREAD: the store's thread.
using claim_handler =
    std::function<void(boost::system::error_code, std::vector<delivery_row> rows)>;

// Claiming at accept time: the engine lends the store room at its destinations. A submit whose
// pending delivery finds its chain (destination + order key) idle takes a slot and stores the
// delivery already in flight, its attempt counted, in the accept's commit; after that commit the
// store hands it to `claimed` (the attempt is durable before any plugin sees it).
// THREAD: take, give_back and due on the store's writer; claimed after the commit.
struct accept_claims {
    // Takes a slot of `destination` for a delivery claimed at accept; false: none (the delivery
    // is stored pending and claimed later).
    std::function<bool(const std::string& destination)> take;
    // Returns a slot taken for a delivery that was not claimed (its chain was busy, or its job
    // rolled back).
    std::function<void(const std::string& destination)> give_back;
    // Deliveries claimed at accept (in flight, attempt 1), after the commit that holds them.
    std::function<void(std::vector<delivery_row> rows)> claimed;
    // A delivery of `destination` may have become due that no claim has seen yet (stored
    // pending, a chain's next head marked, a retry, an operator's change).
    std::function<void(const std::string& destination)> due;
};

// A lock this node holds while it runs a source that must run on one node at a time.
class run_once_lock {
public:
    virtual ~run_once_lock() = default;  // releases the lock
    // False once the lock is lost (its database session ended): another node may hold it now.
    virtual bool held() = 0;
};

// The durable store. All functions are thread-safe. Writes are group-committed on one writer
// thread; reads use their own connection(s).
class store {
public:
    virtual ~store() = default;

    // Ingest: dedupes on (source, idempotency_key); stores event, attachments and deliveries in
    // the next group commit, then calls `done`. A storage error is reported, never acked.
    virtual void submit(new_event ev, submit_handler done) = 0;

    // Keeps a rejected input in the error store (group-committed; `done` may be empty).
    virtual void record_error(error_record rec,
                              std::function<void(boost::system::error_code)> done) = 0;
    virtual boost::system::result<std::vector<std::pair<std::int64_t, error_record>>> list_errors(
        std::size_t limit) = 0;
    // A delivery's attempts, oldest first, and the receipts for one external id, oldest first
    // (the console). The defaults have none; a backend overrides them.
    virtual boost::system::result<std::vector<attempt_row>> list_attempts(
        std::int64_t delivery_id) {
        (void)delivery_id;
        return std::vector<attempt_row>{};
    }
    virtual boost::system::result<std::vector<receipt_row>> list_receipts(
        std::string_view destination, std::string_view external_id) {
        (void)destination;
        (void)external_id;
        return std::vector<receipt_row>{};
    }

    // One kept input by id, with its raw payload (only the clinician role may see it). The
    // default looks through list_errors; a backend overrides it with a keyed read.
    virtual boost::system::result<std::optional<error_record>> get_error(std::int64_t id) {
        auto rows = list_errors(static_cast<std::size_t>(-1) >> 1);
        if (!rows) return rows.error();
        for (auto& [rid, rec] : *rows)
            if (rid == id) return std::optional<error_record>(std::move(rec));
        return std::optional<error_record>();
    }

    // Delivery engine: up to `limit` deliveries of `destination` that are due (pending or failed
    // with next_attempt_ms <= now_ms), oldest first, skipping any whose order_key has an earlier
    // delivery to the same destination in pending, in_flight, failed or held. Marks them
    // in_flight and counts the attempt (attempts += 1, an open attempt row) in a write
    // transaction of the writer thread, and returns after its commit: an attempt is durable
    // before any plugin sees it. A delivery that already used `max_attempts` (only possible when
    // the process died during them) is moved to dead instead and returned with state dead and
    // the reason ("the process died during N attempts").
    // Asynchronous: `done` runs after that commit on the store's thread (or at once, with the
    // error, when the store has failed) with the rows.
    virtual void claim_due_async(std::string_view destination, std::int64_t now_ms,
                                 std::size_t limit, int max_attempts, claim_handler done) = 0;
    // The same, waiting for the commit (tests and tools; the engine uses claim_due_async).
    boost::system::result<std::vector<delivery_row>> claim_due(std::string_view destination,
                                                               std::int64_t now_ms,
                                                               std::size_t limit, int max_attempts);
    // Applies state changes (batched into the next commit, each closing its attempt row if
    // closes_attempt, and an audit row). `done` after the commit (may be empty).
    virtual void update(std::vector<delivery_update> updates,
                        std::function<void(boost::system::error_code)> done) = 0;

    // Correlates a receipt by (destination, external_id) and returns the delivery id it matched.
    virtual boost::system::result<std::optional<std::int64_t>> find_by_external_id(
        std::string_view destination, std::string_view external_id) = 0;
    virtual void record_receipt(receipt_record r,
                                std::function<void(boost::system::error_code)> done) = 0;

    // Reads. Every read reports a storage error as an error code, never by throwing.
    // An event a crash lost before its acknowledgement reads as its row with lost_ms set and no
    // envelope (SQLite's envelope log, recover_lost); never as an error.
    virtual boost::system::result<std::optional<event_row>> get_event(std::string_view id) = 0;
    // Several events, one result per id in order, read together where the backend can (one read
    // transaction: the pages their lookups share are read once); one that fails (a sealed record)
    // does not fail the others.
    virtual std::vector<boost::system::result<std::optional<event_row>>> get_events(
        const std::vector<std::string>& ids) {
        std::vector<boost::system::result<std::optional<event_row>>> out;
        out.reserve(ids.size());
        for (const auto& id : ids) out.push_back(get_event(id));
        return out;
    }
    virtual boost::system::result<std::optional<delivery_row>> get_delivery(std::int64_t id) = 0;
    virtual boost::system::result<std::vector<delivery_row>> list_deliveries(
        const delivery_query& q) = 0;
    virtual boost::system::result<std::vector<destination_stats>> stats() = 0;
    // Reads an attachment's bytes by sha256 from `offset` (chunked); returns bytes read, 0 at end.
    virtual boost::system::result<std::size_t> read_attachment(std::string_view sha256,
                                                               std::uint64_t offset,
                                                               std::uint8_t* out,
                                                               std::size_t capacity) = 0;
    // Deliveries of one treatment (for the consent gate re-evaluating queued ones).
    virtual boost::system::result<std::vector<delivery_row>> deliveries_of_treatment(
        std::string_view treatment_id) = 0;

    // Every event of one treatment, oldest first (the consent gate reads them at dispatch).
    virtual boost::system::result<std::vector<event_row>> events_of_treatment(
        std::string_view treatment_id) = 0;
    // Every stored event whose type starts with `type_prefix`, oldest first (reports).
    virtual boost::system::result<void> for_each_event(
        std::string_view type_prefix, const std::function<void(const event_row&)>& fn) = 0;

    // The host-owned file holding an attachment's bytes (read-only for plugins).
    virtual std::string blob_path(std::string_view sha256) const = 0;

    // Audit (append-only, hash-chained). Appended in the next commit.
    virtual void audit(std::string actor, std::string action, std::string subject,
                       std::string detail) = 0;
    virtual boost::system::result<std::vector<audit_row>> list_audit(std::string_view subject,
                                                                     std::size_t limit) = 0;
    // Checks the audit hash chain; returns the id of the first broken row, or nullopt if intact.
    virtual boost::system::result<std::optional<std::int64_t>> verify_audit_chain() = 0;

    // Start-up: in_flight → pending (crash recovery), closing their open attempts as "died" (they
    // stay counted); returns how many were reset.
    virtual boost::system::result<std::size_t> recover_in_flight() = 0;
    // Retention: deletes events whose deliveries are all delivered/acknowledged and older than
    // `older_than_ms`; dead/held/blocked are kept. Returns the number of events pruned.
    virtual boost::system::result<std::size_t> prune(std::int64_t older_than_ms) = 0;
    // Operator replay: deliveries of `destination` created since `since_ms` go back to pending.
    virtual boost::system::result<std::size_t> replay(std::string_view destination,
                                                      std::int64_t since_ms, std::string actor) = 0;

    // Claims at accept time through `c` from now on (empty `c`: no more). False when this store
    // does not claim at accept (then every claim is the engine's, as claim_due_async).
    virtual bool set_accept_claims(accept_claims c) {
        (void)c;
        return false;
    }

    // Takes the lock named `name` for this node without waiting: null while another node holds
    // it (or the store cannot be reached). A store only one node can open grants it at once.
    virtual std::unique_ptr<run_once_lock> try_run_once(std::string_view name);

    // Waits until everything queued so far is committed (tests, shutdown).
    virtual void flush() = 0;
    // Group commit observer for metrics (its time and what it held), called on the writer thread.
    virtual void on_commit(std::function<void(const commit_info&)> fn) = 0;
    // Fatal I/O (fsync) error observer: the daemon exits for a clean restart.
    virtual void on_fatal(std::function<void(std::string reason)> fn) = 0;
    // The attachment folder's health (a store keeping attachments elsewhere is always fine), and
    // an observer called once when a trouble begins and once when it ends (on the writing thread).
    virtual blob_health blob_state() const { return {}; }
    virtual void on_blob_state(std::function<void(const blob_health&)> fn) { (void)fn; }
    // What the open checked after an unclean stop (SQLite's envelope log): the records of the rows
    // above the durable watermark, and the events whose record a crash lost (never acknowledged;
    // marked lost, their deliveries dead). The daemon logs it at start.
    struct open_check {
        std::size_t envelopes_checked = 0;
        std::vector<std::string> lost_events;  // ids
    };
    virtual open_check opened() const { return {}; }
};

class keyring;  // store/sealed.hpp

// The error a read gets when a sealed record does not open (changed bytes, another row's data, a
// key that is not configured): never garbage.
boost::system::error_code sealed_record_error() noexcept;

// What an event a crash lost before its acknowledgement says (event_row::lost_ms): in its audit
// rows, its deliveries' reason and the admin API's answer.
inline constexpr const char* kLostReason =
    "lost before acknowledgement: a crash lost this event's envelope, or that of an event stored "
    "before it, before it reached the disk; it was never acknowledged, so its source sends it "
    "again (stored anew, in the order sent)";

struct sqlite_options {
    std::string path;  // database file; attachments go to <path>.blobs/ by sha256
    // Encryption at rest: events' envelopes and refused inputs are sealed (AES-256-GCM) under the
    // keyring's current key; null = off. Attachments' files are not sealed yet.
    std::shared_ptr<const keyring> keys;
    std::size_t max_batch = 512;  // rows per group commit at most
    bool synchronous_full = true;
    // Tests only: runs on the store's envelope-log sync thread before each sync of the log (a
    // test holds it to leave commits whose records are not yet on disk); an error it returns
    // stands for a failed sync.
    std::function<boost::system::error_code()> before_envelope_sync;
};

// Opens (creating and migrating) the SQLite store. Throws std::runtime_error with a clear message
// when the file cannot be opened or migrated (a start-up error).
std::unique_ptr<store> open_sqlite(const sqlite_options& opts);

struct postgresql_options {
    std::string conninfo;           // a libpq connection string (a secret: never logged)
    std::string node_id;            // this node's name in leases and the audit trail
    std::int64_t lease_ms = 60000;  // a claim's lease; another node takes the delivery after it
    std::size_t max_batch = 512;    // jobs per group commit at most
    // Encryption at rest of envelopes and refused inputs, as sqlite_options::keys; null = off.
    std::shared_ptr<const keyring> keys;
};

// Opens (creating and migrating) the PostgreSQL store shared by several nodes: attachments'
// bytes live in the database; claims lease deliveries with fencing tokens. Throws
// std::runtime_error with a clear message (never the password) when it cannot connect or migrate.
std::unique_ptr<store> open_postgresql(const postgresql_options& opts);

// The envelopes of a treatment's stored events, oldest first, read through a read-only connection
// (safe beside a running daemon; nothing is created or migrated). Empty optional when the store
// file does not exist; an error when it cannot be read.
// Re-seals every stored envelope and refused input of the SQLite store at `path` that is not
// sealed under `keys`' current key (plain ones too) in transactions of `batch` rows, then every
// attachment blob file (each re-sealed to a new file and renamed over the old one). Resumable:
// rows done stay done, and a second run finds them already sealed. Safe beside a running daemon
// while its config still lists the old key under store.encryption.previous. The error names the
// record and the key id that failed.
struct rotate_report {
    std::size_t resealed = 0;  // sealed under the current key by this run
    std::size_t already = 0;   // were sealed under the current key already
    // Attachments' blobs (files, or PostgreSQL's blobs rows), counted apart.
    std::size_t blobs_resealed = 0, blobs_already = 0;
};
boost::system::result<rotate_report, std::string> rotate_sqlite_keys(const std::string& path,
                                                                     const keyring& keys,
                                                                     std::size_t batch = 500);
// The same on the PostgreSQL store reached by `conninfo` (safe beside running nodes whose configs
// still list the old key under previous).
boost::system::result<rotate_report, std::string> rotate_postgresql_keys(
    const std::string& conninfo, const keyring& keys, std::size_t batch = 500);

boost::system::result<std::optional<std::vector<std::string>>> read_treatment_history(
    const std::string& path, std::string_view treatment_id, const keyring* keys = nullptr);

// Every audit row of the SQLite store at `path`, oldest first, through a read-only connection (safe
// beside a running daemon; nothing is created or migrated) until `fn` returns false. An error when
// the file does not exist or cannot be read.
boost::system::result<void> read_audit_rows(const std::string& path,
                                            const std::function<bool(const audit_row&)>& fn);

// As read_treatment_history and read_audit_rows, on the PostgreSQL store at `conninfo`: one
// read-only session and snapshot, nothing created or migrated (sealed envelopes opened with
// `keys`). ENOENT (history: an empty optional)
// when the store's tables do not exist yet; otherwise an error, with the server's reason (never
// the password) in `why`.
boost::system::result<std::optional<std::vector<std::string>>> read_treatment_history_pg(
    const std::string& conninfo, std::string_view treatment_id, const keyring* keys,
    std::string& why);
boost::system::result<void> read_audit_rows_pg(const std::string& conninfo,
                                               const std::function<bool(const audit_row&)>& fn,
                                               std::string& why);

}  // namespace samband::store
