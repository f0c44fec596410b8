#!/usr/bin/env bash
# A KV cluster on this machine, one process per node: 5 nodes, 64 groups x 3 replicas.
#
#   scripts/cluster.sh start      build (release) if needed, start nodes 1-5 that are not
#                                 running (and node 6 if it joined), wait for the placement
#   scripts/cluster.sh join 6     start node 6 joining the cluster (then `kv ... rebalance`)
#   scripts/cluster.sh status     which nodes run, then `kv status`
#   scripts/cluster.sh kill N     SIGKILL node N (restart it with `start`)
#   scripts/cluster.sh stop       SIGTERM every node (SIGKILL after 5 s); data is kept
#   scripts/cluster.sh clean      stop, then delete the data directory
#   scripts/cluster.sh servers    print the --servers list for kv
#
# Environment:
#   KV_DIR        data, logs and pid files (default: ${TMPDIR:-/tmp}/kv-cluster)
#   KV_BASE_PORT  node N uses BASE+10(N-1) for Raft data, +1 for Raft heartbeats and +2 for
#                 clients (default: 7300, so clients connect to 7302, 7312, ...)
#   KV_GROUPS, KV_REPLICAS   the new cluster's shape (default: 64 and 3)
#   KV_BIN_DIR    directory holding kv-server and kv (default: build them with
#                 `cargo build --release -p kv` and use that target dir)
set -euo pipefail

DIR="${KV_DIR:-${TMPDIR:-/tmp}/kv-cluster}"
BASE="${KV_BASE_PORT:-7300}"
GROUPS_N="${KV_GROUPS:-64}"
REPLICAS="${KV_REPLICAS:-3}"
NODES=(1 2 3 4 5)
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
  if [[ -n "${KV_BIN_DIR:-}" ]]; then
    echo "$KV_BIN_DIR"
    return
  fi
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
  (cd "$root" && cargo build --release -q -p kv >&2)
  echo "${CARGO_TARGET_DIR:-$root/target}/release"
}

pid_of() { cat "$DIR/node-$1.pid" 2>/dev/null || true; }

running() {
  local pid
  pid="$(pid_of "$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# Nodes that joined (they have a data directory and a `joined` mark), restarted by `start`.
joined_nodes() {
  local f
  for f in "$DIR"/node-*.joined; do
    [[ -e "$f" ]] || continue
    f="${f##*/node-}"
    echo "${f%.joined}"
  done
}

spawn() {
  local bin="$1" id="$2"
  shift 2
  nohup "$bin/kv-server" --id "$id" --data-dir "$DIR/node-$id" "$@" \
    >>"$DIR/node-$id.log" 2>&1 </dev/null &
  echo $! >"$DIR/node-$id.pid"
  echo "node $id started (pid $!): raft $HOST:$(raft_port "$id"), clients $HOST:$(client_port "$id"), log $DIR/node-$id.log"
}

join_args() {
  echo "--raft $HOST:$(raft_port "$1") --listen $HOST:$(client_port "$1") --join $(servers)"
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
    spawn "$bin" "$id" --peers "$(peers)" --groups "$GROUPS_N" --replicas "$REPLICAS"
  done
  for id in $(joined_nodes); do
    if ! running "$id"; then
      # shellcheck disable=SC2046
      spawn "$bin" "$id" $(join_args "$id")
    fi
  done
  local i
  for i in $(seq 1 150); do
    if "$bin/kv" --servers "$(servers)" --timeout-ms 2000 put ready yes >/dev/null 2>&1; then
      echo "cluster ready; try:"
      echo "  $bin/kv --servers $(servers) put greeting hello"
      return 0
    fi
    sleep 0.2
  done
  echo "the cluster took no write after 30 s; see the logs in $DIR" >&2
  return 1
}

join() {
  local id="${1:?usage: cluster.sh join N}" bin
  bin="$(bin_dir)"
  if running "$id"; then
    echo "node $id already running"
    return 0
  fi
  mkdir -p "$DIR"
  touch "$DIR/node-$id.joined"
  # shellcheck disable=SC2046
  spawn "$bin" "$id" $(join_args "$id")
  echo "node $id joins; spread replicas onto it with:"
  echo "  $bin/kv --servers $(servers) rebalance"
}

stop() {
  local id pid i
  for id in "${NODES[@]}" $(joined_nodes); do
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
  for id in "${NODES[@]}" $(joined_nodes); do
    if running "$id"; then
      echo "node $id: running (pid $(pid_of "$id"))"
      any=1
    else
      echo "node $id: not running"
    fi
  done
  echo "data: $DIR"
  if [[ $any == 1 ]]; then
    "$(bin_dir)/kv" --servers "$(servers)" status || true
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
  join) join "${2:-}" ;;
  stop) stop ;;
  status) status ;;
  kill) kill_node "${2:-}" ;;
  clean) stop; rm -rf "$DIR"; echo "removed $DIR" ;;
  servers) servers ;;
  *)
    echo "usage: $0 start|join N|stop|status|kill N|clean|servers" >&2
    exit 2
    ;;
esac
