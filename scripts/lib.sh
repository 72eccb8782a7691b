# shellcheck shell=bash
# Helpers shared by the project's scripts. Source it.

# A free loopback port for a peer that cannot take port 0 (SIPp).
free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts tern in the background with the given arguments; sets TERN_PID and TERN_LOG.
# Waits until every listener is logged (tern logs "listening listener=PROTO:HOST:PORT").
start_tern() {
  local binary=$1; shift
  TERN_LOG=$(mktemp -t tern-log.XXXXXX)
  # A free management port each, unless the caller chose one: scripts may run beside other terns.
  local management=(--management 127.0.0.1:0) arg
  for arg in "$@"; do [ "$arg" = "--management" ] && management=(); done
  "$binary" "$@" "${management[@]}" 2> "$TERN_LOG" &
  TERN_PID=$!
  local expected=0
  for arg in "$@"; do [ "$arg" = "--listen" ] && expected=$((expected + 1)); done
  [ "$expected" -gt 0 ] || expected=1
  for _ in $(seq 1 200); do
    if [ "$(grep -c 'listener=' "$TERN_LOG" || true)" -ge "$expected" ]; then return 0; fi
    if ! kill -0 "$TERN_PID" 2>/dev/null; then cat "$TERN_LOG" >&2; return 1; fi
    sleep 0.05
  done
  echo "tern did not start" >&2; cat "$TERN_LOG" >&2
  return 1
}

# The real port of the first listener of a transport, from tern's log.
tern_port() {
  grep -o "listener=$1:[^ ]*" "$TERN_LOG" | head -n 1 | sed 's/.*://'
}

# The management API's port, from tern's log.
tern_management_port() {
  grep -o 'address=http://[^ ]*' "$TERN_LOG" | head -n 1 | sed 's/.*://'
}

stop_tern() {
  [ -n "${TERN_PID:-}" ] || return 0
  kill -TERM "$TERN_PID" 2>/dev/null || true
  wait "$TERN_PID" 2>/dev/null || true
  TERN_PID=
}

# CPU seconds (user+system) a process has used so far, from /proc.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# Starts the test services (scripts/services.sh) unless the caller already has them: the variable
# named by $1 (e.g. TERN_TEST_AMQP_URI) is set, or services a developer started are running (their
# .services/env names an address that answers; `services.sh start` would restart them, and the
# exit trap stop them under the developer's tests). Loads their environment. Pair with
# stop_started_services in the caller's exit trap.
ensure_services() {
  local scripts hostport
  scripts=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  [ -n "${!1:-}" ] && return 0
  if [ -s "$scripts/../.services/env" ]; then
    # shellcheck disable=SC1091
    . "$scripts/../.services/env"
    hostport=$(printf '%s' "${!1:-}" | sed -E 's#^[a-z]+://([^@/]*@)?([^/?]+).*#\2#')
    if [ -n "$hostport" ] && (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null; then return 0; fi
  fi
  "$scripts/services.sh" start > /dev/null || return 1
  STARTED_SERVICES=1
  # shellcheck disable=SC1091
  . "$scripts/../.services/env"
}

stop_started_services() {
  [ -n "${STARTED_SERVICES:-}" ] || return 0
  "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/services.sh" stop
  STARTED_SERVICES=
}
