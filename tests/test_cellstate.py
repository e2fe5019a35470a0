"""Checkpoints inside a cell (issue 37, item 1): a cell killed within an epoch or at an epoch's end
resumes from its checkpoint, and its record equals, number for number, the record of the same cell
trained without a stop (on the CPU, same threads; seconds excepted)."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from msde_bench import cellstate as CS
from msde_bench.cli import main
from msde_bench.data.msde import read_msde
from msde_bench.data.pairs import ImageCache
from msde_bench.errors import MsdeError
from msde_bench.runner import cells_of, run_cell
from msde_bench.spec import RunSpec
from msde_bench.testing import _record_numbers
from msde_bench.training import Trainer

REPO = Path(__file__).resolve().parents[1]


class Killed(BaseException):
    """Stands for kill -9: nothing of the training's own saves the state after it."""


#: a small timm model (0.6 M parameters): a checkpoint after every step stays cheap
SMALL = "mobilenetv3_small_050"


def _cell(tiny_root, epochs=2, batch_size=16, **kw):
    spec = RunSpec(model=SMALL, data=str(tiny_root), folds=2, epochs=epochs, image_size=32, batch_size=batch_size,
                   device="cpu", **kw)
    ds = read_msde(tiny_root)
    cells, folds = cells_of(spec, ds)
    return cells[0], folds[0], ds


@pytest.fixture(scope="module")
def baseline(tiny_root, tmp_path_factory):
    """The baseline cell and its record trained without a stop."""
    cell, fold, ds = _cell(tiny_root)
    return cell, fold, ds, _run(cell, fold, ds, tmp_path_factory.mktemp("ref"), CS.Policy())


def _run(cell, fold, ds, out, policy, kill_at=None, monkeypatch=None):
    """Runs the cell; with kill_at, the training stops (as if killed) before its kill_at-th step."""
    if kill_at is not None:
        calls = {"n": 0}
        step = Trainer.train_step

        def counted(self, batch, measure=False):
            calls["n"] += 1
            if calls["n"] == kill_at:
                raise Killed
            return step(self, batch, measure)

        monkeypatch.setattr(Trainer, "train_step", counted)
        with pytest.raises(Killed):
            run_cell(cell, fold, ds, ImageCache(ds, 32), out, keep_model=False, checkpoints=policy)
        monkeypatch.setattr(Trainer, "train_step", step)
        return None
    return run_cell(cell, fold, ds, ImageCache(ds, 32), out, keep_model=False, checkpoints=policy)


@pytest.mark.parametrize("paradigm,opts,minutes,kill_at,protocol", [
    ("baseline", (), 0.0, 5, "clean"),  # within the first epoch: a checkpoint after every step
    # at the second epoch's first step: the epoch-end checkpoint
    ("contrastive", (("alpha", 100.0),), 1e9, None, "clean"),
    ("distill", (), 0.0, None, "clean"),  # the paradigm's own generator, within the second epoch
    ("baseline", (), 1e9, None, "faithful"),  # the best epoch so far (scored on the test fold) is kept
])
def test_a_killed_cell_resumes_to_the_same_record(tiny_root, baseline, tmp_path, monkeypatch, paradigm, opts, minutes,
                                                  kill_at, protocol):
    if paradigm == "baseline" and protocol == "clean":
        cell, fold, ds, ref = baseline
    else:
        cell, fold, ds = _cell(tiny_root, paradigm=paradigm, options=opts, protocol=protocol)
        ref = _run(cell, fold, ds, tmp_path / "ref", CS.Policy())
    per_epoch = Trainer(cell.spec, *_parts(cell.spec, ds), torch.device("cpu")).steps_per_epoch(len(fold.train))
    if kill_at is None:  # the second epoch's first step, or a few steps into it
        kill_at = per_epoch + 1 if minutes > 1 else per_epoch + 2
    if paradigm == "distill":  # the teacher is cached by the reference run: the student's steps only
        assert ref["record"]["paradigm"]["teacher"]
    out = tmp_path / "killed"
    _run(cell, fold, ds, out, CS.Policy(minutes=minutes), kill_at=kill_at, monkeypatch=monkeypatch)
    ckpt = out / cell.run_id / "fold0.ckpt"
    assert ckpt.is_file() and not cell.path(out).exists()
    resumed = _run(cell, fold, ds, out, CS.Policy(resume=True, minutes=minutes))
    assert _record_numbers(resumed["record"]) == _record_numbers(ref["record"])
    epoch, step = divmod(kill_at - 1, per_epoch)
    assert resumed["resumed"] == [dict(phase="fold", epoch=epoch, step=step,
                                       seconds_kept=resumed["resumed"][0]["seconds_kept"])]
    assert not ckpt.exists()  # gone once the cell is written


