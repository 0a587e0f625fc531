#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks formatting and lints,
# then runs the unit and integration tests (real redis-server processes).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v nutcracker >/dev/null || need+=(nutcracker)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
  else
    sudo apt-get update -q
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
  fi
fi

# redis-py 5+ for the client-library integration tests (integration/client_libraries.rs).
if command -v python3 >/dev/null && ! python3 -c 'import redis' 2>/dev/null; then
  for attempt in 1 2 3; do
    python3 -m pip install --quiet 'redis>=5' && break
    [ "$attempt" = 3 ] && exit 1
    sleep 5
  done
fi

# Every file outside the build directories, ignored ones included, with its
# size and mtime: the tests may write only under temporary directories, so
# this must be the same after the run (a log appended to run/ shows too).
# (grep finds nothing in a fresh clone and exits 1: under pipefail that must
# not end the script.)
tree_state() {
  git status --porcelain --ignored --untracked-files=all \
    | sed 's/^...//' \
    | { grep -v -e '^target/' -e '^fuzz/target/' || true; } \
    | sort \
    | while IFS= read -r f; do echo "$f $(stat -c '%s %Y' "$f" 2>/dev/null)"; done
}
before="$(tree_state)"

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo build --release
cargo test --release --all-targets

after="$(tree_state)"
if [ "$before" != "$after" ]; then
  echo "test.sh: the test run changed the repository tree (tests must write only under temp dirs):" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  exit 1
fi
