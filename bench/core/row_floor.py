#!/usr/bin/env python3
"""How close any durable row model can come to issue 10's "≥ 0.8× the batched baseline" (issue 10).

bench/core/sql_model.py replays the store's own schema (0.58× today, 0.72× claimed at accept).
This script asks the question below it: with the least a store must write per delivered event
(the 8 KB event, its idempotency key, and that it was delivered, durably), what ratio is left?
Each model is group-committed as the writer does (B accepts plus the completions of the B before,
one commit), WAL, synchronous=FULL, against the same run's baseline (8 KB rows, 100 per commit).

Models (the least first):
  one-row      the event row holds its one destination's state; delivered = an UPDATE of it
  two-rows     events + a small deliveries row (id order, state index partial on pending)
  two+attempt  two-rows, plus the attempt row the engine writes before the plugin call
  two+audit    two+attempt, plus one audit row per event (accepted) and one per batch (delivered)
Usage: bench/core/row_floor.py [--quick] [--batch B]   (B: accepts per commit, default 20)
Writes bench/results/row-floor-<timestamp>.{json,md}.
"""
import json, os, sqlite3, sys, tempfile, time

import sql_model  # its connection and its baseline (here without checkpoints in the commits)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUICK = "--quick" in sys.argv
BATCH = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 20
MODELS = ["one-row", "two-rows", "two+attempt", "two+audit"]

SCHEMA = """
CREATE TABLE events(seq INTEGER PRIMARY KEY, source TEXT NOT NULL, idem TEXT NOT NULL,
  received_ms INTEGER NOT NULL, envelope TEXT NOT NULL, state INTEGER NOT NULL DEFAULT 0,
  updated_ms INTEGER NOT NULL DEFAULT 0, UNIQUE(source, idem));
CREATE TABLE deliveries(id INTEGER PRIMARY KEY, event_seq INTEGER NOT NULL,
  destination TEXT NOT NULL, state INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  updated_ms INTEGER NOT NULL);
CREATE INDEX deliveries_pending ON deliveries(destination, id) WHERE state IN (0, 1);
CREATE TABLE attempts(delivery_id INTEGER NOT NULL, n INTEGER NOT NULL, started_ms INTEGER,
  ended_ms INTEGER, outcome TEXT, PRIMARY KEY(delivery_id, n)) WITHOUT ROWID;
CREATE TABLE audit(id INTEGER PRIMARY KEY, at_ms INTEGER, action TEXT, subject TEXT, hash TEXT);
"""


def open_db(path):
    """sql_model.py's connection (WAL, synchronous=FULL), without checkpoints in the commits."""
    db = sql_model.open_db(path)
    db.execute("PRAGMA wal_autocheckpoint=0")
    return db


def run_model(tmp, model, n):
    db = open_db(os.path.join(tmp, model + ".db"))
    db.executescript(SCHEMA)
    envelope = os.urandom(4096).hex()  # 8 KB of text, as bench-source's envelopes
    stmts = [0]
    db.set_trace_callback(lambda s: stmts.__setitem__(0, stmts[0] + 1))
    i, inflight = 0, []
    t0 = time.perf_counter()
    while i < n or inflight:
        now = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        for ref in inflight:  # the completions of the batch before
            if model == "one-row":
                db.execute("UPDATE events SET state = 2, updated_ms = ? WHERE seq = ?", (now, ref))
                continue
            db.execute("UPDATE deliveries SET state = 2, updated_ms = ? WHERE id = ?", (now, ref))
            if model != "two-rows":
                db.execute("UPDATE attempts SET ended_ms = ?, outcome = 'delivered' "
                           "WHERE delivery_id = ? AND n = 1", (now, ref))
        if model == "two+audit" and inflight:
            db.execute("INSERT INTO audit(at_ms, action, subject, hash) VALUES(?,?,?,?)",
                       (now, "delivery.delivered", "deliveries:batch", "ab" * 32))
        inflight = []
        for _ in range(min(BATCH, n - i)):  # the accepts, each claimed at accept
            seq = db.execute("INSERT INTO events(source, idem, received_ms, envelope, state) "
                             "VALUES('load', ?, ?, ?, 1)", (f"bench:{i}", now, envelope)).lastrowid
            if model == "one-row":
                inflight.append(seq)
            else:
                did = db.execute("INSERT INTO deliveries(event_seq, destination, state, attempts, "
                                 "updated_ms) VALUES(?, 'sink', 1, 1, ?)", (seq, now)).lastrowid
                if model != "two-rows":
                    db.execute("INSERT INTO attempts(delivery_id, n, started_ms, outcome) "
                               "VALUES(?, 1, ?, 'open')", (did, now))
                if model == "two+audit":
                    db.execute("INSERT INTO audit(at_ms, action, subject, hash) VALUES(?,?,?,?)",
                               (now, "event.accepted", f"event:{seq}", "ab" * 32))
                inflight.append(did)
            i += 1
        db.execute("COMMIT")
    secs = time.perf_counter() - t0
    db.set_trace_callback(None)
    wal = os.path.getsize(os.path.join(tmp, model + ".db-wal"))
    db.close()
    return {"events_per_s": round(n / secs), "statements_per_event": round(stmts[0] / n, 1),
            "wal_bytes_per_event": round(wal / n)}


def main():
    n = 5000 if QUICK else 20000
    res = {"events": n, "batch": BATCH, "load_average_at_start": os.getloadavg()[0],
           "sqlite": sqlite3.sqlite_version, "baseline_rows_per_s": [],
           "models": {m: [] for m in MODELS}}
    for _ in range(2 if QUICK else 3):  # alternated: the machine's load drifts
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            res["baseline_rows_per_s"].append(round(sql_model.baseline(tmp, n, open_db)))
            for m in MODELS:
                res["models"][m].append(run_model(tmp, m, n))
                print(m, res["models"][m][-1], flush=True)
    res["load_average_at_end"] = os.getloadavg()[0]
    med = lambda v: sorted(v)[len(v) // 2]
    base = med(res["baseline_rows_per_s"])
    rows = []
    for m in MODELS:
        r = res["models"][m]
        e = med([x["events_per_s"] for x in r])
        rows.append(f"| {m} | {r[0]['statements_per_event']} | {r[0]['wal_bytes_per_event']} | "
                    f"{' / '.join(str(x['events_per_s']) for x in r)} | {e} | {e / base:.2f}× |")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.join(ROOT, "bench", "results", "row-floor-" + stamp)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    json.dump(res, open(out + ".json", "w"), indent=1)
    open(out + ".md", "w").write(f"""# The least a durable store writes per delivered event ({stamp})
{n} events of 8 KB, {BATCH} accepts per commit (with the completions of the batch before), WAL,
synchronous=FULL, SQLite {res['sqlite']} from Python; load {res['load_average_at_start']:.1f} at
start, {res['load_average_at_end']:.1f} at end. Baseline (same run): 8 KB rows, 100 per commit:
{' / '.join(map(str, res['baseline_rows_per_s']))} rows/s (median {base}). Models: the docstring
of bench/core/row_floor.py.

| model | statements/event | WAL bytes/event | events/s (runs) | median | × baseline |
|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n")
    print(open(out + ".md").read())


if __name__ == "__main__":
    main()
