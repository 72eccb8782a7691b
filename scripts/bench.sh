#!/usr/bin/env bash
# `make bench`: Tern and, where installed, Kamailio (scripts/bench/kamailio.cfg) on loopback under the
# same SIPp scenarios, one server at a time:
#   reg      REGISTER of N distinct users
#   digest   REGISTER of N users with a digest challenge each (401, then credentials)
#   message  MESSAGE through the proxy to a registered SIPp UAS
#   call     INVITE/180/200/ACK/BYE through the proxy to a registered SIPp UAS
#   rereg    a short registration interval: 401, REGISTER with credentials, then four refreshes
#            reusing the nonce on the same flow (cpu_us/op is per user: six REGISTERs; 333 users/s
#            is about the digest run's 2,000 REGISTERs/s, since per-operation CPU depends on the rate)
# For each: offered rate, successes, failures, response time p50/p99, server CPU per operation
# (from /proc, the figure that holds on a noisy machine), memory; then Tern/Kamailio ratios.
# Loopback only; every SIPp run is bounded in count and time.
# Tern keeps bindings in memory only by default, as scripts/bench/kamailio.cfg does (usrloc db_mode 0):
# like for like. TERN_STORE=sqlite measures Tern with its embedded write-behind store instead.
# Tern runs twice: as configured by default (REGISTER answered without keeping its transaction, as
# scripts/bench/kamailio.cfg's registrar does with sl_send_reply), and as tern-sf with
# `registrar.stateless: false` (a transaction answers REGISTER retransmissions for Timer J).
# top_loop is the share of Tern's event-loop CPU that its busiest loop spent. Each peer address and
# port stays on one of Tern's per-loop sockets, chosen by the kernel's hash; SIPp's UAC and UAS ports
# are free ports, so a run's two legs land on one loop (100%) or on two (about 60%). On two, a
# proxied MESSAGE costs about 10% more CPU (the request and its answer meet on different cores) and
# p99 is lower: compare runs with the same split.
# SERVERS=tern leaves Kamailio out; TERN_UDP_SOCKETS sets Tern's limits.udp_sockets (default: one per thread).
# ROUNDS=N runs the whole sequence N times, the servers alternating, and the ratios compare the
# medians: single runs on a shared machine move by ±30%.
#   TERN=.build/release/tern USERS=10000 REG_RATE=2000 MSG_RATE=2000 CALLS=2000 CALL_RATE=200 scripts/bench.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
TERN=${TERN:-.build/release/tern}
TERN_STORE=${TERN_STORE:-memory}
USERS=${USERS:-10000}
REG_RATE=${REG_RATE:-2000}
DIGEST_RATE=${DIGEST_RATE:-1000}
MESSAGES=${MESSAGES:-10000}
MSG_RATE=${MSG_RATE:-2000}
CALLS=${CALLS:-2000}
CALL_RATE=${CALL_RATE:-200}
REREG_USERS=${REREG_USERS:-3000}
ROUNDS=${ROUNDS:-1}
REREG_RATE=${REREG_RATE:-333}
work=$(mktemp -d -t tern-bench.XXXXXX)
results="$work/results.tsv"
server_pid=
bg_pids=()

cleanup() {
  local pid
  for pid in "${bg_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_server
}
trap cleanup EXIT

# CPU seconds of a process and all its children (Kamailio forks its workers).
tree_cpu() {
  local total=0 pid
  for pid in $1 $(pgrep -P "$1" 2>/dev/null); do
    [ -r "/proc/$pid/stat" ] && total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", t + ($14 + $15) / hz }' "/proc/$pid/stat")
  done
  echo "$total"
}

