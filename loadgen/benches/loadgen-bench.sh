#!/usr/bin/env bash
# aif-loadgen's maximum request rate against a local nginx, next to wrk's
# against the same nginx in the same run, with equal connections and cores;
# then aif-loadgen's own RSS and CPU at 1 000 req/s.
#
# nginx (Debian `nginx`) runs with one worker pinned to CPU 0 and answers
# `200 ok` from memory; each client is pinned to CPU 1 (taskset) and keeps
# CONNECTIONS keep-alive connections for DURATION:
#   wrk -t1 -cCONNECTIONS -dDURATION http://127.0.0.1:PORT/
#   aif-loadgen --url http://127.0.0.1:PORT --concurrency CONNECTIONS --duration DURATION
# back to back, ROUNDS times; the rates are medians, the ratio is the median
# of each round's loadgen / wrk (the two ran seconds apart; target >= 0.5). Then one open-loop run at 1 000 req/s
# (constant arrivals, 20 s) samples aif-loadgen's RSS (VmRSS, every 0.2 s;
# the maximum is reported) and its CPU time (utime + stime) / wall time.
#
# Usage: bench-api/benches/loadgen-bench.sh [DURATION (10s)] [CONNECTIONS (16)] [ROUNDS (3)]
set -euo pipefail

DURATION=${1:-10s}
CONNECTIONS=${2:-16}
ROUNDS=${3:-3}
BENCH=loadgen-bench
# shellcheck source=nginx-common.sh
source "$(dirname "$0")/nginx-common.sh"
: >"$T/wrk.rates"
: >"$T/loadgen.rates"
: >"$T/ratios"
for round in $(seq 1 "$ROUNDS"); do
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "$URL/" >"$T/wrk.txt"
    awk '/^Requests\/sec:/ {print $2}' "$T/wrk.txt" >>"$T/wrk.rates"
    RUST_LOG=warn taskset -c 1 "$LOADGEN" --url "$URL" --concurrency "$CONNECTIONS" \
        --duration "$DURATION" --progress-every 0s --result-file "$T/r.json" >/dev/null
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["request_throughput"]); assert r["failed"] == 0, r["errors_by_kind"]' "$T/r.json" >>"$T/loadgen.rates"
    python3 -c "print(f'{$(tail -1 "$T/loadgen.rates") / $(tail -1 "$T/wrk.rates"):.3f}')" >>"$T/ratios"
    echo "loadgen-bench: round $round: wrk $(tail -1 "$T/wrk.rates") req/s, aif-loadgen $(tail -1 "$T/loadgen.rates") req/s, ratio $(tail -1 "$T/ratios")" >&2
done
WRK=$(median <"$T/wrk.rates")
LG=$(median <"$T/loadgen.rates")
RATIO=$(median <"$T/ratios")
echo "max rate, $CONNECTIONS connections, client on 1 core, nginx on 1 core, $DURATION x $ROUNDS (medians): aif-loadgen $LG req/s, wrk $WRK req/s, ratio $RATIO (median of the rounds' ratios; target >= 0.5)"

# Footprint at 1 000 req/s.
RUST_LOG=warn taskset -c 1 "$LOADGEN" --url "$URL" --request-rate 1000 --arrivals constant \
    --duration 20s --progress-every 0s --result-file "$T/f.json" >/dev/null &
LG_PID=$!
python3 - "$LG_PID" "$T/f.json" <<'PY'
import os, sys, time, json
pid = int(sys.argv[1])
tick = os.sysconf("SC_CLK_TCK")
start = time.monotonic()
rss_max = 0
cpu = 0.0
while True:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_max = max(rss_max, int(line.split()[1]))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / tick
        wall = time.monotonic() - start
    except (FileNotFoundError, ProcessLookupError):
        break
    time.sleep(0.2)
for _ in range(100):
    if os.path.exists(sys.argv[2]):
        break
    time.sleep(0.1)
r = json.load(open(sys.argv[2]))
print(f"at 1000 req/s for 20 s: achieved {r['request_throughput']} req/s, "
      f"RSS max {rss_max / 1024:.1f} MiB, CPU {100 * cpu / wall:.1f} % of one core, "
      f"p99 {r['p99_e2el_ms']} ms, {r['clients']} clients")
PY
wait "$LG_PID"
