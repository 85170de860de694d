# syntax=docker/dockerfile:1
#
# Sluice: one container runs `bun src/cli.ts start`, the same command as a checkout, with its embedded
# nats-server (Debian's) on loopback and its LMDB partitions and JetStream store under /var/lib/sluice.
#
#   docker build -t sluice .
#   export SLUICE_HTTP_TOKENS="ops:admin:$(openssl rand -hex 32)"   # keep it in your secret store
#   docker run -p 8080:8080 -e SLUICE_HTTP_TOKENS -v sluice-data:/var/lib/sluice --stop-timeout 25 sluice
#
# The HTTP port listens on every interface here, so Sluice refuses to start (exit 78) without bearer tokens in
# SLUICE_HTTP_TOKENS (name:scope:secret, comma-separated; docs/http.md, Authentication). `-e NAME` without a
# value passes the host's variable, keeping the secret out of the command line.
# Every setting is an SLUICE_<SECTION>_<KEY> variable (docs/configuration.md); SLUICE_NATS_URL=nats://...
# uses a server you run instead of the embedded one. test/integration/dockerfile.test.ts checks this file
# and runs its install and start commands (there is no Docker engine on the dev and CI machines).

# ---- build: the production dependencies, exactly as bun.lock pins them ----------------------------------
# Pinned to the Bun the project develops and tests with (@types/bun in package.json); Debian bookworm based.
FROM oven/bun:1.4.5 AS build
WORKDIR /app
# Manifests before sources: the dependency layer is reused until package.json, bun.lock or bunfig.toml change.
COPY package.json bun.lock bunfig.toml ./
# --frozen-lockfile fails the build if package.json and bun.lock disagree instead of resolving anew (the flag
# overrides bunfig.toml's frozenLockfile = false). --production leaves out tsc, biome and the types.
# lmdb and msgpackr-extract ship their native code as per-platform optional packages (@lmdb/lmdb-linux-x64,
# @msgpackr-extract/msgpackr-extract-linux-x64, each with glibc and musl builds); bun installs the ones for the
# platform it builds for, so `docker build --platform linux/amd64` gives linux-x64 glibc. Their install
# scripts (default-trusted by bun) only check that a prebuilt binary loads; nothing is compiled.
RUN bun install --frozen-lockfile --production
# Bun reads tsconfig.json when it transpiles src/ at run time, as it does in a checkout.
COPY tsconfig.json ./
COPY src ./src
COPY config ./config
COPY scripts ./scripts

# ---- runtime ---------------------------------------------------------------------------------------------
# Same Bun and Debian release as the build stage (the native binaries were chosen for its glibc), minus the
# extras of the full image.
FROM oven/bun:1.4.5-slim AS runtime
# The embedded default needs a nats-server binary: Debian's package puts it in /usr/sbin, where Sluice looks
# after PATH (src/stream/embedded-server.ts). No recommends, no apt lists: only the binary stays.
RUN apt-get update \
  && apt-get install -y --no-install-recommends nats-server \
  && rm -rf /var/lib/apt/lists/*
# A fixed, unprivileged uid (not the base image's `bun`, uid 1000) so volume ownership and Kubernetes
# runAsUser/fsGroup can name it. No home and no login shell: the service needs neither.
# The data dir is created owned by sluice before VOLUME below, so a new named volume starts out owned by it
# (a bind mount keeps the host's ownership: chown it to 10001 on the host).
RUN groupadd --system --gid 10001 sluice \
  && useradd --system --uid 10001 --gid sluice --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin sluice \
  && install -d -o sluice -g sluice -m 0750 /var/lib/sluice
WORKDIR /app
# Code and dependencies stay owned by root: the service reads them but cannot rewrite itself.
COPY --from=build /app ./
# Fail the build, not the first start, if lmdb's or msgpackr-extract's native binding does not load on this
# image's platform and libc; the throwaway database is removed in the same layer.
RUN bun -e 'const { open } = require("lmdb"); require("msgpackr-extract"); \
    const db = open({ path: "/tmp/lmdb-check" }); db.putSync("k", 1); \
    if (db.get("k") !== 1) throw new Error("lmdb read back a different value"); db.close();' \
  && rm -rf /tmp/lmdb-check
# The data dir lives on the volume; HTTP listens on every interface so `-p 8080:8080` reaches it (the
# embedded nats-server stays on loopback whatever this says), which needs SLUICE_HTTP_TOKENS at `docker run`:
# no token is baked into the image. Overridable with -e at `docker run`.
ENV SLUICE_DATA_DIR=/var/lib/sluice \
  SLUICE_HTTP_HOST=0.0.0.0 \
  SLUICE_HTTP_PORT=8080
USER sluice:sluice
# /healthz, /readyz, /metrics and /v1.
EXPOSE 8080
# LMDB partitions and the JetStream store must outlive the container.
VOLUME /var/lib/sluice
# Sluice stops gracefully on SIGTERM: partitions commit and ack their batch, then NATS, LMDB and nats-server
# close, within shutdown.timeoutMs (default 15 s). Docker's default stop grace is 10 s, so give it more
# (--stop-timeout 25, compose stop_grace_period: 25s, Kubernetes terminationGracePeriodSeconds: 25); a kill
# past it loses no data (LMDB commits are atomic, unacked input is redelivered) but ends the stop uncleanly.
STOPSIGNAL SIGTERM
# Liveness through HTTP without curl (the slim image has none). start-period covers the embedded
# nats-server's start and stream provisioning, before which /healthz is not served yet. Readiness
# (`bun scripts/healthcheck.ts --ready`, /readyz) is for orchestrators that route traffic. Probes need no
# token by default; with SLUICE_HTTP_PROBES_TOKEN_REQUIRED=true the probe sends the first SLUICE_HTTP_TOKENS
# secret (or SLUICE_HTTP_TOKEN).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["bun", "scripts/healthcheck.ts"]
# Exec form, so bun is PID 1 and receives SIGTERM itself: Sluice handles SIGTERM/SIGINT and reaps its only
# child (nats-server), so no init is needed. The base image's entrypoint script is replaced on purpose.
ENTRYPOINT ["bun", "src/cli.ts"]
# Other commands run the same way and load the same settings, so they need the token too (or a loopback
# host): `docker run --rm -e SLUICE_HTTP_TOKENS sluice config print`, `... sluice partition SKU-1`.
CMD ["start"]
