#!/usr/bin/env bash
# A local nats-server JetStream cluster for Sluice (issue 12): N nodes on 127.0.0.1, routed to each other,
# each with its own store, all with Sluice's subject mappings.
#
#   scripts/nats-cluster.sh up     [--nodes N] [--dir DIR] [--port BASE] [--partitions P]
#   scripts/nats-cluster.sh status [--dir DIR]
#   scripts/nats-cluster.sh down   [--dir DIR] [--clean]
#
# Node i (1..N) is server n<i>: client port BASE+i-1, cluster port BASE+100+i-1, monitor port BASE+200+i-1.
# DIR holds cluster.env (what `up` was given, read back by status and down), urls (the client URLs,
# comma-separated, for SLUICE_NATS_URL) and n<i>/ with the node's config, pid file, log and JetStream store.
# `up` prints the client URLs once every node is healthy and a JetStream meta leader is elected.
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"

nodes_default=3
dir_default="./.cluster"
port_base_default=4222
# The config default, streams.partitionCount (src/config/schema.ts): the mappings must use the same count.
partitions_default=4
cluster_name="sluice"
host="127.0.0.1"
# JetStream reserves each stream's cap on every node that holds a copy (every node, with R3); nothing is
# written until used. Sluice's default caps in cluster mode come to about 19 GiB (the stage and output streams,
# cluster.logBytesMax, cluster.snapshotBytesMax): 32 GiB leaves room.
store_bytes_max=$((32 * 1024 * 1024 * 1024))
memory_bytes_max=$((256 * 1024 * 1024))
# nats-server warns above 8 MiB; Sluice's messages are far smaller (streams.messageBytesMax + headers).
payload_bytes_max=$((8 * 1024 * 1024))
# Offsets of the cluster (route) and monitor ports from the client port base.
route_port_offset=100
monitor_port_offset=200
# Start: nodes open their ports in well under a second; a meta leader election takes a few seconds.
start_wait_s_max=30
# Stop: the server flushes its store on SIGTERM; SIGKILL after this.
stop_wait_s_max=10
poll_interval_s=0.1
# One monitoring request: loopback answers in milliseconds; a stopped (SIGSTOP) node never answers.
http_timeout_s=1

say() { printf 'nats-cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

usage() {
  sed -n '5,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---- arguments ----------------------------------------------------------------------------------------------

command="${1:-}"
[ -n "$command" ] || usage
shift
nodes="$nodes_default"
dir="$dir_default"
port_base="$port_base_default"
partitions="$partitions_default"
clean=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes="${2:?--nodes needs a number}"; shift 2 ;;
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    --port) port_base="${2:?--port needs a port number}"; shift 2 ;;
    --partitions) partitions="${2:?--partitions needs a number}"; shift 2 ;;
    --clean) clean=1; shift ;;
    -h | --help) usage ;;
    *) die "unknown option $1 (try --help)" ;;
  esac
done

is_int() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_int "$nodes" && [ "$nodes" -ge 1 ] && [ "$nodes" -le 9 ] || die "--nodes must be 1..9, got $nodes"
is_int "$partitions" && [ "$partitions" -ge 1 ] && [ "$partitions" -le 256 ] ||
  die "--partitions must be 1..256 (streams.partitionCount's range), got $partitions"
is_int "$port_base" && [ "$port_base" -ge 1024 ] && [ $((port_base + monitor_port_offset + nodes)) -le 65535 ] ||
  die "--port must leave room for BASE+${monitor_port_offset}+N under 65536 and be 1024 or more, got $port_base"
# Absolute, so the configs name their stores wherever the servers run from; only up creates it.
[ "$command" != "up" ] || mkdir -p "$dir"
[ ! -d "$dir" ] || dir="$(cd "$dir" && pwd)"

# ---- helpers ------------------------------------------------------------------------------------------------

client_port() { echo $((port_base + $1 - 1)); }
route_port() { echo $((port_base + route_port_offset + $1 - 1)); }
monitor_port() { echo $((port_base + monitor_port_offset + $1 - 1)); }
node_dir() { echo "$dir/n$1"; }

resolve_nats_server() {
  if command -v nats-server >/dev/null 2>&1; then command -v nats-server; return; fi
  # Debian installs it in /usr/sbin, which is not on a non-root PATH.
  if [ -x /usr/sbin/nats-server ]; then echo /usr/sbin/nats-server; return; fi
  die "nats-server not found on PATH or in /usr/sbin: install it (Debian: apt-get install -y nats-server)"
}

