"""End to end: the CLI on a tiny synthetic set, determinism, resume, options, result schema."""

import json
import os
import re

import pytest
import torch
from click.testing import CliRunner

from msde_bench import results as R
from msde_bench import runner, spec_build
from msde_bench.cli import main
from msde_bench.data.msde import read_msde
from msde_bench.errors import MsdeError, ResultError
from msde_bench.spec import RunSpec

TINY = ["--recipe", "quick", "--epochs", "1", "--folds", "2", "--image-size", "32", "--batch-size", "16",
        "--device", "cpu", "--no-progress"]
TIMING = ("train_seconds", "train_images_per_second", "record_sha256")  # the digest covers the timing too


def _spec(root, **kw):
    base = dict(model="resnet18", paradigm="baseline", data=str(root), folds=2, epochs=1, image_size=32,
                batch_size=16, device="cpu", options=(("train_on", "mixed"),))
    base.update(kw)
    return RunSpec(**base)


def _scores(result):
    return [{k: v for k, v in f.items() if k not in TIMING} for f in result["folds"]]


@pytest.fixture(scope="module")
def cli_run(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    res = CliRunner().invoke(main, ["run", "--model", "resnet18", "--paradigm", "baseline", "--data",
                                    str(tiny_root), "--out", str(out), *TINY])
    return res, out


def test_cli_run_end_to_end(cli_run, tiny_root):
    res, out = cli_run
    assert res.exit_code == 0, res.output
    files = list(out.glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("resnet18-baseline-synth-tiny-")
    result = R.load(files[0])
    assert result["protocol"]["split"] == "clean" and result["protocol"]["complete"] is True
    assert [f["fold"] for f in result["folds"]] == [0, 1]
    tested = sorted(s for f in result["folds"] for s in f["test_subjects"])
    assert tested == list(range(8))
    for f in result["folds"]:
        assert f["n_test_pairs"] == 7 * len(f["test_subjects"])
        assert sum(map(sum, f["confusion_masked"])) == f["n_test_pairs"]
        assert f["acc_overall"] == pytest.approx((f["acc_non_masked"] + f["acc_masked"]) / 2)
        assert not set(f["test_subjects"]) & set(f["train_subjects"])
    assert result["summary"]["acc_masked"]["n"] == 2
    assert result["dataset"]["n_pairs"] == 56
    assert result["spec"]["recipe"] == "quick"
    assert "| non-masked |" in res.output and f"result: {files[0]}" in res.output
    assert sorted(p.name for p in (out / result["run_id"]).iterdir()) == ["fold0.json", "fold0.pt", "fold1.json",
                                                                         "fold1.pt"]


def test_same_seed_same_metrics(tiny_root, tmp_path):
    ds = read_msde(tiny_root)
    spec = _spec(tiny_root, run_folds=(0,))
    a, _ = runner.run(spec, ds, tmp_path / "a", show_progress=False)
    b, _ = runner.run(spec, ds, tmp_path / "b", show_progress=False)
    assert _scores(a) == _scores(b)


def _kill_in_fold(monkeypatch, index):
    """Makes run_fold raise KeyboardInterrupt (as a killed run would stop) when it reaches fold `index`."""
    real = runner.run_fold

    def run_fold(spec, cache, fold, *a, **kw):
        if fold.index == index:
            raise KeyboardInterrupt
        return real(spec, cache, fold, *a, **kw)

    monkeypatch.setattr(runner, "run_fold", run_fold)
    return real


def test_resume_gives_the_same_numbers(tiny_root, tmp_path, monkeypatch):
    ds = read_msde(tiny_root)
    spec = _spec(tiny_root)
    full, _ = runner.run(spec, ds, tmp_path / "full", show_progress=False)

    real = _kill_in_fold(monkeypatch, 1)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, ds, out, show_progress=False)
    assert [p for p in out.iterdir() if p.is_file()] == []  # no result file yet
    (cells,) = [p for p in out.iterdir() if p.is_dir()]  # fold 0's cell, written on its own
    assert sorted(p.name for p in cells.iterdir()) == ["fold0.json", "fold0.pt"]
    assert json.loads((cells / "fold0.json").read_text())["record"]["fold"] == 0

    ran = []
    monkeypatch.setattr(runner, "run_fold", lambda spec, cache, fold, *a, **kw: ran.append(fold.index) or
                        real(spec, cache, fold, *a, **kw))
    resumed, path = runner.run(spec, ds, out, resume=True, show_progress=False)
    assert ran == [1]  # only the unfinished fold ran again
    assert _scores(resumed) == _scores(full)
    assert [p.name for p in out.iterdir() if p.is_file()] == [path.name]
    assert sorted(p.name for p in (out / resumed["run_id"]).iterdir()) == ["fold0.json", "fold0.pt", "fold1.json",
                                                                          "fold1.pt"]
    # resuming a finished run just returns it
    again, _ = runner.run(spec, ds, out, resume=True, show_progress=False)
    assert again == resumed


def test_resume_refuses_a_changed_dataset(tiny_copy, tmp_path, monkeypatch):
    ds = read_msde(tiny_copy)
    spec = _spec(tiny_copy)
    _kill_in_fold(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, ds, tmp_path, show_progress=False)
    img = tiny_copy / "MSD-E" / ds.pairs[0].name
    img.write_bytes(img.read_bytes() + b"\0")
    with pytest.raises(MsdeError, match="dataset changed"):
        runner.run(spec, read_msde(tiny_copy), tmp_path, resume=True, show_progress=False)


def test_faithful_protocol_selects_best_epoch(tiny_root, tmp_path):
    ds = read_msde(tiny_root)
    spec = _spec(tiny_root, protocol="faithful", epochs=2, run_folds=(0,))
    result, _ = runner.run(spec, ds, tmp_path, show_progress=False)
    fold = result["folds"][0]
    assert result["protocol"]["selection"] == "best-on-test"
    assert fold["test_subjects"] == [0, 1, 2, 3, 4]  # w = 8 // 2 = 4: IDs 0..4
    assert len(fold["history"]) == 2
    best = max(fold["history"], key=lambda h: h["acc_overall"])
    assert fold["selected_epoch"] == best["epoch"]
    assert fold["acc_overall"] == best["acc_overall"]
    assert result["protocol"]["complete"] is False


@pytest.mark.parametrize("train_on", ["non-masked", "masked"])
def test_train_on_options(tiny_root, tmp_path, train_on):
    ds = read_msde(tiny_root)
    spec = _spec(tiny_root, run_folds=(1,), options=(("train_on", train_on),))
    result, _ = runner.run(spec, ds, tmp_path, show_progress=False)
    # one view per pair: 28 train pairs, batches of 16 -> 28 images per epoch
    assert result["folds"][0]["train_images_per_second"] > 0
    assert result["spec"]["options"] == {"train_on": train_on}


def test_unknown_option_lists_valid_ones(tiny_root):
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--opt", "train_in=masked", *TINY])
    assert res.exit_code == 2
    assert "--opt train_in: unknown option; valid options here: " in res.output
    assert "train_on" in res.output and "quirk_double_softmax" in res.output


def test_bad_option_value(tiny_root):
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--opt", "train_on=both", *TINY])
    assert res.exit_code == 2
    assert "choose one of mixed, non-masked, masked" in res.output


def test_fold_out_of_range(tiny_root, tmp_path):
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--fold", "5", "--out", str(tmp_path), *TINY])
    assert res.exit_code == 2 and "--fold 5: out of range" in res.output


def test_result_round_trip_and_malformed_files(cli_run, tmp_path):
    _, out = cli_run
    path = next(out.glob("*.json"))
    good = json.loads(path.read_text())
    copy = tmp_path / "r.json"
    R.write_json_atomic(copy, good)
    assert R.load(copy) == good
    assert RunSpec.from_dict(good["spec"]).to_dict() == good["spec"]

    def broken(mutate, match):
        obj = json.loads(json.dumps(good))
        mutate(obj)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(obj))
        with pytest.raises(ResultError, match=match) as e:
            R.load(bad)
        assert str(bad) in str(e.value)

    broken(lambda o: o.update(schema="other/1"), "not an msde-bench result")
    broken(lambda o: o.pop("folds"), "missing field 'folds'")
    broken(lambda o: o["folds"][0].update(acc_masked=1.5), "not a fraction")
    broken(lambda o: o["folds"][1].pop("test_subjects"), r"folds\[1\] is missing 'test_subjects'")
    broken(lambda o: o["spec"].update(colour="red"), "spec is not a valid run spec")
    broken(lambda o: o["summary"].update(acc_masked={"mean": 1}), "summary.acc_masked")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ResultError, match="not valid JSON"):
        R.load(tmp_path / "junk.json")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    R.write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        R.write_json_atomic(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("damage,message", [
    (lambda c: c.write_text("[1, 2"), "not a readable cell file"),
    (lambda c: c.write_text("[1, 2]"), "not an msde-bench cell file"),
    (lambda c: c.write_text(json.dumps({**json.loads(c.read_text()),
                                        "record": {**json.loads(c.read_text())["record"], "acc_masked": 1.5}})),
     "record.acc_masked = 1.5 is not a fraction"),
    (lambda c: c.write_text(json.dumps({**json.loads(c.read_text()), "record": "x"})), "record is not an object"),
])
def test_resume_refuses_a_damaged_cell_before_training_anything(tiny_root, tmp_path, monkeypatch, damage, message):
    ds = read_msde(tiny_root)
    spec = _spec(tiny_root)
    real = _kill_in_fold(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, ds, tmp_path, show_progress=False)
    (cells,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    damage(cells / "fold0.json")
    ran = []
    monkeypatch.setattr(runner, "run_fold", lambda *a, **kw: ran.append(1) or real(*a, **kw))
    with pytest.raises(MsdeError, match=message) as e:
        runner.run(spec, ds, tmp_path, resume=True, show_progress=False)
    assert str(e.value).startswith(str(cells / "fold0.json")) and "delete it to run the fold again" in str(e.value)
    assert ran == []  # refused before fold 1 trained


def test_the_run_says_where_its_fold_models_are_and_how_big(cli_run):
    res, out = cli_run
    line = next(ln for ln in res.output.splitlines() if ln.startswith("fold models (for msde-bench explain):"))
    assert str(out) in line and "2 files" in line and " MB; --no-save-models skips them)" in line


def test_fold_models_are_announced_with_their_size_and_pruned(tiny_root, tmp_path):
    """Before training, a run says how many fold models it will save and how big; `results prune`
    removes the models of finished runs (dry run first), keeping every result file."""
    import shutil

    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--model", "resnet18", "--paradigm", "baseline", "--data", str(tiny_root),
                                    "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    (said,) = [ln for ln in res.output.splitlines() if ln.startswith("fold models: 2 x ")]
    (path,) = out.glob("*.json")
    models = sorted(out.glob("*/fold*.pt"))
    each = models[0].stat().st_size
    assert f"2 x {each / 1e6:.0f} MB will be saved" in said and len(models) == 2
    partial = tmp_path / "partial"  # an unfinished run's models stay
    shutil.copytree(out, partial)
    result = json.loads((partial / path.name).read_text())
    result["protocol"]["complete"] = False
    (partial / path.name).write_text(json.dumps(result))
    dry = CliRunner().invoke(main, ["results", "--results", str(out), "--results", str(partial), "prune", "--dry-run"])
    assert dry.exit_code == 0 and dry.output.count("would remove") == 2 and all(m.is_file() for m in models)
    pruned = CliRunner().invoke(main, ["results", "--results", str(out), "prune"])
    assert pruned.exit_code == 0 and "2 files" in pruned.output and not any(m.is_file() for m in models)
    assert R.load(path)["folds"][0]["acc_masked"] >= 0 and len(list(partial.glob("*/fold*.pt"))) == 2


def test_prune_keeps_a_model_that_a_kept_result_starts_from(tiny_root, tmp_path):
    """Issue 40 (5): a fold model that another result in the folder starts from (--init) stays, and
    `run --spec` of that result still works after the prune; the other models go."""
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--out", str(out), *TINY])
    assert first.exit_code == 0, first.output
    start = sorted(out.glob("*/fold0.pt"))[0]
    second = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--out", str(out), "--init", str(start),
                                       "--fold", "0", "--no-save-models", *TINY])
    assert second.exit_code == 0, second.output
    dry = CliRunner().invoke(main, ["results", "--results", str(out), "prune", "--dry-run"])
    assert dry.exit_code == 0 and str(start) not in dry.output and dry.output.count("would remove") == 1
    pruned = CliRunner().invoke(main, ["results", "--results", str(out), "prune"])
    assert pruned.exit_code == 0 and start.is_file() and not list(out.glob("*/fold1.pt"))


