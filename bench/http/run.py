#!/usr/bin/env python3
"""HTTP source benchmark (issue 14): requests/s into the http plugin's source, each answered 202
only after its event is committed to the store (durable), from many concurrent keep-alive clients.

Runs the real daemon (build/bin/samband) with an http source endpoint (POST /v1/events, a bearer
token, one Idempotency-Key per request) and, in the same run, the core benchmark's baseline (raw
SQLite commits of 8 KB rows, synchronous=FULL), so the figure is read as a ratio. The load
generator is Python asyncio in this process (Debian 12 has no wrk; ab sends one identical body,
which would be one event stored and the rest duplicates), so it shares the machine's cores with the
daemon: the figure is a floor. Events are routed nowhere (ingest only).
Writes bench/results/http-<timestamp>.{json,md}. Usage: bench/http/run.py [--quick] [--clients N]
"""
import asyncio, importlib.util, json, os, signal, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin", "samband")
PLUGINS = os.path.join(ROOT, "build", "plugins")
QUICK = "--quick" in sys.argv
CLIENTS = int(sys.argv[sys.argv.index("--clients") + 1]) if "--clients" in sys.argv else 64
FNR = "14839134623"  # synthetic
TOKEN = "bench-token-" + os.urandom(8).hex()

spec = importlib.util.spec_from_file_location("core_bench", os.path.join(ROOT, "bench", "core", "run.py"))
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)


def envelope(i):
    return json.dumps({"schema": "samband.event/1", "type": "rph.assessment.scored",
                       "occurred_at": "2026-11-24T10:15:00+01:00", "subject": {"fnr": FNR},
                       "data": {"treatment_id": "t-%d" % (i % 500), "instrument": "PHQ-9",
                                "score": i % 28, "administered_at": "2026-11-24"}},
                      separators=(",", ":")).encode()


def start_daemon(tmp):
    secret = os.path.join(tmp, "token")
    open(secret, "w").write(TOKEN + "\n")
    cfg = {"store": {"kind": "sqlite", "path": os.path.join(tmp, "samband.db")},
           "admin": {"listen": "127.0.0.1:0"}, "log": {"level": "warn"}, "plugin_dirs": [PLUGINS],
           "schemas_dir": os.path.join(ROOT, "config", "schemas"), "identifiers": {"allow_synthetic": True},
           "secrets": {"t": {"file": secret}},
           "endpoints": {"epj": {"plugin": "http", "config": {
               "listen": "127.0.0.1:0", "port_file": os.path.join(tmp, "port"),
               "auth": {"kind": "bearer", "secret": "t"}, "max_connections": 4096}}},
           "routes": []}
    path = os.path.join(tmp, "samband.json")
    json.dump(cfg, open(path, "w"))
    log = open(os.path.join(tmp, "daemon.log"), "w")
    p = subprocess.Popen([BIN, "run", "-c", path], stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline and not os.path.exists(os.path.join(tmp, "port")):
        time.sleep(0.05)
    if not os.path.exists(os.path.join(tmp, "port")):
        p.kill()
        sys.exit("the daemon did not start: " + open(os.path.join(tmp, "daemon.log")).read())
    return p, int(open(os.path.join(tmp, "port")).read())


async def client(port, ids, lat, statuses):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for i in ids:
        body = envelope(i)
        head = ("POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Idempotency-Key: bench-%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (TOKEN, i, len(body))).encode()
        t0 = time.perf_counter()
        w.write(head + body)
        status_line = await r.readline()
        length = 0
        while True:
            line = await r.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await r.readexactly(length)
        lat.append((time.perf_counter() - t0) * 1000.0)
        code = int(status_line.split()[1]) if status_line else 0
        statuses[code] = statuses.get(code, 0) + 1
    w.close()


async def load(port, first, n, clients):
    lat, statuses = [], {}
    t0 = time.perf_counter()
    await asyncio.gather(*[client(port, range(first + c, first + n, clients), lat, statuses)
                           for c in range(clients)])
    return time.perf_counter() - t0, lat, statuses


def pct(v, q):
    v = sorted(v)
    return round(v[min(len(v) - 1, int(q * len(v)))], 2) if v else None


def main():
    if not os.path.exists(os.path.join(PLUGINS, "samband_plugin_http.so")):
        sys.exit("build first: ./scripts/build samband samband_plugin_http")
    r = {"machine": os.uname().nodename, "cores": os.cpu_count(), "quick": QUICK, "clients": CLIENTS,
         "loadavg_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        single, batched = core.sqlite_baseline(tmp)
    r["baseline_sqlite_single_commits_per_s"] = round(single)
    r["baseline_sqlite_8k_rows_per_s_batched_100"] = round(batched)
    n = 5000 if QUICK else 40000
    with tempfile.TemporaryDirectory() as tmp:
        p, port = start_daemon(tmp)
        try:
            asyncio.run(load(port, 10_000_000, 1000, CLIENTS))  # warm-up (not counted)
            secs, lat, statuses = asyncio.run(load(port, 0, n, CLIENTS))
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
    rate = n / secs
    r["requests"] = n
    r["statuses"] = {str(k): v for k, v in sorted(statuses.items())}
    r["requests_per_s"] = round(rate)
    r["latency_p50_ms"], r["latency_p99_ms"], r["latency_max_ms"] = pct(lat, .5), pct(lat, .99), pct(lat, 1)
    r["ratio_vs_single_commit_baseline"] = round(rate / max(1, single), 2)
    r["ratio_vs_batched_baseline"] = round(rate / max(1, batched), 3)
    r["goals"] = {"requests_per_s_at_least_5000": rate >= 5000,
                  "all_202": statuses.get(202, 0) == n}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(ROOT, "bench", "results", f"http-{stamp}")
    json.dump(r, open(base + ".json", "w"), indent=2)
    md = f"""# HTTP source benchmark {stamp}

{r['cores']} cores (load average {r['loadavg_before']:.1f} at the start). {CLIENTS} keep-alive clients
(Python asyncio, same machine), POST /v1/events with a bearer token and one Idempotency-Key each;
202 after the durable commit; ingest only. Baseline in the same run: {r['baseline_sqlite_single_commits_per_s']}
single SQLite commits/s (synchronous=FULL), {r['baseline_sqlite_8k_rows_per_s_batched_100']} rows/s at 100 per commit.

| measure | value | goal |
|---|---|---|
| requests/s (202) | {r['requests_per_s']} ({r['ratio_vs_single_commit_baseline']}× single commits, {r['ratio_vs_batched_baseline']}× batched rows) | ≥ 5,000 |
| latency p50 / p99 / max | {r['latency_p50_ms']} / {r['latency_p99_ms']} / {r['latency_max_ms']} ms | |
| answers | {r['statuses']} | all 202 |
"""
    open(base + ".md", "w").write(md)
    print(md)
    print("written:", base + ".json")


if __name__ == "__main__":
    main()
