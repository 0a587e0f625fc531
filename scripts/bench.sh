#!/usr/bin/env bash
# Benchmarks aster against twemproxy (nutcracker) and direct Redis with
# redis-benchmark, and writes the table of medians to docs/benchmarks.md.
#
#   scripts/bench.sh
#
# What it does (every process it starts is stopped on exit):
#   1. cargo build --release (skip with NO_BUILD=1; ASTER_BIN=path overrides);
#   2. three redis-servers, nutcracker (ketama, fnv1a_64, aliases) and two
#      aster processes (thread = 1 and thread = 2) over the same three servers,
#      all on free 127.0.0.1 ports;
#   3. 10,000 idle clients against each proxy in turn: RSS before and after;
#   4. GET, SET and MGET (10 keys) at -c 50 -P 1, -c 50 -P 16, -c 1000 -P 1
#      against direct Redis, nutcracker, aster thread=1 and thread=2,
#      interleaved (the target order rotates each round), ROUNDS rounds;
#      per run: req/s, p50, p99, CPU µs per request and RSS of the process
#      under test;
#   5. cluster mode: a 3-master Redis Cluster; aster (redis_cluster,
#      thread = 1) vs redis-benchmark --cluster vs aster in redis mode;
#   6. prints the table and writes it to docs/benchmarks.md (OUT=...).
#
# Takes 8-10 minutes with the defaults (DURATION=1 ROUNDS=1: about 2).
# Knobs (environment): DURATION=3 (seconds per run, approx.), ROUNDS=3,
# KEYSPACE=100000, IDLE_CLIENTS=10000, SKIP_IDLE=1, SKIP_CLUSTER=1,
# OUT=docs/benchmarks.md (OUT= : do not write; only the part between the
# bench.sh markers is replaced), NO_BUILD=1, ASTER_BIN=..., KEEP_WORK=1
# (keep the work directory with the raw per-run results.tsv and the logs).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
KEYSPACE=${KEYSPACE:-100000}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
SKIP_IDLE=${SKIP_IDLE:-}
SKIP_CLUSTER=${SKIP_CLUSTER:-}
OUT=${OUT-docs/benchmarks.md}
NO_BUILD=${NO_BUILD:-}
ASTER_BIN=${ASTER_BIN:-"${CARGO_TARGET_DIR:-$root/target}/release/aster-proxy"}

die() {
  echo "bench.sh: $*" >&2
  exit 1
}

for tool in redis-server redis-cli redis-benchmark nutcracker python3; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server redis-tools nutcracker python3)"
done

# --- processes and cleanup ---------------------------------------------------

work="$(mktemp -d /tmp/aster-bench.XXXXXX)"
pids=()

cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$p" 2>/dev/null
  done
  if [ -n "${KEEP_WORK:-}" ]; then
    echo "bench.sh: raw results kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1000 clients per run, 10,000 idle ones, plus the proxies' own sockets.
want_fds=$((IDLE_CLIENTS * 2 + 4096))
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$want_fds" ]; then
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ] || [ "$hard" -ge "$want_fds" ]; then
    ulimit -Sn "$want_fds"
  else
    ulimit -Sn "$hard"
  fi
fi
fd_limit=$(ulimit -Sn)

# Free loopback ports, all bound at once so they differ.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Three ports p with p and p + 10000 (the cluster bus) free and below the
# kernel's ephemeral range, so the bus never collides with TIME_WAIT sockets.
cluster_ports() {
  python3 - <<'EOF'
import socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
found = []
p = 12001
while len(found) < 3 and p + 10000 < low:
    if free(p) and free(p + 10000):
        found.append(p)
    p += 1
print(" ".join(map(str, found)))
EOF
}

