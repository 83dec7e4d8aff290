#!/usr/bin/env python3
# CPU seconds (user+sys) of compiling each TU, old (/work/main/build, main at 7b3348e) and new
# (/work/wt/http9/build) run side by side at the same moment (same load), CCACHE_DISABLE=1,
# the exact compile commands from compile_commands.json without the ccache launcher.
import json, subprocess, os, shlex
tus = ["host/admin/cli.cpp", "host/directory/soap_http.cpp", "plugins/http/http_plugin.cpp",
       "plugins/net/http.cpp", "plugins/nhn/tests/edi/unit_test.cpp"]
def cmds(build, src):
    out = {}
    for e in json.load(open(build + "/compile_commands.json")):
        for t in tus:
            if e["file"] == src + "/" + t and t not in out:
                out[t] = (e["directory"], e["command"])
    return out
old = cmds("/work/main/build", "/work/main")
new = cmds("/work/wt/http9/build", "/work/wt/http9")
env = dict(os.environ, CCACHE_DISABLE="1")
def start(c, t, tag):
    d, cmd = c[t]
    a = [x for x in shlex.split(cmd) if "ccache" not in x]
    i = a.index("-o"); a[i+1] = f"/tmp/http9/{tag}.o"
    return subprocess.Popen(["/usr/bin/time", "-f", "%U %S %e"] + a, cwd=d, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
tot = [0, 0]
for t in tus:
    l0 = os.getloadavg()[0]
    po, pn = start(old, t, "old"), start(new, t, "new")
    r = []
    for p in (po, pn):
        _, err = p.communicate()
        u, s, e = err.strip().splitlines()[-1].split()
        r.append((float(u) + float(s), float(e)))
    l1 = os.getloadavg()[0]
    tot[0] += r[0][0]; tot[1] += r[1][0]
    print(f"{t:38s} old {r[0][0]:6.1f} s CPU ({r[0][1]:5.1f} wall)  new {r[1][0]:6.1f} s CPU ({r[1][1]:5.1f} wall)  load {l0:.1f}->{l1:.1f}", flush=True)
print(f"{'total':38s} old {tot[0]:6.1f} s CPU  new {tot[1]:6.1f} s CPU")
