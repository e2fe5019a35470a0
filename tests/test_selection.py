"""Nested weight selection (issue 36, item 2): each fold chooses among an option's candidate values on a
validation split of its own training subjects; the test fold never takes part in the choice."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from msde_bench import selection as SEL
from msde_bench.cli import main
from msde_bench.data.msde import read_msde
from msde_bench.data.pairs import ImageCache
from msde_bench.errors import MsdeError
from msde_bench.protocol import Fold, make_folds
from msde_bench.runner import run_fold
from msde_bench.spec import RunSpec


def _spec(root, **kw):
    return RunSpec(paradigm="contrastive", data=str(root), folds=2, epochs=1, image_size=32, batch_size=16,
                   device="cpu", candidates=(("alpha", (1.0, 1000.0)),), select_on="val", **kw)


def test_the_validation_split_is_carved_from_the_training_subjects_only(tiny_root):
    ds = read_msde(tiny_root)
    spec = _spec(tiny_root)
    for fold in make_folds("clean", ds.subjects, ds.labels, 2, 0):
        inner, val, _ = SEL.validation_split(spec, fold, ds.subjects, ds.labels)
        test_subjects = set(ds.subjects[fold.test].tolist())
        assert not set(ds.subjects[val].tolist()) & test_subjects
        assert not set(ds.subjects[inner].tolist()) & set(ds.subjects[val].tolist())  # subject-disjoint
        assert sorted(np.concatenate([inner, val]).tolist()) == sorted(fold.train.tolist())


def test_the_choice_is_blind_to_the_test_fold(tiny_root):
    """The same fold with its test pairs' labels permuted chooses the same value from the same
    validation numbers; the choice and every candidate's numbers are recorded."""
    ds = read_msde(tiny_root)
    spec = _spec(tiny_root)
    fold = make_folds("clean", ds.subjects, ds.labels, 2, 0)[0]
    records = []
    for permute in (False, True):
        cache = ImageCache(ds, 32)
        if permute:
            test = torch.as_tensor(fold.test)
            shuffled = cache.labels[test][torch.randperm(len(test), generator=torch.Generator().manual_seed(3))]
            cache.labels[test] = (shuffled + 1) % 7  # every test label changed
        records.append(run_fold(spec, cache, fold, torch.device("cpu"), ds.subjects))
    a, b = (r["weights_chosen"] for r in records)
    assert a == b
    assert [c["values"] for c in a["candidates"]] == [{"alpha": 1.0}, {"alpha": 1000.0}]
    assert a["chosen"] in ({"alpha": 1.0}, {"alpha": 1000.0})
    assert not set(a["val_subjects"]) & set(fold.test_subjects)


def test_a_run_records_candidates_and_the_leaderboard_labels_it(tiny_root, tmp_path):
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--paradigm", "contrastive", "--recipe", "quick",
                                    "--epochs", "1", "--folds", "2", "--fold", "1", "--image-size", "32",
                                    "--batch-size", "16", "--device", "cpu", "--out", str(tmp_path), "--no-progress",
                                    "--no-save-models", "--opt", "alpha=1,100", "--select-on", "val"])
    assert res.exit_code == 0, res.output
    assert "2 candidates (alpha=[1.0, 100.0]) x 1 folds = 2 trainings" in " ".join(res.output.split())
    path = next(tmp_path.glob("*.json"))
    result = json.loads(path.read_text())
    assert result["spec"]["candidates"] == {"alpha": [1.0, 100.0]} and result["spec"]["select_on"] == "val"
    assert result["spec"]["options"]["alpha"] == 30.0  # the default stays; each fold's choice is in its record
    w = result["folds"][0]["weights_chosen"]
    assert len(w["candidates"]) == 2 and w["chosen"]["alpha"] in (1.0, 100.0)
    show = CliRunner().invoke(main, ["results", "show", str(path)])
    assert "fold 1: chose alpha=" in show.output and "validation acc_overall" in show.output, show.output
    from msde_bench.board import _paradigm_label

    assert "weights chosen on validation: alpha in {1, 100}" in _paradigm_label(result["spec"])


def test_a_spec_without_candidates_keeps_its_run_id():
    """Runs from before the fields exist keep their digests: unset fields are left out of the spec dict."""
    spec = RunSpec()
    assert "candidates" not in spec.to_dict() and "select_on" not in spec.to_dict()
    assert RunSpec.from_dict(_spec("x").to_dict()) == _spec("x")


@pytest.mark.parametrize("opts,message", [
    (["--opt", "align=mse,cosine", "--select-on", "val"], "--opt align=mse,cosine: align takes no list of candidates"),
    (["--opt", "alpha=,", "--select-on", "val"], "--opt alpha=,: an empty list of candidates"),
    (["--opt", "alpha=1,,10", "--select-on", "val"], "--opt alpha=1,,10: an empty value in the list"),
    (["--opt", "alpha=1,10"], "--opt alpha=1.0,10.0: a list of candidate values needs --select-on val"),
    (["--select-on", "val"], "--select-on val: no option has candidates"),
    (["--opt", "alpha=3,3", "--select-on", "val"], "--opt alpha=3.0: a list of candidates needs at least two"),
    (["--opt", "alpha=1,-1", "--select-on", "val"], "--opt alpha=-1: must be >= 0"),
])
def test_bad_candidate_lists_fail_before_anything_runs(tmp_path, opts, message):
    out = CliRunner().invoke(main, ["run", "--data", "synth:tiny", "--paradigm", "contrastive", "--device", "cpu",
                                    "--out", str(tmp_path / "o"), *opts])
    assert out.exit_code == 2, out.output
    assert out.output.strip().splitlines()[-1].startswith(f"error: {message}"), out.output
    assert not (tmp_path / "o").exists()


def test_a_set_too_small_for_an_inner_split_is_refused():
    subjects = np.array([0, 0, 1, 1, 2, 3])
    labels = np.array([0, 1, 0, 1, 2, 2])  # class 2: subjects 2 and 3 only
    fold = Fold(0, train=np.array([0, 1, 2, 3, 4]), test=np.array([5]), test_subjects=(3,))
    spec = RunSpec(folds=2, candidates=(("alpha", (1.0, 2.0)),), select_on="val", paradigm="contrastive")
    with pytest.raises(MsdeError, match="fold 0's training side has 1 subject of Disgust; an inner validation split "
                                        "needs at least 2 subjects per class"):
        SEL.check(spec, [fold], subjects, labels, ["Surprise", "Fear", "Disgust"])


def test_an_official_validation_split_that_shares_a_test_subject_is_refused():
    subjects = np.array([0, 1, 2, 3])
    labels = np.array([0, 0, 0, 0])
    fold = Fold(0, train=np.array([0, 1]), test=np.array([2]), test_subjects=(2,), val=np.array([3, 2]))
    spec = RunSpec(folds=1, candidates=(("alpha", (1.0, 2.0)),), select_on="val", paradigm="contrastive")
    with pytest.raises(MsdeError, match=r"fold 0's validation split shares subjects \[2\] with its test fold"):
        SEL.check(spec, [fold], subjects, labels)


def test_a_grid_chooses_weights_on_validation_and_the_sweep_says_the_cost(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('data = "synth:tiny"\nparadigm = "contrastive"\nfolds = 2\nepochs = 1\nselect_on = "val"\n'
                    'opt = { alpha = "1,10,100" }\n')
    out = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "r"), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "weights chosen on validation: 3 candidates (alpha=[1.0, 10.0, 100.0]) x 2 folds" in " ".join(out.output.split())
