#!/usr/bin/env bash
# A local Sluice stack in one command (issue 13), everything on 127.0.0.1: a nats-server with JetStream and
# Sluice's subject mappings, Sluice, the reference sink delivering the ERP batches to a stand-in receiver that
# logs them, and Prometheus scraping Sluice (job `sluice`) and the sink (job `sluice-sink`) with the rules of
# deploy/prometheus/sluice-rules.yml.
#
#   scripts/stack.sh up     [--dir DIR] [--port-base N]   start it, wait until each part answers, print the URLs
#   scripts/stack.sh status [--dir DIR]                   each part up or down (exit 0 only when all are up)
#   scripts/stack.sh down   [--dir DIR] [--clean]         stop it; --clean also removes DIR
#   scripts/stack.sh env    [--dir DIR] [--port-base N]   Sluice's settings in the stack, as export lines
#   scripts/stack.sh ports  [--port-base N]               each part's port, one a line
#   scripts/stack.sh receiver --listen HOST:PORT          the stand-in ERP endpoint alone (as compose runs it)
#
# DIR defaults to ./.stack, N to 14222. Ports: NATS client N, Sluice HTTP N+1, sink /metrics N+2, receiver N+3,
# Prometheus N+4, NATS monitoring N+5. deploy/compose/docker-compose.yml runs the same stack in Docker on the
# same host ports; test/integration/stack.test.ts keeps the two consistent. DIR holds stack.env (the port base
# `up` was given) and a directory for each part (nats, sluice, receiver, sink, prometheus) with its pid file,
# its log, its config where it has one and its data.
# Sluice runs with config/sluice.toml and the settings `env` prints: your shell's SLUICE_* variables are not
# passed on, so the stack is the same for everyone. `eval "$(scripts/stack.sh env)"` points `bun src/cli.ts`
# (send, rules, channel) at it.
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
rules_file="$repo_root/deploy/prometheus/sluice-rules.yml"
dashboard_file="deploy/grafana/sluice-dashboard.json"

dir_default="./.stack"
port_base_default=14222
host="127.0.0.1"
# streams.partitionCount's default (src/config/schema.ts): the server's mappings and Sluice must use the same.
partitions=4
# Offsets from the port base.
sluice_port_offset=1
sink_port_offset=2
receiver_port_offset=3
prometheus_port_offset=4
nats_monitor_port_offset=5
# nats-server: the caps of Sluice's embedded server (nats.embeddedStoreBytesMax, nats.embeddedMemoryBytesMax),
# which Sluice's default stream caps (streams.*BytesMax, 6.5 GiB in all) fit in; limits, not reservations.
store_bytes_max=$((8 * 1024 * 1024 * 1024))
memory_bytes_max=$((256 * 1024 * 1024))
# nats-server warns above 8 MiB; Sluice needs streams.messageBytesMax + 64 KiB (1 MiB + 64 KiB by default).
payload_bytes_max=$((8 * 1024 * 1024))
# Prometheus: how often it scrapes and evaluates the rules (the alerts' `for:` durations are minutes).
scrape_interval="5s"
# Waits at start. Sluice's first start creates its streams and LMDB partitions: seconds, more on a busy machine.
nats_start_wait_s_max=15
sluice_start_wait_s_max=60
sink_start_wait_s_max=20
receiver_start_wait_s_max=10
prometheus_start_wait_s_max=30
# Stop: Sluice's graceful stop is shutdown.timeoutMs (15 s by default), the sink's --stop-timeout-ms 10 s.
stop_wait_s_max=20
poll_interval_s=0.2
# One HTTP request to a part: loopback answers in milliseconds; a stopped process never answers.
http_timeout_s=2
bun_version="1.4.5"

say() { printf 'stack: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

usage() {
  sed -n '7,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---- arguments ----------------------------------------------------------------------------------------------

command="${1:-}"
[ -n "$command" ] || usage
shift
dir="$dir_default"
port_base=""
clean=0
listen=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    --port-base) port_base="${2:?--port-base needs a port number}"; shift 2 ;;
    --clean) clean=1; shift ;;
    --listen) listen="${2:?--listen needs HOST:PORT}"; shift 2 ;;
    -h | --help) usage ;;
    *) die "unknown option $1 (try --help)" ;;
  esac
done

is_int() { [[ "$1" =~ ^[0-9]+$ ]]; }

# ---- the ERP receiver ---------------------------------------------------------------------------------------

