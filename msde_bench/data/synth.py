"""The embedded synthetic paired dataset, written in the MSD-E layout.

Every face is drawn procedurally from a seeded generator, so the same seed gives byte-identical
files on every machine. Subjects differ in face shape, skin tone, hair, eye spacing, brow and
eye baselines and background; the seven expressions are drawn from facial action cues (brows,
eyelids, mouth, nose wrinkle, cheeks) with per-image intensity, pose and lighting jitter. The
masked copy of each image is the same photograph with a mask drawn over nose, mouth and cheeks
(surgical, cloth or N95/KN95; colour, texture and fit vary), so the mouth cues are gone and a
masked image can only be read from the eyes and brows, as in the real problem.

Each image's random stream depends only on (seed, subject, label), never on the order in which
images are drawn, so a subset or a parallel generation gives the same files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, ImageDraw, ImageFilter

from msde_bench import CLASS_NAMES
from msde_bench.atomic import check_writable, current_umask
from msde_bench.data.face_masks import FaceFrame, draw_mask, frame_landmarks, rgb
from msde_bench.errors import MsdeError
from msde_bench.home import cache_home

SYNTH_VERSION = 1
SUPERSAMPLE = 2

SURPRISE, FEAR, DISGUST, HAPPINESS, SADNESS, ANGER, NEUTRAL = range(7)


@dataclass(frozen=True)
class SynthConfig:
    """What a synthetic set looks like; `variant` names a preset."""

    subjects: int
    image_size: int
    seed: int = 0
    #: number of (subject, expression) pairs dropped at random, to mirror MSD-E's 980 of 994.
    drop_pairs: int = 0
    variant: str = "custom"

    def dirname(self) -> str:
        return f"synth-{self.variant}-s{self.subjects}-px{self.image_size}-seed{self.seed}-v{SYNTH_VERSION}"


VARIANTS = {
    # mirrors MSD-E: 142 subjects, 980 pairs (1,960 images)
    "full": dict(subjects=142, image_size=112, drop_pairs=14),
    # the CPU preset of the quick recipe
    "small": dict(subjects=120, image_size=64, drop_pairs=0),
    # for tests
    "tiny": dict(subjects=8, image_size=32, drop_pairs=0),
}


def variant_config(variant: str, seed: int = 0) -> SynthConfig:
    if variant not in VARIANTS:
        raise MsdeError(f"unknown synthetic variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return SynthConfig(seed=seed, variant=variant, **VARIANTS[variant])


# --------------------------------------------------------------------------------------------
# subjects and expressions

SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 142, 102], [161, 110, 75], [120, 80, 55],
     [92, 60, 42], [234, 190, 150]],
    dtype=np.float64,
)
HAIR_COLOURS = np.array(
    [[20, 15, 12], [55, 35, 20], [95, 60, 30], [150, 110, 60], [200, 170, 110], [120, 40, 20], [80, 80, 80]],
    dtype=np.float64,
)


def subject_params(seed: int, subject: int) -> dict:
    rng = np.random.default_rng([seed, 7919, subject])
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.06) + rng.normal(0, 6, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 10, 3)
    # backgrounds: mostly muted walls and curtains, a tint of colour
    bg1 = rng.uniform(50, 220) + rng.normal(0, 25, 3)
    bg2 = bg1 * rng.uniform(0.7, 1.2) + rng.normal(0, 15, 3)
    return dict(
        face_w=rng.uniform(0.28, 0.36),  # half-width, fraction of the canvas
        face_h=rng.uniform(0.36, 0.44),  # half-height
        jaw=rng.uniform(0.75, 1.0),  # how wide the jaw is relative to the cheeks
        skin=skin,
        hair=hair,
        hair_style=int(rng.integers(3)),
        eye_sep=rng.uniform(0.33, 0.46),
        eye_size=rng.uniform(0.85, 1.2),
        eye_open=rng.uniform(0.8, 1.2),  # resting openness: confounds eye cues across subjects
        brow_h=rng.uniform(-0.04, 0.04),  # resting brow height
        brow_w=rng.uniform(0.9, 1.3),
        lip=skin * np.array([0.78, 0.55, 0.55]) + rng.normal(0, 8, 3),
        iris=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.6, 1.2),
        bg1=bg1,
        bg2=bg2,
        mouth_y=rng.uniform(0.48, 0.56),
    )


# brow (inner dy, outer dy, inward shift) in face half-heights/half-widths; negative dy raises.
# eye openness multiplier; lower-lid raise; mouth spec; nose wrinkle; cheek raise. All scaled by
# the image's intensity t.
def expression_cues(label: int, t: float) -> dict:
    c = dict(brow_in=0.0, brow_out=0.0, brow_shift=0.0, eye=1.0, lid_low=0.0, lid_up=0.0,
             mouth="line", mouth_open=0.0, mouth_curve=0.0, mouth_w=1.0, wrinkle=0.0, cheek=0.0)
    if label == SURPRISE:
        c.update(brow_in=-0.15 * t, brow_out=-0.13 * t, eye=1 + 0.6 * t, mouth="open", mouth_open=0.2 * t + 0.06,
                 mouth_w=0.6)
    elif label == FEAR:
        c.update(brow_in=-0.16 * t, brow_out=-0.03 * t, brow_shift=0.06 * t, eye=1 + 0.5 * t, mouth="open",
                 mouth_open=0.06 * t + 0.03, mouth_w=1.25, mouth_curve=-0.06 * t)
    elif label == DISGUST:
        c.update(brow_in=0.09 * t, brow_out=0.03 * t, brow_shift=0.04 * t, eye=1 - 0.35 * t, lid_low=0.3 * t,
                 mouth="snarl", mouth_curve=-0.08 * t, mouth_open=0.04 * t, wrinkle=t)
    elif label == HAPPINESS:
        c.update(eye=1 - 0.3 * t, lid_low=0.5 * t, mouth="smile", mouth_curve=0.2 * t + 0.05,
                 mouth_open=0.1 * t if t > 0.5 else 0.0, mouth_w=1.15 + 0.15 * t, cheek=t)
    elif label == SADNESS:
        c.update(brow_in=-0.1 * t, brow_out=0.06 * t, eye=1 - 0.25 * t, lid_up=0.35 * t, mouth="frown",
                 mouth_curve=-0.16 * t - 0.04, mouth_w=0.9)
    elif label == ANGER:
        c.update(brow_in=0.15 * t, brow_out=-0.03 * t, brow_shift=0.07 * t, eye=1 - 0.25 * t, lid_up=0.4 * t,
                 mouth="tight", mouth_w=0.75, mouth_curve=-0.03 * t)
    return c


# --------------------------------------------------------------------------------------------
# drawing


def _curve(f: FaceFrame, u0: float, u1: float, v: float, bend: float, n: int = 12) -> list[tuple[float, float]]:
    """A parabola from u0 to u1 at height v whose middle is displaced by `bend` (positive = down)."""
    pts = []
    for i in range(n + 1):
        s = i / n
        u = u0 + (u1 - u0) * s
        pts.append(f.p(u, v + bend * 4 * s * (1 - s)))
    return pts


def _draw_face(d: ImageDraw.ImageDraw, f: FaceFrame, sp: dict, cues: dict, rng: np.random.Generator) -> None:
    w = max(1, round(f.n / 45))  # line width: about 1 px of the final image
    skin = sp["skin"]
    hair = rgb(sp["hair"])
    dark = rgb(skin * 0.35)
    # hair behind the head
    if sp["hair_style"] == 1:  # long
        d.ellipse(f.box(0, 0.05, 1.25, 1.15), fill=hair)
    d.ellipse(f.box(0, -0.2, 1.1, 0.95), fill=hair)
    # ears
    for s in (-1, 1):
        d.ellipse(f.box(s * 1.0, -0.05, 0.14, 0.2), fill=rgb(skin * 0.92))
    # face: cheeks ellipse + jaw polygon
    d.ellipse(f.box(0, -0.1, 1.0, 0.9), fill=rgb(skin))
    jaw = sp["jaw"]
    d.polygon([f.p(-1.0, -0.1), f.p(1.0, -0.1), f.p(jaw, 0.55), f.p(0.35, 0.97), f.p(-0.35, 0.97),
               f.p(-jaw, 0.55)], fill=rgb(skin))
    d.ellipse(f.box(0, 0.72, 0.5, 0.28), fill=rgb(skin))
    # fringe
    if sp["hair_style"] != 2:
        d.chord(f.box(0, -0.62, 0.95, 0.35), 180, 360, fill=hair)
    # cheeks (raised and flushed in happiness)
    if cues["cheek"] > 0:
        ch = cues["cheek"]
        for s in (-1, 1):
            d.ellipse(f.box(s * 0.55, 0.18 - 0.08 * ch, 0.2, 0.12), fill=rgb(skin * (1 - 0.08 * ch) +
                                                                             np.array([30, 0, 0]) * ch))
    # eyes
    es, sz = sp["eye_sep"], sp["eye_size"]
    ev = -0.18
    open_ = 0.085 * sz * sp["eye_open"] * cues["eye"]
    for s in (-1, 1):
        ex = s * es
        d.ellipse(f.box(ex, ev, 0.19 * sz, max(open_, 0.012)), fill=(245, 245, 240), outline=dark, width=w)
        iris_r = min(0.07 * sz, max(open_, 0.012))
        d.ellipse(f.box(ex, ev, 0.07 * sz * 0.9, iris_r), fill=rgb(sp["iris"]))
        d.ellipse(f.box(ex, ev, 0.03 * sz, min(0.035 * sz, max(open_, 0.01))), fill=(10, 10, 10))
        # upper lid lowered (anger, sadness): skin over the top of the eye
        if cues["lid_up"] > 0:
            lid = open_ * (1.0 - 1.6 * cues["lid_up"])
            x0, y0, x1, y1 = f.box(ex, ev, 0.21 * sz, open_ + 0.01)
            d.rectangle([x0, y0, x1, f.p(0, ev - max(lid, -open_))[1]], fill=rgb(skin))
            d.line([(x0, f.p(0, ev - lid)[1]), (x1, f.p(0, ev - lid)[1])], fill=dark, width=w)
        # lower lid raised (happiness, disgust): skin over the bottom, plus crow's feet
        if cues["lid_low"] > 0:
            lid = open_ * (1.0 - 1.4 * cues["lid_low"])
            x0, y0, x1, y1 = f.box(ex, ev, 0.21 * sz, open_ + 0.01)
            d.chord([x0, f.p(0, ev + lid)[1], x1, y1 + (y1 - y0)], 180, 360, fill=rgb(skin), outline=dark, width=w)
            if cues["lid_low"] > 0.2:
                ox = s * (es + 0.2 * sz)
                for k in (-1, 0, 1):
                    d.line([f.p(ox, ev + 0.02 * k), f.p(ox + s * 0.08, ev + 0.05 * k)], fill=rgb(skin * 0.7), width=w)
    # brows
    bw = sp["brow_w"]
    for s in (-1, 1):
        inner = s * (es - 0.16 - cues["brow_shift"])
        outer = s * (es + 0.2)
        vi = -0.36 + sp["brow_h"] + cues["brow_in"]
        vo = -0.36 + sp["brow_h"] + cues["brow_out"]
        d.line([f.p(inner, vi), f.p((inner + outer) / 2, (vi + vo) / 2 - 0.02), f.p(outer, vo)], fill=hair,
               width=max(1, round(w * 1.6 * bw)), joint="curve")
    # vertical frown lines between the brows (anger, disgust)
    if cues["brow_in"] > 0.04:
        for s in (-1, 1):
            d.line([f.p(s * 0.05, -0.33), f.p(s * 0.06, -0.22)], fill=rgb(skin * 0.7), width=w)
    # nose
    d.line([f.p(0.0, -0.12), f.p(0.04, 0.2)], fill=rgb(skin * 0.75), width=w)
    for s in (-1, 1):
        d.ellipse(f.box(s * 0.07, 0.24, 0.05, 0.025), fill=rgb(skin * 0.6))
    if cues["wrinkle"] > 0:
        for k in range(3):
            v = -0.06 + 0.04 * k
            d.line([f.p(-0.12, v), f.p(0.12, v - 0.01)], fill=rgb(skin * (1 - 0.35 * cues["wrinkle"])), width=w)
    # mouth
    mv = sp["mouth_y"]
    mw = 0.36 * cues["mouth_w"]
    lip = rgb(sp["lip"])
    kind = cues["mouth"]
    if kind == "open":
        h = cues["mouth_open"]
        d.ellipse(f.box(0, mv, mw, h + 0.02), fill=lip)
        d.ellipse(f.box(0, mv + 0.005, mw * 0.8, h), fill=(60, 20, 25))
        if cues["mouth_curve"] < 0:
            for s in (-1, 1):
                d.line([f.p(s * mw, mv), f.p(s * (mw + 0.05), mv + 0.06)], fill=lip, width=w)
    elif kind == "smile":
        bend = cues["mouth_curve"]
        upper = _curve(f, -mw, mw, mv - 0.02, bend * 0.5)
        lower = _curve(f, mw, -mw, mv - 0.02, bend + cues["mouth_open"])
        d.polygon(upper + lower, fill=lip)
        if cues["mouth_open"] > 0:
            teeth = _curve(f, -mw * 0.8, mw * 0.8, mv - 0.01, bend * 0.55) + \
                _curve(f, mw * 0.8, -mw * 0.8, mv + 0.0, bend * 0.8)
            d.polygon(teeth, fill=(250, 250, 245))
        d.line(_curve(f, -mw, mw, mv - 0.02, bend * 0.6), fill=rgb(sp["lip"] * 0.6), width=w)
    elif kind == "frown":
        d.line(_curve(f, -mw, mw, mv + 0.03, cues["mouth_curve"]), fill=lip, width=round(w * 1.5))
    elif kind == "snarl":
        up = _curve(f, -mw, mw * 0.2, mv - 0.01, -0.06 - cues["mouth_open"] * 1.5)
        d.line(up + [f.p(mw, mv + 0.02)], fill=lip, width=round(w * 1.5))
        d.line(_curve(f, -mw, mw, mv + 0.03, cues["mouth_curve"]), fill=lip, width=round(w * 1.3))
    elif kind == "tight":
        d.line([f.p(-mw, mv + 0.01), f.p(mw, mv + 0.01)], fill=rgb(sp["lip"] * 0.7), width=max(1, w))
        for s in (-1, 1):
            d.line([f.p(s * mw, mv + 0.01), f.p(s * (mw + 0.03), mv + 0.04)], fill=rgb(skin * 0.65), width=w)
    else:  # neutral line
        d.line(_curve(f, -mw, mw, mv, 0.005), fill=lip, width=round(w * 1.3))


def draw_pair(seed: int, subject: int, label: int, size: int) -> tuple[Image.Image, Image.Image, dict]:
    """Draws one (non-masked, masked) pair and returns it with the image's parameters, among them
    `landmarks`: the face's 68 points (dlib's layout, face_masks.frame_landmarks) in the output
    image's pixels, posed as the face is (they take no random draw: the images are the same)."""
    sp = subject_params(seed, subject)
    rng = np.random.default_rng([seed, subject, label])
    t = float(rng.uniform(0.5, 1.0)) if label != NEUTRAL else 0.0
    cues = expression_cues(label, t)
    # small involuntary deviations of every cue
    for k in ("brow_in", "brow_out"):
        cues[k] += rng.normal(0, 0.012)
    cues["eye"] *= rng.uniform(0.92, 1.08)
    n = size * SUPERSAMPLE
    canvas = Image.new("RGB", (n, n), rgb(sp["bg1"]))
    bd = ImageDraw.Draw(canvas)
    # background: two-tone with a soft blob
    bx = rng.uniform(0, n)
    bd.ellipse([bx - n * 0.6, -n * 0.2, bx + n * 0.6, n * 1.2], fill=rgb(sp["bg2"]))
    canvas = canvas.filter(ImageFilter.GaussianBlur(n * 0.06))
    f = FaceFrame(n, sp)
    _draw_face(ImageDraw.Draw(canvas), f, sp, cues, rng)
    masked = canvas.copy()
    mask_kind = draw_mask(masked, f, rng)
    # pose: rotation, shift, scale (the same for both copies)
    angle = float(rng.uniform(-7, 7))
    dx, dy = (float(v) for v in rng.uniform(-0.04, 0.04, 2) * n)
    scale = float(rng.uniform(0.94, 1.06))
    # lighting: global gain, a linear gradient, sensor noise
    gain = rng.uniform(0.8, 1.15)
    theta = rng.uniform(0, 2 * math.pi)
    grad = rng.uniform(0, 0.3)
    noise = rng.normal(0, 3.0, (size, size, 1))
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1) - 0.5
    light = gain * (1 + grad * (xx * math.cos(theta) + yy * math.sin(theta)))[..., None]
    out = []
    for img in (canvas, masked):
        img = img.transform(img.size, Image.AFFINE, _affine(n, angle, dx, dy, scale), resample=Image.BICUBIC,
                            fillcolor=rgb(sp["bg1"]))
        img = img.resize((size, size), Image.LANCZOS)
        arr = np.asarray(img, dtype=np.float64) * light + noise
        out.append(Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB"))
    inv = np.array(_affine(n, angle, dx, dy, scale)).reshape(2, 3)  # output -> canvas pixels
    pts = (frame_landmarks(f) - inv[:, 2]) @ np.linalg.inv(inv[:, :2]).T / SUPERSAMPLE
    return out[0], out[1], dict(intensity=round(t, 4), mask=mask_kind, angle=round(angle, 3), landmarks=pts)


def _affine(n: int, angle: float, dx: float, dy: float, scale: float) -> tuple[float, ...]:
    """PIL's inverse affine map for rotate/scale about the centre, then shift."""
    c = n / 2
    a = math.radians(angle)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    # output (x, y) -> input: R^-1 ((x, y) - centre - shift) + centre
    return (cos, sin, c - cos * (c + dx) - sin * (c + dy), -sin, cos, c + sin * (c + dx) - cos * (c + dy))


# --------------------------------------------------------------------------------------------
# writing


def pair_list(cfg: SynthConfig) -> list[tuple[int, int]]:
    """The (subject, label) pairs of a set: every subject poses every expression, less `drop_pairs`."""
    pairs = [(s, y) for s in range(cfg.subjects) for y in range(len(CLASS_NAMES))]
    if cfg.drop_pairs:
        rng = np.random.default_rng([cfg.seed, 104729])
        drop = set(rng.choice(len(pairs), size=cfg.drop_pairs, replace=False).tolist())
        pairs = [p for i, p in enumerate(pairs) if i not in drop]
    return pairs


def file_name(subject: int, label: int) -> str:
    return f"{subject}_{label}_synth.png"


def write_dataset(cfg: SynthConfig, out: str | os.PathLike, progress=None) -> Path:
    """Writes the set into OUT (MSD-E/, MSD-ME/, Paired_files.txt, meta.json), atomically.

    The files are drawn into a temporary folder beside OUT and moved into place at the end, so an
    interrupted generation never leaves a half-written set behind.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MsdeError(f"{out}: exists and is not an empty folder; choose a new folder")
    check_writable(out.parent, "folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "MSD-E").mkdir()
        (tmp / "MSD-ME").mkdir()
        pairs = pair_list(cfg)
        names = []
        counts = {"mask": {}}
        for i, (s, y) in enumerate(pairs):
            nm, m, info = draw_pair(cfg.seed, s, y, cfg.image_size)
            name = file_name(s, y)
            nm.save(tmp / "MSD-E" / name, format="PNG", compress_level=6)
            m.save(tmp / "MSD-ME" / name, format="PNG", compress_level=6)
            names.append(name)
            counts["mask"][info["mask"]] = counts["mask"].get(info["mask"], 0) + 1
            if progress is not None:
                progress(i + 1, len(pairs))
        (tmp / "Paired_files.txt").write_text("".join(n + "\n" for n in names))
        meta = dict(kind="msde-bench synthetic", synth_version=SYNTH_VERSION, config=asdict(cfg),
                    n_pairs=len(pairs), n_subjects=cfg.subjects, mask_kinds=dict(sorted(counts["mask"].items())))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not e.filename:  # a write that failed (a full disk): name the set
            raise OSError(e.errno, e.strerror, str(out)) from e
        raise
    return out


def ensure_cached(cfg: SynthConfig, progress=None) -> Path:
    """Returns the folder of the set in the cache, generating it the first time. Safe when several
    processes need it at once (sweep workers, separate `--fold` runs): one generates it under a
    file lock while the others wait, then reuse its copy."""
    path = cache_home() / "datasets" / cfg.dirname()
    if (path / "meta.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "meta.json").is_file():  # another process made it while this one waited
            return path
        if path.exists():  # left over from an interrupted generation: never trust it
            shutil.rmtree(path)
        return write_dataset(cfg, path, progress=progress)
