#!/usr/bin/env bash
# Benchmarks aster against twemproxy (nutcracker) and direct Redis with
# redis-benchmark, and writes the table of medians to docs/benchmarks.md.
#
#   scripts/bench.sh        # about 12 minutes; DURATION=1 ROUNDS=1: about 3
#
# The work is done by two programs: the driver benches/e2e (starts every
# server and proxy through the integration harness, runs the load, writes raw
# per-run results to a temp work dir, stops every process it started) and
# the report generator scripts/bench/report.py. This script checks the tools,
# builds, and runs the two. Knobs (environment): DURATION=3, ROUNDS=3,
# KEYSPACE=100000, IDLE_CLIENTS=10000, SKIP_IDLE=1, SKIP_LARGE=1 (no large
# replies: LRANGE of 1M elements, GET of 10 MiB), SKIP_CLUSTER=1 (read by the
# driver); OUT=docs/benchmarks.md (OUT= : write nothing), NO_BUILD=1,
# ASTER_BIN=path (the proxy under test), KEEP_WORK=1 (keep the work dir with
# the raw results and the logs). See docs/benchmarks.md.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
OUT=${OUT-docs/benchmarks.md}
target="${CARGO_TARGET_DIR:-$root/target}"
export ASTER_PROXY_BIN="${ASTER_BIN:-$target/release/aster-proxy}"

die() {
  echo "bench.sh: $*" >&2
  exit 1
}

for tool in redis-server redis-cli redis-benchmark nutcracker python3; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install redis-server redis-tools nutcracker python3)"
done

if [ -z "${NO_BUILD:-}" ]; then
  echo "== cargo bench --bench e2e --no-run (builds the proxy and the driver)"
  cargo bench --bench e2e --no-run --quiet || die "build failed"
fi
# The newest driver build (cargo names it e2e-HASH).
driver=$(find "$target/release/deps" -maxdepth 1 -type f -name 'e2e-*' ! -name '*.d' -perm -u+x \
  -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-)
[ -n "$driver" ] || die "no e2e driver in $target/release/deps (run without NO_BUILD once)"
[ -x "$ASTER_PROXY_BIN" ] || die "no aster binary at $ASTER_PROXY_BIN"

work="$(mktemp -d /tmp/aster-bench.XXXXXX)"
cleanup() {
  if [ -n "${KEEP_WORK:-}" ]; then echo "bench.sh: raw results kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# TMPDIR: the harness's own temp dirs go inside the work dir too.
TMPDIR="$work" "$driver" --bench --work "$work"
rc=$?
[ $rc -eq 0 ] || { echo "bench.sh: the driver failed (exit $rc)" >&2; exit $rc; }
echo
python3 scripts/bench/report.py "$work" ${OUT:+--out "$OUT"} || {
  KEEP_WORK=1
  die "report failed; raw results in $work"
}
