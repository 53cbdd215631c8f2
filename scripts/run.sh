#!/usr/bin/env bash
# The main job on a fresh machine of this kind: build the node exporter and run
# it until Ctrl-C / SIGTERM.
#
# - Real GPUs when NVML (libnvidia-ml.so.1) is present, otherwise simulated GPUs
#   (labelled model="Simulated GPU", never mistaken for hardware).
# - Serves /metrics on ${AIF_LISTEN:-127.0.0.1:9400}; buffers every sample in
#   ${AIF_BUFFER:-./data/aif-node-exporter.db}; pushes to $AIF_PUSHGATEWAY when set
#   (e.g. AIF_PUSHGATEWAY=http://monitor:9091).
# - Extra arguments are passed to aif-node-exporter (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "run.sh: cargo is not installed" >&2
  exit 1
fi
# Build needs: a C compiler, make and perl (static OpenSSL and zlib for libssh2).
if ! command -v cc >/dev/null || ! command -v make >/dev/null || ! command -v perl >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gcc libc6-dev make perl
fi
cargo build --release --locked -p aif-node-exporter

source_args=(--source simulated --gpus "${AIF_GPUS:-8}")
if ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml.so.1'; then
  source_args=(--source nvml)
else
  echo "run.sh: no NVIDIA driver (libnvidia-ml.so.1) found: running on simulated GPUs" >&2
fi

buffer="${AIF_BUFFER:-./data/aif-node-exporter.db}"
mkdir -p "$(dirname "$buffer")"
push_args=()
if [ -n "${AIF_PUSHGATEWAY:-}" ]; then
  push_args=(--pushgateway "$AIF_PUSHGATEWAY")
fi

echo "run.sh: metrics at http://${AIF_LISTEN:-127.0.0.1:9400}/metrics (Ctrl-C to stop)" >&2
exec ./target/release/aif-node-exporter "${source_args[@]}" \
  --interval "${AIF_INTERVAL:-1s}" --buffer "$buffer" \
  --listen "${AIF_LISTEN:-127.0.0.1:9400}" "${push_args[@]}" "$@"
