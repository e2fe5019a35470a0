"""The public Python API: everything a plugin needs, and the benchmark behind the CLI.

A method plugin needs only this module (and msde_bench.testing for its tests):

    from msde_bench.api import BackboneMethod, LossState, Option, Output, hookimpl

Running from Python, as `msde-bench run`, `msde-bench compare` and `msde-bench evaluate` do:

    from msde_bench.api import run_benchmark
    result, path = run_benchmark("resnet18", "contrastive", data="synth:tiny", epochs=1)

A grid of runs on an executor, as `msde-bench sweep` does:

    from msde_bench.api import run_sweep
    report = run_sweep("leaderboard/grid.toml", workers=2, threads=1)

An executor plugin subclasses Executor (msde_bench.executors.base: the contract) and registers it
with the `msde_bench_register_executors` hook; an experiment tracker (`--track NAME`) subclasses
Tracker (msde_bench.trackers.base) and registers it with `msde_bench_register_trackers`.

The unit of work, for executors that fan a grid out: a Cell is (whole spec, fold);
`cells_of(spec, dataset)` lists a spec's cells and folds, `run_cell` trains one and writes its file,
`read_cell` reads a finished one back, `merge(spec, ...)` / `merge_all(out)` write the complete
result once every cell of a spec is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from msde_bench import CLASS_NAMES, NUM_CLASSES, __version__, factory, runner
from msde_bench import compare as _compare
from msde_bench import evaluation as _evaluation
from msde_bench import results as _results
from msde_bench import spec_build as _build
from msde_bench import sweep as _sweep
from msde_bench.choices import CHECKPOINT_MINUTES
from msde_bench.data.msde import read_msde
from msde_bench.data.pairs import ImageCache, Pair, PairedDataset
from msde_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from msde_bench.device import resolve_device
from msde_bench.errors import DataError, MsdeError
from msde_bench.executors.base import Executor, ExecutorOption, Task, collect
from msde_bench.grid import MAX_RUNS
from msde_bench.hookspecs import hookimpl
from msde_bench.models.backbones import create_trunk
from msde_bench.models.base import BackboneMethod, LossState, Method, Output, cross_entropy_terms
from msde_bench.options import Option, positive
from msde_bench.paradigms.base import Batch, FoldContext, Paradigm
from msde_bench.runner import Cell, cells_of, merge, merge_all, read_cell, run_cell
from msde_bench.spec import RunSpec
from msde_bench.spec_build import build_spec
from msde_bench.trackers.base import TrackedCell, Tracker
from msde_bench.tracking import Tracking

#: the plugin API's version (this module and msde_bench.testing): its minor version moves when a name
#: is added or deprecated. A name is removed only one minor version after a release that announced
#: it (CHANGELOG.md) and warned with a DeprecationWarning when used (CONTRIBUTING: "The plugin API")
API_VERSION = "0.12"

__all__ = [
    "API_VERSION", "BackboneMethod", "Batch", "build_spec", "Cell", "cells_of", "CLASS_NAMES", "collect",
    "compare_benchmark", "create_trunk", "cross_entropy_terms", "DataError", "evaluate_benchmark", "Executor",
    "ExecutorOption", "FoldContext", "hookimpl", "ImageCache", "IMAGENET_MEAN", "IMAGENET_STD", "LossState", "merge",
    "merge_all", "Method", "MsdeError", "NUM_CLASSES", "Option", "Output", "Pair", "PairedDataset", "Paradigm",
    "plan_sweep", "positive", "prepare_spec", "read_cell", "read_msde", "run_benchmark", "run_cell", "run_spec",
    "run_sweep", "RunSpec", "spec_from_result", "Task", "TrackedCell", "Tracker",
]


def prepare_spec(model: str = "resnet18", paradigm: str = "baseline", *, data: str | None = None,
                 recipe: str | None = None, protocol: str | None = None, options=(), device: str = "auto",
                 init: str | None = None, quirks: str = "none", **overrides: Any) -> tuple[RunSpec, PairedDataset]:
    """The spec `msde-bench run` would build from these arguments, and its dataset.

    `options` are `--opt` strings ("alpha=2") or a {key: value} mapping; `quirks="reference"`
    turns every reference-code quirk on (spec_build.reference_quirks); `overrides` are the RunSpec
    fields the CLI can set (epochs, folds, budget, precision, run_folds, image_size, batch_size, lr,
    seed, pretrained); None means the recipe's value (precision: device.default_precision, bf16
    on CUDA and under the quick recipe on a CPU with bf16 hardware, fp32 elsewhere and under the
    reference quirks)."""
    spec = build_spec(model, paradigm, data=data, recipe=recipe, options=options, device=device, init=init,
                      quirks=quirks, **overrides)
    dataset = factory.load_dataset(spec.data, progress=_data_progress(Console(stderr=True), spec.data))
    return _build.with_protocol(spec, dataset, protocol, overrides.get("folds")), dataset


def spec_from_result(path: str | Path, *, device: str | None = None) -> RunSpec:
    """The spec a result file recorded, to run it again (`msde-bench run --spec FILE`); on `device`
    when given (else the device it recorded, which must exist here)."""
    spec = RunSpec.from_dict(_results.load(path)["spec"])
    return spec.with_(device=str(resolve_device(device or spec.device)))


def run_spec(spec: RunSpec, dataset: PairedDataset | None = None, *, out: str | Path = "results",
             resume: bool = False, console: Console | None = None, progress: bool | str | None = None,
             save_models: bool | None = None, log_samples: bool = False, track: Sequence[str] = (),
             track_dir: str | Path | None = None, checkpoint_minutes: float = CHECKPOINT_MINUTES,
             keep_checkpoints: bool = False) -> tuple[dict, Path]:
    """Runs a ready spec (e.g. one read back from a result file); returns (result, path).
    `log_samples`: each fold also writes its per-image predictions (msde_bench.samples); `track`:
    the experiment trackers (`--track`, e.g. ["tensorboard", "mlflow"]) it reports to, writing under
    `track_dir` (default ./tracking). Each cell checkpoints its training at every epoch's end and
    every `checkpoint_minutes` within an epoch; `resume` continues a killed cell from there;
    `keep_checkpoints` leaves the files once the cell is written (`--checkpoint-minutes`,
    `--keep-checkpoints`)."""
    tracking = Tracking.of(track, track_dir)  # an unknown tracker or a missing package: before any data loads
    dataset = dataset or factory.load_dataset(spec.data)
    return runner.run(spec, dataset, out, resume=resume, console=console, show_progress=progress,
                      save_models=save_models, log_samples=log_samples, track=tracking,
                      checkpoint_minutes=checkpoint_minutes, keep_checkpoints=keep_checkpoints)


def run_benchmark(model: str = "resnet18", paradigm: str = "baseline", *, data: str | None = None,
                  recipe: str | None = None, protocol: str | None = None, options=(), out: str | Path = "results",
                  device: str = "auto", init: str | None = None, resume: bool = False, console: Console | None = None,
                  progress: bool | str | None = False, save_models: bool | None = None,
                  log_samples: bool = False, track: Sequence[str] = (), track_dir: str | Path | None = None,
                  **overrides: Any) -> tuple[dict, Path]:
    """One model with one paradigm under the MSD-E protocol, exactly as `msde-bench run`; returns
    (result, path of the result file). `log_samples`, `track`, `track_dir`: as `--log-samples`,
    `--track`, `--track-dir`."""
    Tracking.of(track, track_dir)  # checked before the data loads
    spec, dataset = prepare_spec(model, paradigm, data=data, recipe=recipe, protocol=protocol, options=options,
                                 device=device, init=init, **overrides)
    return run_spec(spec, dataset, out=out, resume=resume, console=console, progress=progress,
                    save_models=save_models, log_samples=log_samples, track=track, track_dir=track_dir)


def compare_benchmark(model: str = "resnet18", *, data: str | None = None, recipe: str | None = None,
                      protocol: str | None = None, options=(), out: str | Path = "results", device: str = "auto",
                      init: str | None = None, console: Console | None = None, progress: bool | str | None = False,
                      quirks: str = "none", log_samples: bool = False, save_models: bool = False,
                      track: Sequence[str] = (), track_dir: str | Path | None = None,
                      **overrides: Any) -> list[dict]:
    """Every paradigm row of `msde-bench compare` for one model (finished runs under `out` are
    reused); returns [{title, result, path}] in row order. `log_samples`, `track`, `track_dir`: as
    `--log-samples`, `--track`, `--track-dir`; `save_models`: save every row's fold models (off:
    five runs' worth of them)."""
    tracking = Tracking.of(track, track_dir)
    options, dev, recipe, overrides = _build.settings(options, device, data, recipe, init, overrides, quirks)
    user_opts = _build.check_compare_options(model, options, recipe)
    specs = _build.compare_specs(model, recipe, user_opts, quirks=quirks, data=data, **overrides)
    console = console or Console(stderr=True)
    dataset = factory.load_dataset(specs[0][1].data, progress=_data_progress(console, specs[0][1].data))
    specs = [(title, _build.with_protocol(s, dataset, protocol, overrides.get("folds"))) for title, s in specs]
    first = specs[0][1]
    console.print(f"[bold]msde-bench {__version__}[/] compare · recipe [bold]{recipe}[/] · model {model} · data "
                  f"{first.data} · protocol {first.protocol} ({first.folds} folds) · {first.budget} budget · "
                  f"{first.precision} · seed {first.seed} · device {dev}")
    return _compare.run_all(specs, dataset, out, console, progress, log_samples, save_models, tracking)


