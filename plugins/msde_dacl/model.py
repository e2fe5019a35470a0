"""DACL on a timm trunk: an attention network weights each feature dimension of a centre loss.

Official code: github.com/amirhfarzaneh/dacl (models/resnet.py, loss.py, workspace.py), read at
c41e9e81. f = GAP(X) -> FC -> logits. An attention network on the flattened feature map
(Linear C*g*g -> 3584 - BN - ReLU - Linear 512 - BN - ReLU - Linear 64 - BN - Tanh, then
Linear 64 -> 2C, softmax over the pairs, second entry) gives a in (0, 1)^C. Sparse centre loss
L_SC = 1/(2B) sum_i sum_j a_ij (f_ij - c_{y_i j})^2; L = CE + lambda * L_SC with lambda 0.01. The
centres are not trained by the main optimiser: after each step they move by plain SGD (lr 0.5)
along the official custom gradient -sum_{i: y_i = k} a_i (f_i - c_k) / (1 + n_k), which is not
scaled by lambda.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.api import BackboneMethod, Option, Output


def sparse_center_loss(f: torch.Tensor, a: torch.Tensor, y: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """1/(2B) sum_i sum_j a_ij (f_ij - c_{y_i j})^2 (gradients flow to f and a; the centres are a buffer)."""
    return (a * (f - centers[y]) ** 2).sum() / (2 * f.shape[0])


def center_gradient(f: torch.Tensor, a: torch.Tensor, y: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """The official custom gradient of the centres: -sum_{i: y_i = k} a_i (f_i - c_k) / (1 + n_k)."""
    k = centers.shape[0]
    diff = a * (f - centers[y])
    summed = torch.zeros_like(centers).index_add_(0, y, diff)
    counts = torch.ones(k, device=f.device, dtype=f.dtype).index_add_(0, y, torch.ones_like(y, dtype=f.dtype))
    return -summed / counts.unsqueeze(1)


class DACL(BackboneMethod):
    paper = "Farzaneh & Qi, Facial Expression Recognition in the Wild via Deep Attentive Center Loss, WACV 2021"
    description = "centre loss whose feature dimensions are weighted by a per-sample attention network"
    options = {
        **BackboneMethod.options,
        "sparse_center_weight": Option(0.01, "weight of the sparse centre loss (the official code's lamb)", min=0.0,
                                       aliases=("lamb",)),
        "center_lr": Option(0.5, "learning rate of the centres' plain SGD step"),
        "attention_grid": Option(0, "the feature map is average-pooled to grid x grid before the attention "
                                    "network; 0 = the trunk's map size at the run's image size, capped at 7 "
                                    "(the official 7 x 7 at 224 px; 2 at 48 px, where 7 would up-sample the "
                                    "2 x 2 map); the first Linear has C*grid^2 inputs, 89.9 M parameters at 7",
                                 min=0, max=64),
    }
    official_recipe = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="step", step_size=20,
                           gamma=0.1, epochs=60, batch_size=64, image_size=224, augment="flip")

    @classmethod
    def resolve_options(cls, options: dict, image_size: int) -> dict:
        if options["attention_grid"] == 0:
            options = {**options, "attention_grid": min(7, max(cls.feature_map_size(options["backbone"], image_size)))}
        return options

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__(num_classes, pretrained, options)
        # the harness resolves 0 when it builds the spec (resolve_options); built directly, without an
        # image size, 0 is the official 7 x 7
        c, g = self.dim, self.opts["attention_grid"] or 7
        self.grid = g
        self.fc = nn.Linear(c, num_classes)
        self.attention = nn.Sequential(
            nn.Linear(c * g * g, 3584), nn.BatchNorm1d(3584), nn.ReLU(inplace=True),
            nn.Linear(3584, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
            nn.Linear(512, 64), nn.BatchNorm1d(64), nn.Tanh(),
        )
        self.attention_heads = nn.Linear(64, 2 * c)
        for m in list(self.attention) + [self.attention_heads]:
            if isinstance(m, nn.Linear):  # as the official code: kaiming weights, zero biases
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        centers = torch.empty(c, num_classes)
        nn.init.kaiming_normal_(centers)  # the official init is on the transposed centres
        self.register_buffer("centers", centers.t().contiguous())
        self._pending: list = []

    def forward(self, x: torch.Tensor) -> Output:
        fmap = self.features(x)
        f = fmap.mean(dim=(2, 3))
        e = self.attention(F.adaptive_avg_pool2d(fmap, self.grid).flatten(1))
        a = torch.softmax(self.attention_heads(e).view(-1, self.dim, 2), dim=2)[..., 1]
        return Output(self.fc(f), f, fmap, {"attention": a})

    def loss(self, x, y, out, state):
        ce = F.cross_entropy(out.logits, y)
        a = out.extras["attention"].float()
        f = out.embedding.float()
        sc = sparse_center_loss(f, a, y, self.centers)
        if self.training:
            self._pending.append((f.detach(), a.detach(), y.detach()))
        return {"loss": ce + self.opts["sparse_center_weight"] * sc, "ce": ce, "sparse_center": sc}

    def after_step(self) -> None:
        with torch.no_grad():
            for f, a, y in self._pending:
                self.centers -= self.opts["center_lr"] * center_gradient(f, a, y, self.centers)
        self._pending.clear()
