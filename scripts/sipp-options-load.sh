#!/usr/bin/env bash
# SIPp sends OPTIONS over UDP to a freshly started tern at RATE per second for DURATION seconds and
# must see zero failures. Loopback only; bounded in count and time.
#   TERN=path/to/tern RATE=2000 DURATION=10 scripts/sipp-options-load.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
TERN=${TERN:-.build/debug/tern}
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
total=$((RATE * DURATION))
work=$(mktemp -d -t tern-sipp.XXXXXX)
trap 'stop_tern; rm -rf "$work" "${TERN_LOG:-}"' EXIT

printf 'storage:\n  sqlite_path: "%s"\n' "$work/tern.sqlite" > "$work/tern.yaml"
start_tern "$TERN" --config "$work/tern.yaml" --listen udp:127.0.0.1:0 --log-level info
port=$(tern_port udp)
cpu_before=$(cpu_seconds "$TERN_PID")
sipp_port=$(free_port)
status=0
( cd "$work" && timeout $((DURATION + 60)) sipp 127.0.0.1:"$port" -sf "$here/sipp/options.xml" \
    -t u1 -i 127.0.0.1 -p "$sipp_port" -m "$total" -r "$RATE" -rp 1000 -l $((RATE * 5)) \
    -nostdin -trace_stat -stf stats.csv -trace_err >sipp.out 2>&1 ) || status=$?
cpu_after=$(cpu_seconds "$TERN_PID")
kill -0 "$TERN_PID" || { echo "tern died during the load" >&2; exit 1; }
last=$(tail -n 1 "$work/stats.csv")
header=$(head -n 1 "$work/stats.csv")
col() { echo "$header" | tr ';' '\n' | grep -n -x "$1" | cut -d: -f1; }
ok=$(echo "$last" | cut -d';' -f"$(col SuccessfulCall\(C\))")
failed=$(echo "$last" | cut -d';' -f"$(col FailedCall\(C\))")
retrans=$(echo "$last" | cut -d';' -f"$(col Retransmissions\(C\))")
cpu=$(awk -v a="$cpu_before" -v b="$cpu_after" 'BEGIN { printf "%.2f", b - a }')
per_op=$(awk -v c="$cpu" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f", c * 1e6 / n; else print "n/a" }')
echo "sipp OPTIONS over UDP: rate=$RATE/s duration=${DURATION}s calls=$total successful=$ok failed=$failed retransmissions=$retrans tern_cpu=${cpu}s (${per_op} us/op)"
if [ "$status" -ne 0 ] || [ "$failed" != "0" ] || [ "$ok" != "$total" ]; then
  echo "FAILED: sipp exit $status" >&2
  tail -n 20 "$work"/*errors.log 2>/dev/null >&2 || true
  exit 1
fi
