"""The paper's paradigms: loss terms against hand-computed values, gradients, the teacher, quirks."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from msde_bench.cli import main
from msde_bench.data.msde import read_msde
from msde_bench.data.pairs import ImageCache
from msde_bench.data.transforms import PairedAugment
from msde_bench.errors import MsdeError
from msde_bench.factory import build_method
from msde_bench.models.base import DoubleSoftmax, LossState, Method, Output, cross_entropy_terms
from msde_bench.options import QUIRKS, parse_options
from msde_bench.paradigms.base import Batch, FoldContext
from msde_bench.paradigms.contrastive import Contrastive, align_cosine, align_mse, supcon
from msde_bench.paradigms.distill import Distill, kd_loss
from msde_bench.protocol import make_folds
from msde_bench.runner import fit_model
from msde_bench.spec import RunSpec, make_spec
from msde_bench.training import eval_augment


class Tiny(Method):
    """conv 3->4 -> feature map; mean pool -> linear 4->7. Records its inputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 7)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        f = self.conv(x)
        e = f.mean(dim=(2, 3))
        return Output(self.fc(e), e, f)

    def loss(self, x, y, out, state):
        return cross_entropy_terms(out, y)


def _opts(cls, **kw):
    return {**parse_options([], cls.options), **kw}


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    nm = torch.randn(n, 3, 6, 6, generator=g)
    m = torch.randn(n, 3, 6, 6, generator=g)
    return Batch(nm, m, torch.tensor([0, 1, 1, 3][:n]))


# ---- loss terms -------------------------------------------------------------------------------


def test_align_mse_and_cosine_by_hand():
    a = torch.tensor([[[[1.0]], [[0.0]]], [[[3.0]], [[4.0]]]])  # 2 x 2 x 1 x 1
    b = torch.tensor([[[[0.0]], [[1.0]]], [[[3.0]], [[4.0]]]])
    assert align_mse(a, b).item() == pytest.approx((1 + 1 + 0 + 0) / 4)
    # first pair orthogonal (cos 0), second identical (cos 1)
    assert align_cosine(a, b).item() == pytest.approx(((1 - 0) + (1 - 1)) / 2)


def test_supcon_by_hand():
    z = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]), dim=1)
    y = torch.tensor([0, 0, 1, 1])
    t = 0.5
    total, anchors = 0.0, 0
    for i in range(4):
        others = [a for a in range(4) if a != i]
        denom = sum(math.exp(float(z[i] @ z[a]) / t) for a in others)
        pos = [p for p in others if y[p] == y[i]]
        total += sum(-math.log(math.exp(float(z[i] @ z[p]) / t) / denom) for p in pos) / len(pos)
        anchors += 1
    assert supcon(z, y, t).item() == pytest.approx(total / anchors, rel=1e-5)


def test_kd_loss_by_hand():
    s = torch.tensor([[1.0, 2.0, 0.5]])
    t = torch.tensor([[0.5, 2.5, 0.0]])
    T = 2.0
    ps = torch.softmax(s / T, 1)[0]
    pt = torch.softmax(t / T, 1)[0]
    kl = sum(float(pt[i] * (torch.log(pt[i]) - torch.log(ps[i]))) for i in range(3))
    assert kd_loss(s, t, T).item() == pytest.approx(kl * T * T, rel=1e-5)


