"""Fit and evaluate: device, optimiser and schedule, progress, result files, resume."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from msde_bench import NUM_CLASSES, __version__
from msde_bench import metrics as M
from msde_bench import protocol as P
from msde_bench import results as R
from msde_bench.data.pairs import ImageCache, PairedDataset
from msde_bench.data.transforms import PairedAugment
from msde_bench.errors import MsdeError
from msde_bench.models.backbones import load_init
from msde_bench.models.base import DoubleSoftmax, Method
from msde_bench.paradigms.base import Batch, Paradigm
from msde_bench.spec import QUIRKS, Option, RunSpec, parse_options


# ------------------------------------------------------------------------------------------
# building blocks


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MsdeError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MsdeError(f"--device {name}: CUDA is not available on this machine")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MsdeError(f"--device {name}: MPS is not available on this machine")
    return dev


def default_protocol(dataset: PairedDataset) -> str:
    """`holdout` for a dataset with an official train/test split, `clean` otherwise."""
    return "holdout" if dataset.official_splits() is not None else "clean"


def with_protocol(spec: RunSpec, dataset: PairedDataset, split: str | None = None) -> RunSpec:
    """The spec under protocol `split` (default: `default_protocol`); holdout has one fold."""
    split = split or default_protocol(dataset)
    return spec.with_(split=split, folds=1 if split == "holdout" else spec.folds)


def default_recipe(data: str | None, device: torch.device) -> str:
    """`paper` with a GPU or with --data, `quick` otherwise (the CPU preset on the embedded set)."""
    return "paper" if (data is not None or device.type != "cpu") else "quick"


def derive_seed(seed: int, *parts) -> int:
    """A seed for one part of a run (a fold, a teacher), independent of the order parts run in."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def paradigm_class(name: str) -> type[Paradigm]:
    from msde_bench.plugins import registry

    table = registry().paradigms
    if name not in table:
        raise MsdeError(f"unknown paradigm {name!r}; available: {', '.join(sorted(table))}")
    return table[name].obj


def method_entry(model: str):
    from msde_bench.plugins import registry

    return registry().methods.get(model)


def method_options(model: str) -> dict[str, Option]:
    entry = method_entry(model)
    if entry is None:
        return {}
    return dict(entry.extra.get("options") or getattr(entry.obj, "options", None) or {})


def official_recipe(model: str) -> dict:
    entry = method_entry(model)
    if entry is None:
        return {}
    return dict(entry.extra.get("official_recipe") or getattr(entry.obj, "official_recipe", None) or {})


def official_options(model: str) -> dict:
    """The method's option values under `--recipe official` (e.g. SCAN's 0.01 trunk lr scale), keyed
    `<model>.<option>` as specs store them; an explicit --opt still wins."""
    entry = method_entry(model)
    if entry is None:
        return {}
    raw = entry.extra.get("official_options") or getattr(entry.obj, "official_options", None) or {}
    valid = method_options(model)
    unknown = set(raw) - set(valid)
    if unknown:
        raise MsdeError(f"model {model!r}: official_options names unknown options {sorted(unknown)}")
    return {f"{model}.{k}": v for k, v in raw.items()}


def valid_options(model: str, paradigm: str) -> dict[str, Option]:
    """The --opt keys a run accepts, in their canonical (stored) form: the reference-code quirks
    and the paradigm's options by their names, the method's as `<model>.<name>` (so that a method's
    `beta` never clashes with a paradigm's)."""
    opts = dict(QUIRKS)
    for k, o in paradigm_class(paradigm).options.items():
        if k in opts:
            raise MsdeError(f"option {k!r} of paradigm {paradigm!r} clashes with a quirk option")
        opts[k] = o
    for k, o in method_options(model).items():
        opts[f"{model}.{k}"] = o
    return opts


def option_aliases(model: str, valid: dict[str, Option]) -> dict[str, str]:
    """Unqualified method option names that are unambiguous: `--opt margin_1=...` for `scn.margin_1`."""
    prefix = f"{model}."
    return {k[len(prefix):]: k for k in valid if k.startswith(prefix) and k[len(prefix):] not in valid}