def test_plain_progress_lines_when_not_on_a_terminal(tiny_root, tmp_path):
    import io

    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    runner.run(_spec(tiny_root, run_folds=(0,)), read_msde(tiny_root), tmp_path, console=console,
               show_progress=None, save_models=False)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("fold 0 epoch")]
    assert len(lines) == 1 and lines[0].startswith("fold 0 epoch 1/1 · loss ") and " acc " in lines[0]
    assert lines[0].endswith(" s") and "lr 0.002" in lines[0]
    quiet = io.StringIO()
    runner.run(_spec(tiny_root, run_folds=(0,)), read_msde(tiny_root), tmp_path / "q",
               console=Console(file=quiet, force_terminal=False), show_progress="none", save_models=False)
    assert "epoch 1/1" not in quiet.getvalue()


def test_a_long_epoch_says_how_far_it_is_in_line_mode(tiny_root, tmp_path, monkeypatch):
    """In `lines` mode an epoch longer than the heartbeat prints a line within it (step, images/s,
    the epoch's ETA), so a long job in a log file is never silent for minutes."""
    import io

    from rich.console import Console

    from msde_bench import progress

    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.0)  # every step is "long ago"
    buf = io.StringIO()
    runner.run(_spec(tiny_root, run_folds=(0,)), read_msde(tiny_root), tmp_path, console=Console(file=buf, width=200),
               show_progress="lines", save_models=False)
    beats = [ln for ln in buf.getvalue().splitlines() if " · step " in ln]
    assert beats and all(re.match(r"fold 0 epoch 1/1 · step \d+/\d+ · \d+ images/s · \d+ s left in the epoch$", b)
                         for b in beats), beats


