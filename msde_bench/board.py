"""The leaderboard's model: result files -> tables of rows with their statistics. Nothing here
renders; the markdown (leaderboard.py), the figures (figures.py) and the web page (webpage.py) each
render a `Board`. It imports no torch (tests/test_leaderboard.py checks it).

One table per dataset (name and fingerprint) and protocol (name, version, split). A row is one
run spec without its seed: runs of the same spec with different seeds are aggregated (mean and
sample standard deviation over every seed x fold value); of several runs with the same spec and
seed (separate `--fold` runs included) a complete one wins over incomplete ones, then the newest,
and the others are listed as superseded. Complete rows are ranked by masked accuracy (except
evaluation-only tables); a row whose runs did not finish every fold of the protocol is shown apart,
never ranked. Each mean has its 95 % confidence interval; rows whose masked accuracy is not
significantly different from the best row's (corrected resampled t-test over the shared (seed,
fold) pairs, p >= 0.05; msde_bench.stats) are marked.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

import numpy as np
import pandas as pd

from msde_bench import budget
from msde_bench import metrics as M
from msde_bench import samples as S
from msde_bench.balance import board_note as balance_note
from msde_bench.errors import MsdeError
from msde_bench.mdtext import code, md_text
from msde_bench.metrics import metrics_in
from msde_bench.options import QUIRKS, is_method_key, method_values
from msde_bench.results import differing, legacy_problem, load_all
from msde_bench.spec import RunSpec
from msde_bench.stats import corrected_ci, corrected_ttest, detectable_difference, paired_images

P_THRESHOLD = 0.05
#: the notes next to rows of the committed leaderboard (leaderboard/notes.toml)
DEFAULT_NOTES = Path("leaderboard/notes.toml")


@dataclass
class Row:
    key: str
    runs: list[dict] = field(default_factory=list)
    _full_spec: dict | None = field(default=None, repr=False, compare=False)  # full_spec's, once

    @property
    def spec(self) -> dict:
        return self.runs[0]["spec"]

    @property
    def complete(self) -> bool:
        return all(r["protocol"].get("complete", False) for r in self.runs)

    def values(self, metric: str) -> dict[tuple[int, int], float]:
        """{(seed, fold): value} over every run of the row (a fold that does not record the metric,
        e.g. one from before the metric was added, has none)."""
        return {(r["spec"]["seed"], f["fold"]): float(f[metric]) for r in self.runs for f in r["folds"]
                if f.get(metric) is not None}

    def test_train_ratio(self) -> float:
        """Mean n_test / n_train of the row's folds (1 / (k - 1) for k-fold when not recorded)."""
        ratios = [f["n_test_pairs"] / f["n_train_pairs"] for r in self.runs for f in r["folds"]
                  if f.get("n_train_pairs")]
        if ratios:
            return float(np.mean(ratios))
        k = self.runs[0]["protocol"]["folds"]
        return 1 / (k - 1) if k > 1 else 1.0

    def ci(self, metric: str) -> tuple[float, float] | None:
        """95 % confidence interval of the mean over seeds x folds, corrected resampled variance,
        clipped to the values the metric can take (a share: [0, 1]; the mask gap: [-1, 1]); with
        few folds the t interval reaches past them."""
        ci = corrected_ci(list(self.values(metric).values()), self.test_train_ratio())
        known = M.metric(metric)
        limits = known.limits if known is not None else None
        if ci is None or limits is None:
            return ci
        return max(ci[0], limits[0]), min(ci[1], limits[1])

    def stat(self, metric: str) -> tuple[float, float, int]:
        vals = list(self.values(metric).values())
        n = len(vals)
        mean = float(np.mean(vals)) if n else math.nan
        std = float(np.std(vals, ddof=1)) if n > 1 else 0.0
        return mean, std, n


def _spec_key(spec: dict, with_seed: bool) -> str:
    """A row's identity: the spec without the folds it selected (separate `--fold` runs of one spec
    are one row) and, for a row, without the seed."""
    s = {k: v for k, v in spec.items() if (with_seed or k != "seed") and k != "run_folds"}
    return json.dumps(s, sort_keys=True, separators=(",", ":"))


def scored_set(run: dict) -> dict:
    """The dataset block of the set a result's numbers were computed on: its test set for a
    cross-dataset run (`test_dataset`), else its own."""
    return run.get("test_dataset") or run["dataset"]


