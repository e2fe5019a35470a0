"""Test helpers for method, paradigm and dataset plugins, in-tree or out-of-tree, and a pytest
plugin with fixtures.

Use it from a plugin's tests with pytest alone:

    # conftest.py
    pytest_plugins = ["msde_bench.testing"]

    # test_my_method.py
    from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_shapes

A paradigm plugin's tests use `check_paradigm(name, tiny_root, tmp_path)`, a dataset plugin's
`check_dataset("NAME:ARG")`.

The fixtures: `tiny_root` (a tiny synthetic set, 8 subjects x 7 expressions at 32 px, written once
per session), `tiny_copy` (a private copy a test may break), and, for every test, an isolated
cache home (`MSDE_BENCH_HOME` in a temporary folder), no model hub (`HF_HUB_OFFLINE=1`) and no
`MSDE_BENCH_DISABLE_PLUGINS` from the environment.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from msde_bench.api import PairedDataset, run_benchmark
from msde_bench.data.synth import SynthConfig, write_dataset
from msde_bench.models.base import LossState, Method, Output
from msde_bench.plugins import registry

# huggingface_hub reads this when it is first imported (timm imports it, e.g. when a test module
# loads the plugin registry at collection), before any fixture runs: set it as the plugin loads
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ------------------------------------------------------------------------------------------
# checks


def check_registered(name: str, paper_fragment: str) -> None:
    """The method is registered (what `msde-bench methods` lists) with a paper and a description,
    by a plugin that loaded."""
    reg = registry()
    assert name in reg.methods, f"method {name!r} is not registered"
    entry = reg.methods[name]
    assert paper_fragment in entry.paper and entry.description
    assert reg.plugins[entry.plugin].error is None


def check_shapes(method: Method, size: int, batch: int = 2) -> Output:
    """forward() on a random batch of `size` px gives Output of the contract's shapes (one logit per
    class the method was built for: `method.num_classes`, 7 by default), finite logits."""
    torch.manual_seed(0)
    method.eval()
    out = method(torch.randn(batch, 3, size, size))
    assert out.logits.shape == (batch, getattr(method, "num_classes", 7))
    assert out.embedding.ndim == 2 and out.embedding.shape[0] == batch
    assert out.feature_map.ndim == 4 and out.feature_map.shape[0] == batch
    assert torch.isfinite(out.logits).all()
    return out


def check_one_step_reduces_loss(method: Method, size: int = 32, steps: int = 5) -> tuple[float, float]:
    """A few optimiser steps (in training mode) on one fixed batch lower the method's own loss,
    measured before and after in the same (eval) mode, so batch-norm noise cannot decide it.
    Returns (before, after)."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, size, size), torch.arange(8) % 7
    state = LossState(epoch=0, index=torch.arange(8), view="non-masked")
    opt = torch.optim.Adam([g for grp in method.param_groups(1e-3) for g in grp["params"]], lr=1e-3)

    def loss():
        return method.loss(x, y, method(x), state)["loss"]

    method.eval()
    with torch.no_grad():
        before = loss().item()
    method.train()
    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
        method.after_step()
    method.eval()
    with torch.no_grad():
        after = loss().item()
    assert after < before, (before, after)
    return before, after


def check_fewer_classes(method: Method, size: int = 32) -> None:
    """A method built for a set with fewer than seven classes (CK+ without neutral has 6: the core
    builds `cls(num_classes=6, ...)` and its labels are 0-5) gives that many logits, and its own loss
    on such labels is finite and trains (a backward pass reaches its parameters): nothing in it
    assumes 7."""
    num_classes = method.num_classes
    assert num_classes < 7, "build the method with num_classes < 7 for this check"
    check_shapes(method, size)
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, size, size), torch.arange(8) % num_classes
    method.train()
    terms = method.loss(x, y, method(x), LossState(epoch=0, index=torch.arange(8), view="non-masked"))
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())


