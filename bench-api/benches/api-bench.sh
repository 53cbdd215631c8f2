#!/usr/bin/env bash
# Throughput and tail latency of `GET /api/v1/services` with 100 services.
#
# Builds the release binary, starts it on a free 127.0.0.1 port (local
# backend) with 100 services of the shipped `sleep` recipe (real processes, no
# endpoint, so nothing else listens), runs
#   wrk -t2 -c32 -d10s --latency http://127.0.0.1:PORT/api/v1/services
# prints requests/s and p99, and stops everything (services cancelled, API
# stopped). Target on a 2-core machine: >= 10 000 req/s.
#
# Usage: bench-api/benches/api-bench.sh [DURATION (default 10s)] [CONNECTIONS (default 32)]
# AIF_API_BIN=PATH benches another build (e.g. one of main, as a peer) instead.
set -euo pipefail

DURATION=${1:-10s}
CONNECTIONS=${2:-32}
SERVICES=100
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

for tool in wrk curl python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "api-bench: $tool is not installed (Debian: apt-get install $tool)" >&2
        exit 1
    fi
done

if [ -n "${AIF_API_BIN:-}" ]; then
    BIN=$AIF_API_BIN
else
    cargo build --release -p aif-bench-api --manifest-path "$ROOT/Cargo.toml" >&2
    BIN="$ROOT/target/release/aif-bench-api"
fi

T=$(mktemp -d /tmp/aif-api-bench-XXXXXX)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
API_PID=""

cleanup() {
    if [ -n "$API_PID" ] && kill -0 "$API_PID" 2>/dev/null; then
        for id in $(curl -s "$URL/api/v1/services" | python3 -c 'import json, sys; print(" ".join(s["id"] for s in json.load(sys.stdin) if s["status"] not in ("completed", "failed", "cancelled")))'); do
            curl -s -o /dev/null -X DELETE "$URL/api/v1/services/$id" || true
        done
        kill "$API_PID" 2>/dev/null || true
        wait "$API_PID" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT

RUST_LOG=warn "$BIN" --listen "127.0.0.1:$PORT" --db "$T/state.sqlite" \
    --recipes "$ROOT/bench-api/recipes" --log-dir "$T/logs" >"$T/api.log" 2>&1 &
API_PID=$!

for _ in $(seq 1 300); do
    curl -sf -o /dev/null "$URL/health" && break
    sleep 0.05
done
curl -sf -o /dev/null "$URL/health" || { echo "api-bench: API did not start:" >&2; cat "$T/api.log" >&2; exit 1; }

for _ in $(seq 1 "$SERVICES"); do
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
        -d '{"recipe": "sleep", "params": {"seconds": 3600}}' "$URL/api/v1/services"
done
running() { curl -s "$URL/api/v1/services?status=running" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
for _ in $(seq 1 600); do
    [ "$(running)" -ge "$SERVICES" ] && break
    sleep 0.05
done
BYTES=$(curl -s "$URL/api/v1/services" | wc -c)
echo "api-bench: $(running) running services; GET /api/v1/services is $BYTES bytes" >&2

wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$URL/api/v1/services" | tee "$T/wrk.txt" >&2

RPS=$(awk '/^Requests\/sec:/ {print $2}' "$T/wrk.txt")
P99=$(awk '$1 == "99%" {print $2}' "$T/wrk.txt")
ERRORS=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$T/wrk.txt")
echo "GET /api/v1/services with $SERVICES services: ${RPS} req/s, p99 ${P99}${ERRORS:+, non-2xx: $ERRORS}"