def group_results(results: list[dict]) -> tuple[dict, list[dict]]:
    """Groups results into tables of rows; returns ({table key: [Row]}, superseded runs)."""
    newest: dict[str, dict] = {}
    superseded = []
    # a complete result wins over incomplete ones of the same spec and seed (the merge of its
    # `--fold` runs), then the newest wins
    order = sorted(results, key=lambda r: (bool(r["protocol"].get("complete", False)), r.get("finished") or r["created"],
                                           r["run_id"], r["_path"]))
    for r in order:
        k = _spec_key(r["spec"], with_seed=True)
        if r.get("evaluation"):  # an evaluation of a run's models never stands in for the run, nor for another test
            k = f"evaluation:{r['run_id']}"
        if k in newest:
            superseded.append(newest[k])
        newest[k] = r
    tables: dict[tuple, dict[str, Row]] = {}
    for r in newest.values():
        ds, pr = scored_set(r), r["protocol"]
        name = ds["name"] + (f" (trained on {r['dataset']['name']})" if r.get("test_dataset") else "")
        tkey = (name, ds["fingerprint"], pr["name"], pr["version"], pr["split"], pr["folds"])
        rows = tables.setdefault(tkey, {})
        k = _spec_key(r["spec"], with_seed=False)
        rows.setdefault(k, Row(k)).runs.append(r)
    for rows in tables.values():
        for row in rows.values():
            row.runs.sort(key=lambda r: r["spec"]["seed"])
    return {k: list(v.values()) for k, v in sorted(tables.items())}, sorted(superseded, key=lambda r: r["run_id"])


def sources(row: Row) -> list[str]:
    """The runs whose models an evaluation-only row scored (their run ids, or the files)."""
    found = [m.get("run_id") or Path(m["file"]).name for r in row.runs for m in r["evaluation"].get("models", [])]
    return sorted(set(found))


def n_classes(rows: list[Row]) -> int:
    """How many classes the table's dataset has (its results record them; 7 where they do not)."""
    return len(rows[0].runs[0]["dataset"].get("classes") or range(7))


def paired_p(a: dict, b: dict, test_train_ratio: float) -> float | None:
    """Two-sided corrected resampled t-test (stats.corrected_ttest) over the shared (seed, fold)
    keys; None when fewer than 2 pairs."""
    keys = sorted(set(a) & set(b))
    return corrected_ttest([a[k] - b[k] for k in keys], test_train_ratio)


def image_correct(row: Row, view: str = "masked") -> tuple[list[str], np.ndarray] | None:
    """For a row scored on a fixed split (one fold per seed) whose runs logged their predictions
    (--log-samples): (image names, seeds x images array of 1 correct / 0 wrong) on `view`, the
    seeds in order; None otherwise (or when the seeds scored different images)."""
    names, table = None, []
    for run in sorted(row.runs, key=lambda r: r["spec"]["seed"]):
        if len(run["folds"]) != 1 or not run["folds"][0].get("samples_file") or not run.get("_path"):
            return None
        fold = run["folds"][0]
        _, lines = S.read(Path(run["_path"]).parent / fold["samples_file"], fold.get("samples_sha256"))
        mine = {r["pair"]: float(r["label"] == r["prediction"]) for r in lines if r["view"] == view}
        if names is None:
            names = sorted(mine)
        elif sorted(mine) != names:
            return None
        table.append([mine[n] for n in names])
    return (names, np.array(table)) if names else None


def compare_rows(top: Row, row: Row, metric: str = "acc_masked") -> dict | None:
    """`row` against `top` on `metric`: {test, p, detectable (the difference the test detects with
    80 % power)}. Over shared (seed, fold) pairs of k-fold runs, the corrected resampled t-test; on
    a fixed split (one fold per seed) whose rows logged their predictions, the paired per-image test
    (stats.paired_images) on the masked or non-masked images, else the t-test over seeds; None with
    fewer than 2 shared values and no predictions."""
    a, b = top.values(metric), row.values(metric)
    keys = sorted(set(a) & set(b))
    d = [b[k] - a[k] for k in keys]
    ratio = (top.test_train_ratio() + row.test_train_ratio()) / 2
    t_test = dict(test="corrected resampled t-test", p=paired_p(a, b, ratio), detectable=detectable_difference(d, ratio))
    if len({k[1] for k in keys}) > 1:
        return t_test
    view = {"acc_masked": "masked", "acc_non_masked": "non-masked"}.get(metric)
    x, y = (image_correct(top, view), image_correct(row, view)) if view else (None, None)
    if x is not None and y is not None and x[0] == y[0]:
        return paired_images(x[1], y[1])
    return t_test if len(keys) >= 2 else None