@pytest.mark.parametrize("knobs", [
    dict(optimizer="adamw", schedule="onecycle", warmup_epochs=0.5, ema_decay=0.9, augment="flip+crop+affine+erase",
         label_smoothing=0.1, mixup=0.2, cutmix=1.0),
    dict(optimizer="sgd", schedule="multistep", milestones=(1,), warmup_epochs=0.5, ema_decay=0.5),
    dict(schedule="cosine", warmup_epochs=1.5),
])
def test_a_killed_cell_with_the_recipe_knobs_resumes_to_the_same_record(tiny_root, tmp_path, monkeypatch, knobs):
    """The per-step schedules, their warm-up, the weights' average, the "+" augmentations and the
    batch mixing are part of the saved state: stopped within the second epoch, resumed, the record is the same."""
    cell, fold, ds = _cell(tiny_root, **knobs)
    ref = _run(cell, fold, ds, tmp_path / "ref", CS.Policy())
    per_epoch = Trainer(cell.spec, *_parts(cell.spec, ds), torch.device("cpu")).steps_per_epoch(len(fold.train))
    out = tmp_path / "killed"
    _run(cell, fold, ds, out, CS.Policy(minutes=0.0), kill_at=per_epoch + 2, monkeypatch=monkeypatch)
    resumed = _run(cell, fold, ds, out, CS.Policy(resume=True, minutes=0.0))
    assert resumed["resumed"][0]["epoch"] == 1
    assert _record_numbers(resumed["record"]) == _record_numbers(ref["record"])


def _parts(spec, ds):
    from msde_bench.factory import build_method, build_paradigm

    return build_method(spec, load=False, num_classes=len(ds.classes))[0], build_paradigm(spec)


def test_without_resume_a_checkpoint_is_not_used_and_with_keep_it_stays(baseline, tmp_path, monkeypatch):
    cell, fold, ds, _ = baseline
    out = tmp_path / "out"
    _run(cell, fold, ds, out, CS.Policy(minutes=0), kill_at=4, monkeypatch=monkeypatch)
    said = []
    ck = CS.Checkpoint(out / cell.run_id / "fold0.ckpt", {}, CS.Policy(), said.append)
    assert ck.load() is None and "training from the start" in said[0]
    obj = _run(cell, fold, ds, out, CS.Policy(keep=True))
    assert "resumed" not in obj
    assert (out / cell.run_id / "fold0.ckpt").is_file()  # kept: the completed training's last epoch


def _stopped(baseline, tmp_path, monkeypatch, kill_at: int) -> tuple[Path, Path]:
    """The baseline cell stopped before step kill_at with a checkpoint after every step: (out, its checkpoint)."""
    cell, fold, ds, _ = baseline
    out = tmp_path / "out"
    _run(cell, fold, ds, out, CS.Policy(minutes=0), kill_at=kill_at, monkeypatch=monkeypatch)
    return out, out / cell.run_id / "fold0.ckpt"


