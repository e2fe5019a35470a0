"""Synthetic face masks on real face images.

The mask is fitted to the face's 68 landmarks (dlib's layout; face_masks.draw_fitted_mask): its
sides follow the jaw line (points 1-15) a little outside the skin, its bottom passes under the chin,
and its top edge rises from the cheeks, below the eyes, to a peak on the nose bridge, as a mask's
nose wire does; it takes its light from the face it covers (a brightness plane fitted to the skin
it leaves visible, never to what it hides), turns darker towards the sides, and carries the
photograph's own noise level. Styles: surgical (pleats), cloth (stripes, dots, checks or plain),
N95 (a cup with a rim), KN95 (a centre seam), seeded per image (colour, how high it sits on the
nose, how loose it is, how far below the chin it reaches).

With the `landmarks` extra (dlib-bin and face-recognition-models, which ship dlib's 68-point
predictor inside the package: nothing is downloaded) the landmarks are the face's own; on aligned
crops the predictor runs on the whole image, without a detector. When they look implausible, or
without the extra, the template masker places the mask from the landmarks of an average aligned
crop (face_masks.CANONICAL_68), jittered per image, and the count of each placement is reported.
"""

from __future__ import annotations

import importlib.util
import math
import os
import zlib

import numpy as np
from PIL import Image

from msde_bench.data.face_masks import CANONICAL_68, MASK_KINDS, draw_fitted_mask
from msde_bench.errors import MsdeError

STYLES = ("random", *MASK_KINDS)
#: --landmarks: dlib placement when the landmarks extra is installed (auto), required (on), or never (off)
LANDMARK_MODES = ("auto", "on", "off")


class TemplateMasker:
    """Masks an aligned face crop placed from canonical landmarks (face_masks.CANONICAL_68, the
    average aligned crop), jittered per image; no landmark model needed."""

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
        jitter = rng.normal(0, 0.01, 3)
        pts = CANONICAL_68 - 0.5
        pts = np.stack([(0.5 + jitter[1] + pts[:, 0] * (1 + jitter[0])) * w, (0.5 + jitter[2] + pts[:, 1]) * h], axis=1)
        return self._draw(img, pts, rng), dict(mask=self._kind, placement=TemplateMasker.name)

    def _draw(self, img: Image.Image, pts: np.ndarray, rng: np.random.Generator) -> Image.Image:
        """The mask fitted to the landmarks `pts` (68 x 2, pixels); its kind is left in `_kind`."""
        out, self._kind = draw_fitted_mask(np.asarray(img), pts, rng, None if self.style == "random" else self.style)
        return Image.fromarray(out, "RGB")


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
        left, right = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
        roll = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))
        return self._draw(img, pts, self.rng(key)), dict(mask=self._kind, placement=self.name, roll=round(roll, 2))


def effective_placement(landmarks: str) -> str:
    """How `make_masker(landmarks=...)` places masks here: "landmarks" or "template" (a conversion
    cached for one must not be reused for the other)."""
    if landmarks not in LANDMARK_MODES:
        raise MsdeError(f"--landmarks {landmarks}: choose auto, on or off")
    return "landmarks" if landmarks != "off" and predictor_path() is not None else "template"


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