def test_the_embedded_set_keeps_the_quick_recipe_on_a_cpu():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert spec_build.default_recipe(None, cpu) == "quick" and spec_build.default_recipe("synth:tiny", cpu) == "quick"
    assert spec_build.default_recipe("/data/MSD-E", cpu) == "paper" and spec_build.default_recipe(None, gpu) == "paper"


def test_leaderboard_of_your_own_results_goes_to_stdout(tmp_path, monkeypatch, cli_run):
    _, out = cli_run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "leaderboard").mkdir()
    res = CliRunner().invoke(main, ["leaderboard", "--results", str(out)])
    assert res.exit_code == 0 and res.output.startswith("<!-- generated by `msde-bench leaderboard`")
    assert list((tmp_path / "leaderboard").iterdir()) == []  # the committed file is never overwritten
    check = CliRunner().invoke(main, ["leaderboard", "--results", str(out), "--check"])
    assert check.exit_code == 2 and "--check compares a file: give --output FILE" in check.output


def test_compile_runs_the_forward_through_torch_compile_and_records_it(tiny_root, tmp_path, monkeypatch):
    """--compile calls Module.compile on every trained model (here with torch's eager backend, so the test
    does not wait for a C++ compiler) and records it; the numbers are the eager run's."""
    monkeypatch.setenv("MSDE_BENCH_COMPILE", "0")  # restored after the test: --compile sets it for the process
    compiled = []
    original = torch.nn.Module.compile

    def eager_compile(self, *args, **kwargs):
        compiled.append(type(self).__name__)
        return original(self, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    args = ["run", "--model", "resnet18", "--paradigm", "distill", "--data", str(tiny_root), *TINY, "--fold", "0",
            "--opt", "teacher_epochs=1"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "compiled"), "--compile"])
    assert res.exit_code == 0, res.output
    assert compiled == ["PlainClassifier", "PlainClassifier"]  # the distill teacher the fold trains, the student
    plain = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "plain")])  # (the teacher comes from the cache)
    assert plain.exit_code == 0, plain.output
    assert len(compiled) == 2
    (a,), (b,) = (list((tmp_path / d).glob("*.json")) for d in ("plain", "compiled"))
    a, b = R.load(a), R.load(b)
    assert a["env"]["compile"] is False and b["env"]["compile"] is True
    assert b["folds"][0]["paradigm"]["teacher"].startswith("trained")  # the compiled run trained the teacher
    assert [{k: v for k, v in f.items() if k != "paradigm"} for f in _scores(a)] == [
        {k: v for k, v in f.items() if k != "paradigm"} for f in _scores(b)]


