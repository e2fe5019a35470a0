"""The training knobs of the recipe search (issue 37, item 2): optimisers, per-step schedules with
warm-up, label smoothing, an EMA of the weights, the "+" augmentations and the small-input
ResNet-18 variants; each recorded in the spec only when used, so older run ids stay."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from click.testing import CliRunner

from msde_bench.cli import main
from msde_bench.data.transforms import PairedAugment, crop_padding, random_crop
from msde_bench.errors import MsdeError
from msde_bench.grid import load_grid
from msde_bench.models.backbones import create_trunk
from msde_bench.models.base import LossState, Output, cross_entropy_terms
from msde_bench.spec import RunSpec, make_spec
from msde_bench.training import (
    WARMUP_START,
    draw_mix,
    make_optimizer,
    make_scheduler,
    make_step_scheduler,
    mix_images,
    predict,
    tta_views,
)


def _lrs(spec, steps_per_epoch=10):
    """The learning rate of every optimiser step of the run, as the Trainer steps its schedules."""
    opt = make_optimizer(spec, [{"params": [torch.nn.Parameter(torch.zeros(1))]}])
    per_epoch, per_step = make_scheduler(spec, opt), make_step_scheduler(spec, opt, steps_per_epoch)
    out = []
    for _ in range(spec.epochs):
        for _ in range(steps_per_epoch):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if per_step is not None:
                per_step.step()
        if per_epoch is not None:
            per_epoch.step()
    return out


def test_a_spec_without_the_new_knobs_keeps_its_dict_and_digest():
    plain = RunSpec()
    assert not {"warmup_epochs", "label_smoothing", "ema_decay"} & set(plain.to_dict())
    with_ema = plain.with_(ema_decay=0.999)
    assert with_ema.to_dict()["ema_decay"] == 0.999 and with_ema.digest() != plain.digest()
    assert RunSpec.from_dict(with_ema.to_dict()) == with_ema and RunSpec.from_dict(plain.to_dict()) == plain


def test_cosine_warms_up_linearly_then_falls_to_zero_at_the_last_step():
    spec = RunSpec(epochs=4, lr=0.1, schedule="cosine", warmup_epochs=1)
    lrs = _lrs(spec)
    assert lrs[0] == pytest.approx(0.1 * WARMUP_START)
    assert lrs[5] == pytest.approx(0.1 * (WARMUP_START + (1 - WARMUP_START) * 0.5))
    assert lrs[10] == pytest.approx(0.1)  # the warm-up's end: the peak
    assert lrs[25] == pytest.approx(0.05 * (1 + math.cos(math.pi * 15 / 30)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.001


def test_onecycle_peaks_where_the_warm_up_ends():
    lrs = _lrs(RunSpec(epochs=4, lr=0.1, schedule="onecycle", warmup_epochs=1))
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) in (9, 10)
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[-1] < 1e-4


def test_a_warm_up_composes_with_an_epoch_schedule_and_leaves_it_alone_without():
    spec = RunSpec(epochs=4, lr=0.1, schedule="multistep", milestones=(3,), gamma=0.1)
    plain = _lrs(spec)
    assert plain == [0.1] * 30 + [pytest.approx(0.01)] * 10
    warm = _lrs(spec.with_(warmup_epochs=0.5))
    assert warm[0] == pytest.approx(0.1 * WARMUP_START) and warm[4] < warm[5] == pytest.approx(0.1)
    assert warm[5:30] == pytest.approx([0.1] * 25) and warm[30:] == pytest.approx([0.01] * 10)


def test_epochs_scale_the_recipes_warm_up_like_its_milestones():
    spec = make_spec(model="resnet18", paradigm="baseline", recipe="quick", epochs=12, warmup_epochs=None)
    assert spec.milestones == (10,) and spec.warmup_epochs == 0
    scaled = make_spec(model="resnet18", paradigm="baseline", recipe="quick", epochs=12)
    assert scaled.with_(warmup_epochs=1.0).warmup_epochs == 1.0


def test_adamw_decouples_the_weight_decay():
    spec = RunSpec(optimizer="adamw", weight_decay=0.5, lr=0.1)
    p = torch.nn.Parameter(torch.ones(1))
    opt = make_optimizer(spec, [{"params": [p]}])
    assert isinstance(opt, torch.optim.AdamW)
    p.grad = torch.zeros(1)  # no gradient: only the decay moves it, by lr x decay x p
    opt.step()
    assert p.item() == pytest.approx(1 - 0.1 * 0.5)


def test_label_smoothing_reaches_the_plain_cross_entropy():
    logits, y = torch.randn(6, 7), torch.arange(6)
    out = Output(logits, logits, logits[:, :, None, None])
    smooth = cross_entropy_terms(out, y, LossState(label_smoothing=0.2))["loss"]
    assert smooth == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.2).item())
    assert cross_entropy_terms(out, y)["loss"] != pytest.approx(smooth.item())


def test_mixing_weighs_both_targets_and_a_cutmix_weight_is_the_share_left():
    logits, y = torch.randn(6, 7), torch.arange(6)
    out, partner = Output(logits, logits, logits[:, :, None, None]), torch.tensor([5, 4, 3, 2, 1, 0])
    mixed = cross_entropy_terms(out, y, LossState(mix=(partner, 0.7)))["loss"]
    want = 0.7 * F.cross_entropy(logits, y) + 0.3 * F.cross_entropy(logits, y[partner])
    assert mixed.item() == pytest.approx(want.item())
    x = torch.rand(6, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        mix = draw_mix(RunSpec(cutmix=1.0, image_size=32), 6, gen, torch.device("cpu"))
        top, bottom, left, right = mix.box
        got = mix_images(x, mix)
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[top:bottom, left:right] = True
        assert torch.equal(got[..., inside], x[mix.partner][..., inside]) and torch.equal(got[..., ~inside], x[..., ~inside])
        assert mix.weight == pytest.approx(1 - inside.float().mean().item())
    up = draw_mix(RunSpec(mixup=0.2), 6, gen, torch.device("cpu"))
    assert up.box is None and 0 <= up.weight <= 1
    assert torch.allclose(mix_images(x, up), up.weight * x + (1 - up.weight) * x[up.partner])
    assert draw_mix(RunSpec(), 6, gen, torch.device("cpu")) is None
    both = [draw_mix(RunSpec(mixup=0.2, cutmix=1.0), 6, gen, torch.device("cpu")).box is None for _ in range(40)]
    assert 5 < sum(both) < 35  # each batch one or the other


def test_random_crop_is_torchvisions_with_the_same_offsets():
    x = torch.rand(3, 3, 48, 48)
    pad = crop_padding(48)
    assert pad == 4
    top, left = torch.tensor([0, 4, 8]), torch.tensor([8, 0, 3])
    got = random_crop(x, top, left)
    for i in range(3):
        want = TF.crop(TF.pad(x[i], [pad] * 4), int(top[i]), int(left[i]), 48, 48)
        assert torch.equal(got[i], want)


def test_every_step_draws_once_per_pair_for_both_views_and_erasing_is_bounded():
    x = torch.randint(0, 256, (64, 3, 48, 48), dtype=torch.uint8)
    aug = PairedAugment("flip+crop+affine+erase")
    nm, m = aug(x, x.clone(), torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(nm, m)  # the same draws for a pair's two views
    one = aug.one(x, torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(one, nm)
    erased = (PairedAugment("erase").one(x, torch.Generator().manual_seed(0), torch.device("cpu")) == 0).all(1)
    share = erased.float().mean((1, 2))
    assert 10 < int((share > 0).sum()) < 54  # p 0.5 over 64 images
    assert float(share.max()) <= 0.4  # at most a third of the image (rounding of the sides aside)
    base = PairedAugment("none").eval(x, torch.device("cpu"))
    assert not torch.equal(PairedAugment("flip+crop").one(x, torch.Generator().manual_seed(0),
                                                          torch.device("cpu")), base)


@pytest.mark.parametrize("name,side,reduction", [("resnet18", 2, 32), ("resnet18_nomaxpool", 3, 16),
                                                 ("resnet18_cifar", 6, 8)])
def test_the_small_input_variants_keep_larger_maps(name, side, reduction):
    trunk = create_trunk(name)
    assert trunk.forward_features(torch.zeros(1, 3, 48, 48)).shape == (1, 512, side, side)
    if name != "resnet18":
        assert isinstance(trunk.maxpool, torch.nn.Identity)
        with pytest.raises(MsdeError, match=f"could not get pretrained weights for '{name}'"):
            create_trunk(name, pretrained=True)
    feats = create_trunk(name, features_only=True, out_indices=(4,))  # layer4
    assert feats.feature_info.reduction() == [reduction]
    assert feats(torch.zeros(1, 3, 48, 48))[0].shape[-1] == side


def test_a_run_with_every_knob_records_them_and_the_ema_is_what_was_scored(tmp_path):
    out = tmp_path / "o"
    args = ["run", "--model", "resnet18_cifar", "--data", "synth:tiny", "--epochs", "2", "--folds", "2", "--fold", "0",
            "--image-size", "32", "--batch-size", "8", "--device", "cpu", "--no-progress", "--out", str(out),
            "--optimizer", "adamw", "--schedule", "cosine", "--warmup-epochs", "0.5", "--augment", "flip+crop+erase",
            "--label-smoothing", "0.1", "--ema-decay", "0.9"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    result = json.loads(next(out.glob("*.json")).read_text())
    spec = result["spec"]
    assert (spec["optimizer"], spec["schedule"], spec["warmup_epochs"], spec["augment"], spec["label_smoothing"],
            spec["ema_decay"], spec["model"]) == ("adamw", "cosine", 0.5, "flip+crop+erase", 0.1, 0.9,
                                                   "resnet18_cifar")
    lrs = [r["lr"] for r in result["folds"][0]["train_history"]]
    assert lrs[0] == pytest.approx(spec["lr"] * WARMUP_START)


def test_the_ema_replaces_the_weights_at_the_end_of_training(tiny_root):
    from msde_bench.data.msde import read_msde
    from msde_bench.data.pairs import ImageCache
    from msde_bench.factory import build_method, build_paradigm
    from msde_bench.training import Trainer

    ds = read_msde(tiny_root)
    spec = RunSpec(model="mobilenetv3_small_050", data=str(tiny_root), epochs=1, image_size=32, batch_size=8,
                   ema_decay=0.5)
    method = build_method(spec, load=False, num_classes=len(ds.classes))[0]
    trainer = Trainer(spec, method, build_paradigm(spec), torch.device("cpu"))
    seen = {}
    real_update = trainer.ema.update_parameters

    def update(model):  # the raw weights after the last step, before the average replaces them
        real_update(model)
        seen["raw"] = {k: v.clone() for k, v in model.state_dict().items()}

    trainer.ema.update_parameters = update
    trainer.fit(ImageCache(ds, 32), torch.arange(len(ds))[:40].numpy(), torch.Generator().manual_seed(0))
    final = trainer.method.state_dict()
    averaged = trainer.ema.module.state_dict()
    assert all(torch.equal(final[k], averaged[k]) for k in final)
    assert any(not torch.equal(final[k], seen["raw"][k]) for k in final if final[k].is_floating_point())


def test_grid_files_take_the_knobs_as_keys_and_axes(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text('data = "synth:tiny"\nschedule = ["cosine", "onecycle"]\nwarmup_epochs = 1.0\n'
                    'augment = "flip+crop"\nema_decay = 0.999\nlabel_smoothing = 0.1\noptimizer = "adamw"\n')
    runs, _ = load_grid(grid)
    assert [r.args["schedule"] for r in runs] == ["cosine", "onecycle"]
    assert runs[0].args["ema_decay"] == 0.999 and runs[0].args["augment"] == "flip+crop"


def test_tta_views_are_the_mirror_and_the_ten_crops():
    x = torch.rand(2, 3, 48, 48)
    flip = tta_views(x, "flip")
    assert len(flip) == 2 and torch.equal(flip[1], x.flip(3))
    crops = tta_views(x, "10crop")
    assert len(crops) == 10 and all(c.shape[-2:] == (44, 44) for c in crops)
    assert torch.equal(crops[0], x[..., :44, :44]) and torch.equal(crops[3], x[..., 4:, 4:])
    assert torch.equal(crops[4], x[..., 2:46, 2:46]) and torch.equal(crops[9], crops[4].flip(3))


def test_tta_predictions_average_the_views_softmax_and_are_recorded_beside_the_folds(tiny_root, tmp_path):
    from msde_bench.data.msde import read_msde
    from msde_bench.data.pairs import ImageCache
    from msde_bench.factory import build_method

    ds = read_msde(tiny_root)
    spec = RunSpec(model="mobilenetv3_small_050", data=str(tiny_root), image_size=32)
    method = build_method(spec, load=False, num_classes=len(ds.classes))[0].eval()
    cache, idx = ImageCache(ds, 32), np.arange(12)
    labels, nm, m, p_nm, p_m = predict(method, cache, idx, torch.device("cpu"), probabilities=True, tta="flip")
    x = PairedAugment("none").eval(cache.masked[torch.as_tensor(idx)], torch.device("cpu"))
    with torch.no_grad():
        want = (torch.softmax(method(x).logits, 1) + torch.softmax(method(x.flip(3)).logits, 1)) / 2
    assert np.allclose(p_m, want.numpy(), atol=1e-6)
    assert list(m) == list(cache.class_ids(want.argmax(1).numpy()))
    res = CliRunner().invoke(main, ["run", "--model", "mobilenetv3_small_050", "--data", str(tiny_root), "--epochs",
                                    "1", "--folds", "2", "--fold", "0", "--image-size", "32", "--batch-size", "8",
                                    "--device", "cpu", "--no-progress", "--out", str(tmp_path), "--tta", "flip,10crop"])
    assert res.exit_code == 0, res.output
    fold = json.loads(next(tmp_path.glob("*.json")).read_text())["folds"][0]
    assert set(fold["tta"]) == {"flip", "10crop"} and 0 <= fold["tta"]["10crop"]["acc_masked"] <= 1
    assert "acc_masked" in fold and fold["acc_masked"] != fold["tta"]  # the fold's own number stays
    shown = CliRunner().invoke(main, ["results", "show", str(next(tmp_path.glob("*.json")))])
    assert "flip masked" in shown.output and "10crop non_masked" in shown.output
