// The PostgreSQL store shared by several nodes: group commit on one writer thread, claims with
// FOR UPDATE SKIP LOCKED under a lease and a fencing token, one audit hash chain, blobs in bytea.
#include "store/audit_chain.hpp"
#include "store/blob_seal.hpp"
#include "store/pg_db.hpp"
#include "store/sealed.hpp"
#include "store/store.hpp"

#include "core/ids.hpp"
#include "core/thread_name.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <variant>

namespace samband::store {

namespace {

namespace fs = std::filesystem;
using boost::system::error_code;

// The columns read_delivery() expects, in order.
#define PG_DELIVERY_COLUMNS                                                               \
    "d.id, e.id, d.destination, d.route, d.state, d.attempts, d.next_ms, d.external_id, " \
    "d.reason, d.order_key, e.type, d.created_ms, d.updated_ms, d.overridden, "           \
    "d.attempts_base, d.fence, d.lease_node"

// An event's envelope: in its events row since schema 4, in payloads for events stored before.
#define PG_ENVELOPE "COALESCE(e.envelope, p.envelope)"
#define PG_EVENTS_WITH_ENVELOPE "events e LEFT JOIN payloads p ON p.event_seq = e.seq"
#define PG_EVENT_COLUMNS                                             \
    "e.seq, e.id, e.source, e.idempotency_key, e.type, " PG_ENVELOPE \
    ", e.treatment_id, "                                             \
    "e.order_key, e.received_ms"

// Versioned migrations: index i brings the schema from version i to i+1. Append only.
const char* const kMigrations[] = {
    // 1: the initial schema (the SQLite store's version 3, plus leases, fencing and blobs).
    R"sql(
CREATE TABLE events(
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  source TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  type TEXT NOT NULL,
  occurred_at TEXT NOT NULL DEFAULT '',
  treatment_id TEXT NOT NULL DEFAULT '',
  order_key TEXT NOT NULL DEFAULT '',
  received_ms BIGINT NOT NULL,
  UNIQUE(source, idempotency_key));
CREATE INDEX events_treatment ON events(treatment_id, seq) WHERE treatment_id <> '';
CREATE INDEX events_received ON events(received_ms);
CREATE TABLE payloads(event_seq BIGINT PRIMARY KEY, envelope TEXT NOT NULL);
CREATE TABLE attachments(
  event_seq BIGINT NOT NULL, att_id TEXT NOT NULL, n INTEGER NOT NULL, filename TEXT NOT NULL,
  media_type TEXT NOT NULL, sha256 TEXT NOT NULL, size BIGINT NOT NULL,
  PRIMARY KEY(event_seq, att_id));
CREATE INDEX attachments_sha ON attachments(sha256);
CREATE TABLE blobs(sha256 TEXT PRIMARY KEY, size BIGINT NOT NULL, data BYTEA NOT NULL);
CREATE TABLE deliveries(
  id BIGSERIAL PRIMARY KEY,
  event_seq BIGINT NOT NULL,
  destination TEXT NOT NULL,
  route TEXT NOT NULL DEFAULT '',
  state INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_ms BIGINT NOT NULL DEFAULT 0,
  order_key TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  external_id TEXT,
  reason TEXT NOT NULL DEFAULT '',
  overridden INTEGER NOT NULL DEFAULT 0,
  attempts_base INTEGER NOT NULL DEFAULT 0,
  fence BIGINT NOT NULL DEFAULT 0,
  lease_node TEXT NOT NULL DEFAULT '',
  lease_until BIGINT NOT NULL DEFAULT 0);
CREATE INDEX deliveries_ready ON deliveries(destination, id) WHERE state IN (0, 4);
CREATE INDEX deliveries_leased ON deliveries(destination, lease_until) WHERE state = 1;
CREATE INDEX deliveries_order ON deliveries(destination, order_key, id) WHERE state IN (0, 1, 4, 7);
CREATE INDEX deliveries_event ON deliveries(event_seq);
CREATE INDEX deliveries_state ON deliveries(state, destination, id);
CREATE INDEX deliveries_ext ON deliveries(destination, external_id) WHERE external_id IS NOT NULL;
CREATE TABLE attempts(
  delivery_id BIGINT NOT NULL, n INTEGER NOT NULL, started_ms BIGINT NOT NULL,
  ended_ms BIGINT NOT NULL, state INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '',
  outcome TEXT NOT NULL DEFAULT 'closed', node TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(delivery_id, n));
CREATE INDEX attempts_open ON attempts(delivery_id) WHERE outcome = 'open';
CREATE TABLE receipts(
  id BIGSERIAL PRIMARY KEY, destination TEXT NOT NULL, external_id TEXT NOT NULL,
  kind INTEGER NOT NULL, text TEXT NOT NULL, at_ms BIGINT NOT NULL);
CREATE TABLE audit(
  id BIGSERIAL PRIMARY KEY, at_ms BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
  subject TEXT NOT NULL, detail TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX audit_subject ON audit(subject, id);
CREATE TABLE errors(
  id BIGSERIAL PRIMARY KEY, at_ms BIGINT NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL,
  idempotency_key TEXT NOT NULL DEFAULT '', payload TEXT NOT NULL);
)sql",
    // 2: the content hash of each event (a reused idempotency key with other content is a
    // conflict) and the audit chain's hash format per row (as the SQLite store's version 4).
    R"sql(
ALTER TABLE events ADD COLUMN content_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN hash_v INTEGER NOT NULL DEFAULT 1;
)sql",
    // 3: the open attempt lives in its delivery row, as the SQLite store's version 5: a claim
    // updates the delivery alone; the attempts row is written once, when the attempt ends (or
    // as 'died' by recovery or a takeover). Open attempts rows from before stay readable.
    R"sql(
ALTER TABLE deliveries ADD COLUMN attempt_started_ms BIGINT NOT NULL DEFAULT 0;
)sql",
    // 4: a new event's envelope is stored in its events row (no payloads row and index entry
    // beside it), as the SQLite store's version 7. Events stored before keep theirs in payloads:
    // reads take the events row's envelope, else the payloads row's (PG_ENVELOPE).
    R"sql(
ALTER TABLE events ADD COLUMN envelope TEXT;
)sql",
    // 5: deliveries_state leaves out in_flight and delivered, as the SQLite store's version 8
    // (in flight, deliveries_leased serves the lease takeover).
    R"sql(
DROP INDEX deliveries_state;
CREATE INDEX deliveries_state ON deliveries(state, destination, id) WHERE state NOT IN (1, 2);
)sql",
};
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

// True when the store on `c` keeps envelopes in its events rows (schema 4 and later): the tools
// that read or re-seal a store beside running nodes migrate nothing.
bool events_have_envelopes(pg_conn& c) {
    auto r = c.query(
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'events' AND column_name = 'envelope'",
        pg_params());
    return r.rows() > 0 && r.i64(0, 0) > 0;
}

// Advisory lock keys (one database may hold several stores only in separate schemas; the keys
// are per database, which errs on the safe side).
constexpr std::int64_t kMigrateLock = 0x53424d01;  // "SBM" 1: one node migrates at a time
constexpr std::int64_t kAuditLock = 0x53424d02;    // the audit chain: one appender at a time
constexpr int kRunOnceLockClass = 0x53424d03;      // with hashtext(name): a run-once source

error_code io_error() {
    return boost::system::errc::make_error_code(boost::system::errc::io_error);
}
error_code busy_error() {
    return boost::system::errc::make_error_code(
        boost::system::errc::resource_unavailable_try_again);
}
error_code invalid_error() {
    return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
}

// PostgreSQL array literals (text format) for unnest() and ANY().
std::string pg_array(const std::vector<std::string>& v) {
    std::string out = "{";
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) out += ',';
        out += '"';
        for (char c : v[i]) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    }
    return out + "}";
}
std::string pg_array(const std::vector<std::int64_t>& v) {
    std::string out = "{";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
    return out + "}";
}

bool valid_sha(std::string_view sha) {
    return sha.size() == 64 && sha.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// Reads a whole attachment input (bytes in memory or a file) for the blobs table; with `keys`
// sealed as it is read (store/blob_seal), so the file is in memory once, sealed.
bool load_input(const attachment_input& a, const keyring* keys, std::string& out) {
    if (!keys) {
        if (a.path.empty()) {
            out = a.bytes;
            return true;
        }
        std::ifstream in(a.path, std::ios::binary);
        if (!in) return false;
        out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        return !in.bad();
    }
    std::uint64_t size = a.path.empty() ? a.bytes.size() : a.meta.size;
    blob_sealer sealer(*keys, a.meta.sha256, size);
    out = sealer.header();
    out.reserve(static_cast<std::size_t>(
        blob_header{"", {}, static_cast<std::uint32_t>(kBlobChunk), size, sealer.header()}
            .sealed_size()));
    if (a.path.empty()) return sealer.update(a.bytes, out) && sealer.finish(out);
    std::ifstream in(a.path, std::ios::binary);
    if (!in) return false;
    std::string buf(kBlobChunk, '\0');
    while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        auto got = static_cast<std::size_t>(in.gcount());
        if (got > 0 && !sealer.update(std::string_view(buf.data(), got), out)) return false;
    }
    return !in.bad() && sealer.finish(out);
}

