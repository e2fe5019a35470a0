#!/usr/bin/env bash
# The prepared GPU benchmark (issue 16), meant to finish in under 8 minutes on one H100/H200:
#   1. harness against a bare PyTorch loop, images per second, resnet18 at 224 px, batch 96, bf16
#      autocast, channels_last (msde-bench bench);
#   2. one fold of the paper recipe (resnet18 contrastive, synthetic `full` set, 224 px, 25 epochs)
#      timed, and extrapolated to the 10 folds of the protocol; the same fold with --compile;
#   3. cells per GPU: the same short grid (resnet18 baseline, quick recipe at 224 px, 2 epochs, 8
#      folds) swept with --per-gpu K for K = 1, 2, 4, 8; images per second of the GPU for each K;
#   4. the per-step table of benchmarks/speed.py at 224 px, batch 96 (precision x layout x optimiser).
# Prints one table. `bash benchmarks/gpu.sh --smoke` runs the same steps tiny on a CPU, to check the
# script itself (its numbers mean nothing).
set -euo pipefail
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
work=$(mktemp -d)
export MSDE_BENCH_HOME="$work/home"
if [ $smoke = 1 ]; then
  dev=cpu; size=48; batch=8; steps=2; rounds=1; fold_args="--epochs 1 --folds 2 --image-size 48 --batch-size 16 --data synth:tiny"
  grid_size=48; grid_epochs=1; grid_folds=2; ks="1 2"
else
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "no CUDA device: run this on a GPU machine (or --smoke on a CPU to check the script)" >&2; exit 1; }
  dev=cuda; size=224; batch=96; steps=20; rounds=5; fold_args=""; grid_size=224; grid_epochs=2; grid_folds=8
  ks="1 2 4 8"
fi
t() { local s; s=$(date +%s.%N); "$@" > "$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }; echo "$(date +%s.%N) - $s" | bc; }

# 1. harness against the bare loop
bench=$(msde-bench bench --model resnet18 --batch-size $batch --image-size $size --steps $steps --rounds $rounds \
  --device $dev --precision $([ $dev = cuda ] && echo bf16 || echo fp32) 2>&1)
bare_ms=$(echo "$bench" | awk '/bare PyTorch step/ {print $4}')
harness_ms=$(echo "$bench" | awk '/harness step/ {print $3}')

# 2. one paper-recipe fold, extrapolated to 10
msde-bench data synth "$work/warm" --variant tiny > /dev/null  # imports and caches warm
fold_s=$(t msde-bench run --model resnet18 --paradigm contrastive --recipe paper --fold 0 --device $dev \
  --out "$work/fold" --progress none --no-save-models $fold_args)
# the same fold with --compile (the compilation included)
fold_c_s=$(t msde-bench run --model resnet18 --paradigm contrastive --recipe paper --fold 0 --device $dev \
  --out "$work/fold_c" --progress none --no-save-models --compile $fold_args)

# 3. cells per GPU
rows=""
for k in $ks; do
  cat > "$work/grid$k.toml" <<GRID
recipe = "quick"
image_size = $grid_size
epochs = $grid_epochs
folds = $grid_folds
device = "$dev"
model = "resnet18"
paradigm = "baseline"
GRID
  s=$(t msde-bench sweep "$work/grid$k.toml" --out "$work/k$k" --workers $k --per-gpu $k --no-progress --no-save-models)
  imgs=$(python3 - "$work/k$k" <<'PY'
import json, pathlib, sys
res = [json.loads(p.read_text()) for p in pathlib.Path(sys.argv[1]).glob("*.json")]
print(sum(f["n_train_pairs"] * 2 * r["spec"]["epochs"] for r in res for f in r["folds"]))
PY
)
  rows="$rows| $k | $(echo "$s" | cut -c1-6) | $(echo "$imgs / $s" | bc -l | cut -c1-7) |\n"
done

echo
echo "| measurement | value |"
echo "|---|---|"
echo "| bare loop, ms per step (batch $batch, $size px) | $bare_ms |"
echo "| harness, ms per step | $harness_ms |"
echo "| harness images/s | $(echo "$batch * 1000 / $harness_ms" | bc -l | cut -c1-7) |"
echo "| paper recipe, one contrastive fold (s) | $(echo "$fold_s" | cut -c1-7) |"
echo "| paper recipe, 10 folds extrapolated (s) | $(echo "$fold_s * 10" | bc -l | cut -c1-7) |"
echo "| the same fold with --compile, compilation included (s) | $(echo "$fold_c_s" | cut -c1-7) |"
echo
echo "| cells per GPU (--per-gpu K) | wall s for $grid_folds cells | training images/s |"
echo "|---|---|---|"
printf "$rows"
echo
python3 "$(dirname "$0")/speed.py" --device $dev --image-size $size --batch-size $batch --rounds $rounds --steps $steps
rm -rf "$work"
