#!/usr/bin/env bash
# `make bench`: heap allocations per request in Tern, counted exactly (scripts/bench/malloc_count.c,
# preloaded), with one request in flight at a time (scripts/bench/closed_loop.py):
#   register  a REGISTER of a new user (a binding added) and its 200 OK
#   message   a MESSAGE proxied to a registered contact, with the contact's 200 OK relayed back
# Unlike CPU time on a shared machine, the count does not move with the noise, so a change to the
# request path shows here at once. Each scenario warms up with WARMUP requests, then counts COUNT.
#   TERN=.build/release/tern COUNT=1000 WARMUP=300 scripts/alloc-count.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
TERN=${TERN:-.build/release/tern}
COUNT=${COUNT:-1000}
WARMUP=${WARMUP:-300}
work=$(mktemp -d -t tern-alloc.XXXXXX)
trap 'stop_tern' EXIT
cc -shared -fPIC -O2 -o "$work/malloc_count.so" "$here/bench/malloc_count.c" || exit 1
printf 'threads: 2\nlog:\n  level: notice\nstorage:\n  location: memory\n  sqlite_path: ""\n' > "$work/tern.yaml"

# The count the preloaded counter reports on SIGUSR2, once it is in the log.
allocations_now() {
  local before after
  before=$(grep -c '^allocations=' "$TERN_LOG")
  kill -USR2 "$TERN_PID"
  for _ in $(seq 1 100); do
    after=$(grep -c '^allocations=' "$TERN_LOG")
    [ "$after" -gt "$before" ] && break
    sleep 0.02
  done
  grep '^allocations=' "$TERN_LOG" | tail -n 1 | cut -d= -f2
}

status=0
echo "scenario  requests  allocations_per_request"
for scenario in register message; do
  LD_PRELOAD="$work/malloc_count.so" start_tern "$TERN" --config "$work/tern.yaml" --listen udp:127.0.0.1:0 || exit 1
  port=$(tern_port udp)
  if ! python3 "$here/bench/closed_loop.py" "$scenario" 127.0.0.1 "$port" "$WARMUP" warm; then status=1; stop_tern; continue; fi
  first=$(allocations_now)
  if ! python3 "$here/bench/closed_loop.py" "$scenario" 127.0.0.1 "$port" "$COUNT" count; then status=1; stop_tern; continue; fi
  last=$(allocations_now)
  stop_tern
  awk -v s="$scenario" -v n="$COUNT" -v a="$first" -v b="$last" 'BEGIN { printf "%-9s %-9d %.1f\n", s, n, (b - a) / n }'
done
exit $status
