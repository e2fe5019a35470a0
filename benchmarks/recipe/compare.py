"""Which training recipe converges on 48 px faces within a CPU budget? (issue 37, item 2)

Reads the results of `benchmarks/recipe/grid.toml` (the non-masked ResNet-18 baseline on FER-2013's
official Training split, one change at a time against the real48 recipe) and prints markdown: per row,
what it changes, its accuracy on FER-2013's PublicTest (the holdout's validation split: single crop,
and flip / 10-crop test-time augmentation beside it), the change against the base row, the training
throughput and the CPU-hours of the row (training seconds x threads), with the CPU it ran on.

The choice of a recipe looks at PublicTest only. PrivateTest (the test split) is printed only for the
rows a stage-2 confirmation marks (`--confirm RUN_ID ...`), never in the ablation table.

PublicTest has 3,589 images, so one accuracy has a standard error of about sqrt(p (1 - p) / 3589),
0.008 at p = 0.6; the table gives it, and a change under about twice the difference's error (0.02)
is not read as a difference. With --figure PATH, also draws accuracy against CPU-hours.

From the repository root:

    python benchmarks/recipe/compare.py --figure benchmarks/recipe/accuracy-vs-cpu.png \\
        > benchmarks/recipe/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "benchmarks" / "recipe" / "results"
#: the spec fields an ablation row may change, and how the table names each
CHANGES = ("model", "image_size", "epochs", "optimizer", "lr", "weight_decay", "schedule", "warmup_epochs", "augment",
           "label_smoothing", "mixup", "cutmix", "ema_decay")
#: the base row: the real48 recipe as it is (fields absent from a spec are at these values)
BASE = dict(model="resnet18", image_size=48, epochs=6, optimizer="adam", lr=2e-3, weight_decay=1e-4,
            schedule="multistep", warmup_epochs=0.0, augment="flip", label_smoothing=0.0, mixup=0.0, cutmix=0.0,
            ema_decay=0.0)


def load(folder: Path) -> list[dict]:
    """Every complete result of the grid (one fold each: the holdout split)."""
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        r = json.loads(path.read_text())
        if r.get("protocol", {}).get("complete") and r["spec"]["protocol"] == "holdout":
            out.append(r)
    return out


def changes(spec: dict) -> str:
    """What a row changes against the base recipe ("base" for none)."""
    diff = [f"{k}={spec.get(k, BASE[k])}" for k in CHANGES if spec.get(k, BASE[k]) != BASE[k]]
    return ", ".join(diff) or "base (real48)"


def stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def rows(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        f, spec = r["folds"][0], r["spec"]
        val = f.get("val")
        if not val:
            continue
        tta = val.get("tta", {})
        threads = r["env"].get("threads", 1)
        out.append(dict(
            run_id=r["run_id"], change=changes(spec), n=val["n_pairs"],
            nm=val["acc_non_masked"], m=val["acc_masked"],
            nm_flip=tta.get("flip", {}).get("acc_non_masked"), nm_10crop=tta.get("10crop", {}).get("acc_non_masked"),
            train_acc=(f.get("train_history") or [{}])[-1].get("train_acc"),
            images_per_second=f.get("train_images_per_second"),
            cpu_hours=f["train_seconds"] * threads / 3600, threads=threads,
            cpu=f"{r['env'].get('device_name', '?')} ({r['env'].get('cpu_bf16') or 'no bf16 hardware'})",
            test_nm=f["acc_non_masked"], test_m=f["acc_masked"]))
    return out


def _num(v, digits=3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def table(found: list[dict]) -> str:
    base = next((x for x in found if x["change"] == "base (real48)"), None)
    lines = ["| change against real48 | PublicTest non-masked (± s.e.) | vs base | flip TTA | 10-crop TTA | "
             "masked | last epoch's train acc | images/s | CPU-hours | threads | CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in sorted(found, key=lambda x: (x["change"] != "base (real48)", -x["nm"])):
        delta = "" if base is None or x is base else f"{x['nm'] - base['nm']:+.3f}"
        lines.append(f"| {x['change']} | {x['nm']:.3f} ± {stderr(x['nm'], x['n']):.3f} | {delta} | "
                     f"{_num(x['nm_flip'])} | {_num(x['nm_10crop'])} | {x['m']:.3f} | {_num(x['train_acc'])} | "
                     f"{_num(x['images_per_second'], 0)} | {x['cpu_hours']:.2f} | {x['threads']} | {x['cpu']} |")
    return "\n".join(lines)


def figure(found: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for x in found:
        ax.scatter(x["cpu_hours"], x["nm"], color="tab:blue")
        ax.annotate(x["change"], (x["cpu_hours"], x["nm"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.70, color="tab:red", lw=0.8, ls="--", label="the goal (0.70, on PrivateTest)")
    ax.set_xscale("log")
    ax.set_xlabel("CPU-hours of the row (training, threads x seconds)")
    ax.set_ylabel("FER-2013 PublicTest accuracy, non-masked")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=HERE)
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--confirm", nargs="*", default=(), metavar="RUN_ID",
                    help="rows whose PrivateTest numbers are printed (the chosen recipe, at full length)")
    args = ap.parse_args()
    found = rows(load(args.results))
    print("# Recipe ablations on FER-2013 (issue 37)\n")
    print("Generated by `python benchmarks/recipe/compare.py` from `benchmarks/recipe/results` "
          "(grid: `benchmarks/recipe/grid.toml`). The non-masked ResNet-18 baseline, trained on FER-2013's "
          "Training split, scored on PublicTest (3,589 faces): the only split any choice looks at. CPU-hours "
          "are one machine's: compare them only between rows of the same CPU.\n")
    if not found:
        print("No result yet: the grid has not run (`msde-bench sweep benchmarks/recipe/grid.toml --workers 2 "
              "--no-save-models`).")
        return
    print(table(found))
    confirmed = [x for x in found if x["run_id"] in set(args.confirm)]
    if confirmed:
        print("\n## Confirmation on PrivateTest (chosen on PublicTest beforehand)\n")
        print("| run | change | PrivateTest non-masked | PrivateTest masked |\n|---|---|---|---|")
        for x in confirmed:
            print(f"| {x['run_id']} | {x['change']} | {x['test_nm']:.3f} | {x['test_m']:.3f} |")
    if args.figure:
        figure(found, args.figure)


if __name__ == "__main__":
    main()
