#!/usr/bin/env python3
"""HL7 v2 listener benchmark (issue 12): messages/s over one MLLP connection with the ACK after the
durable commit (a pipelined sender), and ACK latency at half that rate.

Runs the real daemon (build/bin/samband) with the hl7v2 listener routed to the bench-sink, and in
the same run the core benchmark's baseline (raw SQLite commits, synchronous=FULL), so figures are
read as ratios. Writes bench/results/hl7v2-<timestamp>.json and .md. Usage: run.py [--quick]
"""
import importlib.util, json, os, signal, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin", "samband")
PLUGINS = os.path.join(ROOT, "build", "plugins")
QUICK = "--quick" in sys.argv

spec = importlib.util.spec_from_file_location("core_bench", os.path.join(ROOT, "bench", "core", "run.py"))
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)

def synthetic_fnr(i):
    """The i-th synthetic fødselsnummer (month + 80, both mod-11 check digits valid)."""
    n = i
    while True:
        day, month, year, ind = 1 + n % 28, 81 + (n // 28) % 12, 80 + (n // 336) % 20, 100 + (n * 7) % 400
        d = [int(c) for c in "%02d%02d%02d%03d" % (day, month, year, ind)]
        k1 = 11 - sum(w * x for w, x in zip([3, 7, 6, 1, 8, 9, 4, 5, 2], d)) % 11
        k1 = 0 if k1 == 11 else k1
        k2 = 11 - sum(w * x for w, x in zip([5, 4, 3, 2, 7, 6, 5, 4, 3, 2], d + [k1])) % 11
        k2 = 0 if k2 == 11 else k2
        if k1 != 10 and k2 != 10:
            return "".join(map(str, d)) + str(k1) + str(k2)
        n += 6720  # another individual number, same date range


# 1,000 patients: each patient's deliveries go in order, one at a time, so one patient for every
# message would measure that ordering rule, not the listener.
FNRS = [synthetic_fnr(i) for i in range(1000)]


def message(i):
    return ("MSH|^~\\&|BENCH|K|SAMBAND|RPH|20261124101500||ORU^R01|B%d|P|2.5\r"
            "PID|1||%s^^^^FNR||Nordmann^Kari\rPV1|1|O|||||||||||||||||T-%d\r"
            "OBX|1|NM|44261-6^PHQ-9^LN||%d||||||F|||20261124\r" % (i, FNRS[i % len(FNRS)], i % 100, i % 28)).encode()


def frame(b):
    return b"\x0b" + b + b"\x1c\r"


def start_daemon(tmp, n):
    cfg = {"store": {"kind": "sqlite", "path": os.path.join(tmp, "samband.db")},
           "admin": {"listen": "127.0.0.1:0"}, "log": {"level": "warn"}, "plugin_dirs": [PLUGINS],
           "schemas_dir": os.path.join(ROOT, "config", "schemas"), "identifiers": {"allow_synthetic": True},
           "endpoints": {
               "lab": {"plugin": "hl7v2", "config": {"listen": "127.0.0.1:0", "allow_synthetic_ids": True,
                                                     "port_file": os.path.join(tmp, "port")}},
               "sink": {"plugin": "bench-sink", "config": {"report_file": os.path.join(tmp, "sink.json"),
                                                          "expect": n},
                        "policy": {"concurrency": 64, "max_attempts": 10}}},
           "routes": [{"name": "all", "match": {"type": "rph.*"}, "to": ["sink"]}]}
    path = os.path.join(tmp, "samband.json")
    json.dump(cfg, open(path, "w"))
    log = open(os.path.join(tmp, "daemon.log"), "w")
    p = subprocess.Popen([BIN, "run", "-c", path, "--ready-file", os.path.join(tmp, "ready")], stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline and not os.path.exists(os.path.join(tmp, "port")):
        time.sleep(0.05)
    return p, int(open(os.path.join(tmp, "port")).read())


def run_load(port, n, rate=0, window=1000):
    """Sends n messages on one connection (paced at `rate`/s when given, at most `window` without
    an ACK); returns (seconds, [ACK latency ms], acks that were not AA)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent_at = [0.0] * n
    lat = []
    bad = [0]
    slots = threading.Semaphore(window)

    def receive():
        buf = b""
        got = 0
        while got < n:
            data = s.recv(1 << 16)
            if not data:
                break
            buf += data
            while b"\x1c" in buf:
                fr, buf = buf.split(b"\x1c", 1)
                buf = buf.lstrip(b"\r")
                now = time.perf_counter()
                for seg in fr.split(b"\r"):
                    if seg.startswith(b"MSA|"):
                        f = seg.split(b"|")
                        if f[1] != b"AA":
                            bad[0] += 1
                        i = int(f[2][1:])
                        lat.append((now - sent_at[i]) * 1000.0)
                got += 1
                slots.release()

    t = threading.Thread(target=receive)
    t.start()
    t0 = time.perf_counter()
    batch = []
    for i in range(n):
        if rate:
            target = t0 + i / rate
            while time.perf_counter() < target:
                time.sleep(0.0005)
        slots.acquire()
        sent_at[i] = time.perf_counter()
        if rate:
            s.sendall(frame(message(i)))
        else:
            batch.append(frame(message(i)))
            if len(batch) >= 50 or i == n - 1:
                s.sendall(b"".join(batch))
                batch = []
    t.join(timeout=600)
    secs = time.perf_counter() - t0
    s.close()
    return secs, lat, bad[0]


def pct(v, q):
    v = sorted(v)
    return round(v[min(len(v) - 1, int(q * len(v)))], 2) if v else None


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: ./scripts/build")
    r = {"machine": os.uname().nodename, "cores": os.cpu_count(), "quick": QUICK}
    with tempfile.TemporaryDirectory() as tmp:
        single, batched = core.sqlite_baseline(tmp)
    r["baseline_sqlite_single_commits_per_s"] = round(single)
    r["baseline_sqlite_8k_rows_per_s_batched_100"] = round(batched)
    n = 5000 if QUICK else 30000
    with tempfile.TemporaryDirectory() as tmp:
        p, port = start_daemon(tmp, n)
        try:
            secs, lat, bad = run_load(port, n)
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
    rate = n / secs
    r["throughput"] = {"messages": n, "acked": len(lat), "not_aa": bad, "messages_per_s": round(rate),
                       "ack_latency_p99_ms_at_full_load": pct(lat, 0.99)}
    def paced(at):
        n2 = min(at * (5 if QUICK else 15), 60000)
        with tempfile.TemporaryDirectory() as tmp:
            p, port = start_daemon(tmp, n2)
            try:
                secs2, lat2, bad2 = run_load(port, n2, rate=at, window=100000)
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
        return {"rate_per_s": at, "messages": n2, "acked": len(lat2), "not_aa": bad2,
                "ack_latency_p50_ms": pct(lat2, 0.5), "ack_latency_p99_ms": pct(lat2, 0.99),
                "ack_latency_max_ms": pct(lat2, 1.0)}

    # The latency goal is at half of its rate goal (5,000/s): 2,500/s. Half of the rate
    # measured above is reported too (stricter while the measured rate is above the goal).
    r["half_rate"] = paced(max(100, int(rate / 2)))
    r["half_goal_rate"] = paced(2500)
    r["ratio_messages_per_s_vs_single_commit_baseline"] = round(rate / max(1, single), 2)
    r["goals"] = {"messages_per_s_at_least_5000": rate >= 5000,
                  "p99_ack_ms_below_20_at_half_the_goal_rate": (r["half_goal_rate"]["ack_latency_p99_ms"] or 1e9) < 20,
                  "p99_ack_ms_below_20_at_half_the_measured_rate": (r["half_rate"]["ack_latency_p99_ms"] or 1e9) < 20}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(ROOT, "bench", "results", f"hl7v2-{stamp}")
    json.dump(r, open(base + ".json", "w"), indent=2)
    t, h, g = r["throughput"], r["half_rate"], r["half_goal_rate"]
    md = f"""# HL7 v2 listener benchmark {stamp}

{r['cores']} cores. One MLLP connection, ORU^R01 (PHQ-9) for 1,000 synthetic patients, ACK after the durable commit, routed to the
bench sink. Baseline in the same run: {r['baseline_sqlite_single_commits_per_s']} single SQLite
commits/s (synchronous=FULL), {r['baseline_sqlite_8k_rows_per_s_batched_100']} rows/s at 100 per commit.

| measure | value | goal |
|---|---|---|
| messages/s, pipelined (window 1000) | {t['messages_per_s']} ({r['ratio_messages_per_s_vs_single_commit_baseline']}× single commits) | ≥ 5,000 |
| ACK p99 at full load | {t['ack_latency_p99_ms_at_full_load']} ms | |
| ACK p50 / p99 / max at {g['rate_per_s']}/s (half the goal rate) | {g['ack_latency_p50_ms']} / {g['ack_latency_p99_ms']} / {g['ack_latency_max_ms']} ms | p99 < 20 ms |
| ACK p50 / p99 / max at {h['rate_per_s']}/s (half the measured rate) | {h['ack_latency_p50_ms']} / {h['ack_latency_p99_ms']} / {h['ack_latency_max_ms']} ms | |
| ACKs not AA | {t['not_aa'] + h['not_aa'] + g['not_aa']} | 0 |

Load average at the end: {os.getloadavg()[0]:.2f} on {r['cores']} cores (other work on the machine inflates latency).
"""
    open(base + ".md", "w").write(md)
    print(md)
    print("written:", base + ".json")


if __name__ == "__main__":
    main()
