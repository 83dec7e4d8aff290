#!/usr/bin/env python3
"""Instructions per event of the daemon under callgrind, a figure the machine's load does not move
(delivered/s and CPU per event swing ±15 % between runs on a shared 2-core machine).

    bench/core/instructions.py [--events N] [--rate R] [--solo] [--concurrency C] [--before OTHER_BIN]

Runs run.py's hung-neighbour setup (N events of 8 KB, default 10,000) under valgrind's callgrind:
the healthy sink solo and beside an *idle* neighbour (one delivery hung for the whole run, so the
second destination costs its rows and nothing else), for this tree's build and, with --before,
another build. Writes bench/results/core-instructions-<ts>.{json,md} and keeps each run's
callgrind file beside them (read with callgrind_annotate: call graphs through SQLite and libc,
which have no frame pointers for perf). Startup is in the total: compare runs of the same N.
--rate R sends R events/s instead of full rate (under callgrind the daemon takes about 100 events/s;
at a low rate nearly every delivery is claimed at accept); --solo leaves out the idle neighbour."""
import glob, importlib.util, json, os, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("run", os.path.join(HERE, "run.py"))
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)  # run.py reads --concurrency from sys.argv

n = int(sys.argv[sys.argv.index("--events") + 1]) if "--events" in sys.argv else 10000
rate = int(sys.argv[sys.argv.index("--rate") + 1]) if "--rate" in sys.argv else 0
variants = ("solo",) if "--solo" in sys.argv else ("solo", "idle")
builds = {"this": run.BIN}
if "--before" in sys.argv:
    builds = {"before": sys.argv[sys.argv.index("--before") + 1], "after": run.BIN}
stamp = time.strftime("%Y%m%d-%H%M%S")
out = os.path.join(run.ROOT, "bench", "results", "core-instructions-" + stamp)
res = {"events": n, "rate_per_s": rate, "concurrency": run.CONCURRENCY, "builds": builds, "instructions_per_event": {}}
for bname, binary in builds.items():
    for variant in variants:
        cg = f"{out}-{bname}-{variant}.callgrind"
        with tempfile.TemporaryDirectory() as tmp:
            wrapper = os.path.join(tmp, "vg.sh")
            open(wrapper, "w").write(f"#!/bin/sh\nexec valgrind -q --tool=callgrind --callgrind-out-file={cg} {binary} \"$@\"\n")
            os.chmod(wrapper, 0o755)
            run.BIN = wrapper
            sink = {"plugin": "bench-sink", "config": {"report_file": os.path.join(tmp, "sink.json"), "expect": n}}
            idle = run.hung_config(tmp, 1, 600000) if variant == "idle" else None
            ok, _, _ = run.run_daemon(tmp, run.config(tmp, n, rate, sink, hung=idle),
                                      lambda: run.read_json(os.path.join(tmp, "sink.json")), 900)
        total = 0
        for f in glob.glob(cg + "*"):
            for line in open(f):
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        per = round(total / n) if ok else None
        res["instructions_per_event"][f"{bname} {variant}".strip()] = per
        print(bname, variant, "completed" if ok else "NOT completed", per, flush=True)
json.dump(res, open(out + ".json", "w"), indent=1)
ipe = res["instructions_per_event"]
ipe = {k.strip(): v for k, v in ipe.items()}
rows = "\n".join(f"| {b} | {ipe.get((b + ' solo').strip()) or 0:,} | {ipe.get((b + ' idle').strip()) or 0:,} | "
                 + (f"+{ipe[b + ' idle'] - ipe[b + ' solo']:,} ({ipe[b + ' idle'] / ipe[b + ' solo']:.3f}×) |"
                    if ipe.get(b + " solo") and ipe.get(b + " idle") else "— |") for b in builds)
open(out + ".md", "w").write(f"""# Core bench: instructions per event under callgrind ({stamp})
{n} events of 8 KB at {f"{rate}/s" if rate else "full rate"} routed to bench-sink (sink concurrency {run.CONCURRENCY}), solo and beside an
idle neighbour (fixture-sink in hang mode, concurrency 1, a 10-minute timeout; 0: not run). The daemon's
instructions (all threads, startup included) divided by the events.
{chr(10).join(f"{b}: `{p}`." for b, p in builds.items())}

| build | solo | beside the idle sink | the second destination |
|---|---|---|---|
{rows}
""")
print(open(out + ".md").read())
