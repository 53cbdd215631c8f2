#!/usr/bin/env bash
# The platform on one machine, from Debian's packages and this repository's
# binaries, all on 127.0.0.1 with state under ./data/:
#
#   Pushgateway  :9091  (prometheus-pushgateway, persistence in data/pushgateway.db)
#   Prometheus   :9090  (configured as deploy/prometheus/prometheus.yml, targets on 127.0.0.1)
#   aif-bench-api :8080 (local backend: services are child processes)
#   aif-node-exporter :9400 (real GPUs when NVML is present, else simulated), pushing
#   Grafana      :3000  only when a local Grafana is installed (grafana-server or
#                       grafana on PATH); otherwise use deploy/docker-compose.yml.
#
# Prints the URLs and a curl that starts a demo service and a benchmark run;
# Ctrl-C (or SIGTERM) stops everything it started.
#
#   scripts/run.sh                 # the platform
#   scripts/run.sh exporter [ARGS] # only the node exporter (ARGS go to aif-node-exporter)
#
# Ports: AIF_PUSHGATEWAY_PORT, AIF_PROMETHEUS_PORT, AIF_API_PORT, AIF_EXPORTER_PORT,
# AIF_GRAFANA_PORT, AIF_DEMO_PORT (the demo service's, 8000). AIF_GPUS (simulated GPU count, 4), AIF_PROFILE (release|dev),
# AIF_DATA_DIR (state, ./data), AIF_SKIP_BUILD=1 (use the binaries already built).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

die() { echo "run.sh: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed"
# Build needs: a C compiler, make and perl (static OpenSSL and zlib for libssh2).
if ! command -v cc >/dev/null || ! command -v make >/dev/null || ! command -v perl >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev make perl
fi

profile="${AIF_PROFILE:-release}"
case "$profile" in
  release) build_flag=(--release); bin="$root/target/release" ;;
  dev) build_flag=(); bin="$root/target/debug" ;;
  *) die "AIF_PROFILE must be release or dev, not '$profile'" ;;
esac

source_args=(--source simulated --gpus "${AIF_GPUS:-4}")
if ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml.so.1'; then
  source_args=(--source nvml)
else
  echo "run.sh: no NVIDIA driver (libnvidia-ml.so.1) found: the exporter runs on simulated GPUs" >&2
fi

data="${AIF_DATA_DIR:-data}"
mkdir -p "$data"
data=$(cd "$data" && pwd)

build() { [ "${AIF_SKIP_BUILD:-}" = 1 ] || cargo build "${build_flag[@]}" --locked "$@"; }

if [ "${1:-}" = "exporter" ]; then
  shift
  build -p aif-node-exporter
  push_args=()
  [ -n "${AIF_PUSHGATEWAY:-}" ] && push_args=(--pushgateway "$AIF_PUSHGATEWAY")
  echo "run.sh: metrics at http://${AIF_LISTEN:-127.0.0.1:9400}/metrics (Ctrl-C to stop)" >&2
  exec "$bin/aif-node-exporter" "${source_args[@]}" \
    --interval "${AIF_INTERVAL:-1s}" --buffer "${AIF_BUFFER:-$data/aif-node-exporter.db}" \
    --listen "${AIF_LISTEN:-127.0.0.1:9400}" "${push_args[@]}" "$@"
fi

# Debian's servers; a missing one names its package.
need() {
  local found=""
  for b in "$1" "/usr/bin/$1" "/usr/sbin/$1"; do
    if command -v "$b" >/dev/null 2>&1; then found=$(command -v "$b"); break; fi
  done
  [ -n "$found" ] || die "$1 is not installed (Debian package $2: apt-get install $2)"
  echo "$found"
}
prometheus_bin=$(need prometheus prometheus)
pushgateway_bin=$(need prometheus-pushgateway prometheus-pushgateway)
command -v python3 >/dev/null || die "python3 is not installed (Debian package python3; the demo-http recipe runs it)"

build -p aif-node-exporter -p aif-bench-api -p aif-loadgen

pg_port="${AIF_PUSHGATEWAY_PORT:-9091}"
prom_port="${AIF_PROMETHEUS_PORT:-9090}"
api_port="${AIF_API_PORT:-8080}"
exp_port="${AIF_EXPORTER_PORT:-9400}"
graf_port="${AIF_GRAFANA_PORT:-3000}"
demo_port="${AIF_DEMO_PORT:-8000}"
for p in "$pg_port" "$prom_port" "$api_port" "$exp_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "127.0.0.1:$p is already in use (set AIF_*_PORT to move it)"
  fi