def test_contrastive_loss_is_beta_ce_plus_alpha_mse_of_normalised_maps():
    method, batch = Tiny(), _batch()
    par = Contrastive(_opts(Contrastive, alpha=0.7, beta=1.3))
    out = par.training_step(method, batch)
    f_nm, f_m = method.conv(batch.non_masked), method.conv(batch.masked)
    ce_nm = F.cross_entropy(method.fc(f_nm.mean((2, 3))), batch.y)
    ce_m = F.cross_entropy(method.fc(f_m.mean((2, 3))), batch.y)
    n_nm, n_m = f_nm / f_nm.norm(dim=1, keepdim=True), f_m / f_m.norm(dim=1, keepdim=True)
    mse = ((n_nm - n_m) ** 2).mean()
    assert out["loss"].item() == pytest.approx((1.3 * (ce_nm + ce_m) + 0.7 * mse).item(), rel=1e-5)
    assert out["align"].item() == pytest.approx(mse.item(), rel=1e-5)
    raw = Contrastive(_opts(Contrastive, normalise=False)).training_step(method, batch)
    assert raw["align"].item() == pytest.approx(((f_nm - f_m) ** 2).mean().item(), rel=1e-5)
    assert out["logits"].shape == (8, 7) and torch.equal(out["targets"], torch.cat([batch.y, batch.y]))


def test_contrastive_joint_forward_normalises_both_views_together():
    batch = _batch()
    # without batch norm one pass over both views is the same computation as two
    method = Tiny()
    two = Contrastive(_opts(Contrastive, alpha=0.7)).training_step(method, batch)
    method.seen.clear()
    one = Contrastive(_opts(Contrastive, alpha=0.7, joint_forward=True)).training_step(method, batch)
    assert len(method.seen) == 1 and method.seen[0].shape[0] == 8
    assert one["loss"].item() == pytest.approx(two["loss"].item(), rel=1e-6)
    # with batch norm in training mode it is not: each view is normalised with the other's statistics too
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    normed = Tiny()
    normed.forward = lambda x, inner=Tiny.forward: inner(normed, bn(x))
    sep = Contrastive(_opts(Contrastive, alpha=1.0)).training_step(normed, batch)["loss"]
    joint = Contrastive(_opts(Contrastive, alpha=1.0, joint_forward=True)).training_step(normed, batch)["loss"]
    both = normed(torch.cat([batch.non_masked, batch.masked]))
    f_nm, f_m = both.feature_map[:4], both.feature_map[4:]
    expected = (F.cross_entropy(both.logits[:4], batch.y) + F.cross_entropy(both.logits[4:], batch.y)
                + F.mse_loss(F.normalize(f_nm, dim=1), F.normalize(f_m, dim=1)))
    assert joint.item() == pytest.approx(expected.item(), rel=1e-5) and abs(joint.item() - sep.item()) > 1e-4


def test_contrastive_uses_the_methods_own_loss():
    class Custom(Tiny):
        def loss(self, x, y, out, state=None):
            return {"loss": out.logits.sum() * 0 + 5.0}

    out = Contrastive(_opts(Contrastive, alpha=0.0, beta=1.0)).training_step(Custom(), _batch())
    assert out["loss"].item() == pytest.approx(10.0)


def test_contrastive_gradient_reaches_the_shared_network_from_both_views():
    method, batch = Tiny(), _batch()
    batch.non_masked.requires_grad_(True)
    batch.masked.requires_grad_(True)
    for align in ("mse", "cosine", "supcon"):
        method.zero_grad()
        batch.non_masked.grad = batch.masked.grad = None
        Contrastive(_opts(Contrastive, align=align)).training_step(method, batch)["loss"].backward()
        assert batch.non_masked.grad.abs().sum() > 0 and batch.masked.grad.abs().sum() > 0
        assert method.conv.weight.grad.abs().sum() > 0
    # both forward passes went through the same module
    assert len(method.seen) == 6


# ---- distill ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ctx(tiny_root):
    ds = read_msde(tiny_root)
    cache = ImageCache(ds, 32)
    folds = make_folds("clean", ds.subjects, ds.labels, 2, 0)
    spec = RunSpec(paradigm="distill", data=str(tiny_root), folds=2, epochs=1, image_size=32, batch_size=16,
                   device="cpu")
    return dict(spec=spec, cache=cache, folds=folds, subjects=ds.subjects)


