#!/usr/bin/env bash
# Wall time of the README's default benchmark from an empty cache (goal: under 150 s on a 2-core CPU,
# 180 s at most; non-masked accuracy >= 0.7, masked below non-masked).
set -euo pipefail
home=$(mktemp -d)
out=$(mktemp -d)
start=$(date +%s)
MSDE_BENCH_HOME="$home" msde-bench run --model resnet18 --paradigm baseline --out "$out" --no-progress "$@"
echo "wall time: $(( $(date +%s) - start )) s (cache and results in $home, $out)"
