"""RAN on a timm trunk, the landmark-free fixed-crop variant.

Official code: github.com/kaiwang960112/Challenge-condition-FER-dataset (AffectNet
`part_attentioon_sample_fly.py`, FERPlus `attention_rank_loss.py`), read at e43d7a06.

The input and K fixed crops of it (boxes as fractions of the image, each resized to the input size)
go through one shared trunk; f_i = GAP. Self-attention mu_i = sigmoid(FC(f_i)), softmax over the
K + 1 inputs; F_m = sum mu_i f_i / sum mu_i. Relation attention nu_i = sigmoid(FC([f_i; F_m])),
softmax over the inputs; P = sum mu_i nu_i [f_i; F_m] / sum mu_i nu_i -> FC -> logits.
Region-biased loss: mean_b max(0, margin - (max_{i<K} mu_ib - mu_orig,b)); L = CE + L_RB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.api import BackboneMethod, MsdeError, Option, Output

#: (x0, y0, x1, y1) as fractions of width and height, from the official on-the-fly AffectNet script
CROPS = (
    (0.125, 0.25, 0.875, 1.0),   # bottom centre
    (0.0, 0.0, 0.75, 0.75),      # top left
    (0.25, 0.0, 1.0, 0.75),      # top right
    (0.05, 0.05, 0.95, 0.95),
    (0.1, 0.1, 0.9, 0.9),
    (0.125, 0.125, 0.875, 0.875),
    (0.125, 0.0, 0.875, 0.75),   # top centre
)


def crop_batch(x: torch.Tensor, boxes) -> torch.Tensor:
    """The crops of every image, each resized back to the input size: B x K x 3 x H x W. Box edges
    are truncated to whole pixels, int(fraction * size), as the official code's PIL boxes."""
    _, _, h, w = x.shape
    out = []
    for x0, y0, x1, y1 in boxes:
        r0, c0 = int(y0 * h), int(x0 * w)
        r1, c1 = max(r0 + 1, int(y1 * h)), max(c0 + 1, int(x1 * w))
        out.append(F.interpolate(x[:, :, r0:r1, c0:c1], size=(h, w), mode="bilinear", align_corners=False))
    return torch.stack(out, dim=1)


def region_biased_loss(mu: torch.Tensor, margin: float) -> torch.Tensor:
    """mu: B x (K + 1) softmaxed self-attention, the original image last."""
    return F.relu(margin - (mu[:, :-1].max(dim=1).values - mu[:, -1])).mean()


class RAN(BackboneMethod):
    paper = "Wang et al., Region Attention Networks for Pose and Occlusion Robust FER, IEEE TIP 2020"
    description = "fixed face crops + the whole face through a shared trunk, self/relation attention, region-biased loss"
    options = {
        **BackboneMethod.options,
        "crops": Option(7, "how many of the 7 official fixed crops to use (fewer for tests; compute is "
                           "(crops + 1) trunk passes)"),
        "margin": Option(0.03, "region-biased loss margin (0.03 in the 8-input AffectNet script, 0.1 in the "
                               "6-input FERPlus one)"),
        "rb_weight": Option(1.0, "weight of the region-biased loss"),
        "quirk_per_crop_bn": Option(False, "in training, run the trunk once per crop slot, so that batch norm "
                                           "normalises each crop position on its own, as the official code does "
                                           "(default: every crop of the batch in one trunk pass)"),
        "quirk_unnormalised_input": Option(False, "feed the trunk [0, 1] pixels without mean/std normalisation, "
                                                  "as the official scripts do (ToTensor only)"),
    }
    official_recipe = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4, schedule="multistep",
                           milestones=(12, 20, 32), gamma=0.1, epochs=40, batch_size=256, image_size=224,
                           augment="none")
    official_options = dict(quirk_per_crop_bn=True)  # the official loop's per-crop-slot batch norm

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__(num_classes, pretrained, options)
        k = self.opts["crops"]
        if not 0 <= k <= len(CROPS):
            raise MsdeError(f"--opt crops={k}: choose 0-{len(CROPS)}")
        self.boxes = CROPS[:k]
        d = self.dim
        self.self_attention = nn.Linear(d, 1)
        self.relation_attention = nn.Linear(2 * d, 1)
        self.fc = nn.Linear(2 * d, num_classes)

    def forward(self, x: torch.Tensor) -> Output:
        b = x.shape[0]
        if self.opts["quirk_unnormalised_input"]:  # back to [0, 1] pixels, whatever the harness normalised with
            mean, std = (x.new_tensor(v).view(1, 3, 1, 1) for v in self.input_normalisation)
            x = x * std + mean
        views = torch.cat([crop_batch(x, self.boxes), x.unsqueeze(1)], dim=1)  # B x N x 3 x H x W, original last
        n = views.shape[1]
        if self.training and self.opts["quirk_per_crop_bn"]:
            fmaps = torch.stack([self.features(views[:, i]) for i in range(n)], dim=1).flatten(0, 1)
        else:
            fmaps = self.features(views.flatten(0, 1))
        f = fmaps.mean(dim=(2, 3)).view(b, n, -1)
        mu = torch.softmax(torch.sigmoid(self.self_attention(f)).squeeze(2), dim=1)
        fm = (mu.unsqueeze(2) * f).sum(1) / mu.sum(1, keepdim=True)
        cat = torch.cat([f, fm.unsqueeze(1).expand_as(f)], dim=2)
        nu = torch.softmax(torch.sigmoid(self.relation_attention(cat)).squeeze(2), dim=1)
        w = (mu * nu).unsqueeze(2)
        p = (w * cat).sum(1) / w.sum(1)
        fmap_orig = fmaps.view(b, n, *fmaps.shape[1:])[:, -1]
        return Output(self.fc(p), p, fmap_orig, {"mu": mu, "nu": nu})

    def cam_reshape_transform(self):
        n = len(self.boxes) + 1  # the trunk sees every crop; Grad-CAM looks at the whole image's map
        return lambda t: t.reshape(-1, n, *t.shape[1:])[:, -1]

    def loss(self, x, y, out, state):
        ce = F.cross_entropy(out.logits, y)
        if len(self.boxes) == 0:
            return {"loss": ce, "ce": ce}
        rb = region_biased_loss(out.extras["mu"], self.opts["margin"])
        return {"loss": ce + self.opts["rb_weight"] * rb, "ce": ce, "region_biased": rb}