def _ctx(t, fold=0, spec=None):
    f = t["folds"][fold]
    dev = torch.device("cpu")
    return FoldContext(spec=spec or t["spec"], cache=t["cache"], train_idx=f.train, test_idx=f.test,
                       subjects=t["subjects"], device=dev, seed=1, fold=fold,
                       fit=lambda s, seed: fit_model(s, t["cache"], f.train, dev, seed),
                       build=lambda s: build_method(s, load=False)[0])


def test_teacher_is_frozen_sees_only_training_subjects_and_is_cached(tiny_ctx, monkeypatch):
    par = Distill(_opts(Distill))
    par.prepare(_ctx(tiny_ctx))
    f = tiny_ctx["folds"][0]
    seen = par.report()["teacher_train_subjects"]
    assert seen == sorted(set(tiny_ctx["subjects"][f.train].tolist()))
    assert not set(seen) & set(f.test_subjects)
    assert not par.teacher.training
    student = build_method(tiny_ctx["spec"])[0]
    batch = Batch(*(PairedAugment("none").eval(x[:8], torch.device("cpu"))
                    for x in (tiny_ctx["cache"].non_masked, tiny_ctx["cache"].masked)), tiny_ctx["cache"].labels[:8])
    par.training_step(student, batch)["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in par.teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())
    # the same spec again: the cached teacher is loaded, not trained
    again = Distill(_opts(Distill))
    ctx = _ctx(tiny_ctx)
    again.prepare(dataclasses.replace(ctx, fit=lambda *a: pytest.fail("teacher trained again")))
    assert again.report()["teacher"].startswith("cache ")
    for a, b in zip(par.teacher.state_dict().values(), again.teacher.state_dict().values()):
        assert torch.equal(a, b)
    # in the memory layout of the student and of a freshly trained teacher (issue 16; fp32 on the CPU:
    # the plain layout, issue 23), with the same features
    conv = next(m for m in again.teacher.modules() if isinstance(m, nn.Conv2d))
    fresh = next(m for m in par.teacher.modules() if isinstance(m, nn.Conv2d))
    assert tiny_ctx["spec"].precision == "fp32"
    for c in (conv, fresh):
        assert c.weight.is_contiguous() and not c.weight.is_contiguous(memory_format=torch.channels_last)
    x = batch.non_masked
    assert torch.equal(par.teacher(x).feature_map, again.teacher(x).feature_map)


def test_a_teacher_that_saw_test_subjects_is_refused(tiny_ctx, tmp_path):
    par = Distill(_opts(Distill))
    par.prepare(_ctx(tiny_ctx, fold=0))
    cached = par.report()["teacher"].split("(")[1].rstrip(")")
    # fold 0's teacher trained on fold 1's test subjects: loading it for fold 1 must fail
    bad = Distill(_opts(Distill, teacher=cached))
    with pytest.raises(MsdeError, match="trained on subjects .* that fold 1 tests"):
        bad.prepare(_ctx(tiny_ctx, fold=1))
    ok = Distill(_opts(Distill, teacher=cached))
    ok.prepare(_ctx(tiny_ctx, fold=0))
    assert ok.report()["teacher"] == cached


def test_teacher_file_that_does_not_fit(tiny_ctx, tmp_path):
    path = tmp_path / "t.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(MsdeError, match="does not fit model 'resnet18'"):
        Distill(_opts(Distill, teacher=str(path))).prepare(_ctx(tiny_ctx))


@pytest.mark.parametrize("p,view", [(0.0, "non_masked"), (1.0, "masked")])
def test_p_zero_and_one_give_pure_students(p, view):
    par = Distill(_opts(Distill, p=p))
    par.teacher = Tiny().eval()
    par.gen = torch.Generator().manual_seed(0)
    student, batch = Tiny(), _batch()
    out = par.training_step(student, batch)
    assert torch.equal(student.seen[0], getattr(batch, view))
    assert out["masked_share"].item() == p


def test_p_half_mixes_views_per_sample():
    par = Distill(_opts(Distill, p=0.5))
    par.gen = torch.Generator().manual_seed(0)
    draws = torch.cat([par.student_views(Batch(None, None, torch.zeros(64, dtype=torch.long))) for _ in range(10)])
    assert 0.4 < draws.float().mean().item() < 0.6


def test_distill_loss_by_hand():
    par = Distill(_opts(Distill, p=0.0, **{"lambda": 10.0}, kd_weight=0.5, kd_temperature=2.0))
    teacher = Tiny().eval()
    with torch.no_grad():
        teacher.conv.weight.mul_(-1)
    par.teacher, par.gen = teacher, torch.Generator()
    student, batch = Tiny(), _batch()
    out = par.training_step(student, batch)
    f_s, f_t = student.conv(batch.non_masked), teacher.conv(batch.non_masked)
    ce = F.cross_entropy(student.fc(f_s.mean((2, 3))), batch.y)
    mse = ((F.normalize(f_s, dim=1) - F.normalize(f_t, dim=1)) ** 2).mean()
    kd = kd_loss(student.fc(f_s.mean((2, 3))), teacher.fc(f_t.mean((2, 3))), 2.0)
    assert out["loss"].item() == pytest.approx((ce + 10 * mse + 0.5 * kd).item(), rel=1e-5)


# ---- quirks -----------------------------------------------------------------------------------


def test_quirk_double_softmax_feeds_probabilities_to_cross_entropy():
    inner = Tiny()
    x, y = _batch().non_masked, torch.tensor([0, 1, 1, 3])
    wrapped = DoubleSoftmax(inner)
    out = wrapped(x)
    assert torch.allclose(out.logits.sum(1), torch.ones(4))
    logits = inner.fc(inner.conv(x).mean((2, 3)))
    assert torch.equal(out.logits.argmax(1), logits.argmax(1))
    loss = wrapped.loss(x, y, out, LossState())["loss"]
    assert loss.item() == pytest.approx(F.cross_entropy(torch.softmax(logits, 1), y).item(), rel=1e-5)
    assert loss.item() != pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-3)
    method, _ = build_method(RunSpec(options=(("quirk_double_softmax", True),)))
    assert isinstance(method, DoubleSoftmax)


