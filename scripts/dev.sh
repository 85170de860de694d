#!/usr/bin/env bash
# The README's two commands on a fresh machine:
#   ./scripts/dev.sh start   installs what is missing, then runs Sluice on an embedded local nats-server
#   ./scripts/dev.sh test    installs what is missing, then type-checks, lints and runs the whole suite
# What it installs when absent: Bun (from npm), nats-server (Debian's package), the locked dependencies,
# and for `test` Chromium (Debian's package: the bench report test renders the HTML report headless) and
# promtool (Debian's `prometheus` package: the Prometheus kit's tests run `promtool check|test`).
set -euo pipefail
cd "$(dirname "$0")/.."

bun_version="1.4.5" # the version bun.lock and the Dockerfile were made with
say() { printf 'sluice-dev: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
is_root() { [ "$(id -u)" = "0" ]; }

ensure_bun() {
  if command -v bun >/dev/null 2>&1; then
    # Bun.serve routes, Bun.TOML and --cpu-prof need a recent Bun: refuse an old one with the fix.
    local have major minor
    have=$(bun --version 2>/dev/null || echo 0.0.0)
    major=${have%%.*}; minor=${have#*.}; minor=${minor%%.*}
    if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 3 ]; }; then
      die "Bun ${have} is too old (1.3 or newer, ${bun_version} tested): run 'npm install -g bun@${bun_version}'"
    fi
    return
  fi
  command -v npm >/dev/null 2>&1 || die "Bun is missing and so is npm: install Node.js 20+ with npm (or Bun ${bun_version}) and run this again"
  say "installing Bun ${bun_version} from npm"
  if is_root; then
    npm install -g --no-fund --no-audit "bun@${bun_version}" >&2
  else
    npm install -g --no-fund --no-audit "bun@${bun_version}" >&2 ||
      die "could not install Bun globally as $(id -un): run 'sudo npm install -g bun@${bun_version}' and run this again"
  fi
  command -v bun >/dev/null 2>&1 || die "Bun was installed but is not on PATH: add \"$(npm prefix -g)/bin\" to PATH"
}

apt_updated=0
apt_install() {
  # One `apt-get update` per run, however many packages are missing.
  if [ "$apt_updated" = "0" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

ensure_nats_server() {
  if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then return; fi
  command -v apt-get >/dev/null 2>&1 ||
    die "nats-server is missing and this is not a Debian-like system: install nats-server 2.9 or newer on PATH, or set SLUICE_NATS_URL to a server you run"
  is_root || die "nats-server is missing: run 'sudo apt-get update && sudo apt-get install -y nats-server' and run this again"
  say "installing nats-server from Debian's packages"
  apt_install nats-server
}

ensure_chromium() {
  # test/integration/bench-report.test.ts opens the bench's HTML report in headless Chromium.
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then return; fi
  command -v apt-get >/dev/null 2>&1 ||
    die "chromium is missing and this is not a Debian-like system: install Chromium as 'chromium' on PATH (the bench report test runs it headless) and run this again"
  is_root || die "chromium is missing: run 'sudo apt-get update && sudo apt-get install -y chromium' and run this again"
  say "installing chromium from Debian's packages (the bench report test renders its HTML headless)"
  apt_install chromium
}

ensure_promtool() {
  # test/integration/promtool.test.ts checks /metrics and deploy/prometheus/ with promtool; without it, it fails.
  if command -v promtool >/dev/null 2>&1; then return; fi
  command -v apt-get >/dev/null 2>&1 ||
    die "promtool is missing and this is not a Debian-like system: put promtool (from a Prometheus 2.x release, https://prometheus.io/download/) on PATH and run this again"
  is_root || die "promtool is missing: run 'sudo apt-get update && sudo apt-get install -y prometheus' and run this again"
  say "installing prometheus from Debian's packages (for promtool: the Prometheus kit's tests)"
  apt_install --no-install-recommends prometheus # not node-exporter, smartmontools, ipmitool…
  command -v promtool >/dev/null 2>&1 || die "the prometheus package was installed but promtool is not on PATH: install a Prometheus 2.x release's promtool on PATH"
}

ensure_deps() {
  bun install --frozen-lockfile >&2 || die "bun install --frozen-lockfile failed: bun.lock and package.json disagree, or the npm registry is unreachable"
}

run_tests() {
  # A failed check still ends with the summary line CI reads.
  say "type check (tsc --noEmit, strict)"
  bunx tsc --noEmit || { printf '0 passed, 1 failed\n'; return 1; }
  say "lint and format check (biome)"
  bunx biome check src test bench scripts || { printf '0 passed, 1 failed\n'; return 1; }
  say "tests (real nats-server per file, real LMDB)"
  local log
  log=$(mktemp)
  set +e
  bun test --timeout 60000 "$@" 2>&1 | tee "$log"
  local code=${PIPESTATUS[0]}
  set -e
  local passed failed
  passed=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  failed=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  rm -f "$log"
  if [ "$code" -ne 0 ] && [ "$failed" = "0" ]; then failed=1; fi
  printf '%s passed, %s failed\n' "$passed" "$failed"
  return "$code"
}

cmd="${1:-}"
case "$cmd" in
  start)
    shift
    ensure_bun; ensure_nats_server; ensure_deps
    exec bun src/cli.ts start "$@"
    ;;
  test)
    shift
    ensure_bun; ensure_nats_server; ensure_chromium; ensure_promtool; ensure_deps
    run_tests "$@"
    ;;
  *)
    die "usage: ./scripts/dev.sh start | test [bun test filters]"
    ;;
esac