ping_ok() {
  [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

wait_ping() {
  local port=$1 what=$2 log=$3
  for _ in $(seq 1 100); do
    ping_ok "$port" && return 0
    sleep 0.1
  done
  tail -20 "$log" >&2
  die "$what on port $port did not answer PING (log: $log)"
}

start_redis() {
  local port=$1
  shift
  mkdir -p "$work/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize no --save "" \
    --appendonly no --dir "$work/redis-$port" --logfile "$work/redis-$port/log" \
    "$@" &
  pids+=($!)
  last_pid=$!
  wait_ping "$port" redis-server "$work/redis-$port/log"
}

# CPU ticks (utime + stime, every thread) summed over PIDs.
cpu_ticks() {
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat") || v=0
    t=$((t + v))
  done
  echo "$t"
}

# VmRSS in kB summed over PIDs.
rss_kb() {
  local t=0 p v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status") || v=0
    t=$((t + v))
  done
  echo "$t"
}

fd_count() {
  find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

clk_tck=$(getconf CLK_TCK)
cores=$(nproc)

# --- build and start ----------------------------------------------------------

if [ -z "$NO_BUILD" ]; then
  echo "== cargo build --release"
  cargo build --release --quiet || die "cargo build --release failed"
fi
[ -x "$ASTER_BIN" ] || die "no aster binary at $ASTER_BIN"

read -r r1 r2 r3 nut_port nut_stats a1_port a2_port ac_port < <(free_ports 8)
servers=("$r1" "$r2" "$r3")

echo "== machine: $cores cores ($(uname -m)), redis $(redis-server --version | awk '{print $3}' | sed 's/^v=//'), $(nutcracker -V 2>&1 | head -1 | awk '{print $NF}'), fd limit $fd_limit"
echo "== work dir $work"

for p in "${servers[@]}"; do
  start_redis "$p"
done
direct_pid=${pids[0]}

cat >"$work/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$nut_port
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:$r1:1 redis1
   - 127.0.0.1:$r2:1 redis2
   - 127.0.0.1:$r3:1 redis3
EOF
nutcracker -c "$work/nutcracker.yml" -s "$nut_stats" -a 127.0.0.1 \
  -o "$work/nutcracker.log" &
pids+=($!)
nut_pid=$!
wait_ping "$nut_port" nutcracker "$work/nutcracker.log"

aster_conf() { # name port thread cache_type servers...
  local name=$1 port=$2 thread=$3 type=$4
  shift 4
  {
    echo "[[clusters]]"
    echo "name = \"$name\""
    echo "listen_addr = \"127.0.0.1:$port\""
    echo "cache_type = \"$type\""
    echo "servers = ["
    for s in "$@"; do echo "    \"$s\","; done
    echo "]"
    echo "thread = $thread"
    echo "hash = \"fnv1a_64\""
    echo "distribution = \"ketama\""
    echo "hash_tag = \"\""
  } >"$work/$name.toml"
}

start_aster() { # name port
  "$ASTER_BIN" -c "$work/$1.toml" -o "$work/$1.log" &
  pids+=($!)
  last_pid=$!
  wait_ping "$2" "aster ($1)" "$work/$1.log"
}

ring=("127.0.0.1:$r1:1 redis1" "127.0.0.1:$r2:1 redis2" "127.0.0.1:$r3:1 redis3")
aster_conf aster1 "$a1_port" 1 redis "${ring[@]}"
aster_conf aster2 "$a2_port" 2 redis "${ring[@]}"
start_aster aster1 "$a1_port"
a1_pid=$last_pid
start_aster aster2 "$a2_port"
a2_pid=$last_pid

# --- 10,000 idle clients --------------------------------------------------------

results="$work/results.tsv" # kind round test cfg target rps p50 p99 cpu_us rss_kb
idle="$work/idle.tsv"       # target base_kb connected_kb after_ping_kb clients
: >"$results"
: >"$idle"

cat >"$work/idle.py" <<'EOF'
# Opens N connections to a port, waits until the proxy holds them all, reports
# its RSS, sends one PING on each, reads every PONG, reports RSS again.
import os, resource, socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))
time.sleep(0.5)
base, base_fds = rss(), fds()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    socks.append(s)
deadline = time.time() + 30
while fds() < base_fds + n and time.time() < deadline:
    time.sleep(0.1)
time.sleep(1.0)
held = fds() - base_fds
connected = rss()
for s in socks:
    s.sendall(b"*1\r\n$4\r\nPING\r\n")
for s in socks:
    got = b""
    while not got.endswith(b"\r\n"):
        chunk = s.recv(64)
        if not chunk:
            sys.exit(f"connection closed by the proxy after {len(socks)} connects")
        got += chunk
    if got != b"+PONG\r\n":
        sys.exit(f"unexpected reply {got!r}")
time.sleep(1.0)
after = rss()
print(base, connected, after, held)
for s in socks:
    s.close()
EOF

if [ -z "$SKIP_IDLE" ]; then
  for t in nutcracker aster1 aster2; do
    case $t in
      nutcracker) port=$nut_port pid=$nut_pid ;;
      aster1) port=$a1_port pid=$a1_pid ;;
      aster2) port=$a2_port pid=$a2_pid ;;
    esac
    echo "== $IDLE_CLIENTS idle clients: $t"
    if line=$(python3 "$work/idle.py" "$port" "$IDLE_CLIENTS" "$pid"); then
      echo "$t $line" | tr ' ' '\t' >>"$idle"
      echo "   RSS kB before, connected, after one PING each, fds held: $line"
    else
      echo "   failed: $line" >&2
    fi
    sleep 2 # let the proxy reap the closed connections
  done