# The stand-in ERP endpoint the sink posts to: answers 204 to every POST and logs it as one JSON line (the
# Idempotency-Key, the size, the body). GET / counts what it received. The compose file runs it too, as
# `bash scripts/stack.sh receiver --listen 0.0.0.0:9000`, so this is its only copy.
receiver_js='// sluice-stack-receiver
const [host, port] = [process.argv[1], Number(process.argv[2])];
let received = 0;
const server = Bun.serve({
  hostname: host,
  port,
  async fetch(req) {
    const url = new URL(req.url);
    if (req.method === "GET" && url.pathname === "/") return Response.json({ received });
    if (req.method !== "POST") return new Response("POST deliveries here\n", { status: 405 });
    const text = await req.text();
    let body = text;
    try { body = JSON.parse(text); } catch {}
    received++;
    console.log(JSON.stringify({ at: new Date().toISOString(), msg: "received", path: url.pathname,
      idempotencyKey: req.headers.get("idempotency-key"), bytes: text.length, body }));
    return new Response(null, { status: 204 });
  },
});
console.log(JSON.stringify({ at: new Date().toISOString(), msg: "receiver listening", host, port: server.port }));
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => { server.stop(true); process.exit(0); });
'

cmd_receiver() {
  [[ "$listen" =~ ^(.+):([0-9]+)$ ]] || die "receiver needs --listen HOST:PORT, e.g. --listen 127.0.0.1:14225"
  exec bun -e "$receiver_js" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
}

if [ "$command" = "receiver" ]; then cmd_receiver; fi

# ---- settings -----------------------------------------------------------------------------------------------

# A stack's own port base, the one `up` was given: status and down always use it, env and ports unless
# --port-base names another.
if [ -f "$dir/stack.env" ] && { [ -z "$port_base" ] || [ "$command" = "status" ] || [ "$command" = "down" ]; }; then
  port_base="$(. "$dir/stack.env" && echo "${port_base:-}")"
fi
port_base="${port_base:-$port_base_default}"
is_int "$port_base" && [ "$port_base" -ge 1024 ] && [ $((port_base + nats_monitor_port_offset)) -le 65535 ] ||
  die "--port-base must be 1024 or more and leave room for N+${nats_monitor_port_offset} under 65536, got $port_base"

nats_port=$port_base
nats_monitor_port=$((port_base + nats_monitor_port_offset))
sluice_port=$((port_base + sluice_port_offset))
sink_port=$((port_base + sink_port_offset))
receiver_port=$((port_base + receiver_port_offset))
prometheus_port=$((port_base + prometheus_port_offset))
nats_url="nats://${host}:${nats_port}"

