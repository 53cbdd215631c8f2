#!/usr/bin/env bash
# Portable release tarballs: the binaries built for glibc >= 2.17 (RHEL/CentOS 7,
# Rocky 8, any newer distribution) with cargo-zigbuild and Zig, packed with what
# installs them, into target/dist/:
#
#   aif-node-exporter-VERSION-ARCH-linux-gnu.tar.gz   (compute nodes)
#     aif-node-exporter-VERSION-ARCH-linux-gnu/
#       bin/aif-node-exporter
#       deploy/systemd/aif-node-exporter.service
#       deploy/node-exporter.toml            (sample config, every key)
#       deploy/slurm/prolog.sh, epilog.sh    (one exporter per job)
#       README.md
#       SHA256SUMS                           (of every file above: sha256sum -c SHA256SUMS)
#   aif-bench-api-VERSION-ARCH-linux-gnu.tar.gz       (monitoring host; aif-loadgen for the jobs)
#     aif-bench-api-VERSION-ARCH-linux-gnu/
#       bin/aif-bench-api, bin/aif-loadgen   (the API finds aif-loadgen beside itself)
#       deploy/prometheus/                   (Prometheus config)
#       deploy/grafana/, dashboards/*.json   (Grafana provisioning and the built dashboards)
#       recipes/*.toml                       (the built-in recipes, as examples for --recipes)
#       README.md, SHA256SUMS
#   SHA256SUMS                               (of every tarball in target/dist/)
#
# Each tarball is then checked by scripts/dist-check.sh (glibc baseline, bundled
# libraries, --version with the commit, the exporter's --once).
#
#   scripts/dist.sh           # all three binaries, both tarballs (what CI runs)
#   scripts/dist.sh --check   # the exporter's tarball only (quicker)
#   scripts/dist.sh --arch aarch64 [--check]   # cross-built for aarch64
#
# ARCH is `uname -m`: x86_64, or aarch64 (Grace nodes: run this script there,
# it builds aarch64-unknown-linux-gnu.2.17 natively), or `--arch aarch64` to
# cross-build on x86_64 (rustup adds the target's standard library; Zig is
# the cross linker; dist-check.sh then runs the binaries under qemu-aarch64:
# Debian packages qemu-user, libc6-arm64-cross). Tools, pinned, installed
# once under target/dist-tools/: cargo-zigbuild (crates.io) and Zig (the
# `ziglang` PyPI package, in a venv). Needs: python3 with venv, binutils
# (objdump), sha256sum, tar, gzip; network to crates.io and PyPI the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

ZIGBUILD_VERSION=0.24.1   # cargo-zigbuild
ZIG_VERSION=0.15.2        # ziglang on PyPI = Zig
GLIBC=2.17

die() { echo "dist.sh: $*" >&2; exit 1; }

only_exporter=0
arch=$(uname -m)
while (($#)); do
  case "$1" in
    --check) only_exporter=1 ;;
    --arch) (($# > 1)) || die "--arch needs x86_64 or aarch64"; arch=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (usage: scripts/dist.sh [--check] [--arch x86_64|aarch64])" ;;
  esac
  shift
done

case "$arch" in
  x86_64|aarch64) ;;
  arm64) arch=aarch64 ;;
  *) die "unsupported machine $arch (x86_64 and aarch64 are built)" ;;
esac
triple="$arch-unknown-linux-gnu"

command -v cargo >/dev/null || die "cargo is not installed"
command -v python3 >/dev/null || die "python3 is not installed (Debian: python3 python3-venv)"
for tool in tar gzip sha256sum objdump; do
  command -v "$tool" >/dev/null || die "$tool is not installed (Debian: binutils for objdump, coreutils, tar, gzip)"
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
tools="$target_dir/dist-tools"
dist="$target_dir/dist"
mkdir -p "$tools" "$dist"

# --- tools (idempotent: reinstalled only when missing or of another version)
t0=$(date +%s)
if [ "$("$tools/bin/cargo-zigbuild" --version 2>/dev/null)" != "cargo-zigbuild $ZIGBUILD_VERSION" ]; then
  echo "dist.sh: installing cargo-zigbuild $ZIGBUILD_VERSION into $tools"
  cargo install --locked --quiet --force --root "$tools" --version "$ZIGBUILD_VERSION" cargo-zigbuild
