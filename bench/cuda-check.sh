#!/usr/bin/env bash
# One GPU session's checks for issue 13, prepared ahead. Device time is
# scarce (15 minutes a session, start-up included; 10 minutes a command), so
# the default part runs everything in order of importance inside one
# deadline ($BUDGET seconds, default 540), each step's timeout cut to what is
# left; whatever does not fit is skipped with a line saying so.
# Binaries built and packed here by bench/cuda-pack.sh (target/cuda-carry,
# gzipped), or any directory with the cuda-built nextslice and models.
#
#   bench/cuda-check.sh BIN          # all, in order: cold/warm first steps (minimal,
#                                    #   steered convolutions), burn-cuda vs PyTorch (burn
#                                    #   first), the paper's projection, a demo round, `more`,
#                                    #   then cold/warm first steps with everything autotuned,
#                                    #   the experiments
#   bench/cuda-check.sh BIN more     # for a second call (CUDA_CHECK_DIR kept): folded weight
#                                    #   gradients vs not, fixed matmuls vs autotuned, a U-Net
#                                    #   step's kernel profile
#   bench/cuda-check.sh BIN tuning   # cold and warm first steps, steered and autotuned
#
# Convolutions are steered to one kernel each (NEXTSLICE_GPU_CONV, default
# here implicit-gemm), and so are matmuls (NEXTSLICE_GPU_MATMUL, default here
# fixed); set both to autotune to run everything autotuned.
#   bench/cuda-check.sh BIN speed    # vs PyTorch, the demo round, the projection
#   bench/cuda-check.sh BIN experiments  # what to change next: folded weight gradients, a
#                                    #   kernel profile of training steps, our GPU paths vs burn's kernels,
#                                    #   fusion (cuda-fusion build), bf16 against f32
#
# Everything it writes goes under $OUT (the device tool's folder) when set.
set -uo pipefail
BIN=$(cd "${1:?directory with the cuda-built nextslice and models binaries}" && pwd)
PART=${2:-all}
BUDGET=${BUDGET:-540}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
# CUDA_CHECK_DIR keeps the binaries, projects and caches for a later call
# on the same (still warm) machine: its kernels are tuned already.
D=${CUDA_CHECK_DIR:-$(mktemp -d)}
mkdir -p "$D"
# bench/cuda-pack.sh carries them gzipped.
if [ -f "$BIN/nextslice.gz" ]; then
  for b in nextslice models models-fusion; do
    [ -f "$BIN/$b.gz" ] && gunzip -c "$BIN/$b.gz" > "$D/$b" && chmod +x "$D/$b"
  done
  BIN=$D
fi
NS="$BIN/nextslice"
export NEXTSLICE_STORE_ROOT="$D/stores"
# Convolutions steered to one kernel each (`model::conv_node`), unless the
# caller says otherwise (NEXTSLICE_GPU_CONV=autotune): autotuning them did
# not finish a first training step in 150 s on an H200 (stop 28).
export NEXTSLICE_GPU_CONV=${NEXTSLICE_GPU_CONV:-implicit-gemm}
# Matmuls likewise (`model::matmul_node`), unless NEXTSLICE_GPU_MATMUL=autotune:
# each autotuned matmul shape compiles every tensor-core candidate first;
# on lavapipe, fixing them cut a cold warm-up from 82-90 s to 12-13 s (stop 30).
export NEXTSLICE_GPU_MATMUL=${NEXTSLICE_GPU_MATMUL:-fixed}
# Every check shares these caches, except first steps run another way.
export NEXTSLICE_GPU_CACHE="$D/cache-minimal-$NEXTSLICE_GPU_CONV-$NEXTSLICE_GPU_MATMUL"
BEGAN=$(date +%s)
secs() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(secs)" 'BEGIN { printf "%.1f", b - a }'; }
# The timeout for a step that wants $1 s: what is left of the budget, if less.
limit() {
  local left=$((BUDGET - ($(date +%s) - BEGAN)))
  [ "$left" -lt 1 ] && left=1 # `timeout 0` would mean no limit
  if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
# Whether a step that needs at least $1 s still fits; says so when not.
fits() {
  local l
  l=$(limit "$1")
  if [ "$l" -lt "$1" ]; then
    echo "== skipped: $2 (needs ${1} s, ${l} s of the ${BUDGET} s budget left)"
    return 1
  fi
}

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
# cubecl compiles its kernels with NVRTC, loaded at run time like the
# driver. A machine with the toolkit or PyTorch's wheels has it, but not
# always on the loader's path: add the first directory that holds it.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  nvrtc=$(find /usr/local/cuda*/ /usr/lib /opt "$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)" \
    -name 'libnvrtc.so*' 2>/dev/null | head -1)
  if [ -n "$nvrtc" ]; then
    export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "NVRTC: $nvrtc (added to LD_LIBRARY_PATH)"
  else
    echo "NVRTC: not found (cubecl cannot compile kernels)"
  fi
