"""`msde-bench compare`: the paper-style table of every paradigm for one model on one dataset.

Rows: baseline trained on non-masked, masked and mixed images, contrastive, distill; columns:
non-masked, masked and overall accuracy (mean ± std over folds), the mask gap, and the change of
non-masked accuracy relative to the non-masked-only baseline. Every row uses the same seed, the
same protocol and therefore the same folds; finished runs are reused (`--resume` semantics).
"""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from msde_bench import runner
from msde_bench.metrics import metrics_in


def run_all(specs: list, dataset, out: str | Path, console, show_progress, log_samples: bool = False,
            save_models: bool = False, track=None) -> list[dict]:
    """Runs every row (finished ones reused); fold models are saved only with `save_models` (five
    runs of every fold: a smoke run at 48 px wrote 1.1 GB of them). `track`: msde_bench.tracking."""
    results = []
    for title, spec in specs:
        console.print(f"[bold]{title}[/]")
        result, path = runner.run(spec, dataset, out, resume=True, console=console, show_progress=show_progress,
                                  log_samples=log_samples, save_models=save_models, track=track)
        results.append(dict(title=title, result=result, path=str(path)))
    return results


def table(rows: list[dict], fmt: str = "github") -> str:
    """The paper-style table: a row per paradigm, the metrics of view `compare` (metrics.METRICS) as
    mean ± std over folds, and the change of non-masked accuracy from the non-masked-only baseline."""
    ref = next((r for r in rows if r["title"] == "baseline (non-masked)"), None)
    ref_nm = ref["result"]["summary"]["acc_non_masked"]["mean"] if ref else None
    shown = metrics_in("compare")
    out = []
    for r in rows:
        s = r["result"]["summary"]
        delta = "" if ref_nm is None else f"{s['acc_non_masked']['mean'] - ref_nm:+.3f}"
        out.append([r["title"], *(f"{m.text(s[m.key]['mean'])} ± {m.text(s[m.key]['std'])}" for m in shown), delta,
                    s["acc_masked"]["n"]])
    headers = ["paradigm", *(m.label for m in shown), "Δ non-masked vs NM baseline", "folds"]
    return tabulate(out, headers=headers, tablefmt=fmt, disable_numparse=True)



