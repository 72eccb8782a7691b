#!/usr/bin/env bash
# `make bench`, presence: tern-presence-bench (one UDP socket playing every watcher and publisher)
# against a release tern on loopback: WATCHERS watchers x PER_WATCHER presentities each, every
# presentity changing CHANGES times a second for SECONDS; NOTIFY interval INTERVAL_MS. Prints
# NOTIFYs per second, the coalescing ratio, publish-to-NOTIFY latency, Tern's CPU per NOTIFY and
# resident memory per subscription (measured SETTLE_SECONDS after subscribing, once the SUBSCRIBE
# transactions have ended).
#   TERN=.build/release/tern WATCHERS=1000 PER_WATCHER=10 scripts/bench-presence.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
TERN=${TERN:-.build/release/tern}
BENCH=${BENCH:-$(dirname "$TERN")/tern-presence-bench}
work=$(mktemp -d -t tern-bench-presence.XXXXXX)
trap 'stop_tern; rm -rf "$work"' EXIT
printf 'threads: 2\nlog:\n  level: warning\nstorage:\n  location: memory\n  sqlite_path: ""\npresence:\n  notify_interval_ms: %s\n' \
  "${INTERVAL_MS:-1000}" > "$work/tern.yaml"
start_tern "$TERN" --config "$work/tern.yaml" --listen udp:127.0.0.1:0 --log-level notice
"$BENCH" "127.0.0.1:$(tern_port udp)" --pid "$TERN_PID" --management-port "$(tern_management_port)" --presentities "${PRESENTITIES:-100}" --watchers "${WATCHERS:-1000}" \
  --per-watcher "${PER_WATCHER:-10}" --changes-per-second "${CHANGES:-4}" --seconds "${SECONDS_MEASURED:-10}" \
  --interval-ms "${INTERVAL_MS:-1000}"
