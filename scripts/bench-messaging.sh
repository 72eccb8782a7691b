#!/usr/bin/env bash
# `make bench`, offline messaging (RFC 3428 store and forward), for each store (the embedded
# SQLite file and MongoDB through the test server of scripts/services.sh):
#   store  SIPp sends MESSAGEs to USERS users who are not registered (round robin); each must get
#          202 once stored
#   drain  every one of those users registers the same SIPp UAS, which must receive every stored
#          message (no throttle: the store's speed shows)
# Prints the rates and Tern's CPU per message. Loopback only; bounded in count and time.
#   TERN=.build/release/tern MESSAGES=5000 USERS=100 STORE_RATE=1000 scripts/bench-messaging.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
TERN=${TERN:-.build/release/tern}
MESSAGES=${MESSAGES:-5000}
USERS=${USERS:-100}
STORE_RATE=${STORE_RATE:-1000}
# The MongoDB-wire test server (SecantusDB, Python, syncing every commit) takes far fewer writes
# than a mongod would; offered faster, Tern's bounded queue refuses the excess with 500.
MONGODB_STORE_RATE=${MONGODB_STORE_RATE:-300}
STORES=${STORES:-sqlite mongodb}
work=$(mktemp -d -t tern-bench-msg.XXXXXX)
cleanup() {
  stop_tern
  stop_started_services
}
trap cleanup EXIT
lines=()
{ echo SEQUENTIAL; for i in $(seq -w 1 "$USERS"); do echo "msguser$i"; done; } > "$work/users.csv"

for store in $STORES; do
  dir="$work/$store"
  mkdir -p "$dir"
  {
    printf 'threads: 2\nlog:\n  level: warning\n'
    printf 'messaging:\n  store: %s\n  per_device_rate: 0\n  total_rate: 0\n' "$store"
    if [ "$store" = mongodb ]; then
      ensure_services TERN_TEST_MONGODB_URI || exit 1
      printf 'storage:\n  location: memory\n  mongodb:\n    uri: "%s"\n    database: bench_%s\n' "$TERN_TEST_MONGODB_URI" "$$"
    else
      printf 'storage:\n  sqlite_path: "%s"\n' "$dir/tern.sqlite"
    fi
  } > "$dir/tern.yaml"
  start_tern "$TERN" --config "$dir/tern.yaml" --listen udp:127.0.0.1:0 --log-level notice || exit 1
  rate=$STORE_RATE
  [ "$store" = mongodb ] && rate=$MONGODB_STORE_RATE
  port=$(tern_port udp)
  domain="127.0.0.1:$port"

  cpu0=$(cpu_seconds "$TERN_PID")
  t0=$(date +%s.%N)
  ( cd "$dir" && timeout $((MESSAGES / rate + 120)) sipp "$domain" -sf "$here/sipp/uac_message_offline.xml" -t u1 \
      -i 127.0.0.1 -p "$(free_port)" -nostdin -key domain "$domain" -inf "$work/users.csv" -m "$MESSAGES" -r "$rate" -rp 1000 \
      -l $((rate * 10)) -buff_size 4194304 -trace_stat -stf store.csv > store.out 2>&1 )
  t1=$(date +%s.%N)
  cpu1=$(cpu_seconds "$TERN_PID")
  last=$(tail -n 1 "$dir/store.csv"); header=$(head -n 1 "$dir/store.csv")
  col() { echo "$header" | tr ';' '\n' | grep -n -x "$1" | cut -d: -f1; }
  stored=$(echo "$last" | cut -d';' -f"$(col 'SuccessfulCall(C)')")
  failed=$(echo "$last" | cut -d';' -f"$(col 'FailedCall(C)')")

  # Drain: a UAS that answers 200 registers as the user; time until it has every message.
  uas_port=$(free_port)
  ( cd "$dir" && exec timeout 300 sipp -sf "$here/sipp/uas_message.xml" -t u1 -i 127.0.0.1 -p "$uas_port" -nostdin \
      -m "$stored" -buff_size 4194304 > uas.out 2>&1 ) &
  uas_pid=$!
  sleep 0.3
  cpu2=$(cpu_seconds "$TERN_PID")
  t2=$(date +%s.%N)
  ( cd "$dir" && timeout 60 sipp "$domain" -sf "$here/sipp/register_contact_users.xml" -t u1 -i 127.0.0.1 -p "$(free_port)" \
      -nostdin -key domain "$domain" -inf "$work/users.csv" -key contact_host 127.0.0.1 -key contact_port "$uas_port" \
      -m "$USERS" -r 100 > reg.out 2>&1 )
  wait "$uas_pid"; uas_status=$?
  t3=$(date +%s.%N)
  cpu3=$(cpu_seconds "$TERN_PID")
  stop_tern
  lines+=("$(awk -v s="$store" -v r="$rate" -v n="$MESSAGES" -v ok="$stored" -v f="$failed" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" \
    -v c0="$cpu0" -v c1="$cpu1" -v c2="$cpu2" -v c3="$cpu3" -v u="$uas_status" 'BEGIN {
      printf "%-8s store (offered %d/s): %d of %d answered 202 (%d failed) at %.0f/s, %.0f us CPU each; drain: %s at %.0f/s, %.0f us CPU each",
        s, r, ok, n, f, ok / (t1 - t0), (c1 - c0) * 1e6 / (ok > 0 ? ok : 1),
        (u == 0 ? "all " ok " delivered" : "INCOMPLETE (sipp exit " u ")"), ok / (t3 - t2), (c3 - c2) * 1e6 / (ok > 0 ? ok : 1) }')")
done

echo
echo "Offline messages ($MESSAGES to $USERS users; drain unthrottled):"
for line in "${lines[@]}"; do echo "  $line"; done
echo "raw SIPp output: $work"
