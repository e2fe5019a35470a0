"""Folds as cells: separate --fold runs merge into the result of one run; the Python API equals the CLI."""

import json

from click.testing import CliRunner

from msde_bench import results as R
from msde_bench.api import run_benchmark
from msde_bench.board import group_results as build
from msde_bench.board import load_all
from msde_bench.cli import main

ARGS = ["--data", None, "--recipe", "quick", "--epochs", "1", "--folds", "3", "--image-size", "32",
        "--batch-size", "16", "--device", "cpu", "--no-progress", "--paradigm", "contrastive"]


def _args(root, out, *extra):
    a = list(ARGS)
    a[1] = str(root)
    return ["run", *a, "--out", str(out), *extra]


def _per_fold(result):
    keys = ("fold", "test_subjects", "acc_non_masked", "acc_masked", "acc_overall", "confusion_masked")
    return [{k: f[k] for k in keys} for f in result["folds"]]


def test_three_fold_runs_merge_into_one_run(tiny_root, tmp_path):
    runner = CliRunner()
    whole = runner.invoke(main, _args(tiny_root, tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output
    (one,) = (tmp_path / "whole").glob("*.json")
    single = R.load(one)

    out = tmp_path / "cells"
    for k in (2, 0, 1):  # any order, as separate processes or machines would finish them
        res = runner.invoke(main, _args(tiny_root, out, "--fold", str(k)))
        assert res.exit_code == 0, res.output
    assert "merged into" in res.output
    merged = R.load(out / one.name)  # the whole spec's result, under the same run id
    assert merged["protocol"]["complete"] and merged["protocol"]["run_folds"] == [0, 1, 2]
    assert _per_fold(merged) == _per_fold(single)
    for key in ("acc_non_masked", "acc_masked", "acc_overall", "mask_gap"):  # timings differ, numbers do not
        assert merged["summary"][key] == single["summary"][key]

    # one leaderboard row: the merged result wins over the three one-fold results
    found, problems = load_all([out])
    assert not problems and len(found) == 4
    tables, superseded = build(found)
    (rows,) = tables.values()
    assert len(rows) == 1 and rows[0].complete and len(superseded) == 3

    # `results merge` rebuilds the same result from the cells alone
    (out / one.name).unlink()
    res = runner.invoke(main, ["results", "merge", str(out)])
    assert res.exit_code == 0 and one.name in res.output
    assert _per_fold(R.load(out / one.name)) == _per_fold(single)


def test_every_result_records_loss_terms_and_the_providing_plugin(tiny_root, tmp_path):
    result, path = run_benchmark("scn", "contrastive", data=str(tiny_root), recipe="quick", epochs=2, folds=2,
                                 run_folds=[0], image_size=32, batch_size=16, device="cpu", out=tmp_path)
    (hist,) = [f["train_history"] for f in result["folds"]]
    assert [h["epoch"] for h in hist] == [1, 2]
    # the paradigm's terms and the method's own sub-terms, per view
    assert {"loss", "align", "loss_non_masked", "loss_masked", "non_masked.wce", "masked.rank", "train_acc",
            "lr"} <= set(hist[0])
    assert result["method_plugin"]["plugin"] == "scn" and result["method_plugin"]["source"] == "in-tree"
    assert result["method_plugin"]["distribution"] == "msde-bench"
    assert isinstance(result["git_dirty"], (bool, type(None)))
    assert json.loads(path.read_text()) == result


def test_python_api_gives_the_same_result_file_as_the_cli(tiny_root, tmp_path):
    res = CliRunner().invoke(main, _args(tiny_root, tmp_path / "cli", "--fold", "0", "--opt", "alpha=2"))
    assert res.exit_code == 0, res.output
    (cli_path,) = (tmp_path / "cli").glob("*.json")
    result, path = run_benchmark("resnet18", "contrastive", data=str(tiny_root), recipe="quick", epochs=1, folds=3,
                                 run_folds=[0], image_size=32, batch_size=16, device="cpu", options={"alpha": 2.0},
                                 out=tmp_path / "api")
    assert path.name == cli_path.name
    cli = R.load(cli_path)
    assert cli["spec"] == result["spec"] and _per_fold(cli) == _per_fold(result)


def test_spec_reruns_a_recorded_run(tiny_root, tmp_path):
    first, path = run_benchmark("resnet18", "baseline", data=str(tiny_root), recipe="quick", epochs=1, folds=2,
                                run_folds=[1], image_size=32, batch_size=16, device="cpu", out=tmp_path / "a")
    res = CliRunner().invoke(main, ["run", "--spec", str(path), "--out", str(tmp_path / "b"), "--no-progress"])
    assert res.exit_code == 0, res.output
    again = R.load(tmp_path / "b" / path.name)
    assert _per_fold(again) == _per_fold(first)
    bad = CliRunner().invoke(main, ["run", "--spec", str(path), "--epochs", "3"])
    assert bad.exit_code == 2 and "cannot be combined with --epochs" in bad.output
