"""Running a spec: its folds as cells, each written on its own; the result file as their merge.

A cell is (whole spec, fold): the spec with every fold (`RunSpec.whole()`), and one fold index.
Training a cell writes `<out>/<run_id>/fold<k>.json` (the fold record, the spec, the dataset
it ran on and the environment) and, with `save_models`, `fold<k>.pt` beside it, each
atomically. A cell's numbers depend only on (whole spec, fold), never on which cells ran before
or where, so:

- `run(spec)` trains the selected folds (reusing finished cells with `resume`) and writes the
  result file `<out>/<run_id>.json`, the merge of its cells;
- separate `--fold k` runs of one spec each write their own (incomplete) result, and once every
  fold's cell is there, the complete result of the whole spec too (`merge`), equal fold for fold
  to one run of every fold; `merge_all(out)` does the same for every cell folder under `out`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from msde_bench import CLASS_NAMES, __version__, teachers
from msde_bench import balance as BAL
from msde_bench import cellstate as CS
from msde_bench import metrics as M
from msde_bench import pretrain as PT
from msde_bench import protocol as P
from msde_bench import results as R
from msde_bench import samples as S
from msde_bench import selection as SEL
from msde_bench.atomic import check_writable, remove_stale_temporaries
from msde_bench.checkpoints import check_init_subjects, file_sha256, save_model
from msde_bench.choices import CHECKPOINT_MINUTES
from msde_bench.data.pairs import ImageCache, PairedDataset, open_image
from msde_bench.device import compile_setting, cpu_bf16, memory_layout, optimizer_impl
from msde_bench.errors import FoldFailed, MsdeError, ResultError, os_problem
from msde_bench.factory import build_method, build_paradigm, method_provider, other_dataset, paradigm_class
from msde_bench.models.base import Method
from msde_bench.paradigms.base import FoldContext, Paradigm
from msde_bench.progress import RunProgress, progress_mode
from msde_bench.spec import RunSpec, derive_seed, is_pretrain
from msde_bench.spec_build import budget_rules_differ
from msde_bench.trackers.base import TrackedCell
from msde_bench.tracking import CellTracking, Tracking
from msde_bench.training import Trainer, epoch_steps, evaluate, evaluate_tta

CELL_FORMAT = "msde-bench/cell/1"

#: a run's warning on a set without subject identities (the result's protocol.folds_by says "image")
IMAGE_LEVEL_WARNING = (
    "{name} has no subject identities (every image is its own subject), so these folds are image-level, not "
    "subject-disjoint: one person, and near-identical frames of one video, can be on both sides of a fold, "
    "which inflates accuracy. Convert with --subject-pattern REGEX (or --format ckplus) to keep identities")

# ------------------------------------------------------------------------------------------
# environment


def git_state() -> tuple[str | None, bool | None]:
    """(commit, whether the working tree had uncommitted changes) of the msde-bench source, when
    it runs from a git checkout; (None, None) otherwise."""
    here = Path(__file__).resolve().parent

    def git(*args) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    sha = (git("rev-parse", "HEAD") or "").strip() or None
    if sha is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return sha, (bool(status.strip()) if status is not None else None)


def environment(device: torch.device, precision: str = "fp32") -> dict:
    """Where a cell ran and the speed choices that move its numbers in float round-off: the
    memory layout (device.channels_last), the optimiser implementation (device.optimizer_impl),
    the CPU's bf16 hardware (device.cpu_bf16), the thread count and --compile."""
    import sklearn
    import timm

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return dict(python=platform.python_version(), torch=torch.__version__, timm=timm.__version__,
                numpy=np.__version__, sklearn=sklearn.__version__, platform=platform.platform(),
                device=str(device), device_name=name, threads=torch.get_num_threads(), compile=compile_setting(),
                memory_format=memory_layout(device, precision), optimizer_impl=optimizer_impl(device),
                cpu_bf16=cpu_bf16() if device.type == "cpu" else None)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# ------------------------------------------------------------------------------------------
# one fold


def fit_model(spec: RunSpec, cache: ImageCache, train_idx: np.ndarray, device: torch.device, seed: int,
              progress: RunProgress | None = None, checkpoint: CS.Checkpoint | None = None) -> tuple[Method, dict]:
    """A model of `spec` trained on `train_idx` from `seed` (what FoldContext.fit does); with
    `checkpoint`, saved there as it trains and resumed from it (msde_bench.cellstate)."""
    torch.manual_seed(seed)
    model, _ = build_method(spec, num_classes=len(cache.classes))
    trainer = Trainer(spec, model, build_paradigm(spec), device)
    timing = trainer.fit(cache, train_idx, torch.Generator().manual_seed(seed), progress=progress,
                         checkpoint=checkpoint)
    return trainer.method, timing


