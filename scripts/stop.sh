#!/usr/bin/env bash
# Stops the aster-proxy started by scripts/start.sh: SIGTERM by pid file, waits
# up to 10 s for it to drain and exit (then SIGKILL), removes the pid file.
# Environment: ASTER_RUN_DIR, the run directory start.sh used (default run/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pid_file="${ASTER_RUN_DIR:-$root/run}/aster.pid"

if [ ! -f "$pid_file" ]; then
  echo "aster-proxy is not running (no $pid_file)"
  exit 0
fi
pid="$(cat "$pid_file" 2>/dev/null || true)"
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null \
  || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q aster-proxy; then
  echo "aster-proxy is not running (stale pid file removed)"
  rm -f "$pid_file"
  exit 0
fi

# Gone, or a zombie waiting for its parent to reap it: either way it has exited.
exited() {
  ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

kill -TERM "$pid"
for _ in $(seq 1 100); do
  if exited "$pid"; then
    rm -f "$pid_file"
    echo "aster-proxy stopped (pid $pid)"
    exit 0
  fi
  sleep 0.1
done

echo "stop.sh: aster-proxy (pid $pid) still running 10 s after SIGTERM; sending SIGKILL" >&2
kill -KILL "$pid" 2>/dev/null || true
for _ in $(seq 1 20); do
  exited "$pid" && break
  sleep 0.1
done
rm -f "$pid_file"
echo "aster-proxy killed (pid $pid)"
