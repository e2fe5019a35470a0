"""The Paradigm contract and the batch it receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from msde_bench.models.base import Method
from msde_bench.spec import Option


@dataclass
class Batch:
    """One training batch: both views of each pair, augmented with the same draw, normalised."""

    non_masked: torch.Tensor
    masked: torch.Tensor
    y: torch.Tensor
    #: for paradigms with views_per_pair == 2: 0 = train on the non-masked view, 1 = the masked one
    view: torch.Tensor | None = None
    #: the pairs' indices in the dataset (methods that keep per-sample state, e.g. SCN's relabelling)
    index: torch.Tensor | None = None
    epoch: int = 0

    def state(self, view: str, views: torch.Tensor | None = None) -> dict:
        """What Method.loss receives as `state`: epoch, pair indices, which view the images are
        ("non-masked", "masked", or "mixed" with `views` giving 1 where the image is masked)."""
        return {"epoch": self.epoch, "index": self.index, "view": view, "views": views}


class Paradigm:
    name = "base"
    description = ""
    paper = ""
    options: dict[str, Option] = {}
    #: 2 when an epoch visits each view of a pair as a separate training sample
    views_per_pair = 1
    #: images the model sees per batch item (2 when both views go through the network together)
    images_per_item = 1
    #: the learning rate of the reference code under --recipe paper
    paper_lr = 1e-3

    def __init__(self, options: dict[str, Any]):
        self.opts = {k: options[k] for k in self.options}

    def prepare(self, ctx: dict) -> None:
        """Called once per fold before training (distill trains or loads its teacher here).

        ctx: spec, cache, train_idx, test_idx, subjects, device, seed, fold, console."""

    def skip_init(self) -> bool:
        """True when the student must not load --init (distill's quirk_student_random_init)."""
        return False

    def report(self) -> dict:
        """What the result should record about this fold's paradigm (e.g. where the teacher came from)."""
        return {}

    def training_step(self, method: Method, batch: Batch) -> dict[str, torch.Tensor]:
        """Returns the loss terms ('loss' is what is minimised) and 'logits'/'targets' for the
        running training accuracy."""
        raise NotImplementedError
