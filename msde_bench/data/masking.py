"""Synthetic face masks on real face images.

The template masker places the embedded set's procedural masks (surgical with pleats, cloth with
stripes/dots/checks or plain, N95, KN95; seeded colour, height on the nose and fit) from canonical
proportions of an aligned face crop (RAF-DB's aligned 100 x 100, FER-2013's 48 x 48): eyes at about
39 % of the height, mouth at 73 %, chin at 97 %, face half-width 40 %. The mask is drawn at twice the
resolution and shaded to the face's brightness; pixels outside the mask are the original's.
"""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image

from msde_bench.data.synth import MASK_KINDS, _Face, draw_mask
from msde_bench.errors import MsdeError

#: canonical aligned-face geometry, in the synthetic faces' coordinates (see synth._Face)
ALIGNED = dict(face_w=0.40, face_h=0.49, cx=0.5, cy=0.48)
STYLES = ("random", *MASK_KINDS)


class TemplateMasker:
    """Masks an aligned face crop from canonical proportions; no landmarks needed."""

    name = "template"

    def __init__(self, seed: int = 0, style: str = "random"):
        if style not in STYLES:
            raise MsdeError(f"--mask-style {style}: choose one of {', '.join(STYLES)}")
        self.seed = seed
        self.style = style

    def rng(self, key: str) -> np.random.Generator:
        """Each image's stream depends only on (seed, key): order-independent and resumable."""
        return np.random.default_rng([self.seed, zlib.crc32(key.encode())])

    def __call__(self, img: Image.Image, key: str) -> tuple[Image.Image, dict]:
        img = img.convert("RGB")
        rng = self.rng(key)
        w, h = img.size
        big = img.resize((2 * w, 2 * h), Image.BICUBIC)
        canvas = big.copy()
        jitter = rng.normal(0, 0.01, 3)
        geo = dict(face_w=ALIGNED["face_w"] * (1 + jitter[0]), face_h=ALIGNED["face_h"])
        face = _Face(2 * w, geo, cx=ALIGNED["cx"] + jitter[1], cy=ALIGNED["cy"] + jitter[2])
        if h != w:  # non-square crops: scale the vertical axis to the height
            face.cy, face.b = face.cy * h / w, face.b * h / w
        kind = draw_mask(canvas, face, rng, None if self.style == "random" else self.style)
        return _shade_and_merge(img, big, canvas), dict(mask=kind, placement=self.name)


def _shade_and_merge(img: Image.Image, big: Image.Image, canvas: Image.Image) -> Image.Image:
    """Keeps the original pixels outside the drawn mask; inside, the mask (downsampled) is shaded by
    the brightness of the face around it."""
    w, h = img.size
    a, b = np.asarray(big, dtype=np.int16), np.asarray(canvas, dtype=np.int16)
    region = (np.abs(a - b).sum(axis=2) > 0).astype(np.uint8) * 255
    alpha = np.asarray(Image.fromarray(region).resize((w, h), Image.BILINEAR), dtype=np.float32)[..., None] / 255
    drawn = np.asarray(canvas.resize((w, h), Image.LANCZOS), dtype=np.float32)
    orig = np.asarray(img, dtype=np.float32)
    around = orig[alpha[..., 0] < 0.05]
    luma = float(around.mean()) if around.size else 128.0
    shade = float(np.clip(luma / 150.0, 0.6, 1.15))
    out = orig * (1 - alpha) + np.clip(drawn * shade, 0, 255) * alpha
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def make_masker(seed: int = 0, style: str = "random", landmarks: str = "auto"):
    """The masker to use: template placement (landmark placement comes with the `landmarks` extra)."""
    if landmarks not in ("auto", "off"):
        raise MsdeError(f"--landmarks {landmarks}: choose auto or off")
    return TemplateMasker(seed, style)