def check_end_to_end(name: str, paradigm: str, root, out, *, options=None) -> dict:
    """A run of the method under `paradigm` on the dataset at `root` (32 px, one epoch, fold 0 of
    2, as `msde-bench run` would make it: msde_bench.api.run_benchmark) writes a result of that
    model and paradigm under `out`; returns it. `options`: the run's --opt values ({key: value} or
    "KEY=VALUE" strings). (The command-line `extra` of 0.6, deprecated in 0.7.0, is gone.)"""
    opts = [f"{k}={v}" for k, v in options.items()] if isinstance(options, dict) else list(options or ())
    result, _ = run_benchmark(name, paradigm, data=str(root), recipe="quick", epochs=1, folds=2, run_folds=(0,),
                              image_size=32, batch_size=8, device="cpu", out=out, options=opts, progress=False)
    assert result["spec"]["model"] == name and result["spec"]["paradigm"] == paradigm
    return result


def _record_numbers(obj):
    """A fold record without what a stop may change: its timings, and where a distill teacher came
    from (trained by the first run, loaded from the teacher cache by the next)."""
    if isinstance(obj, dict):
        return {k: _record_numbers(v) for k, v in obj.items()
                if "seconds" not in k and "per_second" not in k and k != "teacher"}
    return [_record_numbers(v) for v in obj] if isinstance(obj, list) else obj


class _Stopped(BaseException):
    """check_resume's stand-in for kill -9 (nothing of the training saves after it)."""


def check_resume(name: str, paradigm: str, root, out, *, options=None) -> dict:
    """A run of the method under `paradigm` on the dataset at `root` (quick recipe, 32 px, 2 epochs,
    batch 8, fold 0 of 2), stopped within its second epoch with a checkpoint after every step (what
    kill -9 leaves) and resumed, writes the same record, number for number, as the run that never
    stopped (seconds aside): the method keeps no training state that its state_dict() and
    resume_state() miss. `options`: the run's --opt values ({key: value} or "KEY=VALUE" strings).
    Returns the resumed cell (its `resumed` says where it continued)."""
    from msde_bench.cellstate import Policy
    from msde_bench.data.msde import read_msde
    from msde_bench.data.pairs import ImageCache
    from msde_bench.runner import cells_of, run_cell
    from msde_bench.spec_build import build_spec
    from msde_bench.training import Trainer

    opts = [f"{k}={v}" for k, v in options.items()] if isinstance(options, dict) else list(options or ())
    spec = build_spec(name, paradigm, data=str(root), recipe="quick", epochs=2, folds=2, image_size=32,
                      batch_size=8, device="cpu", options=opts)
    dataset = read_msde(root)
    cells, folds = cells_of(spec, dataset)
    cell, fold, out = cells[0], folds[0], Path(out)

    def run(where: Path, policy: Policy) -> dict:
        return run_cell(cell, fold, dataset, ImageCache(dataset, spec.image_size), where, keep_model=False,
                        checkpoints=policy)

    step, second_epoch = Trainer.train_step, []

    def counted(self, batch, measure=False):
        if batch.epoch == 1:
            second_epoch.append(batch.step)
            if stopping and len(second_epoch) == 2:  # the second step of the second epoch
                raise _Stopped
        return step(self, batch, measure)

    Trainer.train_step = counted
    try:
        stopping = False
        ref = run(out / "uninterrupted", Policy())
        assert len(second_epoch) >= 2, f"{name} under {paradigm}: the run has under 2 steps in its second epoch"
        second_epoch.clear()
        stopping = True
        try:
            run(out / "stopped", Policy(minutes=0))
        except _Stopped:
            pass
        else:
            raise AssertionError(f"{name} under {paradigm}: the run ended before its second epoch's second step")
    finally:
        Trainer.train_step = step
    resumed = run(out / "stopped", Policy(resume=True))

    assert resumed.get("resumed"), f"{name} under {paradigm}: the second run did not resume from its checkpoint"
    a, b = _record_numbers(ref["record"]), _record_numbers(resumed["record"])
    differ = sorted(k for k in a if a[k] != b.get(k))
    assert not differ, (f"{name} under {paradigm}: resumed after a stop, the record differs in {differ}: the method "
                        "keeps training state outside state_dict() and resume_state()")
    return resumed


