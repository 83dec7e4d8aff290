#!/usr/bin/env python3
"""Preview parity (issue 10 item 8): `samband preview` shows the bytes the daemon sends.

Runs the demo's configuration (config/demo.json, paths moved into a temporary folder) over the
demo's events: each event is dropped into the daemon's inbox (write-then-rename) and waited for
until stored, then previewed as that stored event (`--event-id`; preview reads the treatment's
history from the daemon's store, read-only, as the consent gate does) before the next is dropped.
Every message the daemon wrote to the Norsk Helsenett catalogue and every journal entry it wrote
to the EPJ folder must equal, byte for byte, what preview showed for that event and destination;
every delivery preview showed as SEND must have been sent; and Ola's end note, blocked by her
earlier objection, must show as blocked in preview too.

Usage: preview_parity.py BUILD_DIR SOURCE_DIR
"""
import json, os, shutil, signal, sqlite3, subprocess, sys, tempfile, time

BUILD, SRC = sys.argv[1], sys.argv[2]
SAMBAND = os.path.join(BUILD, "bin", "samband")
EVENTS = os.path.join(SRC, "config", "demo", "events")


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def wait_for(pred, seconds, what):
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if pred():
            return
        time.sleep(0.05)
    fail(f"timed out after {seconds} s waiting for {what}")


