"""The README's before / after figure of the masks `data convert` draws, on the embedded synthetic
faces (no image of a real dataset goes into the repository):

    python scripts/mask_figure.py [docs/masks-before-after.png]

Row 1: the face. Row 2, before (msde-bench <= 0.4, mask drawing v1): the flat polygon with a straight
top edge that the synthetic set still draws. Row 3, after (v2): the mask fitted to the face's 68
landmarks (face_masks.draw_fitted_mask), here the synthetic face's own points (synth.draw_pair). The
same seed draws the same figure.
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image, ImageDraw

from msde_bench.data.face_masks import MASK_KINDS, draw_fitted_mask
from msde_bench.data.synth import draw_pair

FACES = ((3, 0), (10, 3), (21, 5), (33, 1), (47, 4), (58, 2))  # (subject, expression)
SIZE = 112
LABEL = 18


def draw(faces=FACES, size: int = SIZE) -> Image.Image:
    sheet = Image.new("RGB", (len(faces) * size, 3 * (size + LABEL)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for row, text in enumerate(("face", "before: flat polygon (v1)", "after: fitted to the landmarks (v2)")):
        d.text((4, row * (size + LABEL) + 3), text, fill=(0, 0, 0))
    for i, (subject, label) in enumerate(faces):
        face, old, info = draw_pair(0, subject, label, size)
        kind = MASK_KINDS[i % len(MASK_KINDS)]
        new, _ = draw_fitted_mask(np.asarray(face), info["landmarks"], np.random.default_rng([0, subject]), kind)
        for row, img in enumerate((face, old, Image.fromarray(new))):
            sheet.paste(img, (i * size, row * (size + LABEL) + LABEL))
    return sheet


def main(out: str = "docs/masks-before-after.png") -> None:
    draw().save(out, format="PNG", optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
