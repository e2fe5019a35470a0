"""A minimal msde-bench method plugin, meant to be copied.

It registers one method, `smooth-ce`: a timm trunk, global average pooling, a linear head, trained
with label-smoothed cross-entropy (Szegedy et al., "Rethinking the Inception Architecture for
Computer Vision", CVPR 2016). Install it with `pip install -e .` next to msde-bench, then:

    msde-bench methods                      # lists smooth-ce
    msde-bench run --model smooth-ce --opt smoothing=0.2
"""

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.api import BackboneMethod, Option, Output, hookimpl

__version__ = "0.1.0"


class SmoothCE(BackboneMethod):
    paper = "Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016"
    description = "linear head trained with label-smoothed cross-entropy"
    # Everything --opt may set for this method, with defaults; `backbone` comes from BackboneMethod.
    options = {**BackboneMethod.options, "smoothing": Option(0.1, "label smoothing factor", min=0.0, max=1.0)}
    # Used under --recipe official (overrides of the paper recipe).
    official_recipe = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
                           step_size=30, gamma=0.1, epochs=90, batch_size=256)

    def __init__(self, num_classes=7, pretrained=False, options=None):
        super().__init__(num_classes, pretrained, options)  # builds self.trunk, self.dim, self.opts
        self.fc = nn.Linear(self.dim, num_classes)

    def forward(self, x: torch.Tensor) -> Output:
        fmap = self.features(x)  # B x D x h x w: the last feature map (what the paradigms align)
        emb = fmap.mean(dim=(2, 3))  # B x D
        return Output(self.fc(emb), emb, fmap)

    def loss(self, x, y, out, state):  # state: LossState (epoch, index, view, views, step, seed)
        ce = F.cross_entropy(out.logits, y, label_smoothing=self.opts["smoothing"])
        return {"loss": ce, "smoothed_ce": ce}


@hookimpl
def msde_bench_register_methods(register):
    register("smooth-ce", SmoothCE)  # paper and description come from the class
