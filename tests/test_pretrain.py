"""`--init pretrain:DATA`: a pretrained start the harness trains once on another set, caches, loads into
every fold, and records (digest, dataset, spec); refused on the run's own data or with bad settings."""

import pytest
import torch
from click.testing import CliRunner

from msde_bench import pretrain as PT
from msde_bench import results as R
from msde_bench.cli import main
from msde_bench.data.msde import read_msde
from msde_bench.errors import MsdeError
from msde_bench.spec import RunSpec

TINY = ["--recipe", "quick", "--epochs", "1", "--folds", "2", "--image-size", "32", "--batch-size", "16",
        "--device", "cpu", "--no-progress", "--no-save-models"]


def test_pretrained_once_loaded_into_every_fold_and_recorded(tiny_root, other_set, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MSDE_BENCH_HOME", str(home))
    init = f"pretrain:{other_set}#epochs=1&recipe=quick"
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--init", init, "--out", str(tmp_path / "a"),
                                    *TINY])
    assert res.exit_code == 0, res.output
    assert res.output.count("pretraining resnet18 on 56 training pairs") == 1  # once for both folds
    (path,) = (tmp_path / "a").glob("*.json")
    run = R.load(path)
    assert run["spec"]["init"] == init  # the string names the run, not a machine's cache path
    files = list((home / "pretrained").glob("*.pt"))
    assert len(files) == 1
    pre = run["pretrained"]
    assert pre["dataset"]["fingerprint"] == read_msde(other_set).fingerprint() and pre["dataset"]["n_train_pairs"] == 56
    assert pre["spec"]["options"]["train_on"] == "mixed" and pre["spec"]["epochs"] == 1 and pre["file"] == files[0].name
    assert len(pre["sha256"]) == 64 and pre["train_seconds"] > 0
    for f in run["folds"]:
        assert f["pretrained"] == pre and f["init"]["loaded"] > 100  # the whole trunk
    # a second run with the same start reuses the file
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--init", init, "--seed", "1", "--out",
                                    str(tmp_path / "b"), *TINY])
    assert res.exit_code == 0 and "pretraining" not in res.output, res.output
    (path_b,) = (tmp_path / "b").glob("*.json")
    assert R.load(path_b)["pretrained"]["sha256"] == pre["sha256"]
    # the same run from random weights is another run
    plain = RunSpec.from_dict(dict(run["spec"], init=None))
    assert plain.digest() != RunSpec.from_dict(run["spec"]).digest()


def test_refused_on_the_runs_own_data_before_anything_trains(tiny_root, tmp_path):
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--init", f"pretrain:{tiny_root}", "--out",
                                    str(tmp_path), *TINY])
    assert res.exit_code == 2 and "pretrains on the run's own images" in res.output, res.output
    assert not list(tmp_path.iterdir())


def test_refused_on_the_runs_own_faces_under_other_names_and_masks(tiny_root, tmp_path):
    """Issue 40 (1): a pretraining set that holds the run's images under other subject numbers and
    masks is refused by content, with the count and the first names."""
    import shutil

    from PIL import Image

    from msde_bench.data.msde import MASKED_DIR, NON_MASKED_DIR, PAIR_LIST

    copy = tmp_path / "copy"
    shutil.copytree(tiny_root, copy)
    names = (copy / PAIR_LIST).read_text().split()
    renamed = []
    for name in names[:10]:  # ten of the run's faces, renumbered, their masks redrawn flat
        subject, rest = name.split("_", 1)
        new = f"{int(subject) + 100}_{rest}"
        (copy / NON_MASKED_DIR / name).rename(copy / NON_MASKED_DIR / new)
        (copy / MASKED_DIR / name).unlink()
        Image.new("RGB", (32, 32), (90, 90, 90)).save(copy / MASKED_DIR / new)
        renamed.append(new)
    for name in names[10:]:
        (copy / NON_MASKED_DIR / name).unlink()
        (copy / MASKED_DIR / name).unlink()
    (copy / PAIR_LIST).write_text("".join(n + "\n" for n in renamed))
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--init", f"pretrain:{copy}", "--out",
                                    str(tmp_path / "out"), *TINY])
    assert res.exit_code == 2, res.output
    assert "its training pairs hold 10 of the run's own images (first: " in res.output, res.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("init, problem", [("pretrain:", "name the set"), ("pretrain:x#lr=1", "unknown setting"),
                                           ("pretrain:x#recipe=big", "recipe 'big'"),
                                           ("pretrain:x#epochs=two", "expected a whole number"),
                                           ("pretrain:x#train_on=both", "train_on 'both'")])
def test_bad_settings_are_named(init, problem):
    with pytest.raises(MsdeError, match=problem):
        PT.parse(init)


def test_the_leaderboard_says_where_a_row_started(tiny_root, other_set, tmp_path, monkeypatch):
    from msde_bench.board import _init_label

    spec = {"init": f"pretrain:{other_set}#epochs=1"}
    run = {"pretrained": {"dataset": {"name": "m-fer2013"}}}
    assert _init_label(spec, run) == "pretrained on m-fer2013"
    assert _init_label({"init": None}, {}) == "random" and _init_label({"init": "/x/model.pt"}, {}) == "model.pt"


