"""The benchmark report: turns the e2e driver's raw results into markdown.

    python3 scripts/bench/report.py WORK_DIR [--out docs/benchmarks.md]

Reads WORK_DIR/results.tsv, idle_cpu.tsv, idle.tsv, large.tsv, nreq.tsv and
meta.tsv (written by benches/e2e, see its load.rs, idle_cpu.rs, idle.rs and
large.rs for the columns; idle_cpu.tsv and large.tsv may be missing, and
results.tsv may lack the client-CPU column, in an older work dir), prints the
markdown section, and with --out replaces the part of that file between the
`<!-- bench.sh:begin -->` and `<!-- bench.sh:end -->` markers (a file
without them gets a fresh page). Starts no process and opens no socket.
"""

import argparse
import datetime
import os
import statistics
import sys
from collections import defaultdict

BEGIN, END = "<!-- bench.sh:begin -->", "<!-- bench.sh:end -->"
TESTS = ["GET", "SET", "MGET"]
CFGS = ["50/1", "50/16", "1000/1"]
NAMES = {"direct": "redis (direct)", "nutcracker": "twemproxy", "aster1": "aster thread=1",
         "aster1p0": "aster t=1 ping_fail_limit=0", "aster1yml": "aster t=1 nutcracker.yml",
         "aster2": "aster thread=2", "cluster": "cluster (direct)",
         "asterc": "aster cluster t=1"}
# The configs aster thread=1 runs in, as users run it: (target, description).
T1_CONFIGS = [("aster1", "TOML, defaults (health pings on)"),
              ("aster1p0", "TOML, ping_fail_limit = 0"),
              ("aster1yml", "nutcracker.yml (no auto_eject_hosts)")]
REDIS_TARGETS = ["direct", "nutcracker", "aster1", "aster1p0", "aster1yml", "aster2"]
# Idle CPU above this many ticks per second is flagged: an idle proxy must
# not spin nor wake on a short timer.
IDLE_TICKS_MAX = 1.0
LARGE_OPS = [("LRANGE", "LRANGE key 0 -1 of 1,000,000 elements"), ("GET", "GET of a 10 MiB value")]
LARGE_TARGETS = ["direct", "nutcracker", "aster1", "aster1p0", "aster1yml"]
TEST_ARGS = {"GET": "-t get", "SET": "-t set", "MGET": "MGET " + " ".join(["key:__rand_int__"] * 10)}


def read_tsv(path):
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


