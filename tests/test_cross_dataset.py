"""Cross-dataset runs (`--test-data`): each fold trains on its training pairs and is scored on another
set, its own test fold kept beside it; refused before training when the test set is the training set,
has a class the training set lacks, or under `faithful`; specs without it keep their run ids."""

import json

import pytest
from click.testing import CliRunner

from msde_bench import results as R
from msde_bench import samples as S
from msde_bench.cli import main
from msde_bench.data.msde import read_msde
from msde_bench.leaderboard import render_results
from msde_bench.spec import RunSpec

TINY = ["--recipe", "quick", "--epochs", "1", "--folds", "2", "--image-size", "32", "--batch-size", "16",
        "--device", "cpu", "--no-progress", "--no-save-models"]


def test_each_fold_is_scored_on_the_other_set_and_keeps_its_own_numbers(tiny_root, other_set, tmp_path):
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--test-data", str(other_set), "--out",
                                    str(tmp_path), "--log-samples", *TINY])
    assert res.exit_code == 0, res.output
    assert "cross-dataset" in res.output and f"tested on {other_set}" in " ".join(res.output.split())
    (path,) = tmp_path.glob("*.json")
    run = R.load(path)
    assert run["spec"]["test_data"] == str(other_set)
    other = read_msde(other_set)
    assert run["test_dataset"]["fingerprint"] == other.fingerprint() != run["dataset"]["fingerprint"]
    assert run["test_dataset"]["scored_on"] == "every pair"
    for f in run["folds"]:
        assert f["n_test_pairs"] == 56 and f["test_subjects"] == list(range(8))  # all of the other set
        assert f["in_domain"]["n_pairs"] == 28 and 0 <= f["in_domain"]["acc_masked"] <= 1
        _, lines = S.read(tmp_path / f["samples_file"], f["samples_sha256"])
        assert len(lines) == 112 and {r["pair"] for r in lines} == {p.name for p in other.pairs}
        assert S.metrics(lines)["acc_masked"] == f["acc_masked"]
    plain = RunSpec.from_dict({k: v for k, v in run["spec"].items() if k != "test_data"})
    assert plain.digest() != RunSpec.from_dict(run["spec"]).digest()  # the test set names another run
    # the leaderboard: a table of the set scored, saying what it was trained on
    text = render_results([dict(run, _path=str(path))], [], ["x"])
    name = run["dataset"]["name"]
    assert f"## {name} (trained on {name})" in text and f"**Cross-dataset:** trained on {name}" in text


def test_a_spec_without_test_data_keeps_its_digest():
    spec = RunSpec(model="resnet18", data="synth:small")
    assert "test_data" not in spec.to_dict()
    assert spec.digest() == RunSpec.from_dict(spec.to_dict()).digest()
    assert spec.with_(test_data="x").to_dict()["test_data"] == "x"


@pytest.mark.parametrize("case", ["same", "faithful"])
def test_refused_before_training(tiny_root, tmp_path, case):
    args = ["run", "--data", str(tiny_root), "--out", str(tmp_path), *TINY]
    if case == "same":
        args += ["--test-data", str(tiny_root)]
        expect = "the same images as --data"
    else:
        args += ["--test-data", "synth:tiny", "--protocol", "faithful"]
        expect = "not with --protocol faithful"
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and expect in res.output, res.output
    assert not list(tmp_path.iterdir())


def test_a_grid_can_name_a_test_set(tiny_root, other_set, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(f'data = "{tiny_root}"\ntest_data = "{other_set}"\nrecipe = "quick"\nepochs = 1\nfolds = 2\n'
                    'image_size = 32\nbatch_size = 16\ndevice = "cpu"\nmodel = "resnet18"\nparadigm = "baseline"\n'
                    'fold = 0\n')
    res = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "r"), "--no-progress"])
    assert res.exit_code == 0, res.output  # `fold = 0`: one fold, written bare
    (cell,) = (tmp_path / "r").glob("*/fold*.json")
    rec = json.loads(cell.read_text())["record"]
    assert cell.name == "fold0.json" and rec["n_test_pairs"] == 56
    assert rec["test_dataset"]["fingerprint"] == read_msde(other_set).fingerprint()


def test_the_same_faces_under_other_masks_never_score_a_face_the_fold_trained_on(tiny_root, tmp_path):
    """A cross-dataset test on the same people under other masks (another mask style of one source):
    each fold is scored only on the faces it did not train on, which are its own test subjects'."""
    import shutil

    from PIL import Image, ImageDraw

    from msde_bench.data.msde import MASKED_DIR

    remasked = tmp_path / "remasked"
    shutil.copytree(tiny_root, remasked)
    for path in sorted((remasked / MASKED_DIR).iterdir()):
        with Image.open(path) as im:
            img = im.convert("RGB")
        ImageDraw.Draw(img).rectangle((4, 16, 28, 30), fill=(40, 90, 160))  # another mask over the same face
        img.save(path)
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--test-data", str(remasked), "--out",
                                    str(tmp_path / "out"), *TINY])
    assert res.exit_code == 0, res.output
    run = R.load(next((tmp_path / "out").glob("*.json")))
    own = {p.name: p.subject for p in read_msde(tiny_root).pairs}
    for f in run["folds"]:
        assert f["n_test_pairs"] == 28 and f["in_domain"]["n_pairs"] == 28
        assert f["test_dataset"]["excluded_trained_faces"] == 28
        assert "less the 28 pairs whose faces this fold trained on" in f["test_dataset"]["scored_on"]
        assert set(f["test_subjects"]).isdisjoint(f["train_subjects"])
        assert len(f["test_subjects"]) == 4 and set(f["test_subjects"]) <= set(own.values())