def evaluate_benchmark(target: str | Path, *, data: str | None = None, model: str | None = None,
                       fold: int | None = None, cross_dataset: bool = False, device: str | None = None,
                       out: str | Path = "results", log_samples: bool = False, image_size: int | None = None,
                       console: Console | None = None) -> tuple[dict, Path]:
    """Scores trained models without training, as `msde-bench evaluate` (msde_bench.evaluation):
    `target` is a result file whose fold models were saved, one fold model, or a plain checkpoint
    with `model`. Returns (the evaluation-only result, its path)."""
    return _evaluation.evaluate_models(target, data=data, model=model, fold=fold, cross_dataset=cross_dataset,
                                       device=device, out=out, log_samples=log_samples, image_size=image_size,
                                       console=console)


def plan_sweep(grid: str | Path, *, out: str | Path | None = None, save_models: bool = False, compile: bool = False,
               log_samples: bool = False, max_runs: int = MAX_RUNS, track: Sequence[str] = (),
               track_dir: str | Path | None = None, checkpoint_minutes: float = CHECKPOINT_MINUTES,
               keep_checkpoints: bool = False) -> _sweep.SweepPlan:
    """The cells of a grid file (`msde-bench sweep GRID --dry-run`): every run resolved to its
    spec (a bad entry is an error naming it, before anything runs), each cell done, to run or
    failed before under `out` (default: the grid's `out`, else ./results). `track`, `track_dir`:
    the experiment trackers every cell that runs, and every merged result, reports to;
    `checkpoint_minutes`, `keep_checkpoints`: how each cell checkpoints its training (a stopped
    cell continues from its checkpoint)."""
    return _sweep.plan_sweep(grid, out, keep_models=save_models, compile=compile, log_samples=log_samples,
                             max_runs=max_runs, track=Tracking.of(track, track_dir),
                             checkpoint_minutes=checkpoint_minutes, keep_checkpoints=keep_checkpoints)


