import pytest
import torch
import torch.nn.functional as F
from msde_scan.model import SCAN, grid_bounds, halves
from torch import nn

from msde_bench.api import LossState
from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_shapes


def test_registered():
    check_registered("scan", "Gera")


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    out = check_shapes(SCAN(), size)
    assert out.embedding.shape == (2, 256)  # [local; global] of layer2 (128 channels)
    assert out.feature_map.shape[1] == 256  # layer3
    assert len(out.extras["regions"]) == 4


def test_patch_grid_matches_the_official_slices_at_28():
    assert grid_bounds(28) == [(0, 6), (6, 12), (12, 18), (18, 24), (24, 28)]
    assert grid_bounds(8) == [(0, 2), (2, 3), (3, 5), (5, 7), (7, 8)]
    assert halves(14) == [(0, 7), (7, 14)]


def test_prediction_is_the_mean_of_five_and_the_loss_weights():
    torch.manual_seed(0)
    m = SCAN().train()
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    out = m(x)
    five = [out.extras["att"], *out.extras["regions"]]
    assert torch.allclose(out.logits, sum(five) / 5, atol=1e-6)
    t = m.loss(x, y, out, LossState())
    expected = 0.2 * F.cross_entropy(five[0], y) + 0.8 * sum(F.cross_entropy(r, y) for r in five[1:])
    assert t["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_region_classifier_is_shared():
    m = SCAN()
    n_region = sum(p.numel() for p in m.region_net.parameters())
    assert n_region == 256 * 64 + 64 + 64 * 7 + 7


def test_backbone_lr_scale_and_frozen_bn_quirk():
    m = SCAN(options={"backbone_lr_scale": 0.01, "quirk_frozen_bn": True})
    groups = m.param_groups(0.01)
    assert groups[0]["lr_scale"] == 0.01 and len(groups) == 2
    m.train()
    m.on_epoch_start(0)
    assert all(b.training for b in m.modules() if isinstance(b, nn.BatchNorm2d))
    m.on_epoch_start(1)
    assert not any(b.training for b in m.modules() if isinstance(b, nn.BatchNorm2d))


def test_one_step_reduces_loss():
    check_one_step_reduces_loss(SCAN())


@pytest.mark.parametrize("paradigm", ["baseline", "contrastive"])
def test_end_to_end(tiny_root, tmp_path, paradigm):
    check_end_to_end("scan", paradigm, tiny_root, tmp_path)


def test_local_patches_paper_blocks_and_the_official_row_quirk():
    from msde_scan.model import local_patches

    f2 = torch.randn(2, 3, 28, 28)
    paper = local_patches(f2)
    assert len(paper) == 25 and sorted(tuple(p.shape[2:]) for p in paper).count((4, 6)) == 4
    assert torch.equal(paper[20], f2[:, :, 24:28, 0:6])  # a true 4 x 6 block of the bottom strip
    quirk = local_patches(f2, official_rows=True)
    assert len(quirk) == 25
    # the official construction, written independently: the bottom strip's first 24 columns unfolded
    # into 6-wide windows, one patch per pixel row
    official = f2[:, :, 24:, :24].unfold(3, 6, 6).permute(0, 2, 1, 3, 4)  # B x 4 (rows) x C x 4 x 6
    rows = [p for p in quirk if tuple(p.shape[2:]) == (4, 6)]
    assert len(rows) == 4 and all(torch.equal(rows[j], official[:, j]) for j in range(4))
    kept = [p for p in quirk if tuple(p.shape[2:]) != (4, 6)]
    assert all(any(torch.equal(k, p) for p in paper) for k in kept)  # every other patch is the paper's


def test_row_patch_quirk_changes_the_output_only_when_on():
    torch.manual_seed(0)
    m = SCAN(options={"quirk_row_patches": False}).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a = m(x).logits
        m.opts["quirk_row_patches"] = True
        b = m(x).logits
    assert not torch.allclose(a, b)