def available_memory() -> int | None:
    """Bytes of memory the system can still give (MemAvailable on Linux), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


#: about the activation memory of one 224 px image in a ResNet-18 training step (forward and backward);
#: it grows with the pixels
STEP_BYTES_224 = 100e6


def check_memory(spec: RunSpec, dataset: PairedDataset, console: Console | None = None) -> None:
    """Before anything is decoded: the decoded images (both views at --image-size) and one training
    step's activations must fit in the memory left, else one line with the numbers; an image size
    far above the images' own is said too (they are upscaled: slower, not sharper)."""
    n = len(dataset.pairs)
    cache = 2 * n * spec.image_size ** 2 * 3
    step = spec.batch_size * (spec.image_size / 224) ** 2 * STEP_BYTES_224
    free = available_memory()
    need = cache + (step if spec.device == "cpu" else 0)  # on a GPU the step's activations are its memory
    if free is not None and need > free:
        raise MsdeError(f"--image-size {spec.image_size}: the {n} pairs decoded at {spec.image_size} px take "
                        f"{cache / 1e9:.1f} GB" + (f" and a training step about {step / 1e9:.1f} GB more"
                                                    if spec.device == "cpu" else "")
                        + f", above the {free / 1e9:.1f} GB of memory available; choose a smaller --image-size"
                        + (" or --batch-size" if spec.device == "cpu" else ""))
    if console is not None and dataset.pairs:
        # open_image: a decompression bomb or an unreadable file is one DataError naming it, never a traceback
        with open_image(dataset.pairs[0].non_masked) as im:
            native = max(im.size)
        if spec.image_size >= 4 * native:
            console.print(f"[yellow]warning[/]: --image-size {spec.image_size} is {spec.image_size / native:.0f}x "
                          f"the images' own {native} px: every image is upscaled (slower, not sharper)")


def cross_test_pairs(dataset: PairedDataset) -> tuple[np.ndarray, str]:
    """The pairs a cross-dataset test scores on another set: its official test split if it has
    one, else every pair; and the words for it."""
    splits = dataset.official_splits()
    if splits is not None and "test" in splits:
        return np.array([i for i, s in enumerate(splits) if s == "test"]), "the official test split"
    return np.arange(len(dataset)), "every pair"


@functools.lru_cache(maxsize=2)
def _test_images(data: str, image_size: int) -> ImageCache:
    """A cross-dataset run's test set (`--test-data`) decoded, once per process."""
    return ImageCache(other_dataset(data), image_size)


def check_test_data(spec: RunSpec, dataset: PairedDataset) -> PairedDataset | None:
    """Before anything trains: a cross-dataset spec's test set loads, is not the training set, has
    no class the training set lacks, and the protocol is not `faithful` (which picks its epoch on
    the test fold). Returns the test set (None without --test-data)."""
    if not spec.test_data:
        return None
    if spec.protocol == "faithful":
        raise MsdeError(f"--test-data {spec.test_data}: not with --protocol faithful (it picks the epoch on the "
                        "test fold); use clean or holdout")
    test = other_dataset(spec.test_data)
    if test.fingerprint() == dataset.fingerprint():
        raise MsdeError(f"--test-data {spec.test_data}: the same images as --data {spec.data}; leave --test-data "
                        "out to score each fold on its own test pairs")
    missing = sorted(set(test.classes) - set(dataset.classes))
    if missing:
        raise MsdeError(f"--test-data {spec.test_data}: has classes {[CLASS_NAMES[c] for c in missing]} that "
                        f"--data {spec.data} has not, so the model cannot predict them")
    return test


def cross_test(spec: RunSpec, cache: ImageCache,
               trained_faces: set[str] | None = None) -> tuple[PairedDataset, ImageCache, np.ndarray, dict]:
    """A cross-dataset run's test set, its images over the training set's classes (over_classes
    refuses a class the model lacks), the pairs to score and what the record says of it. A pair
    whose face the fold trained on (`trained_faces`: PairedDataset.face_digests of its training
    pairs) is never scored: the same faces under other masks, or two sets that share a source, would
    otherwise score the model on the people it learnt; the record counts them (`excluded_trained_faces`)."""
    dataset = other_dataset(spec.test_data)  # checked by check_test_data (run, sweep planning) before training
    idx, scored_on, excluded = untrained_pairs(dataset, *cross_test_pairs(dataset), trained_faces, spec.test_data)
    test_cache = _test_images(spec.test_data, spec.image_size).over_classes(cache.classes)
    return dataset, test_cache, idx, dict(dataset.describe(), scored_on=scored_on, excluded_trained_faces=excluded)


def untrained_pairs(dataset: PairedDataset, idx: np.ndarray, scored_on: str, trained_faces: set[str] | None,
                    name: str) -> tuple[np.ndarray, str, int]:
    """The pairs `idx` of another set less those whose face (PairedDataset.face_digests) is among
    `trained_faces`, the words for them, and how many were left out; an error naming `name` when
    none is left."""
    if not trained_faces:
        return idx, scored_on, 0
    faces = dataset.face_digests()
    keep = np.array([faces[i] not in trained_faces for i in idx], dtype=bool)
    excluded = int((~keep).sum())
    if excluded:
        scored_on += f" less the {excluded} pairs whose faces this fold trained on"
    if not keep.any():
        raise MsdeError(f"{name}: every pair it would score shows a face the model trained on (the same images "
                        "under other masks?); nothing is left to test")
    return idx[keep], scored_on, excluded


