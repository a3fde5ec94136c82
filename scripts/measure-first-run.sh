#!/bin/bash
# Measures, from clean clones of this repository into /tmp: the time from `git clone` to the
# first report line of `cargo xtask demo`, and the time of `cargo install` of the census-only build.
# time from git clone to the demo's first report line; time to cargo install the census-only build
set -u
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
rm -rf /tmp/m1 /tmp/m2 /tmp/inst
t0=$(date +%s.%N)
git clone -q "$REPO" /tmp/m1
cd /tmp/m1
cargo xtask demo --seconds 3 2>/dev/null | while IFS= read -r line; do
  case "$line" in
    "[    1.0s]"*|leakprof\ 0.1.0:*) echo "first report line after $(echo "$(date +%s.%N) - $t0" | bc) s: $line"; break;;
  esac
done
t1=$(date +%s.%N)
git clone -q "$REPO" /tmp/m2
cd /tmp/m2
cargo install --path profiler --locked --no-default-features --root /tmp/inst --quiet 2>&1 | tail -2
t2=$(date +%s.%N)
echo "cargo install (census-only) from a clean clone: $(echo "$t2 - $t1" | bc) s; binary: $(ls /tmp/inst/bin)"
