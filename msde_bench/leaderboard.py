"""Result files -> tables -> markdown (pandas + tabulate).

One table per dataset (name and fingerprint) and protocol (name, version, split). A row is one
run spec without its seed: runs of the same spec with different seeds are aggregated (mean and
sample standard deviation over every seed x fold value); of several runs with the same spec and
seed (separate `--fold` runs included) a complete one wins over incomplete ones, then the newest,
and the others are listed as superseded. Complete rows are ranked by masked
accuracy; a row whose runs did not finish every fold of the protocol is shown apart, never
ranked. In each column the best value is bold and every mean has its 95 % confidence interval;
rows whose masked accuracy is not significantly different from the best row's (corrected
resampled t-test over the shared (seed, fold) pairs, p >= 0.05; msde_bench.stats) carry a dagger,
and an accuracy whose interval reaches chance (1 / the dataset's number of classes) is marked.
"""

from __future__ import annotations

import difflib
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
from tabulate import tabulate

from msde_bench import budget
from msde_bench import figures as F
from msde_bench import results as R
from msde_bench import webpage as W
from msde_bench.atomic import check_writable, write_bytes_atomic, write_text_atomic
from msde_bench.errors import MsdeError, ResultError
from msde_bench.options import QUIRKS, is_method_key, method_values
from msde_bench.spec import RunSpec
from msde_bench.stats import corrected_ci, corrected_ttest

P_THRESHOLD = 0.05
#: the accuracy columns checked against chance
CHANCE_METRICS = ("acc_non_masked", "acc_masked", "acc_overall")
DEFAULT_RESULTS = Path("leaderboard/results")
#: the committed leaderboard (`msde-bench leaderboard`, `sweep --leaderboard`)
DEFAULT_OUTPUT = Path("leaderboard/README.md")
COMMAND = "msde-bench leaderboard"

#: (result key, column title, higher is better)
METRICS = (
    ("acc_non_masked", "non-masked", True),
    ("acc_masked", "masked", True),
    ("acc_overall", "overall", True),
    ("mask_gap", "mask gap", False),
    ("pair_agreement", "pair agreement", True),
    ("macro_f1_masked", "macro-F1 masked", True),
)


@dataclass
class Row:
    key: str
    runs: list[dict] = field(default_factory=list)

    @property
    def spec(self) -> dict:
        return self.runs[0]["spec"]

    @property
    def complete(self) -> bool:
        return all(r["protocol"].get("complete", False) for r in self.runs)

    def values(self, metric: str) -> dict[tuple[int, int], float]:
        """{(seed, fold): value} over every run of the row."""
        return {(r["spec"]["seed"], f["fold"]): float(f[metric]) for r in self.runs for f in r["folds"]}

    def test_train_ratio(self) -> float:
        """Mean n_test / n_train of the row's folds (1 / (k - 1) for k-fold when not recorded)."""
        ratios = [f["n_test_pairs"] / f["n_train_pairs"] for r in self.runs for f in r["folds"]
                  if f.get("n_train_pairs")]
        if ratios:
            return float(np.mean(ratios))
        k = self.runs[0]["protocol"]["folds"]
        return 1 / (k - 1) if k > 1 else 1.0

    def ci(self, metric: str) -> tuple[float, float] | None:
        """95 % confidence interval of the mean over seeds x folds, corrected resampled variance."""
        return corrected_ci(list(self.values(metric).values()), self.test_train_ratio())

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