class Results:
    """The raw results of one benchmark run, grouped for medians and ratios."""

    def __init__(self, work):
        self.by = defaultdict(list)  # (kind, test, cfg, target) -> rows
        for f in read_tsv(os.path.join(work, "results.tsv")):
            # 10 columns before redis-benchmark's own CPU was recorded.
            if len(f) not in (10, 11) or f[0] == "calib":
                continue
            kind, rnd, test, cfg, target = f[:5]
            self.by[(kind, test, cfg, target)].append(dict(
                round=int(rnd), rps=float(f[5]), p50=float(f[6]), p99=float(f[7]),
                cpu=float(f[8]), rss=int(f[9]), client=float(f[10]) if len(f) > 10 else None))
        self.nreq = dict(read_tsv(os.path.join(work, "nreq.tsv")))
        # target, RSS kB before, connected, after one PING each, fds held
        self.idle = [(f[0], *map(int, f[1:5])) for f in read_tsv(os.path.join(work, "idle.tsv"))]
        # target, pid, threads, seconds, ticks, busiest thread, its ticks
        path = os.path.join(work, "idle_cpu.tsv")
        self.idle_cpu = [dict(target=f[0], pid=int(f[1]), threads=int(f[2]), secs=float(f[3]),
                              ticks=int(f[4]), busiest=f[5], busiest_ticks=int(f[6]))
                         for f in (read_tsv(path) if os.path.exists(path) else [])]
        # (op, target) -> rows: round, rep, status, ms, bytes, cpu_ms
        self.large = defaultdict(list)
        path = os.path.join(work, "large.tsv")
        for f in (read_tsv(path) if os.path.exists(path) else []):
            self.large[(f[1], f[2])].append(dict(round=int(f[0]), rep=int(f[3]), status=f[4],
                                                 ms=float(f[5]), bytes=int(f[6]), cpu=float(f[7]),
                                                 client=float(f[8])))
        self.meta = dict(read_tsv(os.path.join(work, "meta.tsv")))

    def has(self, kind, test, cfg, target):
        return (kind, test, cfg, target) in self.by

    def med(self, kind, test, cfg, target, field):
        rs = [r[field] for r in self.by.get((kind, test, cfg, target), []) if r[field] is not None]
        return statistics.median(rs) if rs else None

    def spread(self, kind, test, cfg, target):
        rs = self.by.get((kind, test, cfg, target))
        if not rs or len(rs) < 2:
            return None
        v = [r["rps"] for r in rs]
        m = statistics.median(v)
        return (max(v) - min(v)) / m * 100 if m else None

    def ratio(self, kind, test, cfg, a, b, field="rps"):
        """Median over rounds of a/b, both measured in the same round."""
        ra = {r["round"]: r[field] for r in self.by.get((kind, test, cfg, a), [])}
        rb = {r["round"]: r[field] for r in self.by.get((kind, test, cfg, b), [])}
        v = [ra[k] / rb[k] for k in ra if k in rb and rb[k] > 0]
        return statistics.median(v) if v else None

    def large_med(self, op, target, field="ms"):
        v = [r[field] for r in self.large.get((op, target), []) if r["status"] == "ok"]
        return statistics.median(v) if v else None

    def large_mean(self, op, target, field):
        """Mean over ok ops: CPU is counted in clock ticks, of which only a mean over many ops
        means anything (a median of 0s and 10s would not)."""
        v = [r[field] for r in self.large.get((op, target), []) if r["status"] == "ok"]
        return statistics.mean(v) if v else None

    def large_round_ms(self, op, target):
        """round -> median ms of its ok ops; inf for a round whose ops all failed."""
        by_round = defaultdict(list)
        for r in self.large.get((op, target), []):
            by_round[r["round"]].append(r["ms"] if r["status"] == "ok" else None)
        return {k: statistics.median(ok) if (ok := [x for x in v if x is not None]) else float("inf")
                for k, v in by_round.items()}

    def large_ratio(self, op, target):
        """Median over rounds of target / direct, both medians of that round's ops."""
        a, d = self.large_round_ms(op, target), self.large_round_ms(op, "direct")
        v = [a[k] / d[k] for k in a if k in d and 0 < d[k] < float("inf")]
        return statistics.median(v) if v else None

    def has_cluster(self):
        return any(k[0] == "cluster" for k in self.by)


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def cfg_text(cfg):
    c, p = cfg.split("/")
    return f"-c {c} -P {p}"


def short(test, cfg):
    c, p = cfg.split("/")
    return f"{test} c{c}" + (f"/P{p}" if p != "1" else "")


def verdict(cases, ok, spec=".2f"):
    """cases: [(label, value)]. Lists every case, marks the misses."""
    cases = [(k, v) for k, v in cases if v is not None]
    if not cases:
        return "not measured", "–"
    hits = sum(1 for _, v in cases if ok(v))
    text = ", ".join(f"{k} " + ("failed" if v == float("inf") else f"{v:{spec}}") + ("" if ok(v) else " ✗")
                     for k, v in cases)
    if hits == len(cases):
        return "**met**", text
    return (f"**not met** ({hits} of {len(cases)} cases)" if hits else "**not met**"), text