def power_note(group: Group) -> str | None:
    """What the group's comparisons with its top row could detect: the smallest masked-accuracy
    difference found with 80 % power (two-sided, alpha 0.05), median and range over the rows, per
    test; and how many rows no test applies to. None for a group without comparisons."""
    if not group.ranked or len(group.rows) < 2:
        return None
    by_test: dict[str, list[float]] = {}
    untested = 0
    for t in group.tests[1:]:
        if t is None or t.get("detectable") is None or not math.isfinite(t["detectable"]):
            untested += 1
        else:
            by_test.setdefault(t["test"].split(" (")[0], []).append(t["detectable"])
    parts = []
    for test, values in by_test.items():
        v = np.array(values)
        spread = f" ({v.min():.3f}-{v.max():.3f} over {len(v)} rows)" if len(v) > 1 else ""
        parts.append(f"{np.median(v):.3f}{spread} by the {test}")
    text = ("Power: the smallest masked-accuracy difference from the top row that these comparisons detect with "
            "80 % power (two-sided, α = 0.05) is " + "; ".join(parts) + "; a smaller true difference can go unseen, so "
            "a row not significantly different is not shown equal.") if parts else ""
    if untested:
        text += (f" {untested} row{'s' if untested > 1 else ''} with no test (one fold of one seed and no per-image "
                 "predictions: run with --log-samples for a paired per-image test).")
    return text.strip() or None


def _describe(row: Row) -> dict:
    s = row.spec
    opts = s.get("options", {})
    backbone = method_values(s["model"], opts).get("backbone", s["model"])
    return dict(model=s["model"], paradigm=_paradigm_label(s), backbone=backbone, recipe=s["recipe"],
                init=_init_label(s, row.runs[0]))


def _init_label(spec: dict, run: dict) -> str:
    """Where a row's weights started: random, timm's pretrained weights, a file (its name), or the
    harness's pretraining on another set (`pretrain:DATA`: "pretrained on <the set's name>", as the
    result records it)."""
    init = spec.get("init")
    if spec.get("pretrained"):
        return "pretrained (timm)"
    if not init:
        return "random"
    if str(init).startswith("pretrain:"):
        name = (run.get("pretrained") or {}).get("dataset", {}).get("name")
        return f"pretrained on {name or str(init)[len('pretrain:'):].partition('#')[0]}"
    return Path(init).name


def _paradigm_label(spec: dict) -> str:
    opts = spec.get("options", {})
    label = spec["paradigm"]
    if spec["paradigm"] == "baseline":
        label += f" ({opts.get('train_on', 'mixed')})"
    changed = [f"{k}={v}" for k, v in sorted(opts.items()) if k.startswith("quirk_") and v]
    # specs store every option, so the paradigm's own reference quirks are the un-prefixed quirk_ keys
    reference = {*QUIRKS, *(k for k in opts if k.startswith("quirk_") and not is_method_key(spec["model"], k))}
    if all(opts.get(k) for k in reference):
        changed = ["reference quirks", *(c for c in changed if c.split("=")[0] not in reference)]
    if spec.get("candidates"):  # nested selection (msde_bench.selection)
        changed.append("weights chosen on validation: " + "; ".join(
            f"{k} in {{{', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vs)}}}"
            for k, vs in sorted(spec["candidates"].items())))
    return label + (f" [{', '.join(changed)}]" if changed else "")


# the row's own columns (model, paradigm, recipe, init: `pretrained` and `init` make the init column) are no variant
_NOT_SETTINGS = {"model", "paradigm", "seed", "run_folds", "options", "data", "recipe", "init", "pretrained"}


def full_spec(row: Row) -> dict:
    """The row's spec with every field (those missing from older results get their defaults), read once
    per row (not to be changed in place)."""
    if row._full_spec is None:
        row._full_spec = RunSpec.from_dict(row.spec).to_dict()
    return row._full_spec


def _settings(row: Row) -> dict:
    s = full_spec(row)
    flat = {k: v for k, v in s.items() if k not in _NOT_SETTINGS}
    flat.update({k: v for k, v in s.get("options", {}).items() if not k.startswith("quirk_") and k != "train_on"})
    return flat


def variants(rows: list[Row]) -> list[str]:
    """For each row, the settings that tell it apart from the other rows of the same model and
    paradigm in the table (e.g. `lambda=10`, `batch_size=16`)."""
    described = [_describe(row) for row in rows]
    return differing([((d["model"], d["paradigm"]), _settings(row)) for d, row in zip(described, rows)])