def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line_and_the_fold_trains_from_its_start(
        baseline, tmp_path, monkeypatch):
    cell, fold, ds, ref = baseline
    out, path = _stopped(baseline, tmp_path, monkeypatch, 4)
    key = dict(spec=cell.spec.to_dict(), fingerprint=cell.dataset["fingerprint"], fold=0, phase="fold")
    good = path.read_bytes()
    cases = {
        "truncated": good[: len(good) // 2],
        "edited": good[:-10] + bytes(10),
        "garbage": b"not a checkpoint",
    }
    for what, data in cases.items():
        path.write_bytes(data)
        said = []
        assert CS.Checkpoint(path, key, CS.Policy(resume=True), said.append).load() is None, what
        assert len(said) == 1 and str(path) in said[0] and "from its start" in said[0], said
    path.write_bytes(good)
    for field, value, words in (("spec", {**key["spec"], "seed": 9}, "another run spec"),
                                ("fingerprint", "x", "another dataset"), ("fold", 1, "another fold")):
        said = []
        assert CS.Checkpoint(path, {**key, field: value}, CS.Policy(resume=True), said.append).load() is None
        assert words in said[0]
    path.write_bytes(cases["truncated"])  # the run itself: warns, trains from the start, same numbers
    obj = _run(cell, fold, ds, out, CS.Policy(resume=True))
    assert "resumed" not in obj and _record_numbers(obj["record"]) == _record_numbers(ref["record"])


def test_a_full_disk_while_saving_stops_the_run_naming_the_file_and_keeps_the_last_checkpoint(
        baseline, tmp_path, monkeypatch):
    cell, fold, ds, _ = baseline
    out, path = _stopped(baseline, tmp_path, monkeypatch, 3)
    before = path.read_bytes()

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(CS, "write_bytes_atomic", full)
    with pytest.raises(MsdeError, match=r"fold0\.ckpt: cannot save the training checkpoint \(No space left"):
        _run(cell, fold, ds, out, CS.Policy(resume=True, minutes=0))
    assert path.read_bytes() == before and not cell.path(out).exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_nested_selection_resumes_without_training_a_scored_candidate_again(tiny_root, tmp_path, monkeypatch):
    cell, fold, ds = _cell(tiny_root, epochs=1, batch_size=4, paradigm="contrastive", candidates=(("alpha", (1.0, 100.0)),),
                           select_on="val")
    step = Trainer.train_step
    trainers = []

    def count(self, batch, measure=False):
        trainers.append(id(self))
        return step(self, batch, measure)

    monkeypatch.setattr(Trainer, "train_step", count)
    ref = _run(cell, fold, ds, tmp_path / "ref", CS.Policy())
    monkeypatch.setattr(Trainer, "train_step", step)
    # all steps; the first candidate's (its trainer's run of steps at the start)
    total, first = len(trainers), next(i for i, t in enumerate(trainers) if t != trainers[0])
    assert first >= 3 and total > 3 * first - 3
    out = tmp_path / "out"
    # killed at the second candidate's second step: the first candidate keeps only its score
    _run(cell, fold, ds, out, CS.Policy(minutes=0), kill_at=first + 2, monkeypatch=monkeypatch)
    names = sorted(p.name for p in (out / cell.run_id).glob("*.ckpt"))
    assert len(names) == 2 and all(n.startswith("fold0.select-") for n in names), names
    trainers.clear()
    monkeypatch.setattr(Trainer, "train_step", count)
    resumed = _run(cell, fold, ds, out, CS.Policy(resume=True))
    assert len(trainers) == total - first - 1  # neither the first candidate nor the second's first step again
    assert _record_numbers(resumed["record"]) == _record_numbers(ref["record"])
    assert [r["phase"] for r in resumed["resumed"]] == [names[0][len("fold0."):-len(".ckpt")]] or \
        [r["phase"] for r in resumed["resumed"]] == [names[1][len("fold0."):-len(".ckpt")]]


def _cli_run(out, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "plugins"),
                                                       os.environ.get("PYTHONPATH", "")]))
    return [sys.executable, "-m", "msde_bench", "run", "--data", "synth:tiny", "--model", SMALL, "--epochs", "10",
            "--folds", "2", "--fold", "0", "--image-size", "32", "--batch-size", "8", "--threads", "1", "--no-save-models",
            "--progress", "none", "--out", str(out), *extra], env