def check_paradigm(name: str, root, out, options=None) -> dict:
    """A paradigm plugin: registered with a description, a subclass of Paradigm whose options are
    Options, and a run of resnet18 under it on the dataset at `root` (as check_end_to_end: 32 px,
    one epoch, fold 0 of 2) trains: every epoch of the fold records a finite loss and a training
    accuracy; a paradigm that returns loss "parts" gets their gradient shares recorded (summing to
    1 on every epoch), and its `cross_view_terms` name parts it returns. `options`: the paradigm's
    --opt values. Returns the result."""
    import math

    from msde_bench.options import Option
    from msde_bench.paradigms.base import Paradigm

    reg = registry()
    assert name in reg.paradigms, f"paradigm {name!r} is not registered"
    entry = reg.paradigms[name]
    assert reg.plugins[entry.plugin].error is None and entry.description
    cls = entry.obj
    assert isinstance(cls, type) and issubclass(cls, Paradigm), f"{cls!r} is not a subclass of Paradigm"
    assert all(isinstance(o, Option) for o in cls.options.values())
    result = check_end_to_end("resnet18", name, root, out, options=options)
    history = result["folds"][0]["train_history"]
    assert history and all(math.isfinite(h["loss"]) and 0.0 <= h["train_acc"] <= 1.0 for h in history), history
    for h in history:
        shares = {k[len("grad_share."):]: v for k, v in h.items() if k.startswith("grad_share.")}
        if shares:  # the paradigm returned "parts": their shares of the gradient sum to 1
            assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6), shares
            missing = [t for t in getattr(cls, "cross_view_terms", ()) if t not in shares]
            assert len(missing) < len(cls.cross_view_terms), f"cross_view_terms {missing} are none of its parts"
    return result


def check_dataset(data: str, min_subjects: int = 2) -> PairedDataset:
    """A dataset plugin: `--data DATA` loads through the registry into a PairedDataset whose every
    pair names two existing image files of one subject with one of the seven labels, with at least
    `min_subjects` subjects (subject-disjoint folds need two) and pairs of more than one class; it
    reports its progress as `progress(done, total)` calls, if any, with 0 <= done <= total; and
    loading it again gives the same fingerprint (the same images, in the same order). Returns it."""
    from msde_bench import NUM_CLASSES
    from msde_bench.factory import load_dataset

    calls = []
    ds = load_dataset(data, progress=lambda done, total: calls.append((done, total)))
    assert isinstance(ds, PairedDataset) and len(ds) > 0, f"{data}: no pairs"
    for pair in ds.pairs:
        assert Path(pair.non_masked).is_file() and Path(pair.masked).is_file(), f"{pair.name}: an image is missing"
        assert 0 <= pair.label < NUM_CLASSES, f"{pair.name}: label {pair.label}"
    assert len({p.subject for p in ds.pairs}) >= min_subjects, f"{data}: fewer than {min_subjects} subjects"
    assert len({p.label for p in ds.pairs}) > 1, f"{data}: a single class"
    assert all(0 <= done <= (total if total is not None else done) for done, total in calls), calls
    assert load_dataset(data).fingerprint() == ds.fingerprint()
    return ds


# ------------------------------------------------------------------------------------------
# fixtures (pytest_plugins = ["msde_bench.testing"])


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own cache home and no model hub."""
    monkeypatch.setenv("MSDE_BENCH_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MSDE_BENCH_DISABLE_PLUGINS", raising=False)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A tiny synthetic set (8 subjects x 7 expressions, 32 px), written once per session."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    write_dataset(SynthConfig(subjects=8, image_size=32, seed=0, variant="tiny"), out)
    return out


@pytest.fixture
def tiny_copy(tiny_root, tmp_path) -> Path:
    """A private copy of the tiny set that a test may break."""
    dst = tmp_path / "ds"
    shutil.copytree(tiny_root, dst)
    return dst