def frame(rows: list[Row]) -> pd.DataFrame:
    """The numbers of a table as a DataFrame (one line per row, in the given order)."""
    recs = []
    for row, variant in zip(rows, variants(rows)):
        rec = _describe(row)
        rec["variant"] = variant
        for key in (m.key for m in metrics_in("table")):
            mean, std, n = row.stat(key)
            rec[f"{key}_mean"], rec[f"{key}_std"], rec[f"{key}_n"] = mean, std, n
            rec[f"{key}_ci"] = row.ci(key)
        seeds = len({r["spec"]["seed"] for r in row.runs})
        rec["folds"] = len({f["fold"] for r in row.runs for f in r["folds"]})
        rec["seeds"] = seeds
        rec["params"] = int(row.runs[0]["folds"][0].get("n_params", 0))
        costs = [fold_seconds(f) for r in row.runs for f in r["folds"]]
        rec["train_seconds"] = float(np.median(costs))
        rec["time_spread"] = bool(min(costs) > 0 and max(costs) / min(costs) > TIME_SPREAD)
        rec["device"] = "; ".join(sorted({_device(r) for r in row.runs}))
        rec["provider"] = "; ".join(sorted({_provider(r) for r in row.runs}))
        rec["run_ids"] = ", ".join(r["run_id"] for r in row.runs)
        recs.append(rec)
    return pd.DataFrame.from_records(recs)


#: a row's fold times "spread widely" when the slowest fold took this many times the fastest
TIME_SPREAD = 1.5


def fold_seconds(fold: dict) -> float:
    """What one fold cost to train: its train_seconds and, for distill, its teacher's training
    (recorded with the teacher, also when it came from the cache)."""
    teacher = (fold.get("paradigm") or {}).get("teacher_train_seconds")
    return float(fold["train_seconds"]) + (float(teacher) if isinstance(teacher, (int, float)) else 0.0)


def _device(run: dict) -> str:
    """Where a run trained, as its result records it: `cpu, 2 threads`, a GPU's name, or `?`."""
    env = run.get("env") or {}
    dev = str(env.get("device") or "")
    if dev == "cpu":
        threads = env.get("threads")
        return f"cpu, {threads} thread{'' if threads == 1 else 's'}" if threads else "cpu"
    if dev.startswith("cuda"):
        return str(env.get("device_name") or dev)
    return dev or "?"


def _provider(run: dict) -> str:
    """The plugin that provided the run's method, as its result records it: `scn 1.0.0 (in-tree)`,
    `msde-bench 0.1.0 (built-in)` for a plain timm model, `?` for a result that does not say."""
    mp = run.get("method_plugin")
    if not isinstance(mp, dict):
        return "?"
    name = "msde-bench" if mp.get("plugin") == "msde_bench.builtins" else mp.get("plugin", "?")
    dist = mp.get("distribution") or ""
    origin = mp.get("source", "?") + (f", {dist}" if mp.get("source") == "installed" and dist else "")
    return f"{name} {mp.get('version', '?')} ({origin})"


DEFAULT_NOTES = Path("leaderboard/notes.toml")


def _tables(path: Path | None, name: str) -> list:
    """The [[name]] tables of the notes file (none without one); a file that is not TOML is an error."""
    if path is None or not path.is_file():
        return []
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")).get(name, [])
    except (ValueError, UnicodeDecodeError) as e:
        raise MsdeError(f"{path}: not a valid TOML file ({e})") from None


def read_notes(path: Path | None) -> list[dict]:
    """[[note]] tables of a TOML file: `text`, and the spec values a row must have for the note to
    stand next to it (spec fields such as model, paradigm, recipe, budget, or `options.KEY`)."""
    notes = _tables(path, "note")
    known = {f.name for f in fields(RunSpec)}
    for i, note in enumerate(notes):
        if not isinstance(note, dict) or not isinstance(note.get("text"), str):
            raise MsdeError(f"{path}: note[{i}] needs a `text` string")
        unknown = [k for k in note if k != "text" and k not in known and not k.startswith("options.")]
        if unknown:
            raise MsdeError(f"{path}: note[{i}] matches on {unknown[0]!r}, which is not a spec field "
                            f"({', '.join(sorted(known))}) or options.KEY")
    return notes


def read_dataset_notes(path: Path | None) -> list[dict]:
    """[[dataset]] tables of the notes file: `text` (what the set is, where to get it, how to cite
    it), shown under the heading of every table whose dataset has the given `name`."""
    notes = _tables(path, "dataset")
    for i, note in enumerate(notes):
        if not isinstance(note, dict) or not isinstance(note.get("text"), str) or not isinstance(note.get("name"), str):
            raise MsdeError(f"{path}: dataset[{i}] needs a `name` (the dataset's) and a `text` string")
        unknown = sorted(set(note) - {"name", "text"})
        if unknown:
            raise MsdeError(f"{path}: dataset[{i}] has {unknown[0]!r}; a dataset note has only `name` and `text`")
    return notes