def test_compiled_graphs_are_cached_in_the_cache_home(tmp_path, monkeypatch):
    """--compile points TorchInductor's cache into $MSDE_BENCH_HOME/torch-compile (a later run or sweep
    worker finds the graphs compiled), unless the user set TORCHINDUCTOR_CACHE_DIR."""
    from msde_bench.device import compile_setting

    monkeypatch.setenv("MSDE_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("MSDE_BENCH_COMPILE", "0")
    assert compile_setting() is False and "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    assert compile_setting(True) is True
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "home" / "torch-compile")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_setting(True) and os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_the_non_masked_baseline_fold_is_the_distill_teacher(tiny_root, tmp_path, monkeypatch):
    """Issue 16: a distill fold's teacher is the model that the non-masked baseline of the same settings
    trains on the fold (same spec, same fold seed). The baseline run caches its fold model as the teacher
    and a later distill run (compare's order) loads it instead of training it again; a distill run that
    trains its own teacher gets the same weights bit for bit, and the same numbers."""
    from msde_bench.checkpoints import read_model

    args = ["run", "--model", "resnet18", "--data", str(tiny_root), *TINY, "--fold", "1"]
    monkeypatch.setenv("MSDE_BENCH_HOME", str(tmp_path / "home-a"))
    res = CliRunner().invoke(main, [*args, "--paradigm", "baseline", "--opt", "train_on=non-masked",
                                    "--out", str(tmp_path / "a"), "--save-models"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "home-a" / "teachers").glob("*.pt"))) == 1
    res = CliRunner().invoke(main, [*args, "--paradigm", "distill", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    monkeypatch.setenv("MSDE_BENCH_HOME", str(tmp_path / "home-b"))  # an empty cache: distill trains its teacher
    res = CliRunner().invoke(main, [*args, "--paradigm", "distill", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output

    (baseline,) = [R.load(p) for p in (tmp_path / "a").glob("resnet18-baseline-*.json")]
    reused, trained = (R.load(next((tmp_path / d).glob("resnet18-distill-*.json"))) for d in ("a", "b"))
    assert reused["folds"][0]["paradigm"]["teacher"].startswith("cache ")
    assert trained["folds"][0]["paradigm"]["teacher"].startswith("trained")
    # the reused teacher's training time is the baseline fold's, so the distill fold still counts it
    assert reused["folds"][0]["paradigm"]["teacher_train_seconds"] == baseline["folds"][0]["train_seconds"]
    assert [{k: v for k, v in f.items() if k != "paradigm"} for f in _scores(reused)] == [
        {k: v for k, v in f.items() if k != "paradigm"} for f in _scores(trained)]
    (teacher_file,) = (tmp_path / "home-b" / "teachers").glob("*.pt")
    teacher = torch.load(teacher_file, weights_only=True)["state_dict"]
    (model_file,) = (tmp_path / "a").glob("resnet18-baseline-*/fold1.pt")
    model = read_model(model_file)["state_dict"]
    assert teacher.keys() == model.keys() and all(torch.equal(teacher[k], model[k]) for k in model)


def test_a_baseline_publishes_no_teacher_that_another_process_is_training(tmp_path):
    """A non-masked baseline fold offers its model to the teacher cache only when it can take the
    teacher's lock at once: while a distill run trains that teacher, the baseline trains on without
    waiting and writes nothing; a cached teacher is never overwritten."""
    from msde_bench import teachers

    spec = RunSpec(paradigm="baseline", options=(("train_on", "non-masked"),))
    assert teachers.is_teacher_spec(spec) and not teachers.is_teacher_spec(spec.with_(options=()))
    pub = teachers.TeacherCache(spec, 0, 123, "fingerprint", [1, 2])
    other = teachers.TeacherCache(spec, 0, 123, "fingerprint", [1, 2]).lock()
    with other:  # a distill run training the teacher (a separate lock: another process's)
        assert pub.claim() is False
    assert pub.claim() is True
    pub.publish(torch.nn.Linear(2, 2), 1.5)
    pub.release()
    assert torch.load(pub.path, weights_only=True)["meta"]["train_seconds"] == 1.5
    again = teachers.TeacherCache(spec, 0, 123, "fingerprint", [1, 2])
    assert again.path == pub.path and again.claim() is False
