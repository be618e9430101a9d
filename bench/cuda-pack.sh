#!/usr/bin/env bash
# Builds the CUDA binaries for `bench/cuda-check.sh` and packs them small
# enough to carry to the GPU machine (its limit is 64 MiB; stripped, the
# three binaries are ~140 MB, gzipped ~35 MB):
# target/cuda-carry/{nextslice,models,models-fusion}.gz
set -euo pipefail
cd "$(dirname "$0")/.."
# The bench binary's path from cargo itself: target/release/deps holds a
# models-* for every feature set built (wgpu, cpu), not only this one.
bench_binary() {
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "models" and m.get("executable"):
        print(m["executable"])'
}
models=$(cargo build --release --features cuda --bin nextslice --bench models --message-format=json | bench_binary)
[ -n "$models" ] || { echo "cargo reported no models bench binary"; exit 1; }
# Kept before the fused build: building a bench builds the crate's binaries
# too, so that build overwrites target/release/nextslice with a fused one
# (stop 29 carried and measured that by mistake).
plain=target/release/nextslice-cuda-plain
cp target/release/nextslice "$plain"
# The same bench on burn's fused CUDA backend, for the fusion A/B.
fused=$(cargo build --release --features cuda-fusion --bench models --message-format=json | bench_binary)
[ -n "$fused" ] || { echo "cargo reported no fused models bench binary"; exit 1; }
out=target/cuda-carry
rm -rf "$out" && mkdir -p "$out"
for pair in "$plain nextslice" "$models models" "$fused models-fusion"; do
  set -- $pair
  strip -o "$out/$2" "$1"
  gzip -9 "$out/$2"
done
ls -l "$out"
echo "carry $out; run: bash bench/cuda-check.sh $out   (BUDGET=540 s, all parts in order of importance)"