// An attachment's row for the blobs table: its plaintext size, its bytes as stored (sealed or not).
struct stored_blob {
    std::string sha256;
    std::uint64_t size = 0;
    std::string bytes;
};

class pg_store final : public store {
public:
    explicit pg_store(const postgresql_options& opts) : opts_(opts) {
        if (opts_.node_id.empty()) throw std::runtime_error("store: postgresql needs a node_id");
        try {
            wdb_ = writer_connection();
            rpool_.push_back(std::make_unique<pg_conn>(opts_.conninfo));
            ropen_ = 1;
            migrate();
            check_keys();
            check_blob_keys();
        } catch (const pg_error& e) {
            throw std::runtime_error(std::string("store: ") + e.what());
        }
        writer_ = std::thread([this] {
            core::name_this_thread("store-writer");
            writer_loop();
        });
    }

    ~pg_store() override {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        if (writer_.joinable()) writer_.join();
    }

    // ---- writes (queued for the writer thread) ----

    void submit(new_event ev, submit_handler done) override {
        // Attachments' bytes go into the blobs table in the same transaction as the event: a
        // second node (or a restore) finds them where it finds the event.
        auto blobs = std::make_shared<std::vector<stored_blob>>();
        for (const auto& a : ev.attachments) {
            std::string bytes;
            if (!valid_sha(a.meta.sha256) || !load_input(a, opts_.keys.get(), bytes)) {
                done(io_error(), {});
                return;
            }
            blobs->push_back(
                {a.meta.sha256, a.path.empty() ? a.bytes.size() : a.meta.size, std::move(bytes)});
        }
        auto e = std::make_shared<new_event>(std::move(ev));
        auto out = std::make_shared<submit_outcome>();
        enqueue(job{[this, e, out, blobs](pg_conn& d) { do_submit(d, *e, *blobs, *out); },
                    [done = std::move(done), out](error_code ec) { done(ec, *out); }});
    }

    void record_error(error_record rec, std::function<void(error_code)> done) override {
        auto r = std::make_shared<error_record>(std::move(rec));
        enqueue(job{[this, r](pg_conn& d) {
                        d.query(
                            "INSERT INTO errors(at_ms, source, reason, idempotency_key, payload) "
                            "VALUES($1,$2,$3,$4,$5)",
                            pg_params()
                                .add(core::now_ms())
                                .add(r->source)
                                .add(r->reason)
                                .add(r->idempotency_key)
                                .add(seal_column(opts_.keys.get(), r->payload,
                                                 "error:" + r->source + ":" + r->idempotency_key)));
                        add_audit(d, "ingest", "event.rejected", "source:" + r->source, r->reason);
                    },
                    std::move(done)});
    }

    void update(std::vector<delivery_update> ups, std::function<void(error_code)> done) override {
        auto u = std::make_shared<std::vector<delivery_update>>(std::move(ups));
        enqueue(job{[this, u](pg_conn& d) {
                        for (const auto& x : *u) do_update(d, x);
                    },
                    std::move(done)},
                lane::engine);
    }

    void record_receipt(receipt_record r, std::function<void(error_code)> done) override {
        auto rp = std::make_shared<receipt_record>(std::move(r));
        enqueue(job{[rp](pg_conn& d) {
                        d.query(
                            "INSERT INTO receipts(destination, external_id, kind, text, at_ms) "
                            "VALUES($1,$2,$3,$4,$5)",
                            pg_params()
                                .add(rp->destination)
                                .add(rp->external_id)
                                .add(rp->kind)
                                .add(rp->text)
                                .add(core::now_ms()));
                    },
                    std::move(done)});
    }

    void audit(std::string actor, std::string action, std::string subject,
               std::string detail) override {
        auto a = std::make_shared<std::array<std::string, 4>>(std::array<std::string, 4>{
            std::move(actor), std::move(action), std::move(subject), std::move(detail)});
        enqueue(
            job{[this, a](pg_conn& d) { add_audit(d, (*a)[0], (*a)[1], (*a)[2], (*a)[3]); }, {}},
            lane::engine);
    }

    void claim_due_async(std::string_view destination, std::int64_t now_ms, std::size_t limit,
                         int max_attempts, claim_handler done) override {
        auto rows = std::make_shared<std::vector<delivery_row>>();
        std::string dest(destination);
        enqueue(job{[this, rows, dest, now_ms, limit, max_attempts](pg_conn& d) {
                        rows->clear();
                        do_claim(d, dest, now_ms, limit, max_attempts, *rows);
                    },
                    [rows, done = std::move(done)](error_code ec) {
                        if (ec) rows->clear();
                        done(ec, std::move(*rows));
                    }},
                lane::engine);
    }

    // ---- reads (own connection) ----

    boost::system::result<std::vector<std::pair<std::int64_t, error_record>>> list_errors(
        std::size_t limit) override {
        return read([&](pg_conn& c) {
            std::vector<std::pair<std::int64_t, error_record>> out;
            auto r = c.query(
                "SELECT id, source, reason, payload, idempotency_key FROM errors ORDER BY id DESC "
                "LIMIT $1",
                pg_params().add(static_cast<std::int64_t>(limit)));
            for (int i = 0; i < r.rows(); ++i) {
                error_record e{r.text(i, 1), r.text(i, 2), r.text(i, 3), r.text(i, 4)};
                e.payload = open_column(opts_.keys.get(), std::move(e.payload),
                                        "error:" + e.source + ":" + e.idempotency_key);
                out.emplace_back(r.i64(i, 0), std::move(e));
            }
            return out;
        });
    }

    boost::system::result<std::optional<error_record>> get_error(std::int64_t id) override {
        return read([&](pg_conn& c) {
            auto r =
                c.query("SELECT source, reason, payload, idempotency_key FROM errors WHERE id = $1",
                        pg_params().add(id));
            std::optional<error_record> out;
            if (r.rows() > 0) {
                out = error_record{r.text(0, 0), r.text(0, 1), r.text(0, 2), r.text(0, 3)};
                out->payload = open_column(opts_.keys.get(), std::move(out->payload),
                                           "error:" + out->source + ":" + out->idempotency_key);
            }
            return out;
        });
    }

    boost::system::result<std::vector<attempt_row>> list_attempts(
        std::int64_t delivery_id) override {
        return read([&](pg_conn& c) {
            // The attempt in flight is in the delivery row (schema 3) until it ends.
            auto r = c.query(
                "SELECT n, started_ms, ended_ms, state, outcome, reason FROM attempts WHERE "
                "delivery_id = $1 UNION ALL SELECT d.attempts, d.attempt_started_ms, 0, 1, "
                "'open', '' FROM deliveries d WHERE d.id = $1 AND d.state = 1 AND "
                "d.attempt_started_ms > 0 AND NOT EXISTS (SELECT 1 FROM attempts a WHERE "
                "a.delivery_id = d.id AND a.n = d.attempts) ORDER BY 1",
                pg_params().add(delivery_id));
            std::vector<attempt_row> out;
            for (int i = 0; i < r.rows(); ++i) {
                attempt_row a;
                a.n = r.i64(i, 0);
                a.started_ms = r.i64(i, 1);
                a.ended_ms = r.i64(i, 2);
                std::string outcome = r.text(i, 4);
                a.outcome = outcome == "closed"
                                ? std::string(to_string(static_cast<delivery_state>(r.i64(i, 3))))
                                : outcome;
                a.reason = r.text(i, 5);
                out.push_back(std::move(a));
            }
            return out;
        });
    }

    boost::system::result<std::vector<receipt_row>> list_receipts(
        std::string_view destination, std::string_view external_id) override {
        return read([&](pg_conn& c) {
            auto r = c.query(
                "SELECT at_ms, kind, text FROM receipts WHERE destination = $1 AND external_id = "
                "$2 ORDER BY id",
                pg_params().add(std::string(destination)).add(std::string(external_id)));
            std::vector<receipt_row> out;
            for (int i = 0; i < r.rows(); ++i)
                out.push_back(
                    receipt_row{r.i64(i, 0), static_cast<std::int32_t>(r.i64(i, 1)), r.text(i, 2)});
            return out;
        });
    }