fi

# --- load ---------------------------------------------------------------------

declare -A test_args=(
  [GET]="-t get"
  [SET]="-t set"
  [MGET]="MGET$(printf ' key:__rand_int__%.0s' 1 2 3 4 5 6 7 8 9 10)"
)
tests=(GET SET MGET)
cfgs=("50 1" "50 16" "1000 1")

declare -A target_port target_pids target_extra
target_port=([direct]=$r1 [nutcracker]=$nut_port [aster1]=$a1_port [aster2]=$a2_port)
target_pids=([direct]=$direct_pid [nutcracker]=$nut_pid [aster1]=$a1_pid [aster2]=$a2_pid)
target_extra=([direct]="" [nutcracker]="" [aster1]="" [aster2]="")
declare -A nreq

# One redis-benchmark run; appends a line to $results.
# run_one KIND ROUND TEST CLIENTS PIPELINE TARGET N
run_one() {
  local kind=$1 round=$2 test=$3 c=$4 p=$5 target=$6 n=$7
  local port=${target_port[$target]}
  # shellcheck disable=SC2206
  local tpids=(${target_pids[$target]})
  local extra=${target_extra[$target]}
  local c0 c1 out line
  c0=$(cpu_ticks "${tpids[@]}")
  # shellcheck disable=SC2086
  out=$(redis-benchmark -h 127.0.0.1 -p "$port" $extra -c "$c" -P "$p" -n "$n" \
    -r "$KEYSPACE" --csv ${test_args[$test]} 2>&1)
  local rc=$?
  c1=$(cpu_ticks "${tpids[@]}")
  # Proxies refuse CONFIG GET, which redis-benchmark only warns about.
  out=$(grep -v 'Could not fetch server CONFIG' <<<"$out")
  if [ $rc -ne 0 ] || grep -qiE 'err|could not|refused' <<<"$out"; then
    echo "   $target $test c=$c P=$p: redis-benchmark failed: $(head -3 <<<"$out")" >&2
    return 1
  fi
  line=$(grep '^"' <<<"$out" | grep -v '^"test"' | tail -1)
  python3 - "$line" "$kind" "$round" "$test" "$c/$p" "$target" "$n" "$((c1 - c0))" \
    "$clk_tck" "$(rss_kb "${tpids[@]}")" >>"$results" <<'EOF'
import csv, sys
row = next(csv.reader([sys.argv[1]]))
kind, rnd, test, cfg, target, n, ticks, hz, rss = sys.argv[2:]
rps, p50, p99 = float(row[1]), float(row[4]), float(row[6])
cpu_us = int(ticks) * 1e6 / int(hz) / int(n)
print("\t".join([kind, rnd, test, cfg, target, f"{rps:.0f}", f"{p50:.3f}", f"{p99:.3f}", f"{cpu_us:.2f}", rss]))
EOF
  tail -1 "$results" | awk -F'\t' '{ printf "   %-3s %-8s %-5s %-7s %-11s %9s req/s  p50 %6s  p99 %6s ms  cpu %6s us/req  rss %6d kB\n", $1, "r" $2, $3, $4, $5, $6, $7, $8, $9, $10 }'
}

