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
# pika runs the example consumer (examples/event_consumer.py) in the tests.
pika_version='pika==1.3.2'

tcp_ready() {
  python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5); s.close()' "$1" 2>/dev/null
}

start_mongodb() {
  if [ ! -x "$venv/bin/secantusd-py" ] || ! "$venv/bin/python" -c 'import pika' 2>/dev/null; then
    echo "installing $secantus_version and $pika_version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$secantus_version" "$pika_version"
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
      echo "export TERN_TEST_PYTHON='$PWD/$venv/bin/python'" >> "$state/env"
      return 0
    fi
    kill -0 "$(cat "$state/mongodb.pid")" 2>/dev/null || { cat "$state/mongodb.log" >&2; echo "MongoDB test server exited" >&2; return 1; }
    sleep 0.1
  done
  echo "MongoDB test server did not open port $port" >&2
  return 1
}

# RabbitMQ: an isolated throw-away node (own HOME, cookie, epmd port, Mnesia and log directories),
# driven through /usr/lib/rabbitmq/bin (the /usr/sbin wrappers switch to the rabbitmq user).
rabbit_env() {
  local dir=$PWD/$state/rabbitmq
  export HOME=$dir/home RABBITMQ_NODENAME=tern-test@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$(cat "$dir/amqp.port") RABBITMQ_DIST_PORT=$(cat "$dir/dist.port")
  export ERL_EPMD_PORT=$(cat "$dir/epmd.port") ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log RABBITMQ_PID_FILE=$dir/rabbit.pid
  export RABBITMQ_CONFIG_FILE=$dir/rabbitmq RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
  export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
  export ERL_CRASH_DUMP=$dir/erl_crash.dump
}

start_rabbitmq() {
  command -v /usr/lib/rabbitmq/bin/rabbitmq-server >/dev/null || { echo "rabbitmq-server is not installed" >&2; return 1; }
  local dir=$state/rabbitmq
  rm -rf "$dir" && mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  free_port > "$dir/amqp.port"; free_port > "$dir/dist.port"; free_port > "$dir/epmd.port"
  (
    rabbit_env
    printf 'listeners.tcp.default = 127.0.0.1:%s\nlog.console = false\nlog.file.level = warning\n' "$RABBITMQ_NODE_PORT" > "$RABBITMQ_CONFIG_FILE.conf"
    echo '[].' > "$RABBITMQ_ADVANCED_CONFIG_FILE"
    : > "$RABBITMQ_CONF_ENV_FILE"
    echo '[].' > "$RABBITMQ_ENABLED_PLUGINS_FILE"
    head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$HOME/.erlang.cookie"
    chmod 400 "$HOME/.erlang.cookie"
    epmd -port "$ERL_EPMD_PORT" -address 127.0.0.1 > "$dir/epmd.log" 2>&1 &
    echo $! > "$dir/epmd.pid"
    for _ in $(seq 1 50); do epmd -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1 && break; sleep 0.1; done
    # Erlang schedulers spin while idle by default; on these 2 shared cores that spinning competes
    # with Tern and SIPp (RabbitMQ's advice for hosts shared with other work).
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none"
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server > "$dir/server.log" 2>&1 < /dev/null &
    echo $! > "$dir/server.pgid"
    /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBITMQ_NODENAME" wait --timeout 90 "$RABBITMQ_PID_FILE" > "$dir/wait.log" 2>&1
  ) || { cat "$dir/server.log" "$dir/wait.log" >&2 2>/dev/null; echo "RabbitMQ test broker did not start" >&2; return 1; }
  echo "export TERN_TEST_AMQP_URI='amqp://guest:guest@127.0.0.1:$(cat "$dir/amqp.port")/'" >> "$state/env"
  # Tests that stop and freeze the broker find it here.
  echo "export TERN_TEST_RABBITMQ_DIR='$PWD/$dir'" >> "$state/env"
}

stop_rabbitmq() {
  local dir=$state/rabbitmq
  [ -f "$dir/amqp.port" ] || return 0
  (
    rabbit_env
    if [ -f "$RABBITMQ_PID_FILE" ] && kill -0 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null; then
      kill -CONT "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null || true
      timeout 30 /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBITMQ_NODENAME" stop "$RABBITMQ_PID_FILE" > /dev/null 2>&1 || true
    fi
    [ -f "$dir/server.pgid" ] && kill -TERM -- "-$(cat "$dir/server.pgid")" 2>/dev/null || true
    [ -f "$dir/epmd.pid" ] && kill "$(cat "$dir/epmd.pid")" 2>/dev/null || true
  )
  rm -rf "$dir"
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
    start_rabbitmq
    ;;
  stop)
    stop_rabbitmq
    stop_pidfile "$state/mongodb.pid"
    rm -f "$state/env"
    ;;
  rabbitmqctl)
    # For tests: scripts/services.sh rabbitmqctl stop_app|start_app|... against the test broker.
    shift
    rabbit_env
    exec /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBITMQ_NODENAME" "$@"
    ;;
  *)
    echo "usage: $0 start|stop|rabbitmqctl ARGS" >&2
    exit 2
    ;;
esac
