"""EAC on a timm trunk: random erasing plus flip-equivariant class activation maps.

Official code: github.com/zyh-uaiaaaa/Erasing-Attention-Consistency (src/model.py, src/main.py,
src/dataset.py), read at 61efdfd3. In training, the input is randomly erased (RandomErasing, p 0.5,
scale 0.02-0.25, value 0 on the normalised image); x' is the horizontal flip of the erased image.
The CAMs of all classes, M_k = sum_c W_kc F_c with the classifier weights W taken without gradient,
of x and of x' flipped back must agree: L = CE(x) + lam * MSE(M(x), flip(M(x'))), lam 5.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.api import BackboneMethod, Option, Output


def random_erase(x: torch.Tensor, p: float = 0.5, scale=(0.02, 0.25), ratio=(0.3, 3.3)) -> torch.Tensor:
    """Per-sample RandomErasing (torchvision's parameters, one attempt, box clamped to the image),
    drawn from the global (CPU) torch generator, so a seed erases the same boxes on every device;
    erased pixels become 0. The boxes go to x's device as 5 numbers per image and the mask is built
    there (no image-sized copy per call)."""
    b, _, h, w = x.shape
    dev = x.device
    apply = torch.rand(b) < p
    area = torch.empty(b).uniform_(*scale) * h * w
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    r = torch.exp(log_r)
    eh = torch.sqrt(area * r).round().clamp(1, h).long()
    ew = torch.sqrt(area / r).round().clamp(1, w).long()
    top = (torch.rand(b) * (h - eh + 1).float()).floor().long()
    left = (torch.rand(b) * (w - ew + 1).float()).floor().long()
    apply, top, left, eh, ew = torch.stack([apply.long(), top, left, eh, ew]).view(5, b, 1, 1).to(dev, non_blocking=True)
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    box = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew) & apply.bool()
    return x.masked_fill(box.unsqueeze(1), 0.0)


def class_activation_maps(fmap: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """M[b, k, h, w] = sum_c W[k, c] F[b, c, h, w], with W detached (no gradient through the classifier)."""
    return torch.einsum("kc,bchw->bkhw", weight.detach(), fmap)


class EAC(BackboneMethod):
    paper = "Zhang et al., Learn From All: Erasing Attention Consistency for Noisy Label FER, ECCV 2022"
    description = "random erasing + consistency of class activation maps under horizontal flip"
    options = {
        **BackboneMethod.options,
        "flip_consistency_weight": Option(5.0, "weight of the flip-consistency MSE of the CAMs (the official "
                                               "code's lam)", min=0.0, aliases=("lam",)),
        "erase_p": Option(0.5, "probability of random erasing per training image"),
        "erase_scale_max": Option(0.25, "largest erased area (fraction of the image; smallest 0.02)"),
        "independent_flip": Option(False, "erase the flipped image independently (the official noisy-label "
                                          "mode); default: x' is the flip of the erased x (clean-label mode)"),
    }
    official_recipe = dict(optimizer="adam", lr=2e-4, weight_decay=1e-4, schedule="exponential", gamma=0.9,
                           epochs=60, batch_size=32, image_size=224, augment="flip")

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__(num_classes, pretrained, options)
        self.fc = nn.Linear(self.dim, num_classes)

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        return random_erase(x, self.opts["erase_p"], (0.02, self.opts["erase_scale_max"]))

    def _head(self, fmap: torch.Tensor, extras: dict) -> Output:
        emb = fmap.mean(dim=(2, 3))
        return Output(self.fc(emb), emb, fmap, extras)

    def forward(self, x: torch.Tensor) -> Output:
        if self.training:
            x = self._erase(x)  # erasing is part of the method's training input, as in the official code
        return self._head(self.features(x), {"input": x} if self.training else None)

    def loss(self, x, y, out, state):
        ce = F.cross_entropy(out.logits, y)
        if out.extras is None or "input" not in out.extras:
            return {"loss": ce, "ce": ce}
        erased = out.extras["input"]
        flipped = self._erase(x.flip(3)) if self.opts["independent_flip"] else erased.flip(3)
        fmap_f = self.features(flipped)
        cams = class_activation_maps(out.feature_map, self.fc.weight)
        cams_f = class_activation_maps(fmap_f, self.fc.weight).flip(3)
        consistency = F.mse_loss(cams, cams_f)
        return {"loss": ce + self.opts["flip_consistency_weight"] * consistency, "ce": ce, "flip_consistency": consistency}