def heading(w, res):
    date = datetime.datetime.fromtimestamp(int(res.meta["date_unix"]), datetime.timezone.utc)
    w("## Latest run")
    w("")
    w("Generated by `scripts/bench.sh`; rerun it to replace this section.")
    w("")
    w(f"Measured {date:%Y-%m-%d %H:%M} UTC on {res.meta['cores']} cores ({res.meta['cpu']}); "
      f"{res.meta['versions']}; {res.meta['rounds']} interleaved rounds, medians shown.")
    w("")


def redis_mode(w, res):
    w("### Throughput, latency, CPU and memory (redis mode)")
    w("")
    w("| test | clients / pipeline | target | req/s | spread | p50 ms | p99 ms | CPU µs/req | RSS MB "
      "| bench client CPU µs/req |")
    w("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for test in TESTS:
        for cfg in CFGS:
            for t in REDIS_TARGETS:
                if not res.has("main", test, cfg, t):
                    continue
                sp = res.spread("main", test, cfg, t)
                rss = res.med("main", test, cfg, t, "rss")
                w(f"| {test} | {cfg_text(cfg)} | {NAMES[t]} | {fmt(res.med('main', test, cfg, t, 'rps'), ',.0f')} "
                  f"| {fmt(sp, '.0f')}% | {fmt(res.med('main', test, cfg, t, 'p50'), '.3f')} "
                  f"| {fmt(res.med('main', test, cfg, t, 'p99'), '.3f')} | {fmt(res.med('main', test, cfg, t, 'cpu'), '.2f')} "
                  f"| {fmt(rss / 1024 if rss is not None else None, '.1f')} "
                  f"| {fmt(res.med('main', test, cfg, t, 'client'), '.2f')} |")
    w("")
    w("`spread`: (max − min) / median of req/s over the rounds. `CPU µs/req` and `RSS` are those of the "
      "process under test: the proxy, or for `redis (direct)` the redis-server itself. "
      "`bench client CPU µs/req` is redis-benchmark's own user + system time (wait4's rusage) per "
      "request: redis-benchmark is one thread, so when req/s × that figure nears 1,000,000 µs/s it "
      "has a whole core and is the limit, not the target (at pipeline 1 it often is).")
    w("")
    w("### Ratios (median over rounds of the ratio within a round)")
    w("")
    w("| test | clients / pipeline | t1 / twemproxy req/s | t2 / twemproxy req/s | t2 / t1 req/s "
      "| t1 / direct req/s | t1 / twemproxy CPU per req | t2 / twemproxy CPU per req |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for test in TESTS:
        for cfg in CFGS:
            r = [res.ratio("main", test, cfg, "aster1", "nutcracker"),
                 res.ratio("main", test, cfg, "aster2", "nutcracker"),
                 res.ratio("main", test, cfg, "aster2", "aster1"),
                 res.ratio("main", test, cfg, "aster1", "direct"),
                 res.ratio("main", test, cfg, "aster1", "nutcracker", "cpu"),
                 res.ratio("main", test, cfg, "aster2", "nutcracker", "cpu")]
            w(f"| {test} | {cfg_text(cfg)} | " + " | ".join(fmt(x, ".2f") for x in r) + " |")
    w("")
    w("`t1` here is aster thread=1 from a TOML with defaults; the table below gives the same ratios "
      "for each thread=1 config.")
    w("")


def configs(w, res):
    w("### aster thread=1 in the configs users run")
    w("")
    w("The same three servers behind aster thread=1 started three ways, in the same rounds: a TOML "
      "with only the required keys and `thread = 1` (every other option at its default, so health "
      "pings are on), the same TOML with `ping_fail_limit = 0` (no pings), and a twemproxy-style "
      "`nutcracker.yml` without `auto_eject_hosts` (no pings either), run with `aster-proxy -c FILE.yml`. "
      "Ratios are medians over rounds of the ratio within a round.")
    w("")
    w("| config | test | clients / pipeline | req/s / twemproxy | req/s / direct "
      "| CPU per req / twemproxy | req/s / TOML defaults |")
    w("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for t, desc in T1_CONFIGS:
        for test in TESTS:
            for cfg in CFGS:
                if not res.has("main", test, cfg, t):
                    continue
                r = [res.ratio("main", test, cfg, t, "nutcracker"),
                     res.ratio("main", test, cfg, t, "direct"),
                     res.ratio("main", test, cfg, t, "nutcracker", "cpu"),
                     res.ratio("main", test, cfg, t, "aster1")]
                w(f"| {desc} | {test} | {cfg_text(cfg)} | " + " | ".join(fmt(x, ".2f") for x in r) + " |")
    w("")


def idle_cpu(w, res):
    w("### Idle CPU (before any load)")
    w("")
    w("utime + stime of each fresh proxy over about 2 s with no client connected, from "
      "`/proc/PID/stat`, and of its busiest thread from `/proc/PID/task/TID/stat`, in clock ticks "
      f"per second (1 tick = 1/{os.sysconf('SC_CLK_TCK')} s of CPU). An idle proxy should use about "
      f"none; more than {IDLE_TICKS_MAX:g} tick/s is flagged.")
    w("")
    w("| process | pid | threads | ticks/s | busiest thread (tid/name) | its ticks/s | |")
    w("| --- | ---: | ---: | ---: | --- | ---: | --- |")
    for r in res.idle_cpu:
        rate = r["ticks"] / r["secs"] if r["secs"] > 0 else 0.0
        brate = r["busiest_ticks"] / r["secs"] if r["secs"] > 0 else 0.0
        flag = "ok" if rate <= IDLE_TICKS_MAX else f"✗ above {IDLE_TICKS_MAX:g} tick/s"
        w(f"| {NAMES.get(r['target'], r['target'])} | {r['pid']} | {r['threads']} | {rate:.1f} "
          f"| {r['busiest']} | {brate:.1f} | {flag} |")
    w("")


def cluster_mode(w, res):
    w("### Cluster mode")
    w("")
    w("A 3-master Redis Cluster: `redis-benchmark --cluster` straight at the nodes, aster with "
      "`cache_type = \"redis_cluster\"` (thread = 1) in front of it, and aster in redis mode "
      "(thread = 1, the three plain servers) in the same rounds. CPU and RSS of `cluster (direct)` "
      "are the three nodes' together.")
    w("")
    w("| test | clients / pipeline | target | req/s | p50 ms | p99 ms | CPU µs/req |")
    w("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for test in TESTS:
        for cfg in CFGS:
            for t in ["cluster", "asterc", "aster1"]:
                if not res.has("cluster", test, cfg, t):
                    continue
                w(f"| {test} | {cfg_text(cfg)} | {NAMES[t] if t != 'aster1' else 'aster redis mode t=1'} "
                  f"| {fmt(res.med('cluster', test, cfg, t, 'rps'), ',.0f')} "
                  f"| {fmt(res.med('cluster', test, cfg, t, 'p50'), '.3f')} "
                  f"| {fmt(res.med('cluster', test, cfg, t, 'p99'), '.3f')} "
                  f"| {fmt(res.med('cluster', test, cfg, t, 'cpu'), '.2f')} |")
    w("")
    w("| test | clients / pipeline | aster cluster / aster redis mode req/s "
      "| aster cluster / aster redis mode CPU per req | aster cluster / direct cluster req/s |")
    w("| --- | --- | ---: | ---: | ---: |")
    for test in TESTS:
        for cfg in CFGS:
            if not res.has("cluster", test, cfg, "asterc"):
                continue
            w(f"| {test} | {cfg_text(cfg)} | {fmt(res.ratio('cluster', test, cfg, 'asterc', 'aster1'), '.2f')} "
              f"| {fmt(res.ratio('cluster', test, cfg, 'asterc', 'aster1', 'cpu'), '.2f')} "
              f"| {fmt(res.ratio('cluster', test, cfg, 'asterc', 'cluster'), '.2f')} |")
    w("")


def large_replies(w, res):
    w("### Large replies")
    w("")
    sizes = {op: res.large_med(op, "direct", "bytes") for op, _ in LARGE_OPS}
    w("A list of 1,000,000 short elements (`elem:0000000000`..) and a 10 MiB string, stored on every "
      "server under the same keys, read whole by a client in the driver that times one request from "
      "its write to the reply's last byte and then checks every byte against the expected reply "
      f"(LRANGE reply {fmt(sizes['LRANGE'] and sizes['LRANGE'] / 1e6, '.1f')} MB, GET reply "
      f"{fmt(sizes['GET'] and sizes['GET'] / 1e6, '.1f')} MB). One op at a time on one connection, "
      "several per target and round, targets interleaved as above. `vs direct`: median over rounds "
      "of the target's median / direct's median in the same round. `CPU ms/op`: mean CPU of the "
      "process under test per op (the proxy's alone, not the server's; for direct, the server's), "
      "from clock ticks. `client CPU ms/op`: mean CPU of the driver's reading thread per op "
      "(its thread's CPU clock), far below the wall time when the client is not the limit.")
    w("")
    w("| op | target | median ms | min ms | vs direct | CPU ms/op | client CPU ms/op | ops ok / failed |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for op, desc in LARGE_OPS:
        for t in LARGE_TARGETS:
            rows = res.large.get((op, t), [])
            if not rows:
                continue
            ok = [r["ms"] for r in rows if r["status"] == "ok"]
            failed = [r["status"] for r in rows if r["status"] != "ok"]
            ratio = None if t == "direct" else res.large_ratio(op, t)
            fail_text = f"{len(failed)} ({', '.join(sorted(set(failed)))})" if failed else "0"
            w(f"| {desc} | {NAMES[t]} | {fmt(statistics.median(ok) if ok else None, ',.1f')} "
              f"| {fmt(min(ok) if ok else None, ',.1f')} "
              f"| {'failed' if ratio == float('inf') else fmt(ratio, '.2f')} "
              f"| {fmt(res.large_mean(op, t, 'cpu'), '.1f')} | {fmt(res.large_mean(op, t, 'client'), '.1f')} "
              f"| {len(ok)} / {fail_text} |")
    w("")


def idle_clients(w, res):
    w(f"### {int(res.meta['idle_clients']):,} idle clients")
    w("")
    w("RSS of the proxy (fresh process, before any load) before the clients connect, with all of them "
      "connected, and after each has sent one PING and read the reply (connections still open).")
    w("")
    w("| proxy | RSS before | connected | after one PING each | per client (after PING) |")
    w("| --- | ---: | ---: | ---: | ---: |")
    for t, base, conn, after, held in res.idle:
        w(f"| {NAMES[t]} | {base / 1024:.1f} MB | {conn / 1024:.1f} MB | {after / 1024:.1f} MB "
          f"| {(after - base) * 1024 / max(held, 1):,.0f} B |")
    w("")


def targets(w, res):
    w("### Targets")
    w("")
    w("Same-round ratios, aster thread=1 unless said; ✗ marks a case that misses.")
    w("")
    w("| target | measured | verdict |")
    w("| --- | --- | --- |")
    p1 = [(t, c) for t in TESTS for c in ["50/1", "1000/1"]]
    p16 = [(t, "50/16") for t in TESTS]
    rows_t = []
    for t1, desc in T1_CONFIGS:
        rows_t += [
            (f"req/s ≥ 1.3× twemproxy at pipeline 1: {desc}", "main", t1, "nutcracker", "rps",
             p1, lambda x: x >= 1.3),
            (f"req/s ≥ 2× twemproxy at pipeline 16: {desc}", "main", t1, "nutcracker", "rps",
             p16, lambda x: x >= 2.0),
            (f"CPU per request ≤ 0.7× twemproxy's at pipeline 1: {desc}", "main", t1, "nutcracker",
             "cpu", p1, lambda x: x <= 0.7),
            (f"CPU per request ≤ 0.45× twemproxy's at pipeline 16: {desc}", "main", t1, "nutcracker",
             "cpu", p16, lambda x: x <= 0.45),
        ]
    rows_t.append(("thread=2 ahead of thread=1 (req/s)", "main", "aster2", "aster1", "rps",
                   [(t, c) for t in TESTS for c in CFGS], lambda x: x > 1.0))
    if res.has_cluster():
        rows_t.append(("cluster mode within 10% of redis mode (req/s, GET and SET)", "cluster", "asterc",
                       "aster1", "rps", [(t, c) for t in ["GET", "SET"] for c in ["50/1", "50/16"]],
                       lambda x: x >= 0.9))
        rows_t.append(("cluster mode within 10% of redis mode (req/s, MGET of 10 random keys)", "cluster",
                       "asterc", "aster1", "rps", [("MGET", c) for c in ["50/1", "50/16"]],
                       lambda x: x >= 0.9))
    for label, kind, a, b, field, cases, ok in rows_t:
        v, m = verdict([(short(t, c), res.ratio(kind, t, c, a, b, field)) for t, c in cases], ok)
        w(f"| {label} | {m} | {v} |")
    if res.large:
        for t1, desc in T1_CONFIGS:
            cases = [(op, res.large_ratio(op, t1)) for op, _ in LARGE_OPS]
            v, m = verdict(cases, lambda x: x <= 2.0)
            w(f"| large replies within 2× of direct Redis (LRANGE of 1M elements, GET of 10 MiB): {desc} "
              f"| {m} | {v} |")
    if res.idle_cpu:
        cases = [(NAMES.get(r["target"], r["target"]), r["ticks"] / r["secs"] if r["secs"] > 0 else 0.0)
                 for r in res.idle_cpu if r["target"] != "nutcracker"]
        v, m = verdict(cases, lambda x: x <= IDLE_TICKS_MAX, ".1f")
        w(f"| idle CPU ≤ {IDLE_TICKS_MAX:g} tick/s (every aster process, before any load) | {m} | {v} |")
    if res.idle:
        d = {t: after - base for t, base, conn, after, held in res.idle}
        if d.get("nutcracker", 0) > 0:
            cases = [(NAMES[t], d[t] / d["nutcracker"]) for t in ("aster1", "aster2") if t in d]
            v, m = verdict(cases, lambda x: x < 1.0)
            w(f"| {int(res.meta['idle_clients']):,} idle clients cost less RSS than twemproxy's "
              f"(growth after one PING each, aster / twemproxy) | {m} | {v} |")
    w("")


def commands(w, res):
    keyspace = res.meta["keyspace"]
    w("### Commands")
    w("")
    w("Each run (N chosen so a run lasts about the configured duration against twemproxy; "
      f"keys `key:000000000000`..`key:{int(keyspace) - 1:012d}`, all prefilled, 3-byte values):")
    w("")
    w("```")
    for test in TESTS:
        for cfg in CFGS:
            c, p = cfg.split("/")
            n = res.nreq.get(f"main.{test}.{c}.{p}")
            if n:
                w(f"redis-benchmark -h 127.0.0.1 -p PORT -c {c} -P {p} -n {n} -r {keyspace} --csv {TEST_ARGS[test]}")
    for test in TESTS:
        for cfg in ["50/1", "50/16"]:
            c, p = cfg.split("/")
            n = res.nreq.get(f"cluster.{test}.{c}.{p}")
            if n:
                w(f"redis-benchmark -h 127.0.0.1 -p PORT [--cluster] -c {c} -P {p} -n {n} -r {keyspace} --csv {TEST_ARGS[test]}")
    w("```")
    w("")
    w("The servers: three `redis-server --save '' --appendonly no` on loopback; twemproxy "
      "(`-i 100`) with `hash: fnv1a_64`, `distribution: ketama`, `redis: true`, "
      "`auto_eject_hosts: false` and the three servers as `127.0.0.1:PORT:1 redisN`. aster with the "
      "same servers and aliases, four ways: `thread = 1` from a TOML with only `name`, `listen_addr`, "
      "`servers` and `thread` (every other option at its default, so health pings and the slowlog "
      "timer are on); the same plus `ping_fail_limit = 0`; a `nutcracker.yml` with `listen`, "
      "`hash: fnv1a_64`, `distribution: ketama`, `redis: true` and `servers` only (no "
      "`auto_eject_hosts`: no pings), run as `aster-proxy -c FILE.yml -s PORT -a 127.0.0.1 -i 100` "
      "and started on one CPU so that it makes one worker (a yml pool gets one per CPU), then given "
      "every CPU back; and `thread = 2` (TOML with `hash_tag = \"\"`, otherwise defaults). "
      "`redis (direct)` is the first of the three servers alone.")
    w("")


def meaning(w, res):
    w("### What the numbers mean")
    w("")
    w("- **req/s** is redis-benchmark's own count: one MGET of 10 keys is one request. At `-P 16` each "
      "client keeps 16 requests in flight, so req/s counts commands, not round trips.")
    w("- **p50 / p99** are redis-benchmark's per-request latencies in ms, including the time a request "
      "waits behind others in the same pipeline, so at `-P 16` they are roughly 16 times a round trip.")
    w("- **CPU µs/req** is utime + stime of the process under test (all threads) over the run, "
      "from `/proc/PID/stat`, divided by the requests of the run. The kernel counts it in ticks "
      f"(1/{os.sysconf('SC_CLK_TCK')} s), so a 3 s run carries about ±1% of quantisation; it includes "
      "the kernel's work on the proxy's sockets (most of a proxy's cost) but not the redis-servers'.")
    w("- **RSS** is VmRSS after the run: it includes buffers kept from earlier runs (the -c 1000 runs "
      "leave the largest pools behind).")
    w("- **Ratios** are taken within one round (the same minute, the same background load), then the "
      "median over rounds is shown; they are more trustworthy than the ratio of two medians.")
    w(f"- **The machine is small and shared**: {res.meta['cores']} cores run redis-benchmark (one thread, "
      "often the bottleneck for `redis (direct)` and at `-P 16`), the proxy and three redis-servers at "
      "once, and other engineers' builds and tests run beside them. Absolute numbers move by 10-50% "
      "or more between rounds and runs (see `spread`); same-round ratios move much less. A proxy that uses less CPU per "
      "request leaves more of the two cores to redis-benchmark and the servers, which is why CPU "
      "efficiency shows up directly as throughput here. thread=2 can only be ahead of thread=1 when a "
      "core is idle, which on 2 cores under this load it rarely is.")


def render(work):
    res = Results(work)
    out = []
    w = out.append
    heading(w, res)
    if res.idle_cpu:
        idle_cpu(w, res)
    redis_mode(w, res)
    configs(w, res)
    if res.large:
        large_replies(w, res)
    if res.has_cluster():
        cluster_mode(w, res)
    if res.idle:
        idle_clients(w, res)
    targets(w, res)
    commands(w, res)
    meaning(w, res)
    return "\n".join(out)


def splice(path, report):
    """Replaces only the part between the markers, so notes written below
    them (the profile) survive a rerun."""
    block = f"{BEGIN}\n{report.rstrip()}\n{END}"
    old = open(path).read() if os.path.exists(path) else ""
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = "# Benchmarks\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", help="the driver's work dir (results.tsv, idle.tsv, nreq.tsv, meta.tsv)")
    ap.add_argument("--out", help="markdown file whose marked section is replaced")
    args = ap.parse_args()
    try:
        report = render(args.work)
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"report.py: cannot read the results in {args.work}: {e!r}")
    print(report)
    if args.out:
        splice(args.out, report)
        print(f"\n== written to {args.out}")


if __name__ == "__main__":
    main()
