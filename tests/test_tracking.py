"""--track: experiment trackers get every epoch, every fold and every result; TensorBoard and MLflow
read back from their local stores equal the result file; a tracker never changes a result."""

import json
import os
import sys

import pytest
from click.testing import CliRunner

from msde_bench import results as R
from msde_bench.cli import main

TINY = ["--recipe", "quick", "--epochs", "2", "--folds", "2", "--image-size", "32", "--batch-size", "16",
        "--device", "cpu", "--no-progress", "--no-save-models"]

TOY_TRACKERS = """
    from msde_bench.api import Tracker, hookimpl

    CALLS = []

    class Recorder(Tracker):
        name = "recorder"
        description = "records every call"

        def start_cell(self, cell):
            CALLS.append(("start_cell", cell.run_id, cell.fold, cell.dataset["name"], self.folder.name))

        def log_epoch(self, epoch, values):
            CALLS.append(("log_epoch", epoch, dict(values)))

        def end_cell(self, record, cell_file):
            CALLS.append(("end_cell", record, cell_file))

        def fail_cell(self, error):
            CALLS.append(("fail_cell", error))

        def log_result(self, result, result_file):
            CALLS.append(("log_result", result["run_id"], result_file))

    class Boom(Tracker):
        name = "boom"

        def log_epoch(self, epoch, values):
            raise RuntimeError("disk full")

        def end_cell(self, record, cell_file):
            CALLS.append(("boom",))  # never: a tracker that failed is left out for the rest of the cell

    @hookimpl
    def msde_bench_register_trackers(register):
        register("recorder", Recorder)
        register("boom", Boom)
"""


def _numbers(result):
    return [{k: f[k] for k in ("fold", "acc_non_masked", "acc_masked", "confusion_masked", "train_history")}
            for f in result["folds"]]


def _train_values(record):
    return {("train/acc" if k == "train_acc" else "lr" if k == "lr" else f"train/{k}"): v
            for k, v in record.items() if k != "epoch"}


def test_a_tracker_plugin_gets_each_epoch_fold_and_result_and_changes_nothing(install, tiny_root, tmp_path):
    install("msde-bench-recorder", {"recorder": "recorder_tracker"}, {"recorder_tracker": TOY_TRACKERS})
    calls = sys.modules["recorder_tracker"].CALLS
    assert "tracker:recorder" in CliRunner().invoke(main, ["plugins"]).output
    args = ["run", "--data", str(tiny_root), "--protocol", "faithful", *TINY]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out"), "--track", "recorder", "--track", "boom",
                                    "--track-dir", str(tmp_path / "tr")])
    assert res.exit_code == 0, res.output
    # the failing tracker: one warning per cell, then left out; the run goes on
    warning = "tracker boom: log_epoch failed (RuntimeError: disk full); it is left out for the rest of this cell"
    assert " ".join(res.output.split()).count(warning) == 2 and ("boom",) not in calls
    (path,) = (tmp_path / "out").glob("*.json")
    result = R.load(path)
    expected = []
    for f in result["folds"]:
        expected.append(("start_cell", result["run_id"], f["fold"], result["dataset"]["name"], "tr"))
        for train, test in zip(f["train_history"], f["history"]):  # faithful: the epoch's test accuracies too
            expected.append(("log_epoch", train["epoch"], _train_values(train)))
            expected.append(("log_epoch", test["epoch"], {f"test/{k}": test[k]
                                                          for k in ("acc_non_masked", "acc_masked", "acc_overall")}))
        cell_file = tmp_path / "out" / result["run_id"] / f"fold{f['fold']}.json"
        record = {k: v for k, v in f.items() if k != "record_sha256"}
        expected.append(("end_cell", record, cell_file))
    expected.append(("log_result", result["run_id"], path))
    assert calls == expected
    assert [c[1] for c in calls if c[0] == "log_epoch"] == [1, 1, 2, 2] * 2

    # a cell that fails: the trackers hear of it, and the error goes on
    calls.clear()
    bad = CliRunner().invoke(main, ["run", "--data", str(tiny_root), *TINY, "--model", "ran", "--opt", "crops=99",
                                    "--out", str(tmp_path / "bad"), "--track", "recorder"])
    assert bad.exit_code != 0 and "crops=99" in bad.output
    assert [c[0] for c in calls] == ["start_cell", "fail_cell"] and "crops=99" in calls[1][1]

    # the same run untracked: the same numbers
    plain = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    assert _numbers(R.load(tmp_path / "plain" / path.name)) == _numbers(result)


