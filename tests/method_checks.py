"""Checks every method plugin must pass (used by tests/test_method_*.py)."""

import json

import torch
from click.testing import CliRunner

from msde_bench.cli import main
from msde_bench.models.base import Output
from msde_bench.plugins import registry


def check_registered(name: str, paper_fragment: str) -> None:
    entry = registry().methods[name]
    assert paper_fragment in entry.paper and entry.description
    res = CliRunner().invoke(main, ["methods"])
    assert res.exit_code == 0 and f"| {name} " in res.output


def check_shapes(method, size: int, batch: int = 2) -> Output:
    torch.manual_seed(0)
    method.eval()
    out = method(torch.randn(batch, 3, size, size))
    assert out.logits.shape == (batch, 7)
    assert out.embedding.ndim == 2 and out.embedding.shape[0] == batch
    assert out.feature_map.ndim == 4 and out.feature_map.shape[0] == batch
    assert torch.isfinite(out.logits).all()
    return out


def check_one_step_reduces_loss(method, size: int = 32, steps: int = 5) -> None:
    """A few optimiser steps on one fixed batch lower the method's own loss."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, size, size), torch.arange(8) % 7
    state = {"epoch": 0, "index": torch.arange(8), "view": "non-masked", "views": None}
    opt = torch.optim.Adam([g for grp in method.param_groups(1e-3) for g in grp["params"]], lr=1e-3)
    method.train()

    def loss():
        return method.loss(x, y, method(x), state)["loss"]

    first = loss()
    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
        method.after_step()
    method.eval()  # compare without batch-norm noise
    with torch.no_grad():
        before_after = [first.item(), loss().item()]
    assert before_after[1] < before_after[0], before_after


def check_end_to_end(name: str, paradigm: str, root, out, extra=()) -> dict:
    res = CliRunner().invoke(main, ["run", "--model", name, "--paradigm", paradigm, "--data", str(root), "--recipe",
                                    "quick", "--epochs", "1", "--folds", "2", "--fold", "0", "--image-size", "32",
                                    "--batch-size", "8", "--device", "cpu", "--out", str(out), "--no-progress",
                                    *extra])
    assert res.exit_code == 0, res.output
    result = json.loads(next(out.glob("*.json")).read_text())
    assert result["spec"]["model"] == name and result["spec"]["paradigm"] == paradigm
    return result
