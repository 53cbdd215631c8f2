#!/usr/bin/env bash
# The event-loop engine's maximum request rate against a local nginx, next to
# wrk's and the thread engine's, at 16 and at 256 keep-alive connections.
#
# nginx (Debian `nginx`, the setup of loadgen-bench.sh) runs one worker pinned
# to CPU 0 and serves a small static file from a temp directory; each client
# is pinned to CPU 1 (taskset; so `--engine events` runs one loop) and keeps
# CONNECTIONS connections for DURATION, back to back, ROUNDS times:
#   wrk -t1 -cCONNECTIONS -dDURATION http://127.0.0.1:PORT/small.txt
#   aif-loadgen --engine events  --concurrency CONNECTIONS --duration DURATION
#   aif-loadgen --engine threads --concurrency CONNECTIONS --duration DURATION
# and prints the median req/s of each and the ratios events/wrk and
# threads/wrk (medians of each round's ratio). Not a test: the numbers depend
# on the machine.
#
# Usage: loadgen/benches/evloop-bench.sh [DURATION (5s)] [ROUNDS (3)] [CONNECTIONS... (16 256)]
set -euo pipefail

DURATION=${1:-5s}
ROUNDS=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
CONNS=("$@")
[ ${#CONNS[@]} -gt 0 ] || CONNS=(16 256)
BENCH=evloop-bench
# shellcheck source=nginx-common.sh
source "$(dirname "$0")/nginx-common.sh"
loadgen_rate() { # ENGINE CONNECTIONS
    RUST_LOG=warn taskset -c 1 "$LOADGEN" --engine "$1" --url "$URL" --path /small.txt \
        --concurrency "$2" --duration "$DURATION" --progress-every 0s --result-file "$T/r.json" >/dev/null
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["failed"] == 0, r; print(r["request_throughput"])' "$T/r.json"
}
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.3f}')" "$1" "$2"; }

for C in "${CONNS[@]}"; do
    : >"$T/wrk.$C"; : >"$T/events.$C"; : >"$T/threads.$C"; : >"$T/re.$C"; : >"$T/rt.$C"
    for round in $(seq 1 "$ROUNDS"); do
        taskset -c 1 wrk -t1 -c"$C" -d"$DURATION" "$URL/small.txt" >"$T/wrk.txt"
        W=$(awk '/^Requests\/sec:/ {print $2}' "$T/wrk.txt")
        E=$(loadgen_rate events "$C")
        H=$(loadgen_rate threads "$C")
        echo "$W" >>"$T/wrk.$C"; echo "$E" >>"$T/events.$C"; echo "$H" >>"$T/threads.$C"
        ratio "$E" "$W" >>"$T/re.$C"; ratio "$H" "$W" >>"$T/rt.$C"
        echo "evloop-bench: $C connections, round $round: wrk $W, events $E, threads $H req/s" >&2
    done
    echo "$C connections, $DURATION x $ROUNDS, clients on CPU 1, nginx on CPU 0 (medians):" \
        "wrk $(median <"$T/wrk.$C") req/s," \
        "events $(median <"$T/events.$C") req/s," \
        "threads $(median <"$T/threads.$C") req/s," \
        "events/wrk $(median <"$T/re.$C"), threads/wrk $(median <"$T/rt.$C")"
done
