"""The budget rule: under `steps` every paradigm takes the mixed baseline's optimiser steps with
batch_size images per step; under `epochs` (the reference's) every paradigm passes over its items
`epochs` times in batches of batch_size items."""

from collections import Counter

import numpy as np
import pytest
import torch

from msde_bench.api import build_spec
from msde_bench.errors import MsdeError
from msde_bench.factory import build_paradigm
from msde_bench.spec import RunSpec, make_spec
from msde_bench.spec_build import complete_spec
from msde_bench.training import Trainer, budget_plan
from tests.test_contract import Recorder, _Cache

# (paradigm, options): the paradigms as the leaderboard and `compare` run them
PARADIGMS = [("baseline", {"train_on": "mixed"}), ("baseline", {"train_on": "non-masked"}),
             ("baseline", {"train_on": "masked"}), ("contrastive", {}), ("distill", {})]


def _spec(paradigm, options, budget, batch_size=4):
    return RunSpec(paradigm=paradigm, budget=budget, batch_size=batch_size, image_size=8, augment="none",
                   options=tuple(sorted(options.items())))


def _epoch(spec):
    """One epoch of batches over 7 training pairs: (images per step, pair views seen)."""
    trainer = Trainer(spec, Recorder(), build_paradigm(spec), torch.device("cpu"))
    train_idx = np.array([0, 2, 3, 5, 6, 9, 10])
    sizes, seen = [], Counter()
    per_item = trainer.paradigm.images_per_item
    for b in trainer.batches(_Cache(12), train_idx, torch.Generator().manual_seed(1)):
        sizes.append(len(b.y) * per_item)
        views = b.view.tolist() if b.view is not None else [None] * len(b.y)
        seen.update(zip(b.index.tolist(), views))
    assert len(sizes) == trainer.steps_per_epoch(len(train_idx))
    return sizes, seen


@pytest.mark.parametrize("paradigm,options", PARADIGMS)
def test_steps_budget_gives_every_paradigm_the_mixed_baselines_steps_and_batch(paradigm, options):
    sizes, seen = _epoch(_spec(paradigm, options, "steps", batch_size=8))
    mixed, _ = _epoch(_spec("baseline", {"train_on": "mixed"}, "steps", batch_size=8))
    # 7 pairs = 14 images: 2 steps of 8 and 6 images, for every paradigm
    assert sizes == mixed == [8, 6]
    # single-view paradigms see every pair twice, one shuffle per pass; the others once per view
    if paradigm == "baseline" and options["train_on"] == "mixed":
        assert set(seen.values()) == {1} and len(seen) == 14
    else:
        assert set(seen.values()) == {2 if paradigm != "contrastive" else 1} and len(seen) == 7


@pytest.mark.parametrize("paradigm,options,expected", [
    (*PARADIGMS[0], [4, 4, 4, 2]),  # 14 pair views in batches of 4
    (*PARADIGMS[1], [4, 4]),  # 7 pairs in batches of 4 (the last holds 3)
    (*PARADIGMS[3], [8, 8]),  # 7 pairs of 2 images in batches of 4 pairs
    (*PARADIGMS[4], [4, 4]),
])
def test_epochs_budget_is_the_reference_rule(paradigm, options, expected):
    sizes, seen = _epoch(_spec(paradigm, options, "epochs"))
    assert sizes[:-1] == expected[:-1] and len(sizes) == len(expected)
    assert set(seen.values()) == {1}


def test_budget_plan_values_and_refusals():
    assert budget_plan(_spec("contrastive", {}, "steps", 32), build_paradigm(_spec("contrastive", {}, "steps"))) == (16, 1)
    assert budget_plan(_spec("distill", {}, "steps", 32), build_paradigm(_spec("distill", {}, "steps"))) == (32, 2)
    assert budget_plan(_spec("contrastive", {}, "epochs", 32), build_paradigm(_spec("contrastive", {}, "epochs"))) == (32, 1)
    spec = _spec("contrastive", {}, "steps", batch_size=3)
    with pytest.raises(MsdeError, match="--batch-size 3: paradigm 'contrastive' puts 2 images in a batch item"):
        budget_plan(spec, build_paradigm(spec))
    with pytest.raises(ValueError, match="unknown budget"):
        RunSpec(budget="images")


def test_recipes_state_their_budget():
    assert make_spec(model="resnet18", paradigm="contrastive", recipe="quick").budget == "steps"
    assert make_spec(model="resnet18", paradigm="contrastive", recipe="paper").budget == "epochs"
    assert make_spec(model="scn", paradigm="baseline", recipe="official", official={"epochs": 3}).budget == "epochs"
    assert build_spec("resnet18", "contrastive", recipe="quick", device="cpu", budget="epochs").budget == "epochs"