def test_quirk_eval_normalisation():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    plain = eval_augment(RunSpec()).eval(x, torch.device("cpu"))
    quirk = eval_augment(RunSpec(options=(("quirk_eval_normalisation", True),))).eval(x, torch.device("cpu"))
    assert torch.allclose(quirk, torch.ones_like(quirk))  # (1 - 0.5) / 0.5
    assert torch.allclose(plain[0, 0], torch.full((2, 2), (1 - 0.485) / 0.229))


def test_quirk_24_epochs_and_paper_learning_rates():
    base = dict(model="resnet18", recipe="paper")
    assert make_spec(paradigm="baseline", paper_lr=1e-3, **base).epochs == 25
    assert make_spec(paradigm="baseline", paper_lr=1e-3, options={"quirk_24_epochs": True}, **base).epochs == 24
    assert make_spec(paradigm="distill", paper_lr=Distill.paper_lr, **base).lr == 1e-2
    assert make_spec(paradigm="contrastive", paper_lr=Contrastive.paper_lr, **base).lr == 1e-3
    spec = make_spec(paradigm="baseline", paper_lr=1e-3, **base)
    assert (spec.milestones, spec.batch_size, spec.image_size, spec.augment) == ((14, 21), 96, 224, "paper")
    assert make_spec(paradigm="distill", paper_lr=1e-2, recipe="quick", model="resnet18").lr == 2e-3
    assert set(QUIRKS) == {"quirk_double_softmax", "quirk_eval_normalisation", "quirk_24_epochs",
                           "quirk_pool_normalised"}


def _reference_resnet(method):
    """The MSD-E reference model on our trunk's weights: forward returns F.normalize(layer4 output);
    AdaptiveAvgPool2d(1) outside; Classifier = Linear + softmax (probabilities into CrossEntropyLoss)."""
    inner = method.inner

    def forward(x):
        fmap = F.normalize(inner.trunk.forward_features(x), dim=1)
        return fmap, torch.softmax(inner.fc(F.adaptive_avg_pool2d(fmap, 1).flatten(1)), dim=1)

    return forward


