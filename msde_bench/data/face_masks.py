"""Drawing face masks on a face described by a FaceFrame: the synthetic set (synth.py) and the
public-dataset conversion (masking.py) share this one drawing."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


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


# --------------------------------------------------------------------------------------------
# masks fitted to a face's landmarks (data convert): what real masks look like on a face

#: dlib's 68-point layout of an average aligned face crop, as fractions of the crop's width and
#: height (x, y): the mean of dlib's landmarks on 615 aligned 48 x 48 crops (every third CK+ crop,
#: every 100th FER-2013 training face), made left-right symmetric. Derived numbers only; the template
#: masker places masks from it where no landmarks are found.
CANONICAL_68 = np.array([
    (0.086, 0.402), (0.090, 0.507), (0.103, 0.611), (0.124, 0.715), (0.160, 0.811), (0.219, 0.895),
    (0.298, 0.958), (0.392, 0.999), (0.500, 1.007), (0.608, 0.999), (0.702, 0.958), (0.781, 0.895),
    (0.840, 0.811), (0.876, 0.715), (0.897, 0.611), (0.910, 0.507), (0.914, 0.402), (0.162, 0.303),
    (0.214, 0.256), (0.286, 0.240), (0.361, 0.249), (0.433, 0.278), (0.567, 0.278), (0.639, 0.249),
    (0.714, 0.240), (0.786, 0.256), (0.838, 0.303), (0.500, 0.362), (0.500, 0.430), (0.500, 0.497),
    (0.500, 0.566), (0.418, 0.622), (0.457, 0.635), (0.500, 0.646), (0.543, 0.635), (0.582, 0.622),
    (0.243, 0.382), (0.288, 0.354), (0.344, 0.354), (0.392, 0.387), (0.341, 0.400), (0.285, 0.401),
    (0.608, 0.387), (0.656, 0.354), (0.712, 0.354), (0.757, 0.382), (0.715, 0.401), (0.659, 0.400),
    (0.341, 0.771), (0.396, 0.733), (0.457, 0.714), (0.500, 0.726), (0.543, 0.714), (0.604, 0.733),
    (0.659, 0.771), (0.606, 0.824), (0.547, 0.848), (0.500, 0.852), (0.453, 0.848), (0.394, 0.824),
    (0.364, 0.771), (0.456, 0.754), (0.500, 0.757), (0.544, 0.754), (0.636, 0.771), (0.544, 0.791),
    (0.500, 0.797), (0.456, 0.791),
])


def frame_landmarks(f: FaceFrame) -> np.ndarray:
    """The canonical 68 points laid on a FaceFrame (its eyes at v = -0.18, its chin at v = 1, its
    cheeks at u = +-1), in the frame's canvas pixels: landmarks for a drawn face."""
    u = (CANONICAL_68[:, 0] - 0.5) / 0.414
    v = -0.18 + (CANONICAL_68[:, 1] - 0.384) / 0.623 * 1.18
    return np.array([f.p(a, b) for a, b in zip(u, v)])


def _spline(points: np.ndarray, n: int = 8) -> np.ndarray:
    """A Catmull-Rom curve through `points` (k x 2), `n` samples per segment, ends included."""
    p = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3))
    out.append(p[-2][None])
    return np.vstack(out)


def _resample(curve: np.ndarray, n: int) -> np.ndarray:
    """`n` points evenly spaced along a polyline (by arc length)."""
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    t = np.linspace(0, s[-1], n)
    return np.stack([np.interp(t, s, curve[:, 0]), np.interp(t, s, curve[:, 1])], axis=1)


