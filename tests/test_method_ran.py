import pytest
import torch
import torch.nn.functional as F
from msde_ran.model import CROPS, RAN, crop_batch, region_biased_loss

from msde_bench.api import LossState
from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_shapes


def test_registered():
    check_registered("ran", "Wang et al.")


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    out = check_shapes(RAN(options={"crops": 2}), size)
    assert out.extras["mu"].shape == (2, 3) and out.embedding.shape == (2, 1024)
    assert torch.allclose(out.extras["mu"].sum(1), torch.ones(2))


def test_crops_are_fractions_of_the_image():
    x = torch.arange(8 * 8, dtype=torch.float).view(1, 1, 8, 8).expand(1, 3, 8, 8)
    crops = crop_batch(x, [(0.0, 0.0, 0.5, 0.5)])
    assert crops.shape == (1, 1, 3, 8, 8)
    expected = F.interpolate(x[:, :, :4, :4], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(crops[:, 0], expected)
    assert len(CROPS) == 7 and CROPS[0] == (0.125, 0.25, 0.875, 1.0)


def test_crop_edges_are_truncated_as_the_official_pil_boxes():
    """The official code crops PIL images with box (int(x0 w), int(y0 h), int(x1 w), int(y1 h)):
    at 48 px the (0.05, 0.95) crop is the slice 2:45 of rows and columns (rounding would give 2:46)."""
    x = torch.rand(1, 3, 48, 48)
    crops = crop_batch(x, [(0.05, 0.05, 0.95, 0.95)])
    expected = F.interpolate(x[:, :, 2:45, 2:45], size=(48, 48), mode="bilinear", align_corners=False)
    assert torch.allclose(crops[:, 0], expected)


def test_region_biased_loss_by_hand():
    mu = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])  # original last
    # b0: max crop 0.5 - 0.3 = 0.2 >= margin 0.1 -> 0; b1: 0.1 - 0.8 = -0.7 -> 0.1 + 0.7 = 0.8
    assert region_biased_loss(mu, 0.1).item() == pytest.approx(0.4)


def test_attention_pooling_by_hand():
    torch.manual_seed(0)
    m = RAN(options={"crops": 1}).eval()
    x = torch.randn(2, 3, 32, 32)
    out = m(x)
    views = torch.cat([crop_batch(x, m.boxes), x.unsqueeze(1)], 1).flatten(0, 1)
    f = m.trunk.forward_features(views).mean((2, 3)).view(2, 2, -1)
    mu = torch.softmax(torch.sigmoid(m.self_attention(f)).squeeze(2), 1)
    fm = (mu[..., None] * f).sum(1) / mu.sum(1, keepdim=True)
    cat = torch.cat([f, fm[:, None].expand_as(f)], 2)
    nu = torch.softmax(torch.sigmoid(m.relation_attention(cat)).squeeze(2), 1)
    p = ((mu * nu)[..., None] * cat).sum(1) / (mu * nu).sum(1, keepdim=True)
    assert torch.allclose(out.logits, m.fc(p), atol=1e-5)
    t = m.loss(x, torch.tensor([0, 1]), out, LossState())
    assert t["loss"].item() == pytest.approx((F.cross_entropy(m.fc(p), torch.tensor([0, 1])) +
                                             region_biased_loss(mu, 0.03)).item(), rel=1e-5)


def test_quirk_unnormalised_input_changes_the_output():
    torch.manual_seed(0)
    m = RAN(options={"crops": 1}).eval()
    x = torch.randn(2, 3, 32, 32)
    a = m(x).logits
    m.opts["quirk_unnormalised_input"] = True
    assert not torch.allclose(a, m(x).logits)


def test_one_step_reduces_loss():
    check_one_step_reduces_loss(RAN(options={"crops": 2}))


@pytest.mark.parametrize("paradigm", ["baseline", "contrastive"])
def test_end_to_end(tiny_root, tmp_path, paradigm):
    check_end_to_end("ran", paradigm, tiny_root, tmp_path, options={"crops": 1})


def test_quirk_per_crop_bn_normalises_each_crop_slot_on_its_own():
    torch.manual_seed(0)
    joint = RAN(options={"crops": 2})
    per_slot = RAN(options={"crops": 2, "quirk_per_crop_bn": True})
    per_slot.load_state_dict(joint.state_dict())
    x = torch.randn(4, 3, 32, 32)
    joint.eval(), per_slot.eval()
    with torch.no_grad():  # running statistics: the same model
        assert torch.allclose(joint(x).logits, per_slot(x).logits, atol=1e-5)
    joint.train(), per_slot.train()
    with torch.no_grad():
        a, b = joint(x), per_slot(x)
        assert not torch.allclose(a.logits, b.logits, atol=1e-4)
        # per slot: the whole image's map is what the trunk gives the whole images alone, in train mode
        fresh = RAN(options={"crops": 2})
        fresh.load_state_dict(joint.state_dict())
        fresh.train()
        assert torch.allclose(b.feature_map, fresh.features(x), atol=1e-5)


def test_quirk_unnormalised_input_undoes_the_harness_normalisation():
    """The trunk gets the same [0, 1] pixels whether the harness normalised with ImageNet statistics
    (training) or with mean = std = 0.5 (evaluation under quirk_eval_normalisation)."""
    from msde_bench.data.transforms import PairedAugment
    from msde_bench.models.base import input_normalisation

    torch.manual_seed(0)
    m = RAN(options={"crops": 1, "quirk_unnormalised_input": True}).eval()
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    seen = []
    m.features = lambda x: seen.append(x) or torch.zeros(x.shape[0], m.dim, 1, 1)
    for aug in (PairedAugment("none"), PairedAugment("none", mean=(0.5,) * 3, std=(0.5,) * 3)):
        with input_normalisation(m, aug.normalisation):
            m(aug.eval(pixels, torch.device("cpu")))
    assert m.input_normalisation == PairedAugment("none").normalisation  # restored afterwards
    expected = pixels.float() / 255
    for x in seen:
        assert torch.allclose(x.view(2, 2, 3, 32, 32)[:, -1], expected, atol=1e-6)  # the whole image, last


def test_official_recipe_batch_normalises_each_crop_slot():
    from msde_bench.spec_build import check_options

    assert check_options("ran", "baseline", [], "official")["ran.quirk_per_crop_bn"] is True
    assert check_options("ran", "baseline", [], "quick")["ran.quirk_per_crop_bn"] is False
