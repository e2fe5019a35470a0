"""Paired augmentation on batched tensors: the same random draw for both views of a pair.

`paper` is the reference code's list (below); `flip` is horizontal flips only (the quick recipe);
`none` leaves the images as they are; other values are steps joined by "+" (choices.AUGMENT_STEPS:
flip, crop, affine, erase), drawn in that order.

All randomness comes from one CPU torch.Generator, so a seed gives the same transforms on every
device. The colour part comes first, as in the reference's list: albumentations'
HueSaturationValue (shifts of H, S and V in OpenCV's HSV: hue +-20 of 180 units, i.e. +-40 degrees,
saturation +-30 and value +-20 of 255) and RandomContrast (pixel values times 1 +- 0.2, clipped),
computed in float on the device (albumentations works in uint8 through OpenCV look-up tables; a
test checks the two agree to within that rounding). The geometric part (flip, shift-scale-rotate,
affine zoom) is then one `grid_sample` over both views.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from msde_bench.choices import augment_steps

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    # albumentations' defaults, in OpenCV's uint8 HSV units: hue of 180 (2 degrees each), S and V of 255
    hue = torch.where(hsv, _u(gen, n, -20.0, 20.0), torch.zeros(n))
    sat = torch.where(hsv, _u(gen, n, -30.0, 30.0), torch.zeros(n))
    val = torch.where(hsv, _u(gen, n, -20.0, 20.0), torch.zeros(n))
    con = torch.where(_p(gen, n, 0.5), _u(gen, n, 0.8, 1.2), torch.ones(n))
    return dict(flip=flip, shift=shift, scale=scale, angle=angle, hue=hue, sat=sat, val=val, con=con)


def _theta(p: dict[str, torch.Tensor]) -> torch.Tensor:
    a = p["angle"] * math.pi / 180
    sx = torch.where(p["flip"], -1.0, 1.0)
    cos, sin = torch.cos(a) / p["scale"], torch.sin(a) / p["scale"]
    row0 = torch.stack([cos * sx, -sin, p["shift"][:, 0] * 2], 1)
    row1 = torch.stack([sin * sx, cos, p["shift"][:, 1] * 2], 1)
    return torch.stack([row0, row1], 1)


def rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B x 3 x H x W RGB in [0, 1] -> hue (fraction of the circle, [0, 1)), saturation, value in [0, 1]
    (OpenCV's definitions: V = max, S = (max - min) / max)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    delta = v - x.min(1).values
    d = delta.clamp_min(1e-12)
    h = torch.where(v == r, (g - b) / d, torch.where(v == g, 2 + (b - r) / d, 4 + (r - g) / d))
    h = torch.where(delta > 0, (h / 6) % 1, torch.zeros_like(h))
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    return h, s, v


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The inverse of rgb_to_hsv: B x 3 x H x W RGB."""
    h6 = (h % 1) * 6
    i = h6.floor()
    f = h6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    table = torch.stack([torch.stack(c, 0) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return table.gather(0, i[None, None].expand(1, 3, *i.shape)).squeeze(0).movedim(0, 1)


def colour(x: torch.Tensor, hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor,
           con: torch.Tensor) -> torch.Tensor:
    """HueSaturationValue then RandomContrast on B x 3 x H x W RGB in [0, 1], per sample: hue shifted
    by `hue` of 180 units, S and V by `sat` and `val` of 255 (clipped), then pixel values times `con`
    (clipped), as albumentations does."""
    h, s, v = rgb_to_hsv(x)
    view = (-1, 1, 1)
    h = (h + hue.view(view) / 180) % 1
    s = (s + sat.view(view) / 255).clamp(0, 1)
    v = (v + val.view(view) / 255).clamp(0, 1)
    return (hsv_to_rgb(h, s, v) * con.view(-1, 1, 1, 1)).clamp_(0, 1)


def crop_padding(size: int) -> int:
    """The zero padding of the `crop` step on every edge: 1/12 of the side (4 px at 48 px), at least 1."""
    return max(1, round(size / 12))


def _crop_offsets(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    pad = crop_padding(size)
    return (torch.randint(0, 2 * pad + 1, (n,), generator=gen), torch.randint(0, 2 * pad + 1, (n,), generator=gen))


def random_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Per image, the H x W window at (top, left) of the image zero-padded by crop_padding(W) on
    every edge (torchvision's RandomCrop(size, padding=pad) with these offsets), in one gather."""
    h, w = x.shape[-2:]
    pad = crop_padding(w)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (top.view(-1, 1) + torch.arange(h, device=x.device)).view(-1, 1, h, 1).expand(-1, x.shape[1], h, w + 2 * pad)
    picked = padded.gather(2, rows)
    cols = (left.view(-1, 1) + torch.arange(w, device=x.device)).view(-1, 1, 1, w).expand(-1, x.shape[1], h, w)
    return picked.gather(3, cols)


class PairedAugment:
    """Augments a batch of pairs (uint8 N x 3 x H x W each) and returns normalised float tensors."""

    def __init__(self, kind: str = "paper", mean=IMAGENET_MEAN, std=IMAGENET_STD):
        try:
            self.steps = augment_steps(kind)
        except ValueError as e:
            raise ValueError(f"unknown augmentation {kind!r}: {e}") from None
        self.kind = kind
        #: (mean, std) as tuples: what Method.input_normalisation reports
        self.normalisation = (tuple(mean), tuple(std))
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def to_float(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        if x.device != device:  # a host batch (the cache did not fit on the device): copy it there
            x = x.to(device, non_blocking=True)
        return x.float().div_(255)

    def eval(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.normalise(self.to_float(x, device))

    def __call__(self, nm: torch.Tensor, m: torch.Tensor, gen: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Both views of n pairs, one draw per pair for both."""
        n = nm.shape[0]
        both = self._apply(torch.cat([nm, m]), n, gen, device, 2)
        return both[:n], both[n:]

    def one(self, x: torch.Tensor, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """One image per pair (one view, or each item's own): the same draws, and so the same result
        for each image, as __call__ on the pairs."""
        return self._apply(x, x.shape[0], gen, device, 1)

    def _apply(self, x: torch.Tensor, n: int, gen: torch.Generator, device: torch.device, views: int) -> torch.Tensor:
        x = self.to_float(x, device)
        if self.kind == "paper":
            p = draw_params(n, gen)
            x = colour(x, *(p[k].to(device).repeat(views) for k in ("hue", "sat", "val", "con")))
            theta = _theta(p).to(device).repeat(views, 1, 1)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        elif self.kind != "none":
            x = self._steps(x, n, gen, device, views)
        return self.normalise(x) if "erase" not in self.steps else self._erase(self.normalise(x), n, gen, views)

    def _steps(self, x: torch.Tensor, n: int, gen: torch.Generator, device: torch.device, views: int) -> torch.Tensor:
        """The geometric steps of a "+" augmentation (flip, crop, affine), one draw per pair each."""
        if "flip" in self.steps:  # alone, exactly the `flip` preset's draws
            flip = _p(gen, n, 0.5).to(device).repeat(views).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
        if "crop" in self.steps:
            x = random_crop(x, *(d.to(device).repeat(views) for d in _crop_offsets(n, x.shape[-1], gen)))
        if "affine" in self.steps:
            angle, scale = _u(gen, n, -10.0, 10.0) * math.pi / 180, _u(gen, n, 0.9, 1.1)
            cos, sin, zero = torch.cos(angle) / scale, torch.sin(angle) / scale, torch.zeros(n)
            theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
            grid = F.affine_grid(theta.to(device).repeat(views, 1, 1), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return x

    @staticmethod
    def _erase(x: torch.Tensor, n: int, gen: torch.Generator, views: int) -> torch.Tensor:
        """Random erasing of normalised images (p 0.5, 2-33 % of the area, aspect ratio 0.3-3.3 drawn
        log-uniformly, as torchvision's RandomErasing), filled with 0: the mean colour; the same
        rectangle on both views of a pair."""
        h, w = x.shape[-2:]
        on = _p(gen, n, 0.5)
        area = _u(gen, n, 0.02, 0.33) * h * w
        ratio = torch.exp(_u(gen, n, math.log(0.3), math.log(1 / 0.3)))
        eh = (area * ratio).sqrt().round().clamp(1, h)
        ew = (area / ratio).sqrt().round().clamp(1, w)
        top = (torch.rand(n, generator=gen) * (h - eh + 1)).floor()
        left = (torch.rand(n, generator=gen) * (w - ew + 1)).floor()
        rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
        box = ((rows >= top.view(-1, 1, 1)) & (rows < (top + eh).view(-1, 1, 1))
               & (cols >= left.view(-1, 1, 1)) & (cols < (left + ew).view(-1, 1, 1)) & on.view(-1, 1, 1))
        return x.masked_fill(box.to(x.device).repeat(views, 1, 1).unsqueeze(1), 0.0)
