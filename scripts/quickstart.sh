#!/usr/bin/env bash
# Try aster in one command: three redis-servers on 127.0.0.1:7001-7003 and a
# three-node Redis Cluster on 127.0.0.1:7101-7103 (data under run/), a release
# build, and the proxy with conf/default.toml: sharding on 127.0.0.1:7000,
# cluster mode on 127.0.0.1:7100. Safe to run again: what runs is left alone.
#
#   scripts/quickstart.sh          start everything
#   scripts/quickstart.sh stop     stop the proxy and the three servers
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="$root/run"
ports=(7001 7002 7003)
cluster_ports=(7101 7102 7103)
config="$root/conf/default.toml"

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "quickstart.sh: need root (or sudo) to run: $*" >&2
    exit 1
  fi
}

install_redis() {
  local need=()
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v redis-cli >/dev/null || need+=(redis-tools)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
  fi
}

ping_ok() {
  [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null || true)" = PONG ]
}

start_servers() {
  for port in "${ports[@]}"; do
    local dir="$run_dir/redis-$port"
    if ping_ok "$port"; then
      echo "redis-server on 127.0.0.1:$port already answers"
      continue
    fi
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
      --save "" --appendonly no
    local ok=
    for _ in $(seq 1 50); do
      if ping_ok "$port"; then
        ok=1
        break
      fi
      sleep 0.1
    done
    if [ -z "$ok" ]; then
      echo "quickstart.sh: redis-server on port $port did not start; see $dir/redis.log" >&2
      exit 1
    fi
    echo "redis-server started on 127.0.0.1:$port"
  done
}

# A three-master cluster without replicas: enough to see cluster mode work.
start_cluster() {
  local fresh=
  for port in "${cluster_ports[@]}"; do
    local dir="$run_dir/cluster-$port"
    if ping_ok "$port"; then
      continue
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
      --save "" --appendonly no --cluster-enabled yes \
      --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 2000
    for _ in $(seq 1 50); do
      ping_ok "$port" && break
      sleep 0.1
    done
    ping_ok "$port" || { echo "quickstart.sh: cluster node $port did not start; see $dir/redis.log" >&2; exit 1; }
    fresh=1
  done
  if [ -n "$fresh" ] || ! redis-cli -p "${cluster_ports[0]}" cluster info | grep -q 'cluster_state:ok'; then
    local nodes=()
    for port in "${cluster_ports[@]}"; do nodes+=("127.0.0.1:$port"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-yes >"$run_dir/cluster-create.log" 2>&1 || {
      echo "quickstart.sh: cluster create failed; see $run_dir/cluster-create.log" >&2
      exit 1
    }
  fi
  for _ in $(seq 1 100); do
    redis-cli -p "${cluster_ports[0]}" cluster info | grep -q 'cluster_state:ok' && break
    sleep 0.1
  done
  echo "Redis Cluster on 127.0.0.1:${cluster_ports[0]}-${cluster_ports[2]}"
}

stop_servers() {
  for port in "${cluster_ports[@]}"; do
    local pid_file="$run_dir/cluster-$port/redis.pid"
    [ -f "$pid_file" ] || continue
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    rm -f "$pid_file"
    echo "cluster node on port $port stopped"
  done
  for port in "${ports[@]}"; do
    local pid_file="$run_dir/redis-$port/redis.pid"
    if [ ! -f "$pid_file" ]; then
      echo "redis-server on port $port: not started by quickstart"
      continue
    fi
    local pid
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      echo "redis-server on port $port stopped"
    else
      echo "redis-server on port $port: not running"
    fi
    rm -f "$pid_file"
  done
}

case "${1:-start}" in
  start)
    install_redis
    if ! command -v cargo >/dev/null; then
      echo "quickstart.sh: cargo not found: install Rust (https://rustup.rs) first" >&2
      exit 1
    fi
    if [ ! -f "$config" ]; then
      echo "quickstart.sh: $config is missing" >&2
      exit 1
    fi
    start_servers
    start_cluster
    (cd "$root" && cargo build --release)
    if [ -f "$run_dir/aster.pid" ] && kill -0 "$(cat "$run_dir/aster.pid" 2>/dev/null || echo x)" 2>/dev/null; then
      echo "aster-proxy already running (pid $(cat "$run_dir/aster.pid")); restart it with scripts/stop.sh && scripts/start.sh"
    else
      "$root/scripts/start.sh" "$config"
    fi
    echo
    echo "Try it:"
    echo "  redis-cli -p 7000 set hello world"
    echo "  redis-cli -p 7000 get hello"
    echo "  redis-cli -p 7000 mget hello a b c"
    echo "  redis-cli -p 7100 set hello cluster    # cluster mode, no -c needed"
    echo "  redis-cli -p 7100 mget hello a b c"
    echo "Log: $run_dir/aster.log"
    echo "Stop everything: scripts/quickstart.sh stop"
    ;;
  stop)
    "$root/scripts/stop.sh"
    stop_servers
    ;;
  *)
    echo "usage: $0 [start|stop]" >&2
    exit 2
    ;;
esac
