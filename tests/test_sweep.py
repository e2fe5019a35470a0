"""msde-bench sweep: grid files, cells on local workers, skip, failures, merge equal to serial runs."""

import json
import os
import textwrap

import pytest
import torch
from click.testing import CliRunner

from msde_bench import results as R
from msde_bench.cli import main
from msde_bench.grid import GridError, load_grid
from msde_bench.sweep import plan

GRID = """
    data = "{root}"
    recipe = "quick"
    epochs = 1
    folds = 2
    image_size = 32
    batch_size = 16
    device = "cpu"
    model = ["resnet18", "scn"]
    paradigm = ["baseline", "distill"]
"""


def _grid(tmp_path, text, **fmt):
    path = tmp_path / "grid.toml"
    path.write_text(textwrap.dedent(text).format(**fmt))
    return path


def _per_fold(result):
    return [{k: f[k] for k in ("fold", "acc_non_masked", "acc_masked", "confusion_masked")} for f in result["folds"]]


def test_grid_expansion_include_exclude(tmp_path):
    path = _grid(tmp_path, """
        data = "synth:tiny"
        epochs = 1
        model = ["resnet18", "scn"]
        paradigm = ["baseline", "contrastive"]
        seed = [0, 1, 2]
        [[exclude]]
        model = "scn"
        paradigm = "contrastive"
        seed = [1, 2]
        [[include]]
        model = "resnet18"
        opt = {{ train_on = ["non-masked", "masked"] }}
    """)
    runs, settings = load_grid(path)
    assert len(runs) == 12 - 2 + 2 and settings == {}
    assert sum(1 for r in runs if r.args["model"] == "scn" and r.args["paradigm"] == "contrastive") == 1
    inc = [r.args for r in runs if r.origin == "include[0]"]
    assert [a["options"]["train_on"] for a in inc] == ["non-masked", "masked"]
    assert all(a["data"] == "synth:tiny" and a["epochs"] == 1 and "seed" not in a for a in inc)


@pytest.mark.parametrize("text,message", [
    ("model = [\"resnet18\"\nepochs = 1\n", "not valid TOML"),
    ("modle = \"resnet18\"\n", "unknown key 'modle'"),
    ("opt = \"alpha=2\"\n", "opt must be a table"),
])
def test_bad_grid_files(tmp_path, text, message):
    with pytest.raises(GridError, match=message):
        load_grid(_grid(tmp_path, text))


def test_a_bad_entry_is_named_before_anything_runs(tiny_root, tmp_path):
    path = _grid(tmp_path, GRID + "\n[[include]]\nmodel = \"nosuch\"\n", root=tiny_root)
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out")])
    label = "nosuch baseline seed=0 epochs=1 image_size=32 batch_size=16"  # the run's label names its settings
    assert res.exit_code == 2 and f"include[0] ({label}): unknown model 'nosuch'" in res.output
    assert not (tmp_path / "out").exists()


def test_two_workers_equal_serial_runs_skip_and_failures(tiny_root, tmp_path, monkeypatch):
    path = _grid(tmp_path, GRID + "\n[[include]]\nmodel = \"ran\"\nopt = {{ crops = 99 }}\n", root=tiny_root)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--workers", "2", "--no-progress"])
    # the bad cell fails in its worker, the others finish
    assert res.exit_code == 1, res.output
    assert "| done    |       8 |" in res.output and "| failed  |       2 |" in res.output
    assert "--opt crops=99: choose 0-7" in res.output and "fold0.log" in res.output
    results = {p.name: R.load(p) for p in out.glob("*.json")}
    assert len(results) == 4 and all(r["protocol"]["complete"] for r in results.values())

    # each equals a serial `msde-bench run` of the same spec with the same torch threads (2 workers on
    # this 2-core test budget get 1 thread each), fold for fold; distill trains its teacher in the cell
    threads = torch.get_num_threads()
    (worker_threads,) = {r["env"]["threads"] for r in results.values()}
    torch.set_num_threads(worker_threads)
    monkeypatch.setenv("OMP_NUM_THREADS", str(worker_threads))  # `run` keeps the threads it is given
    for name, swept in results.items():
        s = swept["spec"]
        serial = CliRunner().invoke(main, ["run", "--model", s["model"], "--paradigm", s["paradigm"], "--data",
                                           str(tiny_root), "--recipe", "quick", "--epochs", "1", "--folds", "2",
                                           "--image-size", "32", "--batch-size", "16", "--device", "cpu", "--out",
                                           str(tmp_path / "serial"), "--no-progress"])
        assert serial.exit_code == 0, serial.output
        assert _per_fold(R.load(tmp_path / "serial" / name)) == _per_fold(swept)
    torch.set_num_threads(threads)

    # a rerun skips every finished cell and leaves the failed ones alone; --retry-failed runs only those
    planned, _ = plan(path, out)
    assert sorted(p.state[f] for p in planned for f in p.state) == ["done"] * 8 + ["failed"] * 2
    again = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--no-progress"])
    assert "| skipped        |       8 |" in again.output and "failed earlier" in again.output
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    retry = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--retry-failed", "--no-progress"])
    assert "| failed  |       2 |" in retry.output and "| skipped |       8 |" in retry.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == before