fi
venv="$tools/venv"
if [ "$("$venv/bin/python3" -m ziglang version 2>/dev/null)" != "$ZIG_VERSION" ]; then
  echo "dist.sh: installing Zig $ZIG_VERSION (PyPI ziglang) into $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ziglang==$ZIG_VERSION"
fi
echo "dist.sh: tools ready in $(( $(date +%s) - t0 ))s (cargo-zigbuild $ZIGBUILD_VERSION, zig $("$venv/bin/python3" -m ziglang version))"
host=$(rustc -vV | sed -n 's/^host: //p')
if [ "$triple" != "$host" ] && ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
  rustup target add "$triple" || die "no Rust standard library for $triple (rustup target add $triple)"
fi

# cargo-zigbuild runs `python3 -m ziglang` (our venv's) before looking for `zig`.
export PATH="$tools/bin:$PATH"
export CARGO_ZIGBUILD_PYTHON_PATH="$venv/bin/python3"
export CARGO_ZIGBUILD_CACHE_DIR="$tools/zigbuild-cache"
export ZIG_GLOBAL_CACHE_DIR="$tools/zig-cache"
export ZIG_LOCAL_CACHE_DIR="$tools/zig-cache"

# --- the commit for --version (build-support/git_commit.rs), -dirty when tracked files differ
commit=unknown
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  commit=$(git -C "$root" rev-parse --short=12 HEAD)
  [ -z "$(git -C "$root" status --porcelain --untracked-files=no)" ] || commit="$commit-dirty"
fi
export AIF_GIT_COMMIT="$commit"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || die "no version in Cargo.toml's [workspace.package]"

# --- build
if ((only_exporter)); then
  packages=(-p aif-node-exporter)
else
  packages=(-p aif-node-exporter -p aif-bench-api -p aif-loadgen)
fi
t0=$(date +%s)
echo "dist.sh: cargo zigbuild --release --target $triple.$GLIBC ${packages[*]} (commit $commit)"
cargo zigbuild --release --locked --target "$triple.$GLIBC" "${packages[@]}"
echo "dist.sh: built in $(( $(date +%s) - t0 ))s"
bindir="$target_dir/$triple/release"

# --- pack: reproducible tar (sorted, root-owned, mtime of the commit)
mtime=$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)
tarballs=()
pack() { # NAME: the staged directory $stage/NAME -> $dist/NAME.tar.gz
  local name=$1
  (cd "$stage/$name" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort \
    | xargs -d '\n' sha256sum >SHA256SUMS)
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
    -cf - "$name" | gzip -n -9 >"$dist/$name.tar.gz"
  tarballs+=("$dist/$name.tar.gz")
  echo "dist.sh: $dist/$name.tar.gz"
}
stage=$(mktemp -d "$target_dir/dist-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

name="aif-node-exporter-$version-$arch-linux-gnu"
d="$stage/$name"
install -D -m 0755 "$bindir/aif-node-exporter" "$d/bin/aif-node-exporter"
install -D -m 0644 deploy/systemd/aif-node-exporter.service "$d/deploy/systemd/aif-node-exporter.service"
install -D -m 0644 deploy/node-exporter.toml "$d/deploy/node-exporter.toml"
install -D -m 0755 deploy/slurm/prolog.sh "$d/deploy/slurm/prolog.sh"
install -D -m 0755 deploy/slurm/epilog.sh "$d/deploy/slurm/epilog.sh"
install -D -m 0644 README.md "$d/README.md"
pack "$name"

if ! ((only_exporter)); then
  name="aif-bench-api-$version-$arch-linux-gnu"
  d="$stage/$name"
  install -D -m 0755 "$bindir/aif-bench-api" "$d/bin/aif-bench-api"
  install -D -m 0755 "$bindir/aif-loadgen" "$d/bin/aif-loadgen"
  mkdir -p "$d/deploy" "$d/dashboards" "$d/recipes"
  cp -R deploy/prometheus deploy/grafana "$d/deploy/"
  install -m 0644 dashboards/dist/*.json "$d/dashboards/"
  install -m 0644 bench-api/recipes/*.toml "$d/recipes/"
  install -D -m 0644 README.md "$d/README.md"
  chmod -R u=rwX,go=rX "$d/deploy"
  pack "$name"
fi

(cd "$dist" && sha256sum -- *.tar.gz >SHA256SUMS)   # every tarball there, all arches
"$root/scripts/dist-check.sh" "${tarballs[@]}"
