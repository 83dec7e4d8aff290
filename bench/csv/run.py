#!/usr/bin/env python3
"""CSV import benchmark (issue 14): rows/s parsed, validated and stored by the csv plugin's source.

Runs the real daemon (build/bin/samband) with a csv source (the attendance-list mapping of
docs/csv.md: a fødselsnummer, dd.mm.yyyy dates, a mapped type, ja/nei) and, in the same run, the
core benchmark's baseline (raw SQLite commits of 8 KB rows, synchronous=FULL), so figures are read
as ratios. Two imports of the same rows (UTF-8 with a BOM, `;`, CRLF, æøå, every 10th row with a
quoted line break): the first stores every row (each an event committed by the host), the second
finds every row already known (parsed, validated and looked up, nothing stored). Timed from the
rename into the inbox to the file's move to done/. Events are routed nowhere (import only).
Also bench_csv_validate (build/bench/csv): what the goal names, rows parsed and validated: the real
csv plugin, loaded as the daemon loads it, imports the same sheet and the host validates every row
as ingest does (ingest::validate_envelope with config/schemas), answered without a commit. And
bench_csv_parse: the plugin's decode, parse and per-cell conversions alone, to show how much of a
row's cost is the CSV work and how much is the host's validation, submit and commit.
Writes bench/results/csv-<timestamp>.{json,md}. Usage: bench/csv/run.py [--quick] [--window N]
"""
import importlib.util, json, os, re, signal, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin", "samband")
PLUGINS = os.path.join(ROOT, "build", "plugins")
PARSE_BENCH = os.path.join(ROOT, "build", "bench", "csv", "bench_csv_parse")
VALIDATE_BENCH = os.path.join(ROOT, "build", "bench", "csv", "bench_csv_validate")
QUICK = "--quick" in sys.argv
WINDOW = int(sys.argv[sys.argv.index("--window") + 1]) if "--window" in sys.argv else 256
FNRS = ["14839134623", "02918502265", "28860370052", "09817045860", "30899926664", "05920763059"]

spec = importlib.util.spec_from_file_location("core_bench", os.path.join(ROOT, "bench", "core", "run.py"))
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)


def sheet(n):
    rows = ["\ufeffFødselsnummer;Behandling;Dato;Type;Møtt;Notat"]
    for i in range(n):
        note = '"Gikk bra.\r\nNeste gang: pust; søvn"' if i % 10 == 0 else "Øvelse på å roe ned"
        rows.append("%s;b-%d;%02d.%02d.2026;%s;%s;%s" % (FNRS[i % len(FNRS)], i, 1 + i % 28, 1 + i % 12,
                                                         "Gruppe" if i % 3 else "Individuell",
                                                         "nei" if i % 7 == 0 else "ja", note))
    return ("\r\n".join(rows) + "\r\n").encode("utf-8")


