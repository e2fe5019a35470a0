import pytest
import torch
import torch.nn.functional as F
from msde_dacl.model import DACL, center_gradient, sparse_center_loss

from msde_bench.api import LossState
from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_shapes

SMALL = {"attention_grid": 1}


def test_registered():
    check_registered("dacl", "Farzaneh")


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    out = check_shapes(DACL(options=SMALL), size)
    a = out.extras["attention"]
    assert a.shape == (2, 512) and ((a > 0) & (a < 1)).all()


def test_official_head_size():
    m = DACL()
    assert m.attention[0].in_features == 512 * 7 * 7
    assert sum(p.numel() for p in m.attention.parameters()) > 89_000_000
    # the official init: kaiming-normal weights and zero biases in the attention network and heads
    linears = [layer for layer in m.attention if isinstance(layer, torch.nn.Linear)] + [m.attention_heads]
    assert len(linears) == 4 and all(torch.count_nonzero(layer.bias) == 0 for layer in linears)
    assert all(layer.weight.std() > 0 for layer in linears)


def test_sparse_center_loss_and_its_gradients_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    a = torch.tensor([[0.5, 1.0], [0.25, 0.0]], requires_grad=True)
    c = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 1])
    loss = sparse_center_loss(f, a, y, c)
    # (0.5*1 + 1*4 + 0.25*4 + 0*4) / (2*2)
    assert loss.item() == pytest.approx(5.5 / 4)
    loss.backward()
    assert torch.allclose(f.grad, a.detach() * (f.detach() - c[y]) / 2)  # a (f - c_y) / B
    assert torch.allclose(a.grad, (f.detach() - c[y]) ** 2 / 4)  # (f - c_y)^2 / (2B)


def test_center_gradient_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 5.0]])
    a = torch.ones(3, 2)
    c = torch.zeros(3, 2)
    y = torch.tensor([0, 0, 2])
    g = center_gradient(f, a, y, c)
    assert torch.allclose(g[0], -torch.tensor([4.0, 2.0]) / 3)  # n_0 = 2 -> 1 + 2
    assert torch.allclose(g[1], torch.zeros(2))
    assert torch.allclose(g[2], -torch.tensor([5.0, 5.0]) / 2)


def test_centres_move_after_the_step_and_not_through_the_optimiser():
    torch.manual_seed(0)
    m = DACL(options=SMALL).train()
    assert all(p is not m.centers for g in m.param_groups(0.1) for p in g["params"])
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    out = m(x)
    t = m.loss(x, y, out, LossState())
    assert t["loss"].item() == pytest.approx((F.cross_entropy(out.logits, y) + 0.01 * t["sparse_center"]).item())
    before = m.centers.clone()
    expected = before - 0.5 * center_gradient(out.embedding.detach(), out.extras["attention"].detach(), y, before)
    m.after_step()
    assert torch.allclose(m.centers, expected)
    assert torch.equal(m.centers[3:], before[3:])  # classes not in the batch stay


def test_one_step_reduces_loss():
    check_one_step_reduces_loss(DACL(options=SMALL))


@pytest.mark.parametrize("paradigm", ["baseline", "contrastive"])
def test_end_to_end(tiny_root, tmp_path, paradigm):
    check_end_to_end("dacl", paradigm, tiny_root, tmp_path, options={"attention_grid": 1})


def test_attention_grid_defaults_to_the_trunk_map_size_capped_at_seven():
    from msde_bench.api import build_spec
    from msde_bench.factory import build_method
    from msde_bench.spec_build import complete_spec

    def grid(**kw):
        return dict(build_spec("dacl", "baseline", data="synth:small", device="cpu", **kw).options)["dacl.attention_grid"]

    # resnet18 maps 48 px to 2 x 2, 96 to 3 x 3, 224 to 7 x 7; 320 (10 x 10) is capped at the official 7
    assert [grid(image_size=s) for s in (48, 96, 224, 320)] == [2, 3, 7, 7]
    assert grid(image_size=48, options=["attention_grid=5"]) == 5  # a given grid is kept
    spec = build_spec("dacl", "baseline", data="synth:small", device="cpu", image_size=48)
    model, _ = build_method(spec)
    assert model.attention[0].in_features == 512 * 2 * 2
    # a recorded spec read back resolves an automatic grid the same way; a recorded number stays
    recorded = spec.to_dict()
    assert complete_spec(dict(recorded, options={**recorded["options"], "dacl.attention_grid": 0}))["options"][
        "dacl.attention_grid"] == 2
    assert complete_spec(dict(recorded, options={**recorded["options"], "dacl.attention_grid": 7}))["options"][
        "dacl.attention_grid"] == 7