def trained_faces(spec: RunSpec, dataset: PairedDataset, fold: P.Fold) -> set[str] | None:
    """Under --test-data: the faces (PairedDataset.face_digests) of the fold's training pairs, which
    cross_test never scores; None otherwise (nothing is read)."""
    if not spec.test_data:
        return None
    faces = dataset.face_digests()
    return {faces[i] for i in fold.train}


def fold_record(fold: P.Fold, subjects: np.ndarray) -> dict:
    return dict(fold=fold.index, test_subjects=list(fold.test_subjects), n_train_pairs=int(len(fold.train)),
                train_subjects=P.subjects_of(fold.train, subjects))


def prepared_trainer(spec: RunSpec, cache: ImageCache, train_idx: np.ndarray, test_idx: np.ndarray, fold: int,
                     seed: int, subjects: np.ndarray, device: torch.device, console: Console | None = None,
                     teacher_checkpoint: CS.Checkpoint | None = None) -> tuple[Trainer, Paradigm, dict | None]:
    """The Trainer of `spec` on these training pairs from `seed`: the paradigm prepared for them (a
    distill teacher trained or loaded on `train_idx` only; one it trains checkpoints to
    `teacher_checkpoint`), the model built (--init loaded unless the paradigm skips it); and the
    paradigm and the --init report."""
    paradigm = build_paradigm(spec)
    paradigm.prepare(FoldContext(
        spec=spec, cache=cache, train_idx=train_idx, test_idx=test_idx, subjects=subjects, device=device,
        seed=seed, fold=fold, console=console,
        fit=lambda s, sd: fit_model(s, cache, train_idx, device, sd, checkpoint=teacher_checkpoint),
        build=lambda s: build_method(s, load=False, num_classes=len(cache.classes))[0]))
    torch.manual_seed(seed)
    method, init_report = build_method(spec, load=not paradigm.skip_init(), num_classes=len(cache.classes))
    return Trainer(spec, method, paradigm, device), paradigm, init_report


