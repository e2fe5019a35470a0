import pytest
import torch
import torch.nn.functional as F
from msde_eac.model import EAC, class_activation_maps, random_erase

from msde_bench.api import LossState
from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_shapes


def test_registered():
    check_registered("eac", "Zhang et al.")


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    out = check_shapes(EAC(), size)
    assert out.extras is None  # evaluation: no erasing


def test_cams_by_hand():
    fmap = torch.arange(2 * 3 * 2 * 2, dtype=torch.float).view(2, 3, 2, 2)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, -1.0]], requires_grad=True)
    cams = class_activation_maps(fmap, w)
    assert torch.equal(cams[:, 0], fmap[:, 0])
    assert torch.equal(cams[:, 1], 2 * fmap[:, 1] - fmap[:, 2])
    assert not cams.requires_grad  # no gradient through the classifier weights


def test_random_erase():
    torch.manual_seed(0)
    x = torch.ones(200, 3, 20, 20)
    e = random_erase(x, p=0.5, scale=(0.02, 0.25))
    erased = (e == 0).all(dim=1).flatten(1).float().mean(1)
    touched = erased > 0
    assert 0.35 < touched.float().mean() < 0.65
    assert erased[touched].min() >= 0.01 and erased.max() <= 0.3
    assert torch.equal(random_erase(x, p=0.0), x)


def test_loss_by_hand():
    torch.manual_seed(0)
    m = EAC(options={"erase_p": 1.0, "flip_consistency_weight": 3.0}).train()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out = m(x)
    erased = out.extras["input"]
    assert (erased == 0).any() and not torch.equal(erased, x)
    terms = m.loss(x, y, out, LossState())
    f, f_flip = m.features(erased), m.features(erased.flip(3))
    w = m.fc.weight
    cam = torch.einsum("kc,bchw->bkhw", w, f)
    cam_flip_back = torch.einsum("kc,bchw->bkhw", w, f_flip).flip(3)
    expected = F.cross_entropy(m.fc(f.mean((2, 3))), y) + 3.0 * ((cam - cam_flip_back) ** 2).mean()
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert terms["ce"].item() == pytest.approx(F.cross_entropy(out.logits, y).item(), rel=1e-6)


def test_flip_consistency_is_zero_for_a_symmetric_model_and_input():
    """A mirror-symmetric input through a model whose CAMs are mirror-equivariant gives zero."""
    torch.manual_seed(0)
    m = EAC(options={"erase_p": 0.0}).train()
    m.trunk.forward_features = lambda x: x  # identity trunk: CAMs are linear in the pixels
    m.dim = 3
    m.fc = torch.nn.Linear(3, 7)
    x = torch.randn(2, 3, 8, 4)
    x = torch.cat([x, x.flip(3)], dim=3)  # mirror symmetric
    terms = m.loss(x, torch.tensor([1, 2]), m(x), LossState())
    assert terms["flip_consistency"].item() == pytest.approx(0.0, abs=1e-10)


def test_one_step_reduces_loss():
    check_one_step_reduces_loss(EAC(options={"erase_p": 0.0}))


@pytest.mark.parametrize("paradigm", ["baseline", "contrastive"])
def test_end_to_end(tiny_root, tmp_path, paradigm):
    check_end_to_end("eac", paradigm, tiny_root, tmp_path)
