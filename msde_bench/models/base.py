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
    extras: dict | None = None  # whatever the method's loss needs (attention weights, branch logits, ...)


class Method(nn.Module):
    """A FER method: `forward(x) -> Output` and its own supervised objective `loss`.

    The contract (CONTRIBUTING.md, "The Method contract"):
    - `forward(x)` returns Output(logits, embedding, feature_map) for any input size;
    - `loss(x, y, out, state)` returns the method's loss terms, `"loss"` being what is minimised;
      the paradigms call it for every view they train on. `state` holds `epoch`, `index` (the
      pairs' dataset indices), `view` ("non-masked", "masked" or "mixed") and `views`;
    - `param_groups(lr)` gives the optimiser's parameter groups (a group may carry `lr_scale`);
    - `after_step()` runs after every optimiser step (relabelling, centre updates);
    - `target_layer()` is the layer Grad-CAM looks at.
    Class attributes: `options` (the `--opt` values it accepts, as spec.Option), `official_recipe`
    (RunSpec overrides used under `--recipe official`), `official_options` (option values that
    `--recipe official` sets unless given with --opt), `paper`, `description`.
    """

    options: dict = {}
    official_recipe: dict = {}
    official_options: dict = {}
    paper: str = ""
    description: str = ""

    def forward(self, x: torch.Tensor) -> Output:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, x: torch.Tensor, y: torch.Tensor, out: Output, state: dict | None = None) -> dict:
        """The method's supervised loss terms; 'loss' is their sum."""
        ce = F.cross_entropy(out.logits, y)
        return {"loss": ce, "ce": ce}

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def after_step(self) -> None:
        """Called after every optimiser step."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called at the start of every training epoch, after the model is put in training mode."""

    def target_layer(self) -> nn.Module:
        """The layer Grad-CAM looks at."""
        raise NotImplementedError

    def cam_reshape_transform(self):
        """For Grad-CAM: a function mapping the target layer's output to B x C x h x w (e.g. RAN, whose
        trunk sees every crop, keeps the whole image's map), or None."""
        return None


class DoubleSoftmax(Method):
    """The reference classifier's quirk: the head ends in softmax, and its probabilities are what
    the loss (cross-entropy, which applies log-softmax again) receives. Predictions are unchanged."""

    def __init__(self, inner: Method):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> Output:
        out = self.inner(x)
        return out._replace(logits=torch.softmax(out.logits.float(), dim=1))

    def loss(self, x, y, out, state=None):
        return self.inner.loss(x, y, out, state)

    def param_groups(self, lr: float) -> list[dict]:
        return self.inner.param_groups(lr)

    def after_step(self) -> None:
        self.inner.after_step()

    def on_epoch_start(self, epoch: int) -> None:
        self.inner.on_epoch_start(epoch)

    def target_layer(self) -> nn.Module:
        return self.inner.target_layer()

    def cam_reshape_transform(self):
        return self.inner.cam_reshape_transform()


class BackboneMethod(Method):
    """A method built on a timm trunk (`backbone` option, default resnet18): `self.trunk` gives the
    feature map through `forward_features`, `self.dim` its channels. `--init` loads into the trunk."""

    options: dict = {}  # filled below, once spec.Option is importable without a cycle
    #: extra arguments for timm.create_model (e.g. features_only=True, out_indices=(2, 3))
    trunk_kwargs: dict = {}

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__()
        from msde_bench.models.backbones import create_trunk
        from msde_bench.spec import parse_options

        self.opts = {**parse_options([], type(self).options), **(options or {})}
        self.num_classes = num_classes
        self.trunk = create_trunk(self.opts["backbone"], pretrained=pretrained, **self.trunk_kwargs)
        if self.trunk_kwargs.get("features_only"):
            self.dims = list(self.trunk.feature_info.channels())
            self.dim = self.dims[-1]
        else:
            self.dim = self.trunk.num_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.trunk.forward_features(x)
        if fmap.ndim == 3:  # token models (B, N, D): treat tokens as a 1 x N map
            fmap = fmap.transpose(1, 2).unsqueeze(2)
        return fmap

    def target_layer(self) -> nn.Module:
        for name in ("layer4", "stages", "blocks", "features"):
            layer = getattr(self.trunk, name, None)
            if layer is not None:
                return layer[-1] if isinstance(layer, nn.Sequential) else layer
        return self.trunk


def _backbone_option():
    from msde_bench.spec import Option

    return {"backbone": Option("resnet18", "the timm trunk the method is built on")}


BackboneMethod.options = _backbone_option()
