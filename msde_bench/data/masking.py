"""Synthetic face masks on real face images.

With the `landmarks` extra (dlib-bin and face-recognition-models, which ship dlib's 68-point
predictor inside the package: nothing is downloaded) the mask follows the face the way MaskTheFace
does: its sides follow the jaw line (points 1-15), its top sits on the nose bridge, its bottom on
the chin, and it is tilted with the head (the eye line's roll). On aligned crops the predictor
runs on the whole image, without a detector. When the landmarks look implausible, or without the
extra, the template masker is used and the count is reported.

The template masker places the embedded set's procedural masks (surgical with pleats, cloth with
stripes/dots/checks or plain, N95, KN95; seeded colour, height on the nose and fit) from canonical
proportions of an aligned face crop (RAF-DB's aligned 100 x 100, FER-2013's 48 x 48): eyes at about
39 % of the height, mouth at 73 %, chin at 97 %, face half-width 40 %. The mask is drawn at twice the
resolution and shaded to the face's brightness; pixels outside the mask are the original's.
"""

from __future__ import annotations

import importlib.util
import math
import os
import zlib

import numpy as np
from PIL import Image

from msde_bench.data.face_masks import MASK_KINDS, FaceFrame, draw_mask
from msde_bench.errors import MsdeError

#: canonical aligned-face geometry, in the synthetic faces' coordinates (see face_masks.FaceFrame)
ALIGNED = dict(face_w=0.40, face_h=0.49, cx=0.5, cy=0.48)
STYLES = ("random", *MASK_KINDS)
#: --landmarks: dlib placement when the landmarks extra is installed (auto), required (on), or never (off)
LANDMARK_MODES = ("auto", "on", "off")


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
        face = FaceFrame(2 * w, geo, cx=ALIGNED["cx"] + jitter[1], cy=ALIGNED["cy"] + jitter[2])
        kind = self._draw(canvas, face, rng)
        return _shade_and_merge(img, big, canvas), dict(mask=kind, placement=TemplateMasker.name)

    def _draw(self, canvas: Image.Image, face: FaceFrame, rng: np.random.Generator) -> str:
        """Draws the mask on the doubled-resolution canvas; returns its kind. `face` is laid out on
        a square of the canvas's width; a non-square crop scales its vertical axis to the height."""
        w, h = canvas.size
        if h != w:
            face.cy, face.b = face.cy * h / w, face.b * h / w
        return draw_mask(canvas, face, rng, None if self.style == "random" else self.style)


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


def predictor_path() -> str | None:
    """dlib's 68-point model shipped in face-recognition-models (found without importing the
    package, whose __init__ needs pkg_resources), or None when the extra is not installed."""
    if importlib.util.find_spec("dlib") is None:
        return None
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "shape_predictor_68_face_landmarks.dat")
    return path if os.path.isfile(path) else None


class LandmarkMasker(TemplateMasker):
    """Places the mask from dlib's 68 facial landmarks; falls back to the template when they look
    implausible."""

    name = "landmarks"

    def __init__(self, seed: int = 0, style: str = "random", path: str | None = None):
        super().__init__(seed, style)
        import dlib

        self._dlib = dlib
        self.predictor = dlib.shape_predictor(path or predictor_path())

    def landmarks(self, arr: np.ndarray) -> np.ndarray | None:
        """68 x 2 points of an aligned crop (the whole image is the face box), or None if implausible."""
        h, w = arr.shape[:2]
        shape = self.predictor(np.ascontiguousarray(arr), self._dlib.rectangle(0, 0, w - 1, h - 1))
        pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float64)
        eyes_y = pts[36:48, 1].mean()
        jaw = np.linalg.norm(pts[15] - pts[1])
        plausible = (0.3 * w < jaw < 1.3 * w and pts[8, 1] > pts[51, 1] > pts[30, 1] > eyes_y
                     and pts[45, 0] > pts[36, 0])
        return pts if plausible else None

    def __call__(self, img: Image.Image, key: str) -> tuple[Image.Image, dict]:
        img = img.convert("RGB")
        pts = self.landmarks(np.asarray(img))
        if pts is None:
            return super().__call__(img, key)
        rng = self.rng(key)
        w, h = img.size
        left, right = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
        roll = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))
        centre = np.array([w / 2, h / 2])
        # work in the frame where the eye line is horizontal; PIL rotates counter-clockwise
        t = math.radians(roll)
        rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
        p = (pts - centre) @ rot.T + centre
        big = img.resize((2 * w, 2 * h), Image.BICUBIC)
        upright = big.rotate(roll, resample=Image.BICUBIC, center=(w, h))
        # face geometry: lower nose bridge (point 30) -> v = -0.03, chin (point 9) -> v = 1, jaw (points 2, 16)
        # -> u = +-1; the mask's top then reaches about point 29, below the inner eye corners
        chin_y, bridge_y = p[8, 1], p[29, 1]
        b = (chin_y - bridge_y) / 1.03
        geo = dict(face_w=(np.linalg.norm(p[15] - p[1]) / 2) / w, face_h=b / h)
        face = FaceFrame(2 * w, geo, cx=(p[1, 0] + p[15, 0]) / 2 / w, cy=(chin_y - b) / h)
        canvas = upright.copy()
        kind = self._draw(canvas, face, rng)
        back = canvas.rotate(-roll, resample=Image.BICUBIC, center=(w, h))
        ref = upright.rotate(-roll, resample=Image.BICUBIC, center=(w, h))
        return _shade_and_merge(img, ref, back), dict(mask=kind, placement=self.name, roll=round(roll, 2))


def make_masker(seed: int = 0, style: str = "random", landmarks: str = "auto"):
    """`auto`: landmark placement when the extra is installed, template otherwise; `on`: landmarks or
    a clear error; `off`: template."""
    if landmarks not in LANDMARK_MODES:
        raise MsdeError(f"--landmarks {landmarks}: choose auto, on or off")
    path = predictor_path() if landmarks != "off" else None
    if path is None:
        if landmarks == "on":
            raise MsdeError("--landmarks on: the landmarks extra is not installed (pip install 'msde-bench[landmarks]')")
        return TemplateMasker(seed, style)
    return LandmarkMasker(seed, style, path)