def test_a_pretrained_runs_fold_model_is_evaluated_as_recorded(tiny_root, other_set, tmp_path):
    init = f"pretrain:{other_set}#epochs=1&recipe=quick"
    args = [a for a in TINY if a != "--no-save-models"]
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--init", init, "--fold", "0", "--save-models",
                                    "--out", str(tmp_path), *args])
    assert res.exit_code == 0, res.output
    (path,) = tmp_path.glob("*.json")
    res = CliRunner().invoke(main, ["evaluate", str(path), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0 and "equal to the run's record" in res.output, res.output


def test_a_stopped_pretraining_continues_from_its_checkpoint(tiny_root, other_set, tmp_path, monkeypatch):
    """The pretraining (one model for every fold and run, hours on a large set) checkpoints beside its
    cache file; stopped within its second epoch, the next run continues it there and ends with the
    same model as a pretraining that never stopped."""
    from msde_bench.training import Trainer

    init = f"pretrain:{other_set}#epochs=2&recipe=quick"
    args = ["run", "--data", str(tiny_root), "--init", init, "--fold", "0", *TINY]
    monkeypatch.setenv("MSDE_BENCH_HOME", str(tmp_path / "ref"))
    assert CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")]).exit_code == 0
    (ref,) = (tmp_path / "ref" / "pretrained").glob("*.pt")

    home = tmp_path / "home"
    monkeypatch.setenv("MSDE_BENCH_HOME", str(home))
    step, calls = Trainer.train_step, []

    def stop(self, batch, measure=False):
        calls.append(batch.epoch)
        if batch.epoch == 1 and calls.count(1) == 2:  # the second epoch's second step
            raise KeyboardInterrupt
        return step(self, batch, measure)

    monkeypatch.setattr(Trainer, "train_step", stop)
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    assert res.exit_code != 0 and not list((home / "pretrained").glob("*.pt"))
    assert len(list((home / "pretrained").glob("*.ckpt"))) == 1  # the first epoch's end
    monkeypatch.setattr(Trainer, "train_step", step)
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "resumed pretrain at the start of epoch 2" in res.output
    (path,) = (home / "pretrained").glob("*.pt")
    assert not list((home / "pretrained").glob("*.ckpt"))
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (ref, path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_folds_from_two_pretrained_starts_never_merge(tiny_root, other_set, tmp_path, monkeypatch):
    """Issue 40 (2): each fold records its start's digest; fold 1 run after the pretrained cache was
    replaced started from other weights, and the merge refuses the two folds as one result (naming the
    folds and both digests), as the result check refuses such a file."""
    monkeypatch.setenv("MSDE_BENCH_HOME", str(tmp_path / "home"))
    init = f"pretrain:{other_set}#epochs=1&recipe=quick"
    args = ["run", "--data", str(tiny_root), "--init", init, "--out", str(tmp_path / "out"), *TINY]
    assert CliRunner().invoke(main, [*args, "--fold", "0"]).exit_code == 0
    (cached,) = (tmp_path / "home" / "pretrained").glob("*.pt")
    obj = torch.load(cached, weights_only=False)
    first = next(k for k, v in obj["state_dict"].items() if v.is_floating_point())
    obj["state_dict"][first] = obj["state_dict"][first] + 0.01  # another start under the same cache name
    torch.save(obj, cached)
    res = CliRunner().invoke(main, [*args, "--fold", "1"])
    assert res.exit_code != 0 and "fold 1 started from other weights than fold 0" in res.output, res.output
    assert "Traceback" not in res.output
    import json

    assert not any(json.loads(p.read_text())["protocol"]["complete"] for p in (tmp_path / "out").glob("*.json"))
    cells = sorted((tmp_path / "out").glob("*/fold*.json"))
    folds = [json.loads(c.read_text())["record"] for c in cells]
    assert len(folds) == 2 and folds[0]["pretrained"]["sha256"] != folds[1]["pretrained"]["sha256"]
    with pytest.raises(MsdeError, match="fold 1 started from other weights"):
        R.check_one_start(folds, "x")


def test_near_copies_of_the_runs_faces_in_the_pretraining_set_are_warned(tiny_root, other_set, tmp_path):
    """Issue 40 (1): a pretraining set holding a contrast-stretched re-encoding of one of the run's faces
    (other bytes, so the digest check passes) gets a warning naming both images before anything trains; a
    set of other faces gets none. (FER-2013's training split holds such a copy of a CK+ frame: r = 0.981.)"""
    import io
    import shutil

    from PIL import Image, ImageOps
    from rich.console import Console

    from msde_bench.data.msde import NON_MASKED_DIR, PAIR_LIST
    from msde_bench.runner import preflight

    spec = RunSpec(init=f"pretrain:{other_set}")
    run_set, clean = read_msde(tiny_root), read_msde(other_set)
    assert PT.near_duplicates(spec, run_set, clean) is None
    copy = tmp_path / "copy"
    shutil.copytree(other_set, copy)
    victim = (copy / PAIR_LIST).read_text().split()[5]
    face = (tiny_root / NON_MASKED_DIR / (tiny_root / PAIR_LIST).read_text().split()[3])
    stretched = ImageOps.autocontrast(Image.open(face).convert("L"), cutoff=5).convert("RGB")
    buf = io.BytesIO()
    stretched.save(buf, "PNG", compress_level=1)
    (copy / NON_MASKED_DIR / victim).write_bytes(buf.getvalue())
    spec = RunSpec(init=f"pretrain:{copy}")
    warning = PT.near_duplicates(spec, run_set, read_msde(copy))
    assert warning is not None and "1 of its training faces look like copies of the run's own faces" in warning
    assert f"{victim} ~ {face.name}" in warning
    out = io.StringIO()
    preflight(spec, run_set, [], Console(file=out, width=400))
    assert f"warning: --init pretrain:{copy}: 1 of its training faces" in out.getvalue()
