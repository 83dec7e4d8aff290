#!/usr/bin/env python3
"""Samband on PostgreSQL (issue 16): events/s source -> store -> sink with one and two nodes on a
private PostgreSQL 15, against the SQLite store and against a raw SKIP LOCKED claim loop (the
ceiling: pgbench running insert + claim + complete, one commit each, on the same server), all in
the same run on this machine. Durable settings everywhere (PostgreSQL fsync and synchronous_commit
on; SQLite synchronous=FULL).

Runs the real daemon (build/bin/samband) with the bench-source and bench-sink plugins. The
PostgreSQL server is started by this script (initdb as the postgres user when run as root) on
127.0.0.1 with a free port, and stopped after.
Writes bench/results/pg-<timestamp>.{json,md}.
Usage: bench/pg/run.py [--quick]
"""
import json, os, pwd, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "build", "bin", "samband")
PLUGINS = os.path.join(ROOT, "build", "plugins")
PGBIN = os.environ.get("SAMBAND_PG_BINDIR", "/usr/lib/postgresql/15/bin")
QUICK = "--quick" in sys.argv
N = 2000 if QUICK else 10000


def as_pg(argv):
    return (["runuser", "-u", "postgres", "--"] + argv) if os.geteuid() == 0 else argv


class Server:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pg")
        os.makedirs(self.dir)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        subprocess.run(as_pg([PGBIN + "/initdb", "-D", self.dir + "/data", "-U", "samband", "--auth=trust",
                              "-E", "UTF8", "--locale=C.UTF-8"]), check=True, stdout=subprocess.DEVNULL)
        subprocess.run(as_pg([PGBIN + "/pg_ctl", "-D", self.dir + "/data", "-w", "-l", self.dir + "/server.log",
                              "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start"]),
                       check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        subprocess.run(as_pg([PGBIN + "/pg_ctl", "-D", self.dir + "/data", "-w", "-m", "fast", "stop"]),
                       stdout=subprocess.DEVNULL)

    def conninfo(self, db):
        return f"host=127.0.0.1 port={self.port} user=samband dbname={db}"

    def psql(self, db, sql):
        r = subprocess.run([PGBIN + "/psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                            "samband", "-d", db, "-c", sql], capture_output=True, text=True)
        return r.stdout.strip()


def node_config(tmp, name, store, source, n):
    endpoints = {"sink": {"plugin": "bench-sink", "config": {"report_file": os.path.join(tmp, name + "-sink.json")},
                          "policy": {"concurrency": 64, "max_attempts": 10}}}
    if source:
        endpoints["load"] = {"plugin": "bench-source",
                             "config": {"count": n, "size_bytes": 8192, "window": 1024,
                                        "report_file": os.path.join(tmp, "source.json"), "run": str(time.time())}}
    cfg = {"node": {"name": name}, "store": store, "admin": {"listen": "127.0.0.1:0"}, "log": {"level": "warn"},
           "plugin_dirs": [PLUGINS], "schemas_dir": os.path.join(ROOT, "config", "schemas"),
           "identifiers": {"allow_synthetic": True}, "limits": {"max_event_bytes": 65536},
           "endpoints": endpoints, "routes": [{"name": "all", "match": {"type": "rph.*"}, "to": ["sink"]}]}
    if store["kind"] == "postgresql":
        cfg["secrets"] = {"pg": {"file": os.path.join(tmp, "pg.conninfo")}}
    return cfg


def start(tmp, name, cfg):
    path = os.path.join(tmp, name + ".json")
    json.dump(cfg, open(path, "w"))
    ready = os.path.join(tmp, name + ".ready")
    log = open(os.path.join(tmp, name + ".log"), "w")
    p = subprocess.Popen([BIN, "run", "-c", path, "--ready-file", ready], stdout=log, stderr=log)
    t_end = time.time() + 60
    while not os.path.exists(ready) and time.time() < t_end and p.poll() is None:
        time.sleep(0.05)
    if not os.path.exists(ready):
        raise RuntimeError(f"{name} did not start: " + open(os.path.join(tmp, name + ".log")).read())
    return p


def stop(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def measure(tmp, names, store, delivered, n):
    """Starts the nodes (the source on the first, which starts last so all sinks are up), then
    times from the source's start to the last delivery."""
    procs = [start(tmp, nm, node_config(tmp, nm, store, False, n)) for nm in names[1:]]
    t0 = time.time()
    procs.insert(0, start(tmp, names[0], node_config(tmp, names[0], store, True, n)))
    ok = False
    t_end = time.time() + (120 if QUICK else 600)
    while time.time() < t_end:
        if delivered() >= n:
            ok = True
            break
        time.sleep(0.1)
    secs = time.time() - t0
    stop(procs)
    return {"events": n, "completed": ok, "seconds": round(secs, 2), "events_per_s": round(n / secs)}


def sqlite_run(tmp, n):
    d = os.path.join(tmp, "sqlite")
    os.makedirs(d)
    store = {"kind": "sqlite", "path": os.path.join(d, "samband.db")}

    def delivered():
        try:
            return json.load(open(os.path.join(d, "a-sink.json")))["delivered"]
        except (OSError, ValueError, KeyError):
            return 0
    # The sink's report appears only at its `expect` count: ask for it.
    cfg_orig = node_config

    def with_expect(tmp_, name, store_, source, n_):
        c = cfg_orig(tmp_, name, store_, source, n_)
        c["endpoints"]["sink"]["config"]["expect"] = n_
        return c
    globals()["node_config"] = with_expect
    try:
        return measure(d, ["a"], store, delivered, n)
    finally:
        globals()["node_config"] = cfg_orig


def pg_run(tmp, server, db, nodes, n):
    d = os.path.join(tmp, db)
    os.makedirs(d)
    server.psql("postgres", f"CREATE DATABASE {db}")
    open(os.path.join(d, "pg.conninfo"), "w").write(server.conninfo(db) + "\n")
    names = ["a", "b"][:nodes]
    store = {"kind": "postgresql", "path": os.path.join(d, "cache"), "conninfo_secret": "pg", "lease_s": 60}

    def delivered():
        out = server.psql(db, "SELECT COUNT(*) FROM deliveries WHERE state = 2")
        return int(out) if out.isdigit() else 0
    r = measure(d, names, store, delivered, n)
    by_node = server.psql(db, "SELECT lease_node || '=' || COUNT(*) FROM deliveries GROUP BY lease_node ORDER BY 1")
    r["delivered_by_node"] = by_node.split("\n") if by_node else []
    return r


def raw_ceiling(server, seconds):
    """pgbench, 2 clients: per event an insert, a SKIP LOCKED claim and a completion (3 commits),
    the least a durable store with leases must do. Its events/s is the ceiling."""
    db = "rawclaim"
    server.psql("postgres", f"CREATE DATABASE {db}")
    server.psql(db, "CREATE TABLE q(id BIGSERIAL PRIMARY KEY, state INT NOT NULL DEFAULT 0, body TEXT, "
                    "lease_until BIGINT NOT NULL DEFAULT 0, fence BIGINT NOT NULL DEFAULT 0); "
                    "CREATE INDEX q_ready ON q(id) WHERE state = 0")
    script = os.path.join(os.path.dirname(server.dir), "claim.sql")
    open(script, "w").write(
        "INSERT INTO q(body) VALUES(repeat('x', 8192));\n"
        "WITH c AS (SELECT id FROM q WHERE state = 0 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "UPDATE q SET state = 1, fence = fence + 1, lease_until = 1 FROM c WHERE q.id = c.id RETURNING q.id \\gset\n"
        "UPDATE q SET state = 2 WHERE id = :id;\n")
    os.chmod(os.path.dirname(server.dir), 0o755)
    os.chmod(script, 0o644)
    r = subprocess.run(as_pg([PGBIN + "/pgbench", "-n", "-h", "127.0.0.1", "-p", str(server.port), "-U", "samband",
                              "-c", "2", "-j", "2", "-T", str(seconds), "-f", script, db]),
                       capture_output=True, text=True)
    tps = 0.0
    for line in r.stdout.splitlines():
        if line.startswith("tps ="):
            tps = float(line.split()[2])
    return {"clients": 2, "seconds": seconds, "events_per_s": round(tps), "commits_per_event": 3}


def main():
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {"stamp": stamp, "events": N, "envelope_bytes": 8192, "cores": os.cpu_count(),
               "loadavg": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        server = Server(tmp)
        try:
            results["raw_skip_locked_ceiling"] = raw_ceiling(server, 5 if QUICK else 15)
            results["sqlite_one_node"] = sqlite_run(tmp, N)
            results["pg_one_node"] = pg_run(tmp, server, "one", 1, N)
            results["pg_two_nodes"] = pg_run(tmp, server, "two", 2, N)
        finally:
            server.stop()
    ceiling = max(1, results["raw_skip_locked_ceiling"]["events_per_s"])
    sq = max(1, results["sqlite_one_node"]["events_per_s"])
    for k in ("sqlite_one_node", "pg_one_node", "pg_two_nodes"):
        results[k]["ratio_to_ceiling"] = round(results[k]["events_per_s"] / ceiling, 2)
        results[k]["ratio_to_sqlite"] = round(results[k]["events_per_s"] / sq, 2)
    out = os.path.join(ROOT, "bench", "results")
    os.makedirs(out, exist_ok=True)
    json.dump(results, open(os.path.join(out, f"pg-{stamp}.json"), "w"), indent=2)
    rows = [("raw SKIP LOCKED loop (pgbench, 2 clients: insert + claim + complete)", results["raw_skip_locked_ceiling"])]
    rows += [(k.replace("_", " "), results[k]) for k in ("sqlite_one_node", "pg_one_node", "pg_two_nodes")]
    md = [f"# Samband on PostgreSQL, {stamp} ({results['cores']} cores, load {results['loadavg']:.1f})", "",
          f"{N} events of 8 KB, bench-source -> store -> bench-sink, durable commits.", "",
          "| run | events/s | × ceiling | × SQLite |", "|---|---|---|---|"]
    for name, r in rows:
        md.append(f"| {name} | {r['events_per_s']} | {r.get('ratio_to_ceiling', 1.0)} | {r.get('ratio_to_sqlite', '')} |")
    if results["pg_two_nodes"].get("delivered_by_node"):
        md.append("")
        md.append("Two nodes, deliveries by node: " + ", ".join(results["pg_two_nodes"]["delivered_by_node"]))
    open(os.path.join(out, f"pg-{stamp}.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