def run_sweep(grid: str | Path | _sweep.SweepPlan, *, out: str | Path | None = None, executor: str = "local",
              workers: int | None = None, retry_failed: bool = False, save_models: bool = False,
              compile: bool = False, log_samples: bool = False, max_runs: int = MAX_RUNS,
              leaderboard: str | Path | None = None, on_done=None, track: Sequence[str] = (),
              track_dir: str | Path | None = None, **options: Any) -> _sweep.SweepReport:
    """A grid of runs as cells on an executor, as `msde-bench sweep` (lm-eval's simple_evaluate
    pattern): plans `grid` (a file, or a plan_sweep result), runs the cells to run (with
    `retry_failed`, only those that failed before) on the executor registered as `executor`,
    `options` being that executor's (e.g. threads=1 for local, partition="gpu" for slurm:
    `msde-bench sweep --help` lists them), merges every run whose cells are all done, and with
    `leaderboard` (a markdown file) regenerates it from the results folder. `on_done(task, report)`
    is called as each cell finishes, after the merge of a run whose last cell it was:
    `report["result"]` is then that run's result file (else None). `track`, `track_dir`: as
    plan_sweep's (a plan keeps its own).
    Returns a SweepReport (a row per cell, the merged files)."""
    plan = grid if isinstance(grid, _sweep.SweepPlan) else plan_sweep(
        grid, out=out, save_models=save_models, compile=compile, log_samples=log_samples, max_runs=max_runs,
        track=track, track_dir=track_dir)
    return _sweep.run_planned(plan, executor=executor, workers=workers, retry_failed=retry_failed, on_done=on_done,
                              leaderboard=Path(leaderboard) if leaderboard is not None else None, **options)


def _data_progress(console: Console, data: str):
    """The loader's progress callback: one line when a set is made for the cache (done 0: a
    conversion starts; done 1 of a synthetic set: its generation)."""
    def cb(done: int, total: int) -> None:
        if done == 0:
            console.print(f"converting {data} into the cache (once; reused while its files and settings stay the "
                          "same) ...")
        elif done == 1 and data.startswith("synth"):
            console.print(f"generating the synthetic dataset ({total} pairs) into the cache ...")

    return cb