def start_daemon(tmp):
    cfg = {"store": {"kind": "sqlite", "path": os.path.join(tmp, "samband.db")},
           "admin": {"listen": "127.0.0.1:0"}, "log": {"level": "info"}, "plugin_dirs": [PLUGINS],
           "schemas_dir": os.path.join(ROOT, "config", "schemas"), "identifiers": {"allow_synthetic": True},
           "endpoints": {"sheets": {"plugin": "csv", "config": {
               "inbox": os.path.join(tmp, "in"), "poll_ms": 50, "window": WINDOW,
               "type": "rph.session.attended",
               "fields": {
                   "/subject/fnr": {"column": "Fødselsnummer"},
                   "/occurred_at": {"column": "Dato", "as": "date"},
                   "/data/treatment_id": {"column": "Behandling"},
                   "/data/session_at": {"column": "Dato", "as": "date"},
                   "/data/kind": {"column": "Type", "map": {"Individuell": "individuell", "Gruppe": "gruppe"}},
                   "/data/attended": {"column": "Møtt", "as": "boolean"},
                   "/data/content": {"column": "Notat", "optional": True}}}}},
           "routes": []}
    os.makedirs(os.path.join(tmp, "in"))
    path = os.path.join(tmp, "samband.json")
    json.dump(cfg, open(path, "w"), ensure_ascii=False)
    log = os.path.join(tmp, "daemon.log")
    p = subprocess.Popen([BIN, "run", "-c", path, "--ready-file", os.path.join(tmp, "ready")],
                         stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline and not os.path.exists(os.path.join(tmp, "ready")):
        time.sleep(0.05)
    return p, log


def import_file(tmp, log, name, data, n):
    inbox = os.path.join(tmp, "in")
    hidden = os.path.join(inbox, "." + name + ".tmp")
    open(hidden, "wb").write(data)
    t0 = time.perf_counter()
    os.rename(hidden, os.path.join(inbox, name))
    done = os.path.join(inbox, "done", name)
    deadline = time.time() + 600
    while not os.path.exists(done):
        if time.time() > deadline or os.path.exists(os.path.join(inbox, "error", name)):
            sys.exit(name + " was not imported: " + open(log, encoding="utf-8", errors="replace").read()[-3000:])
        time.sleep(0.01)
    secs = time.perf_counter() - t0
    m = None
    for _ in range(500):
        m = re.search(re.escape(name) + r": (\d+) rows: (\d+) imported, (\d+) already known, (\d+) refused",
                      open(log, encoding="utf-8", errors="replace").read())
        if m:
            break
        time.sleep(0.01)
    counts = [int(x) for x in m.groups()] if m else None
    return secs, counts


def main():
    if not os.path.exists(os.path.join(PLUGINS, "samband_plugin_csv.so")):
        sys.exit("build first: cmake --build build --target samband samband_plugin_csv bench_csv_parse "
                 "bench_csv_validate")
    r = {"machine": os.uname().nodename, "cores": os.cpu_count(), "quick": QUICK, "window": WINDOW,
         "loadavg_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        single, batched = core.sqlite_baseline(tmp)
    r["baseline_sqlite_single_commits_per_s"] = round(single)
    r["baseline_sqlite_8k_rows_per_s_batched_100"] = round(batched)
    n = 20000 if QUICK else 200000
    if os.path.exists(PARSE_BENCH):
        r["parse_only"] = json.loads(subprocess.run([PARSE_BENCH, str(n)], check=True, capture_output=True,
                                                    text=True).stdout)
    if os.path.exists(VALIDATE_BENCH):
        r["parsed_and_validated"] = json.loads(subprocess.run(
            [VALIDATE_BENCH, os.path.join(PLUGINS, "samband_plugin_csv.so"), os.path.join(ROOT, "config", "schemas"),
             str(n)], check=True, capture_output=True, text=True).stdout)
    data = sheet(n)
    r["rows"], r["file_bytes"] = n, len(data)
    with tempfile.TemporaryDirectory() as tmp:
        p, log = start_daemon(tmp)
        try:
            s1, c1 = import_file(tmp, log, "oppmote.csv", data, n)
            s2, c2 = import_file(tmp, log, "oppmote-kopi.csv", data, n)
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
    r["first_import"] = {"seconds": round(s1, 2), "rows_per_s": round(n / s1), "counts": c1}
    r["re_import"] = {"seconds": round(s2, 2), "rows_per_s": round(n / s2), "counts": c2}
    r["ratio_first_import_vs_single_commit_baseline"] = round(n / s1 / max(1, single), 2)
    r["ratio_first_import_vs_batched_baseline"] = round(n / s1 / max(1, batched), 3)
    pv = r.get("parsed_and_validated", {}).get("rows_per_s", 0)
    r["ratio_parsed_and_validated_vs_batched_baseline"] = round(pv / max(1, batched), 2)
    r["goals"] = {"rows_per_s_at_least_50000_parsed_and_validated": pv >= 50000,
                  "rows_per_s_at_least_50000_first_import": n / s1 >= 50000,
                  "rows_per_s_at_least_50000_re_import": n / s2 >= 50000,
                  "every_row_imported_once": c1 == [n, n, 0, 0] and c2 == [n, 0, n, 0]}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(ROOT, "bench", "results", f"csv-{stamp}")
    json.dump(r, open(base + ".json", "w"), indent=2)
    f, g = r["first_import"], r["re_import"]
    md = f"""# CSV import benchmark {stamp}

{r['cores']} cores (load average {r['loadavg_before']:.1f} at the start). {n} rows ({len(data)} bytes; BOM, `;`,
CRLF, æøå, every 10th row a quoted line break), attendance mapping (fnr, dates, type map, ja/nei),
source window {WINDOW}. Baseline in the same run: {r['baseline_sqlite_single_commits_per_s']} single SQLite
commits/s (synchronous=FULL), {r['baseline_sqlite_8k_rows_per_s_batched_100']} rows/s at 100 per commit.

| measure | value | goal |
|---|---|---|
| the goal's measure: rows/s parsed by the plugin and validated by the host, not committed (bench_csv_validate) | {pv} ({r['ratio_parsed_and_validated_vs_batched_baseline']}× batched rows) | ≥ 50,000 |
| first import: rows/s parsed, validated and committed | {f['rows_per_s']} ({r['ratio_first_import_vs_single_commit_baseline']}× single commits, {r['ratio_first_import_vs_batched_baseline']}× batched rows) | |
| re-import: rows/s parsed, validated, found already known | {g['rows_per_s']} | |
| counts (rows, imported, known, refused) | {f['counts']} / {g['counts']} | |
| the CSV work alone (bench_csv_parse: decode, parse, conversions) | {r.get('parse_only', {}).get('rows_per_s', 'not built')} rows/s | |
"""
    open(base + ".md", "w").write(md)
    print(md)
    print("written:", base + ".json")


if __name__ == "__main__":
    main()