require_tools() {
  command -v curl >/dev/null 2>&1 || die "curl not found: install it (Debian: apt-get install -y curl)"
  command -v bun >/dev/null 2>&1 ||
    die "bun not found: the mappings come from src/stream/subjects.ts; install Bun (npm install -g bun@1.4.5)"
}

# The mappings block's lines, from the function the embedded server uses, so the two never drift.
mapping_lines() {
  (cd "$repo_root" && bun -e '
    import { subjectMappings } from "./src/stream/subjects.ts";
    for (const [from, to] of Object.entries(subjectMappings(Number(process.argv[1]))))
      console.log(`  ${JSON.stringify(from)}: ${JSON.stringify(to)}`);
  ' "$partitions")
}

# One node is a plain JetStream server: a cluster of one never elects a meta leader.
render_cluster_block() {
  local i="$1" j
  [ "$nodes" -gt 1 ] || return 0
  printf 'cluster {\n  name: %s\n  listen: "%s:%s"\n  routes: [\n' "$cluster_name" "$host" "$(route_port "$i")"
  for j in $(seq 1 "$nodes"); do printf '    "nats-route://%s:%s"\n' "$host" "$(route_port "$j")"; done
  printf '  ]\n}\n'
}

render_config() {
  local i="$1" mappings="$2" nd
  nd="$(node_dir "$i")"
  cat <<EOF
# Written by scripts/nats-cluster.sh up; rewritten at every up.
server_name: n$i
listen: "${host}:$(client_port "$i")"
http: "${host}:$(monitor_port "$i")"
max_payload: ${payload_bytes_max}
jetstream {
  store_dir: "${nd}"
  max_file_store: ${store_bytes_max}
  max_memory_store: ${memory_bytes_max}
}
$(render_cluster_block "$i")
mappings = {
${mappings}
}
EOF
}

node_pid() {
  local file
  file="$(node_dir "$1")/nats-server.pid"
  [ -f "$file" ] && cat "$file" || true
}

# A pid file can outlive its server and the pid be reused: where /proc exists, the process must be a nats-server.
pid_is_server() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  [ ! -d /proc ] || tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q nats-server
}

is_running() { pid_is_server "$(node_pid "$1")"; }

monitor_get() { curl -fsS --max-time "$http_timeout_s" "http://${host}:$(monitor_port "$1")$2" 2>/dev/null; }

is_healthy() { monitor_get "$1" "/healthz?js-enabled-only=true" >/dev/null; }

# The meta leader's server name as node $1 sees it; empty while there is none.
meta_leader() {
  monitor_get "$1" /jsz | tr -d '\n' | grep -o '"meta_cluster": *{[^}]*}' |
    grep -o '"leader": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' || true
}

save_settings() {
  printf 'nodes=%s\nport_base=%s\npartitions=%s\n' "$nodes" "$port_base" "$partitions" >"$dir/cluster.env"
}

load_settings() {
  [ -f "$dir/cluster.env" ] ||
    die "no cluster in $dir (no cluster.env): start one with 'scripts/nats-cluster.sh up --dir $dir'"
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
}

urls() {
  local i out=""
  for i in $(seq 1 "$nodes"); do out+="${out:+,}nats://${host}:$(client_port "$i")"; done
  echo "$out"
}

# ---- commands -----------------------------------------------------------------------------------------------

start_node() {
  local i="$1" bin="$2" nd
  nd="$(node_dir "$i")"
  # Redirected: the server outlives this script and must hold none of its caller's pipes open.
  "$bin" -c "$nd/nats-server.conf" </dev/null >>"$nd/nats-server.log" 2>&1 &
  echo $! >"$nd/nats-server.pid"
}

# Something listening there already (an earlier cluster, another program) would answer for our node.
port_in_use() { (exec 3<>"/dev/tcp/${host}/$1") 2>/dev/null; }

check_ports_free() {
  local i port
  for i in $(seq 1 "$nodes"); do
    for port in "$(client_port "$i")" "$(route_port "$i")" "$(monitor_port "$i")"; do
      ! port_in_use "$port" ||
        die "port $port on ${host} is in use: pick another --port, or stop what holds it (an earlier cluster: scripts/nats-cluster.sh down --dir DIR)"
    done
  done
}

