"""The leaderboard's figures, drawn from a table's numbers (board.frame): non-masked against
masked accuracy per row, and the mask gap per method grouped by paradigm. PNG (embedded in the
markdown) and SVG, byte-stable for the same numbers and matplotlib version (no dates, a fixed SVG
hash salt, the bundled DejaVu fonts), so that `msde-bench leaderboard --check` can compare them."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pandas as pd

#: a marker per paradigm label; others cycle through the rest
MARKERS = {"baseline (mixed)": "o", "baseline (non-masked)": "s", "baseline (masked)": "D", "contrastive": "^",
           "distill": "v"}
_MORE_MARKERS = ("P", "X", "*", "h", "<", ">", "p", "8")


#: beside the figures: the matplotlib that drew them (`leaderboard --check` compares bytes only
#: with the same one)
RENDERER_FILE = "RENDERER"


def renderer() -> str:
    import matplotlib

    return f"matplotlib {matplotlib.__version__}"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style() -> dict:
    return {"svg.hashsalt": "msde-bench", "svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 8,
            "path.simplify": False}


def _save(fig) -> dict[str, bytes]:
    out = {}
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=100, metadata=metadata)
        out[fmt] = buf.getvalue()
    return out


def _labeller(df: pd.DataFrame):
    """A row's label in a table's figures: its paradigm and variant, and its start and recipe where
    the table's rows differ in them, so that every row of the table has its own point and bar (rows
    that differ only by start, such as random and FER-2013-pretrained, would otherwise share one)."""
    extra = [c for c in ("init", "recipe") if c in df and df[c].nunique() > 1]

    def label(rec) -> str:
        text = rec["paradigm"] + (f" ({rec['variant']})" if rec["variant"] else "")
        return text + "".join(f", {rec[c]}" for c in extra)

    return label


def _markers(labels: list[str]) -> dict[str, str]:
    """A marker per label: a paradigm's own, else the others in turn, cycled (they never run out)."""
    extra = itertools.cycle(_MORE_MARKERS)
    return {p: MARKERS.get(p) or next(extra) for p in labels}


def _err(rec, key: str) -> tuple[float, float]:
    """(below, above) the mean: the confidence interval when there is one, else the std."""
    mean, ci = rec[f"{key}_mean"], rec[f"{key}_ci"]
    if ci is not None and not (isinstance(ci, float) and np.isnan(ci)):
        return mean - ci[0], ci[1] - mean
    std = rec[f"{key}_std"]
    return (std, std) if np.isfinite(std) else (0.0, 0.0)


def accuracy_figure(df: pd.DataFrame, title: str, classes: int = 7) -> dict[str, bytes]:
    """Non-masked (x) against masked (y) accuracy, one point per row with its 95 % intervals; colour =
    method, marker = paradigm; the diagonal (no mask gap) and chance (1 / `classes`) drawn in."""
    chance = 1 / classes
    plt = _plt()
    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(7.5, 5.5))
        models = sorted(df["model"].unique())
        colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
        _label = _labeller(df)
        labels = sorted({_label(r) for _, r in df.iterrows()})
        markers = _markers(labels)
        for _, rec in df.iterrows():
            ax.errorbar(rec["acc_non_masked_mean"], rec["acc_masked_mean"],
                        xerr=np.array([_err(rec, "acc_non_masked")]).T, yerr=np.array([_err(rec, "acc_masked")]).T,
                        fmt=markers[_label(rec)], color=colours[rec["model"]], ms=6, capsize=2, lw=0.8, alpha=0.9)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        ax.axhline(chance, ls=":", color="grey", lw=0.8)
        ax.axvline(chance, ls=":", color="grey", lw=0.8)
        ax.text(chance + 0.01, 0.01, f"chance (1/{classes})", ha="left", va="bottom", fontsize=7, color="grey")
        ax.text(0.97, 0.93, "no mask gap", ha="right", rotation=38, fontsize=7, color="grey")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("non-masked accuracy")
        ax.set_ylabel("masked accuracy")
        ax.set_title(title)
        ax.grid(alpha=0.25)
        method_handles = [plt.Line2D([], [], color=colours[m], marker="o", ls="", label=m) for m in models]
        paradigm_handles = [plt.Line2D([], [], color="black", marker=markers[p], ls="", label=p) for p in labels]
        first = ax.legend(handles=method_handles, title="method", loc="upper left", fontsize=7, title_fontsize=7)
        ax.add_artist(first)
        ax.legend(handles=paradigm_handles, title="paradigm", loc="lower right", fontsize=7, title_fontsize=7)
        fig.tight_layout()
        out = _save(fig)
        plt.close(fig)
    return out


def _shade(colour, j: int, n: int):
    """Paradigm j of n as a lighter shade of the method's colour (hue = method, as in the scatter;
    hatches would make each SVG ten times larger)."""
    t = 0.65 * j / max(1, n - 1) if n > 1 else 0.0
    return tuple(c + (1 - c) * t for c in colour[:3])


def gap_figure(df: pd.DataFrame, title: str) -> dict[str, bytes]:
    """The mask gap (non-masked − masked accuracy) per method, one bar per paradigm, with intervals;
    colour = method (the scatter's colours), shade = paradigm (darkest first, as the legend lists)."""
    plt = _plt()
    with plt.rc_context(_style()):
        models = sorted(df["model"].unique())
        colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
        _label = _labeller(df)
        labels = sorted({_label(r) for _, r in df.iterrows()})
        fig, ax = plt.subplots(figsize=(min(12.0, max(6.0, 0.25 * len(models) * max(1, len(labels)))), 4.2))
        width = 0.8 / max(1, len(labels))
        for j, label in enumerate(labels):
            xs, ys, errs, cs = [], [], [], []
            for i, model in enumerate(models):
                sel = [r for _, r in df.iterrows() if r["model"] == model and _label(r) == label]
                if not sel:
                    continue
                rec = sel[0]
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(rec["mask_gap_mean"])
                errs.append(_err(rec, "mask_gap"))
                cs.append(_shade(colours[model], j, len(labels)))
            if xs:
                ax.bar(xs, ys, width=width * 0.95, color=cs, edgecolor="black", lw=0.4, yerr=np.array(errs).T,
                       capsize=2, error_kw=dict(lw=0.8))
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(models)), models)
        ax.set_ylabel("mask gap (non-masked − masked accuracy)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.25)
        handles = [plt.Rectangle((0, 0), 1, 1, facecolor=_shade((0.3, 0.3, 0.3), j, len(labels)), edgecolor="black",
                                 lw=0.4, label=label) for j, label in enumerate(labels)]
        ax.legend(handles=handles, title="paradigm (shade; colour: method)", fontsize=7, title_fontsize=7)
        fig.tight_layout()
        out = _save(fig)
        plt.close(fig)
    return out


#: the figures' folder beside the markdown leaderboard
FIGURES_DIR = "figures"
#: (kind, alt text) of a table's figures, in the order they are embedded
KINDS = (("accuracy", "non-masked against masked accuracy per row"), ("mask-gap", "mask gap per method and paradigm"))


def figure_paths(slug: str) -> list[tuple[str, str]]:
    """(path relative to the markdown, without suffix; alt text) of the figures of the table whose
    slug (board.Table.slug) is given, in KINDS order."""
    return [(f"{FIGURES_DIR}/{slug}-{kind}", alt) for kind, alt in KINDS]


def table_figures(df: pd.DataFrame, title: str, classes: int = 7) -> list[dict[str, bytes]]:
    """A table's figures in KINDS order, from its rows' numbers (board.frame, best row first)."""
    return [accuracy_figure(df, title, classes), gap_figure(df, title)]
