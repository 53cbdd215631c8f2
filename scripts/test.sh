#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine of this kind.
#
# Installs the Debian packages the tests need when any is missing (idempotent;
# needs root or sudo), then runs `cargo test --workspace`. The tests start their
# own servers (Pushgateway, Prometheus, sshd, Slurm) on 127.0.0.1; nothing is
# started by hand here.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  prometheus prometheus-pushgateway      # testbed: Prometheus, promtool, Pushgateway
  victoria-metrics                       # testbed: a second remote-write receiver; vmagent (footprint peer)
  openssh-server openssh-client          # testbed: private sshd, ssh-keygen
  iproute2                               # testbed: hosts as network namespaces (ip netns, veth; tests/src/netns.rs)
  apache2-utils                          # htpasswd (bcrypt) for Pushgateway basic auth
  slurmctld slurmd slurm-client munge    # testbed: single-node Slurm cluster
  slurmrestd slurm-wlm-jwt-plugin        # testbed: slurmrestd (rest_auth/jwt) for the slurm-rest backend
  gcc libc6-dev make perl pkg-config     # fake libnvidia-ml.so.1; static OpenSSL/zlib for libssh2
  binutils                               # objdump: the release binaries' glibc baseline (scripts/dist-check.sh)
  python3                                # the demo service recipe, free ports in scripts
  python3-venv                           # schemathesis (PyPI) in target/schemathesis-venv; llama.cpp in target/llama-venv
  g++                                    # llama-cpp-python builds llama.cpp from source
  curl ca-certificates wrk nginx         # benches (wrk: the API bench; nginx: the load generator's target)
  nodejs                                 # dashboards: the forms' JavaScript under node --test
  chromium chromium-driver               # dashboards: the browser test (headless, WebDriver)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is not installed (this machine kind ships rustup's toolchain)" >&2
  exit 1
fi

# A real inference engine for the load generator's tests (tests/src/llama.rs):
# llama.cpp's server from PyPI, built from source once (a few minutes), and
# the gguf package that writes its tiny random-weight model.
LLAMA_VENV=target/llama-venv
LLAMA_PINS=(llama-cpp-python[server]==0.3.36 gguf==0.19.0)
if [ "$(cat "$LLAMA_VENV/.pins" 2>/dev/null)" != "${LLAMA_PINS[*]}" ]; then
  echo "test.sh: installing ${LLAMA_PINS[*]} into $LLAMA_VENV"
  rm -rf "$LLAMA_VENV"
  python3 -m venv "$LLAMA_VENV"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$LLAMA_VENV/bin/pip" install -q --no-cache-dir "${LLAMA_PINS[@]}"
  echo "${LLAMA_PINS[*]}" > "$LLAMA_VENV/.pins"
fi

# Build every binary first so end-to-end tests spawn fresh ones.
cargo build --workspace --all-targets --locked
cargo test --workspace --locked --no-fail-fast