def load_all(dirs: list[Path], strict: bool = False) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every valid result under the folders (sorted by path), and (path, problem) for the others."""
    found, problems = [], []
    for d in dirs:
        if not d.is_dir():
            raise MsdeError(f"{d}: results folder not found")
        for path in sorted(d.glob("*.json")):
            if path.name.endswith(".partial.json"):
                continue
            try:
                res = R.load(path)
            except ResultError as e:
                if strict:
                    raise
                problems.append((str(path), e.problem))
                continue
            res = dict(res, _path=str(path))
            found.append(res)
    return found, problems


def scored_set(run: dict) -> dict:
    """The dataset block of the set a result's numbers were computed on: its test set for a
    cross-dataset run (`test_dataset`), else its own."""
    return run.get("test_dataset") or run["dataset"]


def build(results: list[dict]) -> tuple[dict, list[dict]]:
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


def _sources(row: Row) -> list[str]:
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
    return label + (f" [{', '.join(changed)}]" if changed else "")


_NOT_SETTINGS = {"model", "paradigm", "seed", "run_folds", "options", "data"}


def _full_spec(row: Row) -> dict:
    return RunSpec.from_dict(row.spec).to_dict()  # fields missing from older results get their defaults


def _settings(row: Row) -> dict:
    s = _full_spec(row)
    flat = {k: v for k, v in s.items() if k not in _NOT_SETTINGS}
    flat.update({k: v for k, v in s.get("options", {}).items() if not k.startswith("quirk_") and k != "train_on"})
    return flat


def variants(rows: list[Row]) -> list[str]:
    """For each row, the settings that tell it apart from the other rows of the same model and
    paradigm in the table (e.g. `lambda=10`, `batch_size=16`)."""
    out = []
    for row in rows:
        same = [r for r in rows if _describe(r)["model"] == _describe(row)["model"]
                and _describe(r)["paradigm"] == _describe(row)["paradigm"]]
        mine = _settings(row)
        differ = sorted(k for k in mine if any(_settings(r).get(k) != mine[k] for r in same))
        out.append(", ".join(f"{k}={mine[k]}" for k in differ))
    return out


def frame(rows: list[Row]) -> pd.DataFrame:
    """The numbers of a table as a DataFrame (one line per row, in the given order)."""
    recs = []
    for row, variant in zip(rows, variants(rows)):
        rec = _describe(row)
        rec["variant"] = variant
        for key, _, _ in METRICS:
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


def md_text(value) -> str:
    """A value from a result file as markdown text: nothing in it can open a table column (`|`),
    an HTML tag or an entity, a code span, a link or an image (`[`, `]`), or a new line. Result
    files come from contributors."""
    text = " ".join(str(value).split())
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "\\`"), ("[", "\\["),
                      ("]", "\\]")):
        text = text.replace(raw, safe)
    return text


def code(value) -> str:
    """A value from a result file as a markdown code span (no backticks or new lines inside)."""
    return "`" + " ".join(str(value).split()).replace("`", "'").replace("|", "\\|") + "`"


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e5 else str(n)


def render_table(rows: list[Row], ranked: bool, row_notes: list[dict] | None = None) -> tuple[str, list[str]]:
    """Markdown for one table and its footnotes; `row_notes` (read_notes) put a numbered mark next
    to every row they match and their text under the table."""
    if ranked:
        rows = sorted(rows, key=lambda r: (-r.stat("acc_masked")[0], r.key))
    df = frame(rows)
    best = {}
    for key, _, higher in METRICS:
        col = df[f"{key}_mean"]
        best[key] = col.max() if higher else col.min()
    marks = [""] * len(rows)
    notes = []
    if ranked and len(rows) > 1:
        top = rows[0].values("acc_masked")
        for i, row in enumerate(rows[1:], 1):
            ratio = (rows[0].test_train_ratio() + row.test_train_ratio()) / 2
            p = paired_p(top, row.values("acc_masked"), ratio)
            if p is not None and p >= P_THRESHOLD:
                marks[i] = " †"
    lines = []
    k = n_classes(rows)
    chance = spread = single = False
    used: list[dict] = []
    for i, (_, rec) in enumerate(df.iterrows()):
        paradigm = md_text(rec["paradigm"] + (f" ({rec['variant']})" if rec["variant"] else ""))
        for note in (n for n in row_notes or [] if note_matches(n, _full_spec(rows[i]))):
            if note not in used:
                used.append(note)
            paradigm += f" <sup>{used.index(note) + 1}</sup>"
        cells = [str(i + 1) if ranked else "–", md_text(rec["model"]), paradigm, md_text(rec["backbone"]),
                 md_text(rec["recipe"]), md_text(rec["init"])]
        for key, _, _ in METRICS:
            text = f"{rec[f'{key}_mean']:.3f}"
            if rec[f"{key}_n"] > 1:
                text += f" ± {rec[f'{key}_std']:.3f}"
            else:
                single = True  # one value (one fold of one seed): no spread to show
            if ranked and math.isclose(rec[f"{key}_mean"], best[key], rel_tol=0, abs_tol=1e-12):
                text = f"**{text}**"
            ci = rec[f"{key}_ci"]
            if ci is not None:
                text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
                if key in CHANCE_METRICS and ci[0] <= 1 / k:
                    text += " ◦"
                    chance = True
            if key == "acc_masked":
                text += marks[i]
            cells.append(text)
        spread |= rec["time_spread"]
        trained = not rows[i].runs[0].get("evaluation")
        cells += [f"{rec['folds']} × {rec['seeds']}", _fmt_params(rec["params"]),
                  (md_text(f"{rec['train_seconds']:.1f} s ({rec['device']})") + (" ‡" if rec["time_spread"] else ""))
                  if trained else "– (models of " + md_text(", ".join(_sources(rows[i]))) + ")",
                  md_text(rec["provider"])]
        lines.append(cells)
    headers = ["#", "model", "paradigm", "backbone", "recipe", "init", *[t for _, t, _ in METRICS], "folds × seeds",
               "params", "train time / fold", "method from"]
    md = tabulate(lines, headers=headers, tablefmt="github", disable_numparse=True)
    if ranked and len(rows) > 1:
        notes.append(f"**bold**: best value of the column. †: masked accuracy not significantly different from the "
                     f"best row's: two-sided corrected resampled t-test over the same (seed, fold) pairs (Nadeau & "
                     f"Bengio 2003; Bouckaert & Frank 2004: the variance of the differences inflated by n_test / "
                     f"n_train, because folds share training data), p ≥ {P_THRESHOLD}.")
    if any(rec[f"{key}_ci"] is not None for _, rec in df.iterrows() for key, _, _ in METRICS):
        notes.append("[a, b]: 95 % confidence interval of the mean over seeds × folds (t distribution with the same "
                     "corrected variance).")
    if single:
        n_test = min(int(f.get("n_test_pairs") or 0) for row in rows for r in row.runs for f in r["folds"])
        notes.append("A value without ± is one fold of one seed (a fixed split): no spread, interval or significance "
                     "test; one accuracy over n test images has a binomial standard error of at most 0.5/√n"
                     + (f" ({0.5 / math.sqrt(n_test):.3f} for the {n_test} test pairs here)." if n_test else "."))
    if chance:
        notes.append(f"◦: cannot be told from chance (1/{k}): the accuracy's confidence interval reaches it.")
    notes.append("train time / fold: the median over the folds (and seeds), distill's including the training of "
                 "its teacher.")
    if spread:
        notes.append(f"‡: the fold times spread widely (the slowest over {TIME_SPREAD:g}x the fastest): the machine "
                     "was probably loaded, so the time says little about the method.")
    notes.append(budget_note(rows))
    notes += [f"<sup>{k}</sup> {note['text']}" for k, note in enumerate(used, 1)]
    return md, notes


#: the notes next to rows of the committed leaderboard (leaderboard/notes.toml)
DEFAULT_NOTES = Path("leaderboard/notes.toml")


def read_notes(path: Path | None) -> list[dict]:
    """[[note]] tables of a TOML file: `text`, and the spec values a row must have for the note to
    stand next to it (spec fields such as model, paradigm, recipe, budget, or `options.KEY`)."""
    if path is None or not path.is_file():
        return []
    try:
        notes = tomllib.loads(path.read_text(encoding="utf-8")).get("note", [])
    except (ValueError, UnicodeDecodeError) as e:
        raise MsdeError(f"{path}: not a valid TOML file ({e})") from None
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
    if path is None or not path.is_file():
        return []
    try:
        notes = tomllib.loads(path.read_text(encoding="utf-8")).get("dataset", [])
    except (ValueError, UnicodeDecodeError) as e:
        raise MsdeError(f"{path}: not a valid TOML file ({e})") from None
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


BUDGET_TEXT = {
    "steps": "equal optimiser steps (`--budget steps`): every paradigm takes the mixed baseline's steps with "
             "batch-size images per step (a contrastive batch holds half as many pairs; single-view paradigms, "
             "the one-view baselines and distill's student, pass over the pairs twice an epoch)",
    "epochs": "equal epochs (`--budget epochs`, the reference code's rule): a contrastive batch holds both views "
              "of batch-size pairs, so contrastive takes half the optimiser steps of the mixed baseline and "
              "distill's student sees half its images",
}


def _budget_matters(spec: dict) -> bool:
    """False where the paradigm trains identically under both budget rules (spec_build.canonical_budget).
    A built-in paradigm's shape is known without importing it (budget.builtin_shape: the leaderboard
    starts without torch); a plugin's paradigm is asked (that loads the plugins)."""
    try:
        shape = budget.builtin_shape(spec["paradigm"], dict(spec.get("options") or ()))
        if shape is not None:
            return not budget.same_under_both(int(spec["batch_size"]), *shape)
        from msde_bench.factory import canonical_budget  # a plugin paradigm: torch and the plugins

        return canonical_budget(RunSpec.from_dict(spec).with_(budget="epochs")).budget == "epochs"
    except (MsdeError, ValueError, TypeError, KeyError):
        return True