def note_matches(note: dict, spec: dict) -> bool:
    for key, want in note.items():
        if key == "text":
            continue
        have = spec.get("options", {}).get(key[len("options."):]) if key.startswith("options.") else spec.get(key)
        if have != want:
            return False
    return True


def budget_matters(row: Row) -> bool:
    """Whether the row's paradigm would train differently under the other budget rule, as its
    result records it (`budget_rules_differ`, written since 0.7.0 where the paradigm is built); for
    an older result of a built-in paradigm from its shape (budget.builtin_shape), else True."""
    run = row.runs[0]
    recorded = run.get("budget_rules_differ")
    if isinstance(recorded, bool):
        return recorded
    spec = full_spec(row)
    try:
        shape = budget.builtin_shape(spec["paradigm"], dict(spec.get("options") or ()))
        return shape is None or not budget.same_under_both(int(spec["batch_size"]), *shape)
    except (MsdeError, ValueError, TypeError, KeyError):
        return True


# ------------------------------------------------------------------------------------------
# what a table's dataset is and how its rows were made comparable (markdown text; the page strips the marks)


BUDGET_TEXT = {
    "steps": "equal optimiser steps (`--budget steps`): every paradigm takes the mixed baseline's steps with "
             "batch-size images per step (a contrastive batch holds half as many pairs; single-view paradigms, "
             "the one-view baselines and distill's student, pass over the pairs twice an epoch)",
    "epochs": "equal epochs (`--budget epochs`, the reference code's rule): a contrastive batch holds both views "
              "of batch-size pairs, so contrastive takes half the optimiser steps of the mixed baseline and "
              "distill's student sees half its images",
}


def budget_note(rows: list[Row]) -> str:
    """How the table's rows were made comparable (spec.BUDGETS) and in which precision they ran."""
    specs = [full_spec(r) for r in rows]
    matters = [full_spec(r) for r in rows if budget_matters(r)]
    budgets = sorted({s["budget"] for s in matters or specs})
    precisions = sorted({s["precision"] for s in specs})
    if len(budgets) == 1:
        text = f"Budget: {BUDGET_TEXT[budgets[0]]}."
    else:
        text = "Budget: rows differ (each result's spec records its rule): " + "; ".join(
            f"`{b}`: {BUDGET_TEXT[b].split(': ', 1)[-1]}" for b in budgets) + "."
    if len(matters) < len(specs):
        text += " The mixed baselines train identically under both rules (their specs record `steps`)."
    shown = precisions[0] if len(precisions) == 1 else "rows differ (see each row's `precision=`)"
    return text + f" Precision: {shown}."


def dataset_note(rows: list[Row]) -> str:
    """What the table's dataset is, from what its results record: the embedded synthetic set (its
    `synth:` root) gets the smoke-numbers caveat; any other set is named with its size."""
    run = rows[0].runs[0]
    ds = scored_set(run)
    size = f"{ds['n_pairs']} pairs of {ds['n_subjects']} subjects"
    root = str(ds.get("root", ""))
    if root.startswith("synth:"):
        return (f"_Smoke numbers on the embedded synthetic set {code(root)} (drawn faces with procedural masks; "
                f"{size}). They show that every method and paradigm runs end to end under the protocol; they are "
                "not MSD-E numbers and say little about how the methods compare on real faces._")
    text = (f"_Dataset {md_text(ds['name'])} ({size}, fingerprint {code(ds['fingerprint'])}): the numbers of the "
            "images these results were computed on; a set with another fingerprint gets a table of its own._")
    conv = ds.get("conversion")
    if isinstance(conv, dict):
        text += " " + conversion_note(ds, conv)
    elif len(ds.get("classes") or range(7)) < 7:
        text += f" {_classes_text(ds['classes'])}."
    protocol = run.get("protocol", {})
    if run.get("test_dataset"):
        train = run["dataset"]
        text += (f" **Cross-dataset:** trained on {md_text(train['name'])} (fingerprint {code(train['fingerprint'])}) "
                 f"under its protocol's folds, each fold's model scored on {md_text(ds.get('scored_on', 'every pair'))} "
                 "of this set; each result keeps the fold's own test numbers too (`in_domain`). Test pairs whose face "
                 "is one the fold trained on (the same image bytes) are left out and counted "
                 "(`excluded_trained_faces`); the same people in other images are not matched across sets.")
    elif ds.get("folds_by") == "image" and protocol.get("split") == "holdout":
        text += (" **No identities:** the set records no subjects, so its official split is the protocol and "
                 "whether a person is on both sides of it is not known (as for every result on that split).")
    elif ds.get("folds_by") == "image":
        text += (" **Image-level folds:** this set records no subject identities (every image is its own subject), "
                 "so one person can be on both sides of a fold and these numbers are optimistic; they are not "
                 "subject-disjoint results.")
    return text


