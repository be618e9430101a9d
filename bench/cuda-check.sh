#!/usr/bin/env bash
# One GPU session's checks, prepared ahead (device time is scarce): the model
# benchmark burn-cuda vs PyTorch CUDA on the same GPU, then a CUDA smoke test
# of a whole round on phantom data. Binaries built elsewhere with
#   cargo build --release --features cuda --bin nextslice --bench models
# and copied into $BIN (nextslice, models).
#   bench/cuda-check.sh BIN [REPEAT]
set -uo pipefail
BIN=${1:?directory with the cuda-built nextslice and models binaries}
REPEAT=${2:-10}
echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
PY=${NEXTSLICE_TORCH_PYTHON:-python3}
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || echo "no PyTorch here"
export NEXTSLICE_TORCH_PYTHON=$PY

echo "== models: burn-cuda vs PyTorch CUDA (median of $REPEAT after warm-up)"
start=$(date +%s)
timeout 330 "$BIN/models" --device cuda --repeat "$REPEAT" --warmup 3
echo "(exit $?, $(( $(date +%s) - start ))s)"

echo "== smoke: a round on CUDA (phantoms, demo preset)"
D=$(mktemp -d)
P=$D/project
run() { echo "\$ nextslice $*"; timeout 90 "$BIN/nextslice" "$@" 2>&1 | tail -3; }
start=$(date +%s)
run demo --dir "$D" --subjects 8 --device cuda --no-tui
run export -p "$P"
run import -p "$P" "$D"/data/*/*_seg.nii.gz
run train --foreground --device cuda -p "$P"
run suggest --foreground --device cuda -p "$P"
run evaluate --foreground --device cuda -p "$P"
run status -p "$P"
echo "(smoke $(( $(date +%s) - start ))s)"