def test_kill_9_mid_epoch_then_resume_gives_the_uninterrupted_record(tmp_path):
    """A real process killed with SIGKILL wherever it is (within a step or a save) once it has
    saved a dozen checkpoints (one after every step), then `run --resume`."""
    cmd, env = _cli_run(tmp_path / "ref")
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    ref = json.loads(next((tmp_path / "ref").glob("*/fold0.json")).read_text())
    cmd, env = _cli_run(tmp_path / "out", "--checkpoint-minutes", "0")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, seen, last = time.monotonic() + 300, 0, None
        while time.monotonic() < deadline and proc.poll() is None and seen < 12:
            for p in (tmp_path / "out").glob("*/fold0.ckpt"):
                try:
                    st = p.stat()  # each save renames a new file into place
                except FileNotFoundError:
                    continue
                if (st.st_ino, st.st_mtime_ns) != last:
                    seen, last = seen + 1, (st.st_ino, st.st_mtime_ns)
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list((tmp_path / "out").glob("*/fold0.json"))
    cmd, env = _cli_run(tmp_path / "out", "--resume")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resumed fold 0 at " in done.stderr
    cell = json.loads(next((tmp_path / "out").glob("*/fold0.json")).read_text())
    assert _record_numbers(cell["record"]) == _record_numbers(ref["record"])
    where = cell["resumed"][0]
    assert where["phase"] == "fold" and where["epoch"] * 100 + where["step"] > 0
    assert not list((tmp_path / "out").glob("*/*.ckpt"))


def test_checkpoint_minutes_is_checked(tmp_path):
    res = CliRunner().invoke(main, ["run", "--data", "synth:tiny", "--checkpoint-minutes", "-1", "--out",
                                    str(tmp_path)])
    assert res.exit_code == 2 and "--checkpoint-minutes" in res.output


def test_kept_checkpoints_of_a_finished_run_are_pruned(tiny_root, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--model", SMALL, "--recipe", "quick", "--epochs",
                                    "1", "--folds", "2", "--image-size", "32", "--no-save-models", "--no-progress",
                                    "--keep-checkpoints", "--out", str(out)])
    assert res.exit_code == 0, res.output
    kept = sorted(out.glob("*/*.ckpt"))
    assert [p.name for p in kept] == ["fold0.ckpt", "fold1.ckpt"]
    pruned = CliRunner().invoke(main, ["results", "--results", str(out), "prune"])
    assert pruned.exit_code == 0 and "2 files" in pruned.output and not any(p.exists() for p in kept)


def test_a_sweep_continues_a_stopped_cell_from_its_checkpoint(tiny_root, tmp_path, monkeypatch):
    from msde_bench.executors.task import cell_of, execute
    from msde_bench.sweep import plan_sweep

    grid = tmp_path / "grid.toml"
    grid.write_text(f'data = "{tiny_root}"\nmodel = "{SMALL}"\nrecipe = "quick"\nepochs = 2\nfolds = 2\n'
                    'image_size = 32\nbatch_size = 8\nfold = 0\n')
    out = tmp_path / "out"
    task = plan_sweep(grid, out).planned[0].tasks[0]
    cell = cell_of(task)
    ds = read_msde(tiny_root)
    _, folds = cells_of(cell.spec, ds)
    _run(cell, folds[0], ds, out, CS.Policy(minutes=0), kill_at=5, monkeypatch=monkeypatch)
    (row,) = plan_sweep(grid, out).cells()
    assert row["state"] == "would run (from a checkpoint)"
    report = execute(task)
    assert report["status"] == "done", report
    log = task.log.read_text()
    assert "resumed fold 0 at epoch 1, step 4" in log
    assert json.loads(task.path.read_text())["resumed"][0]["step"] == 4
    (row,) = plan_sweep(grid, out).cells()
    assert row["state"] == "done" and not list(task.path.parent.glob("*.ckpt"))
