#!/usr/bin/env bash
# Resident memory and CPU of the release aif-node-exporter at 1 Hz with 8
# simulated GPUs, pushing to a local Pushgateway, for ${SECONDS_TO_RUN:-60} s,
# next to the peer (a Python prometheus_client exporter doing the same pushes)
# measured in the same run. Reads /proc; prints medians.
#
#   bash benches/exporter-footprint.sh
#
# Needs: prometheus-pushgateway (Debian), python3 + pip (the peer's venv is
# created under target/footprint-venv on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_S=${SECONDS_TO_RUN:-60}

cargo build --release --locked -p aif-node-exporter >&2
EXE=target/release/aif-node-exporter

VENV=target/footprint-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q prometheus_client >&2
fi

T=$(mktemp -d)
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"; }
PIDS=()
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
prometheus-pushgateway --web.listen-address="127.0.0.1:$port" >"$T/pgw.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done

RUST_LOG=warn "$EXE" --source simulated --gpus 8 --interval 1s --buffer "$T/buf.db" \
  --pushgateway "http://127.0.0.1:$port" --instance footprint >"$T/exp.log" 2>&1 &
EXP=$!; PIDS+=($EXP)
"$VENV/bin/python" benches/footprint/peer_exporter.py "127.0.0.1:$port" 8 "$((RUN_S + 5))" >"$T/peer.log" 2>&1 &
PEER=$!; PIDS+=($PEER)

# CPU time in ns, summed over the process's threads (schedstat: ns precision,
# unlike /proc/PID/stat's 10 ms clock ticks).
ticks() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d\n", s}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
HZ=1000000000  # schedstat counts nanoseconds

sleep 3  # let both settle (imports, first pushes) before measuring
e0=$(ticks $EXP); p0=$(ticks $PEER); start=$(date +%s.%N)
: >"$T/rss_exp"; : >"$T/rss_peer"
for _ in $(seq 1 "$RUN_S"); do
  rss_kib $EXP >>"$T/rss_exp"; rss_kib $PEER >>"$T/rss_peer"
  sleep 1
done
e1=$(ticks $EXP); p1=$(ticks $PEER); end=$(date +%s.%N)

median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
python3 - "$HZ" "$start" "$end" "$e0" "$e1" "$p0" "$p1" "$(median "$T/rss_exp")" "$(median "$T/rss_peer")" \
  "$(sort -n "$T/rss_exp" | tail -1)" "$(sort -n "$T/rss_peer" | tail -1)" <<'PY'
import sys
hz, start, end, e0, e1, p0, p1, rexp, rpeer, mexp, mpeer = map(float, sys.argv[1:])
wall = end - start
cpu_exp = (e1 - e0) / hz / wall * 100
cpu_peer = (p1 - p0) / hz / wall * 100
print(f"window: {wall:.1f} s, 8 simulated GPUs at 1 Hz, pushing to a local Pushgateway")
print(f"aif-node-exporter: RSS median {rexp/1024:.2f} MiB (max {mexp/1024:.2f}), CPU {cpu_exp:.3f} % of one core")
print(f"python peer:       RSS median {rpeer/1024:.2f} MiB (max {mpeer/1024:.2f}), CPU {cpu_peer:.3f} % of one core")
print(f"ratio exporter/peer: RSS {rexp/rpeer:.2f}, CPU {cpu_exp/cpu_peer if cpu_peer else float('nan'):.2f}")
PY
grep -v '^$' "$T/exp.log" | tail -5 >&2 || true
echo "linked: $(ldd "$EXE" | awk '{print $1}' | tr '\n' ' ')"
