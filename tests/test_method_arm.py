import pytest
import torch
from msde_arm.model import ARM

from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_shapes


def test_registered():
    check_registered("arm", "Shi & Zhu")


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    out = check_shapes(ARM(), size)
    assert out.embedding.shape == (2, 121)


def test_official_shapes_at_224():
    m = ARM().eval()
    fmap = torch.randn(2, 512, 7, 7)
    assert m.arrangement(fmap).shape == (2, 2, 112, 112)
    assert m.amend(fmap).shape == (2, 11, 11)


def test_amend_by_hand():
    torch.manual_seed(0)
    m = ARM().train()
    fmap = torch.randn(4, 512, 7, 7)
    out = m.amend(fmap)
    p = m.arrangement(fmap)
    planes = torch.stack([m.de_albino(p[:, i:i + 1]).squeeze(1) for i in range(2)], 1)
    mean, var = planes.mean(dim=(0, 2, 3), keepdim=True), planes.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    x = (planes - mean) / torch.sqrt(var + 1e-5)
    expected = x.mean(1) + 1.0 * x.mean(dim=(0, 1))
    assert torch.allclose(out, expected, atol=1e-4)


def test_evaluation_does_not_depend_on_the_batch_unless_the_quirk_is_on():
    torch.manual_seed(0)
    m = ARM()
    m.train()
    for _ in range(3):
        m(torch.randn(4, 3, 32, 32))
    m.eval()
    x = torch.randn(4, 3, 32, 32)
    alone = m(x[:1]).logits
    assert torch.allclose(alone, m(x).logits[:1], atol=1e-5)
    m.opts["quirk_batch_mean_eval"] = True
    assert not torch.allclose(m(x[:1]).logits, m(x).logits[:1], atol=1e-5)


def test_one_step_reduces_loss():
    check_one_step_reduces_loss(ARM())


@pytest.mark.parametrize("paradigm", ["baseline", "contrastive"])
def test_end_to_end(tiny_root, tmp_path, paradigm):
    check_end_to_end("arm", paradigm, tiny_root, tmp_path)
