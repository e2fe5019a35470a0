import math
import sys

import pytest
import torch
import torch.nn.functional as F
from msde_dan.model import DAN, affinity_loss, partition_loss

from msde_bench.api import LossState
from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_shapes


def test_registered():
    check_registered("dan", "Wen et al.")


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    out = check_shapes(DAN(), size)
    assert out.extras["heads"].shape == (2, 4, 512)
    assert out.embedding.shape == (2, 512)
    # log-softmax across heads: exp sums to 1 over the heads
    assert torch.allclose(out.extras["heads"].exp().sum(1), torch.ones(2, 512), atol=1e-5)


def test_affinity_loss_by_hand():
    centers = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    g = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    y = torch.tensor([0, 2])
    # variance over the centres (unbiased): dim0 var of [0,2,0] = 4/3, dim1 var of [0,0,4] = 16/3 -> sum 20/3
    d = [(1 + 1), (4 + 4)]
    assert affinity_loss(g, y, centers).item() == pytest.approx(sum(d) / 2 / (20 / 3), rel=1e-6)


def test_partition_loss_by_hand():
    heads = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])  # B=1, K=2, C=2: var over heads = 2 for both channels
    assert partition_loss(heads).item() == pytest.approx(math.log(1 + 2 / 2), rel=1e-6)
    assert partition_loss(heads[:, :1]).item() == 0.0
    # identical heads (variance 0): the official eps is Python's float epsilon, not float32's
    same = torch.ones(1, 4, 3)
    assert partition_loss(same).item() == pytest.approx(math.log(1 + 4 / sys.float_info.epsilon), rel=1e-6)


def test_loss_is_the_sum_of_its_terms():
    torch.manual_seed(0)
    m = DAN().train()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out = m(x)
    t = m.loss(x, y, out, LossState())
    assert t["ce"].item() == pytest.approx(F.cross_entropy(out.logits, y).item(), rel=1e-6)
    assert t["loss"].item() == pytest.approx((t["ce"] + t["affinity"] + t["partition"]).item(), rel=1e-6)
    assert t["affinity"].item() == pytest.approx(affinity_loss(out.extras["g"], y, m.centers).item(), rel=1e-6)


def test_quirk_8_centers_changes_the_variance_term():
    torch.manual_seed(0)
    assert DAN().centers.shape == (7, 512)
    m = DAN(options={"quirk_8_centers": True})
    assert m.centers.shape == (8, 512)
    with torch.no_grad():
        m.centers[7] = 10.0  # the unused 8th centre, far from the others, inflates the variance term
    g, y = torch.randn(3, 512), torch.tensor([0, 1, 6])
    with_8 = affinity_loss(g, y, m.centers).item()
    with_7 = affinity_loss(g, y, m.centers[:7]).item()
    var_ratio = (m.centers[:7].var(0).sum() / m.centers.var(0).sum()).item()
    assert with_8 == pytest.approx(with_7 * var_ratio, rel=1e-5) and with_8 < with_7 / 2


def test_centers_are_trained():
    m = DAN()
    assert any(p is m.centers for g in m.param_groups(0.1) for p in g["params"])


def test_one_step_reduces_loss():
    check_one_step_reduces_loss(DAN())


@pytest.mark.parametrize("paradigm", ["baseline", "contrastive"])
def test_end_to_end(tiny_root, tmp_path, paradigm):
    check_end_to_end("dan", paradigm, tiny_root, tmp_path)