done

pids=()
stop() {
  trap - INT TERM EXIT
  echo >&2
  # Services the API started outlive it by design (it reconciles on restart):
  # cancel the running ones so that Ctrl-C stops everything.
  if [ -n "${api_port:-}" ] && curl -fsS -o /dev/null "http://127.0.0.1:$api_port/health" 2>/dev/null; then
    curl -fsS "http://127.0.0.1:$api_port/api/v1/services?status=running" 2>/dev/null |
      python3 -c 'import json,sys; [print(s["id"]) for s in json.load(sys.stdin)]' 2>/dev/null |
      while read -r id; do
        curl -fsS -o /dev/null -XDELETE "http://127.0.0.1:$api_port/api/v1/services/$id" &&
          echo "run.sh: cancelled service $id" >&2
      done
  fi
  echo "run.sh: stopping ${#pids[@]} processes" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "run.sh: stopped; state is kept in $data/" >&2
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

start() { # name, command...
  local name=$1; shift
  "$@" >>"$data/$name.log" 2>&1 &
  pids+=($!)
  echo "run.sh: started $name (pid $!, log $data/$name.log)" >&2
}

wait_http() { # name, url
  local i
  for i in $(seq 1 300); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$1 did not answer $2 within 30 s; see $data/$1.log"
}

start pushgateway "$pushgateway_bin" --web.listen-address="127.0.0.1:$pg_port" \
  --persistence.file="$data/pushgateway.db" --persistence.interval=30s
wait_http pushgateway "http://127.0.0.1:$pg_port/-/ready"

# GPU services get the node exporter beside them, labelled with their id: on
# a machine without the driver it samples simulated GPUs, so a demo run
# (recipe demo-llm) shows its energy.
exporter_source=auto
[ "${source_args[1]}" = simulated ] && exporter_source=simulated
cat >"$data/aif-bench-api.toml" <<EOF
# Written by scripts/run.sh.
exporter_binary = "$bin/aif-node-exporter"
exporter_source = "$exporter_source"
exporter_interval = "1s"
EOF
api_args=(--config "$data/aif-bench-api.toml" --listen "127.0.0.1:$api_port" --db "$data/aif-bench-api.sqlite" --backend local
  --log-dir "$data/services" --recipes bench-api/recipes --pushgateway "http://127.0.0.1:$pg_port"
  --cors-origin "http://localhost:$graf_port")
if "$bin/aif-bench-api" --help 2>/dev/null | grep -q -- '--prometheus'; then
  api_args+=(--prometheus "http://127.0.0.1:$prom_port")
fi
start aif-bench-api "$bin/aif-bench-api" "${api_args[@]}"
wait_http aif-bench-api "http://127.0.0.1:$api_port/health"

# Prometheus configured as deploy/prometheus/prometheus.yml, its hosts on 127.0.0.1.
mkdir -p "$data/prometheus"
sed -e "s#pushgateway:9091#127.0.0.1:$pg_port#g" \
    -e "s#bench-api:8080#127.0.0.1:$api_port#g" \
    deploy/prometheus/prometheus.yml >"$data/prometheus/prometheus.yml"
# Its rule_files (alerts.yml) resolve next to the configuration.
cp deploy/prometheus/alerts.yml "$data/prometheus/"
start prometheus "$prometheus_bin" --config.file="$data/prometheus/prometheus.yml" \
  --storage.tsdb.path="$data/prometheus/tsdb" --web.listen-address="127.0.0.1:$prom_port" \
  --web.enable-remote-write-receiver
wait_http prometheus "http://127.0.0.1:$prom_port/-/ready"

start aif-node-exporter "$bin/aif-node-exporter" "${source_args[@]}" --interval 1s \
  --buffer "$data/aif-node-exporter.db" --listen "127.0.0.1:$exp_port" \
  --pushgateway "http://127.0.0.1:$pg_port" --instance "$(hostname -s 2>/dev/null || echo node)"
wait_http aif-node-exporter "http://127.0.0.1:$exp_port/metrics"

grafana_bin=""
for b in grafana grafana-server; do
  if command -v "$b" >/dev/null 2>&1; then grafana_bin=$(command -v "$b"); break; fi
done
grafana_line="Grafana:    not started: no local Grafana found (grafana or grafana-server on PATH).
            For the dashboards use the compose stack: docker compose -f deploy/docker-compose.yml up --build"
if [ -n "$grafana_bin" ]; then
  # Provisioning as in deploy/grafana, its hosts on 127.0.0.1, dashboards from dashboards/dist.
  gdir="$data/grafana"
  mkdir -p "$gdir/provisioning/datasources" "$gdir/provisioning/dashboards" "$gdir/plugins"
  sed -e "s#http://prometheus:9090#http://127.0.0.1:$prom_port#g" \
      -e "s#http://bench-api:8080#http://127.0.0.1:$api_port#g" \
      deploy/grafana/provisioning/datasources/aif.yml >"$gdir/provisioning/datasources/aif.yml"
  sed -e "s#/var/lib/grafana/dashboards#$root/dashboards/dist#g" \
      deploy/grafana/provisioning/dashboards/aif.yml >"$gdir/provisioning/dashboards/aif.yml"
  homepath=/usr/share/grafana
  serve=()
  [ "$(basename "$grafana_bin")" = "grafana" ] && serve=(server)
  start grafana env GF_PATHS_PROVISIONING="$gdir/provisioning" GF_PATHS_DATA="$gdir" \
    GF_PATHS_PLUGINS="$gdir/plugins" GF_PATHS_LOGS="$gdir" GF_SERVER_HTTP_ADDR=127.0.0.1 \
    GF_SERVER_HTTP_PORT="$graf_port" \
    GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH="$root/dashboards/dist/administration.json" \
    GF_PLUGINS_PREINSTALL="$(sed -n 's/.*GF_PLUGINS_PREINSTALL: *//p' deploy/docker-compose.yml)" \
    "$grafana_bin" "${serve[@]}" --homepath "$homepath" --config deploy/grafana/grafana.ini
  grafana_line="Grafana:    http://localhost:$graf_port/ (admin/admin; dashboards: Administration, GPUs, Benchmarks)"
fi

gpu_words="simulated GPUs, attributed to it"
[ "$exporter_source" = simulated ] || gpu_words="this machine's GPUs, attributed to it"
cat >&2 <<EOF

run.sh: the platform is up (Ctrl-C stops it)
  Pushgateway: http://127.0.0.1:$pg_port/
  Prometheus:  http://127.0.0.1:$prom_port/   (try: aif_gpu_power_watts)
  API:         http://127.0.0.1:$api_port/api/v1/services   (OpenAPI: /openapi.json)
  Exporter:    http://127.0.0.1:$exp_port/metrics
  $grafana_line

Start the demo service (an OpenAI-style stub, the exporter beside it sampling
$gpu_words), run a 30-second benchmark against it after 10 s of warm-up
(the new exporter's first samples reach Prometheus meanwhile), then show the
result with its energy (about 55 s in all):
  api=http://127.0.0.1:$api_port/api/v1; json() { python3 -c "import json,sys; r=json.load(sys.stdin); \$1"; }
  svc=\$(curl -fsS -XPOST \$api/services -H 'Content-Type: application/json' -d '{"recipe":"demo-llm","params":{"port":$demo_port}}' | json 'print(r["id"])')
  until curl -fsS \$api/services/\$svc | json 'sys.exit(r["status"] != "running")'; do sleep 1; done
  run=\$(curl -fsS -XPOST \$api/benchmarks -H 'Content-Type: application/json' -d "{\"service_id\":\"\$svc\",\"duration_seconds\":30,\"warmup_seconds\":10,\"concurrency\":4,\"workload\":\"openai_completions\",\"max_tokens\":32}" | json 'print(r["id"])')
  until curl -fsS \$api/benchmarks/\$run | json 'sys.exit(r["status"] == "running" or r.get("result", {}).get("energy_status") == "pending")'; do sleep 2; done
  curl -fsS \$api/benchmarks/\$run | json 'print(json.dumps({k: r["result"].get(k) for k in ("completed", "request_throughput", "output_throughput", "mean_ttft_ms", "energy_status", "energy_joules", "mean_power_watts", "joules_per_request", "output_tokens_per_joule", "energy_unavailable_reason")}, indent=1))'
EOF

# Until Ctrl-C, or until one of them exits.
while :; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run.sh: process $pid exited; see $data/*.log" >&2
      exit 1
    fi
  done
  sleep 1
done