fi
"$NS" gpu

# A project with the paper's networks (BraTS preset) on 128² phantoms.
paper_project() {
  [ -d "$D/paper" ] && return
  "$NS" phantom --out "$D/data" --subjects 8 --size 128 > /dev/null 2>&1
  printf '[slicing]\nsize = [128, 128]\n[device]\nkind = "cuda"\n' > "$D/overlay.toml"
  "$NS" init "$D/paper" --data "$D/data" --preset brats2019 --config "$D/overlay.toml" --private-store > /dev/null 2>&1 ||
    echo "init of the paper-shaped project failed"
}

# The first GPU steps (all five workloads, paper widths, 128²) at level $1,
# convolutions as $3 says (NEXTSLICE_GPU_CONV), cold (new cache, new
# process) within $2 s, then warm (another process, our warm-up record
# removed so only cubecl's caches help).
first_steps() {
  local level=$1 cold=$2 conv=$3 start
  fits 40 "first steps at $level, convolutions $conv" || return
  paper_project
  # The caches the later checks share, for this way of choosing
  # convolutions: cold when this runs first, and the models bench after it
  # finds the shapes the two have in common (the VAE at 128² b16, the
  # gradient at b8) and most compiled kernels tuned already.
  local NEXTSLICE_GPU_CACHE="$D/cache-$level-$conv-$NEXTSLICE_GPU_MATMUL" NEXTSLICE_GPU_CONV=$conv
  export NEXTSLICE_GPU_CACHE NEXTSLICE_GPU_CONV
  echo "== first GPU steps, $level autotune, convolutions $conv, matmuls $NEXTSLICE_GPU_MATMUL, cold caches (new process)"
  start=$(secs)
  # Where the time goes (an H200 in stop 28: one CPU thread busy, GPU idle,
  # the compiled-kernel cache growing): sampled while it runs.
  sample_while_tuning "$NEXTSLICE_GPU_CACHE" > "$D/samples-$level.txt" &
  local sampler=$! compiled="$D/compiled-$level-$conv.txt"
  # Its last lines: each workload's time and kernels tuned, and how many
  # convolution passes the steered kernel took.
  NEXTSLICE_GPU_COMPILE_LOG=$compiled timeout "$(limit "$cold")" "$NS" gpu-warmup -p "$D/paper" --autotune "$level" 2>&1 |
    tr '\r' '\n' | tail -10
  echo "(cold $level, convolutions $conv: $(took "$start") s)"
  kill "$sampler" 2>/dev/null
  awk 'NR % 3 == 0' "$D/samples-$level.txt"
  compiled_kernels "$compiled"
  # Every candidate's time for every tuned shape: which convolution and
  # matmul kernels win on this GPU, to steer them without tuning. (Once:
  # the device brings back 8 files at most.)
  [ "$conv" = autotune ] && tar -C "$NEXTSLICE_GPU_CACHE" -czf "$OUT/autotune-$level-$conv.tar.gz" --exclude=kernels . 2>/dev/null &&
    echo "autotune results: autotune-$level-$conv.tar.gz ($(du -h "$OUT/autotune-$level-$conv.tar.gz" | cut -f1))"
  "$NS" gpu -p "$D/paper" | tail -3
  echo "== the same steps, warm caches (another process; our warm-up record removed)"
  rm -rf "$NEXTSLICE_GPU_CACHE"/*/warm
  start=$(secs)
  timeout "$(limit 60)" "$NS" gpu-warmup -p "$D/paper" --autotune "$level" 2>&1 | tr '\r' '\n' | tail -8
  echo "(warm $level, convolutions $conv: $(took "$start") s; it should say 0 kernels tuned)"
  du -sh "$NEXTSLICE_GPU_CACHE" 2>/dev/null
}

# What a process compiled (cubecl's compilation log, one line a kernel):
# how many, and the kernels compiled most often, by name.
compiled_kernels() {
  [ -s "$1" ] || { echo "compiled: no log"; return; }
  echo "compiled: $(grep -c 'Compiling kernel' "$1") kernels; most often:"
  grep -o 'Compiling kernel\].*' "$1" | sed 's/Compiling kernel\] *//' | sort | uniq -c | sort -rn | head -12
}

