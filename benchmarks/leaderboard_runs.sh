#!/usr/bin/env bash
# Regenerates leaderboard/results/: every method x paradigm on the embedded synthetic dataset under
# the quick recipe (5 folds, seed 0), then leaderboard/README.md. Finished runs are reused
# (`--resume`), so an interrupted regeneration continues where it stopped.
#
#   bash benchmarks/leaderboard_runs.sh            # every method
#   bash benchmarks/leaderboard_runs.sh scn dan    # only these methods
set -euo pipefail
cd "$(dirname "$0")/.."
out=leaderboard/results
methods=("$@")
if [ ${#methods[@]} -eq 0 ]; then
  methods=(resnet18 scn eac dan ran scan dacl arm manet)
fi
for model in "${methods[@]}"; do
  if [ "$model" = resnet18 ]; then
    # the paper-style grid: baseline on non-masked, masked and mixed images, contrastive, distill
    msde-bench compare --model resnet18 --recipe quick --out "$out" --no-progress
  else
    for paradigm in baseline contrastive distill; do
      msde-bench run --model "$model" --paradigm "$paradigm" --recipe quick --out "$out" --resume --no-progress
    done
  fi
done
msde-bench leaderboard