# Absolute: the parts run from the repository root and the configs name paths under DIR.
case "$dir" in /*) ;; *) dir="$PWD/${dir#./}" ;; esac
[ ! -d "$dir" ] || dir="$(cd "$dir" && pwd)"
# DIR as the commands printed back (run from the repository root) must name it: not at all when it is the default.
dir_arg() { { [ "$PWD" = "$repo_root" ] && [ "$dir" = "$PWD/.stack" ]; } || printf ' --dir %s' "$dir"; }

# ---- the parts ----------------------------------------------------------------------------------------------

# In the order `up` starts them.
parts=(nats sluice receiver sink prometheus)

part_dir() { echo "$dir/$1"; }
pid_file() { echo "$dir/$1/$1.pid"; }
log_file() { echo "$dir/$1/$1.log"; }

part_port() {
  case "$1" in
    nats) echo "$nats_port" ;;
    sluice) echo "$sluice_port" ;;
    receiver) echo "$receiver_port" ;;
    sink) echo "$sink_port" ;;
    prometheus) echo "$prometheus_port" ;;
  esac
}

part_url() {
  case "$1" in
    nats) echo "$nats_url" ;;
    sluice) echo "http://${host}:${sluice_port}" ;;
    receiver) echo "http://${host}:${receiver_port}/erp" ;;
    sink) echo "http://${host}:${sink_port}/metrics" ;;
    prometheus) echo "http://${host}:${prometheus_port}" ;;
  esac
}

# What answers when the part is up: the URL that must return 200.
probe_url() {
  case "$1" in
    nats) echo "http://${host}:${nats_monitor_port}/healthz?js-enabled-only=true" ;;
    sluice) echo "http://${host}:${sluice_port}/readyz" ;;
    receiver) echo "http://${host}:${receiver_port}/" ;;
    sink) echo "http://${host}:${sink_port}/metrics" ;;
    prometheus) echo "http://${host}:${prometheus_port}/-/ready" ;;
  esac
}

# A word of the process's command line: a pid file can outlive its process and the pid be reused.
part_marker() {
  case "$1" in
    nats) echo "nats-server" ;;
    sluice) echo "src/cli.ts" ;;
    receiver) echo "sluice-stack-receiver" ;;
    sink) echo "src/sink/main.ts" ;;
    prometheus) echo "prometheus" ;;
  esac
}

part_pid() {
  local file
  file="$(pid_file "$1")"
  [ -f "$file" ] && cat "$file" || true
}

pid_is() {
  local pid="$1" marker="$2"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ ! -d /proc ] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

is_running() { pid_is "$(part_pid "$1")" "$(part_marker "$1")"; }

answers() { curl -fsS -o /dev/null --max-time "$http_timeout_s" "$(probe_url "$1")" 2>/dev/null; }

# Sluice's settings in the stack (config/sluice.toml for the rest).
sluice_env() {
  cat <<EOF
SLUICE_NATS_URL=${nats_url}
SLUICE_DATA_DIR=${dir}/sluice/data
SLUICE_HTTP_HOST=${host}
SLUICE_HTTP_PORT=${sluice_port}
SLUICE_STREAMS_PARTITION_COUNT=${partitions}
EOF
}

# Starts "$@" from the repository root in the background, detached from this script's terminal and pipes, in
# the caller's environment without its SLUICE_* variables (Sluice refuses ones it does not know, and the
# stack's settings must not depend on the shell it was started from).
start_part() {
  local name="$1" unset=() var
  shift
  for var in $(compgen -e); do [[ "$var" != SLUICE_* ]] || unset+=(-u "$var"); done
  mkdir -p "$(part_dir "$name")"
  (cd "$repo_root" && exec env ${unset[@]+"${unset[@]}"} "$@") </dev/null >>"$(log_file "$name")" 2>&1 &
  echo $! >"$(pid_file "$name")"
}

# The mappings block's lines, from the function Sluice's embedded server uses, so the two never drift (as in
# scripts/nats-cluster.sh; the test checks the compose file's copy against the same function).
mapping_lines() {
  (cd "$repo_root" && bun -e '
    import { subjectMappings } from "./src/stream/subjects.ts";
    for (const [from, to] of Object.entries(subjectMappings(Number(process.argv[1]))))
      console.log(`  ${JSON.stringify(from)}: ${JSON.stringify(to)}`);
  ' "$partitions")
}

nats_config() {
  local mappings
  mappings="$(mapping_lines)" || die "could not read the subject mappings from src/stream/subjects.ts (bun's error is above)"
  cat <<EOF
# Written by scripts/stack.sh up; rewritten at every up. deploy/compose/docker-compose.yml has its Docker twin.
server_name: stack
listen: "${host}:${nats_port}"
http: "${host}:${nats_monitor_port}"
max_payload: ${payload_bytes_max}
jetstream {
  store_dir: "${dir}/nats/data"
  max_file_store: ${store_bytes_max}
  max_memory_store: ${memory_bytes_max}
}
mappings = {
${mappings}
}
EOF
}

prometheus_config() {
  cat <<EOF
# Written by scripts/stack.sh up; rewritten at every up. deploy/compose/prometheus.yml is its Docker twin.
global:
  scrape_interval: ${scrape_interval}
  evaluation_interval: ${scrape_interval}
rule_files:
  - "${rules_file}"
scrape_configs:
  - job_name: sluice
    static_configs:
      - targets: ["${host}:${sluice_port}"]
  - job_name: sluice-sink
    static_configs:
      - targets: ["${host}:${sink_port}"]
EOF
}

# ---- tools --------------------------------------------------------------------------------------------------

resolve() {
  local name="$1"
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  # Debian puts nats-server in /usr/sbin, which is not on a non-root PATH.
  if [ -x "/usr/sbin/$name" ]; then echo "/usr/sbin/$name"; return; fi
  return 1
}

require_tools() {
  resolve bun >/dev/null || die "bun not found: install Bun ${bun_version} (npm install -g bun@${bun_version})"
  resolve curl >/dev/null || die "curl not found: install it (Debian: apt-get install -y curl)"
  resolve nats-server >/dev/null || die "nats-server not found: install it (Debian: apt-get install -y nats-server)"
  resolve prometheus >/dev/null ||
    die "prometheus not found: install it (Debian: apt-get install -y --no-install-recommends prometheus, or a 2.x release from https://prometheus.io/download/ on PATH)"
  [ -f "$rules_file" ] || die "the rules file $rules_file is missing: run this from a complete checkout"
}

# ---- up -----------------------------------------------------------------------------------------------------

port_in_use() { (exec 3<>"/dev/tcp/${host}/$1") 2>/dev/null; }

check_ports_free() {
  local port
  for port in "$nats_port" "$nats_monitor_port" "$sluice_port" "$sink_port" "$receiver_port" "$prometheus_port"; do
    ! port_in_use "$port" ||
      die "port $port on ${host} is in use: pick another --port-base, or stop what holds it (an earlier stack: scripts/stack.sh down --dir DIR)"
  done
}

# Waits until part $1 answers, its process alive; on failure says what failed, the log to read and the fix.
wait_until_up() {
  local name="$1" wait_s="$2" deadline log
  deadline=$((SECONDS + wait_s))
  log="$(log_file "$name")"
  until is_running "$name" && answers "$name"; do
    if ! is_running "$name"; then
      tail -n 20 "$log" >&2 || true
      die "$name exited at start (the end of $log is above): fix what it says, then run 'scripts/stack.sh up$(dir_arg)' again (a port in use: pick another --port-base)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || {
      tail -n 20 "$log" >&2 || true
      die "$name did not answer $(probe_url "$name") within ${wait_s} s (the end of $log is above): fix what it says, then run 'scripts/stack.sh up$(dir_arg)' again"
    }
    sleep "$poll_interval_s"
  done
  say "$name up ($(part_url "$name"))"
}

# A part of an earlier up in this DIR that still runs; empty when none does.
running_part() {
  local name
  for name in "${parts[@]}"; do
    if is_running "$name"; then echo "$name (pid $(part_pid "$name"))"; return 0; fi
  done
}

cmd_up() {
  local running
  require_tools
  if [ -d "$dir" ] && [ ! -f "$dir/stack.env" ] && [ -n "$(ls -A "$dir")" ]; then
    die "$dir is not empty and holds no stack (no stack.env): pick a new or empty directory with --dir"
  fi
  if [ -f "$dir/stack.env" ]; then
    running="$(running_part)"
    [ -z "$running" ] ||
      die "the stack in $dir is running ($running): see 'scripts/stack.sh status$(dir_arg)', or 'scripts/stack.sh down$(dir_arg)' first"
  fi
  check_ports_free
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  printf 'port_base=%s\n' "$port_base" >"$dir/stack.env"
  # A failed start leaves nothing running: the ports are free again and the next up does not refuse.
  trap 'say "start failed; stopping what it started (logs kept in $dir)"; stop_parts' EXIT

  mkdir -p "$dir/nats/data"
  nats_config >"$dir/nats/nats-server.conf"
  start_part nats "$(resolve nats-server)" -c "$dir/nats/nats-server.conf"
  wait_until_up nats "$nats_start_wait_s_max"

  # The receiver before the sink, which posts to it; the sink after Sluice, which creates SLUICE_OUT.
  start_part receiver bun -e "$receiver_js" "$host" "$receiver_port"
  mkdir -p "$dir/sluice/data"
  local settings=()
  mapfile -t settings < <(sluice_env)
  start_part sluice "${settings[@]}" bun src/cli.ts start
  wait_until_up receiver "$receiver_start_wait_s_max"
  wait_until_up sluice "$sluice_start_wait_s_max"

  start_part sink bun src/sink/main.ts --source erp --url "http://${host}:${receiver_port}/erp" \
    --nats "$nats_url" --metrics-port "$sink_port" --metrics-host "$host"
  wait_until_up sink "$sink_start_wait_s_max"

  mkdir -p "$dir/prometheus/data"
  prometheus_config >"$dir/prometheus/prometheus.yml"
  start_part prometheus "$(resolve prometheus)" --config.file="$dir/prometheus/prometheus.yml" \
    --storage.tsdb.path="$dir/prometheus/data" --web.listen-address="${host}:${prometheus_port}"
  wait_until_up prometheus "$prometheus_start_wait_s_max"
  trap - EXIT
  print_summary
}

print_summary() {
  local p="http://${host}:${prometheus_port}" cd_hint="" script="scripts/stack.sh"
  # The commands below run from the repository root.
  if [ "$PWD" != "$repo_root" ]; then
    cd_hint=$'\n'"  cd $repo_root"
    script="$repo_root/scripts/stack.sh"
  fi
  cat <<EOF
Sluice stack up in $dir
  Sluice        http://${host}:${sluice_port}   /healthz /readyz /v1/stock/<sku> /v1/orders/<channel>/<id>
  metrics       http://${host}:${sluice_port}/metrics   the sink's: http://${host}:${sink_port}/metrics
  Prometheus    ${p}/targets   alerts: ${p}/alerts   rules: ${p}/rules
  NATS          ${nats_url}   monitoring: http://${host}:${nats_monitor_port}
  ERP receiver  http://${host}:${receiver_port}/erp   each delivery is a line of its log
  logs          $dir/<part>/<part>.log for nats, sluice, receiver, sink, prometheus

Try it:${cd_hint}
  eval "\$(scripts/stack.sh env$(dir_arg))"
  bun src/cli.ts send sluice.in.stock.SKU-1 '{"type":"received","warehouse":"w1","qty":10}'
  curl -s http://${host}:${sluice_port}/v1/stock/SKU-1

Grafana: Dashboards > New > Import, upload ${dashboard_file}, then pick a Prometheus data
  source with URL ${p} (deploy/grafana/README.md). The compose file runs Grafana with both provisioned.
Stop: ${script} down$(dir_arg)   (--clean also removes $dir)
EOF
}

# ---- status -------------------------------------------------------------------------------------------------

require_stack() {
  [ -f "$dir/stack.env" ] || {
    say "no stack in $dir (no stack.env): start one with 'scripts/stack.sh up$(dir_arg)'"
    exit "${1:-1}"
  }
}

# Exits 0 only when every part is up.
cmd_status() {
  local name state not_up=0
  require_stack
  for name in "${parts[@]}"; do
    if ! is_running "$name"; then state="down"
    elif answers "$name"; then state="up (pid $(part_pid "$name"))"
    else state="not answering $(probe_url "$name") (pid $(part_pid "$name"); starting, stopped or failing: see $(log_file "$name"))"
    fi
    [[ "$state" == up* ]] || not_up=$((not_up + 1))
    printf '%-11s %-38s %s\n' "$name" "$(part_url "$name")" "$state"
  done
  [ "$not_up" -eq 0 ]
}

# ---- down ---------------------------------------------------------------------------------------------------

# SIGTERM to the given parts at once, then SIGKILL whatever is left after the wait.
stop_group() {
  local name pid pids=() deadline
  for name in "$@"; do
    pid="$(part_pid "$name")"
    rm -f "$(pid_file "$name")"
    pid_is "$pid" "$(part_marker "$name")" || continue
    kill -TERM "$pid" 2>/dev/null || true
    # A stopped (SIGSTOP) process handles SIGTERM only once continued.
    kill -CONT "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  deadline=$((SECONDS + stop_wait_s_max))
  for pid in ${pids[@]+"${pids[@]}"}; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep "$poll_interval_s"; done
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid ignored SIGTERM for ${stop_wait_s_max} s; killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

# Readers first (Prometheus, the sink: its message in hand is delivered again next time), then the receiver
# and Sluice (which commits and acks its batch in flight, so NATS must still run), then NATS.
stop_parts() {
  stop_group prometheus sink
  stop_group receiver sluice
  stop_group nats
}

cmd_down() {
  require_stack 0
  stop_parts
  if [ "$clean" = "1" ]; then
    rm -rf "$dir"
    say "stopped; removed $dir"
  else
    say "stopped; data and logs kept in $dir (down --clean removes them)"
  fi
}

# ---- env, ports ---------------------------------------------------------------------------------------------

cmd_env() {
  local line
  while IFS= read -r line; do printf 'export %s=%q\n' "${line%%=*}" "${line#*=}"; done < <(sluice_env)
}

cmd_ports() {
  local name
  for name in "${parts[@]}"; do printf '%s %s %s\n' "$name" "$(part_port "$name")" "$(part_url "$name")"; done
  printf 'nats-monitoring %s http://%s:%s\n' "$nats_monitor_port" "$host" "$nats_monitor_port"
}

case "$command" in
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
  env) cmd_env ;;
  ports) cmd_ports ;;
  *) usage ;;
esac