def budget_note(rows: list[Row]) -> str:
    """How the table's rows were made comparable (spec.BUDGETS) and in which precision they ran."""
    specs = [_full_spec(r) for r in rows]
    matters = [s for s in specs if _budget_matters(s)]
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


def render(results: list[dict], problems: list[tuple[str, str]], sources: list[str],
           row_notes: list[dict] | None = None, figures: dict[str, bytes] | None = None,
           page_tables: list[dict] | None = None, result_dir: Path = Path("."),
           dataset_notes: list[dict] | None = None) -> str:
    """The markdown leaderboard: real-face sets first, the embedded synthetic set's smoke numbers
    last; under each table's heading what its dataset is (`dataset_note`, then the `dataset_notes`
    of its name: read_dataset_notes). With `figures` (a dict to fill), each ranked table also gets its
    two figures (figures.py), added as {path relative to the markdown: bytes} and embedded; with
    `page_tables` (a list to fill), each table's data for the web page (webpage.py), its result
    files linked relative to `result_dir`."""
    tables, superseded = build(results)
    out = [
        "<!-- generated by `msde-bench leaderboard`: do not edit by hand -->",
        "# msde-bench leaderboard",
        "",
        f"Generated by `{COMMAND}` from the result files in {', '.join(code(s) for s in sources)}; "
        f"`{COMMAND} --check` (run by CI) fails when this file is out of date.",
        "",
        "One table per dataset (by fingerprint) and protocol, real faces first; each says what its dataset is. "
        "To add results, run `msde-bench run --data /path/to/MSD-E ...` (or `msde-bench compare`, or `msde-bench "
        "sweep` over a grid) and copy the result JSON files into `leaderboard/results/`; the committed rows are "
        "defined by `leaderboard/real-ckplus.toml`, `leaderboard/real-ckplus-fer-pretrained.toml`, "
        "`leaderboard/real-fer2013.toml` (the real-face sets) and "
        "`leaderboard/grid.toml` (the embedded synthetic set).",
        "",
        "Accuracies are fractions: mean ± sample standard deviation over every fold of every seed. Mask gap = "
        "non-masked − masked accuracy. Pair agreement = share of test pairs whose two views get the same "
        "prediction. Train time / fold = the median wall-clock seconds of training per fold (over folds and seeds; "
        "a distill fold's including its teacher's) on the device the result records; it depends on the machine "
        "and on its load, so compare it between runs of one machine only. "
        "Method from = the plugin that provided the method (name, version, source), as the result records it.",
    ]
    if not tables:
        out += ["", "_No results yet._"]
    order = sorted(tables.items(), key=lambda kv: (_is_synthetic(kv[1]), kv[0]))
    for (name, fp, proto, version, split, folds), rows in order:
        complete = [r for r in rows if r.complete]
        incomplete = [r for r in rows if not r.complete]
        out += ["", f"## {md_text(name)} (fingerprint {code(fp)}) · protocol {code(proto)} v{md_text(version)} "
                    f"({md_text(split)}, {md_text(folds)} fold{'' if folds == 1 else 's'})", ""]
        out += [dataset_note(rows), ""]
        about = [n["text"].strip() for n in dataset_notes or [] if n["name"] == scored_set(rows[0].runs[0])["name"]]
        out += [x for text in about for x in (text, "")]
        if split == "faithful":
            out += ["_Reference-code protocol: overlapping subject windows and the best epoch chosen on the test "
                    "fold; optimistic by construction, for comparison with the paper only._", ""]
        figure_files: dict[str, bytes] = {}
        evaluation = split == "evaluation"
        if evaluation:
            out += ["_Evaluation-only: trained models scored on this set without training (`msde-bench evaluate`); "
                    "each row names the runs its models come from. Not ranked, and never mixed with trained rows._",
                    ""]
        if complete:
            md, notes = render_table(complete, ranked=not evaluation, row_notes=row_notes)
            out += [md]
            out += ["", *notes] if notes else []
            if figures is not None:
                out += ["", *table_figures(complete, (name, fp, proto, split), figure_files)]
                figures.update(figure_files)
        if page_tables is not None:
            page_tables.append(_page_table(complete, incomplete, f"{name} · fingerprint {fp} · protocol {proto} "
                                           f"v{version} ({split}, {folds} fold{'' if folds == 1 else 's'})",
                                           figure_files, result_dir, about))
        if incomplete:
            md, _ = render_table(incomplete, ranked=False)
            out += ["", "Incomplete runs (not every fold of the protocol finished; not ranked):", "", md]
    if superseded:
        out += ["", "## Superseded runs", "",
                "Older runs of a spec and seed that a newer run replaces: " +
                ", ".join(f"{code(r['run_id'])} ({md_text(r.get('finished') or r['created'])})" for r in superseded) + "."]
    if problems:
        out += ["", "## Skipped files", ""] + [f"- {code(p)}: {md_text(msg)}" for p, msg in problems]
    return "\n".join(out) + "\n"