    boost::system::result<std::optional<std::int64_t>> find_by_external_id(
        std::string_view destination, std::string_view external_id) override {
        return read([&](pg_conn& c) {
            auto r = c.query(
                "SELECT id FROM deliveries WHERE destination = $1 AND external_id = $2 ORDER BY "
                "id DESC LIMIT 1",
                pg_params().add(destination).add(external_id));
            std::optional<std::int64_t> out;
            if (r.rows() > 0) out = r.i64(0, 0);
            return out;
        });
    }

    boost::system::result<std::optional<event_row>> get_event(std::string_view id) override {
        return read([&](pg_conn& c) {
            auto r = c.query("SELECT " PG_EVENT_COLUMNS " FROM " PG_EVENTS_WITH_ENVELOPE
                             " WHERE e.id = "
                             "$1",
                             pg_params().add(id));
            std::optional<event_row> out;
            if (r.rows() > 0) {
                out = read_event(r, 0);
                load_attachments(c, r.i64(0, 0), *out);
            }
            return out;
        });
    }

    boost::system::result<std::vector<event_row>> events_of_treatment(
        std::string_view treatment_id) override {
        return read([&](pg_conn& c) {
            auto r = c.query("SELECT " PG_EVENT_COLUMNS " FROM " PG_EVENTS_WITH_ENVELOPE
                             " WHERE "
                             "e.treatment_id = $1 AND e.treatment_id <> '' ORDER BY e.seq",
                             pg_params().add(treatment_id));
            std::vector<event_row> out;
            for (int i = 0; i < r.rows(); ++i) out.push_back(read_event(r, i));
            return out;
        });
    }

    boost::system::result<void> for_each_event(
        std::string_view type_prefix, const std::function<void(const event_row&)>& fn) override {
        // Paged by seq: a large store is never one result in memory.
        std::int64_t after = 0;
        for (;;) {
            auto page = read([&](pg_conn& c) {
                auto r = c.query("SELECT " PG_EVENT_COLUMNS " FROM " PG_EVENTS_WITH_ENVELOPE
                                 " WHERE "
                                 "e.seq > $1 AND starts_with(e.type, $2) ORDER BY e.seq LIMIT 1000",
                                 pg_params().add(after).add(type_prefix));
                std::vector<std::pair<std::int64_t, event_row>> out;
                for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.i64(i, 0), read_event(r, i));
                return out;
            });
            if (!page) return page.error();
            if (page->empty()) return {};
            for (const auto& [seq, ev] : *page) {
                fn(ev);
                after = seq;
            }
        }
    }

    boost::system::result<std::optional<delivery_row>> get_delivery(std::int64_t id) override {
        return read([&](pg_conn& c) {
            auto r = c.query("SELECT " PG_DELIVERY_COLUMNS
                             " FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id = "
                             "$1",
                             pg_params().add(id));
            std::optional<delivery_row> out;
            if (r.rows() > 0) out = read_delivery(r, 0);
            return out;
        });
    }

    boost::system::result<std::vector<delivery_row>> list_deliveries(
        const delivery_query& dq) override {
        return read([&](pg_conn& c) {
            // Every filter is always bound; an unused one matches everything.
            auto r = c.query(
                "SELECT " PG_DELIVERY_COLUMNS
                " FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id > $1 AND "
                "($2::integer < 0 OR d.state = $2::integer) AND ($3::text = '' OR d.destination = "
                "$3::text) AND ($4::text = '' OR e.id = $4::text) AND d.created_ms >= $5::bigint "
                "AND ($7::bigint <= 0 OR d.updated_ms < $7::bigint) ORDER BY d.id LIMIT "
                "$6::bigint",
                pg_params()
                    .add(dq.after_id)
                    .add(dq.state ? code(*dq.state) : -1)
                    .add(dq.destination)
                    .add(dq.event_id)
                    .add(dq.since_ms)
                    .add(static_cast<std::int64_t>(dq.limit))
                    .add(dq.updated_before_ms));
            std::vector<delivery_row> out;
            for (int i = 0; i < r.rows(); ++i) out.push_back(read_delivery(r, i));
            return out;
        });
    }

    boost::system::result<std::vector<destination_stats>> stats() override {
        return read([&](pg_conn& c) {
            std::map<std::string, destination_stats> by;
            auto r = c.query(
                "SELECT destination, state, COUNT(*), MIN(created_ms) FROM deliveries GROUP BY "
                "destination, state");
            for (int i = 0; i < r.rows(); ++i) {
                auto& s = by[r.text(i, 0)];
                s.destination = r.text(i, 0);
                auto st = from_code(r.i64(i, 1));
                if (!st) continue;
                s.by_state[code(*st)] = r.i64(i, 2);
                if (*st == delivery_state::pending || *st == delivery_state::failed ||
                    *st == delivery_state::in_flight) {
                    std::int64_t oldest = r.i64(i, 3);
                    if (s.oldest_pending_ms == 0 || oldest < s.oldest_pending_ms)
                        s.oldest_pending_ms = oldest;
                }
            }
            std::vector<destination_stats> out;
            for (auto& [k, v] : by) out.push_back(v);
            return out;
        });
    }

    boost::system::result<std::size_t> read_attachment(std::string_view sha256,
                                                       std::uint64_t offset, std::uint8_t* out,
                                                       std::size_t capacity) override {
        if (!valid_sha(sha256)) return invalid_error();
        // A sealed blob reads its header first, then only the chunks the range touches.
        bool auth_failed = false;
        auto r = read([&](pg_conn& c) {
            auto q = c.query(
                "SELECT substring(data FROM $2::integer + 1 FOR $3::integer), substring(data FROM "
                "1 FOR $4::integer), octet_length(data)::text FROM blobs WHERE sha256 = $1",
                pg_params()
                    .add(sha256)
                    .add(static_cast<std::int64_t>(offset))
                    .add(static_cast<std::int64_t>(capacity))
                    .add(static_cast<std::int64_t>(kBlobHeaderMax)),
                1);
            std::optional<std::size_t> n;
            if (q.rows() == 0) return n;
            auto h = parse_blob_header(q.bytes(0, 1));
            if (!h) {
                auto b = q.bytes(0, 0);
                std::copy(b.begin(), b.end(), out);
                n = b.size();
                return n;
            }
            std::uint64_t stored = std::stoull(std::string(q.bytes(0, 2)));
            auto got = read_sealed_blob(
                opts_.keys.get(), *h, sha256, stored, offset, out, capacity,
                [&](std::uint64_t at, std::size_t len, std::string& into) {
                    auto part = c.query(
                        "SELECT substring(data FROM $2::integer + 1 FOR $3::integer) FROM blobs "
                        "WHERE sha256 = $1",
                        pg_params()
                            .add(sha256)
                            .add(static_cast<std::int64_t>(at))
                            .add(static_cast<std::int64_t>(len)),
                        1);
                    if (part.rows() == 0) return false;
                    into.assign(part.bytes(0, 0));
                    return true;
                });
            if (got) {
                n = *got;
            } else {
                auth_failed = got.error().auth;
                n = std::numeric_limits<std::size_t>::max();
            }
            return n;
        });
        if (!r) return r.error();
        if (*r && **r == std::numeric_limits<std::size_t>::max())
            return auth_failed ? sealed_record_error() : io_error();
        if (!*r)
            return boost::system::errc::make_error_code(
                boost::system::errc::no_such_file_or_directory);
        return **r;
    }

    // The bytes are in the database: plugins read a short-lived copy (store/blob_copies).
    std::string blob_path(std::string_view) const override { return {}; }

    boost::system::result<std::vector<delivery_row>> deliveries_of_treatment(
        std::string_view treatment_id) override {
        return read([&](pg_conn& c) {
            auto r = c.query("SELECT " PG_DELIVERY_COLUMNS
                             " FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE "
                             "e.treatment_id = $1 AND e.treatment_id <> '' ORDER BY d.id",
                             pg_params().add(treatment_id));
            std::vector<delivery_row> out;
            for (int i = 0; i < r.rows(); ++i) out.push_back(read_delivery(r, i));
            return out;
        });
    }

    boost::system::result<std::vector<audit_row>> list_audit(std::string_view subject,
                                                             std::size_t limit) override {
        return read([&](pg_conn& c) {
            auto r =
                subject.empty()
                    ? c.query(
                          "SELECT id, at_ms, actor, action, subject, detail, hash, hash_v FROM "
                          "audit ORDER BY id DESC LIMIT $1",
                          pg_params().add(static_cast<std::int64_t>(limit)))
                    : c.query(
                          "SELECT id, at_ms, actor, action, subject, detail, hash, hash_v FROM "
                          "audit WHERE subject = $2 ORDER BY id LIMIT $1",
                          pg_params().add(static_cast<std::int64_t>(limit)).add(subject));
            std::vector<audit_row> out;
            for (int i = 0; i < r.rows(); ++i)
                out.push_back({r.i64(i, 0), r.i64(i, 1), r.text(i, 2), r.text(i, 3), r.text(i, 4),
                               r.text(i, 5), r.text(i, 6), static_cast<int>(r.i64(i, 7))});
            return out;
        });
    }

    boost::system::result<std::optional<std::int64_t>> verify_audit_chain() override {
        // Ids come from a sequence, which a rolled-back transaction leaves gaps in: the chain
        // (each row hashing the previous row's hash) is what shows a removed row here.
        audit_chain_check check(false);
        std::int64_t after = 0;
        for (;;) {
            auto page = read([&](pg_conn& c) {
                auto r = c.query(
                    "SELECT id, at_ms, actor, action, subject, detail, hash, hash_v FROM audit "
                    "WHERE id > $1 ORDER BY id LIMIT 5000",
                    pg_params().add(after));
                std::vector<audit_row> out;
                for (int i = 0; i < r.rows(); ++i)
                    out.push_back({r.i64(i, 0), r.i64(i, 1), r.text(i, 2), r.text(i, 3),
                                   r.text(i, 4), r.text(i, 5), r.text(i, 6),
                                   static_cast<int>(r.i64(i, 7))});
                return out;
            });
            if (!page) return page.error();
            if (page->empty()) return std::optional<std::int64_t>();
            for (const auto& a : *page) {
                if (!check.add(a.id, a.hash_version, a.at_ms, a.actor, a.action, a.subject,
                               a.detail, a.hash))
                    return check.broken_at();
                after = a.id;
            }
        }
    }

    boost::system::result<std::size_t> recover_in_flight() override {
        // Only this node's leases: another node's in-flight deliveries are its own (or, once
        // their lease has expired, taken over by a claim).
        return run_sync([this](pg_conn& d) {
            std::int64_t now = core::now_ms();
            d.query(
                "UPDATE attempts a SET outcome = 'died', ended_ms = $1, reason = 'the process "
                "ended during this attempt' FROM deliveries d WHERE a.delivery_id = d.id AND "
                "a.outcome = 'open' AND d.state = 1 AND d.lease_node = $2",
                pg_params().add(now).add(opts_.node_id));
            // Since schema 3 the open attempt is in the delivery row: it becomes a 'died' row.
            d.query(
                "INSERT INTO attempts(delivery_id, n, started_ms, ended_ms, state, reason, "
                "outcome, node) SELECT id, attempts, attempt_started_ms, $1::bigint, 1, 'the "
                "process "
                "ended during this attempt', 'died', lease_node FROM deliveries WHERE state = 1 "
                "AND lease_node = $2 AND attempts > 0 ON CONFLICT (delivery_id, n) DO NOTHING",
                pg_params().add(now).add(opts_.node_id));
            auto r = d.query(
                "UPDATE deliveries SET state = 0, lease_until = 0, reason = 'the process ended "
                "during attempt ' || attempts || '; recovered after restart' WHERE state = 1 AND "
                "lease_node = $1",
                pg_params().add(opts_.node_id));
            return r.affected();
        });
    }

    boost::system::result<std::size_t> prune(std::int64_t older_than_ms) override {
        return run_sync([this, older_than_ms](pg_conn& d) {
            auto r = d.query(
                "WITH gone AS (SELECT e.seq FROM events e WHERE e.received_ms < $1 AND NOT EXISTS "
                "(SELECT 1 FROM deliveries x WHERE x.event_seq = e.seq AND x.state NOT IN (2, "
                "3))), "
                "a AS (DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries "
                "WHERE event_seq IN (SELECT seq FROM gone))), "
                "dl AS (DELETE FROM deliveries WHERE event_seq IN (SELECT seq FROM gone)), "
                "pl AS (DELETE FROM payloads WHERE event_seq IN (SELECT seq FROM gone)), "
                "att AS (DELETE FROM attachments WHERE event_seq IN (SELECT seq FROM gone) "
                "RETURNING sha256), "
                "ev AS (DELETE FROM events WHERE seq IN (SELECT seq FROM gone) RETURNING seq), "
                "bl AS (DELETE FROM blobs b WHERE b.sha256 IN (SELECT sha256 FROM att) AND NOT "
                "EXISTS (SELECT 1 FROM attachments x WHERE x.sha256 = b.sha256 AND x.event_seq "
                "NOT IN (SELECT seq FROM gone))) "
                "SELECT COUNT(*) FROM ev",
                pg_params().add(older_than_ms));
            auto n = static_cast<std::size_t>(r.i64(0, 0));
            if (n > 0)
                add_audit(d, "retention", "events.pruned", "store", std::to_string(n) + " events");
            return n;
        });
    }

    boost::system::result<std::size_t> replay(std::string_view destination, std::int64_t since_ms,
                                              std::string actor) override {
        std::string dest(destination);
        return run_sync([this, dest, since_ms, actor](pg_conn& d) {
            auto r = d.query(
                "UPDATE deliveries SET state = 0, next_ms = 0, updated_ms = $3, attempts_base = "
                "attempts, reason = 'replay by ' || $4 WHERE destination = $1 AND created_ms >= "
                "$2 AND state IN (2, 3, 5)",
                pg_params().add(dest).add(since_ms).add(core::now_ms()).add(actor));
            std::size_t n = r.affected();
            add_audit(d, actor, "deliveries.replay", "destination:" + dest,
                      std::to_string(n) + " deliveries since " + std::to_string(since_ms));
            return n;
        });
    }

    // A session advisory lock on a connection of its own: it ends with this node's session (a
    // crash, a network split, the database restarting), and then another node takes it.
    std::unique_ptr<run_once_lock> try_run_once(std::string_view name) override {
        class pg_lock final : public run_once_lock {
        public:
            explicit pg_lock(std::unique_ptr<pg_conn> c) : c_(std::move(c)) {}
            bool held() override {
                try {
                    return c_->ok() && c_->query("SELECT 1").rows() == 1;
                } catch (const std::exception&) {
                    return false;
                }
            }

        private:
            std::unique_ptr<pg_conn> c_;
        };
        try {
            auto c = std::make_unique<pg_conn>(opts_.conninfo);
            auto r = c->query("SELECT pg_try_advisory_lock($1::integer, hashtext($2))",
                              pg_params().add(kRunOnceLockClass).add(name));
            if (r.text(0, 0) != "t") return nullptr;
            return std::make_unique<pg_lock>(std::move(c));
        } catch (const std::exception&) {
            return nullptr;
        }
    }

    void flush() override {
        std::promise<void> p;
        auto f = p.get_future();
        enqueue(job{[](pg_conn&) {}, [&p](error_code) { p.set_value(); }});
        f.wait();
    }

    void on_commit(std::function<void(const commit_info&)> fn) override {
        std::lock_guard lock(mu_);
        on_commit_ = std::move(fn);
    }
    void on_fatal(std::function<void(std::string)> fn) override {
        std::lock_guard lock(mu_);
        on_fatal_ = std::move(fn);
    }

