"""Real faces (issue 24): public sets converted once from a --data string, a set's present classes,
the CPU-sized recipe and the run's time estimate, and the real-face tables of the leaderboard."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from msde_bench import factory
from msde_bench.cli import main
from msde_bench.data import convert as C
from msde_bench.data.msde import read_msde
from msde_bench.errors import DataError, MsdeError
from tests.test_convert import SHARED_DATA, _ckplus, _face

TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "8", "--device", "cpu", "--no-progress"]


@pytest.fixture
def conversions(monkeypatch):
    """Counts the conversions `--data FORMAT:SRC` makes."""
    calls = []
    real = C.convert

    def counted(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(C, "convert", counted)
    return calls


def test_a_data_string_converts_once_and_reuses_the_conversion(tmp_path, conversions):
    src = _ckplus(tmp_path / "ck48")
    data = f"ckplus:{src}?landmarks=off"
    ds = factory.load_dataset(data)
    assert len(conversions) == 1 and ds.name == "m-ck48" and len(ds) == 15
    assert ds.describe()["root"] == data  # results record the string, not this machine's cache path
    assert ds.describe()["conversion"]["dropped"] == {"contempt": 3}
    assert ds.describe()["conversion"]["masking"]["placement"] == {"template": 15}
    again = factory.load_dataset(data)
    assert len(conversions) == 1 and again.fingerprint() == ds.fingerprint()  # reused, not converted again
    # other settings, or a changed source, are another conversion
    other = factory.load_dataset(f"ckplus:{src}?landmarks=off&seed=3&name=mine")
    assert len(conversions) == 2 and other.name == "mine" and other.root != ds.root
    assert other.fingerprint() != ds.fingerprint()  # other masks
    _face(50).convert("L").save(src / "happy" / "S060_001_00000001.png")
    assert len(factory.load_dataset(data)) == 16 and len(conversions) == 3


@pytest.mark.parametrize("query,message", [
    ("colour=red", "'colour=red' is not KEY=VALUE"),
    ("seed=x", "seed='x' is not an integer"),
    ("allow-skips=maybe", "allow-skips='maybe': use true or false"),
    ("landmarks=sometimes", "--landmarks sometimes: choose auto, on or off"),
])
def test_bad_data_strings_are_one_line_errors(tmp_path, query, message):
    src = _ckplus(tmp_path / "ck")
    with pytest.raises(MsdeError, match=message):
        factory.load_dataset(f"ckplus:{src}?{query}")
    with pytest.raises(DataError, match="not found"):
        factory.load_dataset(f"ckplus:{tmp_path / 'nowhere'}")


def test_a_conversion_that_skips_items_fails_unless_allowed(tmp_path):
    src = _ckplus(tmp_path / "ck", bad=("not-a-ck-name.png",))
    with pytest.raises(DataError, match="skipped 1 items .*allow-skips=true") as e:
        factory.load_dataset(f"ckplus:{src}?landmarks=off")
    assert "not-a-ck-name.png" in Path(e.value.path).read_text()  # the skipped items are kept to read
    assert not Path(e.value.path.removesuffix(".skipped.txt")).exists()  # no half-usable conversion left
    assert len(factory.load_dataset(f"ckplus:{src}?landmarks=off&allow-skips=true")) == 15


def test_a_set_is_trained_and_scored_over_its_present_classes(tmp_path):
    """The CK+ fixture has anger, happy and surprise (contempt dropped): a 3-way head, predictions only
    among those, the result and the leaderboard say which classes and chance 1/3."""
    src = _ckplus(tmp_path / "ck", subjects=(10, 11, 12, 13))
    data = f"ckplus:{src}?landmarks=off"
    res = CliRunner().invoke(main, ["run", "--data", data, "--recipe", "real48", "--folds", "2", *TINY,
                                    "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    result = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert result["dataset"]["classes"] == ["Surprise", "Happiness", "Anger"]
    assert result["spec"]["recipe"] == "real48" and result["spec"]["folds"] == 2
    for fold in result["folds"]:
        for view in ("confusion_non_masked", "confusion_masked"):
            cm = np.array(fold[view])
            absent = [1, 2, 4, 6]  # fear, disgust, sadness, neutral
            assert cm[absent].sum() == 0 and cm[:, absent].sum() == 0  # never a label, never predicted
            assert cm.sum() == fold["n_test_pairs"]
        model = torch.load(Path(tmp_path / "r") / fold["model_file"], map_location="cpu", weights_only=True)
        assert model["state_dict"]["fc.weight"].shape[0] == 3
    board = CliRunner().invoke(main, ["leaderboard", "--results", str(tmp_path / "r"), "--output",
                                      str(tmp_path / "LB.md")])
    assert board.exit_code == 0, board.output
    text = (tmp_path / "LB.md").read_text()
    assert "Classes: Surprise, Happiness, Anger (trained and scored over these; chance 1/3)" in text
    assert "Converted from `ck` (`--format ckplus`)" in text and "dropped: contempt (6 images)" in text
    assert "placed 18 by template" in text
    # explain rebuilds the 3-way model and names its classes
    ex = CliRunner().invoke(main, ["explain", str(next((tmp_path / "r").glob("*.json"))), "--out",
                                   str(tmp_path / "ex"), "--n", "3"])
    assert ex.exit_code == 0, ex.output
    rows = (tmp_path / "ex" / "tsne.csv").read_text().splitlines()[1:]
    assert {int(r.split(",")[2]) for r in rows} <= {0, 3, 5}  # labels in the MSD-E order


def test_the_real48_recipe_and_its_precision(monkeypatch):
    from msde_bench import device as D
    from msde_bench.api import build_spec

    monkeypatch.setattr(D, "cpu_bf16", lambda: "amx_bf16")
    spec = build_spec(data="synth:tiny", recipe="real48", device="cpu")
    assert (spec.image_size, spec.folds, spec.epochs, spec.budget, spec.precision) == (48, 10, 6, "steps", "bf16")
    monkeypatch.setattr(D, "cpu_bf16", lambda: None)
    assert build_spec(data="synth:tiny", recipe="real48", device="cpu").precision == "fp32"


def test_a_run_estimates_its_training_time_and_names_the_cpu_recipe(capsys):
    from rich.console import Console

    from msde_bench.protocol import Fold
    from msde_bench.runner import _estimate
    from msde_bench.spec import make_spec

    folds = [Fold(k, np.arange(834), np.arange(93), ()) for k in range(10)]
    paper = make_spec(model="resnet18", paradigm="baseline", recipe="paper", data="x")
    console = Console(file=None, force_terminal=False, width=400)
    _estimate(paper, folds, console)(3.5)  # 3.5 s a step at 224 px on 2 cores
    out = capsys.readouterr().out
    # 10 folds x 25 epochs x ceil(2 x 834 / 96) = 18 steps an epoch (the mixed baseline's items are views)
    assert "estimated training time: 4 h 22 min (3.500 s a step" in out and "4,500 steps in 10 folds" in out
    assert "--recipe real48" in out
    quick = make_spec(model="resnet18", paradigm="distill", recipe="real48", data="x")
    _estimate(quick, folds[:1], console)(0.1)
    out = capsys.readouterr().out
    assert "estimated training time: 1 min" in out and "also trains its teacher" in out and "real48 (" not in out


def test_a_run_prints_its_estimate_once(tiny_root, tmp_path):
    # 28 training pairs in batches of 4: 14 steps an epoch, enough to time (2 warm-up steps, 8 timed)
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--recipe", "quick", "--folds", "2", *TINY,
                                    "--batch-size", "4", "--out", str(tmp_path / "r"), "--no-save-models"])
    assert res.exit_code == 0, res.output
    assert " ".join(res.output.split()).count("estimated training time:") == 1


def test_real_sets_come_first_with_what_they_are(tmp_path):
    src = _ckplus(tmp_path / "ck", subjects=(10, 11, 12, 13))
    out = tmp_path / "r"
    for data in (f"ckplus:{src}?landmarks=off&name=zz-ck", "synth:tiny"):  # the real set sorts last by name
        res = CliRunner().invoke(main, ["run", "--data", data, "--recipe", "quick", "--folds", "2", *TINY,
                                        "--out", str(out), "--no-save-models"])
        assert res.exit_code == 0, res.output
    notes = tmp_path / "notes.toml"
    notes.write_text('[[dataset]]\nname = "zz-ck"\ntext = "CK+: cite Lucey et al. 2010."\n')
    board = CliRunner().invoke(main, ["leaderboard", "--results", str(out), "--output", str(tmp_path / "LB.md"),
                                      "--notes", str(notes)])
    assert board.exit_code == 0, board.output
    text = (tmp_path / "LB.md").read_text()
    assert text.index("## zz-ck ") < text.index("## synth-tiny ") and "CK+: cite Lucey et al. 2010." in text
    page = (tmp_path / "index.html").read_text()
    assert "CK+: cite Lucey et al. 2010." in page
    notes.write_text('[[dataset]]\nname = "zz-ck"\n')
    bad = CliRunner().invoke(main, ["leaderboard", "--results", str(out), "--output", str(tmp_path / "LB.md"),
                                    "--notes", str(notes)])
    assert bad.exit_code == 2 and "dataset[0] needs a `name`" in bad.output


@pytest.mark.skipif(not (SHARED_DATA / "ckplus48").is_dir(), reason="../shared/data/ckplus48 (real CK+) is not here")
def test_real_ckplus_from_a_data_string_has_six_classes_and_106_subjects(tmp_path):
    ds = factory.load_dataset(f"ckplus:{SHARED_DATA / 'ckplus48'}?landmarks=off")
    d = ds.describe()
    assert (d["n_pairs"], d["n_subjects"], len(d["classes"])) == (927, 106, 6) and "Neutral" not in d["classes"]
    meta = json.loads((ds.root / "meta.json").read_text())
    assert all(meta["pairs"][p.name]["subject"] == f"S{p.subject:03d}" for p in ds.pairs)
    assert read_msde(ds.root).fingerprint() == ds.fingerprint()
