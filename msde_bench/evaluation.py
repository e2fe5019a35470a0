"""Scoring trained models without training them (`msde-bench evaluate`, `api.evaluate_benchmark`).

What can be scored:
- a result file whose fold models were saved (`run --save-models`): every fold model (or `--fold`);
- one fold model msde-bench saved (`<run_id>/fold<k>.pt`);
- a plain checkpoint (a state dict of the whole model, head included) with `--model NAME`.

Where: without `--data`, each fold model on its own fold's test pairs of the data it was trained on
(the same pairs, in the same order, as the run scored: the numbers equal the run's record on the
same machine and thread count, which `evaluate` checks and prints). With `--data` naming another
dataset, a cross-dataset test, which must be asked for (`--cross-dataset`): the models are scored on
that set's official test split if it has one, else on all its pairs. The leak guard: a fold model is
never scored on subjects it was trained on, so `--data` naming its own training set scores its own
test fold only. A plain checkpoint's training data is unknown: it is scored like a cross-dataset
test and the result says the training data is unknown.

The result is a result file like `run`'s, marked evaluation-only (`evaluation`: the mode, the test
data, and each model's file, SHA-256, run, fold and training data); its protocol is
`msde-evaluation`, so the leaderboard puts it in a table of its own and never ranks it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from msde_bench import CLASS_NAMES, __version__
from msde_bench import metrics as M
from msde_bench import protocol as P
from msde_bench import results as R
from msde_bench import samples as S
from msde_bench.atomic import check_writable
from msde_bench.checkpoints import MODEL_FORMAT, file_sha256, load_torch, model_path
from msde_bench.data.pairs import ImageCache, PairedDataset
from msde_bench.device import resolve_device
from msde_bench.errors import MsdeError
from msde_bench.factory import build_method, load_dataset, method_provider, other_dataset
from msde_bench.runner import _now, cells_of, cross_test_pairs, environment, git_state, untrained_pairs
from msde_bench.spec import RunSpec
from msde_bench.training import evaluate

EVAL_PROTOCOL = "msde-evaluation"
EVAL_VERSION = 1


@dataclass
class Source:
    """One trained model to score."""

    path: Path
    sha256: str
    spec: RunSpec
    state_dict: dict
    fold: int | None = None  # the fold it was trained for (None: not an msde-bench fold model)
    test_subjects: list | None = None  # that fold's test subjects
    run_id: str | None = None
    trained_on: dict | None = None  # name, root, fingerprint, classes of its training data (None: unknown)
    recorded: dict | None = None  # the run's fold record, when scored from a result file

    def describe(self) -> dict:
        return dict(file=str(self.path), sha256=self.sha256, run_id=self.run_id, fold=self.fold,
                    trained_on=self.trained_on)


def _state_dict(obj, path: Path) -> dict:
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MsdeError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return obj


def from_model_file(path: Path, obj: dict, recorded: dict | None = None, run: dict | None = None) -> Source:
    """A fold model msde-bench saved, with its run's record and result when known."""
    try:
        spec = RunSpec.from_dict(obj["spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise MsdeError(f"{path}: its spec cannot be read ({e})") from None
    trained_on = None
    if run is not None:
        ds = run["dataset"]
        trained_on = dict(name=ds["name"], root=ds.get("root", spec.data), fingerprint=ds["fingerprint"],
                          classes=ds.get("classes") or list(CLASS_NAMES))
    return Source(path, file_sha256(path), spec, _state_dict(obj.get("state_dict"), path), fold=obj.get("fold"),
                  test_subjects=list(obj.get("test_subjects") or []), run_id=run["run_id"] if run else None,
                  trained_on=trained_on, recorded=recorded)


def sources(target: str | Path, *, model: str | None = None, fold: int | None = None,
            image_size: int | None = None) -> list[Source]:
    """The models `target` names (a result file, a fold model, or a plain checkpoint with `model`)."""
    target = Path(target)
    if not target.is_file():
        raise MsdeError(f"{target}: file not found")
    if target.suffix == ".json":
        if model is not None:
            raise MsdeError(f"--model {model}: a result file names its own model; --model is for a plain checkpoint")
        run = R.load(target)
        records = [f for f in run["folds"] if fold is None or f["fold"] == fold]
        if not records:
            raise MsdeError(f"{target}: no fold {fold} in this result (folds {[f['fold'] for f in run['folds']]})")
        out = []
        for rec in records:
            saved = rec.get("model_file")
            path = target.parent / saved if saved else model_path(target, run["run_id"], rec["fold"])
            if not path.is_file():
                raise MsdeError(f"{path}: fold {rec['fold']}'s model was not saved; run again with --save-models to "
                                "evaluate this run")
            if rec.get("model_sha256") and file_sha256(path) != rec["model_sha256"]:
                raise MsdeError(f"{path}: fold {rec['fold']}'s model is not the one this run saved (its SHA-256 differs "
                                "from the one the fold records): it was replaced or edited")
            obj = _read(path)
            if not (isinstance(obj, dict) and obj.get("format") == MODEL_FORMAT):
                raise MsdeError(f"{path}: not an msde-bench fold model")
            whole = RunSpec.from_dict(run["spec"]).whole().to_dict()  # a --fold run's cells are the whole spec's
            if obj.get("spec") != whole or obj.get("fold") != rec["fold"]:
                raise MsdeError(f"{path}: this model is not fold {rec['fold']} of {target}'s run")
            out.append(from_model_file(path, obj, rec, run))
        return out
    obj = _read(target)
    if isinstance(obj, dict) and obj.get("format") == MODEL_FORMAT:
        if model is not None:
            raise MsdeError(f"--model {model}: {target} is an msde-bench fold model, which names its own model")
        src = from_model_file(target, obj)
        if fold is not None and fold != src.fold:
            raise MsdeError(f"--fold {fold}: {target} is the model of fold {src.fold}")
        return [src]
    if model is None:
        raise MsdeError(f"{target}: not an msde-bench fold model; give --model NAME to evaluate it as a plain "
                        "checkpoint of that model (head included)")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    spec = RunSpec(model=model, image_size=image_size or RunSpec.image_size)
    return [Source(target, file_sha256(target), spec, _state_dict(obj, target))]


def _read(path: Path):
    return load_torch(path, unreadable="not a readable PyTorch checkpoint (only tensors are loaded: weights_only)")


def _model_classes(src: Source, dataset: PairedDataset) -> list[int]:
    """The MSD-E labels of the model's outputs, in order: its training data's classes, or for a
    model whose training data is unknown, the set's (one output per class of the set)."""
    if src.trained_on is not None:
        return [CLASS_NAMES.index(c) for c in src.trained_on["classes"]]
    return list(dataset.classes)


def _head_outputs(state: dict) -> int | None:
    """The number of outputs of the last 2-D weight (the classifier head) of a state dict."""
    mats = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    return int(mats[-1].shape[0]) if mats else None


def build(src: Source, classes: list[int], data: str) -> torch.nn.Module:
    """The model of `src` with its weights, in eval mode; weights that do not fit, or a head with
    another number of outputs than `classes`, are one error line."""
    method, _ = build_method(src.spec, load=False, num_classes=len(classes))
    try:
        method.load_state_dict(src.state_dict)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
        outputs = _head_outputs(src.state_dict)
        if (outputs not in (None, len(classes)) and len(lines) <= 2
                and all(ln.startswith("size mismatch") for ln in lines)):
            raise MsdeError(f"{src.path}: a model with {outputs} outputs, and {data} has {len(classes)} classes "
                            f"({', '.join(CLASS_NAMES[c] for c in classes)}): trained with another class count") from None
        first = lines[0] if lines else str(e).splitlines()[0]
        raise MsdeError(f"{src.path}: its weights do not fit model {src.spec.model} with {len(classes)} outputs "
                        f"({first.rstrip('.')})") from None
    return method.eval()


def _mode(srcs: list[Source], dataset: PairedDataset, data: str | None, cross_dataset: bool) -> str:
    trained = [s for s in srcs if s.trained_on is not None or s.fold is not None]
    if not trained:
        if data is None:
            raise MsdeError(f"{srcs[0].path}: a plain checkpoint needs --data (the set to score it on)")
        return "external"
    own = [s for s in trained
           if (s.trained_on or {}).get("fingerprint") == dataset.fingerprint()
           or (s.trained_on is None and s.spec.data == (data or s.spec.data))]
    if len(own) == len(srcs):
        return "own-test-folds"
    if own:
        raise MsdeError("the models were trained on different data; evaluate them one result at a time")
    if not cross_dataset:
        name = (srcs[0].trained_on or {}).get("name") or srcs[0].spec.data
        raise MsdeError(f"--data {data}: not the data the model was trained on ({name}); scoring it on another "
                        "set is a cross-dataset test: add --cross-dataset (people can be on both sides when the "
                        "two sets share a source)")
    return "cross-dataset"


def _trained_faces(src: Source, console: Console) -> set[str] | None:
    """The faces (PairedDataset.face_digests) a fold model trained on, from its recorded data and
    fold, which a cross-dataset evaluation never scores; None, with a warning, when that data cannot
    be read here."""
    if src.fold is None:
        return None
    try:
        train_set = other_dataset(src.spec.data)  # loaded and hashed once for every fold model of the run
        fold = cells_of(src.spec.whole(), train_set)[1][src.fold]
    except (MsdeError, OSError) as e:
        console.print(f"[yellow]warning[/]: {src.path}: its training data {src.spec.data} cannot be read here ({e}), "
                      "so nothing guards against scoring it on the faces it trained on")
        return None
    faces = train_set.face_digests()
    return {faces[i] for i in fold.train}


def evaluate_models(target: str | Path, *, data: str | None = None, model: str | None = None, fold: int | None = None,
                    cross_dataset: bool = False, device: str | None = None, out: str | Path = "results",
                    log_samples: bool = False, image_size: int | None = None,
                    console: Console | None = None) -> tuple[dict, Path]:
    """Scores the models `target` names; writes the evaluation-only result and returns (result, path)."""
    console = console or Console(stderr=True)
    srcs = sources(target, model=model, fold=fold, image_size=image_size)
    test_data = data or srcs[0].spec.data
    dataset = load_dataset(test_data)
    mode = _mode(srcs, dataset, data, cross_dataset)
    dev = resolve_device(device or srcs[0].spec.device)
    if mode == "external":
        console.print(f"[yellow]warning[/]: {srcs[0].path} is not an msde-bench fold model: the people it was trained "
                      "on are unknown, so nothing guards against scoring it on them")
    created, t0 = _now(), time.perf_counter()
    caches: dict[int, ImageCache] = {}
    folds, models = [], []
    for i, src in enumerate(srcs):
        if mode == "own-test-folds":
            if src.fold is None:
                raise MsdeError(f"{src.path}: records no fold")
            _, all_folds = cells_of(src.spec.whole(), dataset)
            f = all_folds[src.fold]
            if list(f.test_subjects) != list(src.test_subjects or f.test_subjects):
                raise MsdeError(f"{src.path}: fold {src.fold}'s test subjects cannot be reproduced from {test_data}")
            idx, scored_on = f.test, "its own test fold"
        else:
            idx, scored_on = cross_test_pairs(dataset)
            if mode == "cross-dataset":
                idx, scored_on, _ = untrained_pairs(dataset, idx, scored_on, _trained_faces(src, console), test_data)
        classes = _model_classes(src, dataset)
        missing = sorted(set(dataset.classes) - set(classes))
        if missing:
            raise MsdeError(f"{test_data}: has classes {[CLASS_NAMES[c] for c in missing]} that {src.path} was not "
                            f"trained on (its outputs: {[CLASS_NAMES[c] for c in classes]})")
        method = build(src, classes, test_data)
        size = src.spec.image_size
        if size not in caches:
            caches[size] = ImageCache(dataset, size)
        cache = caches[size].over_classes(classes)
        preds: list | None = [] if log_samples else None
        e0 = time.perf_counter()
        spec = src.spec.with_(device=str(dev))
        rec = evaluate(method, cache, idx, dev, spec, preds)
        index = src.fold if src.fold is not None else i
        rec = dict(fold=index, test_subjects=P.subjects_of(idx, dataset.subjects), **rec, train_seconds=0.0,
                   train_images_per_second=0.0, eval_seconds=time.perf_counter() - e0,
                   n_params=sum(p.numel() for p in method.parameters()))
        folds.append(rec)
        models.append(src.describe())
        said = ""
        if mode == "own-test-folds" and src.recorded is not None:
            models[-1]["equals_run"] = M.same_metrics(rec, src.recorded)
            said = ("  (equal to the run's record)" if models[-1]["equals_run"] else
                    "  (differs from the run's record: " + (
                        "its saved model is the last epoch's, the run reported the best epoch's)"
                        if src.spec.protocol == "faithful" else "another machine, thread count or library version?)"))
        console.print(f"{src.path.name}: {scored_on} of {dataset.name} ({len(idx)} pairs): non-masked "
                      f"{rec['acc_non_masked']:.3f}  masked {rec['acc_masked']:.3f}{said}")
        if preds is not None:
            folds[-1]["_predictions"] = (idx, cache, preds[0])
    run_id = _run_id(srcs, dataset, mode)
    out = check_writable(out, "results folder")  # only now: a refused evaluation writes nothing
    for rec in folds:
        if "_predictions" in rec:
            idx, cache, pred = rec.pop("_predictions")
            path = S.samples_path(out / run_id / f"fold{rec['fold']}.json")
            lines = S.rows([p.name for p in dataset.pairs], dataset.subjects, idx, cache.classes, *pred)
            header = dict(run_id=run_id, fold=rec["fold"], classes=[CLASS_NAMES[c] for c in cache.classes],
                          n_images=len(lines))
            path.parent.mkdir(parents=True, exist_ok=True)
            rec["samples_sha256"] = S.write(path, header, lines)
            rec["samples_file"] = f"{run_id}/{path.name}"
    for rec in folds:
        rec["record_sha256"] = R.record_digest(rec)
    sha, dirty = git_state()
    first = srcs[0]
    result = dict(
        schema=R.SCHEMA, run_id=run_id, created=created, finished=_now(), msde_bench_version=__version__,
        git_sha=sha, git_dirty=dirty, method_plugin=method_provider(first.spec.model), spec=first.spec.to_dict(),
        dataset=dataset.describe(),
        protocol=dict(name=EVAL_PROTOCOL, version=EVAL_VERSION, folds=len(folds), split="evaluation",
                      selection="the given models", run_folds=[r["fold"] for r in folds], complete=True,
                      folds_by=dataset.fold_grouping()),
        evaluation=dict(mode=mode, test_data=test_data, scored_on=scored_on, models=models,
                        seconds=time.perf_counter() - t0),
        env=environment(dev, first.spec.precision), folds=folds, summary=M.summarise(folds))
    R.validate(result)
    path = out / f"{run_id}.json"
    R.write_json_atomic(path, result)
    return result, path


def _run_id(srcs: list[Source], dataset: PairedDataset, mode: str) -> str:
    return R.evaluation_run_id(srcs[0].spec.model, srcs[0].spec.paradigm,
                               dict(name=dataset.name, fingerprint=dataset.fingerprint()), mode,
                               [s.sha256 for s in srcs])
