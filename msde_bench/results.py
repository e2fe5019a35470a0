"""The result file: its schema (as TypedDicts), atomic write, load, upgrade and validation.

Schema policy: `SCHEMA` names the result format. Adding an optional key keeps the schema; removing
or renaming a key, or changing a key's meaning or type, bumps it (`msde-bench/result/N+1`) and
adds an upgrade from the old schema in `upgrade`, so every committed result stays readable. The
package `__version__` follows semantic versioning: a schema bump or a changed default that moves
numbers is a minor version (0.x) bump, fixes that change no number a patch bump.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, TypedDict, get_type_hints

from msde_bench import metrics as M
from msde_bench import samples as S
from msde_bench.atomic import write_text_atomic
from msde_bench.errors import MsdeError, ResultError
from msde_bench.mdtext import md_text
from msde_bench.metrics import metrics_in, share_keys
from msde_bench.spec import RunSpec

SCHEMA = "msde-bench/result/2"
#: readable older schemas (upgraded on load)
OLD_SCHEMAS = ("msde-bench/result/1",)


class FoldResult(TypedDict, total=False):
    """One fold of a run (the keys that every fold has; see OPTIONAL_FOLD_KEYS)."""

    fold: int  # the fold index in the protocol
    test_subjects: list  # subject ids tested in this fold
    n_test_pairs: int  # pairs tested (each scored on both views)
    acc_non_masked: float  # accuracy on the non-masked view, in [0, 1]
    acc_masked: float  # accuracy on the masked view
    acc_overall: float  # accuracy over both views' images
    mask_gap: float  # acc_non_masked - acc_masked
    macro_f1_non_masked: float  # macro-averaged F1 over the 7 classes, non-masked view
    macro_f1_masked: float  # the same on the masked view
    pair_agreement: float  # share of pairs whose two views get the same prediction
    per_class: dict  # {class name: {non_masked, masked, n}} per-class accuracy
    confusion_non_masked: list  # 7 x 7 counts, rows = true class
    confusion_masked: list  # the same on the masked view
    train_seconds: float  # wall time of training (teacher excluded)
    train_images_per_second: float  # images through the network per second of training


#: keys a fold may have: n_train_pairs, train_subjects (the fold's training side), selected_epoch
#: (the evaluated epoch), n_params, train_history ([{epoch, loss, <every loss term>, train_acc,
#: lr, grad_share.<part> (since 0.9.0: each loss part's share of the gradient)}], per epoch), history
#: (faithful protocol: per-epoch test accuracies), paradigm (what the paradigm reports, e.g. the
#: teacher's origin), init (--init report), model_file (saved model,
#: relative to the result's folder), val (holdout on a set with an official validation split:
#: {n_pairs, acc_non_masked, acc_masked, acc_overall} of that split, beside the test split's numbers),
#: samples_file and samples_sha256 (--log-samples: the per-image predictions, relative to the
#: result's folder, and the file's SHA-256; msde_bench.samples); for a cross-dataset run, test_dataset
#: (the set scored) and in_domain ({n_pairs, acc_non_masked, acc_masked, acc_overall} of the fold's own
#: test pairs), its test_subjects being the scored set's; weights_chosen (since 0.9.0, `--select-on val`:
#: {on, metric, chosen, candidates [{values, n_val_pairs, acc_non_masked, acc_masked, acc_overall}],
#: n_inner_train_pairs, n_val_pairs, val_subjects}; msde_bench.selection); tta (since 0.11.0, `--tta`:
#: {kind: {acc_non_masked, acc_masked, acc_overall}} of the scored set with each test-time augmentation,
#: beside the fold's own numbers; under a holdout's validation split too, as val.tta); model_sha256 (since
#: 0.11.0, with model_file: the saved model file's SHA-256, which `evaluate` checks before it scores it)
OPTIONAL_FOLD_KEYS = ("n_train_pairs", "train_subjects", "selected_epoch", "n_params", "train_history", "history",
                      "paradigm", "init", "model_file", "val", "samples_file", "samples_sha256", "test_dataset",
                      "in_domain", "weights_chosen", "tta", "model_sha256")


class RunResult(TypedDict, total=False):
    """A result file (the keys that every result has; see OPTIONAL_KEYS)."""

    schema: str  # SCHEMA
    run_id: str  # <model>-<paradigm>-<dataset>-<spec digest>
    created: str  # ISO time the first fold started
    msde_bench_version: str  # msde_bench.__version__ that ran it
    spec: dict  # RunSpec.to_dict(): everything the run needs to be repeated
    dataset: dict  # name, root, fingerprint, n_pairs, n_subjects; folds_by (since 0.4.0); classes, subjects_from and,
    # for a converted set, conversion (format, source, masking, dropped, class_map) (since 0.5.0)
    protocol: dict  # name, version, folds, split (the protocol: clean/faithful/holdout), selection, run_folds, complete,
    # folds_by ("subject", or "image" for a set without identities; since 0.4.0)
    env: dict  # python, torch, timm, numpy, sklearn, platform, device, device_name, threads, compile,
    # memory_format, optimizer_impl, cpu_bf16 (since 0.4.0)
    folds: list  # [FoldResult], in the order they were selected
    summary: dict  # {metric: {mean, std, n}} over the folds


#: keys a result may have: finished (ISO time), git_sha and git_dirty (the msde-bench checkout it ran
#: from, and whether it had uncommitted changes), method_plugin ({plugin, version, source,
#: distribution}: what provided --model), upgraded_from ({schema, run_id} of the file `upgrade_file` rewrote),
#: evaluation (an evaluation-only result of `msde-bench evaluate`: mode, test_data, scored_on, models
#: [{file, sha256, run_id, fold, trained_on, equals_run}], seconds; its protocol is msde-evaluation),
#: test_dataset (a cross-dataset run, spec.test_data: the set its folds were scored on, as `dataset`,
#: with scored_on; `dataset` stays the training set), pretrained (`--init pretrain:DATA`, msde_bench.pretrain:
#: the pretrained model's file, sha256, dataset {name, root, fingerprint, n_train_pairs, classes}, spec,
#: train_seconds; every fold record has it too), budget_rules_differ (since 0.7.0: whether the paradigm would
#: train differently under the other --budget rule, so that the leaderboard's budget note needs no
#: plugin loaded), balance (since 0.9.0, for a paradigm with cross-view terms: {cross_view_terms, grad_share:
#: their mean share of the gradient over folds and epochs, note: said when under 1 %}; msde_bench.balance),
#: sealed (since 0.12.0, `results seal`: {at, by} of the record digests added to a file from before 0.6.0)
OPTIONAL_KEYS = ("finished", "git_sha", "git_dirty", "method_plugin", "upgraded_from", "evaluation", "test_dataset",
                 "pretrained", "budget_rules_differ", "balance", "sealed")

#: the keys of the `dataset` and `protocol` blocks with their types
_DATASET_KEYS = {"name": str, "fingerprint": str, "n_pairs": int, "n_subjects": int}
_PROTOCOL_KEYS = {"name": str, "version": int, "folds": int, "split": str, "selection": str}


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Writes JSON to a temporary file in the same folder, fsyncs it and renames it into place, so
    a reader never sees a half-written file and a crash never destroys the previous version."""
    return write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")