private:
    struct job {
        std::function<void(pg_conn&)> run;
        std::function<void(error_code)> done;
    };
    enum class lane { ingest, engine };

    void migrate() {
        pg_conn& c = *wdb_;
        // Several nodes may start at once: one migrates, the others wait and find it done.
        c.exec("SELECT pg_advisory_lock(" + std::to_string(kMigrateLock) + ")");
        try {
            c.exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)");
            auto r = c.query("SELECT COALESCE(MAX(version), 0) FROM schema_version");
            int v = static_cast<int>(r.i64(0, 0));
            if (v > kSchemaVersion)
                throw std::runtime_error("store has schema version " + std::to_string(v) +
                                         ", newer than this samband knows (" +
                                         std::to_string(kSchemaVersion) +
                                         "); run the newer samband or restore a backup");
            for (; v < kSchemaVersion; ++v) {
                c.exec("BEGIN");
                try {
                    c.exec(kMigrations[v]);
                    c.exec("DELETE FROM schema_version; INSERT INTO schema_version VALUES(" +
                           std::to_string(v + 1) + ")");
                    c.exec("COMMIT");
                } catch (...) {
                    c.exec("ROLLBACK");
                    throw;
                }
            }
        } catch (...) {
            c.exec("SELECT pg_advisory_unlock(" + std::to_string(kMigrateLock) + ")");
            throw;
        }
        c.exec("SELECT pg_advisory_unlock(" + std::to_string(kMigrateLock) + ")");
    }

    static delivery_row read_delivery(const pg_result& r, int i) {
        delivery_row d;
        d.id = r.i64(i, 0);
        d.event_id = r.text(i, 1);
        d.destination = r.text(i, 2);
        d.route = r.text(i, 3);
        auto st = from_code(r.i64(i, 4));
        if (!st)
            throw std::runtime_error("delivery " + std::to_string(d.id) + " has state code " +
                                     r.text(i, 4) + " that this samband does not know");
        d.state = *st;
        d.attempts = static_cast<std::int32_t>(r.i64(i, 5));
        d.next_attempt_ms = r.i64(i, 6);
        d.external_id = r.text(i, 7);
        d.reason = r.text(i, 8);
        d.order_key = r.text(i, 9);
        d.event_type = r.text(i, 10);
        d.created_ms = r.i64(i, 11);
        d.updated_ms = r.i64(i, 12);
        d.overridden = r.i64(i, 13) != 0;
        d.attempts_base = static_cast<std::int32_t>(r.i64(i, 14));
        d.fence = r.i64(i, 15);
        return d;
    }

    // Start-up: the oldest and the newest stored envelope must open with the configured keys (a
    // missing or wrong key is a clear error naming the key id).
    // Start-up: the newest attachment must open too (a blob sealed under a key that is not
    // configured stops the start naming the key id, as an envelope does).
    void check_blob_keys() {
        auto r = rpool_.front()->query(
            "SELECT a.sha256, substring(b.data FROM 1 FOR $1::integer) FROM attachments a JOIN "
            "blobs b ON b.sha256 = a.sha256 ORDER BY a.event_seq DESC LIMIT 1",
            pg_params().add(static_cast<std::int64_t>(kBlobHeaderMax)), 1);
        if (r.rows() == 0) return;
        std::string sha(r.bytes(0, 0));
        auto h = parse_blob_header(r.bytes(0, 1));
        if (!h) return;
        std::uint8_t first = 0;
        auto got = read_attachment(sha, 0, &first, 1);
        if (!got && got.error() == sealed_record_error())
            throw std::runtime_error(
                "store: stored attachments do not open with the configured keys: attachment "
                "sha256 " +
                sha + " is sealed under encryption key \"" + h->key_id + "\"" +
                (!opts_.keys                   ? ", but store.encryption is not configured"
                 : !opts_.keys->has(h->key_id) ? ", which is not configured"
                                               : " and failed authentication"));
    }

    void check_keys() {
        for (const char* order : {"ASC", "DESC"}) {
            auto r = rpool_.front()->query(
                std::string("SELECT e.id, " PG_ENVELOPE " FROM " PG_EVENTS_WITH_ENVELOPE
                            " ORDER BY e.seq ") +
                    order + " LIMIT 1",
                pg_params());
            if (r.rows() == 0) return;
            try {
                open_column(opts_.keys.get(), r.text(0, 1), "payload:" + r.text(0, 0));
            } catch (const sealed_failure& e) {
                throw std::runtime_error(
                    "store: stored events do not open with the configured keys: " +
                    std::string(e.what()));
            }
        }
    }

    event_row read_event(const pg_result& r, int i) const {
        event_row e;
        e.id = r.text(i, 1);
        e.source = r.text(i, 2);
        e.idempotency_key = r.text(i, 3);
        e.type = r.text(i, 4);
        e.envelope_json = open_column(opts_.keys.get(), r.text(i, 5), "payload:" + e.id);
        e.treatment_id = r.text(i, 6);
        e.order_key = r.text(i, 7);
        e.received_ms = r.i64(i, 8);
        return e;
    }

    static void load_attachments(pg_conn& c, std::int64_t seq, event_row& ev) {
        auto r = c.query(
            "SELECT att_id, filename, media_type, sha256, size FROM attachments WHERE event_seq = "
            "$1 ORDER BY n",
            pg_params().add(seq));
        for (int i = 0; i < r.rows(); ++i)
            ev.attachments.push_back({r.text(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3),
                                      static_cast<std::uint64_t>(r.i64(i, 4))});
    }

    // Runs a read on a connection of the read pool (up to kReadConnections: the engine's
    // prepare workers read in parallel, each read a round trip to the server); a storage error
    // becomes an error code, never a throw. A lost connection is dropped; the next read opens one.
    static constexpr std::size_t kReadConnections = 4;
    template <class F>
    auto read(F fn) -> boost::system::result<decltype(fn(std::declval<pg_conn&>()))> {
        std::unique_ptr<pg_conn> c;
        {
            std::unique_lock lock(rmu_);
            rcv_.wait(lock, [&] { return !rpool_.empty() || ropen_ < kReadConnections; });
            if (!rpool_.empty()) {
                c = std::move(rpool_.back());
                rpool_.pop_back();
            } else {
                ++ropen_;
            }
        }
        // Back to the pool (or dropped, when it is gone) whatever happens below.
        auto give_back = [&](bool keep) {
            std::lock_guard lock(rmu_);
            if (keep && c && c->ok()) {
                rpool_.push_back(std::move(c));
            } else {
                --ropen_;
            }
            rcv_.notify_one();
        };
        try {
            if (!c || !c->ok()) c = std::make_unique<pg_conn>(opts_.conninfo);
            auto out = fn(*c);
            give_back(true);
            return out;
        } catch (const pg_error& e) {
            give_back(!e.connection_lost());
            return e.connection_lost() ? busy_error() : io_error();
        } catch (const sealed_failure&) {
            give_back(true);
            return sealed_record_error();
        } catch (const std::exception&) {
            give_back(true);
            return io_error();
        }
    }

    template <class F>
    auto run_sync(F fn) -> boost::system::result<decltype(fn(std::declval<pg_conn&>()))> {
        using T = decltype(fn(std::declval<pg_conn&>()));
        auto value = std::make_shared<T>();
        std::promise<error_code> p;
        auto f = p.get_future();
        enqueue(job{[value, fn](pg_conn& d) { *value = fn(d); },
                    [&p](error_code ec) { p.set_value(ec); }});
        error_code ec = f.get();
        if (ec) return ec;
        return *value;
    }

    void enqueue(job j, lane l = lane::ingest) {
        {
            std::lock_guard lock(mu_);
            if (stop_) {
                auto done = std::move(j.done);
                if (done) done(io_error());
                return;
            }
            (l == lane::engine ? engine_queue_ : queue_).push_back(std::move(j));
        }
        cv_.notify_one();
    }

    // Writer thread: appends to the one audit chain. The transaction holds the audit lock (taken
    // at its BEGIN), so pending_hash_ is the chain's head across every node.
    void add_audit(pg_conn& d, const std::string& actor, const std::string& action,
                   const std::string& subject, const std::string& detail) {
        std::int64_t at = core::now_ms();
        std::string h =
            audit_hash(kAuditHashVersion, pending_hash_, at, actor, action, subject, detail);
        d.query(
            "INSERT INTO audit(at_ms, actor, action, subject, detail, hash, hash_v) "
            "VALUES($1,$2,$3,$4,$5,$6,$7)",
            pg_params().add(at).add(actor).add(action).add(subject).add(detail).add(h).add(
                static_cast<std::int64_t>(kAuditHashVersion)));
        pending_hash_ = h;
    }

    void do_submit(pg_conn& d, const new_event& ev, const std::vector<stored_blob>& blobs,
                   submit_outcome& out) {
        std::int64_t now = core::now_ms();
        // One statement (one round trip) stores the event, its envelope, its deliveries and its
        // audit row. ON CONFLICT: a second node submitting the same key at the same moment waits
        // for the first one's commit and then finds it (a duplicate, not an error).
        std::vector<std::string> dests, routes, states, reasons;
        for (const auto& nd : ev.deliveries) {
            dests.push_back(nd.destination);
            routes.push_back(nd.route);
            states.push_back(std::to_string(code(nd.state)));
            reasons.push_back(nd.reason);
        }
        const std::string actor = "source:" + ev.source, subject = "event:" + ev.id;
        const std::string detail = ev.type + " deliveries=" + std::to_string(ev.deliveries.size());
        const std::string hash = audit_hash(kAuditHashVersion, pending_hash_, now, actor,
                                            "event.accepted", subject, detail);
        auto ins = d.query(
            "WITH ev AS (INSERT INTO events(id, source, idempotency_key, type, occurred_at, "
            "treatment_id, order_key, received_ms, content_sha256, envelope) VALUES($1,$2,$3,$4,$5,"
            "$6,$7,$8,$18,$9) ON CONFLICT (source, idempotency_key) DO NOTHING RETURNING seq), "
            "dl AS (INSERT INTO deliveries(event_seq, destination, route, state, order_key, "
            "created_ms, updated_ms, reason) SELECT ev.seq, x.d, x.r, x.s, $7, $8, $8, x.why FROM "
            "ev, unnest($10::text[], $11::text[], $12::integer[], $13::text[]) WITH ORDINALITY "
            "AS x(d, r, s, why, n) ORDER BY x.n), "
            "au AS (INSERT INTO audit(at_ms, actor, action, subject, detail, hash, hash_v) SELECT "
            "$8, $14, 'event.accepted', $15, $16, $17, $19 FROM ev) "
            "SELECT seq FROM ev",
            pg_params()
                .add(ev.id)
                .add(ev.source)
                .add(ev.idempotency_key)
                .add(ev.type)
                .add(ev.occurred_at)
                .add(ev.treatment_id)
                .add(ev.order_key)
                .add(now)
                .add(seal_column(opts_.keys.get(), ev.envelope_json, "payload:" + ev.id))
                .add(pg_array(dests))
                .add(pg_array(routes))
                .add(pg_array(states))
                .add(pg_array(reasons))
                .add(actor)
                .add(subject)
                .add(detail)
                .add(hash)
                .add(ev.content_sha256)
                .add(static_cast<std::int64_t>(kAuditHashVersion)));
        if (ins.rows() == 0) {
            auto dup = d.query(
                "SELECT id, content_sha256 FROM events WHERE source = $1 AND idempotency_key = $2",
                pg_params().add(ev.source).add(ev.idempotency_key));
            if (dup.rows() == 0) throw std::runtime_error("duplicate key vanished");
            out.event_id = dup.text(0, 0);
            std::string first = dup.text(0, 1);
            if (!first.empty() && !ev.content_sha256.empty() && first != ev.content_sha256) {
                out.conflict = true;
                return;
            }
            out.duplicate = true;
            return;
        }
        pending_hash_ = hash;
        std::int64_t seq = ins.i64(0, 0);
        for (const auto& b : blobs) {
            d.query(
                "INSERT INTO blobs(sha256, size, data) VALUES($1, $2, $3) ON CONFLICT (sha256) DO "
                "NOTHING",
                pg_params()
                    .add(b.sha256)
                    .add(static_cast<std::int64_t>(b.size))
                    .add_bytes(b.bytes));
        }
        int n = 0;
        for (const auto& a : ev.attachments) {
            d.query(
                "INSERT INTO attachments(event_seq, att_id, n, filename, media_type, sha256, "
                "size) VALUES($1,$2,$3,$4,$5,$6,$7)",
                pg_params()
                    .add(seq)
                    .add(a.meta.id)
                    .add(n++)
                    .add(a.meta.filename)
                    .add(a.meta.media_type)
                    .add(a.meta.sha256)
                    .add(static_cast<std::int64_t>(a.meta.size)));
        }
        out.event_id = ev.id;
        out.duplicate = false;
    }

    // Writer thread: locks the due deliveries of `dest` (SKIP LOCKED: another node's claim in
    // progress is passed over, never waited for), including in-flight ones whose lease expired,
    // and opens one counted attempt each under this node's lease and a new fencing token.
    // Per-(order_key, destination) order holds across nodes: a delivery is due only when no
    // earlier one of the same key and destination is waiting or in flight anywhere, i.e. it is
    // the first of its key still open. Asked as a scalar subquery per candidate, an index lookup
    // on (destination, order_key): as NOT EXISTS, the generic plan of a freshly filled table
    // (estimated 1 row) anti-joined on the destination alone and read the whole backlog for
    // every candidate (3.7 s per claim with 3,000 pending; bench/pg's 156 events/s).
    void do_claim(pg_conn& d, const std::string& dest, std::int64_t now_ms, std::size_t limit,
                  int max_attempts, std::vector<delivery_row>& rows) {
        std::int64_t now = core::now_ms();
        auto q = d.query(
            "SELECT " PG_DELIVERY_COLUMNS
            ", d.lease_until"
            " FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE "
            "d.destination = $1 AND ((d.state IN (0, 4) AND d.next_ms <= $2) OR "
            "(d.state = 1 AND d.lease_until < $4)) AND (SELECT MIN(p.id) FROM deliveries p "
            "WHERE p.destination = $1 AND p.order_key = d.order_key AND p.state IN (0, 1, 4, "
            "7)) = d.id ORDER BY d.id LIMIT $3 FOR UPDATE OF d SKIP LOCKED",
            pg_params().add(dest).add(now_ms).add(static_cast<std::int64_t>(limit)).add(now));
        // Two statements for the whole claim (not two per delivery): every round trip to the
        // server is paid by the one writer.
        std::vector<std::int64_t> ids;
        for (int i = 0; i < q.rows(); ++i) {
            delivery_row r = read_delivery(q, i);
            if (r.state == delivery_state::in_flight) take_over(d, r, q.text(i, 16), now);
            if (max_attempts > 0 && r.attempts - r.attempts_base >= max_attempts)
                exhaust(d, r, now);
            if (r.state != delivery_state::dead) ids.push_back(r.id);
            rows.push_back(std::move(r));
        }
        if (ids.empty()) return;
        // The attempt is counted (durably, in this commit) before any plugin sees the delivery;
        // its attempts row is written when it ends. One statement for the whole claim beside the
        // select: every round trip to the server is paid by the one writer.
        auto up = d.query(
            "UPDATE deliveries SET state = 1, attempts = attempts + 1, fence = fence + 1, "
            "lease_node = $2, lease_until = $3, updated_ms = $4, attempt_started_ms = $4 WHERE "
            "id = ANY($1::bigint[]) RETURNING id, attempts, fence",
            pg_params().add(pg_array(ids)).add(opts_.node_id).add(now + opts_.lease_ms).add(now));
        std::map<std::int64_t, std::pair<std::int32_t, std::int64_t>> claimed;
        for (int i = 0; i < up.rows(); ++i)
            claimed[up.i64(i, 0)] = {static_cast<std::int32_t>(up.i64(i, 1)), up.i64(i, 2)};
        for (auto& r : rows) {
            auto c = claimed.find(r.id);
            if (c == claimed.end() || r.state == delivery_state::dead) continue;
            r.attempts = c->second.first;
            r.fence = c->second.second;
            r.state = delivery_state::in_flight;
        }
    }

    // An in-flight delivery whose node's lease expired (the node died or stalled): its open
    // attempt ends as died (it stays counted), and the takeover is audited.
    void take_over(pg_conn& d, delivery_row& r, const std::string& lease_node, std::int64_t now) {
        std::string why = "the lease of node " + lease_node + " expired during this attempt";
        d.query(
            "UPDATE attempts SET outcome = 'died', ended_ms = $2, reason = $3 WHERE delivery_id = "
            "$1 AND outcome = 'open'",
            pg_params().add(r.id).add(now).add(why));
        // Since schema 3 the open attempt is in the delivery row.
        d.query(
            "INSERT INTO attempts(delivery_id, n, started_ms, ended_ms, state, reason, outcome, "
            "node) SELECT id, attempts, attempt_started_ms, $2::bigint, 1, $3::text, 'died', "
            "lease_node FROM "
            "deliveries WHERE id = $1 AND attempts > 0 ON CONFLICT (delivery_id, n) DO NOTHING",
            pg_params().add(r.id).add(now).add(why));
        add_audit(d, "engine", "delivery.lease_taken_over", "delivery:" + std::to_string(r.id),
                  "attempt " + std::to_string(r.attempts) + " of node " + lease_node +
                      " expired; taken over by node " + opts_.node_id);
        r.state = delivery_state::pending;
    }

    void exhaust(pg_conn& d, delivery_row& r, std::int64_t now) {
        auto c = d.query(
            "SELECT COUNT(*) FROM attempts WHERE delivery_id = $1 AND n > $2 AND outcome = 'died'",
            pg_params().add(r.id).add(r.attempts_base));
        std::int64_t died = c.i64(0, 0);
        int used = r.attempts - r.attempts_base;
        std::string why = died == used
                              ? "the process died during " + std::to_string(used) + " attempts"
                              : "gave up after " + std::to_string(used) +
                                    " attempts; the process died during " + std::to_string(died) +
                                    " of them";
        d.query(
            "UPDATE deliveries SET state = 5, reason = $2, updated_ms = $3, lease_until = 0 WHERE "
            "id = $1",
            pg_params().add(r.id).add(why).add(now));
        add_audit(d, "engine", "delivery.dead", "delivery:" + std::to_string(r.id), "dead: " + why);
        r.state = delivery_state::dead;
        r.reason = why;
    }

    void do_update(pg_conn& d, const delivery_update& u) {
        std::int64_t now = core::now_ms();
        std::string subject = "delivery:" + std::to_string(u.delivery_id);
        auto cur =
            d.query("SELECT state, fence, lease_node FROM deliveries WHERE id = $1 FOR UPDATE",
                    pg_params().add(u.delivery_id));
        if (cur.rows() == 0) return;
        auto from = from_code(cur.i64(0, 0));
        std::int64_t fence = cur.i64(0, 1);
        std::string holder = cur.text(0, 2);
        std::string what =
            std::string(to_string(u.state)) + (u.reason.empty() ? "" : ": " + u.reason);
        if (u.fence != 0 && u.fence != fence) {
            // The delivery was taken over after this node's lease expired: its outcome is
            // evidence, not the delivery's state.
            add_audit(d, u.actor, "delivery.late_completion_refused", subject,
                      "late completion from node " + opts_.node_id + " refused (fencing token " +
                          std::to_string(u.fence) + ", current " + std::to_string(fence) +
                          " held by node " + holder + "): " + what +
                          (u.external_id.empty() ? "" : " external_id=" + u.external_id));
            return;
        }
        if (!from || !transition_allowed(*from, u.state)) {
            add_audit(d, u.actor, "delivery.transition_refused", subject,
                      std::string(from ? to_string(*from) : "unknown") + " -> " + what);
            return;
        }
        if (u.closes_attempt > 0) {
            // The attempts row, written once: started when the delivery row says (an open row
            // from before schema 3 is closed instead).
            d.query(
                "INSERT INTO attempts(delivery_id, n, started_ms, ended_ms, state, reason, "
                "outcome, node) SELECT id, $6::integer, attempt_started_ms, $1::bigint, "
                "$2::integer, "
                "$3::text, $4::text, lease_node "
                "FROM deliveries WHERE id = $5 ON CONFLICT (delivery_id, n) DO UPDATE SET "
                "ended_ms = EXCLUDED.ended_ms, state = EXCLUDED.state, reason = EXCLUDED.reason, "
                "outcome = EXCLUDED.outcome",
                pg_params()
                    .add(now)
                    .add(code(u.state))
                    .add(u.reason)
                    .add(std::string(to_string(u.state)))
                    .add(u.delivery_id)
                    .add(u.closes_attempt));
        } else if (*from == delivery_state::in_flight && u.state != delivery_state::in_flight &&
                   !u.hand_back) {
            // Moved out of flight without ending its attempt (an operator's hold): the attempt
            // stays on record as open, as it did before schema 3.
            d.query(
                "INSERT INTO attempts(delivery_id, n, started_ms, ended_ms, state, reason, "
                "outcome, node) SELECT id, attempts, attempt_started_ms, 0, 1, '', 'open', "
                "lease_node FROM deliveries WHERE id = $1 AND attempts > 0 ON CONFLICT "
                "(delivery_id, n) DO NOTHING",
                pg_params().add(u.delivery_id));
        }
        if (u.hand_back)
            d.query("DELETE FROM attempts WHERE delivery_id = $1 AND outcome = 'open'",
                    pg_params().add(u.delivery_id));
        d.query(
            "UPDATE deliveries SET state = $1, reason = $2, next_ms = $3, updated_ms = $4, "
            "attempts = GREATEST(attempts - $5, 0), external_id = COALESCE(NULLIF($6, ''), "
            "external_id), overridden = GREATEST(overridden, $8), attempts_base = CASE WHEN $9 = "
            "1 THEN attempts ELSE attempts_base END, lease_until = CASE WHEN $1 = 1 THEN "
            "lease_until ELSE 0 END WHERE id = $7",
            pg_params()
                .add(code(u.state))
                .add(u.reason)
                .add(u.next_attempt_ms)
                .add(now)
                .add(u.hand_back ? 1 : 0)
                .add(u.external_id)
                .add(u.delivery_id)
                .add(u.override_gate ? 1 : 0)
                .add(u.renew_attempts ? 1 : 0));
        if (u.override_gate) add_audit(d, u.actor, "gate.override", subject, u.reason);
        std::string detail(to_string(u.state));
        if (!u.reason.empty()) detail += ": " + u.reason;
        if (!u.external_id.empty()) detail += " external_id=" + u.external_id;
        add_audit(d, u.actor, "delivery." + std::string(to_string(u.state)), subject, detail);
    }

    // Fails every queued job (the database is unreachable: nothing is acknowledged).
    void fail_queued(error_code ec) {
        std::deque<job> rest;
        {
            std::lock_guard lock(mu_);
            rest.swap(queue_);
            for (auto& j : engine_queue_) rest.push_back(std::move(j));
            engine_queue_.clear();
        }
        for (auto& j : rest)
            if (j.done) j.done(ec);
    }

    // Writer thread: re-opens a lost connection, backing off (100 ms doubling to 5 s). While the
    // database is unreachable, whatever is queued fails with an error (sources keep their input
    // and retry), so nothing waits forever and nothing is acknowledged.
    bool reconnect() {
        auto delay = std::chrono::milliseconds(100);
        for (;;) {
            {
                std::lock_guard lock(mu_);
                if (stop_) return false;
            }
            try {
                wdb_ = writer_connection();
                return true;
            } catch (const pg_error&) {
                wdb_.reset();
            }
            fail_queued(busy_error());
            std::unique_lock lock(mu_);
            cv_.wait_for(lock, delay, [&] { return stop_; });
            delay = std::min(delay * 2, std::chrono::milliseconds(5000));
        }
    }

    // The writer's session. Every write transaction of every node holds the audit lock to its
    // end, so a node frozen inside one (stopped, paused, its host swapping) would hold up every
    // other node's writes, takeovers included, until its connection died (hours, with TCP's
    // keepalive). The server ends a session idle inside a transaction for longer than the lease
    // (5 s at most): its locks go, the other nodes go on, and the frozen node, when it wakes,
    // finds its connection gone and connects again (its uncommitted work rolled back).
    std::unique_ptr<pg_conn> writer_connection() {
        auto c = std::make_unique<pg_conn>(opts_.conninfo);
        std::int64_t ms = std::clamp<std::int64_t>(opts_.lease_ms, 1000, 5000);
        c->exec("SET idle_in_transaction_session_timeout = " + std::to_string(ms));
        // Named in pg_stat_activity, so an operator (and the takeover test) tells the nodes'
        // writers apart.
        c->query("SELECT set_config('application_name', $1, false)",
                 pg_params().add("samband-writer:" + opts_.node_id));
        return c;
    }

    void writer_loop() {
        std::vector<job> batch;
        for (;;) {
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !engine_queue_.empty(); });
                if (queue_.empty() && engine_queue_.empty() && stop_) return;
            }
            if ((!wdb_ || !wdb_->ok()) && !reconnect()) {
                fail_queued(io_error());
                return;
            }
            {
                std::unique_lock lock(mu_);
                std::size_t max = std::max<std::size_t>(opts_.max_batch, 1);
                batch.clear();
                for (auto* q : {&engine_queue_, &queue_}) {
                    while (!q->empty() && (batch.size() < max || q == &engine_queue_)) {
                        batch.push_back(std::move(q->front()));
                        q->pop_front();
                    }
                }
            }
            if (batch.empty()) continue;
            auto t0 = std::chrono::steady_clock::now();
            error_code ec;
            std::vector<error_code> job_ec(batch.size());
            pg_conn& d = *wdb_;
            try {
                d.exec("BEGIN");
                // One audit chain for every node: a transaction appends only under the audit lock
                // (held to its end, outside any savepoint) and reads the chain's head under it.
                // This also serialises the nodes' write transactions: a claim always sees the
                // other nodes' committed claims (per-key order cannot race).
                d.query("SELECT pg_advisory_xact_lock($1)", pg_params().add(kAuditLock));
                {
                    auto head = d.query("SELECT hash FROM audit ORDER BY id DESC LIMIT 1");
                    pending_hash_ = head.rows() > 0 ? head.text(0, 0) : std::string();
                }
                // A savepoint per job: a job that fails rolls back alone. Releasing one and
                // setting the next go in one round trip.
                d.exec("SAVEPOINT job");
                for (std::size_t i = 0; i < batch.size(); ++i) {
                    std::string hash_before = pending_hash_;
                    try {
                        batch[i].run(d);
                    } catch (const pg_error& e) {
                        if (e.connection_lost()) throw;
                        d.exec("ROLLBACK TO SAVEPOINT job");
                        pending_hash_ = hash_before;
                        job_ec[i] = e.constraint() ? invalid_error() : busy_error();
                    } catch (const std::exception&) {
                        d.exec("ROLLBACK TO SAVEPOINT job");
                        pending_hash_ = hash_before;
                        job_ec[i] = invalid_error();
                    }
                    if (i + 1 < batch.size()) d.exec("RELEASE SAVEPOINT job; SAVEPOINT job");
                }
                d.exec("RELEASE SAVEPOINT job; COMMIT");
            } catch (const pg_error& e) {
                // A lost connection (or a failed COMMIT) fails the whole batch: no job is
                // acknowledged. The next batch reconnects first.
                if (!e.connection_lost()) {
                    try {
                        d.exec("ROLLBACK");
                    } catch (...) {
                    }
                }
                ec = busy_error();
            } catch (const std::exception&) {
                try {
                    d.exec("ROLLBACK");
                } catch (...) {
                }
                ec = busy_error();
            }
            double secs =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::function<void(const commit_info&)> commit_cb;
            {
                std::lock_guard lock(mu_);
                commit_cb = on_commit_;
            }
            if (!ec && commit_cb) commit_cb(commit_info{secs, batch.size()});
            for (std::size_t i = 0; i < batch.size(); ++i)
                if (batch[i].done) batch[i].done(ec ? ec : job_ec[i]);
        }
    }

    postgresql_options opts_;
    std::unique_ptr<pg_conn> wdb_;                 // writer thread
    std::vector<std::unique_ptr<pg_conn>> rpool_;  // idle read connections, under rmu_
    std::size_t ropen_ = 0;                        // read connections open or in use
    std::mutex rmu_;
    std::condition_variable rcv_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<job> queue_;
    std::deque<job> engine_queue_;
    bool stop_ = false;
    std::string pending_hash_;  // writer thread
    std::function<void(const commit_info&)> on_commit_;
    std::function<void(std::string)> on_fatal_;
    std::thread writer_;
};

}  // namespace