wait_until_up() {
  local deadline i leader
  deadline=$((SECONDS + start_wait_s_max))
  for i in $(seq 1 "$nodes"); do
    # Alive first: the health answer must come from this node's own process.
    until is_running "$i" && is_healthy "$i"; do
      if ! is_running "$i"; then
        tail -n 20 "$(node_dir "$i")/nats-server.log" >&2 || true
        die "node n$i exited at start (its log is above); a port in use? pick another --port"
      fi
      [ "$SECONDS" -lt "$deadline" ] ||
        die "node n$i not healthy within ${start_wait_s_max} s; see $(node_dir "$i")/nats-server.log"
      sleep "$poll_interval_s"
    done
  done
  [ "$nodes" -gt 1 ] || return 0
  until leader="$(meta_leader 1)" && [ -n "$leader" ]; do
    [ "$SECONDS" -lt "$deadline" ] ||
      die "no JetStream meta leader within ${start_wait_s_max} s; see the logs in $dir/n*/nats-server.log"
    sleep "$poll_interval_s"
  done
  say "meta leader $leader"
}

# A node of an earlier up in this dir that still runs; empty when none does.
running_node() {
  [ -f "$dir/cluster.env" ] || return 0
  local i nodes
  nodes="$(. "$dir/cluster.env" && echo "$nodes")"
  for i in $(seq 1 "$nodes"); do
    if is_running "$i"; then echo "n$i (pid $(node_pid "$i"))"; return 0; fi
  done
}

cmd_up() {
  local bin mappings i running
  bin="$(resolve_nats_server)"
  require_tools
  running="$(running_node)"
  [ -z "$running" ] || die "$running of $dir is running: 'scripts/nats-cluster.sh down --dir $dir' first"
  check_ports_free
  mappings="$(mapping_lines)"
  save_settings
  # A failed start leaves nothing running: the next up would refuse, and the ports would stay taken.
  trap 'say "start failed; stopping the nodes it started"; stop_nodes' EXIT
  for i in $(seq 1 "$nodes"); do
    mkdir -p "$(node_dir "$i")"
    render_config "$i" "$mappings" >"$(node_dir "$i")/nats-server.conf"
    start_node "$i" "$bin"
  done
  wait_until_up
  trap - EXIT
  urls >"$dir/urls"
  urls
}

node_state() {
  if ! is_running "$1"; then echo "down"
  elif is_healthy "$1"; then echo "up"
  else echo "not answering (stopped, starting, or JetStream not ready)"
  fi
}

# Exits 0 only when every node is up.
cmd_status() {
  local i state leader="" not_up=0
  load_settings
  for i in $(seq 1 "$nodes"); do
    state="$(node_state "$i")"
    if [ "$state" = "up" ]; then
      [ -n "$leader" ] || leader="$(meta_leader "$i")"
    else
      not_up=$((not_up + 1))
    fi
    if [ "$state" = "down" ]; then echo "n$i nats://${host}:$(client_port "$i") down"
    else echo "n$i nats://${host}:$(client_port "$i") $state (pid $(node_pid "$i"))"
    fi
  done
  if [ "$nodes" -eq 1 ]; then echo "meta leader: none (one server, not clustered)"
  else echo "meta leader: ${leader:-none}"
  fi
  [ "$not_up" -eq 0 ]
}

# SIGTERM to every node at once (each flushes its store), then SIGKILL whatever is left after the wait.
stop_nodes() {
  local i pid pids=() deadline
  for i in $(seq 1 "$nodes"); do
    pid="$(node_pid "$i")"
    rm -f "$(node_dir "$i")/nats-server.pid"
    pid_is_server "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || true
    # A stopped (SIGSTOP) process handles SIGTERM only once continued.
    kill -CONT "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  deadline=$((SECONDS + stop_wait_s_max))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep "$poll_interval_s"; done
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid ignored SIGTERM for ${stop_wait_s_max} s; killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

cmd_down() {
  load_settings
  stop_nodes
  if [ "$clean" = "1" ]; then
    rm -rf "$dir"
    say "stopped; removed $dir"
  else
    say "stopped; stores and logs kept in $dir (--clean removes them)"
  fi
}

case "$command" in
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *) usage ;;
esac