def test_upgrade_gives_old_results_the_rule_they_ran_under():
    """Results from before the rule ran under `epochs`; where both rules train identically (the
    mixed baseline) the upgrade records `steps`, so the run is found again under today's quick recipe."""
    old = {k: v for k, v in make_spec(model="resnet18", paradigm="baseline", recipe="quick").to_dict().items()
           if k != "budget"}
    assert complete_spec(old)["budget"] == "steps"
    assert complete_spec(dict(old, options={"train_on": "masked"}))["budget"] == "epochs"
    assert complete_spec(dict(old, paradigm="contrastive", options={}))["budget"] == "epochs"
    assert complete_spec(dict(old, budget="epochs"))["budget"] == "epochs"  # a recorded rule is kept


# ---- precision ---------------------------------------------------------------------------------


def test_precision_defaults_and_checks(monkeypatch):
    from msde_bench import device as D
    from msde_bench.device import check_precision, default_precision

    assert default_precision(torch.device("cuda")) == "bf16"
    assert default_precision(torch.device("cuda"), "reference") == "fp32"  # the reference trains in fp32
    assert default_precision(torch.device("cpu")) == "fp32"
    # bf16 on a CPU with bf16 hardware, under the quick recipe only (where fp32 / bf16 was measured)
    for hardware, quick in ((None, "fp32"), ("avx512_bf16", "bf16"), ("amx_bf16", "bf16")):
        monkeypatch.setattr(D, "cpu_bf16", lambda hardware=hardware: hardware)
        assert default_precision(torch.device("cpu"), recipe="quick") == quick
        assert default_precision(torch.device("cpu"), recipe="paper") == "fp32"
        assert default_precision(torch.device("cpu"), "reference", recipe="quick") == "fp32"
        assert build_spec("resnet18", "baseline", recipe="quick", device="cpu").precision == quick
        assert build_spec("resnet18", "baseline", recipe="quick", device="cpu", precision="fp32").precision == "fp32"
        assert build_spec("resnet18", "baseline", recipe="paper", device="cpu").precision == "fp32"
    with pytest.raises(MsdeError, match="--precision fp16: needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown precision"):
        RunSpec(precision="fp64")
    assert build_spec("resnet18", "baseline", recipe="quick", device="cpu", precision="bf16").precision == "bf16"


def test_cpu_bf16_reads_the_hardware_torch_sees():
    from msde_bench.device import cpu_bf16

    expected = ("amx_bf16" if torch.cpu._is_amx_tile_supported() else
                "avx512_bf16" if torch.cpu._is_avx512_bf16_supported() else None)
    assert cpu_bf16() == expected


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_training_runs_in_the_specs_precision(precision, dtype):
    from msde_bench.factory import build_method

    spec = RunSpec(precision=precision, batch_size=4, image_size=32, augment="none")
    torch.manual_seed(0)
    trainer = Trainer(spec, build_method(spec)[0], build_paradigm(spec), torch.device("cpu"))
    batch = next(trainer.batches(_Cache(4), np.arange(4), torch.Generator().manual_seed(0)))
    batch.images = torch.nn.functional.interpolate(batch.images, size=32)  # the mixed baseline: each item's view
    out = trainer.train_step(batch)
    assert out["logits"].dtype == dtype and torch.isfinite(out["loss"])


def test_old_results_get_the_precision_they_ran_in():
    old = {k: v for k, v in make_spec(model="resnet18", paradigm="baseline", recipe="quick").to_dict().items()
           if k not in ("precision", "budget")}
    assert complete_spec(old)["precision"] == "fp32"
    assert complete_spec(dict(old, device="cuda:0"))["precision"] == "bf16"  # bf16 autocast was on for CUDA


def test_cli_refuses_fp16_on_cpu(tmp_path):
    from click.testing import CliRunner

    from msde_bench.cli import main

    out = CliRunner().invoke(main, ["run", "--device", "cpu", "--precision", "fp16", "--data", "synth:tiny",
                                    "--out", str(tmp_path)])
    assert out.exit_code == 2 and "--precision fp16: needs a CUDA device" in out.output
    assert not list(tmp_path.iterdir())