def run_fold(spec: RunSpec, cache: ImageCache, fold: P.Fold, device: torch.device, subjects: np.ndarray,
             progress: RunProgress | None = None, console: Console | None = None,
             save_to: Path | None = None, samples_to: Path | None = None,
             pair_names: list[str] | None = None, track: CellTracking | None = None,
             checkpoints: CS.CellCheckpoints | None = None, trained_faces: set[str] | None = None) -> dict:
    """Trains and evaluates one fold of the whole spec; its result depends only on (spec, fold),
    never on which folds ran before. With `save_to`, the final model is written there (with the
    spec, to rebuild it); with `samples_to` (and the dataset's `pair_names`), the evaluated model's
    per-image predictions on the test pairs (msde_bench.samples); `track` gets each epoch's values;
    `checkpoints`: where each of its trainings (the fold's model, a teacher it trains, each
    candidate of a nested selection) saves its state and resumes from (msde_bench.cellstate);
    `trained_faces`: under --test-data, the face digests of the fold's training pairs, which the
    other set's scoring leaves out (cross_test)."""

    def phase(name: str) -> CS.Checkpoint | None:
        return checkpoints.phase(name) if checkpoints is not None else None

    seed = derive_seed(spec.seed, "fold", fold.index)
    recorded, pretrained = spec, None  # `recorded`: the spec as results and saved models name it
    if is_pretrain(spec.init):  # the harness's pretrained start: trained once, cached, loaded like any --init
        path, pretrained = PT.ensure(spec, device, fit=fit_model, console=console,
                                     **({"checkpoint_minutes": checkpoints.policy.minutes} if checkpoints else {}))
        spec = spec.with_(init=str(path))
    check_init_subjects(spec.init, spec.data, fold.index, fold.test_subjects)
    weights = None  # the nested selection's record
    if spec.candidates:  # nested: the fold's values chosen on a validation split of its training side
        def train_and_score(s: RunSpec, train_idx: np.ndarray, val_idx: np.ndarray) -> dict:
            name = CS.selection_phase({k: s.option(k) for k, _ in spec.candidates})
            ck = phase(name)
            done = ck.load() if ck is not None else None
            if done is not None and "score" in done:  # scored before the cell stopped
                if console is not None:
                    console.print(f"fold {fold.index}: candidate {name} was scored before the stop: not trained again")
                return done["score"]
            trainer, _, _ = prepared_trainer(s, cache, train_idx, val_idx, fold.index, seed, subjects, device, console,
                                             phase(f"{name}-teacher"))
            trainer.fit(cache, train_idx, torch.Generator().manual_seed(seed), checkpoint=ck)
            score = evaluate(trainer.method, cache, val_idx, device, s)
            if ck is not None:  # the candidate's model is no longer needed: its score is
                ck.save(dict(score=score))
            return score

        chosen, weights = SEL.choose(spec, fold, subjects, cache.labels.cpu().numpy(), train_and_score,
                                       say=console.print if console is not None else lambda text: None)
        spec = SEL.with_values(spec, chosen)
    trainer, paradigm, init_report = prepared_trainer(spec, cache, fold.train, fold.test, fold.index, seed, subjects,
                                                      device, console, phase("teacher"))
    gen = torch.Generator().manual_seed(seed)
    # the faithful protocol's per-epoch test scores and best epoch (saved with a checkpoint)
    faithful: dict = dict(history=[], best={})

    def on_epoch(epoch: int) -> None:  # faithful protocol: pick the best epoch on the test fold
        preds: list | None = [] if samples_to is not None else None
        m = evaluate(trainer.method, cache, fold.test, device, spec, preds)
        faithful["history"].append(dict(epoch=epoch + 1, acc_non_masked=m["acc_non_masked"],
                                        acc_masked=m["acc_masked"], acc_overall=m["acc_overall"]))
        if track is not None:
            track.test_epoch(epoch + 1, m)
        best = faithful["best"]
        if not best or m["acc_overall"] > best["metrics"]["acc_overall"]:
            best.update(metrics=m, epoch=epoch + 1, predictions=preds)

    selection = P.describe(spec.protocol, spec.folds)["selection"]
    # a non-masked baseline fold is the distill teacher of the same settings: cache it for distill
    publisher = (teachers.TeacherCache(spec, fold.index, seed, cache.fingerprint, P.subjects_of(fold.train, subjects))
                 if teachers.is_teacher_spec(spec) else None)
    claimed = publisher is not None and publisher.claim()
    try:
        timing = trainer.fit(cache, fold.train, gen, on_epoch if selection == "best-on-test" else None, progress,
                             on_record=track.train_epoch if track is not None else None, checkpoint=phase("fold"),
                             extra=faithful)
        if claimed:
            publisher.publish(trainer.method, timing["train_seconds"])
    finally:
        if claimed:
            publisher.release()
    cross: dict = {}
    # what was scored, for the predictions file: pair names, subjects, pairs, the head's classes
    scored = (pair_names, subjects, fold.test, cache.classes)
    history, best = faithful["history"], faithful["best"]
    if selection == "best-on-test":
        metrics, selected, predictions = best["metrics"], best["epoch"], best["predictions"]
    elif spec.test_data:  # cross-dataset: scored on the other set; its own test fold recorded beside it
        test_set, test_cache, test_idx, about = cross_test(spec, cache, trained_faces)
        if about["excluded_trained_faces"] and console is not None:
            console.print(f"fold {fold.index}: {spec.test_data} scored on {len(test_idx)} pairs; "
                          f"{about['excluded_trained_faces']} left out (faces this fold trained on)", highlight=False)
        own = evaluate(trainer.method, cache, fold.test, device, spec) if len(fold.test) else None
        predictions = [] if samples_to is not None else None
        metrics, selected = evaluate(trainer.method, test_cache, test_idx, device, spec, predictions), spec.epochs
        cross = dict(test_subjects=P.subjects_of(test_idx, test_set.subjects), test_dataset=about)
        if own is not None:
            cross["in_domain"] = dict(n_pairs=int(len(fold.test)), acc_non_masked=own["acc_non_masked"],
                                      acc_masked=own["acc_masked"], acc_overall=own["acc_overall"])
        scored = ([p.name for p in test_set.pairs], test_set.subjects, test_idx, test_cache.classes)
    else:
        predictions = [] if samples_to is not None else None
        metrics, selected = evaluate(trainer.method, cache, fold.test, device, spec, predictions), spec.epochs
    rec = dict(**metrics, **timing, selected_epoch=selected,
               n_params=sum(p.numel() for p in trainer.method.parameters()), **cross)
    if samples_to is not None:  # the predictions of the evaluated model (the selected epoch's)
        lines = S.rows(*scored, *predictions[0])
        header = dict(run_id=samples_to.parent.name, fold=fold.index, classes=[CLASS_NAMES[c] for c in scored[3]],
                      n_images=len(lines))
        rec["samples_sha256"] = S.write(samples_to, header, lines)
        rec["samples_file"] = f"{samples_to.parent.name}/{samples_to.name}"
    if spec.tta:  # beside the fold's numbers (the scored set), never instead
        test_cache, test_idx = (test_cache, test_idx) if spec.test_data else (cache, fold.test)
        rec["tta"] = evaluate_tta(trainer.method, test_cache, test_idx, device, spec)
    if len(fold.val):  # the official validation split (holdout): scored beside the test split, never merged
        v = evaluate(trainer.method, cache, fold.val, device, spec)
        rec["val"] = dict(n_pairs=int(len(fold.val)), acc_non_masked=v["acc_non_masked"], acc_masked=v["acc_masked"],
                          acc_overall=v["acc_overall"])
        if spec.tta:
            rec["val"]["tta"] = evaluate_tta(trainer.method, cache, fold.val, device, spec)
    if history:
        rec["history"] = history
    if weights is not None:
        rec["weights_chosen"] = weights
    if paradigm.report():
        rec["paradigm"] = paradigm.report()
    if init_report:
        rec["init"] = dict(loaded=init_report["loaded"], missing=len(init_report["missing"]),
                           unexpected=len(init_report["unexpected"]))
        if spec.init and not is_pretrain(spec.init):  # the start file's digest (a pretrained start's: `pretrained`)
            rec["init"]["sha256"] = file_sha256(spec.init)
    if pretrained is not None:
        rec["pretrained"] = pretrained
    if save_to is not None:
        save_model(save_to, trainer.method, recorded.to_dict(), fold.index, fold.test_subjects)
        rec["model_file"] = f"{save_to.parent.name}/{save_to.name}"
        rec["model_sha256"] = file_sha256(save_to)  # `evaluate` checks the file it loads is this one
    return rec


