"""Paired augmentation on batched tensors: the same random draw for both views of a pair.

`paper` is the reference code's list (below); `flip` is horizontal flips only (the quick recipe);
`none` leaves the images as they are.

All randomness comes from one CPU torch.Generator, so a seed gives the same transforms on every
device. The geometric part (flip, shift-scale-rotate, affine zoom) is one `grid_sample` over both
views; the colour part (hue, saturation, value, contrast) is one per-sample 3x3 matrix and offset.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTS = ("paper", "flip", "none")

# RGB <-> YIQ, for hue rotation
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def _u(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _p(gen: torch.Generator, n: int, p: float) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def draw_params(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The reference augmentation list (the MSD-E training code's), drawn once per pair:
    HorizontalFlip, HueSaturationValue, RandomContrast (p 0.5 each, albumentations' default limits),
    ShiftScaleRotate(shift 0.0625, scale 0.1, rotate 3, p 0.5), Affine(scale 1.0-1.25, p 0.5)."""
    flip = _p(gen, n, 0.5)
    ssr = _p(gen, n, 0.5)
    shift = torch.stack([_u(gen, n, -0.0625, 0.0625), _u(gen, n, -0.0625, 0.0625)], 1) * ssr[:, None]
    scale = torch.where(ssr, _u(gen, n, 0.9, 1.1), torch.ones(n))
    angle = torch.where(ssr, _u(gen, n, -3.0, 3.0), torch.zeros(n))
    zoom_on = _p(gen, n, 0.5)
    scale = scale * torch.where(zoom_on, _u(gen, n, 1.0, 1.25), torch.ones(n))
    hsv = _p(gen, n, 0.5)
    hue = torch.where(hsv, _u(gen, n, -20 / 180, 20 / 180) * math.pi, torch.zeros(n))  # radians of the hue circle
    sat = torch.where(hsv, 1 + _u(gen, n, -30 / 255, 30 / 255) * 2, torch.ones(n))
    val = torch.where(hsv, _u(gen, n, -20 / 255, 20 / 255), torch.zeros(n))
    con = torch.where(_p(gen, n, 0.5), _u(gen, n, 0.8, 1.2), torch.ones(n))
    return dict(flip=flip, shift=shift, scale=scale, angle=angle, hue=hue, sat=sat, val=val, con=con)


def _theta(p: dict[str, torch.Tensor]) -> torch.Tensor:
    a = p["angle"] * math.pi / 180
    sx = torch.where(p["flip"], -1.0, 1.0)
    cos, sin = torch.cos(a) / p["scale"], torch.sin(a) / p["scale"]
    row0 = torch.stack([cos * sx, -sin, p["shift"][:, 0] * 2], 1)
    row1 = torch.stack([sin * sx, cos, p["shift"][:, 1] * 2], 1)
    return torch.stack([row0, row1], 1)


def _colour(p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-sample 3x3 colour matrix: hue rotation in YIQ, then saturation."""
    n = p["hue"].shape[0]
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1] = torch.cos(p["hue"])
    rot[:, 1, 2] = -torch.sin(p["hue"])
    rot[:, 2, 1] = torch.sin(p["hue"])
    rot[:, 2, 2] = torch.cos(p["hue"])
    sat = torch.diag_embed(torch.stack([torch.ones(n), p["sat"], p["sat"]], 1))
    return _YIQ2RGB @ sat @ rot @ _RGB2YIQ


class PairedAugment:
    """Augments a batch of pairs (uint8 N x 3 x H x W each) and returns normalised float tensors."""

    def __init__(self, kind: str = "paper", mean=IMAGENET_MEAN, std=IMAGENET_STD):
        if kind not in AUGMENTS:
            raise ValueError(f"unknown augmentation {kind!r}")
        self.kind = kind
        #: (mean, std) as tuples: what Method.input_normalisation reports
        self.normalisation = (tuple(mean), tuple(std))
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def to_float(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return x.to(device, non_blocking=True).float().div_(255)

    def eval(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.normalise(self.to_float(x, device))

    def __call__(self, nm: torch.Tensor, m: torch.Tensor, gen: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        n = nm.shape[0]
        both = self.to_float(torch.cat([nm, m]), device)
        if self.kind == "paper":
            p = draw_params(n, gen)
            theta = _theta(p).to(device).repeat(2, 1, 1)
            grid = F.affine_grid(theta, list(both.shape), align_corners=False)
            both = F.grid_sample(both, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            mat = _colour(p).to(device).repeat(2, 1, 1)
            both = torch.einsum("bij,bjhw->bihw", mat, both)
            mean = both.mean(dim=(1, 2, 3), keepdim=True)
            con = p["con"].to(device).repeat(2).view(-1, 1, 1, 1)
            val = p["val"].to(device).repeat(2).view(-1, 1, 1, 1)
            both = ((both - mean) * con + mean + val).clamp_(0, 1)
        elif self.kind == "flip":
            flip = _p(gen, n, 0.5).to(device).repeat(2).view(-1, 1, 1, 1)
            both = torch.where(flip, both.flip(3), both)
        both = self.normalise(both)
        return both[:n], both[n:]