# Every 5 s: the cache's files and size, GPU load, and the busiest threads.
sample_while_tuning() {
  local t=0
  while sleep 5; do
    t=$((t + 5))
    echo "t=${t}s cache $(find "$1" -type f 2>/dev/null | wc -l) files $(du -sm "$1" 2>/dev/null | cut -f1) MB ·" \
      "GPU $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null) ·" \
      "top $(top -b -H -n1 2>/dev/null | sed -n 8,9p | awk '{printf "%s%% %s; ", $9, $12}')"
  done
}

PY=${NEXTSLICE_TORCH_PYTHON:-python3}

against_pytorch() {
  fits 100 "burn-cuda vs PyTorch" || return
  echo "== PyTorch"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || echo "no PyTorch here"
  echo "== models: burn-cuda (minimal autotune, convolutions $NEXTSLICE_GPU_CONV, matmuls $NEXTSLICE_GPU_MATMUL) vs PyTorch CUDA as users run it and with TF32 off"
  # burn first (each rate said as it finishes), PyTorch after: a slow burn
  # side stopped by the time limit still leaves its rates (stop 28 had
  # PyTorch's and none of burn's).
  local start
  start=$(secs)
  NEXTSLICE_GPU_COMPILE_LOG="$D/compiled-models.txt" NEXTSLICE_TORCH_PYTHON=$PY \
    timeout "$(limit "${PYTORCH_SECS:-300}")" "$BIN/models" --device cuda --repeat 10 --warmup 3 --autotune minimal --torch-last \
    --cases unet-train-128-b8,unet-infer-128-b8,unet-train-256-b32,unet-infer-256-b32,vae-train-128-b16,vae-train-256-b16,gradient-encode-128-b8,gradient-encode-256-b8 \
    2>&1 | tee "$OUT/models.txt"
  echo "(exit ${PIPESTATUS[0]}, $(took "$start") s)"
  compiled_kernels "$D/compiled-models.txt"
}