def _quirked(**extra):
    torch.manual_seed(0)
    spec = RunSpec(options=(("quirk_double_softmax", True), ("quirk_pool_normalised", True), *extra.items()))
    return build_method(spec)[0].train()


def test_reference_quirks_give_the_reference_contrastive_loss():
    """quirk_pool_normalised + quirk_double_softmax: alpha * MSE(F_nm, F_m) + beta * (CE(p_m, y) +
    CE(p_nm, y)) of the reference code (PAPER.md 4.2), F the normalised maps, p probabilities."""
    method = _quirked()
    batch = _batch()
    batch = dataclasses.replace(batch, non_masked=torch.randn(4, 3, 32, 32), masked=torch.randn(4, 3, 32, 32))
    out = Contrastive(_opts(Contrastive, alpha=0.7, beta=1.3)).training_step(method, batch)
    ref = _reference_resnet(method)
    f_nm, p_nm = ref(batch.non_masked)
    f_m, p_m = ref(batch.masked)
    expected = 0.7 * F.mse_loss(f_nm, f_m) + 1.3 * (F.cross_entropy(p_m, batch.y) + F.cross_entropy(p_nm, batch.y))
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    # without the pooling quirk the classifier pools the raw map: a different loss
    torch.manual_seed(0)
    plain = build_method(RunSpec(options=(("quirk_double_softmax", True),)))[0].train()
    other = Contrastive(_opts(Contrastive, alpha=0.7, beta=1.3)).training_step(plain, batch)
    assert other["loss"].item() != pytest.approx(expected.item(), rel=1e-4)


def test_reference_quirks_give_the_reference_distill_loss():
    """CE(student probabilities, y) + lambda * MSE(teacher map(non-masked), student map(input))."""
    student, teacher = _quirked(), _quirked().eval()
    par = Distill(_opts(Distill, p=1.0, **{"lambda": 100.0}))
    par.teacher, par.gen = teacher, torch.Generator()
    batch = _batch()
    batch = dataclasses.replace(batch, non_masked=torch.randn(4, 3, 32, 32), masked=torch.randn(4, 3, 32, 32))
    out = par.training_step(student, batch)
    f_s, p_s = _reference_resnet(student)(batch.masked)
    with torch.no_grad():
        f_t, _ = _reference_resnet(teacher)(batch.non_masked)
    expected = F.cross_entropy(p_s, batch.y) + 100 * F.mse_loss(f_t, f_s)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_quirk_pool_normalised_is_refused_where_it_would_be_ignored():
    with pytest.raises(MsdeError, match="quirk_pool_normalised: model 'manet' builds its own feature path"):
        build_method(RunSpec(model="manet", options=(("quirk_pool_normalised", True),)))


def test_quirks_reference_turns_on_every_reference_quirk():
    from msde_bench.api import build_spec
    from msde_bench.board import _paradigm_label
    from msde_bench.spec_build import compare_specs as build_specs

    spec = build_spec("resnet18", "distill", recipe="quick", device="cpu", quirks="reference")
    on = {k for k, v in spec.options if k.startswith("quirk_") and v}
    assert on == {*QUIRKS, "quirk_student_random_init"} and spec.precision == "fp32"
    # an explicit --opt wins; a method's own official-code quirks are not the reference's
    spec = build_spec("scn", "baseline", recipe="quick", device="cpu", quirks="reference",
                      options=["quirk_24_epochs=false"])
    assert spec.option("quirk_24_epochs") is False and spec.option("scn.quirk_relabel_any") is False
    assert _paradigm_label(spec.to_dict()) == "baseline (mixed) [quirk_double_softmax=True, quirk_eval_normalisation=True, " \
                                              "quirk_pool_normalised=True]"
    full = build_spec("resnet18", "contrastive", recipe="quick", device="cpu", quirks="reference")
    assert _paradigm_label(full.to_dict()) == "contrastive [reference quirks]"
    rows = build_specs("resnet18", "quick", {}, quirks="reference", data=None)
    assert all(s.option(k) is True for _, s in rows for k in QUIRKS)
    assert [s.option("quirk_student_random_init") for _, s in rows] == [None] * 4 + [True]


