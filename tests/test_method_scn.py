import dataclasses

import pytest
import torch
import torch.nn.functional as F
from msde_scn.model import SCN, rank_regularisation, relabel_mask

from msde_bench.api import LossState
from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_resume, check_shapes


def test_registered():
    check_registered("scn", "Wang et al.")


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    out = check_shapes(SCN(), size)
    assert out.extras["alpha"].shape == (2, 1)
    assert ((out.extras["alpha"] > 0) & (out.extras["alpha"] < 1)).all()


def test_logits_are_alpha_scaled():
    torch.manual_seed(0)
    m = SCN().eval()
    x = torch.randn(3, 3, 32, 32)
    out = m(x)
    f = m.trunk.forward_features(x).mean((2, 3))
    alpha = torch.sigmoid(m.alpha[0](f))
    assert torch.allclose(out.logits, alpha * (f @ m.fc.weight.t() + m.fc.bias), atol=1e-5)


def test_rank_regularisation_by_hand():
    alpha = torch.tensor([0.9, 0.2, 0.5, 0.4, 0.8])
    # beta 0.6 -> top 3: 0.9, 0.8, 0.5 (mean 0.7333); rest 0.4, 0.2 (mean 0.3): gap 0.4333
    assert rank_regularisation(alpha, 0.6, 0.5).item() == pytest.approx(0.5 - (2.2 / 3 - 0.3), abs=1e-6)
    assert rank_regularisation(alpha, 0.6, 0.1).item() == 0.0


def test_loss_terms_by_hand():
    torch.manual_seed(0)
    m = SCN(options={"beta": 0.5, "margin_1": 0.9}).train()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out = m(x)
    terms = m.loss(x, y, out, LossState(0, torch.arange(4), "non-masked"))
    assert terms["wce"].item() == pytest.approx(F.cross_entropy(out.logits, y).item(), rel=1e-6)
    a = torch.sort(out.extras["alpha"].flatten(), descending=True).values
    assert terms["rank"].item() == pytest.approx(max(0.0, 0.9 - (a[:2].mean() - a[2:].mean()).item()), abs=1e-6)
    assert terms["loss"].item() == pytest.approx(terms["wce"].item() + terms["rank"].item(), rel=1e-6)


def test_relabel_mask():
    logits = torch.log(torch.tensor([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.3, 0.4, 0.3]]))
    y = torch.tensor([1, 1, 1])
    alpha = torch.tensor([0.9, 0.1, 0.2])
    # samples 0 and 1 beat the margin; only 1 is in the low-importance group (beta 1/3 -> top 1 = sample 0)
    flip, pred = relabel_mask(logits, y, alpha, beta=0.34, margin=0.2)
    assert flip.tolist() == [False, True, False] and pred.tolist() == [0, 0, 1]
    flip, _ = relabel_mask(logits, y, alpha, beta=0.34, margin=0.2, any_sample=True)
    assert flip.tolist() == [True, True, False]


def test_relabelling_changes_state_after_the_step():
    torch.manual_seed(0)
    m = SCN(options={"relabel_epoch": 2, "margin_2": -1.0, "quirk_relabel_any": True}).train()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    state = LossState(0, torch.arange(4), "masked")
    m.loss(x, y, m(x), state)
    m.after_step()
    assert m.relabelled == {}  # the 1st epoch (state.epoch 0): before relabel_epoch 2
    m.loss(x, y, m(x), dataclasses.replace(state, epoch=1))  # the 2nd epoch: relabels
    m.after_step()
    assert set(m.relabelled) == {1, 3, 5, 7}  # pair index * 2 + 1 (masked view)
    out = m(x)
    relabelled = torch.tensor([m.relabelled[k] for k in (1, 3, 5, 7)])
    terms = m.loss(x, y, out, dataclasses.replace(state, epoch=2))
    assert terms["wce"].item() == pytest.approx(F.cross_entropy(out.logits, relabelled).item(), rel=1e-6)


def test_one_step_reduces_loss():
    check_one_step_reduces_loss(SCN(options={"relabel": False}))


@pytest.mark.parametrize("paradigm", ["baseline", "contrastive"])
def test_end_to_end(tiny_root, tmp_path, paradigm):
    check_end_to_end("scn", paradigm, tiny_root, tmp_path)


def test_relabelling_starts_in_the_tenth_epoch_as_the_official_loop():
    """relabel_epoch is 1-based: with the default 10, the 10th epoch (state.epoch 9) relabels, the 9th does not."""
    torch.manual_seed(0)
    m = SCN(options={"margin_2": -1.0, "quirk_relabel_any": True}).train()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    m.loss(x, y, m(x), LossState(8, torch.arange(4), "non-masked"))
    m.after_step()
    assert m.relabelled == {}
    m.loss(x, y, m(x), LossState(9, torch.arange(4), "non-masked"))
    m.after_step()
    assert m.relabelled


def test_official_recipe_uses_the_official_relabelling_rule():
    from msde_bench.spec_build import check_options

    assert check_options("scn", "baseline", [], "official")["scn.quirk_relabel_any"] is True
    assert check_options("scn", "baseline", ["quirk_relabel_any=false"], "official")["scn.quirk_relabel_any"] is False
    assert check_options("scn", "baseline", [], "quick")["scn.quirk_relabel_any"] is False


def test_a_stopped_run_resumes_with_its_relabel_table(tiny_root, tmp_path):
    """SCN's relabel table lives outside the state dict (Method.resume_state): a run stopped within its
    second epoch and resumed relabels as the run that never stopped."""
    cell = check_resume("scn", "baseline", tiny_root, tmp_path, options={"relabel_epoch": 1, "margin_2": 0.0})
    assert cell["resumed"][0]["epoch"] == 1
