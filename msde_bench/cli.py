"""The command line: run, compare, sweep, paradigms, plugins, methods, leaderboard, results, explain,
data, bench.

Each command is thin and calls the modules that do the work. A user-facing error (bad data, bad
option) is printed as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path

import click

from msde_bench import __version__
from msde_bench.choices import CAM_METHODS, CHECKPOINT_MINUTES, CONVERT_FORMATS
from msde_bench.data.formats import format_help
from msde_bench.data.masking import LANDMARK_MODES, STYLES
from msde_bench.data.synth import VARIANTS
from msde_bench.errors import MsdeError, os_problem
from msde_bench.grid import MAX_RUNS
from msde_bench.options import QUIRK_SETS
from msde_bench.progress import PROGRESS_MODES, progress_mode
from msde_bench.protocol import PROTOCOLS
from msde_bench.results import FORMATS as RESULT_FORMATS
from msde_bench.spec import BUDGETS, OPTIMIZERS, PRECISIONS, RECIPE_NAMES, SCHEDULES, TRAINING_FIELDS


class _Group(click.Group):
    def invoke(self, ctx):
        previous = _on_sigterm(_interrupt)
        try:
            return super().invoke(ctx)
        except MsdeError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:  # the filesystem (a full disk, a folder it cannot write): one line naming the path
            if not e.filename:
                raise  # no path to name: a bug, with its traceback
            click.echo(f"error: {os_problem(e)}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo(f"\ninterrupted: {_resume_hint(ctx.invoked_subcommand)}", err=True)
            ctx.exit(130)
        finally:
            _on_sigterm(previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _on_sigterm(handler):
    """Installs `handler` for SIGTERM (a scheduler's or `kill`'s stop, handled as Ctrl-C), returns the
    one before; only in the main thread (None elsewhere)."""
    import signal
    import threading

    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def _resume_hint(command: str | None) -> str:
    """What was kept and how to go on, per command (finished folds and cells are files)."""
    line = " ".join(["msde-bench", *sys.argv[1:]])
    if command == "run":
        again = line if "--resume" in sys.argv else f"{line} --resume"
        return f"every finished fold is kept (its cell file); continue with: {again}"
    if command == "sweep":
        return f"every finished cell is kept; rerun the same command to continue (finished cells are skipped): {line}"
    if command == "compare":
        return f"finished folds and rows are kept; rerun the same command to continue: {line}"
    return "stopped"


@click.group(cls=_Group, context_settings=dict(help_option_names=["-h", "--help"], max_content_width=100))
@click.version_option(__version__, "--version", prog_name="msde-bench")
def main():
    """msde-bench: facial expression recognition under real face-mask occlusion.

    Implements the MSD-E protocol (Sola & Gera, 2023): subject-disjoint k-fold evaluation of
    paired non-masked / masked images, scored on both views.

    \b
    Example:
      msde-bench run --model resnet18 --paradigm baseline
    """


# ------------------------------------------------------------------------------------------
# run and compare: one set of options

#: run's, compare's and sweep's experiment tracking (msde_bench.tracking)
TRACK_OPTIONS = (
    click.option("--track", multiple=True, metavar="NAME",
                 help="Report each epoch's loss terms, accuracy and lr, each fold's numbers with its cell file and "
                      "each result file to an experiment tracker (repeatable): tensorboard (pip install "
                      "'msde-bench[tensorboard]'), mlflow ('msde-bench[mlflow]'; MLFLOW_TRACKING_URI, else a local "
                      "store), or one a plugin registers (`msde-bench plugins` lists them)."),
    click.option("--track-dir", type=click.Path(file_okay=False), default="tracking",
                 help="Where the trackers write: tensorboard to DIR/tensorboard (tensorboard --logdir "
                      "DIR/tensorboard), mlflow to DIR/mlruns unless MLFLOW_TRACKING_URI is set."),
)


#: the recipe's training knobs `run` and `compare` can override (spec.TRAINING_FIELDS, in that order: each a
#: RunSpec field and a grid key; None: the recipe's value)
TRAINING_OPTIONS = (
    click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
                 help="Override the recipe's optimiser (adamw: decoupled weight decay)."),
    click.option("--weight-decay", type=float, default=None, help="Override the recipe's weight decay."),
    click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
                 help="Override the recipe's learning-rate schedule: multistep, exponential, step (stepped at each "
                      "epoch's end); cosine (to 0 at the last step) or onecycle (torch's OneCycleLR), stepped every "
                      "optimiser step."),
    click.option("--warmup-epochs", type=float, default=None,
                 help="A linear warm-up of the learning rate from 1 %% over this many epochs (fractions allowed), "
                      "stepped every optimiser step; onecycle's rising part [default: the recipe's, 0: none]."),
    click.option("--augment", default=None, metavar="AUG",
                 help="Override the recipe's training augmentation: paper, none, or steps joined by + in this order: "
                      "flip, crop (pad 1/12 of the side, random crop back), affine (rotate +-10 deg, scale 0.9-1.1), "
                      "erase (random erasing, p 0.5); e.g. flip+crop+erase. Each draw is shared by a pair's views."),
    click.option("--label-smoothing", type=float, default=None,
                 help="Label smoothing of the classification cross-entropy (methods that apply it: resnet18 and "
                      "timm models, arm) [default: the recipe's, 0]."),
    click.option("--ema-decay", type=float, default=None,
                 help="Keep an exponential moving average of the weights with this decay (e.g. 0.999), updated "
                      "every step; the fold is evaluated and saved with it [default: the recipe's, 0: off]."),
    click.option("--mixup", type=float, default=None,
                 help="Mix each training batch with a permutation of itself (mixup), the weight drawn from "
                      "Beta(a, a) with this a (e.g. 0.2); both views of a pair share the partner and weight "
                      "(methods that apply it: resnet18 and timm models, arm) [default: 0, off]."),
    click.option("--cutmix", type=float, default=None,
                 help="CutMix with Beta(a, a) (e.g. 1.0): a box of the partner image pasted in; with --mixup too, "
                      "each batch one or the other (p 0.5) [default: 0, off]."),
    click.option("--tta", default=None, metavar="KINDS",
                 help="Also score each fold with test-time augmentation: flip (the image and its mirror), 10crop "
                      "(corner and centre crops of side W - W/12, 44 px at 48, and their mirrors), or flip,10crop; "
                      "recorded beside the fold's numbers as `tta`, never instead of them (clean and holdout "
                      "protocols)."),
)


def run_options(*, single: bool):
    """The options `run` (single=True) and `compare` share; `--paradigm` only for run."""
    def decorate(f):
        opts = [
            click.option("--model", default="resnet18", help="A method plugin name or any timm model name."),
            click.option("--data", default=None,
                         help="An MSD-E-layout folder, or synth:full|small|tiny for the embedded synthetic set "
                              "[default: the recipe's synthetic set, generated once into $MSDE_BENCH_HOME]."),
            click.option("--out", default="results", type=click.Path(file_okay=False),
                         help="Folder for the result files (and each fold's cell and model under <run_id>/)."),
            click.option("--recipe", type=click.Choice(RECIPE_NAMES), default=None,
                         help="paper: the reference code's setup; quick: CPU-sized (5 folds, the embedded set); "
                              "real48: CPU-sized for real faces (48 px, 10 folds); official: the method's own "
                              "published recipe [default: paper with a GPU or a --data folder, quick on a CPU with the "
                              "embedded set (no --data or synth:VARIANT)]."),
            click.option("--protocol", type=click.Choice(PROTOCOLS), default=None,
                         help="clean: seeded subject-disjoint k-fold, last epoch; faithful: the reference code's "
                              "15-ID windows with best epoch chosen on the test fold; holdout: the official "
                              "train/test split of a converted public dataset [default: holdout when the dataset "
                              "has an official split, clean otherwise]."),
            click.option("--epochs", type=int, default=None,
                         help="Override the recipe's epochs; its lr milestones scale with them (quick: 6 epochs, "
                              "lr/10 after 5; --epochs 12 drops after 10)."),
            click.option("--folds", type=int, default=None, help="Number of folds k [default: the recipe's]."),
            click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                         help="Training and evaluation precision: fp32, or bf16/fp16 autocast (fp16 on CUDA only, "
                              "with loss scaling); recorded in the result [default: bf16 on CUDA and, under the quick "
                              "recipe, on a CPU with bf16 hardware (AMX or avx512_bf16); fp32 otherwise and under "
                              "--quirks reference]."),
            click.option("--quirks", type=click.Choice(QUIRK_SETS), default="none",
                         help="reference: turn on every quirk of the MSD-E reference code at once (double softmax, "
                              "eval normalisation, 24 epochs, pooling the normalised map, distill's random-init "
                              "student), each one unless given with --opt; with --protocol faithful, --recipe paper "
                              "and --init ijba_res18_naive.pth.tar it is the reference code's experiment."),
            click.option("--budget", type=click.Choice(BUDGETS), default=None,
                         help="How paradigms are made comparable. steps: every paradigm takes the mixed baseline's "
                              "optimiser steps with --batch-size images per step (contrastive batches hold half as "
                              "many pairs; single-view paradigms pass over the pairs twice an epoch); epochs: the "
                              "reference code's equal epochs of --batch-size items (the mixed baseline trains "
                              "identically under both and records steps) [default: the recipe's; quick: steps, paper "
                              "and official: epochs]."),
            click.option("--fold", "run_folds", type=int, multiple=True,
                         help="Run only this fold (repeatable); runs of every fold merge into one result."),
            click.option("--image-size", type=int, default=None, help="Override the recipe's input size (px)."),
            click.option("--batch-size", type=int, default=None, help="Override the recipe's batch size."),
            click.option("--lr", type=float, default=None, help="Override the recipe's learning rate."),
            *TRAINING_OPTIONS,
            click.option("--seed", type=int, default=0,
                         help="Fixes splits, initialisation, data order and augmentation."),
            click.option("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."),
            click.option("--threads", type=int, default=None,
                         help="torch threads on CPU (recorded in the result; CPU numbers depend on it) [default: every "
                              "core, or OMP_NUM_THREADS]. On a machine shared with other jobs, give fewer: OpenMP "
                              "threads that wait for a busy core slow a run many times over."),
            click.option("--compile", "compile_", is_flag=True,
                         help="Run each model's forward through torch.compile (recorded in the result's env; "
                              "the first steps pay the compilation). Off by default: not yet measured on a GPU."),
            click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
                         help=("An option of the paradigm or method (repeatable), e.g. train_on=masked, alpha=2, "
                               "scn.beta=0.5; `msde-bench paradigms` and `msde-bench methods NAME` list them."
                               if single else "Applied to every row whose paradigm accepts the key (e.g. alpha=2, "
                               "lambda=10, quirks).")),
            click.option("--init", type=click.Path(dir_okay=False), default=None,
                         help="Initialise the backbone from a local checkpoint (classifier head ignored), or from "
                              "'pretrain:DATA[#KEY=VALUE&...]': the run's model trained once on another set, cached."),
            click.option("--pretrained", is_flag=True, default=None,
                         help="Ask timm for pretrained weights (needs network access)."),
            click.option("--progress", type=click.Choice(PROGRESS_MODES), default="auto",
                         help="bar: progress bars; lines: one plain line per epoch (fold, epoch, loss terms, "
                              "training accuracy, lr, seconds), for logs, CI and SLURM jobs; none; auto: bar on a "
                              "terminal, lines otherwise."),
            click.option("--no-progress", "no_progress", is_flag=True, help="The same as --progress none."),
            click.option("--test-data", default=None, metavar="DATA",
                         help="Cross-dataset: train each fold on --data's fold training pairs as usual, and score it "
                              "on this other set (its official test split, or every pair) instead of its own test "
                              "fold, which is recorded beside it (in_domain). Recorded in the spec."),
            click.option("--traceback", "show_traceback", is_flag=True,
                         help="When a fold fails inside a method (a plugin's bug), print its full traceback "
                              "instead of one line."),
            click.option("--log-samples", is_flag=True,
                         help="Write each fold's per-image predictions (pair, view, subject, label, prediction, "
                              "class probabilities) to <run_id>/fold<k>.samples.jsonl beside the result; "
                              "`msde-bench results show RUN --predictions` reads them."),
            *TRACK_OPTIONS,
        ]
        if single:
            opts.insert(1, click.option("--paradigm", default="baseline",
                                        help="Training paradigm (`msde-bench paradigms` lists them)."))
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


@contextlib.contextmanager
def _plugin_tracebacks(show: bool):
    """With --traceback, a fold that failed inside a method prints the original traceback (on
    stderr) before its one-line error; without, the one line only."""
    from msde_bench.errors import FoldFailed

    try:
        yield
    except FoldFailed as e:
        if show and e.__cause__ is not None:
            click.echo("".join(traceback.format_exception(e.__cause__)), err=True, nl=False)
        raise


def _set_threads(console, threads: int | None, compile_: bool = False) -> None:
    """--threads (or the default), and the warning when the machine's load leaves too few cores;
    --compile."""
    from msde_bench.device import compile_setting, threads_default

    compile_setting(compile_)
    busy = threads_default(threads)
    if busy:
        console.print(f"[yellow]warning[/]: {busy}")


def _header(console, spec, dev) -> None:
    from msde_bench.plugins import registry

    for warning in registry().warnings:
        console.print(f"[yellow]warning[/]: {warning}")
    console.print(f"[bold]msde-bench {__version__}[/] recipe [bold]{spec.recipe}[/] · model {spec.model} · "
                  f"paradigm {spec.paradigm} · data {spec.data}"
                  + (f" · tested on {spec.test_data}" if spec.test_data else "")
                  + f" · protocol {spec.protocol} ({spec.folds} folds) · "
                  f"device {dev} {spec.precision} · {spec.epochs} epochs ({spec.budget} budget) · "
                  f"{spec.image_size} px · "
                  f"batch {spec.batch_size} · {spec.optimizer} lr {spec.lr:g} · seed {spec.seed}")


@main.command(context_settings=dict(show_default=True))
@run_options(single=True)
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), default=None,
              help="Re-run the spec recorded in this result file; with it only --out, --resume, --checkpoint-minutes, "
                   "--keep-checkpoints, --progress, "
                   "--save-models, --log-samples, --track, --track-dir, --device, --threads, --compile and "
                   "--traceback may be given (they do not change the spec, except --device).")
@click.option("--resume", is_flag=True, help="Continue a killed run: finished folds are kept, and a fold that was "
              "training continues from its last checkpoint (saved at every epoch's end and every "
              "--checkpoint-minutes within one).")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0), default=CHECKPOINT_MINUTES,
              help="Minutes between two checkpoints of a fold's training within an epoch (0: after every step); "
                   "every epoch's end saves one too. A checkpoint is the model, optimiser, schedule, random "
                   "generators and data position, under the fold's cell folder.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep a fold's checkpoints after its cell file is written "
              "(default: removed then).")
@click.option("--save-models/--no-save-models", default=None,
              help="Save each fold's final model next to the result file, for `msde-bench explain` "
                   "[default: on when at most 10 folds run].")
@click.option("--select-on", type=click.Choice(("val",)), default=None,
              help="Nested weight selection: with --opt KEY=V1,V2,... (a number option), each fold trains every "
                   "candidate on its training side less a validation split (the set's official one, else a "
                   "subject-disjoint part of its training subjects), keeps the best on validation (accuracy over "
                   "both views), trains it on the whole training side and scores it once on its test fold. "
                   "Costs (candidates + 1) x the run.")
def run(model, paradigm, data, out, recipe, protocol, epochs, folds, precision, quirks, budget, run_folds, image_size,
        batch_size, lr, seed, device, threads, compile_, opts, init, pretrained, progress, no_progress, test_data,
        show_traceback, log_samples, track, track_dir, spec_file, resume, checkpoint_minutes, keep_checkpoints,
        save_models, select_on, **training):
    """Train and evaluate one model with one paradigm under the MSD-E protocol.

    Writes one JSON result file under --out and prints non-masked, masked and overall accuracy
    (mean ± std over folds). The same run from Python: msde_bench.api.run_benchmark.

    \b
    Examples:
      msde-bench run --model resnet18 --paradigm baseline
      msde-bench run --model resnet18 --opt train_on=non-masked --fold 0 --fold 1
      msde-bench run --data /path/to/MSD-E-root --recipe paper --protocol faithful
      msde-bench run --paradigm contrastive --opt alpha=1,10,100 --select-on val
      msde-bench run --spec results/resnet18-baseline-synth-small-89b21afd7b.json
    """
    from rich.console import Console

    from msde_bench import api

    console = Console(stderr=True)
    _set_threads(console, threads, compile_)
    if spec_file:
        ctx = click.get_current_context()
        given = [name for name in ("model", "paradigm", "data", "recipe", "protocol", "epochs", "folds", "budget",
                                   "precision", "quirks", "run_folds",
                                   "image_size", "batch_size", "lr", "seed", "opts", "init", "pretrained", "test_data",
                                   "select_on", *TRAINING_FIELDS)
                 if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]
        if given:
            raise MsdeError(f"--spec {spec_file}: cannot be combined with --{given[0].replace('_', '-')}")
        given_device = ctx.get_parameter_source("device") != click.core.ParameterSource.DEFAULT
        spec = api.spec_from_result(spec_file, device=device if given_device else None)
        dev = spec.device
        dataset = None
    else:
        spec, dataset = api.prepare_spec(model, paradigm, data=data, recipe=recipe, protocol=protocol, options=opts,
                                         device=device, init=init, epochs=epochs, folds=folds, budget=budget,
                                         precision=precision, quirks=quirks, run_folds=run_folds,
                                         image_size=image_size, batch_size=batch_size, lr=lr, seed=seed,
                                         pretrained=pretrained, test_data=test_data, select_on=select_on,
                                         **training)
        dev = spec.device
    _header(console, spec, dev)
    with _plugin_tracebacks(show_traceback):
        result, path = api.run_spec(spec, dataset, out=out, resume=resume, console=console,
                                    progress="none" if no_progress else progress,
                                    save_models=save_models, log_samples=log_samples, track=track,
                                    track_dir=track_dir, checkpoint_minutes=checkpoint_minutes,
                                    keep_checkpoints=keep_checkpoints)
    click.echo(summary_table(result))
    click.echo(f"result: {path}")
    models = [path.parent / f["model_file"] for f in result["folds"] if f.get("model_file")]
    models = [m for m in models if m.is_file()]
    if models:
        size = sum(m.stat().st_size for m in models) / 1e6
        click.echo(f"fold models (for msde-bench explain): {models[0].parent} ({len(models)} files, {size:.0f} MB; "
                   "--no-save-models skips them)")


def summary_table(result: dict) -> str:
    from tabulate import tabulate

    from msde_bench.results import summary_rows

    rows = summary_rows(result)
    return tabulate([list(r.values()) for r in rows], headers=list(rows[0]), tablefmt="github")


@main.command(context_settings=dict(show_default=True))
@run_options(single=False)
@click.option("--save-models/--no-save-models", default=False,
              help="Save every row's fold models for `msde-bench explain` (five runs of every fold: a 48 px smoke "
                   "compare wrote 1.1 GB of them; or run one row with `msde-bench run`).")
@click.option("--format", "fmt", type=click.Choice(["github", "plain", "latex"]), default="github",
              help="Table format (tabulate).")
def compare(model, data, out, recipe, protocol, epochs, folds, precision, quirks, budget, run_folds, image_size,
            batch_size, lr, seed, device, threads, compile_, opts, init, pretrained, progress, no_progress,
            test_data, show_traceback, log_samples, track, track_dir, save_models, fmt, **training):
    """Run every paradigm for one model and print the paper-style comparison table.

    Rows: baseline trained on non-masked, masked and mixed images, contrastive, distill, all with
    the same seed and folds; finished runs under --out are reused. Columns: non-masked, masked and
    overall accuracy (mean ± std over folds), mask gap, and the change of non-masked accuracy
    relative to the non-masked-only baseline. From Python: msde_bench.api.compare_benchmark.

    \b
    Example:
      msde-bench compare --model resnet18
    """
    from rich.console import Console

    from msde_bench import api
    from msde_bench import compare as C

    console = Console(stderr=True)
    _set_threads(console, threads, compile_)
    with _plugin_tracebacks(show_traceback):
        rows = api.compare_benchmark(model, data=data, recipe=recipe, protocol=protocol, options=opts, out=out,
                                     device=device, init=init, console=console,
                                     progress="none" if no_progress else progress, epochs=epochs,
                                     folds=folds, budget=budget, precision=precision, quirks=quirks,
                                     run_folds=run_folds, image_size=image_size, batch_size=batch_size,
                                     lr=lr, seed=seed, pretrained=pretrained, test_data=test_data,
                                     log_samples=log_samples, save_models=save_models, track=track,
                                     track_dir=track_dir, **training)
    click.echo(C.table(rows, fmt))
    for r in rows:
        click.echo(f"{r['title']}: {r['path']}")


@main.command(context_settings=dict(show_default=True))
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--data", default=None,
              help="The set to score on [default: the data the models were trained on, each fold model on its own "
                   "test fold]. Another set is a cross-dataset test (--cross-dataset).")
@click.option("--cross-dataset", is_flag=True,
              help="Allow --data to name another set than the models' training data: they are scored on its "
                   "official test split, or on all its pairs.")
@click.option("--model", default=None,
              help="For a plain checkpoint (a state dict of the whole model, head included): the model it is.")
@click.option("--fold", type=int, default=None, help="Only this fold's model of a result file.")
@click.option("--image-size", type=int, default=None, help="For a plain checkpoint: its input size [default: 48].")
@click.option("--out", type=click.Path(file_okay=False), default="results", help="Folder for the result file.")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or mps [default: the device the models' run used].")
@click.option("--threads", type=int, default=None, help="torch threads on CPU (as for run).")
@click.option("--log-samples", is_flag=True, help="Write the per-image predictions beside the result (as run's).")
def evaluate(target, data, cross_dataset, model, fold, image_size, out, device, threads, log_samples):
    """Score trained models without training them, and write an evaluation-only result.

    TARGET: a result file whose fold models were saved (run --save-models), one fold model
    (<run_id>/fold<k>.pt), or a plain checkpoint with --model. Without --data each fold model is
    scored on its own fold's test pairs (never on people it was trained on), which reproduces the
    run's numbers on the same machine and thread count (said per fold). The result's protocol is
    msde-evaluation: the leaderboard shows it in a table of its own, never ranked. From Python:
    msde_bench.api.evaluate_benchmark.

    \b
    Examples:
      msde-bench evaluate results/resnet18-baseline-synth-small-89b21afd7b.json
      msde-bench evaluate results/RUN.json --data ckplus:../shared/data/ckplus48 --cross-dataset
      msde-bench evaluate my_model.pt --model resnet18 --data DIR --image-size 112
    """
    from rich.console import Console

    from msde_bench import api

    console = Console(stderr=True)
    _set_threads(console, threads)
    result, path = api.evaluate_benchmark(target, data=data, model=model, fold=fold, cross_dataset=cross_dataset,
                                          device=device, out=out, log_samples=log_samples, image_size=image_size,
                                          console=console)
    click.echo(summary_table(result))
    click.echo(f"result (evaluation-only, {result['evaluation']['mode']}): {path}")


class _SweepCommand(click.Command):
    """`sweep`, whose executor flags are built from the registered executors' options (built-in and
    plugins': msde_bench.executors.base), added when the command is parsed or its help shown, so that
    the other commands never load the executors."""

    _built: tuple = (None, [])  # (the registry the flags were built from, the parameters added)

    def get_params(self, ctx):
        from msde_bench.plugins import registry

        reg = registry()
        if self._built[0] is not reg:
            for param in self._built[1]:
                self.params.remove(param)
            self._built = (reg, _executor_params(reg, {o for p in self.params for o in p.opts}))
            self.params.extend(self._built[1])
        return super().get_params(ctx)


def _executor_params(reg, taken: set[str]) -> list[click.Option]:
    """A flag per option of every registered executor (`--<executor>-<option>`; a flag that is taken
    is left out, with a warning)."""
    params = []
    for name, entry in sorted(reg.executors.items()):
        for opt in entry.obj.options:
            flag = opt.cli_flag(name)
            if flag in taken:
                click.echo(f"warning: executor {name!r}: option {opt.name!r} would take {flag}, which is taken; it "
                           "is left out of the command line", err=True)
                continue
            taken.add(flag)
            shown = opt.default is not None and opt.default is not False and not opt.multiple
            kw: dict = dict(help=opt.help + (f"  [default: {opt.default}]" if shown else ""), default=None)
            if opt.type is bool:
                kw.update(is_flag=True)
            elif opt.multiple:
                kw.update(multiple=True, metavar="KEY=VALUE", default=())
            else:
                kw.update(type=opt.type)
            params.append(click.Option([flag, f"executor__{name}__{opt.name}"], **kw))
    return params


def _executor_options(executor: str, workers: int | None, values: dict) -> dict:
    """The chosen executor's options from its flags, checked (with --workers) before anything is
    planned; a flag of another executor is an error."""
    from msde_bench.sweep import check_executor

    options = {}
    for key, value in values.items():
        _, name, opt = key.split("__", 2)
        if value is None or value == ():
            continue
        if name != executor:
            flag = next(p.opts[0] for p in click.get_current_context().command.params if p.name == key)
            raise MsdeError(f"{flag}: an option of the {name} executor, not of --executor {executor}")
        options[opt] = value
    check_executor(executor, workers, options)
    return options


@main.command(cls=_SweepCommand, context_settings=dict(show_default=True))
@click.argument("grid", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Results folder [default: the grid's `out`, else ./results].")
@click.option("--executor", default="local",
              help="Where the cells run: local (worker processes on this machine), slurm (one submitit job array, "
                   "a task per cell; pip install 'msde-bench[slurm]'), ray (a Ray task per cell; pip install "
                   "'msde-bench[ray]'), or an executor a plugin registers (`msde-bench plugins` lists them). Each "
                   "executor's own options are the --<executor>-* flags below (local's: --per-gpu, --threads).")
@click.option("--workers", type=int, default=None,
              help="Cells at once: local: worker processes [default: one per GPU (times --per-gpu), or 1 on CPU; on "
                   "CPU the cores are divided between them]; ray: Ray CPUs when it starts Ray here.")
@click.option("--compile", "compile_", is_flag=True,
              help="Run each model's forward through torch.compile in every cell (recorded in the results).")
@click.option("--dry-run", is_flag=True, help="Print the cells, which are done and which would run; run nothing.")
@click.option("--status", is_flag=True,
              help="As --dry-run, with the state each executor that submitted a cell to --out knows of it "
                   "(slurm: sacct).")
@click.option("--retry-failed", is_flag=True, help="Run only the cells that failed before.")
@click.option("--save-models/--no-save-models", default=False, help="Save each cell's final model beside it.")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0), default=CHECKPOINT_MINUTES,
              help="Minutes between two checkpoints of a cell's training within an epoch (0: after every step; every "
                   "epoch's end saves one too). A stopped cell continues from its last checkpoint when the sweep runs "
                   "again.")
@click.option("--keep-checkpoints", is_flag=True, help="Keep a cell's checkpoints after its cell file is written.")
@click.option("--log-samples", is_flag=True,
              help="Each cell that runs writes its per-image predictions beside it (as `run --log-samples`).")
@TRACK_OPTIONS[0]
@TRACK_OPTIONS[1]
@click.option("--max-runs", type=int, default=MAX_RUNS,
              help="Refuse a grid that expands to more runs (counted before anything is planned).")
@click.option("--leaderboard", "update_leaderboard", is_flag=True,
              help="Regenerate the committed leaderboard (leaderboard/README.md) from the results folder at the end.")
@click.option("--progress", type=click.Choice(PROGRESS_MODES), default="auto",
              help="bar: a progress bar over cells; lines: one plain line per finished cell (status, seconds, "
                   "cells done), for logs and CI; none; auto: bar on a terminal, lines otherwise (as `run`).")
@click.option("--no-progress", "no_progress", is_flag=True, help="The same as --progress none.")
def sweep(grid, out, executor, workers, compile_, dry_run, status, retry_failed, save_models, checkpoint_minutes,
          keep_checkpoints, log_samples, track, track_dir, max_runs,
          update_leaderboard, progress, no_progress, **executor_flags):
    """Run a grid of runs (a TOML file) as cells on an executor, and merge their results.

    GRID keys are the long options of `msde-bench run` (model, paradigm, seed, data, recipe,
    protocol, epochs, folds, budget, precision, quirks, image_size, batch_size, lr, device,
    opt = {KEY = VALUE}, ...): a scalar is fixed, a list is an axis, axes are expanded as a
    product; [[exclude]] tables drop matching
    runs, [[include]] tables add runs. Each (run, fold) is a cell; finished cells are skipped, a
    failed cell never stops the others and is reported with its log; a run's result file is
    written when all its cells are done, with the same numbers as one `msde-bench run`. From
    Python: msde_bench.api.run_sweep.

    \b
    Examples:
      msde-bench sweep grid.toml --dry-run
      msde-bench sweep grid.toml --workers 2
      msde-bench sweep grid.toml --executor slurm --slurm-partition gpu --slurm-gpus-per-task 1
      msde-bench sweep grid.toml --status
      msde-bench sweep leaderboard/grid.toml --leaderboard
    """
    from rich.console import Console
    from rich.progress import Progress
    from tabulate import tabulate

    from msde_bench import api
    from msde_bench.device import threads_default
    from msde_bench.leaderboard import DEFAULT_OUTPUT

    console = Console(stderr=True)
    threads_default()
    options = _executor_options(executor, workers, executor_flags)
    plan = api.plan_sweep(grid, out=out, save_models=save_models, compile=compile_, log_samples=log_samples,
                          max_runs=max_runs, track=track, track_dir=track_dir, checkpoint_minutes=checkpoint_minutes,
                          keep_checkpoints=keep_checkpoints)
    counts = plan.counts()
    console.print(f"[bold]msde-bench {__version__}[/] sweep {grid}: {len(plan.planned)} runs, {sum(counts.values())} "
                  f"cells ({counts['done']} done, {counts['todo']} to run, {counts['failed']} failed before) -> "
                  f"{plan.out}")
    from msde_bench.selection import cost as selection_cost

    for p in plan.planned:  # a run with candidate weights trains each of its cells (candidates + 1) times
        todo = sum(1 for state in p.state.values() if state != "done")
        if p.spec.candidates and todo:
            console.print(f"{p.run.label()}: {selection_cost(p.spec, todo)}", highlight=False)
    if dry_run or status:
        rows = plan.cells(with_states=status)
        headers = [k.replace("_", " ") for k in rows[0]] if rows else []
        click.echo(tabulate([list(r.values()) for r in rows], headers=headers, tablefmt="github", disable_numparse=True))
        return
    mode = progress_mode("none" if no_progress else progress, console)
    total = counts["failed"] if retry_failed else counts["todo"]
    with Progress(console=console, transient=True, disable=mode != "bar") as bar:
        task_id = bar.add_task("cells", total=total)
        finished, written = [], []

        def on_done(task, rep):
            bar.advance(task_id)
            finished.append(task)
            result = rep["result"]  # the run's result file when this cell completed it (run_sweep)
            if result is not None:
                written.append(result)
            if mode == "lines":
                console.print(f"cell {task.run_id} fold {task.fold}: {rep['status']} ({rep['seconds']:.0f} s; "
                              f"{len(finished)}/{total} cells)" + (f" -> result {result}" if result is not None else ""),
                              highlight=False)

        try:
            report = api.run_sweep(plan, executor=executor, workers=workers, retry_failed=retry_failed,
                                   leaderboard=DEFAULT_OUTPUT if update_leaderboard else None, on_done=on_done,
                                   **options)
        except KeyboardInterrupt:
            console.print(f"{len(finished)} cells finished in this sweep"
                          + (": " + ", ".join(f"{t.run_id} fold {t.fold}" for t in finished) if finished else ""),
                          highlight=False)
            for path in written:
                console.print(f"result written: {path}", highlight=False)
            raise
    click.echo(tabulate(sorted(report.counts().items()), headers=["cells", "count"], tablefmt="github"))
    if report.failed:
        click.echo(tabulate([[r["run"], r["fold"], r["status"], r["error"], r["log"]] for r in report.failed],
                            headers=["run", "fold", "status", "error", "log"], tablefmt="github", disable_numparse=True))
        if not retry_failed:
            click.echo("rerun them with --retry-failed", err=True)
    for path in report.merged:
        click.echo(f"result: {path}")
    for run_id, why in report.refused:
        click.echo(f"not merged: {run_id}: {why}", err=True)
    if report.leaderboard is not None:
        ok, message = report.leaderboard
        click.echo(message, err=not ok)
    if report.failed or report.refused:
        sys.exit(1)


@main.command()
def paradigms():
    """List the training paradigms and their --opt options, with defaults, and what each weight
    does to its term's share of the gradient.

    The reference-code quirk options (quirk_*) are accepted by every paradigm.

    \b
    Example:
      msde-bench paradigms
    """
    from tabulate import tabulate

    from msde_bench.options import QUIRKS
    from msde_bench.plugins import registry

    rows = []
    for name, entry in sorted(registry().paradigms.items()):
        for i, (key, opt) in enumerate(sorted(entry.obj.options.items())):
            rows.append([name if i == 0 else "", key, repr(opt.default), opt.help])
        if not entry.obj.options:
            rows.append([name, "", "", ""])
    for key, opt in sorted(QUIRKS.items()):
        rows.append(["(all)", key, repr(opt.default), opt.help])
    click.echo(tabulate(rows, headers=["paradigm", "option", "default", "meaning"], tablefmt="github",
                        disable_numparse=True))
    helps = [(name, entry.obj.weights_help) for name, entry in sorted(registry().paradigms.items())
             if getattr(entry.obj, "weights_help", "")]
    if helps:
        click.echo("\nWhat the weights do to the term balance (each run records every loss part's share of the "
                   "gradient in train_history as grad_share.<part>):")
        for name, text in helps:
            click.echo(f"- {name}: {text}")


@main.command()
@click.option("--traceback", "show_traceback", is_flag=True, help="Print the full traceback of each plugin that failed.")
def plugins(show_traceback):
    """List plugins: name, version, source, distribution, what each registers, and load errors.

    Sources, in order of precedence: built-in (inside msde_bench), in-tree (plugins/ shipped with
    msde-bench) and installed (any package declaring the entry-point group msde_bench); a name
    taken by an earlier source is refused to a later one. A plugin that fails to load is listed
    with its error and skipped; MSDE_BENCH_DISABLE_PLUGINS (comma list of plugin names, or * for
    every plugin outside msde_bench) turns plugins off.

    \b
    Example:
      msde-bench plugins
    """
    from tabulate import tabulate

    from msde_bench.plugins import registry

    reg = registry()
    rows = []
    for info in reg.plugins.values():
        status = "disabled" if info.disabled else (f"error: {info.error}" if info.error else "ok")
        rows.append([info.name, info.version, info.source, info.distribution, ", ".join(info.registers), status])
    click.echo(tabulate(rows, headers=["plugin", "version", "source", "distribution", "registers", "status"],
                        tablefmt="github", disable_numparse=True))
    for warning in reg.warnings:
        click.echo(f"warning: {warning}", err=True)
    if show_traceback:
        for info in reg.plugins.values():
            if info.traceback:
                click.echo(f"\n{info.name}:\n{info.traceback}", err=True)


@main.command()
@click.argument("name", required=False)
def methods(name):
    """List the FER methods that --model accepts, with their paper; with NAME, that method's options.

    Any timm model name is accepted too, as a plain backbone with a linear head.

    \b
    Examples:
      msde-bench methods
      msde-bench methods scn
    """
    from tabulate import tabulate

    from msde_bench.plugins import registry

    if name is not None:
        from msde_bench.factory import method_entry, method_options, method_provider, official_options, require_model
        from msde_bench.options import method_values

        require_model(name)
        entry = method_entry(name)
        prov = method_provider(name)
        click.echo(f"{name}: {entry.description if entry else 'plain timm backbone + linear head'}")
        if entry is not None and entry.paper:
            click.echo(f"paper: {entry.paper}")
        click.echo(f"plugin: {prov['plugin']} {prov['version']} ({prov['source']}, {prov['distribution']})")
        official = method_values(name, official_options(name))
        rows = [[key, repr(opt.default), repr(official[key]) if key in official else "", opt.help]
                for key, opt in sorted(method_options(name).items())]
        click.echo(tabulate(rows, headers=["option", "default", "official recipe", "meaning"], tablefmt="github",
                            disable_numparse=True) if rows else "(no options)")
        return
    rows = [[name, e.description, e.paper, e.plugin] for name, e in sorted(registry().methods.items())]
    rows.append(["<any timm model>", "plain backbone + global average pooling + linear head "
                 "(e.g. resnet18, resnet50, convnext_tiny)", "", "built-in"])
    click.echo(tabulate(rows, headers=["method", "description", "paper", "plugin"], tablefmt="github",
                        disable_numparse=True))


@main.command(context_settings=dict(show_default=True))
@click.option("--results", "results_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Folder of result files (repeatable) [default: leaderboard/results].")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="The markdown file to write, or - for standard output [default: leaderboard/README.md; with "
                   "--results, standard output, so that your own runs never overwrite the committed leaderboard].")
@click.option("--check", is_flag=True, help="Do not write: exit 1 with a diff summary if OUTPUT is out of date.")
@click.option("--strict", is_flag=True, help="Fail on a malformed result file instead of skipping it.")
@click.option("--notes", type=click.Path(dir_okay=False), default=None,
              help="A TOML file of notes shown next to the rows they match ([[note]] text = ..., model = ..., "
                   "paradigm = ..., any spec field or options.KEY) [default: leaderboard/notes.toml if it exists].")
@click.option("--allow-legacy", is_flag=True,
              help="Also rank result files without record digests (written before 0.6.0 and not sealed with "
                   "`msde-bench results seal`), whose edits nothing would notice.")
def leaderboard(results_dirs, output, check, strict, notes, allow_legacy):
    """Render the result files into the markdown leaderboard.

    One table per dataset and protocol; rows ranked by masked accuracy, best values in bold, rows
    not significantly different from the best marked. Malformed files are reported and skipped
    (or fail the command under --strict); so are files without record digests, unless
    --allow-legacy.

    \b
    Examples:
      msde-bench leaderboard
      msde-bench leaderboard --check
    """
    from msde_bench.leaderboard import DEFAULT_NOTES, DEFAULT_OUTPUT, DEFAULT_RESULTS, render_dirs, write_or_check

    dirs = [Path(d) for d in results_dirs] or [DEFAULT_RESULTS]
    if not results_dirs and not DEFAULT_RESULTS.is_dir():
        raise MsdeError(f"{DEFAULT_RESULTS}: results folder not found; without --results this command renders the "
                        "committed leaderboard of a msde-bench checkout (run it at the checkout's top level), or give "
                        "--results DIR (and --output FILE, or - for standard output)")
    if notes is not None and not Path(notes).is_file():
        raise MsdeError(f"--notes {notes}: file not found")
    notes_path = Path(notes) if notes else DEFAULT_NOTES
    if output is None:
        output = "-" if results_dirs else str(DEFAULT_OUTPUT)
    if output == "-":
        if check:
            raise MsdeError("--check compares a file: give --output FILE")
        text, _ = render_dirs(dirs, strict, notes_path, allow_legacy)
        click.echo(text, nl=False)
        return
    ok, message = write_or_check(dirs, Path(output), check, strict, notes_path, allow_legacy)
    click.echo(message, err=not ok)
    if not ok:
        sys.exit(1)


@main.group(cls=_Group, invoke_without_command=True, context_settings=dict(show_default=True))
@click.option("--results", "results_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Folder of result files (repeatable) [default: ./results].")
@click.option("--format", "fmt", type=click.Choice(RESULT_FORMATS), default="table")
@click.pass_context
def results(ctx, results_dirs, fmt):
    """List result files: run id, model, paradigm, dataset, protocol, folds done, accuracies, date.

    \b
    Examples:
      msde-bench results --results results
      msde-bench results show resnet18-baseline-synth-small-89b21afd7b --format csv
    """
    ctx.obj = dict(dirs=[Path(d) for d in results_dirs] or [Path("results")], fmt=fmt)
    if ctx.invoked_subcommand is not None:
        return
    from msde_bench import results as R
    from msde_bench.board import misnamed

    found, problems = R.load_all(ctx.obj["dirs"])
    click.echo(R.format_rows(R.list_rows(found), fmt), nl=False)
    for path, problem in problems:
        click.echo(f"skipped {path}: {problem}", err=True)
    for path, note in misnamed(found):
        click.echo(f"note {path}: {note}", err=True)


def _result_dirs(out: str | None) -> list[Path]:
    """OUT, or the --results folders of the `results` group; each must exist."""
    dirs = [Path(out)] if out else click.get_current_context().obj["dirs"]
    for d in dirs:
        if not d.is_dir():
            raise MsdeError(f"{d}: results folder not found")
    return dirs


@results.command("merge")
@click.argument("out", type=click.Path(file_okay=False), required=False)
@click.option("--force", is_flag=True,
              help="Replace a complete result whose per-fold numbers differ from its cells' (kept as .replaced).")
def results_merge(out, force):
    """Write the complete result of every run whose folds all finished as separate cells.

    OUT is a results folder [default: the --results folders]; each `<run_id>/fold<k>.json` cell
    under it counts, whichever `msde-bench run --fold k` (or machine) wrote it. `msde-bench run
    --fold` merges by itself once the last fold of a spec is done. A corrupt or edited cell (its
    record digest) is an error naming it; a complete result whose numbers differ from its cells'
    is never replaced without --force.

    \b
    Example:
      msde-bench results merge results
    """
    from msde_bench.runner import merge_all

    for d in _result_dirs(out):
        written = merge_all(d, force=force)
        for path in written:
            click.echo(f"merged: {path}")
        if not written:
            click.echo(f"{d}: no run with every fold's cell present")


@results.command("prune")
@click.argument("out", type=click.Path(file_okay=False), required=False)
@click.option("--dry-run", is_flag=True, help="List the files and their size; remove nothing.")
@click.option("--teachers", is_flag=True,
              help="Also empty the distill teacher cache ($MSDE_BENCH_HOME/teachers; teachers are trained again "
                   "when a distill run needs them).")
def results_prune(out, dry_run, teachers):
    """Remove the fold models and kept checkpoints of finished runs (their result files and numbers stay).

    OUT is a results folder [default: the --results folders]. `msde-bench explain` and `evaluate`
    need a run's models: run it again with --save-models for that.

    \b
    Example:
      msde-bench results prune results --dry-run
    """
    from msde_bench import results as R
    from msde_bench.home import cache_home

    files = R.prunable_models(_result_dirs(out))
    if teachers:
        folder = cache_home() / "teachers"
        files += [(p, p.stat().st_size) for p in sorted(folder.glob("*.pt"))] if folder.is_dir() else []
    for path, size in files:
        if not dry_run:
            path.unlink()
        click.echo(f"{'would remove' if dry_run else 'removed'} {path} ({size / 1e6:.1f} MB)")
    click.echo(f"{len(files)} files, {sum(s for _, s in files) / 1e6:.1f} MB{' (dry run)' if dry_run else ' freed'}")


@results.command("upgrade")
@click.argument("out", type=click.Path(file_okay=False), required=False)
def results_upgrade(out):
    """Rewrite result files in the current schema and spec form (numbers untouched).

    Older files are read as they are anyway; rewriting them (older schema upgraded, options added
    since the run filled in at their defaults, which keep the old behaviour) gives each the run id
    its spec has now, so that `run --resume`, `compare` and `sweep` find and reuse them. OUT is a
    results folder [default: the --results folders].

    \b
    Example:
      msde-bench results upgrade leaderboard/results
    """
    from msde_bench import results as R
    from msde_bench.spec_build import complete_spec

    for d in _result_dirs(out):
        changed = R.upgrade_folder(d, complete_spec)
        for old, new in changed:
            click.echo(f"{old.name} -> {new.name}")
        click.echo(f"{d}: {len(changed)} result files upgraded to {R.SCHEMA} and today's options")


@results.command("seal")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
def results_seal(paths):
    """Add record digests to result files from before 0.6.0 (numbers untouched).

    A file without digests is ranked by the leaderboard only under --allow-legacy, because nothing
    would notice an edit. Seal the files you trust (e.g. committed ones, whose history version
    control keeps): each fold gets its record digest and the file records `sealed` (when, by which
    msde-bench). PATHS are result files or folders [default: the --results folders].

    \b
    Example:
      msde-bench results seal leaderboard/results
    """
    from datetime import datetime, timezone

    from msde_bench import __version__
    from msde_bench import results as R

    files = [f for p in (paths or _result_dirs(None)) for f in
             (sorted(Path(p).glob("*.json")) if Path(p).is_dir() else [Path(p)]) if not f.name.endswith(".partial.json")]
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sealed = 0
    for f in files:
        if R.has_digests(R.load_json(f)):
            continue
        later = R.seal_file(f, when, __version__)
        sealed += 1
        click.echo(f"sealed {f}" + (f" (it also holds {', '.join(later)}, which versions before digests did not "
                                    "write)" if later else ""))
    click.echo(f"{sealed} of {len(files)} result files sealed")


@results.command("show")
@click.argument("run")
@click.option("--predictions", is_flag=True,
              help="Print the per-image predictions of a run made with --log-samples instead (checked against "
                   "the file digests the result records), and the metrics recomputed from them.")
@click.option("--fold", "only_fold", type=int, default=None, help="With --predictions: only this fold.")
@click.option("--format", "fmt", type=click.Choice(RESULT_FORMATS), default=None,
              help="As `results --format` (either place) [default: table].")
@click.pass_context
def results_show(ctx, run, predictions, only_fold, fmt):
    """Print one run's per-fold numbers (RUN: a run id, a prefix of one, or a result file).

    \b
    Examples:
      msde-bench results show resnet18-baseline-synth-small --format markdown
      msde-bench results show resnet18-baseline-synth-small --predictions --fold 0 --format csv
    """
    from msde_bench import results as R

    result = R.find(run, ctx.obj["dirs"])
    fmt = fmt or ctx.obj["fmt"]
    if predictions:
        rows, checks = R.prediction_rows(result, only_fold)
        click.echo(R.format_rows(rows, fmt), nl=False)
        if fmt == "table":
            for line in checks:
                click.echo(line)
        return
    if fmt == "table":
        click.echo(f"{result['run_id']}  ({result['spec']['model']} · {result['spec']['paradigm']} · "
                   f"{result['dataset']['name']} · {result['protocol']['split']})")
    click.echo(R.format_rows(R.fold_rows(result), fmt), nl=False)
    if fmt == "table":
        from msde_bench.balance import describe

        line = describe(result)
        if line:
            click.echo(line)
        for line in R.selection_lines(result):
            click.echo(line)


@main.command(context_settings=dict(show_default=True))
@click.argument("result", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--fold", type=int, default=None, help="Which fold [default: the first the run finished].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the figures [default: <run_id>-explain/fold<K> next to the result].")
@click.option("--n", "n_pairs", type=int, default=14, help="Test pairs in the Grad-CAM grid (balanced over classes).")
@click.option("--cam", type=click.Choice(CAM_METHODS), default="gradcam", help="CAM method (pytorch-grad-cam).")
@click.option("--layer", default=None,
              help="Grad-CAM on this module (e.g. trunk.layer3) instead of the method's declared layer; finer "
                   "maps at small input sizes (ResNet's layer4 is 2 x 2 at 48 px).")
@click.option("--tsne-train", is_flag=True, help="Add the training fold's embeddings to the t-SNE.")
@click.option("--compare", is_flag=True, help="Two results: the same pairs side by side (e.g. baseline vs contrastive).")
def explain(result, fold, out, n_pairs, cam, layer, tsne_train, compare):
    """Figures of what a run's model looks at: Grad-CAM pairs, t-SNE, confusion, attention shift.

    Needs the fold models that `msde-bench run` saves by default (--save-models). Writes PNGs and
    a report.md embedding them.

    \b
    Examples:
      msde-bench explain results/resnet18-baseline-synth-small-89b21afd7b.json --fold 0
      msde-bench explain --compare results/A.json results/B.json
    """
    from msde_bench.explain import explain as run_explain

    if compare != (len(result) == 2) or len(result) > 2:
        raise MsdeError("give one RESULT, or --compare with two")
    if n_pairs < 1:
        raise MsdeError(f"--n {n_pairs}: must be at least 1")
    path = run_explain(result[0], out, fold, n_pairs, cam, tsne_train, result[1] if compare else None, layer,
                       say=lambda text: click.echo(text, err=True))
    click.echo(f"wrote {path / 'report.md'}")


# ------------------------------------------------------------------------------------------
# data


@main.group(cls=_Group)
def data():
    """Make, validate and describe paired datasets.

    \b
    Example:
      msde-bench data synth ./synth-full --variant full
    """


@data.command("synth", context_settings=dict(show_default=True))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--variant", type=click.Choice(tuple(VARIANTS)), default="full",
              help="full mirrors MSD-E (142 subjects, 980 pairs, 112 px); small is the quick recipe's "
                   "(120 subjects, 840 pairs, 64 px); tiny is for tests (8 subjects, 32 px).")
@click.option("--seed", type=int, default=0, help="The same seed gives byte-identical files.")
@click.option("--subjects", type=int, default=None, help="Override the variant's number of subjects.")
@click.option("--image-size", type=int, default=None, help="Override the variant's image size (px).")
def data_synth(out, variant, seed, subjects, image_size):
    """Write the embedded synthetic paired dataset into OUT, in the MSD-E layout.

    \b
    Example:
      msde-bench data synth ./synth-small --variant small --seed 0
    """
    from dataclasses import replace

    from msde_bench.data.synth import variant_config, write_dataset

    cfg = variant_config(variant, seed)
    if subjects is not None or image_size is not None:
        cfg = replace(cfg, subjects=subjects or cfg.subjects, image_size=image_size or cfg.image_size,
                      drop_pairs=0 if subjects else cfg.drop_pairs, variant="custom")
    path = write_dataset(cfg, out, progress=_item_progress("drawing pairs"))
    click.echo(f"wrote {cfg.subjects} subjects to {path}")


@data.command("convert", context_settings=dict(show_default=True))
@click.option("--format", "fmt", type=click.Choice(CONVERT_FORMATS), required=True, help=format_help())
@click.argument("src", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, help="Fixes each image's mask style, colour and fit.")
@click.option("--mask-style", type=click.Choice(STYLES), default="random")
@click.option("--landmarks", type=click.Choice(LANDMARK_MODES), default="auto",
              help="Mask placement from dlib's 68 landmarks (the `landmarks` extra) when installed, template "
                   "placement otherwise; on: require the landmarks; off: template only.")
@click.option("--subject-pattern", default=None, metavar="REGEX",
              help="imagefolder: a regular expression searched in each file's path (relative to SRC, with /) "
                   "whose named group (?P<subject>...) is the person (and (?P<sequence>...) the recording); a file "
                   "it does not match is skipped. Without it every image is its own subject and folds are "
                   "image-level (README: patterns for lab sets in class folders; --format kdef, jaffe, rafd, oulu read "
                   "those sets as distributed).")
@click.option("--map", "class_map", multiple=True, metavar="NAME=CLASS|drop",
              help="imagefolder, ckplus: map a class folder to one of the seven classes, or drop it (repeatable; "
                   "folders outside the seven classes are dropped and counted without it, e.g. CK+'s contempt).")
@click.option("--views", default=None, metavar="V1,V2",
              help="kdef, rafd, oulu: the views to keep (kdef: S, HL, HR, FL, FR; rafd: camera angles 090, 045, "
                   "135, 000, 180; oulu: VL/Strong ... NI/Dark); the others are counted as dropped [default: the "
                   "frontal view: S, 090, VL/Strong].")
@click.option("--allow-skips", is_flag=True, help="Exit 0 even if some items were skipped.")
def data_convert(fmt, src, out, seed, mask_style, landmarks, subject_pattern, class_map, views, allow_skips):
    """Turn a public FER dataset into masked / non-masked pairs in the MSD-E layout.

    Each face is copied unchanged to OUT/MSD-E and drawn with a synthetic mask into OUT/MSD-ME;
    OUT/meta.json records the format, label mapping, official split of every file and the masking.
    Bad items are skipped (OUT/skipped.txt) and make the command exit 1 unless --allow-skips; a
    re-run resumes, keeping the pairs already written.

    \b
    Example:
      msde-bench data convert --format rafdb ~/data/RAF-DB ./rafdb-masked
    """
    from rich.console import Console
    from rich.progress import Progress

    from msde_bench.data.convert import convert, parse_class_map

    console = Console(stderr=True)
    mapping = parse_class_map(class_map)
    lines = _item_progress("converting") if not console.is_terminal else None
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("converting", total=None)

        def progress(n, total):
            bar.update(task, completed=n, total=total)
            if lines is not None:
                lines(n, total)

        report = convert(fmt, src, out, seed=seed, mask_style=mask_style, landmarks=landmarks, progress=progress,
                         subject_pattern=subject_pattern, class_map=mapping, views=views)
    pairs = report.written + report.kept
    placements = {k.split(":", 1)[1]: v for k, v in report.masks.items() if k.startswith("placement:")}
    click.echo(f"{pairs} pairs in {out} ({report.written} written, {report.kept} kept from an earlier run); "
               f"mask placement: {', '.join(f'{k} {v}' for k, v in sorted(placements.items())) or 'none new'}")
    click.echo(f"subjects: {report.subjects}")
    click.echo("classes before mapping: " + ", ".join(f"{k} {v}" for k, v in sorted(report.source_classes.items())))
    click.echo("classes after mapping: " + ", ".join(f"{k} {v}" for k, v in report.classes.most_common()))
    if report.dropped:
        click.echo("dropped (outside the seven classes, or --map NAME=drop): " +
                   ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items())))
    if report.skipped:
        click.echo(f"skipped {len(report.skipped)} items (listed in {Path(out) / 'skipped.txt'}):", err=True)
        for line in report.skipped[:10]:
            click.echo(f"  {line}", err=True)
        if not allow_skips:
            sys.exit(1)


def _item_progress(what: str, every: float = 30.0):
    """A `progress(done, total)` callback that prints a plain line on stderr at most every `every`
    seconds (and at the end): for the commands that make files (data synth, data convert) in a log."""
    import time

    said = [time.perf_counter()]

    def progress(done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - said[0] >= every or (total and done == total):
            said[0] = now
            click.echo(f"{what}: {done}" + (f"/{total}" if total else ""), err=True)

    return progress


@data.command("validate")
@click.argument("root", type=click.Path())
def data_validate(root):
    """Check an MSD-E-layout folder: names, partners, pair list, every image decodes.

    Exits 0 only when the dataset is sound; otherwise prints the first problem (file and
    problem) and exits 2.

    \b
    Example:
      msde-bench data validate /path/to/MSD-E-root
    """
    from msde_bench.data.msde import read_msde

    ds = read_msde(root, check_images=True)
    click.echo(f"ok: {len(ds)} pairs, {len(set(ds.subjects.tolist()))} subjects (from {ds.subjects_how()}), "
               f"fingerprint {ds.fingerprint()}")


@data.command("stats")
@click.argument("root", type=click.Path())
def data_stats(root):
    """Print pairs per class, subjects, pairs per subject and image sizes.

    \b
    Example:
      msde-bench data stats /path/to/MSD-E-root
    """
    from tabulate import tabulate

    from msde_bench.data.msde import read_msde, stats

    st = stats(read_msde(root))
    pps = st["pairs_per_subject"]
    click.echo(tabulate([[k, v] for k, v in (("pairs", st["n_pairs"]), ("images", st["n_images"]),
                                              ("subjects", st["n_subjects"]),
                                              ("subjects from", st["subjects_from"]),
                                              ("pairs per subject (min / mean / max)",
                                               f"{pps['min']} / {pps['mean']:.2f} / {pps['max']}"),
                                              *((("masks placed by", ", ".join(
                                                  f"{k} {v}" for k, v in st["mask_placement"].items())),
                                                 ("mask drawing", f"v{st['mask_drawing']}"))
                                                if st["mask_placement"] else ()))],
                        headers=["", "count"], tablefmt="github"))
    click.echo()
    click.echo(tabulate(list(st["per_class"].items()), headers=["expression", "pairs"], tablefmt="github"))
    click.echo()
    click.echo(tabulate(list(st["image_sizes"].items()), headers=["image size", "images"], tablefmt="github"))


# ------------------------------------------------------------------------------------------
# bench


@main.command(context_settings=dict(show_default=True))
@click.option("--model", default="resnet18", help="Model to time.")
@click.option("--paradigm", default="baseline",
              help="Paradigm whose training step is timed; the bare loop puts the same images through the model.")
@click.option("--batch-size", type=int, default=32)
@click.option("--image-size", type=int, default=48)
@click.option("--steps", type=int, default=15, help="Timed steps per round (after 3 warm-up steps).")
@click.option("--rounds", type=int, default=7, help="Rounds; bare and harness alternate, medians are compared.")
@click.option("--device", default="auto")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Autocast precision of both loops [default: what `run` uses on this device with the "
                   "embedded set: bf16 on CUDA and on a CPU with bf16 hardware, fp32 elsewhere].")
def bench(model, paradigm, batch_size, image_size, steps, rounds, device, precision):
    """Measure the harness's overhead and the data pipeline's speed.

    Prints seconds per training step inside the harness against a bare PyTorch loop on the same
    model, batch and tensors (target: at most 1.05x), and images per second of the data pipeline
    alone against the model's training rate (target: at least 5x).

    \b
    Example:
      msde-bench bench --model resnet18 --batch-size 32 --image-size 48
    """
    from msde_bench.bench import run_bench
    from msde_bench.device import resolve_device, threads_default
    from msde_bench.factory import paradigm_class, require_model

    threads_default()
    require_model(model)
    paradigm_class(paradigm)
    report = run_bench(model, paradigm, batch_size, image_size, steps, resolve_device(device), rounds, precision)
    for line in report["lines"]:
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