FIGURES_DIR = "figures"
#: the web page beside the markdown (webpage.py)
PAGE = "index.html"
PAGE_INTRO = ("Generated by msde-bench leaderboard from the committed result files, like the markdown leaderboard "
              "beside it. Click a column to sort, choose a method, paradigm or recipe to filter, click a row for its "
              "settings, per-fold numbers and result file. Accuracies: mean ± std over folds and seeds [95 % "
              "confidence interval].")


def table_figures(rows: list[Row], key: tuple, figures: dict[str, bytes]) -> list[str]:
    """Draws a table's figures into `figures` ({relative path: bytes}); returns the markdown lines
    that embed them."""
    name, fp, proto, split = key
    slug = "".join(c if c.isalnum() or c in "-." else "-" for c in f"{name}-{fp[:8]}-{proto}-{split}")
    df = frame(sorted(rows, key=lambda r: (-r.stat("acc_masked")[0], r.key)))
    title = f"{name} · {proto} ({split})"
    lines = []
    for kind, files, alt in (("accuracy", F.accuracy_figure(df, title, n_classes(rows)),
                              "non-masked against masked accuracy per row"),
                             ("mask-gap", F.gap_figure(df, title), "mask gap per method and paradigm")):
        base = f"{FIGURES_DIR}/{slug}-{kind}"
        figures[f"{base}.png"], figures[f"{base}.svg"] = files["png"], files["svg"]
        lines += [f"![{alt}]({base}.png) ([SVG]({base}.svg))", ""]
    return lines[:-1]