def test_one_computation_has_one_budget_label():
    """The mixed baseline trains identically under both rules, so its spec records `steps` whatever
    was asked (one run id for one computation); the others keep the rule asked for."""
    for budget in ("steps", "epochs"):
        assert build_spec("resnet18", "baseline", recipe="quick", device="cpu", budget=budget).budget == "steps"
        assert build_spec("resnet18", "contrastive", recipe="quick", device="cpu", budget=budget).budget == budget
        masked = build_spec("resnet18", "baseline", recipe="quick", device="cpu", budget=budget,
                            options=["train_on=masked"])
        assert masked.budget == budget
    from msde_bench.spec_build import compare_specs as build_specs

    rows = dict(build_specs("resnet18", "paper", {}, data=None))
    assert rows["baseline (mixed)"].budget == "steps" and rows["contrastive"].budget == "epochs"


def test_the_optimiser_is_fused_on_cuda_and_cpu():
    from msde_bench.device import optimizer_impl
    from msde_bench.training import make_optimizer

    params = [{"params": [torch.nn.Parameter(torch.zeros(3))]}]
    for optimizer in ("adam", "sgd"):
        spec = RunSpec(optimizer=optimizer)
        assert make_optimizer(spec, params, torch.device("cuda")).defaults["fused"] is True
        assert make_optimizer(spec, params, torch.device("cpu")).defaults["fused"] is True
        assert not make_optimizer(spec, params, torch.device("mps")).defaults.get("fused")
    assert [optimizer_impl(torch.device(d)) for d in ("cpu", "cuda", "mps")] == ["fused", "fused", "for-loop"]


def test_a_fused_step_is_the_for_loop_update():
    """The fused optimiser changes the order of float operations, not the update (0.4.0)."""
    from msde_bench.training import make_optimizer

    torch.manual_seed(0)
    w0, grads = torch.randn(64, 32), [torch.randn(64, 32) for _ in range(5)]
    for optimizer in ("adam", "sgd"):
        spec = RunSpec(optimizer=optimizer, lr=1e-2)
        fused, plain = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
        opt_f = make_optimizer(spec, [{"params": [fused]}], torch.device("cpu"))
        opt_p = make_optimizer(spec, [{"params": [plain]}], None)  # no device: PyTorch's default
        assert opt_f.defaults["fused"] and not opt_p.defaults.get("fused")
        for g in grads:
            for p, o in ((fused, opt_f), (plain, opt_p)):
                p.grad = g.clone()
                o.step()
        assert not torch.equal(fused, w0)
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision,layout", [("fp32", "contiguous"), ("bf16", "channels_last")])
def test_the_layout_follows_the_precision_on_cpu(precision, layout):
    """fp32 on the CPU trains in the plain layout, bf16 in channels_last (measured faster each);
    the model, every batch and the recorded environment agree."""
    from msde_bench.device import channels_last, memory_layout
    from msde_bench.factory import build_method
    from msde_bench.runner import environment

    cpu = torch.device("cpu")
    assert memory_layout(cpu, precision) == layout and channels_last(torch.device("cuda"), precision)
    spec = RunSpec(precision=precision, batch_size=4, image_size=16, augment="none",
                   options=(("train_on", "non-masked"),))
    trainer = Trainer(spec, build_method(spec)[0], build_paradigm(spec), cpu)
    conv = next(m for m in trainer.method.modules() if isinstance(m, torch.nn.Conv2d))
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert conv.weight.is_contiguous(memory_format=fmt) and conv.weight.shape[-1] > 1
    batch = next(trainer.batches(_Cache(4), np.arange(4), torch.Generator().manual_seed(0)))
    assert batch.non_masked.is_contiguous(memory_format=fmt)
    assert (layout == "channels_last") != batch.non_masked.is_contiguous()
    env = environment(cpu, precision)
    assert env["memory_format"] == layout and env["optimizer_impl"] == "fused"
    assert env["cpu_bf16"] in (None, "avx512_bf16", "amx_bf16")


@pytest.mark.parametrize("paradigm,options", PARADIGMS)
@pytest.mark.parametrize("batch_size", [2, 3, 8, 32])
def test_builtin_shapes_without_torch_agree_with_the_classes(paradigm, options, batch_size):
    """budget.builtin_shape (the leaderboard's torch-free view) is each built-in class's shape, and
    same_under_both is canonical_budget's verdict."""
    from msde_bench import budget
    from msde_bench.spec_build import canonical_budget

    spec = _spec(paradigm, options, "epochs", batch_size)
    par = build_paradigm(spec)
    assert budget.builtin_shape(paradigm, options) == (par.views_per_pair, par.images_per_item)
    assert budget.same_under_both(batch_size, par.views_per_pair, par.images_per_item) == (
        canonical_budget(spec).budget == "steps")
    assert budget.builtin_shape("my-plugin-paradigm", {}) is None
