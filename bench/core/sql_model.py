#!/usr/bin/env python3
"""The SQLite store's SQL per delivered event, replayed without the daemon (issue 10).

Replays the statements host/store/sqlite_backend.cpp issues for one delivered 8 KB event at full
rate, on the store's own schema (the migrations are read from sqlite_backend.cpp), group-committed
as the writer does (WAL, synchronous=FULL, one commit holding B accepts, the claim of B earlier
deliveries and the completions of B earlier still), against the same run's baseline: 8 KB rows,
100 per commit (bench/core/run.py's). Python issues the statements, as the baseline does: the
per-statement cost of Python (a few µs) is in both, so the ratio is the schema's price, and what
the daemon loses beyond it is the host's (pipeline round trips, threads).

Models (the rows to pick from, by measurement):
  claim       today at full rate: accept stores pending, a claim job takes it (10 statements)
  accept      claimed at accept: stored in flight by the accept (9 statements)
  accept-a1   as accept, the completions' audit facts one row per completion job (per commit)
  accept-lean as accept-a1, and no next_head statement when the chain had no other delivery
  no-audit    as accept without any audit rows (a bound, not a candidate)
Usage: bench/core/sql_model.py [--quick] [--batch B]
Writes bench/results/sql-model-<timestamp>.{json,md}.

--two: the hung-neighbour goal's models instead (issue 10). Each event is routed to the healthy
destination (claimed at accept and delivered, as model accept) and, but in solo, to a second one
whose delivery stays pending (an idle neighbour: one delivery hung, no claims), on the store's
schema with one candidate change to the deliveries indexes each (TWO_VARIANTS). The goal's ratio
is solo events/s over each two-destination model's; writes bench/results/sql-model-two-<ts>.*
"""
import hashlib, json, os, re, sqlite3, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUICK = "--quick" in sys.argv
BATCH = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 100
PATIENTS = 5000  # bench-source's default: order keys and treatments


def migrations(upto=None):
    src = open(os.path.join(ROOT, "host", "store", "sqlite_backend.cpp")).read()
    body = src[src.index("kMigrations[] = {"):src.index("kSchemaVersion =")]
    return re.findall(r'R"sql\((.*?)\)sql"', body, re.S)[:upto]


def open_db(path, store=False):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if store:  # the store's writer connection's settings (sqlite_backend.cpp open_db)
        db.execute("PRAGMA temp_store=MEMORY")
        db.execute("PRAGMA cache_size=-16000")
        # The store checkpoints on its own thread and connection, not in the writer's commits:
        # no checkpoint here either (the WAL's size then says what the commits wrote).
        db.execute("PRAGMA wal_autocheckpoint=0")
    return db


