#!/usr/bin/env bash
# The local executor against serial runs: the same small grid (resnet18 baseline and contrastive,
# seeds 0 and 1, the quick recipe at 1 epoch, 2 folds: 8 cells) run as serial `msde-bench run`s, as a
# sweep with 1 worker (the per-cell overhead: process start, dataset load and decode per cell) and
# with 2 workers (the cores divided between them). Prints wall times and checks the numbers agree
# for the same torch thread count.
set -euo pipefail
work=$(mktemp -d)
export MSDE_BENCH_HOME="$work/home"
cat > "$work/grid.toml" <<GRID
recipe = "quick"
epochs = 1
folds = 2
device = "cpu"
model = "resnet18"
paradigm = ["baseline", "contrastive"]
seed = [0, 1]
GRID
msde-bench data synth "$work/warm" --variant tiny > /dev/null  # imports warm
msde-bench sweep "$work/grid.toml" --out "$work/plan" --dry-run > /dev/null 2>&1  # generates synth:small once
t() { local s; s=$(date +%s.%N); "$@" > /dev/null 2>&1; echo "$(echo "$(date +%s.%N) - $s" | bc)"; }
serial=$(t bash -c "for p in baseline contrastive; do for s in 0 1; do OMP_NUM_THREADS=2 msde-bench run --recipe quick \
  --epochs 1 --folds 2 --device cpu --paradigm \$p --seed \$s --out $work/serial --no-progress --no-save-models; done; done")
one=$(t msde-bench sweep "$work/grid.toml" --out "$work/w1" --workers 1 --no-progress)
two=$(t msde-bench sweep "$work/grid.toml" --out "$work/w2" --workers 2 --no-progress)
echo "8 cells: serial runs ${serial} s, sweep --workers 1 ${one} s, --workers 2 ${two} s"
echo "per cell, sweep (1 worker) minus separate runs: $(echo "($one - $serial) / 8" | bc -l | cut -c1-5) s (negative: the sweep saves the process starts)"
python3 - "$work" <<'PY'
import json, pathlib, sys
w = pathlib.Path(sys.argv[1])
def folds(d):
    return {p.name: [(f["fold"], f["acc_non_masked"], f["acc_masked"]) for f in json.loads(p.read_text())["folds"]]
            for p in (w / d).glob("*.json")}
a, b, c = folds("serial"), folds("w1"), folds("w2")
print("serial == 1 worker (2 threads each):", a == b, "| 1 worker == 2 workers (2 vs 1 thread):", b == c)
PY
