"""The example plugin's tests, written with msde_bench.testing only (run after `pip install -e .`)."""

import torch
import torch.nn.functional as F
from msde_example_method import SmoothCE

from msde_bench.api import LossState
from msde_bench.testing import check_end_to_end, check_one_step_reduces_loss, check_registered, check_shapes


def test_registered():
    check_registered("smooth-ce", "Szegedy")


def test_shapes():
    m = SmoothCE(options={"backbone": "resnet18", "smoothing": 0.1})
    check_shapes(m, 32)
    check_shapes(m, 64)


def test_loss_by_hand():
    m = SmoothCE(options={"backbone": "resnet18", "smoothing": 0.2}).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out = m(x)
    logp = F.log_softmax(out.logits, dim=1)
    expected = (-(0.8 * logp.gather(1, y[:, None]).squeeze(1)) - 0.2 * logp.mean(1)).mean()
    assert torch.allclose(m.loss(x, y, out, LossState())["loss"], expected, atol=1e-6)


def test_training_lowers_the_loss():
    check_one_step_reduces_loss(SmoothCE(options={"backbone": "resnet18", "smoothing": 0.1}))


def test_end_to_end(tiny_root, tmp_path):
    for paradigm in ("baseline", "contrastive"):
        result = check_end_to_end("smooth-ce", paradigm, tiny_root, tmp_path / paradigm,
                                  options={"smoothing": 0.2})
        assert result["spec"]["options"]["smooth-ce.smoothing"] == 0.2
