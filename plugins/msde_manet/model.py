"""MA-Net on a timm ResNet trunk: shared low layers, a local branch of CBAM stages on the four
quadrants, a global branch of multi-scale blocks, logits fused with beta.

Official code: github.com/zengqunzhao/MA-Net (model/manet.py, model/attention.py), read at
923fa6cf. With C2 the channels of the trunk's layer2 map (128 for ResNet-18):

- local: the layer2 map is split into its four quadrants (halves of the actual size; 14 x 14 at
  224 px); each quadrant has its own layer3 (2 AttentionBlocks, C2 -> 2 C2, stride 2) and layer4
  (2 AttentionBlocks, 2 C2 -> 4 C2, stride 1); the outputs are reassembled, pooled, fc_1.
  AttentionBlock = BasicBlock with CBAM after bn2, before the residual add; CBAM = channel gate
  (MLP C -> C/16 -> C on average- and max-pooled features, summed, sigmoid) then spatial gate
  ([max_c; mean_c] -> Conv7x7 2 -> 1 + BN(momentum 0.01) -> sigmoid).
- global: layer3 and layer4 of MulScaleBlocks (stride 2 each): conv3x3 + BN + ReLU, four groups of
  C/4 channels, a forward cascade y1 = BN(conv x1), y_k = BN(conv(ReLU(y_{k-1}) + x_k)) and a backward
  cascade z4 = BN(conv x4), z_k = BN(conv(ReLU(z_{k+1}) + x_k)); out = ReLU(cat(y) + cat(z) + identity);
  pooled, fc_2.
- prediction beta * out_1 + (1 - beta) * out_2; loss beta * CE(out_1) + (1 - beta) * CE(out_2), beta 0.6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.api import BackboneMethod, Option, Output


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class CBAM(nn.Module):
    def __init__(self, c: int, reduction: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(c, max(1, c // reduction)), nn.ReLU(), nn.Linear(max(1, c // reduction), c))
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3, bias=False), nn.BatchNorm2d(1, momentum=0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        x = x * torch.sigmoid(gate)[:, :, None, None]
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class AttentionBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.cbam = CBAM(cout)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.cbam(self.bn2(self.conv2(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class MulScaleBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.width = cout // 4
        self.conv1, self.bn1 = conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        w = self.width
        self.forward_convs = nn.ModuleList(conv3x3(w, w) for _ in range(4))
        self.forward_bns = nn.ModuleList(nn.BatchNorm2d(w) for _ in range(4))
        self.backward_convs = nn.ModuleList(conv3x3(w, w) for _ in range(4))
        self.backward_bns = nn.ModuleList(nn.BatchNorm2d(w) for _ in range(4))
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        parts = torch.split(out, self.width, dim=1)
        fwd, prev = [], None
        for k in range(4):
            inp = parts[k] if prev is None else F.relu(prev) + parts[k]
            prev = self.forward_bns[k](self.forward_convs[k](inp))
            fwd.append(prev)
        bwd, prev = [None] * 4, None
        for k in reversed(range(4)):
            inp = parts[k] if prev is None else F.relu(prev) + parts[k]
            prev = self.backward_bns[k](self.backward_convs[k](inp))
            bwd[k] = prev
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(torch.cat(fwd, 1) + torch.cat(bwd, 1) + identity)


def _stage(block, cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(block(cin, cout, stride), *[block(cout, cout) for _ in range(blocks - 1)])


def _halves(n: int) -> list[tuple[int, int]]:
    return [(0, n), (0, n)] if n < 2 else [(0, n // 2), (n // 2, n)]


class MANet(BackboneMethod):
    paper = "Zhao et al., Learning Deep Global Multi-scale and Local Attention Features for FER in the Wild, TIP 2021"
    description = "shared low layers; CBAM stages on the four quadrants + a multi-scale global branch, fused with beta"
    options = {
        **BackboneMethod.options,
        "beta": Option(0.6, "weight of the local branch in the fused prediction and the loss"),
    }
    official_recipe = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4, schedule="step", step_size=15,
                           gamma=0.1, epochs=100, batch_size=128, image_size=224, augment="flip")
    trunk_kwargs = dict(features_only=True, out_indices=(2,))

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__(num_classes, pretrained, options)
        c2 = self.dims[0]
        self.local3 = nn.ModuleList(_stage(AttentionBlock, c2, 2 * c2, 2, 2) for _ in range(4))
        self.local4 = nn.ModuleList(_stage(AttentionBlock, 2 * c2, 4 * c2, 2, 1) for _ in range(4))
        self.global3 = _stage(MulScaleBlock, c2, 2 * c2, 2, 2)
        self.global4 = _stage(MulScaleBlock, 2 * c2, 4 * c2, 2, 2)
        self.fc_1 = nn.Linear(4 * c2, num_classes)
        self.fc_2 = nn.Linear(4 * c2, num_classes)
        for name, m in self.named_modules():  # the official init, for the modules the trunk does not own
            if name.startswith("trunk"):
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> Output:
        (f2,) = self.trunk(x)
        h, w = f2.shape[2:]
        quads = []
        for i, (r0, r1) in enumerate(_halves(h)):
            row = []
            for j, (c0, c1) in enumerate(_halves(w)):
                k = 2 * i + j
                row.append(self.local4[k](self.local3[k](f2[:, :, r0:r1, c0:c1])))
            quads.append(torch.cat(row, dim=3))
        local = torch.cat(quads, dim=2)
        emb = local.mean(dim=(2, 3))
        out_1 = self.fc_1(emb)
        out_2 = self.fc_2(self.global4(self.global3(f2)).mean(dim=(2, 3)))
        beta = self.opts["beta"]
        return Output(beta * out_1 + (1 - beta) * out_2, emb, local, {"local": out_1, "global": out_2})

    def loss(self, x, y, out, state):
        ce_1 = F.cross_entropy(out.extras["local"], y)
        ce_2 = F.cross_entropy(out.extras["global"], y)
        beta = self.opts["beta"]
        return {"loss": beta * ce_1 + (1 - beta) * ce_2, "ce_local": ce_1, "ce_global": ce_2}

    def target_layer(self) -> nn.Module:
        return self.trunk.layer2 if hasattr(self.trunk, "layer2") else self.trunk
