#!/usr/bin/env bash
# Resident memory and CPU of the release aif-node-exporter at 1 Hz with 8
# simulated GPUs, for ${SECONDS_TO_RUN:-60} s, measured from /proc in one run
# next to two peers; prints medians:
#
# - the exporter with both sinks: pushing to a local Pushgateway and
#   remote-writing to a local Prometheus (remote-write receiver);
# - vmagent (Debian victoria-metrics) scraping the same exposition every
#   second (from a second exporter, so the measured one does not also serve
#   scrapes) and remote-writing it, with its on-disk queue, to the same
#   Prometheus: the peer for durable shipping alone;
# - a Python prometheus_client exporter doing the same Pushgateway pushes.
#
#   bash benches/exporter-footprint.sh
#
# Needs: prometheus, prometheus-pushgateway, victoria-metrics (Debian),
# python3 + pip (the Python peer's venv is created under
# target/footprint-venv on first use).
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
port=$(free_port); prom_port=$(free_port); exp_port=$(free_port); vma_port=$(free_port); src_port=$(free_port)
prometheus-pushgateway --web.listen-address="127.0.0.1:$port" >"$T/pgw.log" 2>&1 &
PIDS+=($!)
printf 'global:\n  scrape_interval: 15s\nstorage:\n  tsdb:\n    out_of_order_time_window: 30m\n' >"$T/prom.yml"
prometheus --config.file="$T/prom.yml" --storage.tsdb.path="$T/prom" \
  --web.listen-address="127.0.0.1:$prom_port" --web.enable-remote-write-receiver >"$T/prom.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$port/-/ready"
wait_http "http://127.0.0.1:$prom_port/-/ready"

RUST_LOG=warn "$EXE" --source simulated --gpus 8 --interval 1s --buffer "$T/buf.db" \
  --pushgateway "http://127.0.0.1:$port" --remote-write "http://127.0.0.1:$prom_port/api/v1/write" \
  --listen "127.0.0.1:$exp_port" --instance footprint >"$T/exp.log" 2>&1 &
EXP=$!; PIDS+=($EXP)
# The exposition vmagent ships: the same 8 GPUs, no sink.
RUST_LOG=warn "$EXE" --source simulated --gpus 8 --interval 1s --buffer "$T/src.db" \
  --listen "127.0.0.1:$src_port" >"$T/src.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$exp_port/metrics"
wait_http "http://127.0.0.1:$src_port/metrics"
printf 'scrape_configs:\n  - job_name: aif_vmagent\n    scrape_interval: 1s\n    static_configs:\n      - targets: ["127.0.0.1:%s"]\n' "$src_port" >"$T/vmagent.yml"
vmagent -httpListenAddr="127.0.0.1:$vma_port" -promscrape.config="$T/vmagent.yml" \
  -remoteWrite.url="http://127.0.0.1:$prom_port/api/v1/write" -remoteWrite.tmpDataPath="$T/vmagent-queue" \
  >"$T/vmagent.log" 2>&1 &
VMA=$!; PIDS+=($VMA)
"$VENV/bin/python" benches/footprint/peer_exporter.py "127.0.0.1:$port" 8 "$((RUN_S + 5))" >"$T/peer.log" 2>&1 &
PEER=$!; PIDS+=($PEER)

# CPU time in ns, summed over the process's threads (schedstat: ns precision,
# unlike /proc/PID/stat's 10 ms clock ticks).
ticks() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d\n", s}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
HZ=1000000000  # schedstat counts nanoseconds

sleep 3  # let both settle (imports, first pushes) before measuring
e0=$(ticks $EXP); p0=$(ticks $PEER); v0=$(ticks $VMA); start=$(date +%s.%N)
: >"$T/rss_exp"; : >"$T/rss_peer"; : >"$T/rss_vma"
for _ in $(seq 1 "$RUN_S"); do
  rss_kib $EXP >>"$T/rss_exp"; rss_kib $PEER >>"$T/rss_peer"; rss_kib $VMA >>"$T/rss_vma"
  sleep 1
done
e1=$(ticks $EXP); p1=$(ticks $PEER); v1=$(ticks $VMA); end=$(date +%s.%N)

median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
python3 - "$HZ" "$start" "$end" "$e0" "$e1" "$p0" "$p1" "$v0" "$v1" \
  "$(median "$T/rss_exp")" "$(median "$T/rss_peer")" "$(median "$T/rss_vma")" \
  "$(sort -n "$T/rss_exp" | tail -1)" "$(sort -n "$T/rss_peer" | tail -1)" "$(sort -n "$T/rss_vma" | tail -1)" <<'PY'
import sys
hz, start, end, e0, e1, p0, p1, v0, v1, rexp, rpeer, rvma, mexp, mpeer, mvma = map(float, sys.argv[1:])
wall = end - start
cpu = lambda a, b: (b - a) / hz / wall * 100
cpu_exp, cpu_peer, cpu_vma = cpu(e0, e1), cpu(p0, p1), cpu(v0, v1)
ratio = lambda a, b: a / b if b else float("nan")
print(f"window: {wall:.1f} s, 8 simulated GPUs at 1 Hz")
print(f"aif-node-exporter (sample, buffer, Pushgateway + remote-write): RSS median {rexp/1024:.2f} MiB (max {mexp/1024:.2f}), CPU {cpu_exp:.3f} % of one core")
print(f"vmagent (scrape it + remote-write, on-disk queue):              RSS median {rvma/1024:.2f} MiB (max {mvma/1024:.2f}), CPU {cpu_vma:.3f} % of one core")
print(f"python prometheus_client peer (Pushgateway pushes only):        RSS median {rpeer/1024:.2f} MiB (max {mpeer/1024:.2f}), CPU {cpu_peer:.3f} % of one core")
print(f"ratio exporter/vmagent: RSS {ratio(rexp, rvma):.2f}, CPU {ratio(cpu_exp, cpu_vma):.2f}")
print(f"ratio exporter/python:  RSS {ratio(rexp, rpeer):.2f}, CPU {ratio(cpu_exp, cpu_peer):.2f}")
PY
samples_sent=$(curl -fs "http://127.0.0.1:$exp_port/metrics" | awk '/^aif_exporter_samples_sent_total\{sink="remote_write"\}/ {print $2}')
echo "exporter remote-wrote ${samples_sent:-?} samples; vmagent log tail:" >&2
tail -2 "$T/vmagent.log" >&2 || true
grep -v '^$' "$T/exp.log" | tail -5 >&2 || true
echo "linked: $(ldd "$EXE" | awk '{print $1}' | tr '\n' ' ')"
