"""Time and peak memory of `msde-bench leaderboard` (render) and `leaderboard --check` and `results`
against the number of result files (issue 40, item 7; goal: 1,000 results in under 30 s).

    python benchmarks/leaderboard_scale/bench.py [--sizes 100 1000 10000] [--repeat 1]

Each size writes N synthetic 10-fold results into a temporary folder: one table in which every
result is its own row of one model and paradigm, told apart by its learning rate (the worst case for
the rows' differing settings, which are computed per model and paradigm), with record digests as a
current result carries. Each command runs in a fresh process (its own peak RSS, as a user sees it);
the figures are drawn. Prints one line per size and command: seconds, peak RSS in MiB, and seconds
per 1,000 results (flat when the cost is linear).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from msde_bench import __version__
from msde_bench import results as R
from msde_bench.metrics import summarise
from msde_bench.spec import RunSpec


def make_result(i: int, n_folds: int = 10) -> dict:
    """Result i: a ResNet-18 mixed baseline at its own learning rate, seed 0, complete."""
    spec = RunSpec(model="resnet18", paradigm="baseline", seed=0, folds=n_folds, lr=round(1e-4 * (1 + i), 8),
                   options=(("train_on", "mixed"),)).to_dict()
    folds = []
    for k in range(n_folds):
        a, b = 0.6 + ((i * 7 + k * 3) % 29) / 100, 0.3 + ((i * 11 + k * 5) % 31) / 100
        fold = dict(fold=k, test_subjects=[k], n_test_pairs=10, n_train_pairs=90, acc_non_masked=a, acc_masked=b,
                    acc_overall=(a + b) / 2, mask_gap=a - b, macro_f1_non_masked=a, macro_f1_masked=b,
                    pair_agreement=0.5, per_class={}, confusion_non_masked=[], confusion_masked=[],
                    train_seconds=10.0 + k, train_images_per_second=100.0, n_params=11_000_000)
        fold["record_sha256"] = R.record_digest(fold)
        folds.append(fold)
    created = "2026-01-01T00:00:00+00:00"
    return dict(schema=R.SCHEMA, run_id=RunSpec.from_dict(spec).run_id("synth-scale"), created=created,
                finished=created, msde_bench_version=__version__, git_sha=None, spec=spec,
                dataset=dict(name="synth-scale", fingerprint="f" * 16, n_pairs=100, n_subjects=100),
                protocol=dict(name="msde-clean", version=1, folds=n_folds, split="clean", selection="last",
                              run_folds=list(range(n_folds)), complete=True),
                env={}, folds=folds, summary=summarise(folds))


def write_results(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        r = make_result(i)
        (folder / f"{r['run_id']}.json").write_text(json.dumps(r), encoding="utf-8")


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of a command in a fresh process."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-400:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far: run the sizes smallest first
    return seconds, max(peak, before) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    args = ap.parse_args()
    exe = [sys.executable, "-m", "msde_bench"]
    print(f"{'results':>8}  {'command':<22} {'seconds':>8} {'peak MiB':>9} {'s / 1000 results':>17}")
    for n in sorted(args.sizes):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            write_results(tmp / "results", n)
            (tmp / "notes.toml").write_text("", encoding="utf-8")
            board = ["leaderboard", "--results", "results", "--output", "board.md", "--notes", "notes.toml"]
            for name, cmd in (("leaderboard", board), ("leaderboard --check", [*board, "--check"]),
                              ("results", ["results", "--results", "results"])):
                seconds, peak = timed([*exe, *cmd], tmp)
                print(f"{n:>8}  {name:<22} {seconds:>8.1f} {peak:>9.0f} {seconds / n * 1000:>17.2f}", flush=True)


if __name__ == "__main__":
    main()