# Chooses -n per test and config so a run lasts about DURATION seconds:
# one short run against nutcracker.
calibrate() { # kind target tests...
  local kind=$1 target=$2
  shift 2
  local test cfg c p n0 rps
  for test in "$@"; do
    for cfg in "${cfgs[@]}"; do
      read -r c p <<<"$cfg"
      [ "$kind" = cluster ] && [ "$c" = 1000 ] && continue
      n0=$((c * p * 100))
      [ $n0 -lt 20000 ] && n0=20000
      run_one calib 0 "$test" "$c" "$p" "$target" "$n0" >/dev/null || die "calibration run failed"
      rps=$(tail -1 "$results" | cut -f6)
      n=$(python3 -c "print(max(10000, int($rps * $DURATION / 1000 + 1) * 1000))")
      nreq[$kind.$test.$c.$p]=$n
    done
  done
}

# Every key into every server (not through a proxy, so no proxy's buffer
# pools grow before the measured runs): GETs hit wherever a key lives.
echo "== prefill $KEYSPACE keys into each server"
for port in "${servers[@]}"; do
  redis-benchmark -h 127.0.0.1 -p "$port" -c 20 -P 32 -n $((KEYSPACE * 4)) \
    -r "$KEYSPACE" -t set -q >/dev/null 2>&1 || die "prefill failed"
done

echo "== calibrate -n for ~${DURATION}s runs (against nutcracker)"
calibrate main nutcracker "${tests[@]}"

