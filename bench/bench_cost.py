"""What one call costs mitmdump, measured the way issue #18 states it: wrk, 8 connections, a
fresh id per call, tools/call of a tool with an argument condition and a counter in a policy of
``--tools`` tools, a raw asyncio upstream; the cost is mitmdump's own CPU time (utime+stime from
/proc) divided by the calls it answered, so a saturated load client hides nothing.

    .venv/bin/python bench/bench_cost.py                      # the issue's table, one run
    .venv/bin/python bench/bench_cost.py --tools 10000 --configs bare,sqlite
    .venv/bin/python bench/bench_cost.py --agents 100000 --configs sqlite --seconds 60 --rounds 1
    .venv/bin/python bench/bench_cost.py --profile bare,sqlite  # py-spy (if on PATH) while loaded

Configurations: ``bare`` (no addon), ``memory`` (intercept_state=memory), ``sqlite`` (the
default store), each with the decision log on (its default); also ``sqlite-nolog``
(intercept_log=off), ``sqlite-nofreeze`` (intercept_gc_freeze=false), ``hooks`` (no addon:
bench/hook_floor.py, our hook shape doing nothing), ``parse-floor`` (no addon: bench/parse_floor.py,
reading and parsing each call and its answer with C json, nothing else), ``bare-freeze`` (bare, with gc.freeze() once
running, bench/gc_freeze.py), and ``baseline``
(the default store with the addon of another checkout, ``--baseline DIR``: before and after in one run).
Rounds alternate (A B C, C B A, ...) and the figure is the median over rounds. Then, at
concurrency 1, the p50 latency and the CPU of an allowed call through each configuration and of
a denied call (answered by the proxy); denied/bare compares the two at concurrency 1, where a
call pays for its own wake-ups (``--denied``: the load rounds call the denied tool too). ``--agents N``: calls cycle through N X-Agent-Id values, each its own counters;
mitmdump's resident memory is reported after each round.

Every process is started here and stopped by its PID; wrk runs for a fixed time; loopback only.
Output: a table (``kernel``: the stime part of the CPU per call), and JSON in bench/results/bench_cost[-<tag>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import BIN, Process, free_port, wait_for_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
UPSTREAM = ROOT / "bench" / "bench_proxy.py"  # its --serve-upstream: a raw asyncio JSON-RPC server

LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  n = 0; ok = 0; bad = 0
  tool = args[1]; want = args[2]; agents = tonumber(args[3])
end
function request()
  n = n + 1
  local h = {["content-type"] = "application/json", ["accept"] = "application/json, text/event-stream",
             ["mcp-protocol-version"] = "2025-06-18"}
  if agents > 0 then h["x-agent-id"] = "agent-" .. (n % agents) end
  local args = '{}'
  if tool == "echo" then args = '{"text":"hello ' .. n .. '"}' end
  local body = '{"jsonrpc":"2.0","id":' .. n .. ',"method":"tools/call","params":{"name":"' .. tool
    .. '","arguments":' .. args .. '}}'
  return wrk.format("POST", "/mcp", h, body)
end
function response(status, headers, body)
  if status == 200 and body:find(want, 1, true) then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  io.write(string.format("RESULT %d %d %d %d\\n", o, b, latency:percentile(50), latency:percentile(90)))
end
"""
ALLOWED, DENIED = "hello from upstream", "INTERCEPT POLICY DENIED"


def policy(tools: int) -> str:
    """``echo`` (argument condition + counter), a denied tool, hidden tools, and filler tools
    shaped like real ones (conditions, limits) up to ``tools`` entries."""
    lines = ['version: "1"', "default: allow", 'hide: [secret_admin, "internal_*"]', "tools:",
             "  echo:", "    rules:",
             "      - name: printable short text",
             '        conditions: [{path: args.text, op: regex, value: "^[ -~]{1,200}$"}]',
             '        on_deny: "echo takes printable text of at most 200 characters"',
             "      - {name: echo budget, action: allow, rate_limit: 100000000/day, scope: agent}  # a day: every agent stays in the window",
             "  delete_everything:", "    rules:",
             '      - {name: no deletes, action: deny, on_deny: "Deleting everything is not allowed"}']
    for i in range(max(0, tools - 2)):
        lines += [f"  tool_{i:05d}:", "    rules:",
                  f"      - name: cap {i}",
                  f"        conditions: [{{path: args.amount, op: lte, value: {100 + i}}}]",
                  f"      - {{name: rate {i}, action: allow, rate_limit: {1000 + i}/hour}}"]
    return "\n".join(lines) + "\n"


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def rss_mib(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def wrk(port: int, tool: str, want: str, *, connections: int, seconds: float, agents: int,
        script: Path) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                          "-s", str(script), f"http://127.0.0.1:{port}", "--", tool, want, str(agents)],
                         capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+)", out.stdout)
    if m is None:
        raise RuntimeError(f"wrk said: {out.stdout[-500:]} {out.stderr[-500:]}")
    ok, bad, p50, p90 = map(int, m.groups())
    return {"ok": ok, "bad": bad, "p50_us": p50, "p90_us": p90}