boost::system::result<rotate_report, std::string> rotate_postgresql_keys(
    const std::string& conninfo, const keyring& keys, std::size_t batch) {
    using boost::system::in_place_error;
    if (batch == 0) batch = 1;
    const std::string current = keys.current();
    try {
        pg_conn c(conninfo);
        rotate_report rep;
        // One table at a time, in key order, a batch per transaction (rows locked while re-sealed).
        auto pass = [&](const char* select, const char* update) {
            std::int64_t after = 0;
            for (;;) {
                c.exec("BEGIN");
                auto r =
                    c.query(select, pg_params().add(after).add(static_cast<std::int64_t>(batch)));
                if (r.rows() == 0) {
                    c.exec("COMMIT");
                    return;
                }
                for (int i = 0; i < r.rows(); ++i) {
                    after = r.i64(i, 0);
                    std::string stored = r.text(i, 2);
                    if (column_sealed_under(stored, current)) {
                        ++rep.already;
                        continue;
                    }
                    std::string aad = r.text(i, 1);
                    std::string plain = open_column(&keys, std::move(stored), aad);
                    c.query(update, pg_params().add(seal_column(&keys, plain, aad)).add(after));
                    ++rep.resealed;
                }
                c.exec("COMMIT");
            }
        };
        pass(
            "SELECT p.event_seq, 'payload:' || e.id, p.envelope FROM payloads p JOIN events e ON "
            "e.seq = p.event_seq WHERE p.event_seq > $1 ORDER BY p.event_seq LIMIT $2 FOR UPDATE "
            "OF p",
            "UPDATE payloads SET envelope = $1 WHERE event_seq = $2");
        if (events_have_envelopes(c))
            pass(
                "SELECT seq, 'payload:' || id, envelope FROM events WHERE seq > $1 AND envelope IS "
                "NOT NULL ORDER BY seq LIMIT $2 FOR UPDATE",
                "UPDATE events SET envelope = $1 WHERE seq = $2");
        pass(
            "SELECT id, 'error:' || source || ':' || idempotency_key, payload FROM errors WHERE "
            "id > $1 ORDER BY id LIMIT $2 FOR UPDATE",
            "UPDATE errors SET payload = $1 WHERE id = $2");
        // Attachments: one row per transaction, locked while re-sealed (a blob is up to tens of
        // MB: it is in memory twice here, the stored bytes and the re-sealed ones).
        std::string after;
        for (;;) {
            auto names =
                c.query("SELECT sha256 FROM blobs WHERE sha256 > $1 ORDER BY sha256 LIMIT $2",
                        pg_params().add(after).add(static_cast<std::int64_t>(batch)));
            if (names.rows() == 0) break;
            for (int i = 0; i < names.rows(); ++i) {
                after = names.text(i, 0);
                c.exec("BEGIN");
                auto row = c.query("SELECT data FROM blobs WHERE sha256 = $1 FOR UPDATE",
                                   pg_params().add(after), 1);
                if (row.rows() == 0) {
                    c.exec("COMMIT");  // pruned meanwhile
                    continue;
                }
                std::string stored(row.bytes(0, 0));
                auto h = parse_blob_header(stored);
                if (h && h->key_id == current) {
                    c.exec("COMMIT");
                    ++rep.blobs_already;
                    continue;
                }
                std::string fresh;
                auto r = reseal_blob(
                    keys, after, stored.size(),
                    [&](std::uint64_t at, std::size_t len, std::string& into) {
                        into = at < stored.size() ? stored.substr(static_cast<std::size_t>(at), len)
                                                  : std::string();
                        return true;
                    },
                    [&](std::string_view piece) {
                        fresh.append(piece);
                        return true;
                    });
                if (!r) {
                    c.exec("ROLLBACK");
                    return {in_place_error, r.error().why};
                }
                stored.clear();
                stored.shrink_to_fit();
                c.query("UPDATE blobs SET data = $1 WHERE sha256 = $2",
                        pg_params().add_bytes(fresh).add(after));
                c.exec("COMMIT");
                ++rep.blobs_resealed;
            }
        }
        return {boost::system::in_place_value, rep};
    } catch (const sealed_failure& e) {
        return {in_place_error, e.what()};
    } catch (const std::exception& e) {
        return {in_place_error, std::string("store error: ") + e.what()};
    }
}

