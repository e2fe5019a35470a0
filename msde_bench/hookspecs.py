"""The plugin contract (pluggy, registrar style).

The core calls each hook once per plugin with one keyword argument, `register`; the plugin calls
`register(...)` once per thing it adds. Names must be letters, digits, `-` and `_`. Precedence,
duplicates and load errors are handled in one place, msde_bench.plugins.

A plugin module implements any of these hooks with `@hookimpl` (from msde_bench.api) and is
declared as an entry point of the group `msde_bench` in its package metadata.
"""

import pluggy

hookspec = pluggy.HookspecMarker("msde_bench")
hookimpl = pluggy.HookimplMarker("msde_bench")


@hookspec
def msde_bench_register_methods(register):
    """Register FER methods (what `--model NAME` trains).

    :param register: ``register(name: str, cls: type[Method], *, paper: str | None = None,
        description: str | None = None) -> None``. ``paper`` and ``description`` default to the
        class attributes of the same names. A name already taken by a built-in or in-tree
        method, or a timm model name, is refused (the plugin is then skipped with that error).

    The core builds the method of a run as ``cls(num_classes=K, pretrained=spec.pretrained,
    options=dict)``, ``K`` the number of classes the dataset has (7 for MSD-E and the synthetic set;
    6 for CK+ without neutral: its ``Batch.y`` are then 0-5, positions in the dataset's sorted
    labels), ``options`` holding the method's own ``--opt`` values by their bare names
    with defaults filled in (``cls.options``: ``{name: Option}``), and wraps it in nothing else
    (except ``DoubleSoftmax`` under ``quirk_double_softmax``). ``cls`` must subclass Method.
    """


@hookspec
def msde_bench_register_paradigms(register):
    """Register training paradigms (what `--paradigm NAME` trains with).

    :param register: ``register(name: str, cls: type[Paradigm], *, paper: str | None = None,
        description: str | None = None) -> None``; ``paper`` and ``description`` default to
        the class attributes.

    The core builds the paradigm of a fold as ``cls(options)``, ``options`` the paradigm's own
    ``--opt`` values (``cls.options``) with defaults filled in, calls ``prepare(ctx: FoldContext)``
    once per fold, then ``training_step(method, batch: Batch) -> dict`` once per optimiser step.
    """


@hookspec
def msde_bench_register_datasets(register):
    """Register dataset loaders (what `--data NAME:ARG` reads).

    :param register: ``register(name: str, loader: Callable[..., PairedDataset], *,
        paper: str | None = None, description: str | None = None) -> None``.

    For ``--data NAME`` or ``--data NAME:ARG`` (when no such path exists) the core calls
    ``loader(data: str, progress=callback)`` with the whole ``--data`` string; ``callback(done:
    int, total: int)`` may be called while the loader generates or converts files. It returns a
    PairedDataset. Anything else given to ``--data`` is read as an MSD-E-layout folder.
    """


@hookspec
def msde_bench_register_executors(register):
    """Register sweep executors (what `msde-bench sweep --executor NAME` runs cells on).

    :param register: ``register(name: str, cls: type[Executor], *, paper: str | None = None,
        description: str | None = None) -> None``; ``description`` defaults to the class
        attribute. ``cls`` must subclass ``msde_bench.api.Executor``; its ``options``
        (``ExecutorOption``) become ``--NAME-OPTION`` flags of ``msde-bench sweep`` and keywords of
        ``api.run_sweep``.

    The core builds the executor as ``cls()``, calls ``check()`` before anything is submitted,
    then ``run(tasks, execute, workers=N | None, on_done=callback, **options)`` once per sweep.
    ``run`` must call ``execute(task)`` (picklable, module level) exactly once per task in any
    process or machine, report every task (``collect`` turns a lost worker into that cell's
    failure), divide the threads of a machine between the cells it runs there, and return
    ``[(task, report)]``. msde_bench.executors.base has the whole contract.
    """


@hookspec
def msde_bench_register_trackers(register):
    """Register experiment trackers (what `--track NAME` of run, compare and sweep reports to).

    :param register: ``register(name: str, cls: type[Tracker], *, paper: str | None = None,
        description: str | None = None) -> None``; ``description`` defaults to the class
        attribute. ``cls`` must subclass ``msde_bench.api.Tracker``.

    Before anything trains the core calls ``cls.check()``; then, in the process that trains a cell,
    ``tracker = cls(folder)`` (``folder``: ``--track-dir``), ``start_cell(TrackedCell)``,
    ``log_epoch(epoch, values)`` after every epoch and ``end_cell(record, cell_file)`` or
    ``fail_cell(error)``; and, on a fresh instance where a run's result file is written,
    ``log_result(result, result_file)``. An exception of a tracker is a warning and leaves that
    tracker out of the cell; it never changes a result. msde_bench.trackers.base has the contract.
    """