targets=(direct nutcracker aster1 aster2)
t0=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  # Rotate the target order each round so no target always runs first.
  k=$(((round - 1) % ${#targets[@]}))
  order=("${targets[@]:$k}" "${targets[@]:0:$k}")
  echo "== round $round/$ROUNDS (order: ${order[*]})"
  for test in "${tests[@]}"; do
    for cfg in "${cfgs[@]}"; do
      read -r c p <<<"$cfg"
      for target in "${order[@]}"; do
        run_one main "$round" "$test" "$c" "$p" "$target" "${nreq[main.$test.$c.$p]}"
      done
    done
  done
done
echo "== load: $(($(date +%s) - t0)) s"

# --- cluster mode -------------------------------------------------------------

cluster_nodes=()
if [ -z "$SKIP_CLUSTER" ]; then
  read -r -a cluster_nodes < <(cluster_ports)
  [ ${#cluster_nodes[@]} -eq 3 ] || die "no three free cluster ports below the ephemeral range"
  cluster_pids=()
  for p in "${cluster_nodes[@]}"; do
    start_redis "$p" --cluster-enabled yes --cluster-config-file "$work/redis-$p/nodes.conf" \
      --cluster-node-timeout 5000
    cluster_pids+=("$last_pid")
  done
  redis-cli --cluster create "${cluster_nodes[@]/#/127.0.0.1:}" --cluster-replicas 0 \
    --cluster-yes >"$work/cluster-create.log" 2>&1 || die "cluster create failed: $work/cluster-create.log"
  for _ in $(seq 1 100); do
    ok=0
    for p in "${cluster_nodes[@]}"; do
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && ok=$((ok + 1))
    done
    [ $ok -eq 3 ] && break
    sleep 0.1
  done
  [ $ok -eq 3 ] || die "cluster not ok"
  aster_conf asterc "$ac_port" 1 redis_cluster "${cluster_nodes[@]/#/127.0.0.1:}"
  start_aster asterc "$ac_port"
  ac_pid=$last_pid
  target_port+=([cluster]=${cluster_nodes[0]} [asterc]=$ac_port)
  target_pids+=([cluster]="${cluster_pids[*]}" [asterc]=$ac_pid)
  target_extra+=([cluster]="--cluster" [asterc]="")

  echo "== cluster: prefill, calibrate"
  redis-benchmark -h 127.0.0.1 -p "${cluster_nodes[0]}" --cluster -c 20 -P 32 \
    -n $((KEYSPACE * 4)) -r "$KEYSPACE" -t set -q >/dev/null 2>&1 || die "cluster prefill failed"
  calibrate cluster asterc "${tests[@]}"
  ctargets=(cluster asterc aster1)
  for round in $(seq 1 "$ROUNDS"); do
    k=$(((round - 1) % ${#ctargets[@]}))
    order=("${ctargets[@]:$k}" "${ctargets[@]:0:$k}")
    echo "== cluster round $round/$ROUNDS (order: ${order[*]})"
    for test in "${tests[@]}"; do
      for cfg in "${cfgs[@]}"; do
        read -r c p <<<"$cfg"
        [ "$c" = 1000 ] && continue
        for target in "${order[@]}"; do
          # MGET of random keys spans slots: redis-benchmark --cluster
          # cannot send it (CROSSSLOT), aster splits it.
          [ "$target" = cluster ] && [ "$test" = MGET ] && continue
          run_one cluster "$round" "$test" "$c" "$p" "$target" "${nreq[cluster.$test.$c.$p]}"
        done
      done
    done
  done
fi

# --- report -------------------------------------------------------------------

{
  for k in "${!nreq[@]}"; do echo "$k ${nreq[$k]}"; done
} | sort >"$work/nreq.txt"

export BENCH_DATE BENCH_CORES BENCH_CPU BENCH_ROUNDS BENCH_VERSIONS BENCH_CLIENTS BENCH_KEYSPACE
BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
BENCH_CORES=$cores
BENCH_CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
BENCH_ROUNDS=$ROUNDS
BENCH_VERSIONS="redis $(redis-server --version | awk '{print $3}' | sed 's/^v=//'), $(nutcracker -V 2>&1 | head -1 | awk '{print $NF}'), $("$ASTER_BIN" -V 2>&1 | head -1)"
BENCH_CLIENTS=$IDLE_CLIENTS
BENCH_KEYSPACE=$KEYSPACE

cat >"$work/report.py" <<'PYEOF'
# Turns bench.sh's raw results into the markdown report.
import os, statistics, sys
from collections import defaultdict

results, idle_file, nreq_file = sys.argv[1:4]
env = os.environ.get
rows = []
for line in open(results):
    f = line.rstrip("\n").split("\t")
    if len(f) != 10 or f[0] == "calib":
        continue
    kind, rnd, test, cfg, target = f[:5]
    rps, p50, p99, cpu, rss = float(f[5]), float(f[6]), float(f[7]), float(f[8]), int(f[9])
    rows.append(dict(kind=kind, round=int(rnd), test=test, cfg=cfg, target=target,
                     rps=rps, p50=p50, p99=p99, cpu=cpu, rss=rss))
nreq = dict(l.split() for l in open(nreq_file) if l.strip())
idle = [l.split("\t") for l in open(idle_file).read().splitlines() if l.strip()]

TESTS = ["GET", "SET", "MGET"]
CFGS = ["50/1", "50/16", "1000/1"]
NAMES = {"direct": "redis (direct)", "nutcracker": "twemproxy", "aster1": "aster thread=1",
         "aster2": "aster thread=2", "cluster": "cluster (direct)",
         "asterc": "aster cluster t=1"}

by = defaultdict(list)      # (kind, test, cfg, target) -> rows
for r in rows:
    by[(r["kind"], r["test"], r["cfg"], r["target"])].append(r)

def med(kind, test, cfg, target, field):
    rs = by.get((kind, test, cfg, target))
    return statistics.median(r[field] for r in rs) if rs else None

def spread(kind, test, cfg, target):
    rs = by.get((kind, test, cfg, target))
    if not rs or len(rs) < 2:
        return None
    v = [r["rps"] for r in rs]
    m = statistics.median(v)
    return (max(v) - min(v)) / m * 100 if m else None

def ratio(kind, test, cfg, a, b, field="rps", kb=None):
    """Median over rounds of a/b, both measured in the same round."""
    kb = kb or kind
    ra = {r["round"]: r[field] for r in by.get((kind, test, cfg, a), [])}
    rb = {r["round"]: r[field] for r in by.get((kb, test, cfg, b), [])}
    v = [ra[k] / rb[k] for k in ra if k in rb and rb[k] > 0]
    return statistics.median(v) if v else None

def fmt(v, spec):
    return "–" if v is None else format(v, spec)

def cfg_text(cfg):
    c, p = cfg.split("/")
    return f"-c {c} -P {p}"

out = []
w = out.append
w("## Latest run")
w("")
w("Generated by `scripts/bench.sh`; rerun it to replace this section.")
w("")
w(f"Measured {env('BENCH_DATE')} on {env('BENCH_CORES')} cores ({env('BENCH_CPU')}); "
  f"{env('BENCH_VERSIONS')}; {env('BENCH_ROUNDS')} interleaved rounds, medians shown.")
w("")
w("### Throughput, latency, CPU and memory (redis mode)")
w("")
w("| test | clients / pipeline | target | req/s | spread | p50 ms | p99 ms | CPU µs/req | RSS MB |")
w("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for test in TESTS:
    for cfg in CFGS:
        for t in ["direct", "nutcracker", "aster1", "aster2"]:
            if (("main", test, cfg, t)) not in by:
                continue
            sp = spread("main", test, cfg, t)
            rss = med("main", test, cfg, t, "rss")
            w(f"| {test} | {cfg_text(cfg)} | {NAMES[t]} | {fmt(med('main', test, cfg, t, 'rps'), ',.0f')} "
              f"| {fmt(sp, '.0f')}% | {fmt(med('main', test, cfg, t, 'p50'), '.3f')} "
              f"| {fmt(med('main', test, cfg, t, 'p99'), '.3f')} | {fmt(med('main', test, cfg, t, 'cpu'), '.2f')} "
              f"| {fmt(rss / 1024 if rss is not None else None, '.1f')} |")
w("")
w("`spread`: (max − min) / median of req/s over the rounds. `CPU µs/req` and `RSS` are those of the "
  "process under test: the proxy, or for `redis (direct)` the redis-server itself.")
w("")
w("### Ratios (median over rounds of the ratio within a round)")
w("")
w("| test | clients / pipeline | t1 / twemproxy req/s | t2 / twemproxy req/s | t2 / t1 req/s "
  "| t1 / direct req/s | t1 / twemproxy CPU per req | t2 / twemproxy CPU per req |")
w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for test in TESTS:
    for cfg in CFGS:
        r = [ratio("main", test, cfg, "aster1", "nutcracker"),
             ratio("main", test, cfg, "aster2", "nutcracker"),
             ratio("main", test, cfg, "aster2", "aster1"),
             ratio("main", test, cfg, "aster1", "direct"),
             ratio("main", test, cfg, "aster1", "nutcracker", "cpu"),
             ratio("main", test, cfg, "aster2", "nutcracker", "cpu")]
        w(f"| {test} | {cfg_text(cfg)} | " + " | ".join(fmt(x, ".2f") for x in r) + " |")
w("")

cluster = [k for k in by if k[0] == "cluster"]
if cluster:
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
                if ("cluster", test, cfg, t) not in by:
                    continue
                w(f"| {test} | {cfg_text(cfg)} | {NAMES[t] if t != 'aster1' else 'aster redis mode t=1'} "
                  f"| {fmt(med('cluster', test, cfg, t, 'rps'), ',.0f')} "
                  f"| {fmt(med('cluster', test, cfg, t, 'p50'), '.3f')} "
                  f"| {fmt(med('cluster', test, cfg, t, 'p99'), '.3f')} "
                  f"| {fmt(med('cluster', test, cfg, t, 'cpu'), '.2f')} |")
    w("")
    w("| test | clients / pipeline | aster cluster / aster redis mode req/s "
      "| aster cluster / aster redis mode CPU per req | aster cluster / direct cluster req/s |")
    w("| --- | --- | ---: | ---: | ---: |")
    for test in TESTS:
        for cfg in CFGS:
            if ("cluster", test, cfg, "asterc") not in by:
                continue
            w(f"| {test} | {cfg_text(cfg)} | {fmt(ratio('cluster', test, cfg, 'asterc', 'aster1'), '.2f')} "
              f"| {fmt(ratio('cluster', test, cfg, 'asterc', 'aster1', 'cpu'), '.2f')} "
              f"| {fmt(ratio('cluster', test, cfg, 'asterc', 'cluster'), '.2f')} |")
    w("")

if idle:
    w(f"### {int(env('BENCH_CLIENTS')):,} idle clients")
    w("")
    w("RSS of the proxy (fresh process, before any load) before the clients connect, with all of them "
      "connected, and after each has sent one PING and read the reply (connections still open).")
    w("")
    w("| proxy | RSS before | connected | after one PING each | per client (after PING) |")
    w("| --- | ---: | ---: | ---: | ---: |")
    for t, base, conn, after, held in idle:
        base, conn, after, held = int(base), int(conn), int(after), int(held)
        w(f"| {NAMES[t]} | {base / 1024:.1f} MB | {conn / 1024:.1f} MB | {after / 1024:.1f} MB "
          f"| {(after - base) * 1024 / max(held, 1):,.0f} B |")
    w("")

# --- targets ---
def verdict(cases, ok):
    """cases: [(label, value)]. Lists every case, marks the misses."""
    cases = [(k, v) for k, v in cases if v is not None]
    if not cases:
        return "not measured", "–"
    hits = sum(1 for _, v in cases if ok(v))
    text = ", ".join(f"{k} {v:.2f}" + ("" if ok(v) else " ✗") for k, v in cases)
    if hits == len(cases):
        return "**met**", text
    return (f"**not met** ({hits} of {len(cases)} cases)" if hits else "**not met**"), text

def short(test, cfg):
    c, p = cfg.split("/")
    return f"{test} c{c}" + (f"/P{p}" if p != "1" else "")

w("### Targets")
w("")
w("Same-round ratios, aster thread=1 unless said; ✗ marks a case that misses.")
w("")
w("| target | measured | verdict |")
w("| --- | --- | --- |")
rows_t = [
    ("req/s ≥ 1.3× twemproxy at pipeline 1", "main", "aster1", "nutcracker", "rps",
     [(t, c) for t in TESTS for c in ["50/1", "1000/1"]], lambda x: x >= 1.3),
    ("req/s ≥ 2× twemproxy at pipeline 16", "main", "aster1", "nutcracker", "rps",
     [(t, "50/16") for t in TESTS], lambda x: x >= 2.0),
    ("CPU per request ≤ 0.5× twemproxy's", "main", "aster1", "nutcracker", "cpu",
     [(t, c) for t in TESTS for c in CFGS], lambda x: x <= 0.5),
    ("thread=2 ahead of thread=1 (req/s)", "main", "aster2", "aster1", "rps",
     [(t, c) for t in TESTS for c in CFGS], lambda x: x > 1.0),
]
if cluster:
    rows_t.append(("cluster mode within 10% of redis mode (req/s, GET and SET)", "cluster", "asterc",
                   "aster1", "rps", [(t, c) for t in ["GET", "SET"] for c in ["50/1", "50/16"]],
                   lambda x: x >= 0.9))
    rows_t.append(("cluster mode within 10% of redis mode (req/s, MGET of 10 random keys)", "cluster",
                   "asterc", "aster1", "rps", [("MGET", c) for c in ["50/1", "50/16"]],
                   lambda x: x >= 0.9))
for label, kind, a, b, field, cases, ok in rows_t:
    v, m = verdict([(short(t, c), ratio(kind, t, c, a, b, field)) for t, c in cases], ok)
    w(f"| {label} | {m} | {v} |")
if idle:
    d = {t: int(after) - int(base) for t, base, conn, after, held in idle}
    if d.get("nutcracker", 0) > 0:
        cases = [(NAMES[t], d[t] / d["nutcracker"]) for t in ("aster1", "aster2") if t in d]
        v, m = verdict(cases, lambda x: x < 1.0)
        w(f"| {int(env('BENCH_CLIENTS')):,} idle clients cost less RSS than twemproxy's "
          f"(growth after one PING each, aster / twemproxy) | {m} | {v} |")
w("")

w("### Commands")
w("")
w("Each run (N chosen so a run lasts about the configured duration against twemproxy; "
  f"keys `key:000000000000`..`key:{int(env('BENCH_KEYSPACE')) - 1:012d}`, all prefilled, 3-byte values):")
w("")
w("```")
tests_args = {"GET": "-t get", "SET": "-t set", "MGET": "MGET " + " ".join(["key:__rand_int__"] * 10)}
for test in TESTS:
    for cfg in CFGS:
        c, p = cfg.split("/")
        n = nreq.get(f"main.{test}.{c}.{p}")
        if n:
            w(f"redis-benchmark -h 127.0.0.1 -p PORT -c {c} -P {p} -n {n} -r {env('BENCH_KEYSPACE')} --csv {tests_args[test]}")
for test in TESTS:
    for cfg in ["50/1", "50/16"]:
        c, p = cfg.split("/")
        n = nreq.get(f"cluster.{test}.{c}.{p}")
        if n:
            w(f"redis-benchmark -h 127.0.0.1 -p PORT [--cluster] -c {c} -P {p} -n {n} -r {env('BENCH_KEYSPACE')} --csv {tests_args[test]}")
w("```")
w("")
w("The servers: three `redis-server --save '' --appendonly no` on loopback; twemproxy with "
  "`hash: fnv1a_64`, `distribution: ketama`, `redis: true`, `auto_eject_hosts: false` and the three "
  "servers as `127.0.0.1:PORT:1 redisN`; aster with the same servers and aliases, `thread = 1` or "
  "`thread = 2`, `hash_tag = \"\"`, every other option at its default (so health pings and the slowlog "
  "timer are on). `redis (direct)` is the first of the three servers alone.")
w("")
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
w(f"- **The machine is small and shared**: {env('BENCH_CORES')} cores run redis-benchmark (one thread, "
  "often the bottleneck for `redis (direct)` and at `-P 16`), the proxy and three redis-servers at "
  "once, and other engineers' builds and tests run beside them. Absolute numbers move by 10-50% "
  "or more between rounds and runs (see `spread`); same-round ratios move much less. A proxy that uses less CPU per "
  "request leaves more of the two cores to redis-benchmark and the servers, which is why CPU "
  "efficiency shows up directly as throughput here. thread=2 can only be ahead of thread=1 when a "
  "core is idle, which on 2 cores under this load it rarely is.")
print("\n".join(out))
PYEOF
python3 "$work/report.py" "$results" "$idle" "$work/nreq.txt" >"$work/report.md" || {
  KEEP_WORK=1
  die "report failed; raw results in $results"
}
echo
cat "$work/report.md"

# docs/benchmarks.md: only the part between the markers is replaced, so notes
# written below them (the profile) survive a rerun.
if [ -n "$OUT" ]; then
  python3 - "$OUT" "$work/report.md" <<'PYEOF'
import os, sys
out, rep = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
begin, end = "<!-- bench.sh:begin -->", "<!-- bench.sh:end -->"
block = f"{begin}\n{rep}\n{end}"
old = open(out).read() if os.path.exists(out) else ""
if begin in old and end in old:
    new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
else:
    new = "# Benchmarks\n\n" + block + "\n"
open(out, "w").write(new)
PYEOF
  echo
  echo "== written to $OUT"
fi