def test_the_weights_default_to_the_reference_share_and_quirks_reference_restores_the_reference_weights():
    """Since 0.10 alpha = 30 and lambda = 1000 by default (the shares of the gradient that the reference
    code's alpha = 1 and lambda = 100 had in its objective); under --quirks reference, which restores that
    objective, the reference code's own weights come back, unless given with --opt; in compare's rows too."""
    from msde_bench.api import build_spec
    from msde_bench.spec_build import compare_specs as build_specs

    plain = {p: build_spec("resnet18", p, recipe="quick", device="cpu") for p in ("contrastive", "distill")}
    assert plain["contrastive"].option("alpha") == 30.0 and plain["distill"].option("lambda") == 1000.0
    ref = {p: build_spec("resnet18", p, recipe="quick", device="cpu", quirks="reference")
           for p in ("contrastive", "distill")}
    assert ref["contrastive"].option("alpha") == 1.0 and ref["distill"].option("lambda") == 100.0
    given = build_spec("resnet18", "contrastive", recipe="quick", device="cpu", quirks="reference",
                       options=["alpha=5"])
    assert given.option("alpha") == 5.0
    rows = dict(build_specs("resnet18", "quick", {}, quirks="reference", data=None))
    assert [s.option("alpha") for s in rows.values() if s.paradigm == "contrastive"] == [1.0]
    assert [s.option("lambda") for s in rows.values() if s.paradigm == "distill"] == [100.0]


def test_quirk_student_random_init(tiny_root, tmp_path):
    torch.manual_seed(3)
    ckpt = tmp_path / "init.pth"
    torch.save(build_method(RunSpec())[0].trunk.state_dict(), ckpt)
    common = ["run", "--data", str(tiny_root), "--paradigm", "distill", "--recipe", "quick", "--epochs", "1",
              "--folds", "2", "--fold", "0", "--image-size", "32", "--device", "cpu", "--init", str(ckpt),
              "--no-progress"]
    r1 = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "a")])
    r2 = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "b"), "--opt", "quirk_student_random_init=true"])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    import json

    a = json.loads(next((tmp_path / "a").glob("*.json")).read_text())
    b = json.loads(next((tmp_path / "b").glob("*.json")).read_text())
    assert a["folds"][0]["init"]["loaded"] > 0
    assert "init" not in b["folds"][0]


# ---- end to end -------------------------------------------------------------------------------


@pytest.mark.parametrize("paradigm,opts", [("contrastive", []), ("contrastive", ["--opt", "align=supcon"]),
                                           ("distill", ["--opt", "kd_weight=1"])])
def test_paradigm_end_to_end(tiny_root, tmp_path, paradigm, opts):
    res = CliRunner().invoke(main, ["run", "--data", str(tiny_root), "--paradigm", paradigm, "--recipe", "quick",
                                    "--epochs", "1", "--folds", "2", "--image-size", "32", "--batch-size", "16",
                                    "--device", "cpu", "--out", str(tmp_path), "--no-progress", *opts])
    assert res.exit_code == 0, res.output
    import json

    result = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert result["spec"]["paradigm"] == paradigm and len(result["folds"]) == 2
    for f in result["folds"]:
        assert f["mask_gap"] == pytest.approx(f["acc_non_masked"] - f["acc_masked"])
        if paradigm == "distill":
            assert not set(f["paradigm"]["teacher_train_subjects"]) & set(f["test_subjects"])