def _page_table(complete: list[Row], incomplete: list[Row], title: str, figure_files: dict[str, bytes],
                result_dir: Path, about: list[str] = ()) -> dict:
    ranked = sorted(complete, key=lambda r: (-r.stat("acc_masked")[0], r.key))
    rows = []
    for group, ranks in ((ranked, True), (incomplete, False)):
        if group:
            for i, ((_, rec), row) in enumerate(zip(frame(group).iterrows(), group)):
                rows.append(W.row_data(rec, row, i + 1 if ranks else None, result_dir))
    note = " ".join([dataset_note(complete or incomplete).strip("_"), *about]).replace("`", "")
    note += (" " + budget_note(complete)) if complete else ""
    figs = [dict(alt=rel.rsplit("/", 1)[-1], svg=data) for rel, data in sorted(figure_files.items())
            if rel.endswith(".svg")]
    return dict(title=title, note=note, rows=rows, figures=figs)


def _is_synthetic(rows: list[Row]) -> bool:
    return str(rows[0].runs[0]["dataset"].get("root", "")).startswith("synth:")


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
                 "of this set; each result keeps the fold's own test numbers too (`in_domain`). Nothing checks that "
                 "the two sets share no people.")
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


def render_dirs(results_dirs: list[Path], strict: bool = False, notes: Path | None = None) -> tuple[str, list, list]:
    """(markdown, results, problems) of the result files in the folders."""
    results, problems = load_all(results_dirs, strict)
    return render(results, problems, [str(d) for d in results_dirs], read_notes(notes),
                  dataset_notes=read_dataset_notes(notes)), results, problems


