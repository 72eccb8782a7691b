#!/usr/bin/env bash
# Starts and stops the real outside services the tests use, on ephemeral loopback ports with
# throw-away data directories (DESIGN: tests; ../shared/services/README.md has the facts).
#   scripts/services.sh start   # prints nothing; writes .services/env (export lines)
#   scripts/services.sh stop
# MongoDB: SecantusDB (MongoDB wire protocol) from PyPI in .venv-services, since Debian has no mongod.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
state=.services
venv=.venv-services
secantus_version='SecantusDB==0.7.0b3'

tcp_ready() {
  python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5); s.close()' "$1" 2>/dev/null
}

start_mongodb() {
  if [ ! -x "$venv/bin/secantusd-py" ]; then
    echo "installing $secantus_version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$secantus_version"
  fi
  local port dir
  port=$(free_port)
  dir="$state/mongodb-data"
  rm -rf "$dir" && mkdir -p "$dir"
  # --sync-on-commit: an acknowledged write survives a kill (the message store promises that).
  "$venv/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path "$dir" --standalone --sync-on-commit \
    > "$state/mongodb.log" 2>&1 &
  echo $! > "$state/mongodb.pid"
  for _ in $(seq 1 300); do
    if tcp_ready "$port"; then
      echo "export TERN_TEST_MONGODB_URI='mongodb://127.0.0.1:$port/?serverSelectionTimeoutMS=2000&retryWrites=false'" >> "$state/env"
      # Tests that stop and restart a server of their own (MongoDB down mid-test) start it with this.
      echo "export TERN_TEST_SECANTUSD='$PWD/$venv/bin/secantusd-py'" >> "$state/env"
      return 0
    fi
    kill -0 "$(cat "$state/mongodb.pid")" 2>/dev/null || { cat "$state/mongodb.log" >&2; echo "MongoDB test server exited" >&2; return 1; }
    sleep 0.1
  done
  echo "MongoDB test server did not open port $port" >&2
  return 1
}

stop_pidfile() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

case "${1:-}" in
  start)
    "$0" stop
    mkdir -p "$state"
    : > "$state/env"
    start_mongodb
    ;;
  stop)
    stop_pidfile "$state/mongodb.pid"
    rm -f "$state/env"
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
