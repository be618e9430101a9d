#!/usr/bin/env bash
# One GPU session's checks for issue 13, prepared ahead (device time is
# scarce: each part fits the device tool's 10-minute limit per command).
# Binaries built and packed here by bench/cuda-pack.sh (target/cuda-carry,
# gzipped), or any directory with the cuda-built nextslice and models.
#
#   bench/cuda-check.sh BIN tuning   # part 1: cold and warm first steps, caches between processes
#   bench/cuda-check.sh BIN speed    # part 2: burn-cuda vs PyTorch, a demo round, the paper's projection
#
# Everything it writes goes under $OUT (the device tool's folder) when set.
set -uo pipefail
BIN=$(cd "${1:?directory with the cuda-built nextslice and models binaries}" && pwd)
PART=${2:-tuning}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
D=$(mktemp -d)
# bench/cuda-pack.sh carries them gzipped.
if [ -f "$BIN/nextslice.gz" ]; then
  for b in nextslice models; do gunzip -c "$BIN/$b.gz" > "$D/$b" && chmod +x "$D/$b"; done
  BIN=$D
fi
NS="$BIN/nextslice"
export NEXTSLICE_STORE_ROOT="$D/stores"
secs() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(secs)" 'BEGIN { printf "%.1f", b - a }'; }

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$NS" gpu

# A project with the paper's networks (BraTS preset) on 128² phantoms.
paper_project() {
  "$NS" phantom --out "$D/data" --subjects 8 --size 128 > /dev/null 2>&1
  printf '[slicing]\nsize = [128, 128]\n[device]\nkind = "cuda"\n' > "$D/overlay.toml"
  "$NS" init "$D/paper" --data "$D/data" --preset brats2019 --config "$D/overlay.toml" --private-store > /dev/null 2>&1 ||
    echo "init of the paper-shaped project failed"
}

if [ "$PART" = tuning ]; then
  paper_project
  for level in minimal balanced; do
    export NEXTSLICE_GPU_CACHE="$D/cache-$level"
    echo "== first GPU steps, $level autotune, cold caches (new process)"
    start=$(secs)
    limit=200; [ "$level" = balanced ] && limit=150
    timeout "$limit" "$NS" gpu-warmup -p "$D/paper" --autotune "$level" 2>&1 | tr '\r' '\n' | tail -4
    echo "(cold $level: $(took "$start") s)"
    "$NS" gpu -p "$D/paper" | tail -3
    echo "== the same steps, warm caches (another process; our warm-up record removed)"
    rm -rf "$NEXTSLICE_GPU_CACHE"/*/warm
    start=$(secs)
    timeout 60 "$NS" gpu-warmup -p "$D/paper" --autotune "$level" 2>&1 | tr '\r' '\n' | tail -2
    echo "(warm $level: $(took "$start") s; it should say 0 kernels tuned)"
  done
  du -sh "$D"/cache-* 2>/dev/null
  exit 0
fi

echo "== PyTorch"
PY=${NEXTSLICE_TORCH_PYTHON:-python3}
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || echo "no PyTorch here"
export NEXTSLICE_TORCH_PYTHON=$PY
export NEXTSLICE_GPU_CACHE="$D/cache-bench"

echo "== models: burn-cuda (minimal autotune) vs PyTorch CUDA as users run it and with TF32 off"
start=$(secs)
timeout 330 "$BIN/models" --device cuda --repeat 10 --warmup 3 --autotune minimal \
  --cases unet-train-128-b8,unet-infer-128-b8,unet-train-256-b32,unet-infer-256-b32,vae-train-128-b16,vae-train-256-b16,gradient-encode-128-b8,gradient-encode-256-b8 \
  | tee "$OUT/models.txt"
echo "(exit $?, $(took "$start") s)"

echo "== a demo round on CUDA, end to end"
start=$(secs)
run() { echo "\$ nextslice $*"; timeout 60 "$NS" "$@" 2>&1 | tr '\r' '\n' | tail -3; }
run demo --dir "$D/demo" --subjects 8 --device cuda --no-tui
P="$D/demo/project"
run export -p "$P"
run import -p "$P" "$D"/demo/data/*/*_seg.nii.gz
run train --foreground --device cuda -p "$P"
run suggest --foreground --device cuda -p "$P"
run evaluate --foreground --device cuda -p "$P"
run status -p "$P"
echo "(demo round $(took "$start") s)"

echo "== the paper's BraTS protocol from the measured rates (burn-cuda)"
# 50 000 pool slices at 256²; VAE 50 epochs; 10 U-Net trainings (seed +
# 9 rounds) of max(10 epochs, 200 steps) at batch 32 on 0.5 % + 1 % per
# round of the pool; 9 suggestions, each an Eq. 3 gradient per labelled slice.
awk '
  $1 == "vae-train-256-b16"      { vae = $2 }
  $1 == "unet-train-256-b32"     { unet = $2 }
  $1 == "gradient-encode-256-b8" { grad = $2 }
  END {
    if (!vae || !unet || !grad) { print "rates missing: no projection"; exit }
    pool = 50000
    t_vae = 50 * pool / vae
    for (r = 0; r < 10; r++) {
      labelled = (0.005 + 0.01 * r) * pool
      steps = 10 * labelled / 32; if (steps < 200) steps = 200
      t_unet += steps * 32 / unet
      if (r < 9) t_grad += labelled / grad
    }
    printf "VAE %.1f h · U-Net trainings %.1f h · gradients %.2f h · total %.1f h (evaluation and encoding not included)\n",
      t_vae / 3600, t_unet / 3600, t_grad / 3600, (t_vae + t_unet + t_grad) / 3600
  }' "$OUT/models.txt"
