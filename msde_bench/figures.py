"""The leaderboard's figures, drawn from a table's numbers (board.frame): non-masked against
masked accuracy per row, and the mask gap of every row, each numbered as in the table. PNG (embedded in the
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
    """PNG and SVG bytes; the canvas fits what is drawn (a key beside the axes included)."""
    out = {}
    for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=100, metadata=metadata, bbox_inches="tight",
                    pad_inches=0.1)
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
    """A marker per paradigm: its own, else the others in turn, cycled (they never run out)."""
    extra = itertools.cycle(_MORE_MARKERS)
    return {p: MARKERS.get(p) or next(extra) for p in labels}


def _err(rec, key: str) -> tuple[float, float]:
    """(below, above) the mean: the confidence interval when there is one, else the std."""
    mean, ci = rec[f"{key}_mean"], rec[f"{key}_ci"]
    if ci is not None and not (isinstance(ci, float) and np.isnan(ci)):
        return mean - ci[0], ci[1] - mean
    std = rec[f"{key}_std"]
    return (std, std) if np.isfinite(std) else (0.0, 0.0)


#: rows listed in one column of the accuracy figure's key; more rows take more columns
KEY_ROWS_PER_COLUMN = 36


def _rows(df: pd.DataFrame) -> list[tuple[str, dict]]:
    """Each row of the table, in its order, as (its key label, its record): the label is the row's number
    in the table (the `#` column; the frame's order), its model, paradigm, variant, and start and recipe
    where the table's rows differ in them, so that every row has its own, readable at 100 rows."""
    label = _labeller(df)
    return [(f"{i}. {rec['model']} · {label(rec)}", rec) for i, rec in enumerate(df.to_dict("records"), 1)]


def _colours(plt, df: pd.DataFrame) -> dict:
    models = sorted(df["model"].unique())
    return {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}


def accuracy_figure(df: pd.DataFrame, title: str, classes: int = 7) -> dict[str, bytes]:
    """Non-masked (x) against masked (y) accuracy, one point per row with its 95 % intervals, numbered
    as the table's rows; colour = method, marker = paradigm; the diagonal (no mask gap) and chance
    (1 / `classes`) drawn in. The key beside the axes lists every row (number, method, paradigm,
    variant), in as many columns as it needs, so that no row hides behind it."""
    chance = 1 / classes
    plt = _plt()
    rows = _rows(df)
    with plt.rc_context(_style()):
        columns = max(1, -(-len(rows) // KEY_ROWS_PER_COLUMN))
        fig, ax = plt.subplots(figsize=(5.5, 5.5))  # the saved canvas grows to hold the key's columns
        colours = _colours(plt, df)
        markers = _markers(sorted(df["paradigm"].unique()))
        handles = []
        for i, (text, rec) in enumerate(rows, 1):
            marker, colour = markers[rec["paradigm"]], colours[rec["model"]]
            ax.errorbar(rec["acc_non_masked_mean"], rec["acc_masked_mean"],
                        xerr=np.array([_err(rec, "acc_non_masked")]).T, yerr=np.array([_err(rec, "acc_masked")]).T,
                        fmt=marker, color=colour, ms=5, capsize=2, lw=0.7, alpha=0.85)
            ax.annotate(str(i), (rec["acc_non_masked_mean"], rec["acc_masked_mean"]), xytext=(3, 2),
                        textcoords="offset points", fontsize=6)
            handles.append(plt.Line2D([], [], color=colour, marker=marker, ls="", label=text))
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        ax.axhline(chance, ls=":", color="grey", lw=0.8)
        ax.axvline(chance, ls=":", color="grey", lw=0.8)
        ax.text(chance + 0.01, 0.01, f"chance (1/{classes})", ha="left", va="bottom", fontsize=7, color="grey")
        ax.text(0.97, 0.93, "no mask gap", ha="right", rotation=45, fontsize=7, color="grey")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("non-masked accuracy")
        ax.set_ylabel("masked accuracy")
        ax.set_title(title)
        ax.grid(alpha=0.25)
        ax.legend(handles=handles, title="rows, numbered in the table's order (colour: method, marker: paradigm)",
                  loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=columns, fontsize=6.5, title_fontsize=7,
                  alignment="left", borderaxespad=0.0, handletextpad=0.3, columnspacing=1.0)
        out = _save(fig)
        plt.close(fig)
    return out


def gap_figure(df: pd.DataFrame, title: str) -> dict[str, bytes]:
    """The mask gap (non-masked − masked accuracy) of every row, one bar each with its interval, in the
    table's order (its number first in the label); colour = method (the scatter's colours). The
    figure grows with the rows, so that each keeps a readable label."""
    plt = _plt()
    rows = _rows(df)
    with plt.rc_context(_style()):
        colours = _colours(plt, df)
        fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.17 * len(rows) + 1.1)))
        ys = np.arange(len(rows))
        ax.barh(ys, [rec["mask_gap_mean"] for _, rec in rows], height=0.75,
                color=[colours[rec["model"]] for _, rec in rows], edgecolor="black", lw=0.4,
                xerr=np.array([_err(rec, "mask_gap") for _, rec in rows]).T, capsize=2, error_kw=dict(lw=0.8))
        ax.set_yticks(ys, [text for text, _ in rows], fontsize=6.5)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # row 1 on top, as in the table
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("mask gap (non-masked − masked accuracy)")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.25)
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


#: a table's figures draw its first rows (the best, in a ranked table); the markdown says so for a longer table
FIGURE_ROWS = 100


def figure_rows_note(n_rows: int) -> str | None:
    """What a table's figures leave out: None when they draw every row."""
    if n_rows <= FIGURE_ROWS:
        return None
    return f"The figures draw the table's first {FIGURE_ROWS} rows of {n_rows} (the rest are in the table only)."


def table_figures(df: pd.DataFrame, title: str, classes: int = 7) -> list[dict[str, bytes]]:
    """A table's figures in KINDS order, from its rows' numbers (board.frame, in the table's order: best
    row first when ranked); of a table over FIGURE_ROWS rows, its first FIGURE_ROWS, said in the title."""
    if len(df) > FIGURE_ROWS:
        title += f" (rows 1-{FIGURE_ROWS} of {len(df)})"
        df = df.head(FIGURE_ROWS)
    return [accuracy_figure(df, title, classes), gap_figure(df, title)]
