"""Grid files: a benchmark as one TOML file, expanded into runs.

Keys are the long option names of `msde-bench run` (dashes or underscores): a scalar is fixed, a
list is an axis, and the axes are expanded as a product (in the file's key order, the last axis
varying fastest). `out` (a string) is the default results folder of the sweep. `opt` is a table
of `--opt` values under the same rule. `[[exclude]]` tables drop
the runs of the product that match every key they give (a list there means any of its values);
`[[include]]` tables add runs: each is expanded by the same rules, over the file's fixed (scalar)
keys. For example

    data = "synth:tiny"
    epochs = 1
    model = ["resnet18", "scn"]
    paradigm = ["baseline", "contrastive"]
    seed = [0, 1, 2]

is 12 runs.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msde_bench.errors import FileError
from msde_bench.spec import TRAINING_FIELDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: grid key -> run_benchmark/prepare_spec argument (None: the same name)
KEYS = {
    "model": None, "paradigm": None, "data": None, "recipe": None, "protocol": None, "epochs": None, "folds": None,
    "budget": None, "precision": None, "quirks": None, "fold": "run_folds", "image_size": None, "batch_size": None,
    "lr": None, "seed": None, "device": None, "init": None, "pretrained": None, "opt": "options", "test_data": None,
    "select_on": None, **dict.fromkeys(TRAINING_FIELDS),
}


#: the settings a run's label names when the grid gives them (besides model, paradigm, seed and --opt)
LABEL_KEYS = ("epochs", "lr", "image_size", "batch_size", *(k for k in TRAINING_FIELDS if k != "tta"))


class GridError(FileError):
    """A grid file that cannot be read or names something that does not exist."""


@dataclass(frozen=True)
class Run:
    """One run of a grid: the arguments of `api.prepare_spec`, and where in the file it came from."""

    args: dict
    origin: str  # "product" or "include[i]"

    def label(self) -> str:
        """model, paradigm, seed, the --opt values, then any training setting the run gives (epochs, lr,
        image size, the recipe knobs)."""
        a = self.args
        opts = ",".join(f"{k}={v}" for k, v in sorted((a.get("options") or {}).items()))
        knobs = " ".join(f"{k}={a[k]}" for k in LABEL_KEYS if a.get(k) is not None)
        return " ".join(str(x) for x in (a.get("model", "resnet18"), a.get("paradigm", "baseline"),
                                          f"seed={a.get('seed', 0)}", opts, knobs) if x)


def _norm(path: Path, table: dict, where: str) -> dict:
    out = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in KEYS:
            raise GridError(path, f"{where}: unknown key {key!r}; grid keys are the options of `msde-bench run`: "
                                  f"{', '.join(sorted(KEYS))}")
        if name == "opt" and not isinstance(value, dict):
            raise GridError(path, f"{where}: opt must be a table, e.g. opt = {{ alpha = 2 }}")
        out[name] = value
    return out


#: the most runs a grid may expand to unless the sweep lifts it (`--max-runs`): the product is
#: counted before anything is expanded, so a mistyped grid of a million runs fails at once
MAX_RUNS = 10_000


def _count(table: dict, fixed: dict) -> int:
    """How many runs `_expand(table, fixed)` makes, without making them."""
    flat = {**fixed, **{k: v for k, v in table.items() if k != "opt"}, **{("opt", k): v for k, v in
                                                                           table.get("opt", {}).items()}}
    n = 1
    for key, value in flat.items():
        if isinstance(value, list) and key != "fold":
            n *= len(value)
    return n


def _expand(table: dict, fixed: dict) -> list[dict]:
    """The product of the table's axes (lists) over `fixed`; `opt` values expand the same way."""
    flat = dict(fixed)
    for key, value in table.items():
        if key == "opt":
            for ok, ov in value.items():
                flat[("opt", ok)] = ov
        else:
            flat[key] = value
    axes = [(k, v) for k, v in flat.items() if isinstance(v, list) and k != "fold"]
    runs = []
    for combo in itertools.product(*[v for _, v in axes]) if axes else [()]:
        values = {**flat, **dict(zip([k for k, _ in axes], combo))}
        args: dict[str, Any] = {}
        for k, v in values.items():
            if isinstance(k, tuple):
                args.setdefault("options", {})[k[1]] = v
            else:  # `fold` selects folds (a list, never an axis); a single fold may be written bare
                args[KEYS[k] or k] = [v] if k == "fold" and not isinstance(v, list) else v
        runs.append(args)
    return runs


def _matches(args: dict, rule: dict) -> bool:
    for key, want in rule.items():
        if key == "opt":
            have = args.get("options") or {}
            if not all(have.get(k) in (w if isinstance(w, list) else [w]) for k, w in want.items()):
                return False
            continue
        have = args.get(KEYS[key] or key)
        if have not in (want if isinstance(want, list) else [want]):
            return False
    return True


def load_grid(path: str | Path, max_runs: int = MAX_RUNS) -> tuple[list[Run], dict]:
    """The runs of a grid file and its sweep settings (`out`: the default results folder;
    `log_samples`: every cell writes its per-image predictions, as `sweep --log-samples`); a file
    that does not parse or has an unknown key is a GridError naming the file (and line and column),
    and so is one whose product and includes come to more than `max_runs` runs (counted first)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GridError(path, "grid file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise GridError(path, f"not valid TOML: {e}") from None
    settings = {}
    if "out" in raw:
        if not isinstance(raw["out"], str):
            raise GridError(path, "top level: out must be a folder name (a string)")
        settings["out"] = raw.pop("out")
    if "log_samples" in raw:  # the grid's cells write their per-image predictions (sweep --log-samples)
        if not isinstance(raw["log_samples"], bool):
            raise GridError(path, "top level: log_samples must be true or false")
        settings["log_samples"] = raw.pop("log_samples")
    includes = raw.pop("include", [])
    excludes = raw.pop("exclude", [])
    if not isinstance(includes, list) or not isinstance(excludes, list):
        raise GridError(path, "include and exclude must be arrays of tables ([[include]], [[exclude]])")
    top = _norm(path, raw, "top level")
    fixed = {k: v for k, v in top.items() if not isinstance(v, (list, dict)) or k == "fold"}
    fixed_opts = {k: v for k, v in top.get("opt", {}).items() if not isinstance(v, list)}
    rules = [_norm(path, t, f"exclude[{i}]") for i, t in enumerate(excludes)]
    tables = [_norm(path, table, f"include[{i}]") for i, table in enumerate(includes)]
    total = _count(top, {}) + sum(_count({**fixed, **inc}, {}) for inc in tables)
    if total > max_runs:
        raise GridError(path, f"expands to {total:,} runs (before [[exclude]]), more than {max_runs:,}; "
                              "check its lists, or lift the limit with `sweep --max-runs N`")
    runs = [Run(a, "product") for a in _expand(top, {}) if not any(_matches(a, r) for r in rules)]
    for i, inc in enumerate(tables):
        inc_opt = {**fixed_opts, **inc.get("opt", {})}
        base = {**fixed, **({"opt": inc_opt} if inc_opt else {})}
        runs += [Run(a, f"include[{i}]") for a in _expand({**base, **inc, **({"opt": inc_opt} if inc_opt else {})}, {})]
    if not runs:
        raise GridError(path, "the grid has no runs")
    return runs, settings
