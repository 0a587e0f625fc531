#!/usr/bin/env bash
# Reloads the aster-proxy started by scripts/start.sh: checks the config it
# runs with (-t), then sends SIGHUP. The proxy re-reads the file, applies it
# without dropping clients, and also reopens its log file. An invalid file is
# refused here, and would be refused (and logged) by the proxy too.
# Environment: ASTER_BIN and ASTER_RUN_DIR, as for start.sh.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pid_file="${ASTER_RUN_DIR:-$root/run}/aster.pid"
bin="${ASTER_BIN:-$root/target/release/aster-proxy}"

pid="$(cat "$pid_file" 2>/dev/null || true)"
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null \
  || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q aster-proxy; then
  echo "reload.sh: aster-proxy is not running (no live $pid_file)" >&2
  exit 1
fi
# The config is the argument after -c/--config on the running command line.
config="$(tr '\0' '\n' <"/proc/$pid/cmdline" | awk 'prev ~ /^(-c|--config)$/ {print; exit} {prev=$0}')"
if [ -n "$config" ] && [ -x "$bin" ]; then
  "$bin" -t -c "$config" >/dev/null || {
    echo "reload.sh: $config is not valid; not reloading" >&2
    "$bin" -t -c "$config" >&2 || true
    exit 1
  }
fi
kill -HUP "$pid"
echo "aster-proxy (pid $pid) reloading ${config:-its configuration}"
