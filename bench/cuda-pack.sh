#!/usr/bin/env bash
# Builds the CUDA binaries for `bench/cuda-check.sh` and packs them small
# enough to carry to the GPU machine (its limit is 64 MiB; stripped, the two
# binaries are ~100 MB, gzipped ~25 MB): target/cuda-carry/{nextslice,models}.gz
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --features cuda --bin nextslice --bench models
out=target/cuda-carry
rm -rf "$out" && mkdir -p "$out"
models=$(ls -t target/release/deps/models-* | grep -v '\.d$' | head -1)
for pair in "target/release/nextslice nextslice" "$models models"; do
  set -- $pair
  strip -o "$out/$2" "$1"
  gzip -9 "$out/$2"
done
ls -l "$out"
echo "carry $out; run: bash bench/cuda-check.sh $out tuning   (then: ... speed)"