demo_round() {
  fits 90 "a demo round on CUDA" || return
  touch "$D/demo.ran"
  echo "== a demo round on CUDA, end to end (its own shapes: tuned as it goes)"
  local start
  start=$(secs)
  step() {
    echo "\$ nextslice $*"
    local s
    s=$(secs)
    timeout "$(limit "${STEP_SECS:-60}")" "$NS" "$@" 2>&1 | tr '\r' '\n' | tee -a "$D/demo-steps.log" | tail -3
    echo "($(took "$s") s)"
  }
  STEP_SECS=150 step demo --dir "$D/demo" --subjects 8 --device cuda --no-tui
  local P="$D/demo/project"
  step export -p "$P"
  step import -p "$P" "$D"/demo/data/*/*_seg.nii.gz
  step train --foreground --device cuda -p "$P"
  step suggest --foreground --device cuda -p "$P"
  step evaluate --foreground --device cuda -p "$P"
  step status -p "$P"
  # Every batch should have a shape its warm-up tuned (stop 32).
  echo "kernels tuned during the jobs, not in their warm-up: $(grep -c 'tuned during the job, not in its warm-up' "$D/demo-steps.log")"
  grep 'tuned during the job, not in its warm-up' "$D/demo-steps.log" | cut -c1-160 | head -8
  echo "(demo round $(took "$start") s)"
}

projection() {
  echo "== the paper's BraTS protocol from the measured rates (burn-cuda)"
  [ -f "$OUT/models.txt" ] || { echo "no models table: no projection"; return; }
  # 50 000 pool slices at 256²; VAE 50 epochs; 10 U-Net trainings (seed +
  # 9 rounds) of max(10 epochs, 200 steps) at batch 32 on 0.5 % + 1 % per
  # round of the pool; 9 suggestions, each an Eq. 3 gradient per labelled slice.
  # From the table, or (a run stopped early) the lines said as each case
  # finished: "burn CUDA:0 vae-train-256-b16: 123.4 slices/s (…)".
  awk '
    $1 == "burn" && $2 ~ /^CUDA/ && $3 ~ /:$/ { rate[substr($3, 1, length($3) - 1)] = $4 }
    $1 ~ /-b[0-9]+$/ && $2 ~ /^[0-9.]+$/      { rate[$1] = $2 }
    END {
      vae = rate["vae-train-256-b16"]; unet = rate["unet-train-256-b32"]; grad = rate["gradient-encode-256-b8"]
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
}

# The cases the experiments compare: the paper's shapes, training.
AB_CASES=unet-train-128-b8,unet-train-256-b32,vae-train-256-b16
# The models bench without PyTorch (the experiments compare burn with burn).
burn_only() {
  NEXTSLICE_TORCH_PYTHON=/nonexistent "$@" 2>&1 | grep -v "PyTorch not available"
  return "${PIPESTATUS[0]}"
}

# Our GPU paths (model::upsample's matmuls, model::norm_node's batch norm)
# against burn's kernels, in one process (no PyTorch: it has neither path).
kernels_ab() {
  column_ab "the burn's-kernels A/B" --burn-kernels "$AB_CASES" kernels-ab.txt \
    "our GPU paths (up-convolutions as matmuls, batch norm as one node) vs burn's kernels (burn-cuda)"
}

# The bench's cases plain, then again as its column flag $2 says, in one
# process (burn alone), the table into $OUT/$4.
column_ab() {
  local what=$1 flag=$2 cases=$3 file=$4 title=$5 most=${6:-150} start
  fits 60 "$what" || return
  echo "== $title"
  start=$(secs)
  burn_only timeout "$(limit "$most")" "$BIN/models" --device cuda --repeat 5 --warmup 3 \
    --autotune minimal "$flag" --cases "$cases" | tee "$OUT/$file"
  echo "($what: exit ${PIPESTATUS[0]}, $(took "$start") s)"
}

# cubecl's kernel profiler on one training step per case (warm caches by
# now), one process and file per case; prints each step's table, top rows.
profile_step() {
  fits 60 "the kernel profile" || return
  echo "== kernels of one training step (cubecl's profiler, which slows the step)"
  local start case file
  start=$(secs)
  for case in ${PROFILE_CASES:-unet-train-256-b32 vae-train-256-b16}; do
    file="$OUT/profile-$case.txt"
    NEXTSLICE_GPU_PROFILE="$file" burn_only timeout "$(limit 90)" "$BIN/models" --device cuda \
      --profile --warmup 2 --autotune minimal --cases "$case" > /dev/null
    echo "-- $case: the step's table (all of it in $(basename "$file"))"
    # The last table in the file is the profiled step's.
    [ -f "$file" ] && tac "$file" | sed '/^|⎺/q' | tac | head -24
  done
  echo "(profile $(took "$start") s)"
}

# Steered weight gradients with the batch folded into the channels
# (`model::weight_grad_fold`, auto) against unfolded, one process: stop
# 29's training ran at 0.06-0.14× PyTorch where the passes without weight
# gradients ran at 1.2×, and the weight gradient's GEMM has few output
# tiles and no split sum.
fold_ab() {
  column_ab "the weight-gradient fold A/B" --wgrad-fold \
    "${FOLD_CASES:-unet-train-128-b8,unet-train-256-b32,vae-train-128-b16}" fold-ab.txt \
    "steered weight gradients folded (NEXTSLICE_GPU_WGRAD_FOLD=auto) vs not (burn-cuda)"
}

# Matmuls steered to one kernel (`model::matmul_node`) against autotuned,
# one process: the first column runs them fixed (tuned already by the
# checks before), the second autotunes them (cold for these shapes, so it
# may take minutes); the steady-state price of not tuning.
matmul_ab() {
  column_ab "the fixed-matmul A/B" --matmul-ab \
    "${MATMUL_CASES:-unet-train-128-b8,vae-train-128-b16}" matmul-ab.txt \
    "matmuls fixed to one kernel (NEXTSLICE_GPU_MATMUL=$NEXTSLICE_GPU_MATMUL first) vs the other way (burn-cuda)" 300
}

# burn's fused CUDA backend (cuda-fusion build) against the plain one, the
# same cases one process after the other (the plain rates are the
# burn's-kernels A/B's, when it ran just before).
fusion_ab() {
  [ -x "$BIN/models-fusion" ] || { echo "== no models-fusion binary: no fusion A/B"; return; }
  fits 90 "the fusion A/B" || return
  echo "== burn's kernel fusion (cuda-fusion) vs plain burn-cuda"
  local start plain="$OUT/kernels-ab.txt"
  start=$(secs)
  if ! grep -q "^unet-train" "$plain" 2>/dev/null; then
    plain="$OUT/fusion-plain.txt"
    burn_only timeout "$(limit 150)" "$BIN/models" --device cuda --repeat 5 --warmup 3 --autotune minimal \
      --cases "$AB_CASES" | tee "$plain"
  fi
  burn_only timeout "$(limit 200)" "$BIN/models-fusion" --device cuda --repeat 5 --warmup 3 --autotune minimal \
    --cases "$AB_CASES" | tee "$OUT/fusion-fused.txt"
  awk 'NR == FNR { if ($2 ~ /^[0-9.]+$/) plain[$1] = $2; next }
       ($1 in plain) && $2 ~ /^[0-9.]+$/ { printf "%-24s fused/plain %.2f×\n", $1, $2 / plain[$1] }' \
    "$plain" "$OUT/fusion-fused.txt"
  echo "(fusion A/B $(took "$start") s)"
}

# The same cases in bfloat16 against f32, one process.
bf16_ab() {
  column_ab "the bf16 A/B" --bf16 "$AB_CASES,unet-infer-256-b32" bf16-ab.txt \
    "bfloat16 throughout vs f32 (burn-cuda; no mixed precision in burn 0.21)"
}

experiments() {
  [ -f "$OUT/fold-ab.txt" ] || fold_ab
  [ -f "$OUT/matmul-ab.txt" ] || matmul_ab
  profile_step
  kernels_ab
  fusion_ab
  bf16_ab
}

# What a second, shorter call on the still-warm machine runs after `all`
# (CUDA_CHECK_DIR kept): the weight-gradient fold A/B, the fixed-matmul
# A/B, a U-Net step's kernel profile, and the demo round if it has not run.
more() {
  fold_ab
  matmul_ab
  PROFILE_CASES=unet-train-128-b8 profile_step
  [ -f "$D/demo.ran" ] || demo_round
}

case "$PART" in
  all)
    # The first steps first (cold means cold; the bench after them starts
    # warmer), then burn's rates against PyTorch's (stop 29: steered
    # training at 0.06-0.14×, each cold case ~3 min), the projection and
    # the demo round; then what to change next.
    first_steps minimal 180 "$NEXTSLICE_GPU_CONV"
    PYTORCH_SECS=300 against_pytorch
    projection
    demo_round
    more
    # Everything autotuned (the default build's way): how far a cold first
    # step gets, and every candidate's time (the archive) to check the
    # steered kernels against.
    NEXTSLICE_GPU_MATMUL=autotune first_steps minimal 120 autotune
    experiments
    ;;
  more) more ;;
  tuning)
    first_steps minimal 200 implicit-gemm
    NEXTSLICE_GPU_MATMUL=autotune first_steps minimal 200 autotune
    ;;
  speed)
    against_pytorch
    demo_round
    projection
    ;;
  experiments) experiments ;;
  *) echo "unknown part $PART (all, more, tuning, speed or experiments)"; exit 2 ;;
esac
echo "(cuda-check $PART: $(( $(date +%s) - BEGAN )) s)"