# CPU ticks of each SwiftNIO event-loop thread (NIO-ELT-…) of a Tern process, comma-separated in
# thread order; nothing for Kamailio.
loop_ticks() {
  local task
  for task in /proc/"$1"/task/*; do
    case "$(cat "$task/comm" 2>/dev/null)" in
      NIO-ELT*) awk '{ printf "%d,", $14 + $15 }' "$task/stat" ;;
    esac
  done
}

# Proportional set size in KiB of a process tree (shared memory counted once overall).
tree_pss() {
  local total=0 pid value
  for pid in $1 $(pgrep -P "$1" 2>/dev/null); do
    value=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + ${value:-0}))
  done
  echo "$total"
}

start_server() {  # start_server tern|kamailio [auth]
  local kind=$1 auth=${2:-}
  port=$(free_port)
  domain="127.0.0.1:$port"
  mkdir -p "$rwork/$kind$auth"
  if [ "$kind" = tern ] || [ "$kind" = tern-sf ]; then
    {
      printf 'listen:\n  - udp:127.0.0.1:%s\nthreads: 2\nlog:\n  level: warning\n' "$port"
      [ -n "${TERN_UDP_SOCKETS:-}" ] && printf 'limits:\n  udp_sockets: %s\n' "$TERN_UDP_SOCKETS"
      [ "$kind" = tern-sf ] && printf 'registrar:\n  stateless: false\n'
      if [ "$TERN_STORE" = sqlite ]; then
        printf 'storage:\n  sqlite_path: "%s"\n' "$rwork/$kind$auth/tern.sqlite"
      else
        printf 'storage:\n  location: memory\n'
      fi
      if [ -n "$auth" ]; then
        printf 'auth:\n  credentials_file: "%s"\n  algorithms: [MD5]\n' "$work/ha1.txt"
      fi
    } > "$rwork/$kind$auth/tern.yaml"
    "$TERN" --config "$rwork/$kind$auth/tern.yaml" 2> "$rwork/$kind$auth/server.log" &
    server_pid=$!
  else
    local defines=(-A SIP_IP=127.0.0.1 -A "SIP_PORT=$port" -A CHILDREN=2)
    [ -n "$auth" ] && defines+=(-A WITH_AUTH)
    kamailio -DD -E -m 512 -M 32 -f "$here/bench/kamailio.cfg" -Y "$rwork/$kind$auth" -w "$rwork/$kind$auth" \
      "${defines[@]}" 2> "$rwork/$kind$auth/server.log" &
    server_pid=$!
  fi
  for _ in $(seq 1 100); do
    if python3 - "$port" <<'PY' 2>/dev/null; then break; fi
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.1)
s.sendto(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe\r\nFrom: <sip:p@x>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", ("127.0.0.1", int(sys.argv[1])))
s.recvfrom(65535)
PY
    sleep 0.1
  done
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# run_load NAME SCENARIO COUNT RATE [extra args]: one SIPp UAC run; appends a results line.
run_load() {
  local name=$1 scenario=$2 count=$3 rate=$4; shift 4
  local dir="$rwork/$server_kind/$name" cpu_before cpu_after loops_before loops_after status
  mkdir -p "$dir"
  cpu_before=$(tree_cpu "$server_pid")
  loops_before=$(loop_ticks "$server_pid")
  ( cd "$dir" && LD_PRELOAD=${LD_PRELOAD_SIPP:-} timeout $((count / rate + 60)) sipp "$domain" -sf "$here/sipp/$scenario" -t u1 -i 127.0.0.1 \
      -p "$(free_port)" -nostdin -key domain "$domain" -m "$count" -r "$rate" -rp 1000 -l $((rate * 10)) \
      -buff_size 4194304 -recv_timeout 5000 -trace_stat -stf stat.csv -trace_rtt -rtt_freq 1 -trace_err "$@" \
      > sipp.out 2>&1 )
  status=$?
  sleep 0.5
  cpu_after=$(tree_cpu "$server_pid")
  loops_after=$(loop_ticks "$server_pid")
  python3 - "$dir" "$server_kind" "$name" "$count" "$rate" "$cpu_before" "$cpu_after" "$status" \
    "$loops_before" "$loops_after" >> "$results" <<'PY'
import csv, glob, sys
d, kind, name, count, rate, c0, c1, status, loops0, loops1 = sys.argv[1:]
rows = list(csv.reader(open(d + "/stat.csv"), delimiter=";"))
head, last = rows[0], rows[-1]
def col(n):
    return int(last[head.index(n)])
ok, failed = col("SuccessfulCall(C)"), col("FailedCall(C)")
times = []
for path in glob.glob(d + "/*_rtt.csv"):
    for line in open(path):
        parts = line.strip().split(";")
        if len(parts) >= 3:
            try:
                times.append(float(parts[1]))
            except ValueError:
                pass
times.sort()
pct = lambda p: times[min(len(times) - 1, int(len(times) * p))] if times else float("nan")
cpu = float(c1) - float(c0)
per_op = cpu * 1e6 / ok if ok else float("nan")
# The busiest event loop's share of the loops' CPU: 100% when the kernel put both SIPp ports on one.
spent = [int(b) - int(a) for a, b in zip(loops0.split(",")[:-1], loops1.split(",")[:-1])]
busiest = "%d%%" % (100 * max(spent) / sum(spent)) if spent and sum(spent) > 0 else "-"
print("\t".join([kind, name, rate, count, str(ok), str(failed), "%.2f" % pct(0.5), "%.2f" % pct(0.99),
                 "%.1f" % per_op, busiest, status]))
PY
}

# with_uas NAME UAS_SCENARIO USER: starts a SIPp UAS for COUNT calls and registers its contact.
with_uas() {
  local name=$1 uas=$2 user=$3 count=$4 uas_port
  uas_port=$(free_port)
  mkdir -p "$rwork/$server_kind/$name-uas"
  ( cd "$rwork/$server_kind/$name-uas" && exec timeout 300 sipp -sf "$here/sipp/$uas" -t u1 -i 127.0.0.1 -p "$uas_port" \
      -nostdin -m "$count" -buff_size 4194304 -trace_err > sipp.out 2>&1 ) &
  bg_pids+=($!)
  ( cd "$rwork/$server_kind/$name-uas" && timeout 20 sipp "$domain" -sf "$here/sipp/register_contact.xml" -t u1 \
      -i 127.0.0.1 -p "$(free_port)" -nostdin -key domain "$domain" -s "$user" -key contact_host 127.0.0.1 \
      -key contact_port "$uas_port" -m 1 > reg.out 2>&1 )
}

# Microsecond response times: SIPp reads a coarse clock (see scripts/bench/fine_clock.c).
if cc -shared -fPIC -O2 -o "$work/fine_clock.so" "$here/bench/fine_clock.c" -ldl 2>/dev/null; then
  export LD_PRELOAD_SIPP="$work/fine_clock.so"
fi

{ echo SEQUENTIAL; for i in $(seq -w 1 "$USERS"); do echo "user$i;pw-user$i"; done; } > "$work/users.csv"
python3 - "$USERS" > "$work/ha1.txt" <<'PY'
import hashlib, sys
n = int(sys.argv[1])
for i in range(1, n + 1):
    user = "user%0*d" % (len(str(n)), i)
    print(user, "127.0.0.1", hashlib.md5(("%s:127.0.0.1:pw-%s" % (user, user)).encode()).hexdigest())
PY

servers=(tern tern-sf)
if [ "${SERVERS:-}" = tern ]; then :
elif command -v kamailio >/dev/null; then servers+=(kamailio); else echo "kamailio not installed: Tern alone"; fi
memory_lines=()
for round in $(seq 1 "$ROUNDS"); do
rwork="$work/round$round"
for server_kind in "${servers[@]}"; do
  start_server "$server_kind"
  pss_before=$(tree_pss "$server_pid")
  run_load reg register.xml "$USERS" "$REG_RATE" -inf "$work/users.csv"
  pss_after=$(tree_pss "$server_pid")
  # Again once the REGISTER transactions have ended (Timer J, 32 s on UDP): bindings alone.
  sleep "${SETTLE_SECONDS:-34}"
  pss_settled=$(tree_pss "$server_pid")
  memory_lines+=("$server_kind (round $round): PSS $((pss_before / 1024)) MiB before, $((pss_after / 1024)) MiB right after $USERS registrations ($(( (pss_after - pss_before) * 1024 / USERS )) bytes each), $((pss_settled / 1024)) MiB once their transactions ended ($(( (pss_settled - pss_before) * 1024 / USERS )) bytes per binding)")
  with_uas message uas_message.xml msguas "$MESSAGES"
  run_load message uac_message.xml "$MESSAGES" "$MSG_RATE" -s msguas
  with_uas call uas_call.xml calluas "$CALLS"
  run_load call uac_call.xml "$CALLS" "$CALL_RATE" -s calluas -d 100
  stop_server
  start_server "$server_kind" auth
  run_load digest register.xml "$USERS" "$DIGEST_RATE" -inf "$work/users.csv"
  run_load rereg reregister.xml "$REREG_USERS" "$REREG_RATE" -inf "$work/users.csv"
  stop_server
  for pid in "${bg_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  bg_pids=()
done
done

echo
echo "Tern's bindings: $TERN_STORE (TERN_STORE); Kamailio's: memory (usrloc db_mode 0)"
echo "server    scenario  rate/s  calls  ok     failed  p50_ms  p99_ms  cpu_us/op  top_loop  sipp_rc"
awk -F'\t' '{ printf "%-9s %-9s %-7s %-6s %-6s %-7s %-7s %-7s %-10s %-9s %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' "$results"
for line in "${memory_lines[@]}"; do echo "$line"; done
echo
python3 - "$results" "${#servers[@]}" "$ROUNDS" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
rounds = int(sys.argv[3])
cpu, p99 = {}, {}
for kind, name, *_, p99_ms, cpu_us, _busiest, _status in rows:
    cpu.setdefault((kind, name), []).append(float(cpu_us))
    p99.setdefault((kind, name), []).append(float(p99_ms))
several = any(kind == "kamailio" for kind, *_ in rows)
med = lambda table, key: statistics.median(table[key]) if table.get(key) else float("nan")
what = "medians of %d rounds" % rounds if rounds > 1 else "one round"
print()
print("Cost of one re-registration within the nonce lifetime (one round trip, no challenge; %s):" % what)
for kind in ("tern", "tern-sf", "kamailio"):
    d, r = med(cpu, (kind, "digest")), med(cpu, (kind, "rereg"))
    if r == r:
        print("  %-8s %.1f us per refresh (a fresh digest registration: %.1f us)" % (kind, (r - d) / 4, d))
if several:
    print()
    for tern, label in (("tern", "Tern"), ("tern-sf", "Tern with registrar.stateless: false")):
      print("%s/Kamailio CPU per operation (target <= 0.67; %s):" % (label, what))
      for name in ("reg", "digest", "message", "call"):
        t, k = med(cpu, (tern, name)), med(cpu, ("kamailio", name))
        if k > 0:
            spread = ""
            if rounds > 1:
                spread = ", rounds %s" % " ".join("%.2f" % (a / b) for a, b in zip(cpu[(tern, name)], cpu[("kamailio", name)]))
            print("  %-8s %.2f  (%.1f vs %.1f us; p99 %.2f ms vs %.2f ms%s)" % (name, t / k, t, k, med(p99, (tern, name)), med(p99, ("kamailio", name)), spread))
PY
echo "raw SIPp output: $work"
