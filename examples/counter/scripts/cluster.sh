#!/usr/bin/env bash
# A 3-node counter cluster on this machine, one process per node.
#
#   scripts/cluster.sh start      build (release) if needed, start the nodes that are not running
#   scripts/cluster.sh status     which nodes run, and each node's role/term/leader/commit
#   scripts/cluster.sh kill N     SIGKILL node N (restart it with `start`)
#   scripts/cluster.sh stop       SIGTERM every node (SIGKILL after 5 s); data is kept
#   scripts/cluster.sh clean      stop, then delete the data directory
#   scripts/cluster.sh servers    print the --servers list for counter-client
#
# Environment:
#   COUNTER_DIR        data, logs and pid files (default: ${TMPDIR:-/tmp}/counter-cluster)
#   COUNTER_BASE_PORT  node N uses BASE+10(N-1) for Raft data, +1 for Raft heartbeats and
#                      +2 for clients (default: 7100, so clients connect to 7102, 7112, 7122)
#   COUNTER_BIN_DIR    directory holding counter-server and counter-client (default: build
#                      them with `cargo build --release -p counter` and use that target dir)
set -euo pipefail

DIR="${COUNTER_DIR:-${TMPDIR:-/tmp}/counter-cluster}"
BASE="${COUNTER_BASE_PORT:-7100}"
NODES=(1 2 3)
HOST=127.0.0.1

raft_port()   { echo $((BASE + 10 * ($1 - 1))); }
client_port() { echo $((BASE + 10 * ($1 - 1) + 2)); }

peers() {
  local out="" id
  for id in "${NODES[@]}"; do
    out+="${out:+,}${id}=${HOST}:$(raft_port "$id")/${HOST}:$(client_port "$id")"
  done
  echo "$out"
}

servers() {
  local out="" id
  for id in "${NODES[@]}"; do out+="${out:+,}${HOST}:$(client_port "$id")"; done
  echo "$out"
}

bin_dir() {
  if [[ -n "${COUNTER_BIN_DIR:-}" ]]; then
    echo "$COUNTER_BIN_DIR"
    return
  fi
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
  (cd "$root" && cargo build --release -q -p counter >&2)
  echo "${CARGO_TARGET_DIR:-$root/target}/release"
}

pid_of() { cat "$DIR/node-$1.pid" 2>/dev/null || true; }

running() {
  local pid
  pid="$(pid_of "$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

start() {
  local bin id
  bin="$(bin_dir)"
  mkdir -p "$DIR"
  for id in "${NODES[@]}"; do
    if running "$id"; then
      echo "node $id already running (pid $(pid_of "$id"))"
      continue
    fi
    nohup "$bin/counter-server" --id "$id" --peers "$(peers)" \
      --data-dir "$DIR/node-$id" --listen "$HOST:$(client_port "$id")" \
      >>"$DIR/node-$id.log" 2>&1 </dev/null &
    echo $! >"$DIR/node-$id.pid"
    echo "node $id started (pid $!): raft $HOST:$(raft_port "$id"), clients $HOST:$(client_port "$id"), log $DIR/node-$id.log"
  done
  # Wait (up to 20 s) for a leader. (Not `grep -q`: it exits at the first match and the
  # client, still writing, dies of SIGPIPE, which `pipefail` turns into a failure.)
  local i
  for i in $(seq 1 100); do
    if "$bin/counter-client" --servers "$(servers)" status 2>/dev/null | grep Leader >/dev/null; then
      echo "cluster ready; try:"
      echo "  $bin/counter-client --servers $(servers) incr 5"
      return 0
    fi
    sleep 0.2
  done
  echo "no leader after 20 s; see the logs in $DIR" >&2
  return 1
}

stop() {
  local id pid i
  for id in "${NODES[@]}"; do
    pid="$(pid_of "$id")"
    if running "$id"; then
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
      echo "node $id stopped"
    fi
    rm -f "$DIR/node-$id.pid"
  done
}

status() {
  local id any=0
  for id in "${NODES[@]}"; do
    if running "$id"; then
      echo "node $id: running (pid $(pid_of "$id"))"
      any=1
    else
      echo "node $id: not running"
    fi
  done
  echo "data: $DIR"
  if [[ $any == 1 ]]; then
    "$(bin_dir)/counter-client" --servers "$(servers)" status || true
  fi
}

kill_node() {
  local id="${1:?usage: cluster.sh kill N}"
  if running "$id"; then
    kill -KILL "$(pid_of "$id")"
    rm -f "$DIR/node-$id.pid"
    echo "node $id killed (SIGKILL); \`cluster.sh start\` restarts it from its WAL"
  else
    echo "node $id is not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  kill) kill_node "${2:-}" ;;
  clean) stop; rm -rf "$DIR"; echo "removed $DIR" ;;
  servers) servers ;;
  *)
    echo "usage: $0 start|stop|status|kill N|clean|servers" >&2
    exit 2
    ;;
esac
