#!/usr/bin/env bash
# Harness overhead and data pipeline speed, at the quick recipe's and the paper recipe's sizes.
# Prints ratios (harness step / bare PyTorch step; data pipeline rate / model training rate).
set -euo pipefail
msde-bench bench --model resnet18 --batch-size 32 --image-size 48 "$@"
msde-bench bench --model resnet18 --batch-size 96 --image-size 224 --steps 3 --rounds 3 "$@"