def _count(files: dict) -> str:
    n = sum(1 for k in files if k.startswith(FIGURES_DIR + "/"))
    return f"{n} figures" + (f", {PAGE}" if PAGE in files else "")


def write_or_check(results_dirs: list[Path], output: Path, check: bool, strict: bool,
                   notes: Path | None = None) -> tuple[bool, str]:
    """Renders (with the row notes of `notes`, a TOML file; read_notes) the markdown and its
    figures (in `figures/` beside it); writes them (atomically) or, with `check`, compares them
    byte for byte. Returns (ok, message)."""
    if not check:
        check_writable(output.parent, "folder")
    results, problems = load_all(results_dirs, strict)
    figures: dict[str, bytes] = {}
    page_tables: list[dict] = []
    text = render(results, problems, [str(d) for d in results_dirs], read_notes(notes), figures, page_tables,
                  output.parent, read_dataset_notes(notes))
    figures[PAGE] = W.page(page_tables, PAGE_INTRO).encode()
    folder = output.parent / FIGURES_DIR
    stale = sorted(p for p in folder.glob("*") if p.suffix in (".png", ".svg")
                   and f"{FIGURES_DIR}/{p.name}" not in figures) if folder.is_dir() else []
    drawn_with = F.renderer()
    if check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        recorded = (folder / F.RENDERER_FILE).read_text().strip() if (folder / F.RENDERER_FILE).is_file() else None
        if recorded is not None and recorded != drawn_with:
            # another matplotlib draws other bytes: the figures cannot be compared, the markdown can
            figures, stale = {}, []
            note = f"; figures not compared (drawn with {recorded}, this is {drawn_with})"
        else:
            note = ""
        differ = [rel for rel, data in figures.items()
                  if not (output.parent / rel).is_file() or (output.parent / rel).read_bytes() != data]
        if current == text and not differ and not stale:
            return True, f"{output} is up to date ({len(results)} results, {_count(figures)}{note})"
        diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(), str(output), "regenerated",
                                         lineterm="", n=0))
        changed = sum(1 for ln in diff if ln[:1] in "+-" and not ln.startswith(("+++", "---")))
        shown = "\n".join(diff[:20])
        figs = "" if not (differ or stale) else (f"; figures differ: {', '.join(differ[:5])}" if differ else "") + (
            f"; stale figures: {', '.join(p.name for p in stale[:5])}" if stale else "")
        return False, (f"{output} is out of date: {changed} lines differ{figs}; run `{COMMAND}` and commit the "
                       f"result\n{shown}")
    for rel, data in sorted(figures.items()):
        write_bytes_atomic(output.parent / rel, data)
    if figures:
        write_text_atomic(folder / F.RENDERER_FILE, drawn_with + "\n")
    for p in stale:
        p.unlink()
    write_text_atomic(output, text)
    msg = f"wrote {output} ({len(results)} results, {_count(figures)}"
    msg += f", {len(problems)} skipped" if problems else ""
    return True, msg + ")"
