#!/usr/bin/env bash
# SIPp smoke flows through a freshly started tern, over UDP on loopback: REGISTER of 10 users,
# MESSAGE through the proxy to a registered SIPp UAS, a whole call (INVITE/180/200/ACK/BYE), and a
# call cancelled while ringing. Prints one line per flow and "sipp-smoke: N passed, N failed".
#   TERN=path/to/tern scripts/sipp-smoke.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
TERN=${TERN:-.build/debug/tern}
work=$(mktemp -d -t tern-smoke.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_tern
  rm -rf "$work" "${TERN_LOG:-}"
}
trap cleanup EXIT
[ -n "${KEEP_WORK:-}" ] && trap "for p in \"\${pids[@]}\"; do kill \$p 2>/dev/null; done; stop_tern" EXIT

printf 'storage:\n  sqlite_path: "%s"\n' "$work/tern.sqlite" > "$work/tern.yaml"
start_tern "$TERN" --config "$work/tern.yaml" --listen udp:127.0.0.1:0 --log-level info || exit 1
port=$(tern_port udp)
domain="127.0.0.1:$port"
common=(-t u1 -i 127.0.0.1 -nostdin -key domain "$domain" -recv_timeout 5000 -timeout 20s)
passed=0 failed=0

report() {  # report NAME STATUS
  if [ "$2" -eq 0 ]; then echo "PASS $1"; passed=$((passed + 1)); else echo "FAIL $1 (see $work/$1)"; failed=$((failed + 1)); fi
}

flow() {  # flow NAME UAS_SCENARIO UAC_SCENARIO USER [extra uac args...]
  local name=$1 uas=$2 uac=$3 user=$4; shift 4
  mkdir -p "$work/$name"
  local uas_port reg_port uac_port uas_pid status
  uas_port=$(free_port); reg_port=$(free_port); uac_port=$(free_port)
  ( cd "$work/$name" && exec timeout 30 sipp -sf "$here/sipp/$uas" "${common[@]}" -p "$uas_port" -m 1 ${SIPP_TRACE:-} \
      -trace_err > uas.out 2>&1 ) &
  uas_pid=$!
  pids+=("$uas_pid")
  ( cd "$work/$name" && timeout 20 sipp "$domain" -sf "$here/sipp/register_contact.xml" "${common[@]}" -p "$reg_port" \
      -s "$user" -key contact_host 127.0.0.1 -key contact_port "$uas_port" -m 1 > reg.out 2>&1 )
  status=$?
  if [ "$status" -eq 0 ]; then
    ( cd "$work/$name" && timeout 30 sipp "$domain" -sf "$here/sipp/$uac" "${common[@]}" -p "$uac_port" -s "$user" -m 1 ${SIPP_TRACE:-} \
        -trace_err "$@" > uac.out 2>&1 )
    status=$?
  fi
  wait "$uas_pid" || status=1
  report "$name" "$status"
}

mkdir -p "$work/register"
{ echo SEQUENTIAL; for i in $(seq -w 1 10); do echo "user$i;pw-user$i"; done; } > "$work/register/users.csv"
( cd "$work/register" && timeout 30 sipp "$domain" -sf "$here/sipp/register.xml" "${common[@]}" -p "$(free_port)" \
    -inf users.csv -m 10 -r 10 -trace_err > uac.out 2>&1 )
report register $?
flow message uas_message.xml uac_message.xml msguser
flow cancel uas_cancel.xml uac_cancel.xml canceluser
flow call uas_call.xml uac_call.xml calluser -d 100

# The management API of the same tern saw what SIPp did: /health, /metrics and a JSON-RPC call.
mkdir -p "$work/management"
python3 - "$(tern_management_port)" > "$work/management/out" 2>&1 <<'PY'
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
assert urllib.request.urlopen(base + "/health", timeout=5).status == 200
metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
registers = [line for line in metrics.splitlines() if line.startswith('tern_sip_requests_received{method="REGISTER"}')]
assert registers and float(registers[0].split()[-1]) >= 10, registers
call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "location.dump", "params": {"limit": 100}}).encode()
reply = json.load(urllib.request.urlopen(urllib.request.Request(base + "/jsonrpc", data=call), timeout=5))
assert reply["result"]["total"] >= 10, reply
print("management ok:", reply["result"]["total"], "bindings")
PY
report management $?
echo "sipp-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
