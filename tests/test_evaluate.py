"""`msde-bench evaluate`: trained models scored without training; their own test folds reproduce the
run exactly; another set only when asked (cross-dataset); bad checkpoints are one line, exit 2,
nothing written; the leaderboard keeps evaluation-only results apart."""

import pickle

import pytest
import torch
from click.testing import CliRunner

from msde_bench import evaluation as E
from msde_bench import results as R
from msde_bench import samples as S
from msde_bench.cli import main
from msde_bench.leaderboard import render_results
from msde_bench.metrics import FOLD_METRICS

TINY = ["--recipe", "quick", "--epochs", "1", "--folds", "2", "--image-size", "32", "--batch-size", "16",
        "--device", "cpu", "--no-progress", "--save-models"]


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    (path,) = out.glob("*.json")
    return path, R.load(path)


def test_the_fold_models_on_their_own_test_folds_give_the_runs_numbers_exactly(trained, tmp_path):
    path, run = trained
    res = CliRunner().invoke(main, ["evaluate", str(path), "--out", str(tmp_path), "--log-samples"])
    assert res.exit_code == 0, res.output
    assert res.output.count("equal to the run's record") == 2
    (out,) = tmp_path.glob("eval-*.json")
    ev = R.load(out)
    assert ev["evaluation"]["mode"] == "own-test-folds" and ev["protocol"]["name"] == E.EVAL_PROTOCOL
    assert [m["equals_run"] for m in ev["evaluation"]["models"]] == [True, True]
    assert {m["run_id"] for m in ev["evaluation"]["models"]} == {run["run_id"]}
    for mine, theirs in zip(ev["folds"], run["folds"]):
        assert mine["fold"] == theirs["fold"] and mine["test_subjects"] == theirs["test_subjects"]
        for key in FOLD_METRICS:
            assert mine[key] == theirs[key], key
        assert mine["train_seconds"] == 0.0
        _, lines = S.read(tmp_path / mine["samples_file"], mine["samples_sha256"])
        assert S.metrics(lines)["acc_masked"] == theirs["acc_masked"]
    # one fold model alone: the same fold's numbers
    model = path.parent / run["folds"][1]["model_file"]
    res = CliRunner().invoke(main, ["evaluate", str(model), "--out", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    (one,) = (tmp_path / "one").glob("eval-*.json")
    fold = R.load(one)["folds"]
    assert len(fold) == 1 and fold[0]["fold"] == 1 and fold[0]["acc_masked"] == run["folds"][1]["acc_masked"]


def test_another_set_is_a_cross_dataset_test_only_when_asked(trained, other_set, tmp_path):
    path, run = trained
    res = CliRunner().invoke(main, ["evaluate", str(path), "--data", str(other_set), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--cross-dataset" in res.output and not list(tmp_path.iterdir())
    res = CliRunner().invoke(main, ["evaluate", str(path), "--data", str(other_set), "--cross-dataset",
                                    "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (out,) = tmp_path.glob("eval-*.json")
    ev = R.load(out)
    assert ev["evaluation"]["mode"] == "cross-dataset" and ev["evaluation"]["scored_on"] == "every pair"
    assert [f["n_test_pairs"] for f in ev["folds"]] == [56, 56]  # each fold model on all of the other set
    assert ev["dataset"]["fingerprint"] != run["dataset"]["fingerprint"]
    assert all(m["trained_on"]["fingerprint"] == run["dataset"]["fingerprint"] for m in ev["evaluation"]["models"])
    # the leaderboard: the evaluation in a table of its own, unranked; the trained run stays
    text = render_results([dict(run, _path=str(path)), dict(ev, _path=str(out))], [], ["x"])
    assert "Evaluation-only" in text and "(evaluation, 2 folds)" in text
    assert f"– (models of {run['run_id']})" in text and "Superseded" not in text
    assert text.count("| 1   |") == 1  # only the trained row is ranked


class _Evil:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


@pytest.mark.parametrize("case", ["missing", "not-a-state-dict", "runs-code", "wrong-keys", "other-classes",
                                  "no-model"])
def test_bad_checkpoints_are_one_line_exit_2_nothing_written(trained, tiny_root, tmp_path, case):
    path, run = trained
    ckpt = tmp_path / "model.pt"
    state = torch.load(path.parent / run["folds"][0]["model_file"], weights_only=True)["state_dict"]
    expect = {"missing": "file not found", "not-a-state-dict": "not a state dict",
              "runs-code": "not a readable PyTorch checkpoint", "wrong-keys": "do not fit model resnet18",
              "other-classes": "a model with 6 outputs", "no-model": "give --model NAME"}[case]
    if case == "not-a-state-dict":
        torch.save([1, 2, 3], ckpt)
    elif case == "runs-code":
        ckpt.write_bytes(pickle.dumps(_Evil(), protocol=2))
    elif case == "wrong-keys":
        torch.save({"conv.weight": torch.zeros(3, 3)}, ckpt)
    elif case in ("other-classes", "no-model"):
        # a model trained with 6 outputs where the set has 7 classes
        head = [k for k, v in state.items() if v.ndim == 2][-1]
        bias = head.replace("weight", "bias")
        torch.save(dict(state, **{head: state[head][:6], bias: state[bias][:6]}), ckpt)
    args = ["evaluate", str(ckpt), "--data", str(tiny_root), "--image-size", "32", "--out", str(tmp_path / "r")]
    if case != "no-model":
        args += ["--model", "resnet18"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert expect in res.output and str(ckpt) in res.output and "this pickle ran code" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]  # (a busy-cores warning may precede)
    assert len(errors) == 1 and res.output.rstrip().endswith(errors[0]) and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


def test_a_plain_checkpoint_is_scored_with_its_model_and_says_its_training_data_is_unknown(trained, tiny_root,
                                                                                              tmp_path):
    path, run = trained
    ckpt = tmp_path / "plain.pt"
    torch.save(torch.load(path.parent / run["folds"][0]["model_file"], weights_only=True)["state_dict"], ckpt)
    res = CliRunner().invoke(main, ["evaluate", str(ckpt), "--model", "resnet18", "--data", str(tiny_root),
                                    "--image-size", "32", "--device", "cpu", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "people it was trained on are unknown" in " ".join(res.output.split())
    (out,) = (tmp_path / "r").glob("eval-*.json")
    ev = R.load(out)
    assert ev["evaluation"]["mode"] == "external" and ev["evaluation"]["models"][0]["trained_on"] is None
    assert ev["folds"][0]["n_test_pairs"] == 56


def test_a_set_with_fewer_classes_is_scored_over_the_models_outputs(tiny_root):
    """A seven-class model on a set without Surprise: labels become positions among the model's outputs."""
    from msde_bench.data.msde import read_msde
    from msde_bench.data.pairs import ImageCache, PairedDataset

    full = read_msde(tiny_root)
    six = PairedDataset("six", full.root, [p for p in full.pairs if p.label != 0], dict(full.meta))
    cache = ImageCache(six, 32)
    assert cache.classes == (1, 2, 3, 4, 5, 6)
    view = cache.over_classes(range(7))
    assert view.classes == tuple(range(7)) and view is not cache
    assert (view.class_ids(view.labels.numpy()) == cache.class_ids(cache.labels.numpy())).all()
    assert (view.labels.numpy() == six.labels).all()  # positions in range(7) are the labels themselves
    assert cache.over_classes([1, 2, 3, 4, 5, 6]) is cache
    with pytest.raises(ValueError, match="not among"):
        cache.over_classes([2, 3, 4, 5, 6])


def test_a_cross_dataset_evaluation_never_scores_a_face_its_fold_model_trained_on(trained, tiny_root, tmp_path):
    """The same faces under other masks: each fold model is scored only on the faces of its own test
    subjects, the ones it never saw."""
    import shutil

    from PIL import Image, ImageDraw

    from msde_bench.data.msde import MASKED_DIR

    path, run = trained
    remasked = tmp_path / "remasked"
    shutil.copytree(tiny_root, remasked)
    for image in sorted((remasked / MASKED_DIR).iterdir()):
        with Image.open(image) as im:
            img = im.convert("RGB")
        ImageDraw.Draw(img).rectangle((4, 16, 28, 30), fill=(160, 40, 40))
        img.save(image)
    res = CliRunner().invoke(main, ["evaluate", str(path), "--data", str(remasked), "--cross-dataset",
                                    "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    ev = R.load(next((tmp_path / "ev").glob("eval-*.json")))
    assert [f["n_test_pairs"] for f in ev["folds"]] == [28, 28]
    for f, own in zip(ev["folds"], run["folds"]):
        assert f["test_subjects"] == own["test_subjects"]  # its own test subjects, under the other masks


def test_a_fold_model_that_is_not_the_one_the_run_saved_is_refused(trained, tmp_path):
    """Issue 40 (4): the fold record carries its saved model's SHA-256; evaluate checks it first."""
    import shutil

    import torch

    path, run = trained
    copy = tmp_path / "copy"
    shutil.copytree(path.parent, copy)
    result = copy / path.name
    fold0 = copy / run["folds"][0]["model_file"]
    assert run["folds"][0]["model_sha256"]
    obj = torch.load(fold0, weights_only=False)
    first = next(k for k, v in obj["state_dict"].items() if v.is_floating_point())
    obj["state_dict"][first] = obj["state_dict"][first] * -1  # weights flipped, the file still well-formed
    torch.save(obj, fold0)
    res = CliRunner().invoke(main, ["evaluate", str(result), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2, res.output
    assert f"{fold0}: fold 0's model is not the one this run saved" in res.output
    assert not (tmp_path / "ev").exists() or not list((tmp_path / "ev").iterdir())