def qualify(pairs, aliases: dict[str, str]) -> list[str]:
    out = []
    for item in pairs:
        key, sep, value = item.partition("=")
        out.append(f"{aliases.get(key.strip(), key.strip())}{sep}{value}")
    return out


def check_options(model: str, paradigm: str, pairs, recipe: str | None = None) -> dict:
    """Every valid option with its value (defaults filled in): the canonical form a spec stores.
    Under `recipe="official"` the method's official option values replace the defaults."""
    valid = valid_options(model, paradigm)
    pairs = qualify(pairs, option_aliases(model, valid))
    values = parse_options(pairs, valid)
    if recipe == "official":
        given = {p.split("=", 1)[0].strip() for p in pairs}
        values.update({k: v for k, v in official_options(model).items() if k not in given})
    return values


def build_method(spec: RunSpec, *, load: bool = True) -> tuple[Method, dict | None]:
    """The model of a spec (a registered method, or a plain timm backbone + linear head), with
    `--init` loaded unless `load` is False; returns it and the init report."""
    from msde_bench.models.plain import PlainClassifier
    from msde_bench.plugins import registry

    opts = dict(spec.options)
    entry = registry().methods.get(spec.model)
    if entry is not None:
        prefix = f"{spec.model}."
        mine = {k[len(prefix):]: v for k, v in opts.items() if k.startswith(prefix)}
        method = entry.obj(num_classes=NUM_CLASSES, pretrained=spec.pretrained, options=mine)
    else:
        method = PlainClassifier(spec.model, NUM_CLASSES, pretrained=spec.pretrained)
    report = None
    if spec.init and load:
        report = load_init(method.trunk if hasattr(method, "trunk") else method, spec.init)
    if opts.get("quirk_double_softmax"):
        method = DoubleSoftmax(method)
    return method, report


def build_paradigm(spec: RunSpec) -> Paradigm:
    cls = paradigm_class(spec.paradigm)
    opts = parse_options([], dict(cls.options))
    opts.update({k: v for k, v in spec.options if k in cls.options})
    return cls(opts)


def channels_last(device: torch.device) -> bool:
    """channels_last is faster for convolutions on CUDA and on CPU (oneDNN); not used on MPS."""
    return device.type in ("cuda", "cpu")


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------------------
# training


