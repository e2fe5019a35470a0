"""Drawing face masks on a face described by a FaceFrame: the synthetic set (synth.py) and the
public-dataset conversion (masking.py) share this one drawing."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def rgb(c) -> tuple[int, int, int]:
    return tuple(int(round(min(255, max(0, v)))) for v in c)


class FaceFrame:
    """Maps face coordinates (u, v in about [-1, 1]: eyes at v = -0.18, mouth near 0.52, chin at 1)
    to canvas pixels."""

    def __init__(self, size: int, sp: dict, cx: float = 0.5, cy: float = 0.53):
        self.n = size
        self.cx = cx * size
        self.cy = cy * size
        self.a = sp["face_w"] * size
        self.b = sp["face_h"] * size

    def p(self, u: float, v: float) -> tuple[float, float]:
        return (self.cx + u * self.a, self.cy + v * self.b)

    def box(self, u: float, v: float, ru: float, rv: float) -> list[float]:
        x, y = self.p(u, v)
        return [x - ru * self.a, y - rv * self.b, x + ru * self.a, y + rv * self.b]


MASK_KINDS = ("surgical", "cloth", "n95", "kn95")
SURGICAL_COLOURS = [(173, 216, 230), (235, 240, 245), (160, 210, 190), (240, 190, 200), (35, 35, 40)]


def draw_mask(img: Image.Image, f: FaceFrame, rng: np.random.Generator, kind: str | None = None) -> str:
    """Draws a face mask over nose, mouth and cheeks of the face `f`; returns its kind. `kind`
    forces the style (the random draw is made either way, so the stream stays the same)."""
    d = ImageDraw.Draw(img)
    w = max(1, round(f.n / 60))
    drawn = MASK_KINDS[int(rng.integers(len(MASK_KINDS)))]
    kind = kind or drawn
    top = rng.uniform(-0.07, 0.05)  # fit: how high the mask sits on the nose bridge
    shift = rng.uniform(-0.05, 0.05)
    wide = rng.uniform(1.0, 1.08)
    low = rng.uniform(0.98, 1.08)
    if kind == "surgical":
        colour = np.array(SURGICAL_COLOURS[int(rng.integers(len(SURGICAL_COLOURS)))], dtype=float)
    elif kind == "cloth":
        colour = rng.uniform(20, 235, 3)
    else:
        colour = np.array([240.0, 240, 236]) * rng.uniform(0.85, 1.0)
    pts = [(-1.0, top + 0.08), (-0.35, top + 0.01), (0.0, top - 0.05), (0.35, top + 0.01), (1.0, top + 0.08),
           (1.02, 0.45), (0.7, 0.85), (0.0, low), (-0.7, 0.85), (-1.02, 0.45)]
    if kind in ("n95", "kn95"):
        pts = [(-0.95, top + 0.1), (-0.4, top), (0.0, top - 0.06), (0.4, top), (0.95, top + 0.1),
               (1.0, 0.5), (0.55, 0.92), (0.0, low + 0.02), (-0.55, 0.92), (-1.0, 0.5)]
    poly = [f.p(u * wide + shift, v) for u, v in pts]
    # ear loops
    loop = rgb(colour * 0.85)
    for s, (i0, i1) in ((-1, (0, 9)), (1, (4, 5))):
        ear = f.p(s * 1.0, -0.05)
        d.line([poly[i0], ear], fill=loop, width=w)
        d.line([poly[i1], ear], fill=loop, width=w)
    d.polygon(poly, fill=rgb(colour), outline=rgb(colour * 0.7))
    if kind == "surgical":  # pleats
        for k in range(3):
            v = top + 0.25 + 0.2 * k
            d.line([f.p(-0.95 * wide + shift, v), f.p(0.95 * wide + shift, v + 0.02)], fill=rgb(colour * 0.8),
                   width=w)
        d.line([poly[1], poly[2], poly[3]], fill=(200, 200, 200), width=w)  # nose wire
    elif kind == "cloth":  # a pattern: stripes, dots or checks
        pattern = int(rng.integers(3))
        accent = rgb(rng.uniform(0, 255, 3))
        mask_img = Image.new("L", img.size, 0)
        ImageDraw.Draw(mask_img).polygon(poly, fill=255)
        tex = Image.new("RGB", img.size, rgb(colour))
        td = ImageDraw.Draw(tex)
        step = max(3, int(f.n * rng.uniform(0.05, 0.09)))
        for k in range(-f.n, 2 * f.n, step):
            if pattern == 0:
                td.line([(k, 0), (k + f.n, f.n)], fill=accent, width=max(1, step // 3))
            elif pattern == 1:
                for j in range(0, f.n, step):
                    td.ellipse([k, j, k + step // 3, j + step // 3], fill=accent)
            else:
                td.line([(k, 0), (k, f.n)], fill=accent, width=max(1, step // 4))
                td.line([(0, k), (f.n, k)], fill=accent, width=max(1, step // 4))
        img.paste(tex, (0, 0), mask_img)
    else:  # respirators: centre seam (n95) or horizontal fold (kn95)
        if kind == "n95":
            d.line([f.p(shift, top - 0.05), f.p(shift, low)], fill=rgb(colour * 0.8), width=w)
        else:
            d.line([f.p(-0.9 * wide + shift, 0.45), f.p(0.9 * wide + shift, 0.45)], fill=rgb(colour * 0.8), width=w)
    return kind