def conversion_note(ds: dict, conv: dict) -> str:
    """How a converted set was made, from what its results record (PairedDataset.conversion)."""
    masking = conv.get("masking") or {}
    placed = ", ".join(f"{v} by {k}" for k, v in sorted((masking.get("placement") or {}).items()))
    text = (f"Converted from {code(conv.get('source', '?'))} (`--format {md_text(conv.get('format', '?'))}`) "
            f"by `msde-bench data convert`: each face kept as it is, its masked partner drawn with a synthetic mask "
            f"(drawing v{md_text(masking.get('version', 1))}, style {md_text(masking.get('style', '?'))}, seed "
            f"{md_text(masking.get('seed', '?'))}; placed {md_text(placed or masking.get('masker', '?'))}).")
    if str(ds.get("subjects_from", "")).startswith("none"):
        text += " No subject identities (every image is its own subject)."
    elif ds.get("subjects_from"):
        text += f" Subjects from {md_text(ds['subjects_from'])}."
    if ds.get("classes"):
        dropped = conv.get("dropped") or {}
        text += f" {_classes_text(ds['classes'])}" + (
            f"; dropped: {md_text(', '.join(f'{k} ({v} images)' for k, v in sorted(dropped.items())))}"
            if dropped else "") + "."
    return text


def _classes_text(classes: list[str]) -> str:
    text = f"Classes: {md_text(', '.join(classes))}"
    return text + (f" (trained and scored over these; chance 1/{len(classes)})" if len(classes) < 7 else "")


def is_synthetic(rows: list[Row]) -> bool:
    return str(rows[0].runs[0]["dataset"].get("root", "")).startswith("synth:")


def ranked_order(rows: list[Row]) -> list[Row]:
    """Best masked accuracy first (ties by the row's spec)."""
    return sorted(rows, key=lambda r: (-r.stat("acc_masked")[0], r.key))


@dataclass
class Group:
    """Rows shown together in one table: a table's complete rows (ranked unless evaluation-only)
    or its incomplete ones, with their numbers (frame), the best value of each column, the
    significance mark of each row, and the row notes each matches."""

    rows: list[Row]
    ranked: bool
    frame: pd.DataFrame
    best: dict[str, float]
    marks: list[str]
    notes: list[list[dict]]
    #: each row's masked accuracy against the top row's (compare_rows; None for the top row and where no test applies)
    tests: list[dict | None] = field(default_factory=list)

    @functools.cached_property
    def view(self) -> TableView:
        """The group's cells and notes (table_view), made once for every rendering."""
        return table_view(self)

    @classmethod
    def of(cls, rows: list[Row], ranked: bool, row_notes: list[dict] | None = None) -> Group:
        rows = ranked_order(rows) if ranked else list(rows)
        df = frame(rows)
        best = {m.key: (df[f"{m.key}_mean"].max() if m.higher_is_better else df[f"{m.key}_mean"].min())
                for m in metrics_in("table")}
        marks = [""] * len(rows)
        tests: list[dict | None] = [None] * len(rows)
        if ranked and len(rows) > 1:
            for i, row in enumerate(rows[1:], 1):
                tests[i] = compare_rows(rows[0], row)
                p = tests[i]["p"] if tests[i] is not None else None
                if p is not None and p >= P_THRESHOLD:
                    marks[i] = " †"
        notes = [[n for n in row_notes or [] if note_matches(n, full_spec(row))] for row in rows]
        for row, row_list in zip(rows, notes):  # a paradigm whose cross-view term hardly trained (msde_bench.balance)
            low = balance_note(row.runs)
            if low is not None:
                row_list.append({"text": low})
        return cls(rows, ranked, df, best, marks, notes, tests)


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e5 else str(n)


@dataclass(frozen=True)
class Cell:
    """What one cell of a table shows, the same in every rendering (markdown, web page)."""

    #: the value; it may come from a result file, so each renderer shows it as text (escaped)
    text: str
    #: the best value of its column (in a ranked table)
    bold: bool = False
    #: the harness's own additions after it, never from a file: the interval and the marks († ◦ ‡)
    tail: str = ""
    #: the numbers of the row notes (TableView.row_notes) the row matches, in the paradigm's cell
    notes: tuple[int, ...] = ()