def make_optimizer(spec: RunSpec, groups: list[dict]) -> torch.optim.Optimizer:
    """Adam or SGD over the method's parameter groups; a group's `lr_scale` multiplies the lr."""
    groups = [dict(g) for g in groups]
    for g in groups:
        g["lr"] = spec.lr * g.pop("lr_scale", 1.0)
    if spec.optimizer == "adam":
        return torch.optim.Adam(groups, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    raise MsdeError(f"unknown optimizer {spec.optimizer!r}; use adam or sgd")


def make_scheduler(spec: RunSpec, optimizer: torch.optim.Optimizer):
    """Stepped once per epoch."""
    sched = torch.optim.lr_scheduler
    if spec.schedule == "multistep":
        return sched.MultiStepLR(optimizer, list(spec.milestones), spec.gamma)
    if spec.schedule == "exponential":
        return sched.ExponentialLR(optimizer, spec.gamma)
    if spec.schedule == "step":
        return sched.StepLR(optimizer, max(1, spec.step_size), spec.gamma)
    raise MsdeError(f"unknown schedule {spec.schedule!r}; use multistep, exponential or step")


@dataclass
class FoldContext:
    spec: RunSpec
    cache: ImageCache
    train_idx: np.ndarray
    device: torch.device
    seed: int
    fold: int


class Trainer:
    """Trains one method with one paradigm on one fold's training pairs."""

    def __init__(self, spec: RunSpec, method: Method, paradigm: Paradigm, device: torch.device):
        self.spec = spec
        self.method = method.to(device)
        if channels_last(device):
            self.method = self.method.to(memory_format=torch.channels_last)
        self.paradigm = paradigm
        self.device = device
        self.augment = PairedAugment(spec.augment)
        self.optimizer = make_optimizer(spec, self.method.param_groups(spec.lr))
        self.scheduler = make_scheduler(spec, self.optimizer)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device):
            out = self.paradigm.training_step(self.method, batch)
        out["loss"].backward()
        self.optimizer.step()
        self.method.after_step()
        return out

    def batches(self, cache: ImageCache, train_idx: np.ndarray, gen: torch.Generator, epoch: int = 0):
        """One epoch of batches: a seeded shuffle of the items (pairs, or pair views for
        paradigms that visit each view separately), each augmented with one draw per pair."""
        vpp = self.paradigm.views_per_pair
        idx = torch.as_tensor(train_idx)
        n_items = len(idx) * vpp
        perm = torch.randperm(n_items, generator=gen)
        bs = self.spec.batch_size
        for start in range(0, n_items, bs):
            items = perm[start:start + bs]
            if len(items) < 2:  # batch norm cannot train on one sample
                continue
            pairs = idx[items // vpp]
            nm, m = self.augment(cache.non_masked[pairs], cache.masked[pairs], gen, self.device)
            if channels_last(self.device):
                nm, m = nm.contiguous(memory_format=torch.channels_last), m.contiguous(memory_format=torch.channels_last)
            view = (items % vpp).to(self.device) if vpp > 1 else None
            yield Batch(nm, m, cache.labels[pairs].to(self.device), view, pairs.to(self.device), epoch)

    def fit(self, cache: ImageCache, train_idx: np.ndarray, gen: torch.Generator,
            on_epoch: Callable[[int], None] | None = None, progress: "RunProgress | None" = None) -> dict:
        self.method.train()
        n_images = 0
        t0 = time.perf_counter()
        vpp = self.paradigm.views_per_pair
        steps = -(-len(train_idx) * vpp // self.spec.batch_size)
        for epoch in range(self.spec.epochs):
            self.method.on_epoch_start(epoch)
            if progress:
                progress.start_epoch(epoch, steps)
            loss_sum = torch.zeros((), device=self.device)
            correct = torch.zeros((), device=self.device)
            seen = 0
            for i, batch in enumerate(self.batches(cache, train_idx, gen, epoch)):
                out = self.train_step(batch)
                n = out["targets"].shape[0]
                seen += n
                loss_sum += out["loss"].detach() * n
                correct += (out["logits"].detach().argmax(1) == out["targets"]).sum()
                n_images += batch.y.shape[0] * self.paradigm.images_per_item
                if progress and (i % 5 == 4 or i == steps - 1):
                    progress.batch(i + 1, float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1))
            self.scheduler.step()
            if progress:
                progress.end_epoch(epoch, float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1))
            if on_epoch is not None:
                on_epoch(epoch)
                self.method.train()
        seconds = time.perf_counter() - t0
        return dict(train_seconds=seconds, train_images_per_second=n_images / seconds if seconds else 0.0)


