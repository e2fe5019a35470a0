"""`baseline`: the method's own loss on non-masked, masked or both views; no pairing."""

from __future__ import annotations

import torch

from msde_bench.models.base import Method
from msde_bench.options import Option
from msde_bench.paradigms.base import Batch, Paradigm

TRAIN_ON = ("mixed", "non-masked", "masked")


class Baseline(Paradigm):
    name = "baseline"
    description = "the method's own loss on one view or on both as separate samples (train_on)"
    paper = "Sola & Gera, MSD-E (ICVGIP 2022), ResNet-18 baselines"
    options = {
        "train_on": Option("mixed", "which images to train on: mixed (every image of both views, shuffled "
                           "as separate samples), non-masked, or masked", TRAIN_ON),
    }

    @property
    def views_per_pair(self) -> int:  # type: ignore[override]
        return 2 if self.opts["train_on"] == "mixed" else 1

    @property
    def batch_views(self) -> str:  # type: ignore[override]
        return "own" if self.opts["train_on"] == "mixed" else self.opts["train_on"]

    def training_step(self, method: Method, batch: Batch) -> dict[str, torch.Tensor]:
        train_on = self.opts["train_on"]
        if train_on == "non-masked":
            x, state = batch.non_masked, batch.state("non-masked")
        elif train_on == "masked":
            x, state = batch.masked, batch.state("masked")
        else:
            x = batch.images
            if x is None:  # a batch of both views (built by hand, or for a method's pair_transform)
                x = torch.where(batch.view.view(-1, 1, 1, 1).bool(), batch.masked, batch.non_masked)
            state = batch.state("mixed", batch.view)
        out = method(x)
        terms = method.loss(x, batch.y, out, state)
        return {**terms, "logits": out.logits, "targets": batch.y}