def baseline(tmp, n, opener=None):
    """8 KB rows, 100 per commit: rows/s. `opener` (path -> connection) defaults to open_db."""
    db = (opener or open_db)(os.path.join(tmp, "baseline.db"))
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)")
    body = os.urandom(8192)
    t0 = time.perf_counter()
    for _ in range(n // 100):
        db.execute("BEGIN")
        for _ in range(100):
            db.execute("INSERT INTO t(body) VALUES(?)", (body,))
        db.execute("COMMIT")
    r = (n // 100 * 100) / (time.perf_counter() - t0)
    db.close()
    return r


KEYS = [hashlib.sha256(f"fnr{p}".encode()).hexdigest()[:24] for p in range(PATIENTS)]
AUDIT = ("INSERT INTO audit(at_ms, actor, action, subject, detail, hash, hash_v) "
         "VALUES(?,?,?,?,?,?,2)")
HASH = "ab" * 32
INS_DELIVERY = (
    "INSERT INTO deliveries(event_seq, destination, route, state, order_key, "
    "created_ms, updated_ms, reason, head, attempts, attempt_started_ms) SELECT ?1, "
    "?2, ?3, CASE WHEN idle AND ?8 THEN 1 ELSE ?4 END, ?5, ?6, ?6, ?7, idle, idle AND "
    "?8, CASE WHEN idle AND ?8 THEN ?6 ELSE 0 END FROM (SELECT NOT EXISTS (SELECT 1 "
    "FROM deliveries p WHERE p.destination = ?2 AND p.order_key = ?5 AND p.state IN "
    "(0, 1, 4, 7)) AS idle) RETURNING id, state")


# --two: the second destination's pending row under candidate index sets. Each is SQL run after
# the migrations, and the text of the insert's chain check (the NOT EXISTS subquery's WHERE).
CHAIN = "p.destination = ?2 AND p.order_key = ?5 AND p.state IN (0, 1, 4, 7)"
TWO_VARIANTS = {
    "solo": ("", CHAIN),
    "two": ("", CHAIN),
    # pending (state 0) rows out of deliveries_state as well: the neighbour's pending row costs
    # one index entry less (the console's pending list then reads another index or the table).
    "two-state": ("DROP INDEX deliveries_state; CREATE INDEX deliveries_state ON "
                  "deliveries(state, destination, id) WHERE state NOT IN (0, 1, 2);", CHAIN),
    # no deliveries_event (a bound: prune and an event's deliveries need a way in).
    "two-event": ("DROP INDEX deliveries_event;", CHAIN),
    # deliveries_order only on chain heads (a bound: the rows queued behind a head are not in
    # it; what the next head is then needs another way in, and the healthy destination's
    # completions here skip the next-head statement: its chains never queue in this model).
    "two-order": ("DROP INDEX deliveries_order; CREATE INDEX deliveries_order ON "
                  "deliveries(destination, order_key) WHERE state IN (0, 1, 4, 7) AND head = 1;",
                  CHAIN + " AND p.head = 1"),
    # the neighbour's row in no secondary index at all but the table (the bound of bounds).
    "two-none": ("DROP INDEX deliveries_state; CREATE INDEX deliveries_state ON "
                 "deliveries(state, destination, id) WHERE state NOT IN (0, 1, 2); "
                 "DROP INDEX deliveries_event; DROP INDEX deliveries_order; CREATE INDEX "
                 "deliveries_order ON deliveries(destination, order_key) WHERE state IN "
                 "(0, 1, 4, 7) AND head = 1;", CHAIN + " AND p.head = 1"),
    # the candidate: a delivery stored behind its chain's head is queued (queued = 1): in an
    # appending index (destination, id) instead of deliveries_order, whose entries land at random
    # leaves (one dirty page per row per commit). Queued rows move into deliveries_order in bulk
    # (each leaf written once per move): when their destination has QUEUE_MAX of them, and
    # before a next-head lookup of their destination (so that lookup sees the whole chain).
    "two-queued": ("ALTER TABLE deliveries ADD COLUMN queued INTEGER NOT NULL DEFAULT 0; "
                   "DROP INDEX deliveries_order; CREATE INDEX deliveries_order ON "
                   "deliveries(destination, order_key, id) WHERE state IN (0, 1, 4, 7) AND "
                   "queued = 0; CREATE INDEX deliveries_queued ON deliveries(destination, id) "
                   "WHERE queued = 1;", CHAIN + " AND p.queued = 0"),
}
TWO_SCHEMA = 8  # the variants change the store's schema 8 (two-queued: wip/hung10's schema 9)
QUEUE_MAX = 4096
FLUSH = "UPDATE deliveries SET queued = 0 WHERE destination = ?1 AND queued = 1"
queued_rows = {}


def accept(db, i, envelope, model, second=None, chain=CHAIN):
    now = int(time.time() * 1000)
    eid = f"ev-{i:012d}"
    key = KEYS[i % PATIENTS]  # as ingest's: sha256 of the person id, 24 hex digits
    db.execute("SELECT id, content_sha256 FROM events WHERE source = ? AND idempotency_key = ?",
               ("load", f"bench:{i}")).fetchall()
    cur = db.execute("INSERT INTO events(id, source, idempotency_key, type, occurred_at, treatment_id, "
               "order_key, received_ms, content_sha256, envelope) VALUES(?,?,?,?,?,?,?,?,?,?)",
               (eid, "load", f"bench:{i}", "rph.assessment.scored", "2026-11-24T10:15:00+01:00",
                f"b-{i % PATIENTS}", key, now, HASH, envelope))
    took = model != "claim"
    ins = INS_DELIVERY.replace(CHAIN, chain)
    if "queued" in chain:
        ins = ins.replace("head, attempts", "head, queued, attempts").replace(
            "?7, idle, idle AND", "?7, idle, NOT idle, idle AND")
    did, state = db.execute(ins, (cur.lastrowid, "sink", "all", 0, key, now, "",
                                  1 if took else 0)).fetchone()
    if second:  # the neighbour's delivery: stored pending, never claimed
        db.execute(ins, (cur.lastrowid, second, "all", 0, key, now, "", 0)).fetchone()
        if "queued" in chain:  # (counts every row: the model's chains are all busy but the first)
            queued_rows[second] = queued_rows.get(second, 0) + 1
            if queued_rows[second] >= QUEUE_MAX:
                db.execute(FLUSH, (second,))
                queued_rows[second] = 0
    if model != "no-audit":
        db.execute(AUDIT, (now, "source:load", "event.accepted", "event:" + eid,
                           f"rph.assessment.scored deliveries={2 if second else 1}", HASH))
    return did if state == 1 else None


CLAIM_SELECT = (
    "SELECT d.id, e.id, d.destination, d.route, d.state, d.attempts, d.next_ms, d.external_id, "
    "d.reason, d.order_key, e.type, d.created_ms, d.updated_ms, d.overridden, d.attempts_base "
    "FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.destination = ?1 AND "
    "d.state IN (0, 4) AND d.head = 1 AND d.next_ms <= ?2 ORDER BY d.id LIMIT ?3")


def claim(db, n):
    now = int(time.time() * 1000)
    rows = db.execute(CLAIM_SELECT, ("sink", now + 10**9, n)).fetchall()
    for r in rows:
        db.execute("UPDATE deliveries SET state = 1, attempts = attempts + 1, "
                   "attempt_started_ms = ?1, updated_ms = ?1 WHERE id = ?2", (now, r[0]))
    return [r[0] for r in rows]


def complete(db, ids, model):
    now = int(time.time() * 1000)
    for did in ids:
        cur = db.execute("SELECT state, destination, order_key, head FROM deliveries WHERE id = ?",
                         (did,)).fetchone()
        if cur is None or cur[0] != 1:
            continue
        db.execute("INSERT INTO attempts(delivery_id, n, started_ms, ended_ms, state, reason, "
                   "outcome) SELECT id, ?6, attempt_started_ms, ?1, ?2, ?3, ?4 FROM deliveries "
                   "WHERE id = ?5 ON CONFLICT(delivery_id, n) DO UPDATE SET ended_ms = "
                   "excluded.ended_ms, state = excluded.state, reason = excluded.reason, outcome = "
                   "excluded.outcome", (now, 2, "", "delivered", did, 1))
        db.execute("UPDATE deliveries SET state = ?1, reason = ?2, next_ms = ?3, updated_ms = ?4, "
                   "attempts = MAX(attempts - ?5, 0), external_id = COALESCE(NULLIF(?6, ''), "
                   "external_id), overridden = MAX(overridden, ?8), attempts_base = CASE WHEN ?9 "
                   "THEN attempts ELSE attempts_base END WHERE id = ?7",
                   (2, "", 0, now, 0, "", did, 0, 0))
        if cur[3] and model == "queued":
            if cur[1] in queued_rows:  # (the store skips destinations that never queued)
                db.execute(FLUSH, (cur[1],))
            db.execute("UPDATE deliveries SET head = 1 WHERE id = (SELECT MIN(id) FROM deliveries "
                       "WHERE destination = ?1 AND order_key = ?2 AND state IN (0, 1, 4, 7) AND "
                       "queued = 0)", (cur[1], cur[2]))
        elif cur[3] and model not in ("accept-lean", "bound"):
            db.execute("UPDATE deliveries SET head = 1 WHERE id = (SELECT MIN(id) FROM deliveries "
                       "WHERE destination = ?1 AND order_key = ?2 AND state IN (0, 1, 4, 7))",
                       (cur[1], cur[2]))
        if model in ("claim", "accept", "bound", "queued"):
            db.execute(AUDIT, (now, "engine", "delivery.delivered", f"delivery:{did}",
                               "delivered", HASH))
    if model in ("accept-a1", "accept-lean") and ids:
        db.execute(AUDIT, (now, "engine", "delivery.delivered", "deliveries:batch",
                           "delivered " + ",".join(map(str, ids)), HASH))


def run_model(tmp, model, n, variant=None):
    db = open_db(os.path.join(tmp, (variant or model) + ".db"), store=True)
    for m in migrations(TWO_SCHEMA if variant else None):
        db.executescript(m)
    second, chain = None, CHAIN
    if variant:
        sql, chain = TWO_VARIANTS[variant]
        db.executescript(sql)
        second = None if variant == "solo" else "hung"
    envelope = os.urandom(4096).hex()  # 8 KB of text, as bench-source's envelopes
    stmts = [0]
    db.set_trace_callback(lambda s: stmts.__setitem__(0, stmts[0] + 1))
    # Steady state of a full-rate pipeline: each commit holds the completions of the batch
    # claimed one commit before, the accepts of a new batch, and (model claim) the claim of the
    # batch accepted one commit before.
    i = 0
    claimed = []   # ids in flight, completed in the next commit
    t0 = time.perf_counter()
    c0 = time.process_time()
    while i < n or claimed:
        db.execute("BEGIN IMMEDIATE")
        complete(db, claimed, model)
        claimed = []
        for _ in range(min(BATCH, n - i)):
            did = accept(db, i, envelope, model, second, chain)
            if did is not None:
                claimed.append(did)
            i += 1
        if model == "claim":
            claimed = claim(db, BATCH)
        db.execute("COMMIT")
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0
    db.set_trace_callback(None)
    wal = os.path.getsize(os.path.join(tmp, (variant or model) + ".db-wal"))
    db.close()
    return {"events_per_s": round(n / secs), "statements_per_event": round(stmts[0] / n, 1),
            "wal_bytes_per_event": round(wal / n), "wal_pages_per_commit": round(
                wal / 4120 / -(-n // BATCH), 1), "cpu_us_per_event": round(cpu * 1e6 / n, 1)}


def main_two():
    """The second destination's pending row under each candidate (TWO_VARIANTS), alternated."""
    n = 10000 if QUICK else 30000
    names = list(TWO_VARIANTS)
    res = {"events": n, "batch": BATCH, "load_average_at_start": os.getloadavg()[0],
           "sqlite": sqlite3.sqlite_version, "models": {m: [] for m in names}}
    runs = 2 if QUICK else 3
    for _ in range(runs):
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            for m in names:
                queued_rows.clear()
                kind = {"two-order": "bound", "two-none": "bound", "two-queued": "queued"}
                res["models"][m].append(run_model(tmp, kind.get(m, "accept"), n, m))
                print(m, res["models"][m][-1], flush=True)
    res["load_average_at_end"] = os.getloadavg()[0]
    med = lambda v: sorted(v)[len(v) // 2]
    solo = med([x["events_per_s"] for x in res["models"]["solo"]])
    solo_cpu = med([x["cpu_us_per_event"] for x in res["models"]["solo"]])
    rows = []
    for m in names:
        r = res["models"][m]
        e = med([x["events_per_s"] for x in r])
        c = med([x["cpu_us_per_event"] for x in r])
        rows.append(f"| {m} | {r[0]['statements_per_event']} | {r[0]['wal_bytes_per_event']} | "
                    f"{r[0]['wal_pages_per_commit']} | {' / '.join(str(x['events_per_s']) for x in r)} | "
                    f"{e / solo:.2f}× | {c} ({c / solo_cpu:.2f}×) |")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.join(ROOT, "bench", "results", "sql-model-two-" + stamp)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    json.dump(res, open(out + ".json", "w"), indent=1)
    open(out + ".md", "w").write(f"""# The second destination's pending row, without the daemon ({stamp})
{n} events of 8 KB, {BATCH} accepts per commit (with the completions of the batch before), WAL,
synchronous=FULL, SQLite {res['sqlite']} from Python, {runs} runs alternated; load
{res['load_average_at_start']:.1f} at start, {res['load_average_at_end']:.1f} at end. solo: one destination,
claimed at accept and delivered (model accept); the others add a second destination's delivery that
stays pending (an idle neighbour), on the store's schema with one candidate change each
(bench/core/sql_model.py TWO_VARIANTS).

| model | statements/event | WAL bytes/event | WAL pages/commit | events/s (runs) | × solo | CPU µs/event (× solo) |
|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n")
    print(open(out + ".md").read())


def main():
    if "--two" in sys.argv:
        return main_two()
    n = 5000 if QUICK else 20000
    models = ["claim", "accept", "accept-a1", "accept-lean", "no-audit"]
    res = {"events": n, "batch": BATCH, "load_average_at_start": os.getloadavg()[0],
           "sqlite": sqlite3.sqlite_version, "baseline_rows_per_s": [], "models": {m: [] for m in models}}
    for _ in range(2 if QUICK else 3):  # alternated: the machine's load drifts
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            res["baseline_rows_per_s"].append(round(baseline(tmp, n)))
            for m in models:
                res["models"][m].append(run_model(tmp, m, n))
                print(m, res["models"][m][-1], flush=True)
    res["load_average_at_end"] = os.getloadavg()[0]
    med = lambda v: sorted(v)[len(v) // 2]
    base = med(res["baseline_rows_per_s"])
    rows = []
    for m in models:
        r = res["models"][m]
        e = med([x["events_per_s"] for x in r])
        rows.append(f"| {m} | {r[0]['statements_per_event']} | {r[0]['wal_bytes_per_event']} | "
                    f"{' / '.join(str(x['events_per_s']) for x in r)} | {e} | {e / base:.2f}× |")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.join(ROOT, "bench", "results", "sql-model-" + stamp)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    json.dump(res, open(out + ".json", "w"), indent=1)
    open(out + ".md", "w").write(f"""# The store's SQL per delivered event, without the daemon ({stamp})
{n} events of 8 KB, {BATCH} accepts per commit (with the claims and completions of earlier
batches), WAL, synchronous=FULL, SQLite {res['sqlite']} from Python; load {res['load_average_at_start']:.1f}
at start, {res['load_average_at_end']:.1f} at end. Baseline (same run): 8 KB rows, 100 per commit:
{' / '.join(map(str, res['baseline_rows_per_s']))} rows/s (median {base}).

| model | statements/event | WAL bytes/event | events/s (runs) | median | × baseline |
|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n")
    print(open(out + ".md").read())


if __name__ == "__main__":
    main()
