"""The Method contract every model of the harness follows (DESIGN.md, "Contracts")."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Output(NamedTuple):
    logits: torch.Tensor  # B x C, before softmax
    embedding: torch.Tensor  # B x D, the pooled feature used by the classifier
    feature_map: torch.Tensor  # B x D x h x w, the last feature map (what the paradigms align)


class Method(nn.Module):
    """A FER method: `forward(x) -> Output` and its own supervised objective `loss`.

    Subclasses set `options` (name -> default) for the `--opt KEY=VALUE` values they accept, and
    may override `loss` to add their own terms (the paradigms call it for every view they train on).
    """

    #: options this method accepts through --opt, with their defaults
    options: dict = {}
    #: recipe overrides used under --recipe official
    official_recipe: dict = {}

    def forward(self, x: torch.Tensor) -> Output:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, x: torch.Tensor, y: torch.Tensor, out: Output, state: dict | None = None) -> dict:
        """The method's supervised loss terms; 'loss' is their sum."""
        ce = F.cross_entropy(out.logits, y)
        return {"loss": ce, "ce": ce}

    def target_layer(self) -> nn.Module:
        """The layer Grad-CAM looks at."""
        raise NotImplementedError


class DoubleSoftmax(Method):
    """The reference classifier's quirk: the head ends in softmax, and its probabilities are what
    the loss (cross-entropy, which applies log-softmax again) receives. Predictions are unchanged."""

    def __init__(self, inner: Method):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> Output:
        out = self.inner(x)
        return Output(torch.softmax(out.logits.float(), dim=1), out.embedding, out.feature_map)

    def loss(self, x, y, out, state=None):
        return self.inner.loss(x, y, out, state)

    def target_layer(self) -> nn.Module:
        return self.inner.target_layer()