@pytest.fixture(scope="module")
def tracked(tiny_root, tmp_path_factory):
    """A run reported to TensorBoard and MLflow (local stores; no MLFLOW_TRACKING_URI)."""
    tmp = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), *TINY, "--out", str(tmp / "out"),
                                        "--track", "tensorboard", "--track", "mlflow", "--track-dir", str(tmp / "tr")])
        assert res.exit_code == 0, res.output
        assert "tracker" not in res.output  # no tracker warned
        assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # set only around msde-bench's own store calls
    (path,) = (tmp / "out").glob("*.json")
    return tmp, path, R.load(path)


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_files_hold_each_epoch_and_the_folds_numbers(tracked):
    tmp, _, result = tracked
    board = tmp / "tr" / "tensorboard" / result["run_id"]
    assert sorted(p.name for p in board.iterdir()) == ["fold0", "fold1", "result"]
    for f in result["folds"]:
        scalars = _scalars(board / f"fold{f['fold']}")
        for key in ("train/loss", "train/acc", "lr"):
            want = [(r["epoch"], _train_values(r)[key]) for r in f["train_history"]]
            assert scalars[key] == [(step, pytest.approx(v, rel=1e-6)) for step, v in want], key
        assert scalars["fold/acc_masked"][0][1] == pytest.approx(f["acc_masked"], rel=1e-6)
        assert scalars["fold/train_seconds"][0][1] == pytest.approx(f["train_seconds"], rel=1e-6)
    run = _scalars(board / "result")
    assert run["run/acc_non_masked"][0][1] == pytest.approx(result["summary"]["acc_non_masked"]["mean"], rel=1e-6)
    assert run["run/mask_gap_std"][0][1] == pytest.approx(result["summary"]["mask_gap"]["std"], rel=1e-6)


def test_mlflow_runs_hold_the_spec_epochs_folds_and_the_files(tracked, monkeypatch):
    from mlflow.tracking import MlflowClient

    tmp, path, result = tracked
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp / "tr" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name(f"msde-bench/{result['dataset']['name']}")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["msde_bench.kind"] == "run"]
    cells = sorted((r for r in runs if r.data.tags["msde_bench.kind"] == "cell"),
                   key=lambda r: int(r.data.tags["msde_bench.fold"]))
    assert len(cells) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert parent.info.run_name == result["run_id"]
    assert parent.data.params["model"] == "resnet18" and parent.data.params["opt.train_on"] == "mixed"
    assert parent.data.params["seed"] == str(result["spec"]["seed"])
    assert parent.data.metrics["acc_masked"] == pytest.approx(result["summary"]["acc_masked"]["mean"])
    assert parent.data.metrics["acc_masked_std"] == pytest.approx(result["summary"]["acc_masked"]["std"])
    parent_dir = tmp / "tr" / "mlruns" / experiment.experiment_id / parent.info.run_id / "artifacts"
    assert (parent_dir / path.name).read_bytes() == path.read_bytes()  # the result file as an artifact
    for run, f in zip(cells, result["folds"]):
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id  # the run's cells are its children
        assert run.data.tags["msde_bench.run_id"] == result["run_id"]
        assert run.data.metrics["acc_non_masked"] == pytest.approx(f["acc_non_masked"])
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r["loss"]))
                                                        for r in f["train_history"]]
        artifact = (tmp / "tr" / "mlruns" / experiment.experiment_id / run.info.run_id / "artifacts"
                    / f"fold{f['fold']}.json")
        assert json.loads(artifact.read_text())["record"]["acc_masked"] == f["acc_masked"]


def test_sweep_cells_report_from_their_workers_and_the_merge_reports_the_result(tiny_root, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(f'data = "{tiny_root}"\nrecipe = "quick"\nepochs = 1\nfolds = 2\nimage_size = 32\n'
                    'batch_size = 16\ndevice = "cpu"\nmodel = "resnet18"\nparadigm = "baseline"\n')
    res = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "out"), "--workers", "1",
                                    "--track", "tensorboard", "--track-dir", str(tmp_path / "tr"), "--no-progress"])
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "out").glob("*.json")
    result = R.load(path)
    board = tmp_path / "tr" / "tensorboard" / result["run_id"]
    for f in result["folds"]:  # written by the worker process that trained the cell
        assert _scalars(board / f"fold{f['fold']}")["train/loss"] == [(1, pytest.approx(f["train_history"][0]["loss"]))]
    assert _scalars(board / "result")["run/acc_overall"][0][1] == pytest.approx(
        result["summary"]["acc_overall"]["mean"], rel=1e-6)


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_unknown_tracker_or_a_missing_package_is_one_line_before_anything_is_written(
        command, tiny_root, tmp_path, monkeypatch):
    grid = tmp_path / "grid.toml"
    grid.write_text(f'data = "{tiny_root}"\nepochs = 1\nfolds = 2\nimage_size = 32\nmodel = "resnet18"\n')
    head = ["run", "--data", str(tiny_root), *TINY] if command == "run" else ["sweep", str(grid)]
    out = ["--out", str(tmp_path / "out"), "--track-dir", str(tmp_path / "tr")]
    res = CliRunner().invoke(main, [*head, *out, "--track", "wandb"])
    assert res.exit_code == 2 and "--track wandb: choose one of mlflow, tensorboard" in res.output, res.output
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    res = CliRunner().invoke(main, [*head, *out, "--track", "tensorboard"])
    assert res.exit_code == 2 and "pip install 'msde-bench[tensorboard]'" in res.output, res.output
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    res = CliRunner().invoke(main, [*head, *out, "--track", "mlflow"])
    assert res.exit_code == 2 and "pip install 'msde-bench[mlflow]'" in res.output, res.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "tr").exists()