def measured(pid: int, run) -> dict:  # type: ignore[no-untyped-def]
    user0, system0 = cpu_times(pid)
    res = run()
    user, system = cpu_times(pid)
    calls = max(res["ok"], 1)
    res["cpu_us_per_call"] = (user - user0 + system - system0) / calls * 1e6
    res["system_us_per_call"] = (system - system0) / calls * 1e6  # the kernel's share: sockets, wake-ups, files
    res["rss_mib"] = rss_mib(pid)
    if res["bad"]:
        raise RuntimeError(f"{res['bad']} unexpected answers")
    return res


def start_proxy(tmp: Path, name: str, upstream: int, extra: list[str]) -> Process:
    port = free_port()
    args = [str(BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1", "-p", str(port),
            "--mode", f"reverse:http://127.0.0.1:{upstream}", "--set", f"confdir={tmp / ('conf-' + name)}",
            "--set", "connection_strategy=lazy", *extra]
    proc = Process(args, tmp / f"mitmdump-{name}.log")
    wait_for_port(port, proc.proc, timeout=120)
    proc.port = port  # type: ignore[attr-defined]
    return proc


CONFIGS = {"bare": [], "memory": ["intercept_state=memory"], "sqlite": [],
           "sqlite-nolog": ["intercept_log=off"], "sqlite-nofreeze": ["intercept_gc_freeze=false"], "hooks": [],
           "parse-floor": [], "bare-freeze": [], "baseline": []}
SCRIPTS = {"bare-freeze": [ROOT / "bench" / "gc_freeze.py"],  # bare mitmdump with the addon's gc.freeze()
           "hooks": [ROOT / "bench" / "hook_floor.py"],  # no addon: our hooks' shape, doing nothing
           "parse-floor": [ROOT / "bench" / "parse_floor.py"]}  # no addon: read and parse, nothing else
NO_ADDON = {"bare", "hooks", "parse-floor", "bare-freeze"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="bare,memory,sqlite")
    p.add_argument("--tools", type=int, default=50)
    p.add_argument("--agents", type=int, default=0, help="distinct X-Agent-Id values (0: no header)")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--seconds", type=int, default=5, help="wrk time per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2, help="wrk seconds per proxy before measuring")
    p.add_argument("--denied", action="store_true", help="the load rounds call a denied tool instead")
    p.add_argument("--latency-seconds", type=int, default=2, help="wrk time per latency sample (3 per config)")
    p.add_argument("--set", action="append", default=[], help="extra --set for the addon proxies")
    p.add_argument("--script", action="append", default=[], help="another -s script for every proxy, bare too")
    p.add_argument("--profile", help="configs (comma-separated) to sample with py-spy, one extra round each")
    p.add_argument("--tag", default="")
    p.add_argument("--baseline", help="another checkout (e.g. a git worktree of an older commit): config "
                   "'baseline' is the default store with that checkout's addon, to compare in one run")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        p.error("wrk is not installed (apt-get install wrk)")
    names = [n for n in args.configs.split(",") if n]
    procs: list[Process] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmpdir:
        tmp = Path(tmpdir)
        script = tmp / "calls.lua"
        script.write_text(LUA)
        pol = tmp / "policy.yaml"
        pol.write_text(policy(args.tools))
        try:
            up = free_port()
            upstream = Process([sys.executable, str(UPSTREAM), "--serve-upstream", str(up), "--lifetime", "3600"],
                               tmp / "upstream.log")
            procs.append(upstream)
            wait_for_port(up, upstream.proc)
            proxies = {}
            for name in names:
                root = Path(args.baseline) if name == "baseline" else ROOT
                extra = [] if name in NO_ADDON else ["-s", str(root / "intercept_addon.py"),
                                                   "--set", f"intercept_policy={pol}"]
                for opt in CONFIGS[name] + ([] if name in NO_ADDON else args.set):
                    extra += ["--set", opt]
                for extra_script in [*SCRIPTS.get(name, []), *args.script]:
                    extra += ["-s", extra_script]
                proxies[name] = start_proxy(tmp, name, up, extra)
                procs.append(proxies[name])
            rss_idle = {n: rss_mib(pr.proc.pid) for n, pr in proxies.items()}

            def load(name: str, seconds: float, tool: str = "echo", want: str = ALLOWED, conns: int | None = None):
                pr = proxies[name]
                return measured(pr.proc.pid, lambda: wrk(
                    pr.port, tool, want, connections=conns or args.connections, seconds=seconds,  # type: ignore[attr-defined]
                    agents=args.agents, script=script))

            def main_load(name: str, seconds: int) -> dict:  # --denied: a bare proxy still forwards
                if args.denied and name not in NO_ADDON:
                    return load(name, seconds, "delete_everything", DENIED)
                return load(name, seconds)

            for name in names:  # warm-up: connections, caches, the SQLite file
                main_load(name, args.warmup)
            rounds: dict[str, list[dict]] = {n: [] for n in names}
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    rounds[name].append(main_load(name, args.seconds))
            # concurrency 1: latency of allowed calls everywhere, of a denied call on the addon
            lat: dict[str, list[dict]] = {n: [] for n in names}
            denied: dict[str, list[dict]] = {n: [] for n in names if n not in NO_ADDON}
            for r in range(3):
                for name in names if r % 2 == 0 else names[::-1]:
                    lat[name].append(load(name, args.latency_seconds, conns=1))
                    if name in denied:
                        denied[name].append(load(name, args.latency_seconds, "delete_everything", DENIED, conns=1))
            profile = {name: py_spy(proxies[name].proc.pid, tmp, lambda: main_load(name, args.seconds),
                                    f"{args.tag or 'run'}-{name}")
                       for name in (args.profile.split(",") if args.profile else [])}
        finally:
            for proc in reversed(procs):
                proc.stop()

    med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
    table = {}
    for name in names:
        table[name] = {"cpu_us_per_call": med(rounds[name], "cpu_us_per_call"),
                       "rounds_cpu_us": [round(x["cpu_us_per_call"], 1) for x in rounds[name]],
                       "system_us_per_call": med(rounds[name], "system_us_per_call"),
                       "calls_per_round": med(rounds[name], "ok"),
                       "p50_us_c1": med(lat[name], "p50_us"), "p90_us_c1": med(lat[name], "p90_us"),
                       "cpu_us_per_call_c1": med(lat[name], "cpu_us_per_call"),
                       "rss_mib_idle": rss_idle[name], "rss_mib_end": rounds[name][-1]["rss_mib"]}
        if name in denied:
            table[name]["denied_cpu_us_per_call"] = med(denied[name], "cpu_us_per_call")
            table[name]["denied_p50_us_c1"] = med(denied[name], "p50_us")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {args.tools} tools, "
          f"{args.agents or 'no'} agent header values, {args.connections} connections, "
          f"{args.rounds} x {args.seconds:g} s rounds, {time.monotonic() - began:.0f} s")
    print(f"{'config':<14}{'CPU us/call':>12}{'kernel':>7}{'bare/this':>10}{'p50 us c1':>10}{'added':>7}{'CPU c1':>8}"
          f"{'denied CPU':>11}{'denied/bare':>12}{'RSS MiB':>9}   rounds")
    bare = table.get("bare")
    for name, row in table.items():
        ratio = f"{bare['cpu_us_per_call'] / row['cpu_us_per_call']:.3f}" if bare else "-"
        added = f"{row['p50_us_c1'] - bare['p50_us_c1']:+.0f}" if bare else "-"
        dcpu = row.get("denied_cpu_us_per_call")  # at concurrency 1: against bare's at concurrency 1
        dratio = f"{dcpu / bare['cpu_us_per_call_c1']:.3f}" if bare and dcpu else "-"
        print(f"{name:<14}{row['cpu_us_per_call']:>12.0f}{row['system_us_per_call']:>7.0f}{ratio:>10}"
              f"{row['p50_us_c1']:>10.0f}{added:>7}"
              f"{row['cpu_us_per_call_c1']:>8.0f}"
              f"{dcpu or 0:>11.0f}{dratio:>12}{row['rss_mib_end']:>9.1f}   {row['rounds_cpu_us']}")
    out = RESULTS / f"bench_cost{'-' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args),
                               "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                           "loadavg": os.getloadavg()},
                               "table": table, "profile": profile}, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    return 0


PROFILE_RATE = 1000  # samples per second


def py_spy(pid: int, tmp: Path, run, tag: str) -> dict | None:  # type: ignore[no-untyped-def]
    """Sample the proxy with py-spy during one load round; the top functions by own time."""
    exe = shutil.which("py-spy")
    if exe is None:
        print("py-spy not on PATH: no profile")
        return None
    raw = tmp / "profile.txt"
    spy = subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(PROFILE_RATE),
                            "--nonblocking", "--output", str(raw), "--duration", "600"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        res = run()
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled
        spy.wait(30)
    stacks = RESULTS / f"profile-{tag}.txt"
    stacks.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no results yet
    # the calls answered while sampling: profile_summary.py turns samples into microseconds per call
    stacks.write_text(f"# calls {res['ok']} rate {PROFILE_RATE}\n" + raw.read_text())
    return {"stacks": str(stacks.relative_to(ROOT)), "calls": res["ok"]}


if __name__ == "__main__":
    sys.exit(main())
