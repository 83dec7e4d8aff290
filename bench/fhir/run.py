#!/usr/bin/env python3
"""FHIR benchmark (issue 13): build + serialise transaction Bundles per core (bench_fhir, against a
JSON round trip of the same envelope), and incoming Bundle → committed event through the real
daemon's fhir source (HTTP keep-alive, 200 only after the commit), against the core benchmark's
SQLite baseline in the same run. Writes bench/results/fhir-<timestamp>.json and .md.
Usage: run.py [--quick]
"""
import http.client, importlib.util, json, os, signal, subprocess, sys, tempfile, threading, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin", "samband")
BENCH = os.path.join(ROOT, "build", "bench", "fhir", "bench_fhir")
PLUGINS = os.path.join(ROOT, "build", "plugins")
QUICK = "--quick" in sys.argv
FNR = "14839134623"  # synthetic (month + 80)

spec = importlib.util.spec_from_file_location("core_bench", os.path.join(ROOT, "bench", "core", "run.py"))
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)


def qr_bundle(i):
    items = [{"linkId": str(k + 1), "answer": [{"valueInteger": (i + k) % 4}]} for k in range(9)]
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "QuestionnaireResponse",
                     "identifier": {"system": "urn:bench", "value": "qr-%d" % i},
                     "questionnaire": "http://loinc.org/q/44249-1", "status": "completed",
                     "subject": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}},
                     "basedOn": [{"identifier": {"value": "T-%d" % (i % 100)}}],
                     "authored": "2026-09-22T10:00:00+02:00", "item": items},
        "request": {"method": "POST", "url": "QuestionnaireResponse"}}]}).encode()


def micro():
    out = subprocess.run([BENCH, "--benchmark_format=json",
                          "--benchmark_min_time=%s" % ("0.3" if QUICK else "2")],
                         capture_output=True, text=True, check=True).stdout
    b = {x["name"]: x for x in json.loads(out)["benchmarks"]}
    per_s = lambda n: b[n]["items_per_second"]
    return {"baseline_json_round_trips_per_s": round(per_s("baseline_json_round_trip")),
            "bundles_built_per_s_per_core": round(per_s("build_start_note_bundle")),
            "incoming_bundles_parsed_per_s_per_core": round(per_s("parse_incoming_qr_bundle")),
            "ratio_build_vs_round_trip": round(per_s("build_start_note_bundle") / per_s("baseline_json_round_trip"), 2)}


def start_daemon(tmp, n):
    cfg = {"store": {"kind": "sqlite", "path": os.path.join(tmp, "samband.db")},
           "admin": {"listen": "127.0.0.1:0"}, "log": {"level": "warn"}, "plugin_dirs": [PLUGINS],
           "schemas_dir": os.path.join(ROOT, "config", "schemas"), "identifiers": {"allow_synthetic": True},
           "endpoints": {
               "fhir-in": {"plugin": "fhir", "config": {"listen": {
                   "address": "127.0.0.1:0", "port_file": os.path.join(tmp, "port"),
                   "allow_synthetic_ids": True, "max_connections": 256}}},
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


def run_load(port, n, clients):
    """n Bundles over `clients` keep-alive connections; returns (seconds, answers that were not 200)."""
    bodies = [qr_bundle(i) for i in range(n)]
    bad = [0]
    nxt = [0]
    lock = threading.Lock()

    def client():
        c = http.client.HTTPConnection("127.0.0.1", port)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                break
            c.request("POST", "/", bodies[i], {"Content-Type": "application/fhir+json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                with lock:
                    bad[0] += 1
        c.close()

    t0 = time.time()
    ts = [threading.Thread(target=client) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.time() - t0, bad[0]


def main():
    if not os.path.exists(BIN) or not os.path.exists(BENCH):
        sys.exit("build first: cmake --build build --target samband samband_plugin_fhir bench_fhir")
    r = {"machine": os.uname().nodename, "cores": os.cpu_count(), "quick": QUICK}
    with tempfile.TemporaryDirectory() as tmp:
        single, batched = core.sqlite_baseline(tmp)
    r["baseline_sqlite_single_commits_per_s"] = round(single)
    r["baseline_sqlite_8k_rows_per_s_batched_100"] = round(batched)
    r["mapping"] = micro()
    n = 3000 if QUICK else 20000
    clients = 32
    with tempfile.TemporaryDirectory() as tmp:
        p, port = start_daemon(tmp, n)
        try:
            secs, bad = run_load(port, n, clients)
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
    rate = n / secs
    r["incoming"] = {"bundles": n, "clients": clients, "not_200": bad, "committed_events_per_s": round(rate),
                     "ratio_vs_single_commit_baseline": round(rate / max(1, single), 2)}
    m = r["mapping"]
    r["goals"] = {"bundles_per_s_per_core_at_least_5000": m["bundles_built_per_s_per_core"] >= 5000,
                  "incoming_committed_per_s_at_least_2000": rate >= 2000}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(ROOT, "bench", "results", f"fhir-{stamp}")
    json.dump(r, open(base + ".json", "w"), indent=2)
    i = r["incoming"]
    md = f"""# FHIR benchmark {stamp}

{r['cores']} cores. Baselines in the same run: a parse + serialise of the same envelope
({m['baseline_json_round_trips_per_s']}/s on one core), and {r['baseline_sqlite_single_commits_per_s']} single
SQLite commits/s (synchronous=FULL), {r['baseline_sqlite_8k_rows_per_s_batched_100']} rows/s at 100 per commit.

| measure | value | goal |
|---|---|---|
| start note → transaction Bundle, built + serialised, one core | {m['bundles_built_per_s_per_core']}/s ({m['ratio_build_vs_round_trip']}× the JSON round trip) | ≥ 5,000/s |
| incoming QuestionnaireResponse Bundle parsed + scored, one core | {m['incoming_bundles_parsed_per_s_per_core']}/s | |
| incoming Bundle → committed event, daemon, {i['clients']} keep-alive clients | {i['committed_events_per_s']}/s ({i['ratio_vs_single_commit_baseline']}× single commits) | ≥ 2,000/s |
| answers other than 200 | {i['not_200']} | 0 |
"""
    open(base + ".md", "w").write(md)
    print(md)
    print("written:", base + ".json")


if __name__ == "__main__":
    main()