BROKEN_TRACKERS = """
    from msde_bench.api import Tracker, hookimpl

    class BadCheck(Tracker):
        name = "badcheck"

        @classmethod
        def check(cls):
            raise RuntimeError("no config file")

    class BadInit(Tracker):
        name = "badinit"

        def __init__(self, folder):
            raise ValueError("cannot open the store")

    class Quits(Tracker):
        name = "quits"

        def log_epoch(self, epoch, values):
            raise SystemExit(3)

    @hookimpl
    def msde_bench_register_trackers(register):
        register("badcheck", BadCheck)
        register("badinit", BadInit)
        register("quits", Quits)
"""


def test_a_broken_tracker_is_named_never_blamed_on_the_method(install, tiny_root, tmp_path):
    """Issue 40 (8, 10): a tracker whose check() raises is one line naming it, before anything runs; one
    whose __init__ raises or that calls SystemExit is a warning naming it, and the run finishes with the
    numbers it has untracked (never "method resnet18 ... failed")."""
    install("msde-bench-broken", {"broken": "broken_trackers"}, {"broken_trackers": BROKEN_TRACKERS})
    args = ["run", "--data", str(tiny_root), *TINY, "--epochs", "1", "--track-dir", str(tmp_path / "tr")]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a"), "--track", "badcheck"])
    assert res.exit_code == 2 and "--track badcheck: the tracker's check failed (RuntimeError: no config file)" in \
        res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "a").exists()
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--track", "badinit", "--track", "quits"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "tracker badinit: it could not start (ValueError: cannot open the store)" in text
    assert "tracker quits: log_epoch failed (SystemExit: 3)" in text and "method resnet18" not in text
    plain = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "c")])
    (b,), (c,) = (tmp_path / "b").glob("*.json"), (tmp_path / "c").glob("*.json")
    assert plain.exit_code == 0 and _numbers(R.load(b)) == _numbers(R.load(c))


def test_a_full_disk_is_named_as_the_disk_not_the_method(tiny_root, tmp_path, monkeypatch):
    """Issue 40 (10): no space left while a fold writes its cell is one line naming the disk and the
    folder (not "method resnet18 ... failed"), exit != 0, and nothing half-written is left as a cell."""
    import errno

    write = R.write_json_atomic

    def full(path, obj):
        if "fold" in os.path.basename(str(path)):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, obj)

    monkeypatch.setattr(R, "write_json_atomic", full)
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), *TINY, "--epochs", "1", "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code != 0 and "Traceback" not in res.output, res.output
    last = " ".join(res.output.split())
    assert "fold 0: " in last and "no space left on the device (writing under" in last
    assert str(tmp_path / "out") in last and "nothing half-written is kept" in last
    assert "method resnet18" not in last and not list((tmp_path / "out").rglob("fold*.json"))


def test_an_unreachable_mlflow_server_costs_one_warning_not_minutes(tiny_root, tmp_path, monkeypatch):
    """Issue 40 (17): MLFLOW_TRACKING_URI at a port nothing listens on: one try without retries, one
    warning, MLflow off for the rest of the run (both folds and the result), the result as untracked."""
    from msde_bench.trackers import mlflow_store

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setattr(mlflow_store, "_UNREACHABLE", set())
    args = ["run", "--data", str(tiny_root), *TINY, "--epochs", "1"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a"), "--track", "mlflow"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert text.count("MLflow at http://127.0.0.1:9 did not answer") == 1 and "tracking is off" in text
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # set only around its own calls
    plain = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    (a,), (b,) = (tmp_path / "a").glob("*.json"), (tmp_path / "b").glob("*.json")
    assert plain.exit_code == 0 and _numbers(R.load(a)) == _numbers(R.load(b))