_A = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object", bool: "a boolean"}


def _type_ok(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


@functools.cache
def _hints(schema: type) -> dict:
    return get_type_hints(schema)


def _check_keys(obj: dict, schema: type, path, where: str = "") -> None:
    for key, kind in _hints(schema).items():
        if key not in obj:
            raise ResultError(path, f"{where}missing field {key!r}" if not where else f"{where} is missing {key!r}")
        if not _type_ok(obj[key], kind):
            raise ResultError(path, f"field {key!r} should be a {kind.__name__}" if not where
                              else f"{where}.{key} should be a {kind.__name__}")


#: option keys renamed with schema 2: one spelling, `<term>_weight`, for a loss weight
RENAMED_OPTIONS_2 = {"dacl.lamb": "dacl.sparse_center_weight", "eac.lam": "eac.flip_consistency_weight"}


def upgrade(obj: dict) -> dict:
    """A result of an older schema in the current one (schema 1: the spec's `split` is now
    `protocol`, and two loss weights have their new names)."""
    if obj.get("schema") == "msde-bench/result/1":
        spec = dict(obj.get("spec") or {})
        if "split" in spec:
            spec["protocol"] = spec.pop("split")
        if isinstance(spec.get("options"), dict):
            spec["options"] = {RENAMED_OPTIONS_2.get(k, k): v for k, v in spec["options"].items()}
        obj = dict(obj, schema=SCHEMA, spec=spec)
    return obj


def check_fold(fold: Any, path: str | os.PathLike, where: str) -> None:
    """One fold record against FoldResult: keys, types, fractions in [0, 1] (a cell's record too)."""
    if not isinstance(fold, dict):
        raise ResultError(path, f"{where} is not an object")
    _check_keys(fold, FoldResult, path, where)
    for key in share_keys():
        if key in fold and not 0.0 <= fold[key] <= 1.0:
            raise ResultError(path, f"{where}.{key} = {fold[key]} is not a fraction in [0, 1]")


def evaluation_run_id(model: str, paradigm: str, dataset: dict, mode: str, sha256s) -> str:
    """The run id of an evaluation-only result (msde_bench.evaluation): its models' digests and the
    set they were scored on, so that the same models on the same images always name one result."""
    key = "|".join([mode, dataset["fingerprint"], *sorted(sha256s)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-." else "-" for c in f"eval-{model}-{paradigm}-{dataset['name']}")
    return f"{safe}-{digest}"


#: the first version whose cells and results carry record digests; older files have none and are read as before
DIGESTS_SINCE = (0, 6, 0)


#: what the versions before digests wrote (0.5.0's schema, the latest of them): a file that claims such a
#: version but carries another key was written later and had its digests removed (and its version lowered)
PRE_DIGEST_KEYS = frozenset({*RunResult.__annotations__, "finished", "git_sha", "git_dirty", "method_plugin",
                             "upgraded_from"})
PRE_DIGEST_FOLD_KEYS = frozenset({*FoldResult.__annotations__, "n_train_pairs", "train_subjects", "selected_epoch",
                                  "n_params", "train_history", "history", "paradigm", "init", "model_file", "val"})


def has_digests(obj: dict) -> bool:
    """Whether every fold of a result carries its record digest (written since 0.6.0, or added by
    `results seal`)."""
    return all(isinstance(f, dict) and f.get("record_sha256") for f in obj.get("folds") or [])


def legacy_problem(obj: dict) -> str | None:
    """Why the leaderboard ranks a result only under --allow-legacy: it has no record digests (a
    file from before 0.6.0 that `results seal` has not sealed); None for a result with digests."""
    if has_digests(obj):
        return None
    return (f"no record digests (written by msde-bench {obj.get('msde_bench_version')}, before "
            f"{'.'.join(map(str, DIGESTS_SINCE))}), so an edit would go unseen: ranked only with --allow-legacy "
            "(msde-bench results seal FILE adds them to a file you trust)")


def _check_pre_digest(obj: dict, path) -> None:
    """A file without digests must be what a version before digests wrote: no key that only later
    versions write (a later file whose version was lowered and digests deleted is edited)."""
    if has_digests(obj) or _version(obj.get("msde_bench_version")) >= DIGESTS_SINCE:
        return
    later = sorted(set(obj) - PRE_DIGEST_KEYS)
    where = ""
    if not later:
        for i, fold in enumerate(obj["folds"]):
            later = sorted(set(fold) - PRE_DIGEST_FOLD_KEYS)
            if later:
                where = f"folds[{i}] "
                break
    if later:
        raise ResultError(path, f"claims msde-bench {obj.get('msde_bench_version')}, which wrote no record digests, "
                                f"but {where}carries {later[0]!r}, which only later versions write: edited")


def seal(obj: dict, when: str, version: str) -> dict:
    """A result from before digests with a record digest on every fold and `sealed` ({at, by}: when and by
    which msde-bench), its numbers untouched: what `results seal` writes for a file its owner trusts
    (e.g. one whose history version control keeps)."""
    if has_digests(obj):
        raise MsdeError("already has record digests")
    folds = [dict(f, record_sha256=record_digest(f)) for f in obj["folds"]]
    return dict(obj, folds=folds, sealed=dict(at=when, by=version))


def record_digest(record: dict) -> str:
    """The SHA-256 of a fold record (without its own `record_sha256`) in canonical JSON: what a
    cell file and each fold of a result carry, so that an edited number is noticed."""
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
                          .encode()).hexdigest()


def _version(text) -> tuple:
    try:
        return tuple(int(x) for x in str(text).split(".")[:3])
    except ValueError:
        return (0,)


def check_digest(record: dict, digest: str | None, version, path, where: str) -> None:
    """A record must match its digest; a file of a version that writes digests must have one."""
    if digest is None:
        if _version(version) >= DIGESTS_SINCE:
            raise ResultError(path, f"{where} has no record digest (record_sha256), which msde-bench {version} "
                                    "writes: edited")
        return
    if record_digest(record) != digest:
        raise ResultError(path, f"{where} does not match its record digest: its numbers were edited")


def expected_run_id(obj: dict) -> str:
    """The run id a result's contents name: its spec's (RunSpec.run_id) or, for an evaluation-only
    result, its models' and test set's (evaluation_run_id)."""
    ev = obj.get("evaluation")
    if isinstance(ev, dict):
        return evaluation_run_id(obj["spec"]["model"], obj["spec"]["paradigm"], obj["dataset"], str(ev.get("mode")),
                                 [str(m.get("sha256")) for m in ev.get("models") or [] if isinstance(m, dict)])
    return RunSpec.from_dict(obj["spec"]).run_id(obj["dataset"]["name"])


def _check_folds(obj: dict, path) -> None:
    """Each fold index once; for a trained run, every index among the protocol's folds, and a
    result marked complete holds exactly all of them."""
    indices = [f["fold"] for f in obj["folds"]]
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    if repeated:
        raise ResultError(path, f"fold {repeated[0]} appears {indices.count(repeated[0])} times (folds {indices})")
    if obj.get("evaluation"):
        return
    n = obj["protocol"]["folds"]
    outside = [i for i in indices if not 0 <= i < n]
    if outside:
        raise ResultError(path, f"fold {outside[0]} is not one of the protocol's folds 0-{n - 1}")
    if obj["protocol"].get("complete") and sorted(indices) != list(range(n)):
        raise ResultError(path, f"marked complete but holds folds {sorted(indices)} of the protocol's {n}")


def validate(obj: Any, path: str | os.PathLike = "<result>", *, check_run_id: bool = True,
             check_pre_digest: bool = True) -> dict:
    """Checks a loaded result against the schema (upgrading an older one); raises ResultError
    naming the file and field. Returns the (upgraded) result. A result in the current schema must
    carry the run id its contents name (`expected_run_id`: an edited spec no longer does), unless
    `check_run_id` is False (`upgrade_file`, which renames such files). A file without record digests that
    claims a version before them must hold only what those versions wrote (`check_pre_digest`; `seal_file`
    says what else it holds instead)."""
    if not isinstance(obj, dict):
        raise ResultError(path, "not a JSON object")
    if obj.get("schema") in OLD_SCHEMAS:
        obj = upgrade(obj)
        check_run_id = False  # upgraded in memory: its id is the old schema's until `results upgrade` renames it
    if obj.get("schema") != SCHEMA:
        raise ResultError(path, f"schema is {obj.get('schema')!r}, expected {SCHEMA!r} (not an msde-bench result)")
    _check_keys(obj, RunResult, path)
    if not obj["folds"]:
        raise ResultError(path, "no folds")
    for i, fold in enumerate(obj["folds"]):
        check_fold(fold, path, f"folds[{i}]")
    for block, keys in (("dataset", _DATASET_KEYS), ("protocol", _PROTOCOL_KEYS)):
        for key, kind in keys.items():
            if key not in obj[block]:
                raise ResultError(path, f"{block} is missing {key!r}")
            if not _type_ok(obj[block][key], kind):
                raise ResultError(path, f"{block}.{key} should be {_A[kind]}, not {obj[block][key]!r}")
    if not obj["summary"]:
        raise ResultError(path, "summary is empty")
    for key, stat in obj["summary"].items():
        if not isinstance(stat, dict) or not {"mean", "std", "n"} <= set(stat):
            raise ResultError(path, f"summary.{key} should have mean, std and n")
        if not (_type_ok(stat["mean"], float) and _type_ok(stat["std"], float) and _type_ok(stat["n"], int)):
            raise ResultError(path, f"summary.{key} should hold numbers (mean, std) and a count (n)")
    try:
        RunSpec.from_dict(obj["spec"])
    except (TypeError, ValueError) as e:
        raise ResultError(path, f"spec is not a valid run spec ({e})") from None
    _check_folds(obj, path)
    for i, fold in enumerate(obj["folds"]):
        check_digest(fold, fold.get("record_sha256"), obj.get("msde_bench_version"), path, f"folds[{i}]")
    if check_pre_digest:
        _check_pre_digest(obj, path)
    check_one_start(obj["folds"], path)
    _check_summary(obj, path)
    if check_run_id:
        want = expected_run_id(obj)
        if obj["run_id"] != want:
            raise ResultError(path, f"run id {obj['run_id']!r} is not the one its contents name ({want!r}): the spec, "
                                    "dataset or models were edited (or it predates the current spec form: "
                                    "`msde-bench results upgrade`)")
    return obj


def start_digest(fold: dict) -> str | None:
    """The digest of the weights a fold started from, as its record names it: the pretrained model's
    (`--init pretrain:DATA`) or the `--init` file's (since 0.12.0); None for a random start or an older record."""
    for key in ("pretrained", "init"):
        block = fold.get(key)
        if isinstance(block, dict) and isinstance(block.get("sha256"), str):
            return block["sha256"]
    return None


def check_one_start(folds: list[dict], path) -> None:
    """Every fold of one result started from the same weights: folds run at different times against two
    pretrained caches (or two files under one `--init` path) are two experiments, not one result."""
    starts = [(f.get("fold"), start_digest(f)) for f in folds]
    known = [(i, d) for i, d in starts if d is not None]
    for i, d in known[1:]:
        if d != known[0][1]:
            raise ResultError(path, f"fold {i} started from other weights than fold {known[0][0]} (sha256 {d[:12]} "
                                    f"against {known[0][1][:12]}: the pretrained cache or the --init file changed "
                                    "between them); run the folds again from one start")


def _check_summary(obj: dict, path) -> None:
    """The summary is what its folds give (metrics.summarise): no digest covers it, so an edited
    mean (or std, or count) would otherwise be listed and ranked."""
    again = M.summarise(obj["folds"], keys=list(obj["summary"]))
    for key, stat in obj["summary"].items():
        if key not in again:
            raise ResultError(path, f"summary.{key}: no fold records {key}: the summary was edited")
        for part in ("mean", "std", "n"):
            have, want = stat[part], again[key][part]
            if not math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-12):
                raise ResultError(path, f"summary.{key}.{part} is {have:g} but its folds give {want:g}: the summary "
                                        "was edited")


def upgrade_file(path: str | os.PathLike, complete_spec=None) -> Path | None:
    """Rewrites a result file in the current schema and spec form, under the run id its spec has
    now; returns the new path, or None when the file is current. An older schema is upgraded
    (`upgrade`); `complete_spec(spec) -> spec` (spec_build.complete_spec) adds options that were
    introduced after the run with their default, which by the rule below is the behaviour the run
    had, and the fields that have a rule of their own (the budget). The numbers are untouched;
    `upgraded_from` records the schema and run id the file first had. Saved fold models stay where
    they are (the fold records point to them).

    The rule that makes this sound: a new option's default keeps the behaviour of the code before it."""
    path = Path(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        return None
    obj = validate(raw, path, check_run_id=False)
    if complete_spec is not None:
        obj["spec"] = complete_spec(obj["spec"])
    spec = RunSpec.from_dict(obj["spec"])
    obj["spec"] = spec.to_dict()  # fields added to RunSpec since the run get their defaults
    # an evaluation-only result (msde_bench.evaluation) is named by its models and test set, not its spec
    run_id = raw["run_id"] if obj.get("evaluation") else spec.run_id(obj["dataset"]["name"])
    if raw.get("schema") == SCHEMA and run_id == raw["run_id"] and obj["spec"] == raw["spec"]:
        return None
    # the first name a file had is the one worth keeping
    obj["upgraded_from"] = raw.get("upgraded_from") or dict(schema=raw["schema"], run_id=raw["run_id"])
    obj["run_id"] = run_id
    new = path.with_name(f"{run_id}.json")
    validate(obj, new)
    write_json_atomic(new, obj)
    if new != path:
        path.unlink()
    return new


def seal_file(path: str | os.PathLike, when: str, version: str) -> list[str]:
    """`seal` a result file in place (atomically); returns the keys it holds that versions before digests
    did not write (e.g. one a later version backfilled), which the caller names. A file that already has
    digests, or is not a valid result, raises ResultError."""
    path = Path(path)
    raw = load_json(path)
    obj = validate(raw, path, check_pre_digest=False)
    if has_digests(obj):
        raise ResultError(path, "already has record digests: nothing to seal")
    later = sorted(set(obj) - PRE_DIGEST_KEYS) + sorted({k for f in obj["folds"] for k in f} - PRE_DIGEST_FOLD_KEYS)
    write_json_atomic(path, seal(raw, when, version))
    return later


def load_json(path: Path) -> Any:
    """A result file's JSON, or ResultError naming the file and what is wrong."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultError(path, "file not found") from None
    except IsADirectoryError:
        raise ResultError(path, "is a folder, not a result file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ResultError(path, f"not valid JSON ({e})") from None
    except OSError as e:
        raise ResultError(path, f"cannot read the file ({e.strerror or type(e).__name__})") from None


def load(path: str | os.PathLike) -> dict:
    path = Path(path)
    return validate(load_json(path), path)



def upgrade_folder(folder: Path, complete_spec=None) -> list[tuple[Path, Path]]:
    """`upgrade_file` on every result file of the folder; (old path, new path) of those rewritten."""
    changed = [(p, upgrade_file(p, complete_spec)) for p in sorted(Path(folder).glob("*.json"))]
    return [(p, new) for p, new in changed if new is not None]

# ------------------------------------------------------------------------------------------
# finding and presenting results (`msde-bench results`, `results show`, the summary `run` prints)


def load_all(dirs: list[Path], strict: bool = False) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every valid result under the folders (sorted by path, each with its `_path`), and (path,
    problem) for the others (or the first problem raised, `strict`)."""
    found, problems = [], []
    for d in dirs:
        if not d.is_dir():
            raise MsdeError(f"{d}: results folder not found")
        for path in sorted(d.glob("*.json")):
            if path.name.endswith(".partial.json"):
                continue
            try:
                res = load(path)
            except ResultError as e:
                if strict:
                    raise
                problems.append((str(path), e.problem))
                continue
            found.append(dict(res, _path=str(path)))
    return found, problems


def find(run: str, dirs: list[Path]) -> dict:
    """One result: a result file, or the run id (or a prefix of exactly one) of a result in the folders."""
    if Path(run).is_file():
        return dict(load(run), _path=run)
    found, _ = load_all(dirs)
    matches = [r for r in found if r["run_id"] == run] or [r for r in found if r["run_id"].startswith(run)]
    if len(matches) != 1:
        names = ", ".join(sorted(r["run_id"] for r in matches)) or "none"
        raise MsdeError(f"run {run!r}: {len(matches)} matching result files in {', '.join(map(str, dirs))} ({names})")
    return matches[0]


def summary_rows(result: dict) -> list[dict]:
    """A result's headline numbers (metrics.METRICS, view `run`): metric, mean ± std, folds."""
    s = result["summary"]
    return [{"accuracy": m.label, "mean ± std": f"{m.text(s[m.key]['mean'])} ± {m.text(s[m.key]['std'])}",
             "folds": s[m.key]["n"]} for m in metrics_in("run") if m.key in s]


_SAME_ROW = ("model", "paradigm", "data", "run_folds", "options")


def _settings(spec: dict) -> dict:
    """A spec's settings and options, flat (what can tell two runs of one model and paradigm apart)."""
    flat = {k: v for k, v in spec.items() if k not in _SAME_ROW}
    flat.update(spec.get("options") or {})
    return flat


def differing(items: list[tuple[object, dict]]) -> list[str]:
    """For each (group, settings) item, `k=v` of the settings whose values differ within its group
    (what tells apart the results of one model and paradigm here, the rows of one in the leaderboard)."""
    groups: dict = {}
    for group, settings in items:
        groups.setdefault(group, []).append(settings)
    # once per group, linear in its items: a key differs when some item's value (absent: None) is not the first's
    keys_of = {}
    for group, same in groups.items():
        first = same[0]
        every = {k for s in same for k in s}
        keys_of[group] = sorted(k for k in every if any(s.get(k) != first.get(k) for s in same))
    return [", ".join(f"{k}={mine.get(k)}" for k in keys_of[group]) for group, mine in items]


def differences(results: list[dict]) -> list[str]:
    """For each result, the settings (spec fields and options, e.g. `train_on=masked`, `seed=1`) whose
    values differ among the results of the same model, paradigm and dataset."""
    return differing([((r["spec"]["model"], r["spec"]["paradigm"], r["dataset"]["name"]), _settings(r["spec"]))
                      for r in results])


def list_rows(results: list[dict]) -> list[dict]:
    """One row per result (`msde-bench results`): run id, model, paradigm, dataset, protocol, folds
    done, the settings that tell it from the other results of its model and paradigm, the metrics
    of view `run` (mean over folds), date."""
    rows = []
    results = sorted(results, key=lambda r: r["run_id"])
    for r, differ in zip(results, differences(results)):
        s = r["summary"]
        row = dict(run_id=r["run_id"], model=r["spec"]["model"], paradigm=r["spec"]["paradigm"],
                   dataset=r["dataset"]["name"], protocol=r["protocol"]["split"],
                   folds=f"{len(r['folds'])}/{r['protocol']['folds']}", settings=differ)
        row.update({m.column: _rounded(s.get(m.key, {}).get("mean"), m.digits) for m in metrics_in("run")})
        rows.append(dict(row, date=r.get("finished") or r["created"]))
    return rows


def fold_rows(result: dict) -> list[dict]:
    """A result's per-fold numbers (`results show`): fold, test subjects and pairs, the metrics of
    view `fold`, then any test-time augmentation's accuracies (`--tta`: "<kind> non_masked", ...)."""
    return [dict(fold=f["fold"], test_subjects=len(f["test_subjects"]), pairs=f["n_test_pairs"],
                 **{m.column: _rounded(f.get(m.key), m.digits) for m in metrics_in("fold")}, **_grad_shares(f),
                 **({"chosen": _values_text(f["weights_chosen"]["chosen"])} if f.get("weights_chosen") else {}),
                 **{f"{kind} {view}": _rounded(acc[f"acc_{view}"], 4) for kind, acc in (f.get("tta") or {}).items()
                    for view in ("non_masked", "masked")})
            for f in result["folds"]]


def _values_text(values: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def selection_lines(result: dict) -> list[str]:
    """Per fold of a run with nested selection (`--select-on val`): the choice, where it was made and
    every candidate's validation accuracy (overall, masked)."""
    out = []
    for f in result["folds"]:
        w = f.get("weights_chosen")
        if not w:
            continue
        scores = "; ".join(f"{_values_text(c['values'])}: {c['acc_overall']:.3f} ({c['acc_masked']:.3f} masked)"
                           for c in w["candidates"])
        out.append(f"fold {f['fold']}: chose {_values_text(w['chosen'])} on {w['on']} ({w['n_val_pairs']} pairs of "
                   f"{len(w['val_subjects'])} subjects; validation {w['metric']}: {scores})")
    return out


def _grad_shares(fold: dict) -> dict:
    """A fold's mean share of the gradient per loss part over its epochs (`grad_share.<part>`; since 0.9.0)."""
    history = fold.get("train_history") or []
    keys = sorted({k for rec in history for k in rec if k.startswith("grad_share.")})
    return {k: _rounded(sum(rec.get(k, 0.0) for rec in history) / len(history), 5) for k in keys}


def _rounded(value, digits: int):
    """A number rounded for data outputs; None (a metric the result does not record) stays None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, digits)


def prediction_rows(result: dict, only_fold: int | None = None) -> tuple[list[dict], list[str]]:
    """The per-image rows of a result's samples files (`results show --predictions`), each file
    checked against the digest its fold records, and a line per fold with the metrics recomputed
    from them, which must equal the record (an error names the file otherwise)."""
    folds = [f for f in result["folds"] if only_fold is None or f["fold"] == only_fold]
    if not folds:
        raise MsdeError(f"{result['run_id']}: no fold {only_fold} in this result")
    missing = [f["fold"] for f in folds if not f.get("samples_file")]
    if missing:
        raise MsdeError(f"{result['run_id']}: folds {missing} were run without --log-samples (no predictions file)")
    base = Path(result["_path"]).parent if result.get("_path") else Path(".")
    rows, checks = [], []
    for f in folds:
        path = base / f["samples_file"]
        _, lines = S.read(path, f.get("samples_sha256"))
        again = S.metrics(lines)
        if not M.same_metrics(again, f):
            raise MsdeError(f"{path}: the metrics recomputed from the predictions differ from the record of fold "
                            f"{f['fold']}")
        checks.append(f"fold {f['fold']}: {len(lines)} images; recomputed non-masked {again['acc_non_masked']:.4f} "
                      f"masked {again['acc_masked']:.4f} pair agreement {again['pair_agreement']:.4f}: "
                      "equal to the record")
        rows += [dict(fold=f["fold"], pair=r["pair"], view=r["view"], subject=r["subject"], label=r["label"],
                      prediction=r["prediction"], p_prediction=r["probs"].get(r["prediction"])) for r in lines]
    return rows, checks


def _own_model(path: Path, base: Path, fold: dict) -> bool:
    """Whether `path` is a fold model the harness wrote for this fold: `<run folder>/fold<k>.pt`
    inside the results folder, and, where the fold records it, the file it saved (model_sha256).
    Anything else a result's `model_file` names (an edited field: a file outside the folder, a
    script) is never removed."""
    try:
        inside = path.resolve().parent.parent == base.resolve()
    except OSError:
        return False
    if not inside or path.name != f"fold{fold['fold']}.pt" or path.is_symlink():
        return False
    return not fold.get("model_sha256") or hashlib.sha256(path.read_bytes()).hexdigest() == fold["model_sha256"]


def prunable_models(folders: list[Path]) -> list[tuple[Path, int]]:
    """(file, bytes) of the fold models (`<run_id>/fold<k>.pt`) that the complete results in the
    folders name, and the training checkpoints their cells kept (`--keep-checkpoints`:
    `<run_id>/fold<k>*.ckpt`, msde_bench.cellstate): what `results prune` removes (a result keeps
    its numbers; `explain` and `evaluate` then need the run again with --save-models). The files of
    unfinished runs are kept (a checkpoint there is a stopped cell's way to resume), and so are a
    file that is not the fold's own model (_own_model) and a model a kept result starts from (--init)."""
    found, _ = load_all(folders)
    # a model that a kept result starts from (--init) is never removed, whichever folder names it
    starts = {Path(r["spec"]["init"]).resolve() for r in found if r["spec"].get("init")
              and not str(r["spec"]["init"]).startswith("pretrain:")}
    out = []
    for r in found:
        if not r["protocol"].get("complete"):
            continue
        base = Path(r["_path"]).parent
        for f in r["folds"]:
            path = base / f["model_file"] if f.get("model_file") else None
            if path is not None and path.is_file() and _own_model(path, base, f) and path.resolve() not in starts:
                out.append((path, path.stat().st_size))
            out += [(p, p.stat().st_size) for p in sorted((base / r["run_id"]).glob(f"fold{f['fold']}.*ckpt"))
                    if p.name.endswith(".ckpt")]
    return out


#: the formats of `results` and `results show`
FORMATS = ("table", "markdown", "csv", "json")


def format_rows(rows: list[dict], fmt: str) -> str:
    """Rows as a plain table, a markdown table (every text escaped: names and option values come
    from result files), CSV or JSON."""
    import pandas as pd
    from tabulate import tabulate

    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    df = pd.DataFrame(rows)
    if fmt == "csv":
        return df.to_csv(index=False)
    if df.empty:
        return "(no results)\n"
    values = [list(r.values()) for r in rows]  # not df.values: it would turn integer columns into floats
    if fmt == "markdown":
        values = [[md_text(v) if isinstance(v, str) else v for v in row] for row in values]
    return tabulate(values, headers=list(df.columns), tablefmt="github" if fmt == "markdown" else "simple",
                    disable_numparse=True) + "\n"