def fitted_outline(pts: np.ndarray, rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The mask's top edge (left to right) and its lower contour (left, round the chin, to right),
    each 64 points, for a face with dlib's 68 landmarks `pts` (pixels). The sides follow the jaw
    line (points 1-15) a little outside the skin, the bottom passes under the chin, and the top
    rises from the cheeks, below the eyes (how far below varies), to a peak on the nose bridge (points
    27-30) always above them, the shape of a mask's nose wire."""
    ex = pts[45] - pts[36]
    ex = ex / (np.linalg.norm(ex) + 1e-9)
    ey = np.array([-ex[1], ex[0]])  # down the face
    width = np.linalg.norm(pts[16] - pts[0])
    nose = pts[30]
    loose = rng.uniform(1.03, 1.09) if kind in ("surgical", "cloth") else rng.uniform(1.02, 1.06)
    chin = rng.uniform(0.03, 0.08)
    jaw = nose + (pts[1:16] - nose) * loose
    drop = np.clip(((pts[1:16] - nose) @ ey) / (np.linalg.norm(pts[8] - nose) + 1e-9), 0, 1) ** 2
    jaw = jaw + np.outer(drop * chin * width, ey)
    eye_y = (pts[[40, 41, 46, 47]] @ ey).mean()
    nose_y = pts[30] @ ey
    drop_to_nose = nose_y - eye_y
    cheek_y = eye_y + rng.uniform(0.5, 0.75) * drop_to_nose
    cheeks = []
    for eye in ((36, 39), (42, 45)):
        c = pts[list(eye)].mean(axis=0)
        cheeks.append(c + ey * (cheek_y - c @ ey))
    # the peak: on the nose line (points 27-30), a rise above the cheeks; respirators sit higher
    rise = rng.uniform(0.25, 0.45) if kind in ("surgical", "cloth") else rng.uniform(0.3, 0.5)
    line = pts[27:31]
    depth = line @ ey
    bridge_y = cheek_y - rise * drop_to_nose
    bridge = np.array([np.interp(bridge_y, depth, line[:, k]) for k in (0, 1)])
    bridge = bridge + ey * (bridge_y - bridge @ ey)
    top = _spline(np.array([jaw[0], cheeks[0], bridge, cheeks[1], jaw[-1]]), 16)
    bottom = _spline(jaw, 8)
    return _resample(top, 64), _resample(bottom, 64)


def _pleat(top: np.ndarray, bottom: np.ndarray, f: float, width: float) -> np.ndarray:
    """A surgical mask's pleat: across the mask from side to side (where its lower contour crosses the
    level a fraction `f` of the way from the nose-bridge peak down to the chin), sagging a little."""
    ex = top[-1] - top[0]
    ex = ex / (np.linalg.norm(ex) + 1e-9)
    ey = np.array([-ex[1], ex[0]])
    level = top[32] @ ey * (1 - f) + bottom[32] @ ey * f

    def crossing(side: np.ndarray) -> np.ndarray:  # the first point of `side` (from a corner down) at `level`
        depth = side @ ey
        i = int(np.argmax(depth >= level)) if (depth >= level).any() else len(side) - 1
        if i == 0:
            return side[0]
        t = (level - depth[i - 1]) / max(depth[i] - depth[i - 1], 1e-9)
        return side[i - 1] + (side[i] - side[i - 1]) * t

    left, right = crossing(bottom[:33]), crossing(bottom[:31:-1])
    middle = (left + right) / 2 + ey * 0.03 * width
    return _spline(np.array([left, middle, right]), 12)


def _polygon_alpha(size: tuple[int, int], k: int, polys, lines=()) -> np.ndarray:
    """Coverage (0-1) of polygons and lines drawn at k times the resolution, area-averaged down."""
    w, h = size
    big = Image.new("L", (w * k, h * k), 0)
    d = ImageDraw.Draw(big)
    for poly in polys:
        d.polygon([tuple(p) for p in poly * k], fill=255)
    for line, width in lines:
        d.line([tuple(p) for p in line * k], fill=255, width=max(1, round(width * k)))
    return np.asarray(big.resize((w, h), Image.BOX), dtype=np.float32) / 255


def draw_fitted_mask(face: np.ndarray, pts: np.ndarray, rng: np.random.Generator,
                     kind: str | None = None) -> tuple[np.ndarray, str]:
    """The face (H x W x 3 uint8) with a mask fitted to its 68 landmarks `pts` (pixels): the outline
    of `fitted_outline`, ear loops to the ears, the style's structure (surgical pleats that follow
    the outline, a cloth pattern, a respirator's seam), and shading taken from the face it covers:
    the face's own light (its blurred brightness under the mask) and overall brightness, darker
    towards the sides where a mask turns away, and the photograph's own noise level. Edges are
    anti-aliased; pixels outside the mask and its loops are the original's. Returns (image, kind).
    `kind` forces the style (the random draws are made either way, so the stream stays the same)."""
    h, w = face.shape[:2]
    drawn = MASK_KINDS[int(rng.integers(len(MASK_KINDS)))]
    kind = kind or drawn
    if kind == "surgical":
        colour = np.array(SURGICAL_COLOURS[int(rng.integers(len(SURGICAL_COLOURS)))], dtype=np.float32)
    elif kind == "cloth":
        colour = rng.uniform(20, 235, 3).astype(np.float32)
    else:
        colour = (np.array([240.0, 240, 236]) * rng.uniform(0.85, 1.0)).astype(np.float32)
    top, bottom = fitted_outline(pts, rng, kind)
    poly = np.vstack([top, bottom[::-1]])
    width = float(np.linalg.norm(pts[16] - pts[0]))
    k = 4 if min(w, h) < 128 else 2
    line = max(0.6, width / 70)
    # the style's structure: a darker (or accent) pattern inside the mask, as a second coverage map
    rows = [top * (1 - f) + bottom * f for f in np.linspace(0, 1, 7)[1:-1]]
    accent = colour * 0.72
    structure = []
    if kind == "surgical":  # two or three pleats across the mask, each a dark fold line with a slight sag
        n = int(rng.integers(2, 4))
        structure = [(_pleat(top, bottom, f, width), line) for f in np.linspace(0.3, 0.75, n)]
    elif kind == "cloth":
        pattern = int(rng.integers(4))  # stripes, dots, checks, plain
        accent = rng.uniform(0, 255, 3).astype(np.float32)
        if pattern == 0:
            structure = [(r, line * 1.5) for r in rows]
        elif pattern == 1:
            structure = [(np.array([r[j], r[j] + 0.4]), line * 2) for r in rows for j in range(4, 60, 7)]
        elif pattern == 2:
            cols = [np.array([top[j], bottom[j]]) for j in range(6, 60, 8)]
            structure = [(r, line) for r in rows] + [(c, line) for c in cols]
    elif kind == "n95":  # a cup: a rim one line inside the edge
        structure = [(top * 0.94 + bottom * 0.06, line)]
    else:  # kn95: the vertical centre seam of a fold-flat mask
        structure = [(np.array([top[32], bottom[32]]), line)]
    ear_l, ear_r = pts[0] + (pts[0] - pts[30]) * 0.08, pts[16] + (pts[16] - pts[30]) * 0.08
    loops = [(np.array([top[0], ear_l]), line), (np.array([bottom[10], ear_l]), line),
             (np.array([top[-1], ear_r]), line), (np.array([bottom[-11], ear_r]), line)]
    alpha = _polygon_alpha((w, h), k, [poly])
    loop_alpha = np.clip(_polygon_alpha((w, h), k, [], loops) - alpha, 0, 1)
    pattern_alpha = _polygon_alpha((w, h), k, [], structure) * alpha if structure else np.zeros_like(alpha)
    # the face's light, from the skin the mask leaves visible (never from what it covers, which would
    # show the mouth through the mask): a plane fitted to the brightness of the rest of the face
    f32 = face.astype(np.float32)
    luma = f32 @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    hull = _polygon_alpha((w, h), 1, [np.vstack([pts[0:17], pts[26:16:-1]])])
    covered = Image.fromarray(((alpha + loop_alpha) > 0.002).astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))
    skin = (hull > 0.5) & (np.asarray(covered) == 0)  # two pixels clear of the mask: nothing it hides counts
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    level = float(luma.mean())
    plane = np.full((h, w), level, dtype=np.float32)
    if skin.sum() >= 12:
        a = np.stack([np.ones(int(skin.sum())), xx[skin] / w, yy[skin] / h], axis=1)
        coef, *_ = np.linalg.lstsq(a, luma[skin], rcond=None)
        # the skin it sees is mostly beside and above the mask: its slope down the face is extrapolated
        # the furthest, so it counts half
        plane = coef[0] + coef[1] * xx / w + 0.5 * coef[2] * yy / h
        level = float(np.median(luma[skin]))
    inside = alpha > 0.5
    under = float(plane[inside].mean()) if inside.any() else level
    local = 1 + 0.2 * np.tanh((plane / max(under, 1.0) - 1) / 0.3)  # within 0.8-1.2, smoothly: no clipped edge
    overall = float(np.clip(level / 150.0, 0.45, 1.15))
    fine = np.asarray(Image.fromarray(np.clip(luma, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8)),
                      dtype=np.float32)
    ex = (pts[45] - pts[36]) / (np.linalg.norm(pts[45] - pts[36]) + 1e-9)
    centre = (top[32] + bottom[32]) / 2
    across = ((xx - centre[0]) * ex[0] + (yy - centre[1]) * ex[1]) / (width / 2)
    turn = np.clip(1 - (0.35 if kind == "n95" else 0.25) * across ** 2, 0.55, 1)
    residual = np.abs(luma - fine)[skin] if skin.sum() >= 12 else np.abs(luma - fine).ravel()
    noise_sd = float(np.clip(1.4826 * np.median(residual), 0.5, 4.0))  # robust: edges do not count
    noise = rng.normal(0, noise_sd, (h, w)).astype(np.float32)
    shade = (overall * local * turn)[..., None]
    base = colour * (1 - pattern_alpha[..., None]) + accent * pattern_alpha[..., None]
    mask_rgb = base * shade + noise[..., None]
    loop_rgb = colour * 0.8 * shade
    out = f32 * (1 - alpha - loop_alpha)[..., None] + mask_rgb * alpha[..., None] + loop_rgb * loop_alpha[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), kind