namespace {

// A read-only session on one snapshot for the command-line readers; the tables' absence is
// ENOENT (a store no daemon has opened yet).
template <class Fn>
boost::system::result<void> read_only_session(const std::string& conninfo, std::string& why,
                                              Fn&& fn) {
    try {
        pg_conn c(conninfo);
        c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        auto r = c.query(
            "SELECT to_regclass('audit') IS NOT NULL AND to_regclass('events') IS NOT NULL");
        if (r.text(0, 0) != "t") {
            why = "the database has no samband store yet";
            return error_code(ENOENT, boost::system::generic_category());
        }
        fn(c);
        c.exec("COMMIT");
        return {};
    } catch (const std::exception& e) {
        why = e.what();
        return io_error();
    }
}

}  // namespace

boost::system::result<std::optional<std::vector<std::string>>> read_treatment_history_pg(
    const std::string& conninfo, std::string_view treatment_id, const keyring* keys,
    std::string& why) {
    std::vector<std::string> out;
    auto r = read_only_session(conninfo, why, [&](pg_conn& c) {
        auto q = c.query(events_have_envelopes(c)
                             ? "SELECT e.id, " PG_ENVELOPE " FROM " PG_EVENTS_WITH_ENVELOPE
                               " WHERE e.treatment_id = $1 AND e.treatment_id <> '' ORDER BY e.seq"
                             : "SELECT e.id, p.envelope FROM events e JOIN payloads p ON "
                               "p.event_seq = e.seq WHERE e.treatment_id = $1 AND e.treatment_id "
                               "<> '' ORDER BY e.seq",
                         pg_params().add(treatment_id));
        for (int i = 0; i < q.rows(); ++i)
            out.push_back(open_column(keys, q.text(i, 1), "payload:" + q.text(i, 0)));
    });
    if (!r) {
        if (r.error() == boost::system::errc::no_such_file_or_directory)
            return std::optional<std::vector<std::string>>();
        return r.error();
    }
    return std::optional<std::vector<std::string>>(std::move(out));
}

boost::system::result<void> read_audit_rows_pg(const std::string& conninfo,
                                               const std::function<bool(const audit_row&)>& fn,
                                               std::string& why) {
    return read_only_session(conninfo, why, [&](pg_conn& c) {
        // Paged by id: a long log is never one result in memory.
        std::int64_t after = 0;
        for (;;) {
            auto q = c.query(
                "SELECT id, at_ms, actor, action, subject, detail, hash, hash_v FROM audit WHERE "
                "id > $1 ORDER BY id LIMIT 5000",
                pg_params().add(after));
            if (q.rows() == 0) return;
            for (int i = 0; i < q.rows(); ++i) {
                audit_row a{
                    q.i64(i, 0),  q.i64(i, 1),  q.text(i, 2), q.text(i, 3),
                    q.text(i, 4), q.text(i, 5), q.text(i, 6), static_cast<int>(q.i64(i, 7))};
                if (!fn(a)) return;
                after = a.id;
            }
        }
    });
}

std::unique_ptr<store> open_postgresql(const postgresql_options& opts) {
    if (opts.conninfo.empty()) throw std::runtime_error("store: postgresql needs a conninfo");
    return std::make_unique<pg_store>(opts);
}

}  // namespace samband::store