def test_compare_uses_the_same_folds_for_every_row(tiny_root, tmp_path):
    args = ["compare", "--data", str(tiny_root), "--recipe", "quick", "--epochs", "1", "--folds", "2", "--fold", "1",
            "--image-size", "32", "--batch-size", "16", "--device", "cpu", "--out", str(tmp_path), "--no-progress"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    for title in ("baseline (non-masked)", "baseline (masked)", "baseline (mixed)", "contrastive", "distill"):
        assert f"| {title}" in res.output
    import json

    results = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert len(results) == 5
    assert len({tuple(r["folds"][0]["test_subjects"]) for r in results}) == 1
    assert {r["spec"]["options"].get("train_on") for r in results if r["spec"]["paradigm"] == "baseline"} == \
        {"non-masked", "masked", "mixed"}
    assert "+0.000" in res.output  # the non-masked baseline's own delta
    # a second compare reuses every finished run
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and again.output.count("already complete") == 5


def test_compare_rejects_an_option_no_row_accepts(tiny_root):
    res = CliRunner().invoke(main, ["compare", "--data", str(tiny_root), "--opt", "gamma=2"])
    assert res.exit_code == 2 and "--opt gamma: unknown option" in res.output


def test_compare_rows_and_run_share_specs():
    """A compare row and the equivalent `msde-bench run` give the same spec, hence the same result file."""
    from msde_bench.spec_build import check_options
    from msde_bench.spec_build import compare_specs as build_specs

    specs = dict(build_specs("resnet18", "quick", {}, seed=0, device="cpu"))
    for title, paradigm, opts in (("distill", "distill", []), ("baseline (masked)", "baseline", ["train_on=masked"])):
        run_spec = make_spec(model="resnet18", paradigm=paradigm, recipe="quick", seed=0, device="cpu",
                             options=check_options("resnet18", paradigm, opts))
        assert specs[title] == run_spec


def test_epochs_override_scales_the_schedule():
    quick = make_spec(model="resnet18", paradigm="baseline", recipe="quick", epochs=12)
    assert quick.epochs == 12 and quick.milestones == (10,)
    paper = make_spec(model="resnet18", paradigm="baseline", recipe="paper", epochs=50)
    assert paper.milestones == (28, 42)
    same = make_spec(model="resnet18", paradigm="baseline", recipe="paper", options={"quirk_24_epochs": True})
    assert same.epochs == 24 and same.milestones == (14, 21)  # the reference's own schedule


def test_teacher_spec_keeps_method_options_and_quirks():
    from msde_bench.spec_build import check_options

    opts = check_options("scn", "distill", ["scn.beta=0.5", "quirk_double_softmax=true", "lambda=3"])
    spec = make_spec(model="scn", paradigm="distill", recipe="quick", options=opts)
    t = Distill(_opts(Distill)).teacher_spec(spec)
    topts = dict(t.options)
    assert t.paradigm == "baseline" and topts["train_on"] == "non-masked"
    assert topts["scn.beta"] == 0.5 and topts["quirk_double_softmax"] is True
    assert "lambda" not in topts and "p" not in topts
    assert set(topts) == set(check_options("scn", "baseline", []))  # a valid, canonical baseline spec


def test_two_workers_that_need_one_teacher_train_it_once(tiny_ctx):
    """The teacher's file lock: the second prepare waits for the first and loads its teacher."""
    import threading
    import time

    calls = []
    base = _ctx(tiny_ctx)

    def slow_fit(spec, seed):
        calls.append(seed)
        time.sleep(0.5)  # long enough for the other thread to reach the lock
        return base.fit(spec, seed)

    spec = tiny_ctx["spec"].with_(seed=7)  # a teacher no other test has cached
    pars = [Distill(_opts(Distill)) for _ in range(2)]
    threads = [threading.Thread(target=p.prepare, args=(dataclasses.replace(base, spec=spec, fit=slow_fit),))
               for p in pars]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(p.report()["teacher"].split(" ")[0] for p in pars) == ["cache", "trained"]
    for a, b in zip(pars[0].teacher.state_dict().values(), pars[1].teacher.state_dict().values()):
        assert torch.equal(a, b)
