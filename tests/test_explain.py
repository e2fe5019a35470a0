"""explain: figures from a saved run; target layers for backbones and every method plugin."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from msde_bench.cli import main
from msde_bench.explain import row_normalised, target_layer, tsne
from msde_bench.factory import build_method
from msde_bench.plugins import registry
from msde_bench.spec import RunSpec

RUN = ["run", "--recipe", "quick", "--epochs", "1", "--folds", "2", "--fold", "1", "--image-size", "64",
       "--batch-size", "16", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def two_runs(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    paths = []
    for paradigm in ("baseline", "contrastive"):
        res = CliRunner().invoke(main, [*RUN, "--data", str(tiny_root), "--paradigm", paradigm, "--out", str(out)])
        assert res.exit_code == 0, res.output
        paths.append(next(p for p in out.glob(f"resnet18-{paradigm}-*.json")))
    return paths


def _png(path, min_size=(200, 200)):
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        arr = np.asarray(im.convert("L"), dtype=float)
    assert arr.std() > 5, f"{path.name} looks blank"
    return arr


def test_models_are_saved_with_the_spec(two_runs):
    result = json.loads(two_runs[0].read_text())
    (fold,) = result["folds"]
    model = two_runs[0].parent / fold["model_file"]
    obj = torch.load(model, map_location="cpu", weights_only=True)
    # the model belongs to the cell: the whole spec (every fold) and this fold
    assert obj["spec"] == RunSpec.from_dict(result["spec"]).whole().to_dict() and obj["fold"] == 1
    assert obj["test_subjects"] == fold["test_subjects"]


def test_explain_writes_every_figure(two_runs, tmp_path):
    out = tmp_path / "ex"
    res = CliRunner().invoke(main, ["explain", str(two_runs[0]), "--out", str(out), "--n", "7"])
    assert res.exit_code == 0, res.output
    steps = [ln for ln in res.output.splitlines() if ln.startswith("[")]  # never silent while it works
    assert steps[0].endswith("and decoding its images") and any("t-SNE" in ln for ln in steps) and len(steps) >= 4
    cam = _png(out / "gradcam_pairs.png")
    assert cam.shape[1] > cam.shape[0]  # 7 pairs, two side by side: 4 rows of 8 images
    for name in ("tsne.png", "confusion.png", "attention_shift.png", "curves.png"):
        _png(out / name)
    report = (out / "report.md").read_text()
    for name in ("gradcam_pairs.png", "tsne.png", "confusion.png", "attention_shift.png", "curves.png"):
        assert f"![{name}]({name})" in report
    meta = json.loads((out / "explain.json").read_text())
    assert len(meta["pairs"]) == 7 and meta["fold"] == 1
    # the same seed gives the same t-SNE
    first = (out / "tsne.csv").read_text()
    CliRunner().invoke(main, ["explain", str(two_runs[0]), "--out", str(out), "--n", "7"])
    assert (out / "tsne.csv").read_text() == first


def test_pairs_are_balanced_over_classes(two_runs, tmp_path):
    from msde_bench.explain import load_fold, pick_pairs

    ex = load_fold(two_runs[0])
    pairs = pick_pairs(ex, 7)
    assert sorted(ex.cache.labels[torch.as_tensor(pairs)].tolist()) == list(range(7))
    assert np.array_equal(pick_pairs(ex, 7), pairs)


def test_compare_two_runs(two_runs, tmp_path):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(main, ["explain", "--compare", str(two_runs[0]), str(two_runs[1]), "--out", str(out),
                                    "--n", "3", "--cam", "gradcam++"])
    assert res.exit_code == 0, res.output
    grid = _png(out / "gradcam_compare.png")
    assert grid.shape[1] > grid.shape[0]  # 8 columns, 3 rows
    assert (out / "tsne_2.png").is_file() and "compared with" in (out / "report.md").read_text()


def test_missing_model_files_fail_clearly(two_runs, tmp_path):
    result = json.loads(two_runs[0].read_text())
    copy = tmp_path / two_runs[0].name
    copy.write_text(json.dumps(result))  # the result without its model folder
    res = CliRunner().invoke(main, ["explain", str(copy)])
    assert res.exit_code == 2
    assert "fold1.pt: model file not found; run again with --save-models" in res.output
    bad = CliRunner().invoke(main, ["explain", str(two_runs[0]), "--layer", "trunk.nope"])
    assert bad.exit_code == 2 and "--layer trunk.nope: no such module" in bad.output


def test_tsne_is_seeded():
    x = np.random.default_rng(0).normal(size=(40, 16))
    first = tsne(x, 3)
    assert first.shape == (40, 2) and np.array_equal(first, tsne(x, 3))


def test_confusion_rows_sum_to_one():
    cm = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    norm = row_normalised(cm)
    assert np.allclose(norm.sum(1), [1, 0, 1])
    assert np.allclose(norm[2], [0.25, 0.25, 0.5])


MODELS = ["resnet18", "convnext_atto", "efficientnet_b0", *sorted(registry().methods)]


@pytest.mark.parametrize("model", MODELS)
def test_cam_target_layer_for_backbones_and_every_plugin(model):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from msde_bench.explain import _Logits

    opts = {"ran": (("ran.crops", 1),), "dacl": (("dacl.attention_grid", 1),)}.get(model, ())
    torch.manual_seed(0)
    method, _ = build_method(RunSpec(model=model, options=opts))
    method.eval()
    layer = target_layer(method)
    assert isinstance(layer, torch.nn.Module)
    reshape = method.cam_reshape_transform()
    with GradCAM(model=_Logits(method), target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=torch.randn(2, 3, 96, 96), targets=[ClassifierOutputTarget(0)] * 2)
    assert maps.shape == (2, 96, 96) and np.isfinite(maps).all()


def test_curves_need_a_recorded_history(tmp_path):
    from types import SimpleNamespace

    from msde_bench.explain import figure_curves

    spec = SimpleNamespace(model="resnet18", paradigm="contrastive")
    old = SimpleNamespace(result={"folds": [{"fold": 0}]}, fold=0, spec=spec)
    assert figure_curves(old, tmp_path / "a.png") is False and not (tmp_path / "a.png").exists()
    history = [dict(epoch=e, loss=2.0 / e, align=0.01 / e, train_acc=0.2 * e, lr=1e-3) for e in (1, 2, 3)]
    new = SimpleNamespace(result={"folds": [{"fold": 0, "train_history": history}]}, fold=0, spec=spec)
    assert figure_curves(new, tmp_path / "b.png") is True
    _png(tmp_path / "b.png")


def test_a_coarse_declared_layer_gives_way_to_a_finer_one(two_runs):
    """ResNet-18's layer4 is 2 x 2 at these runs' 64 px: Grad-CAM uses trunk.layer3 (4 x 4) unless
    --layer says otherwise."""
    from msde_bench.explain import default_layer, load_fold

    ex = load_fold(two_runs[0])
    assert ex.spec.image_size == 64 and default_layer(ex) == "trunk.layer3"
