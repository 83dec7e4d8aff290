#!/usr/bin/env python3
"""Samband core benchmark (issue 3): throughput, latency at half rate, memory with a backlog.

Runs the real daemon (build/bin/samband) with the bench-source and bench-sink plugins on this
machine, and a baseline in the same run: raw SQLite commits of 8 KB rows with synchronous=FULL
(one row per transaction, and 100 rows per transaction), so figures are read as ratios.
Writes bench/results/core-<timestamp>.json and .md. Usage: bench/core/run.py [--quick]
"""
import json, os, signal, sqlite3, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin", "samband")
PLUGINS = os.path.join(ROOT, "build", "plugins")
QUICK = "--quick" in sys.argv


def sqlite_baseline(tmp):
    path = os.path.join(tmp, "baseline.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)")
    body = os.urandom(8192)
    n = 500 if QUICK else 2000
    t0 = time.perf_counter()
    for _ in range(n):
        db.execute("BEGIN"); db.execute("INSERT INTO t(body) VALUES(?)", (body,)); db.execute("COMMIT")
    single = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n // 100 * 10):
        db.execute("BEGIN")
        for _ in range(100):
            db.execute("INSERT INTO t(body) VALUES(?)", (body,))
        db.execute("COMMIT")
    batched = (n // 100 * 10 * 100) / (time.perf_counter() - t0)
    db.close()
    return single, batched


def config(tmp, count, rate, sink, concurrency=64):
    endpoints = {
        "load": {"plugin": "bench-source", "config": {"count": count, "size_bytes": 8192, "window": 1024,
                                                       "rate_per_s": rate, "report_file": os.path.join(tmp, "source.json"),
                                                       "run": str(time.time())}},
        "sink": sink,
    }
    endpoints["sink"]["policy"] = {"concurrency": concurrency, "max_attempts": 10}
    return {"store": {"kind": "sqlite", "path": os.path.join(tmp, "samband.db")},
            "admin": {"listen": "127.0.0.1:0"}, "log": {"level": "warn"}, "plugin_dirs": [PLUGINS],
            "schemas_dir": os.path.join(ROOT, "config", "schemas"), "identifiers": {"allow_synthetic": True},
            "limits": {"max_event_bytes": 65536},
            "endpoints": endpoints, "routes": [{"name": "all", "match": {"type": "rph.*"}, "to": ["sink"]}]}


def run_daemon(tmp, cfg, until, timeout):
    path = os.path.join(tmp, "samband.json")
    json.dump(cfg, open(path, "w"))
    log = open(os.path.join(tmp, "daemon.log"), "w")
    p = subprocess.Popen([BIN, "run", "-c", path, "--ready-file", os.path.join(tmp, "ready")], stdout=log, stderr=log)
    peak_rss = 0
    t_end = time.time() + timeout
    ok = False
    while time.time() < t_end:
        try:
            for line in open(f"/proc/{p.pid}/status"):
                if line.startswith("VmRSS:"):
                    peak_rss = max(peak_rss, int(line.split()[1]))
        except OSError:
            break
        if until():
            ok = True
            break
        time.sleep(0.2)
    rss_now = 0
    try:
        for line in open(f"/proc/{p.pid}/status"):
            if line.startswith("VmRSS:"):
                rss_now = int(line.split()[1])
    except OSError:
        pass
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
    return ok, peak_rss / 1024.0, rss_now / 1024.0


def read_json(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: ./scripts/build")
    results = {"machine": os.uname().nodename, "cores": os.cpu_count(), "quick": QUICK}
    with tempfile.TemporaryDirectory() as tmp:
        single, batched = sqlite_baseline(tmp)
        results["baseline_sqlite_single_commits_per_s"] = round(single)
        results["baseline_sqlite_8k_rows_per_s_batched_100"] = round(batched)

    n = 6000 if QUICK else 30000
    with tempfile.TemporaryDirectory() as tmp:
        sink = {"plugin": "bench-sink", "config": {"report_file": os.path.join(tmp, "sink.json"), "expect": n}}
        ok, peak, _ = run_daemon(tmp, config(tmp, n, 0, sink), lambda: read_json(os.path.join(tmp, "sink.json")), 300)
        s, src = read_json(os.path.join(tmp, "sink.json")) or {}, read_json(os.path.join(tmp, "source.json")) or {}
        results["throughput"] = {"events": n, "completed": ok, "delivered_per_s": round(s.get("delivered_per_s", 0)),
                                 "accepted_per_s": round(src.get("accepted_per_s", 0)),
                                 "latency_p99_ms_at_full_load": s.get("latency_p99_ms"), "peak_rss_mb": round(peak, 1)}
    rate = max(100, results["throughput"]["delivered_per_s"] // 2)
    n2 = min(rate * (5 if QUICK else 15), 60000)
    with tempfile.TemporaryDirectory() as tmp:
        sink = {"plugin": "bench-sink", "config": {"report_file": os.path.join(tmp, "sink.json"), "expect": n2}}
        ok, peak, _ = run_daemon(tmp, config(tmp, n2, rate, sink), lambda: read_json(os.path.join(tmp, "sink.json")), 300)
        s = read_json(os.path.join(tmp, "sink.json")) or {}
        results["half_rate_latency"] = {"rate_per_s": rate, "events": n2, "completed": ok,
                                        "latency_p50_ms": s.get("latency_p50_ms"), "latency_p99_ms": s.get("latency_p99_ms"),
                                        "latency_max_ms": s.get("latency_max_ms")}
    n3 = 20000 if QUICK else 100000
    with tempfile.TemporaryDirectory() as tmp:
        # A sink that never completes with concurrency 1: everything else stays pending in the store.
        sink = {"plugin": "fixture-sink", "config": {"control_file": os.path.join(tmp, "control.json"),
                                                      "record_file": os.path.join(tmp, "record.jsonl")}}
        json.dump({"mode": "hang"}, open(os.path.join(tmp, "control.json"), "w"))
        done = lambda: (read_json(os.path.join(tmp, "source.json")) or {}).get("accepted", 0) >= n3
        ok, peak, now = run_daemon(tmp, config(tmp, n3, 0, sink, concurrency=1), done, 600)
        results["backlog_memory"] = {"pending": n3, "completed": ok, "rss_mb_with_backlog": round(now, 1),
                                     "peak_rss_mb": round(peak, 1)}
    t = results["throughput"]
    results["ratio_events_per_s_vs_single_commit_baseline"] = round(t["delivered_per_s"] / max(1, single), 2)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(ROOT, "bench", "results", f"core-{stamp}")
    json.dump(results, open(base + ".json", "w"), indent=2)
    h, m = results["half_rate_latency"], results["backlog_memory"]
    md = f"""# Samband core benchmark {stamp}

| measure | value | goal |
|---|---|---|
| baseline: SQLite single 8 KB commits/s (synchronous=FULL, same run) | {results['baseline_sqlite_single_commits_per_s']} | — |
| baseline: SQLite 8 KB rows/s in 100-row transactions | {results['baseline_sqlite_8k_rows_per_s_batched_100']} | — |
| events/s source → store → sink (8 KB, {t['events']} events) | {t['delivered_per_s']} | ≥ 3000 |
| ratio to the single-commit baseline | {results['ratio_events_per_s_vs_single_commit_baseline']}× | — |
| p99 accept→delivered at {h['rate_per_s']}/s (half rate) | {h['latency_p99_ms']} ms (p50 {h['latency_p50_ms']}) | < 50 ms |
| resident memory with {m['pending']} events pending | {m['rss_mb_with_backlog']} MB (peak {m['peak_rss_mb']}) | < 64 MB |
"""
    open(base + ".md", "w").write(md)
    print(md)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
