#!/usr/bin/env bash
# `make bench`, the event bus: the same REGISTER load (distinct users, each REGISTER one
# `registration.added` event) against Tern without and then with the bus publishing to the
# RabbitMQ test broker with confirms. Prints Tern's CPU per REGISTER and p99 for both, the ratio,
# and how many events were published and confirmed per second. The machine is shared and noisy:
# the two modes alternate ROUNDS times and the medians are compared.
#   TERN=.build/release/tern USERS=30000 RATE=5500 ROUNDS=3 QUEUE=none|durable LINGER=ms scripts/bench-events.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
TERN=${TERN:-.build/release/tern}
USERS=${USERS:-30000}
# 5,500 REGISTERs a second: SIPp falls short of its rate (5,300 gave 4,930 events/s), and the target is 5,000 events/s.
RATE=${RATE:-5500}
ROUNDS=${ROUNDS:-3}
# `durable`: a consumer's durable queue is bound to every event (scripts/bench/event_queue.py), so
# the broker stores each one before confirming it, as it does once applications listen. `none`:
# nothing is bound, events are confirmed and dropped (the broker then confirms them one by one).
QUEUE=${QUEUE:-none}
work=$(mktemp -d -t tern-bench-events.XXXXXX)
cleanup() {
  stop_tern
  stop_started_services
}
trap cleanup EXIT
ensure_services TERN_TEST_AMQP_URI || exit 1
# Microsecond response times: SIPp reads a coarse clock (see scripts/bench/fine_clock.c).
preload=
if cc -shared -fPIC -O2 -o "$work/fine_clock.so" "$here/bench/fine_clock.c" -ldl 2>/dev/null; then preload="$work/fine_clock.so"; fi
{ echo SEQUENTIAL; for i in $(seq -w 1 "$USERS"); do echo "user$i;pw"; done; } > "$work/users.csv"
lines=()
# CPU seconds of the SIP event-loop threads (SwiftNIO names them NIO-ELT-…): what SIP itself costs,
# without the publisher thread.
sip_thread_cpu() {
  local total=0 task
  for task in /proc/"$1"/task/*; do
    case "$(cat "$task/comm" 2>/dev/null)" in
      NIO-ELT*) total=$(awk -v t="$total" '{ printf "%.2f", t + ($14 + $15) / 100 }' "$task/stat") ;;
    esac
  done
  echo "$total"
}
# CPU seconds of tern's threads with this name (the publisher is tern-amqp).
thread_cpu() {
  local total=0 task
  for task in /proc/"$1"/task/*; do
    [ "$(cat "$task/comm" 2>/dev/null)" = "$2" ] || continue
    total=$(awk -v t="$total" '{ printf "%.2f", t + ($14 + $15) / 100 }' "$task/stat")
  done
  echo "$total"
}
for round in $(seq 1 "$ROUNDS"); do
for mode in without with; do
  dir="$work/$mode-$round"
  mkdir -p "$dir"
  {
    printf 'threads: 2\nlog:\n  level: notice\nstorage:\n  location: memory\n  sqlite_path: ""\n'
    [ "$mode" = with ] && printf 'events:\n  brokers: ["%s"]\n  exchange: tern.bench.%s\n' "$TERN_TEST_AMQP_URI" "$$"
    [ "$mode" = with ] && [ -n "${LINGER:-}" ] && printf '  linger_ms: %s\n' "$LINGER"
  } > "$dir/tern.yaml"
  queue="tern.bench.events.$$"
  if [ "$mode" = with ] && [ "$QUEUE" = durable ]; then
    "${TERN_TEST_PYTHON:-python3}" "$here/bench/event_queue.py" bind "$TERN_TEST_AMQP_URI" "tern.bench.$$" "$queue" || exit 1
  fi
  start_tern "$TERN" --config "$dir/tern.yaml" --listen udp:127.0.0.1:0 || exit 1
  port=$(tern_port udp)
  cpu0=$(cpu_seconds "$TERN_PID")
  sip0=$(sip_thread_cpu "$TERN_PID")
  t0=$(date +%s.%N)
  ( cd "$dir" && LD_PRELOAD=$preload timeout $((USERS / RATE + 60)) sipp "127.0.0.1:$port" -sf "$here/sipp/register.xml" -t u1 -i 127.0.0.1 -p "$(free_port)" \
      -nostdin -key domain "127.0.0.1:$port" -inf "$work/users.csv" -m "$USERS" -r "$RATE" -rp 1000 -l $((RATE * 10)) \
      -buff_size 4194304 -trace_stat -stf stat.csv -trace_rtt -rtt_freq 1 > sipp.out 2>&1 )
  t1=$(date +%s.%N)
  sleep 0.5
  cpu1=$(cpu_seconds "$TERN_PID")
  sip1=$(sip_thread_cpu "$TERN_PID")
  publisher_cpu=$(thread_cpu "$TERN_PID" tern-amqp)
  stop_tern
  queued=""
  if [ "$mode" = with ] && [ "$QUEUE" = durable ]; then
    queued=$("${TERN_TEST_PYTHON:-python3}" "$here/bench/event_queue.py" delete "$TERN_TEST_AMQP_URI" "tern.bench.$$" "$queue")
  fi
  stats=$(python3 - "$dir" <<'PY'
import csv, glob, sys
d = sys.argv[1]
rows = list(csv.reader(open(d + "/stat.csv"), delimiter=";"))
head, last = rows[0], rows[-1]
ok, failed = int(last[head.index("SuccessfulCall(C)")]), int(last[head.index("FailedCall(C)")])
times = sorted(float(p[1]) for f in glob.glob(d + "/*_rtt.csv") for p in (l.strip().split(";") for l in open(f)) if len(p) >= 3 and p[1].replace(".", "", 1).isdigit())
p99 = times[min(len(times) - 1, int(len(times) * 0.99))] if times else float("nan")
print(ok, failed, "%.2f" % p99)
PY
)
  read -r ok failed p99 <<< "$stats"
  cpu_per=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$ok" 'BEGIN { printf "%.1f", (b - a) * 1e6 / (n > 0 ? n : 1) }')
  sip_per=$(awk -v a="$sip0" -v b="$sip1" -v n="$ok" 'BEGIN { printf "%.1f", (b - a) * 1e6 / (n > 0 ? n : 1) }')
  seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  bus=""
  if [ "$mode" = with ]; then
    published=$(grep -o 'published=[0-9]*' "$TERN_LOG" 2>/dev/null | tail -1 | cut -d= -f2)
    confirmed=$(grep -o 'confirmed=[0-9]*' "$TERN_LOG" 2>/dev/null | tail -1 | cut -d= -f2)
    dropped=$(grep -o 'dropped=[0-9]*' "$TERN_LOG" 2>/dev/null | tail -1 | cut -d= -f2)
    bus=$(awk -v p="${published:-0}" -v c="${confirmed:-0}" -v d="${dropped:-0}" -v s="$seconds" -v t="$publisher_cpu" \
      'BEGIN { printf "; events published %d, confirmed %d (%.0f/s over the load), dropped %d; publisher thread %.1f us per event", p, c, c / s, d, t * 1e6 / (c > 0 ? c : 1) }')
    [ -n "$queued" ] && bus="$bus; $queued in the consumer's queue"
  fi
  lines+=("round $round, $mode bus: $ok of $USERS REGISTERs ($failed failed) in ${seconds}s, Tern CPU $cpu_per us per REGISTER (SIP loops $sip_per), p99 $p99 ms$bus")
  echo "$cpu_per" >> "$work/$mode.cpu"
  echo "$sip_per" >> "$work/$mode.sip"
  echo "$p99" >> "$work/$mode.p99"
done
done
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "Event bus cost (REGISTER at $RATE/s, each one event; queue: $QUEUE; $ROUNDS rounds, alternating):"
for line in "${lines[@]}"; do echo "  $line"; done
awk -v a="$(median "$work/without.cpu")" -v b="$(median "$work/with.cpu")" -v pa="$(median "$work/without.p99")" -v pb="$(median "$work/with.p99")" \
  'BEGIN { printf "  medians: CPU per REGISTER %.1f us without, %.1f us with the bus: ratio %.2f (target <= 1.10); p99 %.2f ms without, %.2f ms with\n", a, b, b / a, pa, pb }'
awk -v a="$(median "$work/without.sip")" -v b="$(median "$work/with.sip")" \
  'BEGIN { printf "  SIP event loops alone (the publisher thread left out): %.1f us without, %.1f us with: ratio %.2f\n", a, b, b / a }'
