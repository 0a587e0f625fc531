#!/usr/bin/env bash
# Starts aster-proxy in the background.
#
#   scripts/start.sh [CONFIG]      (default: conf/default.toml)
#
# Builds target/release/aster-proxy first if it is missing, checks the config
# with `-t`, logs to RUN_DIR/aster.log, writes the pid to RUN_DIR/aster.pid, and
# reports success only once the process is alive and its listen ports accept.
# Environment: ASTER_BIN overrides the binary; ASTER_RUN_DIR the run directory
# (default: run/ in the repo). stop.sh and reload.sh take the same variables.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="${ASTER_RUN_DIR:-$root/run}"
pid_file="$run_dir/aster.pid"
log_file="$run_dir/aster.log"
bin="${ASTER_BIN:-$root/target/release/aster-proxy}"

config="${1:-$root/conf/default.toml}"
if [ ! -f "$config" ]; then
  echo "start.sh: config file not found: $config" >&2
  exit 1
fi
# Absolute, since the caller's cwd may differ from ours.
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"

# Is the pid in the pid file a live aster-proxy?
running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid="$(cat "$pid_file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q aster-proxy || return 1
  echo "$pid"
}

if pid="$(running_pid)"; then
  echo "start.sh: aster-proxy is already running (pid $pid); scripts/stop.sh stops it" >&2
  exit 1
fi
rm -f "$pid_file"

if [ ! -x "$bin" ]; then
  echo "start.sh: $bin missing, building it (cargo build --release)"
  (cd "$root" && cargo build --release)
fi

if ! "$bin" -t -c "$config"; then
  echo "start.sh: bad config: $config" >&2
  exit 1
fi

mkdir -p "$run_dir"
echo "---- $(date '+%Y-%m-%d %H:%M:%S') start: $bin -c $config" >>"$log_file"
# setsid: the proxy does not die with this terminal or receive its Ctrl-C.
if command -v setsid >/dev/null; then
  setsid "$bin" -c "$config" >>"$log_file" 2>&1 </dev/null &
else
  "$bin" -c "$config" >>"$log_file" 2>&1 </dev/null &
fi
pid=$!
echo "$pid" >"$pid_file"

fail() {
  echo "start.sh: $1; last lines of $log_file:" >&2
  tail -n 20 "$log_file" >&2 || true
  rm -f "$pid_file"
  exit 1
}

# Alive after a moment?
for _ in $(seq 1 10); do
  kill -0 "$pid" 2>/dev/null || fail "aster-proxy exited during startup"
  sleep 0.1
done

# Every listen address of the config accepts (0.0.0.0 and [::] checked on loopback):
# TOML's `listen_addr = "..."` and nutcracker YAML's `listen: ...`; a unix
# socket path (`/path [mode]`) is connected to as such.
listen_addrs="$(sed -n \
  -e 's/^[[:space:]]*listen_addr[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
  -e "s/^[[:space:]]*listen:[[:space:]]*[\"']\{0,1\}\([^\"'#]*\).*/\1/p" \
  "$config")"

# Whether something accepts on unix socket $1 (a leftover file from a dead
# process does not: connecting to it is refused).
unix_accepts() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect(sys.argv[1])' "$1" 2>/dev/null
  else
    [ -S "$1" ]
  fi
}

while read -r addr _mode; do
  [ -n "$addr" ] || continue
  host="${addr%:*}"
  port="${addr##*:}"
  host="${host#[}"
  host="${host%]}"
  case "$host" in 0.0.0.0 | "" | "*") host=127.0.0.1 ;; ::) host=::1 ;; esac
  ok=
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || fail "aster-proxy exited during startup"
    case "$addr" in
      /*) unix_accepts "$addr" && ok=1 ;;
      *) (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && ok=1 ;;
    esac
    [ -n "$ok" ] && break
    sleep 0.1
  done
  if [ -z "$ok" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    fail "aster-proxy does not accept on $addr after 10 s (stopped it)"
  fi
done <<<"$listen_addrs"

echo "aster-proxy started (pid $pid, config $config, log $log_file)"
