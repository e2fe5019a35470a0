"""The plain method: a timm backbone, global average pooling and a linear head."""

from __future__ import annotations

import torch
from torch import nn

from msde_bench import NUM_CLASSES
from msde_bench.models.backbones import create_trunk
from msde_bench.models.base import Method, Output


class PlainClassifier(Method):
    """`resnet18` (or any timm model): backbone -> last feature map -> mean pool -> linear."""

    def __init__(self, backbone: str = "resnet18", num_classes: int = NUM_CLASSES, pretrained: bool = False):
        super().__init__()
        self.backbone_name = backbone
        self.trunk = create_trunk(backbone, pretrained=pretrained)
        dim = self.trunk.num_features
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> Output:
        fmap = self.trunk.forward_features(x)
        if fmap.ndim == 3:  # token models (B, N, D): treat tokens as a 1 x N map
            fmap = fmap.transpose(1, 2).unsqueeze(2)
        emb = fmap.mean(dim=(2, 3))
        return Output(self.fc(emb), emb, fmap)

    def target_layer(self) -> nn.Module:
        for name in ("layer4", "stages", "blocks", "features"):
            layer = getattr(self.trunk, name, None)
            if layer is not None:
                return layer[-1] if isinstance(layer, nn.Sequential) else layer
        return self.trunk
