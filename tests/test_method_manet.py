import pytest
import torch
import torch.nn.functional as F
from msde_manet.model import CBAM, MANet, MulScaleBlock

from msde_bench.api import LossState
from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_shapes


def test_registered():
    check_registered("manet", "Zhao et al.")


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    out = check_shapes(MANet(), size)
    assert out.feature_map.shape[1] == 512 and out.embedding.shape == (2, 512)


def test_fusion_and_loss_weights():
    torch.manual_seed(0)
    m = MANet().train()
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    out = m(x)
    a, b = out.extras["local"], out.extras["global"]
    assert torch.allclose(out.logits, 0.6 * a + 0.4 * b, atol=1e-6)
    t = m.loss(x, y, out, LossState())
    assert t["loss"].item() == pytest.approx((0.6 * F.cross_entropy(a, y) + 0.4 * F.cross_entropy(b, y)).item(),
                                             rel=1e-6)


def test_multiscale_block_cascades_by_hand():
    torch.manual_seed(0)
    blk = MulScaleBlock(8, 8).eval()
    x = torch.randn(2, 8, 5, 5)
    out = F.relu(blk.bn1(blk.conv1(x)))
    p = torch.split(out, 2, 1)
    fc, fb, bc, bb = blk.forward_convs, blk.forward_bns, blk.backward_convs, blk.backward_bns
    y1 = fb[0](fc[0](p[0]))
    y2 = fb[1](fc[1](F.relu(y1) + p[1]))
    y3 = fb[2](fc[2](F.relu(y2) + p[2]))
    y4 = fb[3](fc[3](F.relu(y3) + p[3]))
    z4 = bb[3](bc[3](p[3]))
    z3 = bb[2](bc[2](F.relu(z4) + p[2]))
    z2 = bb[1](bc[1](F.relu(z3) + p[1]))
    z1 = bb[0](bc[0](F.relu(z2) + p[0]))
    expected = F.relu(torch.cat([y1, y2, y3, y4], 1) + torch.cat([z1, z2, z3, z4], 1) + x)
    assert torch.allclose(blk(x), expected, atol=1e-6)


def test_cbam_gates_by_hand():
    torch.manual_seed(0)
    cbam = CBAM(32).eval()
    x = torch.randn(2, 32, 4, 4)
    gate = torch.sigmoid(cbam.mlp(x.mean((2, 3))) + cbam.mlp(x.amax((2, 3))))[:, :, None, None]
    xc = x * gate
    s = torch.sigmoid(cbam.spatial(torch.cat([xc.amax(1, keepdim=True), xc.mean(1, keepdim=True)], 1)))
    assert torch.allclose(cbam(x), xc * s, atol=1e-6)
    assert cbam.spatial[1].momentum == 0.01


def test_each_quadrant_has_its_own_stages():
    m = MANet()
    assert len(m.local3) == 4 and m.local3[0][0].conv1.weight.data_ptr() != m.local3[1][0].conv1.weight.data_ptr()
    assert 45e6 < sum(p.numel() for p in m.parameters()) < 55e6


def test_one_step_reduces_loss():
    check_one_step_reduces_loss(MANet())


@pytest.mark.parametrize("paradigm", ["baseline", "contrastive"])
def test_end_to_end(tiny_root, tmp_path, paradigm):
    check_end_to_end("manet", paradigm, tiny_root, tmp_path)