@torch.no_grad()
def predict(method: Method, cache: ImageCache, idx: np.ndarray, device: torch.device,
            batch_size: int = 128, augment: PairedAugment | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions for both views of the given pairs: (labels, pred non-masked, pred masked)."""
    augment = augment or PairedAugment("none")
    method.eval()
    preds_nm, preds_m = [], []
    idx_t = torch.as_tensor(idx)
    for start in range(0, len(idx_t), batch_size):
        sel = idx_t[start:start + batch_size]
        for src, dst in ((cache.non_masked, preds_nm), (cache.masked, preds_m)):
            x = augment.eval(src[sel], device)
            if channels_last(device):
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                dst.append(method(x).logits.argmax(1).cpu())
    return (cache.labels[idx_t].numpy(), torch.cat(preds_nm).numpy(), torch.cat(preds_m).numpy())


def eval_augment(spec: RunSpec) -> PairedAugment:
    """Evaluation preprocessing: ImageNet mean/std as in training, or the reference's 0.5/0.5."""
    if spec.option("quirk_eval_normalisation", False):
        return PairedAugment("none", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return PairedAugment("none")


def evaluate(method: Method, cache: ImageCache, idx: np.ndarray, device: torch.device, spec: RunSpec) -> dict:
    bs = max(2 * spec.batch_size, 64)
    return M.fold_metrics(*predict(method, cache, idx, device, bs, eval_augment(spec)))


# ------------------------------------------------------------------------------------------
# progress


class RunProgress:
    """rich progress bars for fold, epoch and batch, with running loss and accuracy."""

    def __init__(self, console: Console, n_folds: int, epochs: int, enabled: bool):
        self.console = console
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=True,
            disable=not enabled,
        )
        self.folds = self.progress.add_task("folds", total=n_folds, info="")
        self.epochs = self.progress.add_task("epochs", total=epochs, info="")
        self.steps = self.progress.add_task("batches", total=1, info="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_fold(self, fold: int) -> None:
        self.progress.update(self.folds, description=f"fold {fold}")
        self.progress.reset(self.epochs)

    def end_fold(self) -> None:
        self.progress.advance(self.folds)

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.progress.reset(self.steps, total=steps)
        self.progress.update(self.epochs, description=f"epoch {epoch + 1}")

    def batch(self, done: int, loss: float, acc: float) -> None:
        self.progress.update(self.steps, completed=done, info=f"loss {loss:.3f} acc {acc:.3f}")

    def end_epoch(self, epoch: int, loss: float, acc: float) -> None:
        self.progress.update(self.epochs, advance=1, info=f"loss {loss:.3f} acc {acc:.3f}")


# ------------------------------------------------------------------------------------------
# one run


def _git_sha() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    import sklearn
    import timm

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return dict(python=platform.python_version(), torch=torch.__version__, timm=timm.__version__,
                numpy=np.__version__, sklearn=sklearn.__version__, platform=platform.platform(),
                device=str(device), device_name=name, threads=torch.get_num_threads())


def fold_record(fold: P.Fold, subjects: np.ndarray) -> dict:
    return dict(fold=fold.index, test_subjects=list(fold.test_subjects), n_train_pairs=int(len(fold.train)),
                train_subjects=sorted(set(subjects[fold.train].tolist())))


def run_fold(spec: RunSpec, cache: ImageCache, fold: P.Fold, device: torch.device, subjects: np.ndarray,
             progress: RunProgress | None = None, console: Console | None = None,
             save_to: Path | None = None) -> dict:
    """Trains and evaluates one fold; its result depends only on (spec, fold), never on which
    folds ran before, which is what makes --resume give the same numbers. With `save_to`, the
    final model is written there (with the spec, to rebuild it)."""
    seed = derive_seed(spec.seed, "fold", fold.index)
    paradigm = build_paradigm(spec)
    paradigm.prepare(dict(spec=spec, cache=cache, train_idx=fold.train, test_idx=fold.test, subjects=subjects,
                          device=device, seed=seed, fold=fold.index, console=console))
    torch.manual_seed(seed)
    method, init_report = build_method(spec, load=not paradigm.skip_init())
    gen = torch.Generator().manual_seed(seed)
    trainer = Trainer(spec, method, paradigm, device)
    history: list[dict] = []
    best: dict = {}

    def on_epoch(epoch: int) -> None:  # faithful protocol: pick the best epoch on the test fold
        m = evaluate(trainer.method, cache, fold.test, device, spec)
        history.append(dict(epoch=epoch + 1, acc_non_masked=m["acc_non_masked"], acc_masked=m["acc_masked"],
                            acc_overall=m["acc_overall"]))
        if not best or m["acc_overall"] > best["metrics"]["acc_overall"]:
            best.update(metrics=m, epoch=epoch + 1)

    selection = P.describe(spec.split, spec.folds)["selection"]
    timing = trainer.fit(cache, fold.train, gen, on_epoch if selection == "best-on-test" else None, progress)
    if selection == "best-on-test":
        metrics, selected = best["metrics"], best["epoch"]
    else:
        metrics, selected = evaluate(trainer.method, cache, fold.test, device, spec), spec.epochs
    rec = dict(**metrics, **timing, selected_epoch=selected,
               n_params=sum(p.numel() for p in trainer.method.parameters()))
    if history:
        rec["history"] = history
    if paradigm.report():
        rec["paradigm"] = paradigm.report()
    if init_report:
        rec["init"] = dict(loaded=init_report["loaded"], missing=len(init_report["missing"]),
                           unexpected=len(init_report["unexpected"]))
    if save_to is not None:
        from msde_bench.explain import save_model

        save_model(save_to, trainer.method, spec, fold.index, fold.test_subjects)
        rec["model_file"] = f"{save_to.parent.name}/{save_to.name}"
    return rec


def run(spec: RunSpec, dataset: PairedDataset, out_dir: str | Path, *, resume: bool = False,
        console: Console | None = None, show_progress: bool | None = None,
        save_models: bool | None = None) -> tuple[dict, Path]:
    """Runs every selected fold of a spec and writes the result file; returns (result, path).

    After each fold the finished folds are written to `<run_id>.partial.json` (atomically); with
    `resume` a killed run continues from there. The result file is written once, at the end.
    `save_models` (default: when at most 10 folds run) writes each fold's final model to
    `<out>/<run_id>/fold<k>.pt` for `msde-bench explain`.
    """
    console = console or Console(stderr=True)
    out_dir = Path(out_dir)
    device = torch.device(spec.device)
    subjects, labels = dataset.subjects, dataset.labels
    folds = P.make_folds(spec.split, subjects, labels, spec.folds, spec.seed, dataset.official_splits())
    selected = list(spec.run_folds) or list(range(len(folds)))
    for f in selected:
        if not 0 <= f < len(folds):
            raise MsdeError(f"--fold {f}: out of range; this protocol has folds 0-{len(folds) - 1}")
    ds_info = dataset.describe()
    run_id = spec.run_id(dataset.name)
    final = out_dir / f"{run_id}.json"
    partial = out_dir / f"{run_id}.partial.json"
    done: dict[int, dict] = {}
    if resume and final.exists():
        result = R.load(final)
        console.print(f"run {run_id} is already complete: {final}")
        return result, final
    if resume and partial.exists():
        state = _load_partial(partial, spec, ds_info)
        done = {f["fold"]: f for f in state["folds"]}
        console.print(f"resuming {run_id}: folds {sorted(done)} already done")
    if save_models is None:
        save_models = len(selected) <= 10
    created = _now()
    cache = ImageCache(dataset, spec.image_size)
    show = console.is_terminal if show_progress is None else show_progress
    with RunProgress(console, len(selected), spec.epochs, show) as progress:
        for f in selected:
            if f in done:
                progress.end_fold()
                continue
            fold = folds[f]
            progress.start_fold(f)
            save_to = out_dir / run_id / f"fold{f}.pt" if save_models else None
            rec = {**fold_record(fold, subjects),
                   **run_fold(spec, cache, fold, device, subjects, progress, console, save_to)}
            done[f] = rec
            progress.end_fold()
            console.print(f"fold {f}: non-masked {rec['acc_non_masked']:.3f}  masked {rec['acc_masked']:.3f}  "
                          f"overall {rec['acc_overall']:.3f}  ({rec['train_seconds']:.1f} s)")
            R.write_json_atomic(partial, dict(spec=spec.to_dict(), dataset=ds_info, folds=list(done.values())))
    fold_list = [done[f] for f in selected]
    result = dict(
        schema=R.SCHEMA, run_id=run_id, created=created, finished=_now(), msde_bench_version=__version__,
        git_sha=_git_sha(), spec=spec.to_dict(), dataset=ds_info,
        protocol={**P.describe(spec.split, spec.folds), "run_folds": selected,
                  "complete": len(selected) == len(folds)},
        env=environment(device), folds=fold_list, summary=M.summarise(fold_list),
    )
    R.validate(result, final)
    R.write_json_atomic(final, result)
    if partial.exists():
        partial.unlink()
    return result, final


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _load_partial(path: Path, spec: RunSpec, ds_info: dict) -> dict:
    import json

    try:
        state = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise MsdeError(f"{path}: cannot resume from this file ({e}); delete it to start again") from None
    if state.get("spec") != spec.to_dict():
        raise MsdeError(f"{path}: was written by a different run spec; delete it to start again")
    if state.get("dataset", {}).get("fingerprint") != ds_info["fingerprint"]:
        raise MsdeError(f"{path}: the dataset changed since this run started; delete it to start again")
    return state


def threads_default() -> None:
    """Use every core for intra-op parallelism unless the user set OMP/torch threads."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
