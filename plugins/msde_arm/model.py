"""ARM on a timm trunk: pixel-shuffled planes, a shared de-albino kernel, a batch-mean affinity.

Official code: github.com/JiaweiShiCV/Amend-Representation-Module (src/Networks.py,
ResNet18_ARM___RAF and Amend_raf), read at fb8a1552. The last feature map (C x h x w) is
rearranged by PixelShuffle(16) into C/256 planes (2 x 112 x 112 for ResNet-18 at 224 px); each
plane goes through one shared Conv2d(1, 1, k 32, s 8, no bias) (11 x 11), then BatchNorm over the
planes; x = mean over planes + alpha * (mean over batch and planes), alpha learnable (1.0);
flatten (121) -> fc.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.api import BackboneMethod, MsdeError, Option, Output, cross_entropy_terms

PLANE = 112  # the official plane side (7 x 16)


class ARM(BackboneMethod):
    paper = "Shi & Zhu, Learning to Amend Facial Expression Representation via De-albino and Affinity, arXiv 2021"
    description = "de-albino kernel over pixel-shuffled feature planes + learnable batch-mean affinity"
    applies_label_options = True  # its loss is cross_entropy_terms(out, y, state)
    options = {
        **BackboneMethod.options,
        "quirk_batch_mean_eval": Option(False, "at evaluation, add the mean of the *test batch* as the official "
                                               "code does (predictions then depend on the batch); default: the "
                                               "running mean of the training batches"),
    }
    official_recipe = dict(optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="exponential", gamma=0.9,
                           epochs=70, batch_size=256, image_size=224, augment="flip")

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__(num_classes, pretrained, options)
        if self.dim % 256:
            raise MsdeError(f"arm: the trunk's {self.dim} channels are not a multiple of 256 (PixelShuffle(16))")
        self.planes = self.dim // 256
        self.arrangement = nn.PixelShuffle(16)
        self.de_albino = nn.Conv2d(1, 1, kernel_size=32, stride=8, bias=False)
        self.bn = nn.BatchNorm2d(self.planes)
        self.alpha = nn.Parameter(torch.tensor([1.0]))
        side = (PLANE - 32) // 8 + 1
        self.register_buffer("running_mean", torch.zeros(side, side))
        self.fc = nn.Linear(side * side, num_classes)

    def amend(self, fmap: torch.Tensor) -> torch.Tensor:
        p = self.arrangement(fmap)  # B x planes x 16h x 16w
        if p.shape[-1] != PLANE or p.shape[-2] != PLANE:  # any input size: planes resized to the official side
            p = F.interpolate(p, size=(PLANE, PLANE), mode="bilinear", align_corners=False)
        b = p.shape[0]
        side = self.running_mean.shape[0]
        x = self.bn(self.de_albino(p.reshape(b * self.planes, 1, PLANE, PLANE)).view(b, self.planes, side, side))
        batch_mean = x.mean(dim=(0, 1))
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(0.9).add_(0.1 * batch_mean.detach())
            affinity = batch_mean
        elif self.opts["quirk_batch_mean_eval"]:
            affinity = batch_mean
        else:
            affinity = self.running_mean
        return x.mean(dim=1) + self.alpha * affinity

    def forward(self, x: torch.Tensor) -> Output:
        fmap = self.features(x)
        emb = self.amend(fmap).flatten(1)
        return Output(self.fc(emb), emb, fmap, {"alpha": self.alpha})

    def loss(self, x, y, out, state):
        return cross_entropy_terms(out, y, state)