# ------------------------------------------------------------------------------------------
# cells


@dataclass(frozen=True)
class Cell:
    """One fold of one whole spec: the unit of work."""

    spec: RunSpec  # run_folds == ()
    fold: int
    dataset: dict  # PairedDataset.describe() of the data it runs on

    @property
    def run_id(self) -> str:
        return self.spec.run_id(self.dataset["name"])

    def path(self, out: str | Path) -> Path:
        return Path(out) / self.run_id / f"fold{self.fold}.json"

    def model_path(self, out: str | Path) -> Path:
        return Path(out) / self.run_id / f"fold{self.fold}.pt"


def cells_of(spec: RunSpec, dataset: PairedDataset) -> tuple[list[Cell], list[P.Fold]]:
    """The cells `spec` selects (every fold unless run_folds) and every fold of its protocol."""
    whole = spec.whole()
    folds = P.make_folds(spec.protocol, dataset.subjects, dataset.labels, spec.folds, spec.seed,
                         dataset.official_splits())
    selected = list(spec.run_folds) or list(range(len(folds)))
    for f in selected:
        if not 0 <= f < len(folds):
            raise MsdeError(f"--fold {f}: out of range; this protocol has folds 0-{len(folds) - 1}")
    info = dataset.describe()
    return [Cell(whole, f, info) for f in selected], folds


def read_cell(cell: Cell, out: str | Path, *, strict: bool = True) -> dict | None:
    """The finished cell's file, or None when it is not there. A cell of another spec or dataset
    under the same name is an error naming the file (`strict`), or counts as not there."""
    path = cell.path(out)
    if not path.is_file():
        return None
    try:
        return _checked_cell(path, cell)
    except MsdeError:
        if strict:
            raise
        return None


def _checked_cell(path: Path, cell: Cell) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise MsdeError(f"{path}: corrupt, not a readable cell file ({e}); delete it to run the fold again") from None
    if not isinstance(obj, dict) or obj.get("format") != CELL_FORMAT:
        raise MsdeError(f"{path}: not an msde-bench cell file; delete it to run the fold again")
    if obj.get("spec") != cell.spec.to_dict():
        raise MsdeError(f"{path}: was written by a different run spec; delete it to run the fold again")
    if obj.get("dataset", {}).get("fingerprint") != cell.dataset["fingerprint"]:
        raise MsdeError(f"{path}: the dataset changed since this fold ran; delete it to run the fold again")
    try:  # checked now, not after the remaining folds have trained
        R.check_fold(obj.get("record"), path, "record")
    except ResultError as e:
        raise MsdeError(f"{e}; delete it to run the fold again") from None
    try:
        R.check_digest(obj["record"], obj.get("record_sha256"), obj.get("msde_bench_version"), path, "its record")
    except ResultError as e:
        raise EditedCell(f"{e}; delete it to run the fold again") from None
    return obj


class EditedCell(MsdeError):
    """A cell file whose record does not match its digest: its numbers were edited. `run --resume`
    trains such a fold again (saying so); merging refuses it."""


