#!/usr/bin/env python3
"""Samband isolation benchmark (issue 9 item 2): events/s through an isolated sink against the
same sink in-process, in the same run (goal: isolated >= 0.7x in-process).

Runs the real daemon (build/bin/samband) twice with bench-source -> bench-sink, 8 KB events:
once with the sink "isolation": "in-process", once "process" (a samband plugin-host child),
alternating ROUNDS times so machine noise hits both. Writes bench/results/isolation-<stamp>.json
and .md. Usage: bench/isolation/run.py [--quick]
"""
import json, os, statistics, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "core"))
import run as core  # noqa: E402  (config(), run_daemon(), read_json(), paths)

QUICK = "--quick" in sys.argv
N = 5000 if QUICK else 20000
ROUNDS = 1 if QUICK else 3


def one(isolation):
    with tempfile.TemporaryDirectory() as tmp:
        sink = {"plugin": "bench-sink", "isolation": isolation,
                "config": {"report_file": os.path.join(tmp, "sink.json"), "expect": N}}
        ok, peak, _ = core.run_daemon(tmp, core.config(tmp, N, 0, sink),
                                      lambda: core.read_json(os.path.join(tmp, "sink.json")), 300)
        s = core.read_json(os.path.join(tmp, "sink.json")) or {}
        return {"completed": ok, "delivered_per_s": round(s.get("delivered_per_s", 0)),
                "latency_p99_ms": s.get("latency_p99_ms"), "peak_rss_mb": round(peak, 1)}


def main():
    if not os.path.exists(core.BIN):
        sys.exit("build first: cmake --build build")
    runs = {"in-process": [], "process": []}
    for _ in range(ROUNDS):
        for iso in ("in-process", "process"):
            runs[iso].append(one(iso))
    med = {k: statistics.median(r["delivered_per_s"] for r in v) for k, v in runs.items()}
    ratio = round(med["process"] / max(1, med["in-process"]), 2)
    results = {"machine": os.uname().nodename, "cores": os.cpu_count(), "quick": QUICK,
               "events_per_run": N, "rounds": ROUNDS, "runs": runs,
               "median_delivered_per_s": med, "ratio_isolated_vs_in_process": ratio,
               "goal": 0.7, "met": ratio >= 0.7}
    os.makedirs(os.path.join(core.ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(core.ROOT, "bench", "results", f"isolation-{stamp}")
    json.dump(results, open(base + ".json", "w"), indent=2)
    md = f"""# Samband isolation benchmark {stamp}

{N} events of 8 KB, bench-source -> store -> bench-sink, {ROUNDS} alternating round(s), median.

| sink | delivered/s | runs |
|---|---|---|
| in-process (baseline, same run) | {med['in-process']:.0f} | {', '.join(str(r['delivered_per_s']) for r in runs['in-process'])} |
| isolated (samband plugin-host) | {med['process']:.0f} | {', '.join(str(r['delivered_per_s']) for r in runs['process'])} |
| ratio isolated / in-process | {ratio}x | goal >= 0.7x |
"""
    open(base + ".md", "w").write(md)
    print(md)
    print(json.dumps(results, indent=2))
    sys.exit(0 if all(r["completed"] for v in runs.values() for r in v) else 1)


if __name__ == "__main__":
    main()
