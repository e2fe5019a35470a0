"""The plain method: a timm backbone, global average pooling and a linear head."""

from __future__ import annotations

import torch
from torch import nn

from msde_bench import NUM_CLASSES
from msde_bench.models.base import BackboneMethod, Output, cross_entropy_terms


class PlainClassifier(BackboneMethod):
    """`resnet18` (or any timm model): backbone -> last feature map -> mean pool -> linear, trained
    with cross-entropy (with --label-smoothing, --mixup and --cutmix)."""

    applies_label_options = True

    def __init__(self, backbone: str = "resnet18", num_classes: int = NUM_CLASSES, pretrained: bool = False):
        super().__init__(num_classes, pretrained, {"backbone": backbone})
        self.backbone_name = backbone
        self.fc = nn.Linear(self.dim, num_classes)

    def forward(self, x: torch.Tensor) -> Output:
        fmap = self.features(x)
        emb = fmap.mean(dim=(2, 3))
        return Output(self.fc(emb), emb, fmap)

    def loss(self, x, y, out, state):
        return cross_entropy_terms(out, y, state)
