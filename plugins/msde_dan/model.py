"""DAN on a timm trunk: K cross-attention heads (spatial + channel), affinity and partition losses.

Official code: github.com/yaoing/DAN (networks/dan.py, rafdb.py), read at 3872eefe. With C the
trunk's channels (512 for ResNet-18) every width below is the official one for C = 512:

- X = trunk feature map (C x h x w); g = GAP(X).
- head k: Y = BN(Conv1x1 C -> C/2)(X); S = ReLU(BN(Conv3x3 C/2 -> C)(Y) + BN(Conv1x3)(Y) + BN(Conv3x1)(Y));
  s = sum over channels of S; X_s = X * s; g_s = GAP(X_s); a = sigmoid(Linear C/16 -> C(ReLU(BN1d(
  Linear C -> C/16(g_s))))); h_k = g_s * a.
- H (B x K x C) -> log_softmax over the heads when K > 1; logits = BN1d(Linear C -> 7(sum_k H_k)).
- L = CE + L_affinity + L_partition with
  L_affinity = mean_i ||g_i - c_{y_i}||^2 / sum_d Var_k(c_kd) (learnable centres c, unbiased variance
  over the centres), clamped to [1e-12, 1e12] per entry as in the code;
  L_partition = log(1 + K / (mean over batch and channels of Var_heads(H) + eps)).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.api import BackboneMethod, Option, Output


class CrossAttentionHead(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        mid, red = max(1, c // 2), max(1, c // 16)
        self.conv1x1 = nn.Sequential(nn.Conv2d(c, mid, 1), nn.BatchNorm2d(mid))
        self.conv3x3 = nn.Sequential(nn.Conv2d(mid, c, 3, padding=1), nn.BatchNorm2d(c))
        self.conv1x3 = nn.Sequential(nn.Conv2d(mid, c, (1, 3), padding=(0, 1)), nn.BatchNorm2d(c))
        self.conv3x1 = nn.Sequential(nn.Conv2d(mid, c, (3, 1), padding=(1, 0)), nn.BatchNorm2d(c))
        self.attention = nn.Sequential(nn.Linear(c, red), nn.BatchNorm1d(red), nn.ReLU(inplace=True),
                                       nn.Linear(red, c), nn.Sigmoid())
        for m in self.modules():  # the official init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1x1(x)
        s = F.relu(self.conv3x3(y) + self.conv1x3(y) + self.conv3x1(y)).sum(dim=1, keepdim=True)
        g = (x * s).mean(dim=(2, 3))
        return g * self.attention(g)


def affinity_loss(g: torch.Tensor, y: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """mean_i ||g_i - c_{y_i}||^2 / sum_d Var_k(c_kd), each distance clamped to [1e-12, 1e12]."""
    dist = ((g - centers[y]) ** 2).sum(dim=1) / centers.var(dim=0).sum()
    return dist.clamp(1e-12, 1e12).mean()


def partition_loss(heads: torch.Tensor) -> torch.Tensor:
    """log(1 + K / (mean variance across the K heads + eps)); 0 for one head. eps is Python's float
    epsilon (2.2e-16), as the official code (below float32 resolution: it only guards var = 0)."""
    k = heads.shape[1]
    if k < 2:
        return heads.sum() * 0
    var = heads.var(dim=1).mean()
    return torch.log(1 + k / (var + sys.float_info.epsilon))


class DAN(BackboneMethod):
    paper = "Wen et al., Distract Your Attention: Multi-head Cross Attention Network for FER, Biomimetics 2023"
    description = "feature clustering (affinity loss) + K spatial/channel cross-attention heads (partition loss)"
    options = {
        **BackboneMethod.options,
        "heads": Option(4, "number of cross-attention heads"),
        "affinity_weight": Option(1.0, "weight of the affinity loss"),
        "partition_weight": Option(1.0, "weight of the partition loss"),
        "quirk_8_centers": Option(False, "use 8 affinity centres for 7 classes, as the official code does "
                                         "(AffinityLoss defaults to num_class=8 and rafdb.py keeps it); the unused "
                                         "centre enters the variance term"),
    }
    official_recipe = dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step", step_size=10,
                           gamma=0.1, epochs=40, batch_size=256, image_size=224, augment="paper")

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__(num_classes, pretrained, options)
        self.heads = nn.ModuleList(CrossAttentionHead(self.dim) for _ in range(self.opts["heads"]))
        self.fc = nn.Linear(self.dim, num_classes)
        self.bn = nn.BatchNorm1d(num_classes)
        n_centers = 8 if self.opts["quirk_8_centers"] else num_classes
        self.centers = nn.Parameter(torch.randn(n_centers, self.dim))

    def forward(self, x: torch.Tensor) -> Output:
        fmap = self.features(x)
        heads = torch.stack([h(fmap) for h in self.heads], dim=1)
        if heads.shape[1] > 1:
            heads = F.log_softmax(heads, dim=1)
        emb = heads.sum(dim=1)
        return Output(self.bn(self.fc(emb)), emb, fmap, {"heads": heads, "g": fmap.mean(dim=(2, 3))})

    def loss(self, x, y, out, state):
        ce = F.cross_entropy(out.logits, y)
        af = affinity_loss(out.extras["g"].float(), y, self.centers.float())
        pt = partition_loss(out.extras["heads"].float())
        total = ce + self.opts["affinity_weight"] * af + self.opts["partition_weight"] * pt
        return {"loss": total, "ce": ce, "affinity": af, "partition": pt}