def test_a_killed_sweep_resumes_from_its_cells(tiny_root, tmp_path):
    path = _grid(tmp_path, GRID, root=tiny_root)
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--no-progress"])
    assert first.exit_code == 0, first.output
    full = {p.name: R.load(p) for p in out.glob("*.json")}
    # as if killed: two results and one cell never written
    victims = sorted(full)[:2]
    for name in victims:
        (out / name).unlink()
    run_id = victims[0][:-5]
    (out / run_id / "fold1.json").unlink()
    dry = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--dry-run"])
    assert dry.output.count("would run") == 1
    again = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--progress", "lines"])
    assert again.exit_code == 0 and "| done    |       1 |" in again.output and "| skipped |       7 |" in again.output
    assert f"cell {run_id} fold 1: done (" in again.output and "; 1/1 cells)" in again.output  # a line per cell
    # the cell that completes a run says so, with the result file written at that moment
    # (rich folds long lines, inside a path too: compare without white space)
    assert f"1/1cells)->result{out / victims[0]}" in "".join(again.output.split())
    for name in victims:
        assert _per_fold(R.load(out / name)) == _per_fold(full[name])
    log = (out / run_id / "fold1.log").read_text()
    assert "fold 1: non-masked" in log and json.loads((out / run_id / "fold1.json").read_text())["record"]["fold"] == 1
    assert "fold 1 epoch 1/1 · loss" in log  # a line per epoch: a long cell's log shows how far it is


def test_a_run_is_merged_as_soon_as_its_last_cell_is_done(tiny_root, tmp_path):
    """A run's result file is written when its last cell finishes, not when the whole sweep ends: a
    sweep of hours gives the results of its finished runs as they come (on_done is told the file)."""
    from msde_bench import api

    grid = GRID.replace('model = ["resnet18", "scn"]', 'model = "resnet18"').replace(
        'paradigm = ["baseline", "distill"]', 'paradigm = "baseline"\nseed = [0, 1]')
    path = _grid(tmp_path, grid, root=tiny_root)
    out = tmp_path / "out"
    calls = []

    def on_done(task, report):
        calls.append((task.run_id, report.get("result"), {p.name for p in out.glob("*.json")}))

    report = api.run_sweep(path, out=out, workers=1, threads=1, on_done=on_done)
    assert [r["status"] for r in report.rows] == ["done"] * 4 and len(calls) == 4
    run_ids = {c[0] for c in calls}
    assert len(run_ids) == 2 and sorted(report.merged) == sorted(out / f"{r}.json" for r in run_ids)
    for run_id in run_ids:
        last = max(i for i, c in enumerate(calls) if c[0] == run_id)
        assert calls[last][1] == out / f"{run_id}.json" and f"{run_id}.json" in calls[last][2]
        assert all(c[1] is None for i, c in enumerate(calls) if c[0] == run_id and i != last)
        assert R.load(out / f"{run_id}.json")["protocol"]["complete"]
    # the first run to finish had its file while the other run's cells were still to come
    first = min(run_ids, key=lambda r: max(i for i, c in enumerate(calls) if c[0] == r))
    assert f"{first}.json" in calls[-1][2] and calls[-1][0] != first


def _real_grid_run_ids(path) -> set[str]:
    """The run ids a real-face grid plans, known without converting its data (its protocol is given)."""
    from msde_bench.api import build_spec
    from msde_bench.data.sources import converted_name
    from msde_bench.grid import load_grid

    ids = set()
    for run in load_grid(path)[0]:
        args = dict(run.args)
        protocol = args.pop("protocol")
        spec = build_spec(**args)
        spec = spec.with_(protocol=protocol, folds=1 if protocol == "holdout" else spec.folds).whole()
        ids.add(spec.run_id(converted_name(spec.data)))
    return ids


