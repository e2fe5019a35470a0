"""SCAN + CCI on a timm trunk: spatio-channel attention on a mid-level map, complementary context.

Official code: github.com/1980x/SCAN-CCI-FER (main_rafdb.py, SharedAttentionBranch, RegionBranch),
read at 8011a102. With f2 the layer2 map (C2 channels, 28 x 28 at 224 px on ResNet) and f3 the
layer3 map (C3, 14 x 14):

- SCAN: a mask net g = Conv3x3(C2 -> C2, no bias) - PReLU - BN - Sigmoid gives a full C x H x W
  attention. f2 is cut into a 5 x 5 grid of patches at the official boundaries 0, 6, 12, 18, 24, 28
  (as fractions of the map's size, so any input size works); l_k = GAP(P_k * g_loc(P_k)) with g_loc
  shared by the patches, l = max_k l_k; G = GAP(f2 * g_glob(f2)); y_att = FC_{2 C2 -> 7}(L2norm([l; G])).
- CCI: ECA on f3 (GAP, Conv1d k 5 over channels, sigmoid, scale), four quadrants, GAP each, one shared
  MLP C3 -> C3/4 -> ReLU -> 7 (the official ModuleList repeats one instance): y_r1..y_r4.
- Prediction: the mean of the five logit vectors. Loss: 0.2 CE(y_att) + 0.8 sum_j CE(y_rj).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.api import BackboneMethod, Option, Output

#: the official patch boundaries on a 28 x 28 map, as fractions
BOUNDS = (0, 6, 12, 18, 24, 28)


def grid_bounds(n: int) -> list[tuple[int, int]]:
    """The 5 official intervals scaled to a side of n; empty ones are dropped."""
    cuts = [round(b * n / 28) for b in BOUNDS]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def local_patches(f2: torch.Tensor, official_rows: bool = False) -> list[torch.Tensor]:
    """The 5 x 5 grid of patches of the layer-2 map (25 at 28 x 28: 16 of 6 x 6, 4 of 6 x 4, 4 of
    4 x 6, 1 of 4 x 4), as the paper describes. With `official_rows`, the bottom row's patches are
    what the official code's unfold produces instead: one patch per pixel row of the bottom strip
    (rows 24-27 at 28 x 28), that row's first 24 columns cut into the 4 column windows and stacked
    as a 4 x 6 map: the strip a face mask covers, seen row by row."""
    h, w = f2.shape[2:]
    rows, cols = grid_bounds(h), grid_bounds(w)
    rearranged = official_rows and len(rows) > 1 and len(cols) > 1
    out = []
    for ri, (r0, r1) in enumerate(rows):
        for ci, (c0, c1) in enumerate(cols):
            if rearranged and ri == len(rows) - 1 and ci < len(cols) - 1:
                continue
            out.append(f2[:, :, r0:r1, c0:c1])
    if rearranged:
        windows = cols[:-1]
        width = min(c1 - c0 for c0, c1 in windows)  # 6 at 28 x 28, where every window is 6 wide
        for r in range(*rows[-1]):
            out.append(torch.stack([f2[:, :, r, c0:c0 + width] for c0, _ in windows], dim=2))
    return out


def halves(n: int) -> list[tuple[int, int]]:
    if n < 2:
        return [(0, n), (0, n)]
    return [(0, n // 2), (n // 2, n)]


class MaskNet(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.PReLU(c), nn.BatchNorm2d(c), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ECA(nn.Module):
    def __init__(self, k: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.conv(x.mean(dim=(2, 3)).unsqueeze(1))).squeeze(1)
        return x * w[:, :, None, None]


class SCAN(BackboneMethod):
    paper = ("Gera & Balasubramanian, Landmark guidance independent spatio-channel attention and complementary "
             "context information based FER, Pattern Recognition Letters 2021")
    description = "landmark-free spatio-channel attention over local patches + ECA quadrant context branch"
    options = {
        **BackboneMethod.options,
        "att_weight": Option(0.2, "weight of the attention branch's CE (the regions get 1 - att_weight)"),
        "backbone_lr_scale": Option(1.0, "trunk lr = lr x this (official: 1e-4 trunk, 1e-2 branches = 0.01)"),
        "quirk_frozen_bn": Option(False, "from the second epoch on, train with batch-norm statistics frozen, as the "
                                         "official loop does (train() is never called after the first validate())"),
        "quirk_row_patches": Option(False, "the bottom row of local patches as the official code's unfold cuts it: "
                                           "one patch per pixel row of the bottom strip (rows 24-27 at 28 x 28) "
                                           "reshaped to 4 x 6, instead of the paper's 4 x 6 blocks"),
    }
    official_recipe = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-3, schedule="exponential",
                           gamma=0.95, epochs=60, batch_size=64, image_size=224, augment="paper")
    official_options = dict(backbone_lr_scale=0.01)  # trunk 1e-4, branches 1e-2
    trunk_kwargs = dict(features_only=True, out_indices=(2, 3))

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__(num_classes, pretrained, options)
        c2, c3 = self.dims
        self.local_mask = MaskNet(c2)
        self.global_mask = MaskNet(c2)
        self.att_fc = nn.Linear(2 * c2, num_classes)
        self.eca = ECA(5)
        self.region_net = nn.Sequential(nn.Linear(c3, max(1, c3 // 4)), nn.ReLU(inplace=True),
                                        nn.Linear(max(1, c3 // 4), num_classes))

    def forward(self, x: torch.Tensor) -> Output:
        f2, f3 = self.trunk(x)
        local = [(p * self.local_mask(p)).mean(dim=(2, 3))
                 for p in local_patches(f2, self.opts["quirk_row_patches"])]
        loc = torch.stack(local, dim=1).max(dim=1).values
        g = (f2 * self.global_mask(f2)).mean(dim=(2, 3))
        emb = F.normalize(torch.cat([loc, g], dim=1), dim=1)
        y_att = self.att_fc(emb)
        e = self.eca(f3)
        h3, w3 = e.shape[2:]
        regions = [self.region_net(e[:, :, r0:r1, c0:c1].mean(dim=(2, 3))) for r0, r1 in halves(h3)
                   for c0, c1 in halves(w3)]
        logits = torch.stack([y_att, *regions], dim=0).mean(dim=0)
        return Output(logits, emb, f3, {"att": y_att, "regions": regions})

    def loss(self, x, y, out, state):
        att = F.cross_entropy(out.extras["att"], y)
        reg = sum(F.cross_entropy(r, y) for r in out.extras["regions"])
        wt = self.opts["att_weight"]
        return {"loss": wt * att + (1 - wt) * reg, "ce_attention": att, "ce_regions": reg}

    def param_groups(self, lr: float) -> list[dict]:
        trunk = list(self.trunk.parameters())
        ids = {id(p) for p in trunk}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": trunk, "lr_scale": self.opts["backbone_lr_scale"]}, {"params": rest}]

    def on_epoch_start(self, epoch: int) -> None:
        if self.opts["quirk_frozen_bn"] and epoch >= 1:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def target_layer(self) -> nn.Module:
        return self.trunk.layer3 if hasattr(self.trunk, "layer3") else self.trunk
