#!/usr/bin/env bash
# Checks release tarballs made by scripts/dist.sh, failing loudly on the first
# problem:
#   - SHA256SUMS inside the tarball matches every file;
#   - every ELF under bin/ needs no glibc symbol version newer than GLIBC_2.17
#     (objdump -T) and no shared library besides glibc's and libgcc_s
#     (OpenSSL, zlib, libssh2 and SQLite are linked in; NVML is dlopen'ed);
#   - every binary's --version prints `NAME VERSION (commit C)`, C being this
#     checkout's HEAD (12 hex digits, `-dirty` allowed) when run inside git,
#     `unknown` allowed outside one;
#   - aif-node-exporter --source simulated --once prints an exposition.
#
#   scripts/dist-check.sh target/dist/aif-node-exporter-0.1.0-x86_64-linux-gnu.tar.gz [MORE.tar.gz]
#
# Needs binutils (objdump, readelf), tar, sha256sum; for binaries of another
# architecture qemu-user and the cross glibc (libc6-arm64-cross).
set -euo pipefail

MAX_GLIBC=2.17
# Libraries every glibc system has (x86_64 and aarch64 names).
ALLOWED_NEEDED='^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libutil\.so\.1|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$'

fail() { echo "dist-check: FAIL: $*" >&2; exit 1; }
((${#@})) || fail "usage: scripts/dist-check.sh TARBALL.tar.gz..."
command -v objdump >/dev/null || fail "objdump is not installed (Debian: binutils)"

root=$(cd "$(dirname "$0")/.." && pwd)
head=""
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  head=$(git -C "$root" rev-parse --short=12 HEAD)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Highest version of FILE's GLIBC_x.y[.z] symbol references, empty if none.
glibc_max() {
  local dynsyms
  dynsyms=$(objdump -T "$1") || fail "objdump -T $1 failed"
  { grep -o 'GLIBC_[0-9][0-9.]*' <<<"$dynsyms" || true; } | sed 's/^GLIBC_//' | sort -u -V | tail -n 1
}

# Runs BIN [ARGS]: directly when it is for this machine, else under qemu-user
# with the Debian cross glibc (the check is never skipped: missing tools fail).
run() {
  local bin=$1 elf_arch
  shift
  elf_arch=$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')
  case "$elf_arch" in
    *X86-64*) elf_arch=x86_64 ;;
    *AArch64*) elf_arch=aarch64 ;;
    *) fail "$(basename "$bin"): unexpected ELF machine '$elf_arch'" ;;
  esac
  if [ "$elf_arch" = "$(uname -m)" ]; then
    "$bin" "$@"
  else
    local sysroot="/usr/$elf_arch-linux-gnu" deb
    deb=$elf_arch
    case "$deb" in x86_64) deb=amd64 ;; aarch64) deb=arm64 ;; esac
    command -v "qemu-$elf_arch" >/dev/null && [ -d "$sysroot/lib" ] \
      || fail "$(basename "$bin") is for $elf_arch: running it here needs qemu-$elf_arch and $sysroot (Debian: qemu-user, libc6-$deb-cross)"
    "qemu-$elf_arch" -L "$sysroot" "$bin" "$@"
  fi
}

checked=0
for tarball in "$@"; do
  [ -f "$tarball" ] || fail "$tarball: no such file"
  name=$(basename "$tarball" .tar.gz)
  dir="$work/$name"
  tar -C "$work" -xzf "$tarball"
  [ -d "$dir" ] || fail "$tarball: no top directory $name/"
  (cd "$dir" && sha256sum --quiet -c SHA256SUMS) || fail "$tarball: SHA256SUMS does not match"
  # aif-node-exporter-0.1.0-x86_64-linux-gnu -> 0.1.0
  version=${name%-*-linux-gnu}
  version=${version##*-}
  echo "dist-check: $tarball"
  sed 's/^/  /' <(tar -tzf "$tarball")

  bins=("$dir"/bin/*)
  [ -e "${bins[0]}" ] || fail "$tarball: nothing in bin/"
  for bin in "${bins[@]}"; do
    exe=$(basename "$bin")
    head -c 4 "$bin" | grep -q $'^\x7fELF' || fail "$exe is not an ELF file"

    max=$(glibc_max "$bin")
    [ -n "$max" ] || fail "$exe: no GLIBC_ symbol versions at all (objdump -T found none: not dynamically linked against glibc?)"
    newest=$(printf '%s\n%s\n' "$max" "$MAX_GLIBC" | sort -V | tail -n 1)
    if [ "$newest" != "$MAX_GLIBC" ]; then
      objdump -T "$bin" | while read -r line; do
        v=$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$line" | sed 's/^GLIBC_//') || continue
        [ "$(printf '%s\n%s\n' "$v" "$MAX_GLIBC" | sort -V | tail -n 1)" = "$MAX_GLIBC" ] || echo "  $line" >&2
      done
      fail "$exe needs GLIBC_$max, newer than the GLIBC_$MAX_GLIBC baseline (symbols above)"
    fi
    needed=$(objdump -p "$bin" | awk '$1 == "NEEDED" {print $2}')
    bad=$(grep -v -E "$ALLOWED_NEEDED" <<<"$needed" || true)
    [ -z "$bad" ] || fail "$exe needs shared libraries beyond glibc and libgcc_s: $(tr '\n' ' ' <<<"$bad")"
    echo "  $exe: highest GLIBC_$max (baseline GLIBC_$MAX_GLIBC); NEEDED $(tr '\n' ' ' <<<"$needed")"

    out=$(run "$bin" --version) || fail "$exe --version exited $?"
    [[ "$out" =~ ^$exe\ $version\ \(commit\ ([0-9a-f]{12}(-dirty)?|unknown)\)$ ]] \
      || fail "$exe --version printed '$out', not '$exe $version (commit <12 hex digits>)'"
    commit=${BASH_REMATCH[1]}
    # `unknown` only for a build outside git (a source tarball).
    if [ -n "$head" ] && [ "${commit%-dirty}" != "$head" ]; then
      fail "$exe was built from commit $commit, this checkout is at $head (stale tarball?)"
    fi
    echo "  $exe --version: $out"

    if [ "$exe" = aif-node-exporter ]; then
      text=$(unset SLURM_JOB_ID; export RUST_LOG=warn; run "$bin" --source simulated --gpus 2 --once 2>"$work/once.err") \
        || fail "aif-node-exporter --once exited $?: $(cat "$work/once.err")"
      for gpu in 0 1; do
        grep -q "^aif_gpu_up{gpu=\"$gpu\",model=\"Simulated GPU\"" <<<"$text" \
          || fail "aif-node-exporter --once: no aif_gpu_up for simulated GPU $gpu in:"$'\n'"$text"
      done
      echo "  aif-node-exporter --source simulated --gpus 2 --once: $(grep -c -v '^#' <<<"$text") samples"
    fi
    checked=$((checked + 1))
  done
done
echo "dist-check: $checked binaries passed (glibc <= $MAX_GLIBC, --version with commit, exporter --once)"