#: the leaderboard's grids whose sweeps are still running (their finished runs are committed as they
#: come); once every run of one is committed it moves to the list of complete grids below
RUNNING_GRIDS: tuple[str, ...] = ("real-ckplus-fer-pretrained-paradigms.toml",)


def test_the_committed_grids_are_the_committed_leaderboard():
    """The committed results are exactly what the leaderboard's grids plan: leaderboard/grid.toml (the
    synthetic set) its results, every cell done; the real-face grids the others (no real-face row is
    missing, none is extra)."""
    root = os.path.join(os.path.dirname(__file__), "..")
    results = os.path.join(root, "leaderboard", "results")
    planned, out = plan(os.path.join(root, "leaderboard", "grid.toml"), results)
    committed = {p[:-5] for p in os.listdir(results) if p.endswith(".json")}
    synthetic = {p.run_id for p in planned}
    assert all(s == "done" for p in planned for s in p.state.values())
    assert synthetic == {c for c in committed if "-synth-" in c}
    real = set()
    for grid in ("real-ckplus.toml", "real-fer2013.toml", "real-ckplus-fer-pretrained.toml",
                 "real-ckplus-paradigms.toml"):
        real |= _real_grid_run_ids(os.path.join(root, "leaderboard", grid))
    # M-CK+: 5 ResNet-18 rows x 3 seeds, 8 methods x 3 paradigms; M-FER-2013: 5; M-CK+ from FER-2013: 5 x 3;
    # the paradigms at the default weights (issue 36): 2 x 3 seeds
    assert len(real) == 15 + 24 + 5 + 15 + 6
    # grids still running (their finished runs are committed as they come): none extra, some may be missing
    running = set()
    for grid in RUNNING_GRIDS:
        running |= _real_grid_run_ids(os.path.join(root, "leaderboard", grid))
    assert not running & real
    extra = committed - synthetic - real
    assert extra <= running, sorted(extra - running)
    assert committed - synthetic - extra == real, sorted(real - committed)


FAKE_SLURM = os.path.join(os.path.dirname(__file__), "fake_slurm")


def test_slurm_executor_against_fake_slurm_commands(tiny_root, tmp_path, monkeypatch):
    """As submitit's own tests do: fake sbatch/srun/sacct/scancel on PATH record the generated
    script and run its array tasks locally; the merged results equal serial runs."""
    monkeypatch.setenv("PATH", f"{FAKE_SLURM}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(tmp_path / "slurm"))
    path = _grid(tmp_path, GRID.replace('model = ["resnet18", "scn"]', 'model = "resnet18"'), root=tiny_root)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--executor", "slurm", "--slurm-partition",
                                    "debugq", "--slurm-gpus-per-task", "1", "--slurm-time", "30",
                                    "--slurm-array-parallelism", "2", "--slurm-opt", "account=fer", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "| done    |       4 |" in res.output
    (script,) = (tmp_path / "slurm").glob("sbatch_*.sh")
    text = script.read_text()
    for line in ("#SBATCH --array=0-3%2", "#SBATCH --partition=debugq", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --time=30", "#SBATCH --account=fer"):
        assert line in text, text
    # --status: each cell with the state sacct reports for its array task
    job = script.name[len("sbatch_"):-len(".sh")]
    (tmp_path / "slurm" / "sacct.txt").write_text("".join(f"{job}_{i}|COMPLETED|node1\n" for i in range(4)))
    status = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--status"])
    assert status.exit_code == 0 and status.output.count("| COMPLETED |") == 4, status.output
    results = {p.name: R.load(p) for p in out.glob("*.json")}
    assert len(results) == 2
    for name, swept in results.items():
        monkeypatch.setenv("OMP_NUM_THREADS", str(swept["env"]["threads"]))
        torch.set_num_threads(swept["env"]["threads"])
        s = swept["spec"]
        serial = CliRunner().invoke(main, ["run", "--paradigm", s["paradigm"], "--data", str(tiny_root), "--recipe",
                                           "quick", "--epochs", "1", "--folds", "2", "--image-size", "32",
                                           "--batch-size", "16", "--device", "cpu", "--out", str(tmp_path / "serial"),
                                           "--no-progress"])
        assert serial.exit_code == 0, serial.output
        assert _per_fold(R.load(tmp_path / "serial" / name)) == _per_fold(swept)


def test_slurm_without_its_commands_submits_nothing(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(os.__file__))  # no sbatch there
    path = _grid(tmp_path, GRID, root=tiny_root)
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out"), "--executor", "slurm"])
    assert res.exit_code == 2 and "sbatch, sacct, scancel, srun not found on PATH" in res.output
    assert not list((tmp_path / "out").glob("**/*.json"))


def test_ray_executor_runs_cells_on_a_local_ray(tiny_root, tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="the ray extra is part of the test extra; installed by .ci/run")
    path = _grid(tmp_path, GRID.replace('model = ["resnet18", "scn"]', 'model = "resnet18"')
                 .replace('paradigm = ["baseline", "distill"]', 'paradigm = "baseline"'), root=tiny_root)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--executor", "ray", "--workers", "2",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "| done    |       2 |" in res.output
    (result,) = [R.load(p) for p in out.glob("*.json")]
    assert result["protocol"]["complete"] and result["env"]["threads"] == 1
    bad = CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "o2"), "--executor", "ray",
                                    "--ray-address", "127.0.0.1:1"])
    assert bad.exit_code == 2 and "--ray-address 127.0.0.1:1: cannot connect" in bad.output