@dataclass
class TableView:
    """A group of rows as every rendering shows it: (key, header) of each column, the cells of each row,
    the notes under the table (markdown: the page strips it), and the texts of the row notes the cells
    number (1 first)."""

    columns: list[tuple[str, str]]
    cells: list[list[Cell]]
    notes: list[str]
    row_notes: list[str]


def columns() -> list[tuple[str, str]]:
    """(key, header) of a table's columns, in order (the metrics: metrics.METRICS, view `table`)."""
    return [("rank", "#"), ("model", "model"), ("paradigm", "paradigm"), ("backbone", "backbone"),
            ("recipe", "recipe"), ("init", "init"), *((m.key, m.label) for m in metrics_in("table")),
            ("runs", "folds × seeds"), ("params", "params"), ("train_seconds", "train time / fold"),
            ("provider", "method from")]


def table_view(group: Group) -> TableView:
    """The cells and notes of one group of a table's rows: ranks, the best value of each column in
    bold (ranked tables), each mean ± std with its 95 % interval, the marks († not significantly
    different from the best row, ◦ indistinguishable from chance, ‡ fold times spread widely), the
    row notes' numbers, and the notes that explain what the table uses."""
    rows, ranked, df = group.rows, group.ranked, group.frame
    k = n_classes(rows)
    chance = spread = single = False
    used: list[dict] = []
    cells = []
    for i, rec in enumerate(df.to_dict("records")):
        marks = []
        for note in group.notes[i]:
            if note not in used:
                used.append(note)
            marks.append(used.index(note) + 1)
        row = [Cell(str(i + 1) if ranked else "–"), Cell(rec["model"]),
               Cell(rec["paradigm"] + (f" ({rec['variant']})" if rec["variant"] else ""), notes=tuple(marks)),
               Cell(rec["backbone"]), Cell(rec["recipe"]), Cell(rec["init"])]
        for m in metrics_in("table"):
            key = m.key
            if rec[f"{key}_n"] == 0:  # its results do not record this metric (older than it)
                row.append(Cell("–"))
                continue
            text = m.text(rec[f"{key}_mean"])
            if rec[f"{key}_n"] > 1:
                text += f" ± {m.text(rec[f'{key}_std'])}"
            else:
                single = True  # one value (one fold of one seed): no spread to show
            bold = ranked and math.isclose(rec[f"{key}_mean"], group.best[key], rel_tol=0, abs_tol=1e-12)
            tail = ""
            ci = rec[f"{key}_ci"]
            if ci is not None:
                tail += f" [{m.text(ci[0])}, {m.text(ci[1])}]"
                if m.chance and ci[0] <= 1 / k:
                    tail += " ◦"
                    chance = True
            if key == "acc_masked":
                tail += group.marks[i]
            row.append(Cell(text, bold, tail))
        spread |= rec["time_spread"]
        trained = not rows[i].runs[0].get("evaluation")
        row += [Cell(f"{rec['folds']} × {rec['seeds']}"), Cell(fmt_params(rec["params"])),
                Cell(f"{rec['train_seconds']:.1f} s ({rec['device']})", tail=" ‡" if rec["time_spread"] else "")
                if trained else Cell("– (models of " + ", ".join(sources(rows[i])) + ")"),
                Cell(rec["provider"])]
        cells.append(row)
    return TableView(columns(), cells, _table_notes(group, single, chance, spread, k),
                     [note["text"] for note in used])


def _table_notes(group: Group, single: bool, chance: bool, spread: bool, k: int) -> list[str]:
    rows, ranked, df = group.rows, group.ranked, group.frame
    notes = []
    if ranked and len(rows) > 1:
        notes.append(f"**bold**: best value of the column. †: masked accuracy not significantly different from the "
                     f"best row's: two-sided corrected resampled t-test over the same (seed, fold) pairs (Nadeau & "
                     f"Bengio 2003; Bouckaert & Frank 2004: the variance of the differences inflated by n_test / "
                     f"n_train, because folds share training data) or, on a fixed split whose rows logged their per-image "
                     f"predictions, the paired per-image test (McNemar's exact test for one seed; a paired bootstrap over "
                     f"images with seeds as repeats), p ≥ {P_THRESHOLD}.")
    power = power_note(group)
    if power:
        notes.append(power)
    if any(rec[f"{m.key}_ci"] is not None for rec in df.to_dict("records") for m in metrics_in("table")):
        notes.append("[a, b]: 95 % confidence interval of the mean over seeds × folds (t distribution with the same "
                     "corrected variance), clipped to the values a metric can take ([0, 1] for accuracies, pair "
                     "agreement and F1; [−1, 1] for the mask gap): with few folds it reaches past them.")
    if single:
        n_test = min(int(f.get("n_test_pairs") or 0) for row in rows for r in row.runs for f in r["folds"])
        notes.append("A value without ± is one fold of one seed (a fixed split): no spread or interval (rows that "
                     "logged their per-image predictions are compared image by image: McNemar's test); one accuracy over "
                     "n test images has a binomial standard error of at most 0.5/√n"
                     + (f" ({0.5 / math.sqrt(n_test):.3f} for the {n_test} test pairs here)." if n_test else "."))
    if chance:
        notes.append(f"◦: cannot be told from chance (1/{k}): the accuracy's confidence interval reaches it.")
    notes.append("train time / fold: the median over the folds (and seeds), distill's including the training of "
                 "its teacher.")
    if spread:
        notes.append(f"‡: the fold times spread widely (the slowest over {TIME_SPREAD:g}x the fastest): the machine "
                     "was probably loaded, so the time says little about the method.")
    notes.append(budget_note(rows))
    return notes


