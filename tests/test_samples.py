"""--log-samples: per-image predictions beside each cell, read back by `results show --predictions`,
recomputing the recorded metrics exactly; an edited file is refused."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from msde_bench import CLASS_NAMES
from msde_bench import results as R
from msde_bench import samples as S
from msde_bench.cli import main
from msde_bench.errors import MsdeError
from msde_bench.metrics import FOLD_METRICS

TINY = ["--recipe", "quick", "--epochs", "1", "--folds", "2", "--image-size", "32", "--batch-size", "16",
        "--device", "cpu", "--no-progress", "--no-save-models"]


@pytest.fixture(scope="module")
def logged(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("logged")
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--out", str(out), "--log-samples", *TINY])
    assert res.exit_code == 0, res.output
    (path,) = out.glob("*.json")
    return out, path, R.load(path)


def test_every_test_image_has_a_line_and_the_metrics_recompute_exactly(logged):
    out, _, result = logged
    for f in result["folds"]:
        header, lines = S.read(out / f["samples_file"], f["samples_sha256"])
        assert header["format"] == S.SAMPLES_FORMAT and header["fold"] == f["fold"]
        assert header["run_id"] == result["run_id"] and header["classes"] == list(CLASS_NAMES)
        assert len(lines) == 2 * f["n_test_pairs"] == header["n_images"]
        assert {r["subject"] for r in lines} == set(f["test_subjects"])
        assert [r["view"] for r in lines[:2]] == ["non-masked", "masked"] and lines[0]["pair"] == lines[1]["pair"]
        for r in lines:
            probs = r["probs"]
            assert list(probs) == list(CLASS_NAMES) and sum(probs.values()) == pytest.approx(1, abs=1e-4)
            assert max(probs, key=probs.get) == r["prediction"] or probs[r["prediction"]] == max(probs.values())
        again = S.metrics(lines)
        assert set(again) == set(FOLD_METRICS)  # the table names every number fold_metrics makes
        for key in FOLD_METRICS:
            assert again[key] == f[key], key  # exactly, not approximately


def test_results_show_predictions_prints_rows_and_the_check(logged):
    _, path, result = logged
    res = CliRunner().invoke(main, ["results", "show", str(path), "--predictions", "--fold", "1"])
    assert res.exit_code == 0, res.output
    fold = result["folds"][1]
    assert f"fold 1: {2 * fold['n_test_pairs']} images" in res.output and "equal to the record" in res.output
    res = CliRunner().invoke(main, ["results", "show", str(path), "--predictions", "--format", "json"])
    rows = json.loads(res.output)
    assert len(rows) == sum(2 * f["n_test_pairs"] for f in result["folds"])
    correct = [r["label"] == r["prediction"] for r in rows if r["fold"] == 1 and r["view"] == "masked"]
    assert np.mean(correct) == pytest.approx(fold["acc_masked"])


def test_an_edited_predictions_file_is_refused(logged, tmp_path):
    out, path, result = logged
    f = result["folds"][0]
    src = out / f["samples_file"]
    lines = src.read_text().splitlines()
    row = json.loads(lines[1])
    row["prediction"] = row["label"]  # a "corrected" prediction
    copy = tmp_path / f["samples_file"]
    copy.parent.mkdir(parents=True)
    copy.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
    with pytest.raises(MsdeError, match="not the one the run wrote"):
        S.read(copy, f["samples_sha256"])
    moved = tmp_path / path.name
    moved.write_text(path.read_text())
    res = CliRunner().invoke(main, ["results", "show", str(moved), "--predictions", "--fold", "0"])
    assert res.exit_code != 0 and str(copy) in res.output and "SHA-256" in res.output


def test_a_run_without_log_samples_has_no_predictions_and_says_so(tiny_root, tmp_path):
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--out", str(tmp_path), "--fold", "0", *TINY])
    assert res.exit_code == 0, res.output
    assert not list(tmp_path.glob("*/*.samples.jsonl"))
    (path,) = tmp_path.glob("*.json")
    assert "samples_file" not in R.load(path)["folds"][0]
    res = CliRunner().invoke(main, ["results", "show", str(path), "--predictions"])
    assert res.exit_code != 0 and "without --log-samples" in res.output


def test_a_sweep_logs_samples_of_the_cells_it_runs(tiny_root, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(f'data = "{tiny_root}"\nrecipe = "quick"\nepochs = 1\nfolds = 2\nimage_size = 32\n'
                    'batch_size = 16\ndevice = "cpu"\nmodel = "resnet18"\nparadigm = "baseline"\n')
    res = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "r"), "--log-samples",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "r").glob("*.json")
    for f in R.load(path)["folds"]:
        _, lines = S.read(tmp_path / "r" / f["samples_file"], f["samples_sha256"])
        assert S.metrics(lines)["acc_masked"] == f["acc_masked"]


def test_under_best_epoch_selection_the_predictions_are_the_selected_epochs(tiny_root, tmp_path):
    from msde_bench import runner
    from msde_bench.data.msde import read_msde
    from msde_bench.spec import RunSpec

    spec = RunSpec(model="resnet18", paradigm="baseline", data=str(tiny_root), folds=2, epochs=3, image_size=32,
                   batch_size=16, device="cpu", protocol="faithful", run_folds=(0,),
                   options=(("train_on", "mixed"),))
    result, _ = runner.run(spec, read_msde(tiny_root), tmp_path, show_progress=False, save_models=False,
                           log_samples=True)
    fold = result["folds"][0]
    _, lines = S.read(tmp_path / fold["samples_file"], fold["samples_sha256"])
    again = S.metrics(lines)
    assert [again[k] for k in FOLD_METRICS] == [fold[k] for k in FOLD_METRICS]
    assert again["acc_overall"] == max(h["acc_overall"] for h in fold["history"])