def test_an_output_folder_that_cannot_be_made_fails_before_anything_runs(tiny_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = _grid(tmp_path, GRID, root=tiny_root)
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(blocker / "out")])
    assert res.exit_code == 2 and f"{blocker}/out: cannot write to this results folder" in res.output


def test_a_requeued_slurm_cell_is_the_same_task():
    """On timeout or preemption submitit calls checkpoint(): the resubmission runs the same cell again."""
    from msde_bench.executors.slurm import CellJob
    from msde_bench.executors.task import Task

    task = Task(spec={"model": "resnet18"}, fold=3, dataset={"name": "d", "fingerprint": "f"}, out="o")
    from msde_bench.executors.task import execute

    again = CellJob(execute).checkpoint(task)
    assert isinstance(again.function, CellJob) and again.function.execute is execute
    assert again.args == (task,) and again.kwargs == {}


@pytest.mark.parametrize("executor,module", [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_extra_names_the_pip_command(tiny_root, tmp_path, monkeypatch, executor, module):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    path = _grid(tmp_path, GRID, root=tiny_root)
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out"), "--executor", executor])
    assert res.exit_code == 2 and f"pip install 'msde-bench[{executor}]'" in res.output, res.output


def test_the_slurm_jobs_through_submitits_local_executor(tiny_root, tmp_path):
    from msde_bench.executors import slurm
    from msde_bench.executors.task import execute

    path = _grid(tmp_path, GRID.replace('model = ["resnet18", "scn"]', 'model = "resnet18"')
                 .replace('paradigm = ["baseline", "distill"]', 'paradigm = "baseline"'), root=tiny_root)
    planned, out = plan(path, tmp_path / "out")
    tasks = [t for p in planned for t in p.tasks]
    reports = slurm.run(tasks, execute, cluster="local")
    assert sorted(t.fold for t, _ in reports) == [0, 1] and all(r["status"] == "done" for _, r in reports)
    assert all(t.path.is_file() and t.path.parent.parent == out.resolve() for t in tasks)


def test_a_local_worker_ends_with_its_sweep(tmp_path):
    """Killing `msde-bench sweep` (SIGTERM or SIGKILL) ends its local workers too, within seconds: an
    orphaned worker would train on, write cells nobody waits for and compete with the next sweep."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "pool.py"
    script.write_text(
        "import multiprocessing as mp, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from msde_bench.executors import local\n"
        "def work(path):\n"
        "    open(path, 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('spawn')\n"
        "    with ProcessPoolExecutor(1, mp_context=ctx, initializer=local._init_worker,\n"
        "                             initargs=(ctx.Value('i', 0), 1, 1, 0, 1, os.getpid())) as pool:\n"
        "        pool.submit(work, sys.argv[1]).result()\n")
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    try:
        deadline = time.time() + 60
        while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline:
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(worker, signal.SIGKILL)
            raise AssertionError("the worker outlived its sweep")
    finally:
        parent.kill()


def test_a_stopped_sweep_says_what_finished_and_how_to_go_on(tiny_root, tmp_path):
    """SIGTERM (a scheduler's stop) to `msde-bench sweep`: it stops at once, without waiting for the
    running cell (it leaves no file), names the cells that finished and the command that continues
    (exit 130); the rerun skips those cells."""
    import signal
    import subprocess
    import sys
    import time

    grid = GRID.replace('model = ["resnet18", "scn"]', 'model = "resnet18"').replace("epochs = 1", "epochs = 3")
    path = _grid(tmp_path, grid, root=tiny_root)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "msde_bench.cli", "sweep", str(path), "--out", str(out), "--progress", "lines",
           "--workers", "1", "--threads", "1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list(out.glob("*/fold*.json")):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "cells finished in this sweep: " in stderr and "interrupted: every finished cell is kept" in stderr
    named = stderr.split("cells finished in this sweep: ")[1].splitlines()[0]
    files = sorted(f"{p.parent.name} fold {p.stem[4:]}" for p in out.glob("*/fold*.json"))
    kept = len(files)
    assert kept >= 1 and sorted(named.split(", ")) == files  # the running cell was not waited for
    again = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--dry-run"])
    assert again.output.count("| done ") >= kept


def test_a_killed_worker_fails_its_own_cell_only_and_retry_failed_retries_it(tmp_path):
    """Issue 40 (15): a local worker killed (SIGKILL, as the out-of-memory killer does) while it runs one
    cell fails that cell only, with the cause, and writes its failed marker; the pool it broke is
    replaced and every other cell (running alongside, or not started) finishes; the failed marker is
    what `sweep --retry-failed` retries (and what the sweep's plan reads as failed)."""
    import subprocess
    import sys

    script = tmp_path / "pool.py"
    script.write_text(textwrap.dedent("""
        import json, os, signal, sys, time
        from msde_bench import results as R
        from msde_bench.executors import local
        from msde_bench.executors.base import Task
        from msde_bench.spec import RunSpec

        def work(task):
            R.write_json_atomic(task.running_marker, dict(pid=os.getpid()))
            if task.fold == 1:
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(1.5)
            task.running_marker.unlink()
            return dict(status="done", error=None, log=str(task.log), seconds=1.0)

        if __name__ == "__main__":
            spec = RunSpec(folds=5).to_dict()
            tasks = [Task(spec=spec, fold=k, dataset=dict(name="x", fingerprint="f"), out=sys.argv[1])
                     for k in range(5)]
            for t in tasks:
                t.running_marker.parent.mkdir(parents=True, exist_ok=True)
            done = local.run(tasks, work, workers=2, threads=1)
            print(json.dumps({t.fold: r for t, r in done}))
        """))
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    reports = {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
    assert sorted(reports) == [0, 1, 2, 3, 4]
    assert [k for k, r in reports.items() if r["status"] == "failed"] == [1], reports
    assert reports[1]["error"].startswith("worker died (killed by signal 9")
    markers = sorted(p.name for p in (tmp_path / "out").rglob("*.failed.json"))
    assert markers == ["fold1.failed.json"] and not list((tmp_path / "out").rglob("*.running"))


def test_a_merge_that_meets_an_edited_cell_says_so_and_fails_the_sweep(tiny_root, tmp_path, monkeypatch):
    """Issue 40 (16): a run whose cells are all done but one of them was edited before the merge read it
    (its digest no longer matches): the sweep names the run and the cell, writes no result for it, and
    exits != 0 (it had exited 0 with no result and no reason)."""
    from msde_bench import sweep as SW

    one = GRID.replace('model = ["resnet18", "scn"]', 'model = "resnet18"').replace('paradigm = ["baseline", "distill"]', "")
    path = _grid(tmp_path, one, root=tiny_root)
    out = tmp_path / "out"
    merge_results = SW.merge_results

    def edit_then_merge(planned, out_, track=None, refused=None):
        for cell in sorted(out.glob("*/fold1.json")):  # edited after the cells ran, before the merge
            obj = json.loads(cell.read_text())
            obj["record"]["acc_masked"] = 0.99
            cell.write_text(json.dumps(obj))
        return merge_results(planned, out_, track, refused)

    monkeypatch.setattr(SW, "merge_results", edit_then_merge)
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), "--no-progress", "--workers", "1"])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "not merged: resnet18-baseline-" in text and "fold1.json" in text and "edited" in text, text
    assert not list(out.glob("*.json"))