@dataclass
class Table:
    """One dataset (name, fingerprint) under one protocol (name, version, split, folds)."""

    name: str
    fingerprint: str
    protocol: str
    version: int
    split: str
    folds: int
    rows: list[Row]  # every row, in the order the results were read
    complete: Group | None
    incomplete: Group | None
    #: the dataset notes (read_dataset_notes) of the set it scores
    about: list[str] = field(default_factory=list)

    @property
    def evaluation(self) -> bool:
        return self.split == "evaluation"

    @property
    def synthetic(self) -> bool:
        return is_synthetic(self.rows)

    @property
    def slug(self) -> str:
        """The table's part of its figures' file names."""
        return "".join(c if c.isalnum() or c in "-." else "-"
                       for c in f"{self.name}-{self.fingerprint[:8]}-{self.protocol}-{self.split}")


@dataclass
class Board:
    """Every table (real-face sets first, the embedded synthetic set last), the runs newer ones
    replace, the files that could not be read, and where the results came from."""

    tables: list[Table]
    superseded: list[dict]
    problems: list[tuple[str, str]]
    sources: list[str]
    n_results: int
    #: (path, note) of files that were read but deserve a word: one whose name is not its run id
    file_notes: list[tuple[str, str]] = field(default_factory=list)


def make_board(results: list[dict], problems: list[tuple[str, str]], sources: list[str],
               row_notes: list[dict] | None = None, dataset_notes: list[dict] | None = None) -> Board:
    """The board of these results: grouped (group_results), each table's rows split into complete
    and incomplete groups with their statistics, `row_notes` (read_notes) matched to rows and
    `dataset_notes` (read_dataset_notes) to tables by the name of the set they score."""
    grouped, superseded = group_results(results)
    tables = []
    for (name, fp, proto, version, split, folds), rows in grouped.items():
        complete = [r for r in rows if r.complete]
        incomplete = [r for r in rows if not r.complete]
        about = [n["text"].strip() for n in dataset_notes or [] if n["name"] == scored_set(rows[0].runs[0])["name"]]
        tables.append(Table(name, fp, proto, version, split, folds, rows,
                            Group.of(complete, split != "evaluation", row_notes) if complete else None,
                            Group.of(incomplete, False) if incomplete else None, about))
    tables.sort(key=lambda t: (t.synthetic, (t.name, t.fingerprint, t.protocol, t.version, t.split, t.folds)))
    return Board(tables, superseded, list(problems), list(sources), len(results), misnamed(results))


def misnamed(results: list[dict]) -> list[tuple[str, str]]:
    """(path, note) of every result whose file name is not `<its run id>.json`: read and ranked as any
    other (its contents name the run), but said, since the name is what people look a run up by."""
    return [(r["_path"], f"its file name is not its run id ({r['run_id']}.json)") for r in results
            if r.get("_path") and Path(r["_path"]).name != f"{r['run_id']}.json"]


def load_board(dirs: list[Path], strict: bool = False, notes: Path | None = None, allow_legacy: bool = False) -> Board:
    """The board of the result files in the folders, with the notes of `notes` (a TOML file). A result
    without record digests (results.legacy_problem) is skipped, and said, unless `allow_legacy`."""
    results, problems = load_all(dirs, strict)
    if not allow_legacy:
        why = [legacy_problem(r) for r in results]
        problems = sorted([*problems, *((r["_path"], w) for r, w in zip(results, why) if w)])
        results = [r for r, w in zip(results, why) if not w]
    return make_board(results, problems, [str(d) for d in dirs], read_notes(notes), read_dataset_notes(notes))