def run_cell(cell: Cell, fold: P.Fold, dataset: PairedDataset, cache: ImageCache, out: str | Path, *,
             keep_model: bool = True, progress: RunProgress | None = None,
             console: Console | None = None, log_samples: bool = False, track: Tracking | None = None,
             checkpoints: CS.Policy | None = None) -> dict:
    """Trains one cell and writes its file (atomically); returns the cell object. `log_samples`:
    its per-image predictions too (`<run_id>/fold<k>.samples.jsonl`, written before the cell file);
    `track`: the experiment trackers it reports to (msde_bench.tracking); `checkpoints`: how its
    trainings save and resume their state inside the cell folder (msde_bench.cellstate; default:
    saved, not resumed, removed once the cell file is written). A cell that resumed says where in
    its file (`resumed`), outside the record, whose numbers equal an uninterrupted run's."""
    created = _now()
    device = torch.device(cell.spec.device)
    say = console.print if console is not None else (lambda text: None)
    saved = CS.CellCheckpoints(cell.path(out), cell.spec.to_dict(), cell.dataset["fingerprint"], cell.fold,
                               checkpoints or CS.Policy(), say)
    session = (track.cell(TrackedCell(cell.run_id, cell.fold, cell.spec.to_dict(), cell.dataset), console)
               if track is not None else None)
    try:
        rec = {**fold_record(fold, dataset.subjects),
               **run_fold(cell.spec, cache, fold, device, dataset.subjects, progress, console,
                          cell.model_path(out) if keep_model else None,
                          S.samples_path(cell.path(out)) if log_samples else None,
                          [p.name for p in dataset.pairs] if log_samples else None, session, saved,
                          trained_faces(cell.spec, dataset, fold))}
        sha, dirty = git_state()
        obj = dict(format=CELL_FORMAT, run_id=cell.run_id, spec=cell.spec.to_dict(), dataset=cell.dataset,
                   created=created, finished=_now(), msde_bench_version=__version__, git_sha=sha, git_dirty=dirty,
                   method_plugin=method_provider(cell.spec.model), env=environment(device, cell.spec.precision),
                   **({"resumed": saved.resumed} if saved.resumed else {}),
                   record=rec, record_sha256=R.record_digest(rec))
        R.write_json_atomic(cell.path(out), obj)
        saved.finish()
    except BaseException as e:  # (Ctrl-C too) the trackers hear of it; the error goes on
        if session is not None:
            session.fail(f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    if session is not None:
        session.end(rec, cell.path(out))
    return obj


def assemble(spec: RunSpec, cells: list[dict], n_folds: int) -> dict:
    """The result file of `spec` from the cell files of its selected folds (in their order)."""
    # each fold carries its cell's record digest (a cell from before digests: none)
    fold_list = [dict(c["record"], **({"record_sha256": c["record_sha256"]} if c.get("record_sha256") else {}))
                 for c in cells]
    R.check_one_start(fold_list, Path(str(spec.run_id(cells[0]["dataset"]["name"]))))
    selected = [f["fold"] for f in fold_list]
    first = cells[0]
    result = dict(
        schema=R.SCHEMA, run_id=spec.run_id(first["dataset"]["name"]),
        created=min(c["created"] for c in cells), finished=max(c["finished"] for c in cells),
        msde_bench_version=first["msde_bench_version"], git_sha=first["git_sha"], git_dirty=first["git_dirty"],
        method_plugin=first["method_plugin"], spec=spec.to_dict(), dataset=first["dataset"],
        **({"test_dataset": first["record"]["test_dataset"]} if spec.test_data else {}),
        **({"pretrained": first["record"]["pretrained"]} if "pretrained" in first["record"] else {}),
        protocol={**P.describe(spec.protocol, spec.folds), "run_folds": selected, "complete": len(selected) == n_folds,
                  **({"folds_by": first["dataset"]["folds_by"]} if "folds_by" in first["dataset"] else {})},
        env=first["env"], folds=fold_list, summary=M.summarise(fold_list),
    )
    try:  # what the leaderboard's budget note needs, so that rendering never loads a plugin
        result["budget_rules_differ"] = budget_rules_differ(spec)
    except MsdeError:  # its paradigm is not installed here (merging another machine's cells)
        pass
    try:  # the cross-view terms' share of the gradient (and a note when under the floor)
        bal = BAL.measured(tuple(getattr(paradigm_class(spec.paradigm), "cross_view_terms", ())), fold_list)
    except MsdeError:
        bal = None
    if bal is not None:
        result["balance"] = bal
    return result


def _write_result(result: dict, out: Path) -> Path:
    path = out / f"{result['run_id']}.json"
    R.validate(result, path)
    R.write_json_atomic(path, result)
    return path


def _numbers(result: dict) -> list[list]:
    """A result's per-fold numbers: what `merge` compares between a complete result and its cells'."""
    return [[f.get(k) for k in ("fold", "test_subjects", *M.FOLD_METRICS)] for f in result["folds"]]


def merge(spec: RunSpec, dataset_info: dict, out: str | Path, *, strict: bool = False,
          force: bool = False) -> tuple[dict, Path] | None:
    """Writes the complete result of the whole spec when every fold of its protocol has its cell
    under `out`; returns it, or None while a cell is missing. A cell file that is corrupt, edited
    (its record digest) or of another spec counts as missing, or with `strict` is an error naming
    it. A complete result already there whose per-fold numbers differ from the cells' is never
    replaced (an error naming it) unless `force`, and then it is kept aside as `<file>.replaced`."""
    whole = spec.whole()
    n_folds = P.describe(spec.protocol, spec.folds)["folds"]
    cells = [Cell(whole, f, dataset_info) for f in range(n_folds)]
    found = [read_cell(c, out, strict=strict) for c in cells]
    if any(c is None for c in found):
        return None
    result = assemble(whole, found, n_folds)
    path = Path(out) / f"{result['run_id']}.json"
    try:
        old = R.load(path) if path.is_file() else None
    except ResultError:
        old = None
    if old is not None and old["protocol"].get("complete") and _numbers(old) != _numbers(result):
        if not force:
            raise MsdeError(f"{path}: a complete result whose per-fold numbers differ from its cells' under "
                            f"{path.parent / result['run_id']}; not replaced (`results merge --force` replaces it "
                            "and keeps it as .replaced)")
        path.replace(path.with_name(path.name + ".replaced"))
    return result, _write_result(result, Path(out))


def merge_all(out: str | Path, force: bool = False) -> list[Path]:
    """Every complete result that the cell folders under `out` make, written; returns their paths.
    A corrupt or edited cell file is an error naming it (merge's `strict`)."""
    out = Path(out)
    written = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        cell_files = sorted(p for p in folder.glob("fold*.json") if p.stem[len("fold"):].isdigit())
        if not cell_files:  # (fold<k>.failed.json: a failed cell's marker, not a cell)
            continue
        try:  # the spec from one cell; merge (strict) checks every cell of it
            first = json.loads(cell_files[0].read_text(encoding="utf-8"))
            spec = RunSpec.from_dict(first["spec"])
        except (ValueError, OSError, KeyError, TypeError) as e:
            raise MsdeError(f"{cell_files[0]}: corrupt, not a readable cell file ({e})") from None
        merged = merge(spec, first["dataset"], out, strict=True, force=force)
        if merged is not None:
            written.append(merged[1])
    return written


# ------------------------------------------------------------------------------------------
# one run

#: the CPU-sized recipe for real faces that a long CPU run's estimate names (spec.RECIPES)
CPU_RECIPE = "real48"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def model_bytes(spec: RunSpec, num_classes: int) -> int:
    """The size of one saved fold model of `spec` (its state dict's tensors)."""
    method, _ = build_method(spec, load=False, num_classes=num_classes)
    return sum(t.numel() * t.element_size() for t in method.state_dict().values())


def _estimate(spec: RunSpec, folds: list[P.Fold], console: Console):
    """The callback (RunProgress.on_step_time) that prints the run's estimated training time, from the
    seconds per step of its first timed steps and the steps its folds will take; on a CPU, a long
    run of a GPU-sized recipe also names the CPU-sized one."""
    paradigm = build_paradigm(spec)
    steps = sum(epoch_steps(spec, paradigm, len(f.train)) * spec.epochs for f in folds)

    def show(seconds: float) -> None:
        total = seconds * steps
        text = (f"estimated training time: {_duration(total)} ({seconds:.3f} s a step, timed on the first steps; "
                f"{steps:,} steps in {len(folds)} fold{'s' if len(folds) > 1 else ''}"
                + ("; each distill fold also trains its teacher unless it is cached" if spec.paradigm == "distill"
                   else "") + ")")
        if spec.device == "cpu" and spec.recipe in ("paper", "official") and total > 30 * 60:
            text += (f". On a CPU, --recipe {CPU_RECIPE} (48 px, sized for a few CPU cores; README: \"Recipes\") "
                     "trains real faces in minutes a fold")
        console.print(text, highlight=False)

    return show


def preflight(spec: RunSpec, dataset: PairedDataset, folds: list[P.Fold], console: Console | None = None
              ) -> PairedDataset | None:
    """The checks that refuse a run before anything is written (run, sweep planning): the
    cross-dataset test set (returned, or None), the pretraining set, the nested selection's inner
    splits, the memory."""
    test_set = check_test_data(spec, dataset)
    pre = PT.check(spec, dataset)
    if pre is not None and console is not None and (near := PT.near_duplicates(spec, dataset, pre)):
        console.print(f"[yellow]warning[/]: {near}", highlight=False)
    SEL.check(spec, folds, dataset.subjects, dataset.labels, list(CLASS_NAMES))
    check_memory(spec, dataset, console)
    return test_set


def run(spec: RunSpec, dataset: PairedDataset, out_dir: str | Path, *, resume: bool = False,
        console: Console | None = None, show_progress: bool | str | None = None,
        save_models: bool | None = None, log_samples: bool = False,
        track: Tracking | None = None, checkpoint_minutes: float = CHECKPOINT_MINUTES,
        keep_checkpoints: bool = False) -> tuple[dict, Path]:
    """Runs every selected fold of a spec as cells and writes the result file; returns (result, path).

    With `resume`, finished cells are reused (a killed run continues from its last finished
    fold) and a finished result is returned as it is. `save_models` (default: when at most 10
    folds run) writes each fold's final model to `<out>/<run_id>/fold<k>.pt` for
    `msde-bench explain`. `log_samples` writes each fold's per-image predictions beside its cell
    (msde_bench.samples). A `--fold` subset also writes the whole spec's complete result once
    every fold's cell is there. `track`: the experiment trackers each cell and each written result
    are reported to (msde_bench.tracking). Each cell checkpoints its training at every epoch's end
    and every `checkpoint_minutes` within an epoch (msde_bench.cellstate); with `resume`, a killed
    cell continues from its checkpoint; the checkpoints go once the cell is written unless
    `keep_checkpoints`."""
    policy = CS.Policy(resume=resume, minutes=checkpoint_minutes, keep=keep_checkpoints)
    console = console or Console(stderr=True)
    cells, folds = cells_of(spec, dataset)
    test_set = preflight(spec, dataset, folds, console)  # these refuse before anything is written
    out_dir = check_writable(out_dir, "results folder")  # before any fold trains
    for folder in (out_dir, cells[0].path(out_dir).parent):
        remove_stale_temporaries(folder)
    final = out_dir / f"{spec.run_id(dataset.name)}.json"
    if resume and final.exists():
        result = R.load(final)
        console.print(f"run {result['run_id']} is already complete: {final}")
        return result, final
    done = {}
    for c in cells if resume else []:
        try:
            obj = read_cell(c, out_dir)
        except EditedCell as e:  # edited numbers are never trusted: the fold trains again
            console.print(f"[yellow]warning[/]: {str(e).split('; delete it')[0]}: training fold {c.fold} again")
            obj = None
        if obj is not None:
            done[c.fold] = obj
    if done:
        console.print(f"resuming {spec.run_id(dataset.name)}: folds {sorted(done)} already done")
        without = sorted(f for f, obj in done.items() if "samples_file" not in obj["record"])
        if log_samples and without:
            console.print(f"[yellow]warning[/]: folds {without} finished without --log-samples: they have no "
                          "predictions file (delete their fold<k>.json to run them again)")
    if dataset.fold_grouping() == "image" and spec.protocol != "holdout" and test_set is None:
        console.print(f"[yellow]warning[/]: {IMAGE_LEVEL_WARNING.format(name=dataset.name)}")
    if test_set is not None:
        console.print(f"cross-dataset: each fold's model is scored on {cross_test_pairs(test_set)[1]} of "
                      f"{test_set.name} ({spec.test_data}), its own test fold recorded beside it (in_domain); "
                      "test pairs whose face the fold trained on (same bytes) are left out; the same people in other "
                      "images are not matched across sets")
    if save_models is None:
        save_models = len(cells) <= 10
    cache = ImageCache(dataset, spec.image_size)
    todo = [c for c in cells if c.fold not in done]
    if spec.candidates and todo:
        console.print(SEL.cost(spec, len(todo)), highlight=False)
    if save_models and todo:  # say the size before writing it
        each = model_bytes(spec, len(cache.classes))
        console.print(f"fold models: {len(todo)} x {each / 1e6:.0f} MB will be saved under "
                      f"{Path(out_dir) / spec.run_id(dataset.name)} (for `msde-bench explain`; --no-save-models skips "
                      "them, `msde-bench results prune` removes them later)", highlight=False)
    with RunProgress(console, len(cells), spec.epochs, progress_mode(show_progress, console)) as progress:
        if todo:
            progress.on_step_time = _estimate(spec, [folds[c.fold] for c in todo], console)
        for cell in cells:
            if cell.fold in done:
                progress.end_fold()
                continue
            progress.start_fold(cell.fold)
            try:
                obj = run_cell(cell, folds[cell.fold], dataset, cache, out_dir, keep_model=save_models,
                               progress=progress, console=console, log_samples=log_samples, track=track,
                               checkpoints=policy)
            except MsdeError:
                raise
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: say what is kept
                console.print(f"interrupted in fold {cell.fold}: folds {sorted(done) or 'none'} of "
                              f"{spec.run_id(dataset.name)} are finished and kept", highlight=False)
                raise
            except OSError as e:  # the disk or a folder, not the method: name the path
                raise MsdeError(f"fold {cell.fold}: {os_problem(e, out_dir)}") from e
            except Exception as e:  # noqa: BLE001 - a plugin's bug is one line; --traceback shows where
                who = method_provider(spec.model)
                detail = (str(e).strip().splitlines() or [""])[0][:200]
                raise FoldFailed(f"fold {cell.fold}: method {spec.model} (plugin {who['plugin']} "
                                 f"{who['version']}, {who['source']}) failed: {type(e).__name__}: {detail} "
                                 "(--traceback shows where)") from e
            done[cell.fold] = obj
            progress.end_fold()
            rec = obj["record"]
            console.print(f"fold {cell.fold}: non-masked {rec['acc_non_masked']:.3f}  masked {rec['acc_masked']:.3f}  "
                          f"overall {rec['acc_overall']:.3f}  ({rec['train_seconds']:.1f} s)")
    result = assemble(spec, [done[c.fold] for c in cells], len(folds))
    path = _write_result(result, out_dir)
    if track is not None:
        track.result(result, path, console)
    if spec.run_folds and not result["protocol"]["complete"]:
        merged = merge(spec, result["dataset"], out_dir)
        if merged is not None:
            console.print(f"every fold of {merged[0]['run_id']} is done: merged into {merged[1]}")
            if track is not None:
                track.result(*merged, console)
    return result, path