def main():
    tmp = tempfile.mkdtemp(prefix="samband-parity-")
    daemon = None
    try:
        cfg = json.load(open(os.path.join(SRC, "config", "demo.json"), encoding="utf-8"))
        run = os.path.join(tmp, "run")
        cfg["store"]["path"] = os.path.join(run, "samband.db")
        cfg["admin"]["listen"] = "127.0.0.1:0"
        cfg["log"]["level"] = "warn"
        cfg["plugin_dirs"] = [os.path.join(BUILD, "plugins")]
        cfg["schemas_dir"] = os.path.join(SRC, "config", "schemas")
        cfg["gp_directory"]["path"] = os.path.join(SRC, "config", "demo", "directory.json")
        eps = cfg["endpoints"]
        eps["epj-inbox"]["config"]["inbox"] = os.path.join(run, "epj-inbox")
        eps["gp-nhn"]["config"]["out_dir"] = os.path.join(run, "nhn", "out")
        eps["gp-nhn"]["config"]["in_dir"] = os.path.join(run, "nhn", "in")
        eps["epj-journal"]["config"]["outbox"] = os.path.join(run, "epj-journal")
        cfg_path = os.path.join(tmp, "samband.json")
        json.dump(cfg, open(cfg_path, "w", encoding="utf-8"), ensure_ascii=False, indent=1)

        events = sorted(f for f in os.listdir(EVENTS) if f.endswith(".json"))
        if len(events) < 10:
            fail(f"expected the demo's events in {EVENTS}, found {len(events)}")

        # The daemon, then each event dropped, stored and previewed as stored, one at a time.
        for d in ("epj-inbox", "nhn/out", "nhn/in", "epj-journal"):
            os.makedirs(os.path.join(run, d), exist_ok=True)
        log = open(os.path.join(tmp, "daemon.log"), "w")
        ready = os.path.join(tmp, "ready")
        daemon = subprocess.Popen([SAMBAND, "run", "-c", cfg_path, "--ready-file", ready],
                                  stdout=log, stderr=log)
        wait_for(lambda: os.path.exists(ready) and open(ready).read().endswith("\n"), 20,
                 "the daemon's ready file")
        inbox = os.path.join(run, "epj-inbox")
        for f in os.listdir(EVENTS):
            if not f.endswith(".json"):
                shutil.copy(os.path.join(EVENTS, f), inbox)  # attachments first
        previews = {}  # (event file, destination) -> bytes
        preview_blocked = set()
        db_path = cfg["store"]["path"]

        def stored_id(ev):
            key = json.load(open(os.path.join(EVENTS, ev), encoding="utf-8"))["idempotency_key"]
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT id FROM events WHERE idempotency_key = ?", (key,)).fetchone()
            finally:
                db.close()
            if not row:
                fail(f"{ev} is in done/ but no event with key {key} is in the store")
            return row[0]

        for ev in events:
            shutil.copy(os.path.join(EVENTS, ev), os.path.join(inbox, "." + ev + ".tmp"))
            os.rename(os.path.join(inbox, "." + ev + ".tmp"), os.path.join(inbox, ev))
            wait_for(lambda: os.path.exists(os.path.join(inbox, "done", ev)) or
                     os.path.exists(os.path.join(inbox, "error", ev)), 20, f"{ev} to be stored")
            if os.path.exists(os.path.join(inbox, "error", ev)):
                fail(f"the daemon refused {ev}")
            out = os.path.join(tmp, "preview", ev)
            p = subprocess.run([SAMBAND, "preview", "-c", cfg_path, "--source", "epj-inbox",
                                "--event-id", stored_id(ev), "--out", out,
                                os.path.join(EVENTS, ev)], capture_output=True, text=True)
            if p.returncode != 0:
                fail(f"preview of {ev} exited {p.returncode}:\n{p.stdout}{p.stderr}")
            for line in p.stdout.splitlines():
                if line.startswith("SEND"):
                    dest = line.split()[1]
                    path = line.split(" → ")[1].rsplit(" (", 1)[0]
                    previews[(ev, dest)] = open(path, "rb").read()
                elif line.startswith(("BLOCKED", "HELD")):
                    preview_blocked.add((ev, line.split()[1], line))
        if not any(d == "gp-nhn" for _, d in previews):
            fail("preview showed no message for gp-nhn at all")

        expect_nhn = {ev for (ev, d) in previews if d == "gp-nhn"}
        expect_journal = {ev for (ev, d) in previews if d == "epj-journal"}
        nhn_out = os.path.join(run, "nhn", "out")
        journal = os.path.join(run, "epj-journal")

        def sent(folder, suffix):
            return [f for f in os.listdir(folder) if f.endswith(suffix) and not f.startswith(".")]

        wait_for(lambda: len(sent(nhn_out, ".xml")) >= len(expect_nhn) and
                 len(sent(journal, ".json")) >= len(expect_journal), 30,
                 f"{len(expect_nhn)} NHN messages and {len(expect_journal)} journal entries")
        daemon.send_signal(signal.SIGTERM)
        if daemon.wait(timeout=30) != 0:
            fail(f"the daemon exited {daemon.returncode}; log:\n" +
                 open(os.path.join(tmp, "daemon.log")).read())
        daemon = None

        # 3. Compare, byte for byte.
        def match(folder, suffix, dest, expected):
            by_bytes = {previews[(ev, dest)]: ev for ev in expected}
            got = sent(folder, suffix)
            if len(got) != len(expected):
                fail(f"{dest}: the daemon wrote {len(got)} files, preview showed "
                     f"{len(expected)} ({sorted(expected)})")
            seen = set()
            for f in got:
                b = open(os.path.join(folder, f), "rb").read()
                ev = by_bytes.get(b)
                if ev is None:
                    fail(f"{dest}: {f} as the daemon sent it equals no preview "
                         f"(first 300 bytes: {b[:300]!r})")
                seen.add(ev)
            if seen != expected:
                fail(f"{dest}: previews never sent: {sorted(expected - seen)}")
            print(f"PASS  {dest}: {len(got)} deliveries equal their previews byte for byte")

        match(nhn_out, ".xml", "gp-nhn", expect_nhn)
        match(journal, ".json", "epj-journal", expect_journal)
        if not any("objected" in l or "objection" in l for (_, _, l) in preview_blocked):
            fail("preview never showed the end note blocked by the earlier objection: "
                 f"{sorted(preview_blocked)}")
        for (_, _, line) in sorted(preview_blocked):
            print("PASS  preview showed", line)
    finally:
        if daemon is not None:
            daemon.kill()
            daemon.wait()
        if os.environ.get("SAMBAND_KEEP_TEST_DIRS"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


main()
