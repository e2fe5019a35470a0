"""Bad input is one clear line naming the option or file, exit code 2, and nothing written."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from msde_bench.cli import main
from msde_bench.errors import MsdeError, SpecError
from msde_bench.factory import build_paradigm
from msde_bench.spec import RunSpec
from msde_bench.training import Trainer
from tests.test_contract import Recorder, _Cache


@pytest.mark.parametrize("args,message", [
    (["--batch-size", "1"], "--batch-size 1: must be >= 2"),
    (["--batch-size", "0"], "--batch-size 0: must be >= 2"),
    (["--epochs", "0"], "--epochs 0: must be >= 1"),
    (["--epochs", "-1"], "--epochs -1: must be >= 1"),
    (["--lr", "nan"], "--lr nan: must be a finite number"),
    (["--lr", "inf"], "--lr inf: must be a finite number"),
    (["--lr", "-1"], "--lr -1.0: must be > 0"),
    (["--image-size", "0"], "--image-size 0: must be >= 1"),
    (["--image-size", "-5"], "--image-size -5: must be >= 1"),
    (["--seed", "-1"], "--seed -1: must be >= 0"),
    (["--seed", "99999999999"], "--seed 99999999999: must be <= 4294967295"),
    (["--paradigm", "contrastive", "--opt", "alpha=nan"], "--opt alpha=nan: must be a finite number"),
    (["--paradigm", "distill", "--opt", "lambda=inf"], "--opt lambda=inf: must be a finite number"),
    (["--label-smoothing", "1"], "--label-smoothing 1.0: must be below 1"),
    (["--label-smoothing", "-0.1"], "--label-smoothing -0.1: must be >= 0"),
    (["--ema-decay", "1.5"], "--ema-decay 1.5: must be below 1"),
    (["--warmup-epochs", "6"], "--warmup-epochs 6: must be fewer than the run's 6 epochs"),
    (["--augment", "crop+flip"], "--augment crop+flip: write each step once, in the order flip+crop+affine+erase"),
    (["--augment", "flip+blur"], "--augment flip+blur: unknown step 'blur'"),
    (["--model", "scn", "--label-smoothing", "0.1"], "--label-smoothing 0.1: model 'scn' computes its own losses"),
    (["--mixup", "-0.2"], "--mixup -0.2: must be >= 0"),
    (["--model", "dan", "--cutmix", "1"], "--cutmix 1: model 'dan' computes its own losses"),
    (["--tta", "5crop"], "--tta 5crop: unknown test-time augmentation '5crop'"),
    (["--tta", "10crop,flip"], "--tta 10crop,flip: write each once, in the order flip,10crop"),
    (["--tta", "flip", "--protocol", "faithful"], "--tta flip: the faithful protocol scores the epoch it picks"),
])
def test_numbers_out_of_range_fail_before_anything_runs(tmp_path, args, message):
    out = CliRunner().invoke(main, ["run", "--data", "synth:tiny", "--device", "cpu", "--out", str(tmp_path / "o"),
                                    *args])
    assert out.exit_code == 2, out.output
    assert out.output.strip().splitlines()[-1].startswith(f"error: {message}")
    assert "Traceback" not in out.output and not (tmp_path / "o").exists()


def test_a_result_with_an_out_of_range_setting_is_malformed():
    with pytest.raises(SpecError, match="--epochs 0"):
        RunSpec(epochs=0)
    with pytest.raises(ValueError):  # results.validate reports ValueErrors of the spec as a malformed file
        RunSpec.from_dict(dict(RunSpec().to_dict(), lr=float("nan")))


class _Nan(Recorder):
    def loss(self, x, y, out, state):
        terms = super().loss(x, y, out, state)
        return {**terms, "loss": terms["loss"] * float("nan")}


def test_a_non_finite_loss_stops_the_fold_with_a_clear_message():
    spec = RunSpec(batch_size=4, image_size=8, augment="none", epochs=2)
    trainer = Trainer(spec, _Nan(), build_paradigm(spec), torch.device("cpu"))
    with pytest.raises(MsdeError, match=r"the loss became non-finite in epoch 1 \(.*loss = nan\).*Lower --lr"):
        trainer.fit(_Cache(8), np.arange(8), torch.Generator().manual_seed(0))


def test_an_epoch_without_a_batch_is_an_error_not_a_silent_skip():
    spec = RunSpec(batch_size=4, image_size=8, augment="none", options=(("train_on", "masked"),))
    trainer = Trainer(spec, Recorder(), build_paradigm(spec), torch.device("cpu"))
    with pytest.raises(MsdeError, match="epoch 1 had no batch to train on: 1 training pairs"):
        trainer.fit(_Cache(4), np.arange(1), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("command", [
    ["run", "--data", "synth:tiny", "--device", "cpu", "--epochs", "1", "--out", "{blocked}/results"],
    ["data", "synth", "{blocked}/set", "--variant", "tiny"],
    ["leaderboard", "--results", "{empty}", "--output", "{blocked}/README.md"],
])
def test_an_output_that_cannot_be_written_fails_before_any_work(tmp_path, command):
    """`--out` under an existing file: one line naming the folder, exit 2, before anything trains."""
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    (tmp_path / "empty").mkdir()
    args = [a.format(blocked=blocked, empty=tmp_path / "empty") for a in command]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 2, out.output
    last = out.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {blocked}") and "cannot write to this" in last
    assert "fold 0" not in out.output  # nothing trained


def _ensure_tiny(home, queue):
    import os

    os.environ["MSDE_BENCH_HOME"] = str(home)
    from msde_bench.data.synth import ensure_cached, variant_config

    queue.put(str(ensure_cached(variant_config("tiny"))))


def test_the_leaderboard_outside_a_checkout_says_what_it_needs_and_creates_nothing(tmp_path, monkeypatch):
    """From an installed wheel in an empty folder, `msde-bench leaderboard` fails with one line that
    says what it needs, and leaves no `leaderboard/` folder behind; a missing --results folder
    creates no output folder either."""
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, ["leaderboard"])
    assert out.exit_code == 2 and "give --results DIR" in out.output
    missing = CliRunner().invoke(main, ["leaderboard", "--results", "nope", "--output", "site/LB.md"])
    assert missing.exit_code == 2 and "nope: results folder not found" in missing.output
    assert list(tmp_path.iterdir()) == []


def test_two_processes_that_need_the_same_synthetic_set_both_get_it(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ensure_tiny, args=(tmp_path / "home", queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    paths = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(paths) == 1
    from pathlib import Path

    (path,) = paths
    assert (Path(path) / "meta.json").is_file() and len(list((Path(path) / "MSD-E").iterdir())) > 0
    assert [p.name for p in (tmp_path / "home" / "datasets").iterdir() if p.name.startswith(".")] == []


def test_written_files_and_folders_respect_the_umask(tmp_path):
    import os

    from msde_bench import results as R
    from msde_bench.checkpoints import save_torch_atomic
    from msde_bench.data.synth import variant_config, write_dataset

    old = os.umask(0o022)
    try:
        R.write_json_atomic(tmp_path / "r.json", {"a": 1})
        save_torch_atomic(tmp_path / "m.pt", {"a": torch.zeros(1)})
        write_dataset(variant_config("tiny"), tmp_path / "set")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644  # mkstemp alone gives 0600
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "set").stat().st_mode & 0o777 == 0o755  # mkdtemp alone gives 0700


def test_explain_n_zero_and_results_show_integers(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    out = CliRunner().invoke(main, ["explain", str(tmp_path / "x.json"), "--n", "0"])
    assert out.exit_code == 2 and out.output.strip() == "error: --n 0: must be at least 1"
    from tests.test_leaderboard import make_result, write

    d = write(tmp_path / "r", make_result())
    shown = CliRunner().invoke(main, ["results", "--results", str(d), "show", make_result()["run_id"]])
    assert shown.exit_code == 0, shown.output
    first = next(ln for ln in shown.output.splitlines() if ln.strip().startswith("0 "))
    assert first.split()[:3] == ["0", "1", "10"]  # fold, test subjects, pairs: integers, not 0.0 1.0 10.0


def test_temporaries_of_a_killed_write_are_removed_once_stale(tmp_path):
    import os
    import time

    from msde_bench.atomic import STALE_SECONDS, remove_stale_temporaries

    old = tmp_path / ".fold0.json.abc123.tmp"
    fresh = tmp_path / ".fold1.json.def456.tmp"
    keep = tmp_path / "fold0.json"
    for p in (old, fresh, keep):
        p.write_text("{}")
    past = time.time() - STALE_SECONDS - 60
    os.utime(old, (past, past))
    os.utime(keep, (past, past))
    assert remove_stale_temporaries(tmp_path) == [old]
    assert not old.exists() and fresh.exists() and keep.exists()  # a young one may be a write in progress


def test_threads_are_set_checked_and_recorded(monkeypatch):
    import multiprocessing as mp
    import os

    from msde_bench.device import threads_default
    from msde_bench.executors.local import _init_worker

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # restored after the test, whatever it was
    before = torch.get_num_threads()
    try:
        threads_default(1)
        assert torch.get_num_threads() == 1
        with pytest.raises(MsdeError, match="--threads 0: must be at least 1"):
            threads_default(0)
        # a sweep's local workers: the given threads each, else the cores divided between them
        _init_worker(mp.Value("i", 0), 2, 1, 0, 1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        _init_worker(mp.Value("i", 0), 1, 1, 0, None)
        assert torch.get_num_threads() == max(1, os.cpu_count() or 1)
    finally:
        torch.set_num_threads(before)


def test_a_busy_machine_is_warned_about_not_silently_oversubscribed():
    from msde_bench.device import busy_warning

    assert busy_warning(2, load=0.2, cores=2) is None
    warning = busy_warning(2, load=1.1, cores=2)
    assert "about 1 of 2 cores busy" in warning and "--threads 1" in warning
    assert busy_warning(1, load=1.9, cores=2) is None  # one thread always has a core to itself


@pytest.mark.parametrize("command", ["data synth", "data convert", "leaderboard"])
def test_a_full_disk_is_one_line_naming_the_path_and_nothing_half_written(command, tmp_path, monkeypatch):
    """Issue 40 (8): no space left while the synthetic set is written, while `data convert` writes a pair,
    or while the leaderboard writes its markdown: one line naming the file or folder, exit != 0, no
    traceback, and nothing half-written left behind (every write is atomic)."""
    import errno

    from PIL import Image

    from msde_bench import atomic
    from msde_bench.data.synth import draw_pair

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if command == "data synth":
        monkeypatch.setattr(Image.Image, "save", full)
        args, target = ["data", "synth", str(tmp_path / "set"), "--variant", "tiny"], tmp_path / "set"
    elif command == "data convert":
        src = tmp_path / "src" / "happy"
        src.mkdir(parents=True)
        for i in range(2):
            draw_pair(7, i, 3, 48)[0].save(src / f"f{i}.png")
        monkeypatch.setattr(Image.Image, "save", full)
        args, target = ["data", "convert", "--format", "imagefolder", str(tmp_path / "src"), str(tmp_path / "set"),
                        "--landmarks", "off"], tmp_path / "set"
    else:
        from tests.test_leaderboard import make_result, write

        write(tmp_path / "r", make_result())
        monkeypatch.setattr(atomic.os, "fsync", full)
        args, target = ["leaderboard", "--results", str(tmp_path / "r"), "--output", str(tmp_path / "lb" / "README.md")], \
            tmp_path / "lb"
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "Traceback" not in res.output, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {target}") and "no space left on the device" in last, last
    left = [p for p in target.rglob("*") if p.is_file()] if target.exists() else []
    if command == "data convert":  # resumable: whole files and its in-progress mark, which the rerun continues
        assert (target / ".msde-bench-converting").is_file() and not (target / "meta.json").exists()
        left = [p for p in left if p.name != ".msde-bench-converting"]
        assert all(Image.open(p).load() is not None for p in left if p.suffix == ".png")
        assert not [p for p in left if p.name.startswith(".")], left
    else:
        assert not [p for p in left if p.name.startswith(".") or p.suffix in (".png", ".md", ".json")], left
