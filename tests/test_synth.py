import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from msde_bench.data.msde import read_msde
from msde_bench.data.synth import SynthConfig, draw_pair, pair_list, variant_config, write_dataset


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_byte_identical_files(tmp_path):
    cfg = SynthConfig(subjects=3, image_size=32, seed=5)
    a = write_dataset(cfg, tmp_path / "a")
    b = write_dataset(cfg, tmp_path / "b")
    assert _digest(a) == _digest(b)
    c = write_dataset(SynthConfig(subjects=3, image_size=32, seed=6), tmp_path / "c")
    assert _digest(a) != _digest(c)


def test_images_do_not_depend_on_generation_order():
    a = draw_pair(0, 4, 2, 32)
    draw_pair(0, 1, 1, 32)
    b = draw_pair(0, 4, 2, 32)
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert np.array_equal(np.asarray(a[1]), np.asarray(b[1]))


def test_layout_is_read_by_the_msde_reader(tiny_root):
    ds = read_msde(tiny_root)
    assert len(ds) == 8 * 7
    assert sorted(set(ds.subjects.tolist())) == list(range(8))
    assert np.bincount(ds.labels, minlength=7).tolist() == [8] * 7
    assert (tiny_root / "Paired_files.txt").read_text().count("\n") == 56
    with Image.open(ds.pairs[0].non_masked) as im:
        assert im.size == (32, 32) and im.mode == "RGB"


def test_full_variant_mirrors_msde_counts():
    cfg = variant_config("full")
    pairs = pair_list(cfg)
    assert cfg.subjects == 142
    assert len(pairs) == 980  # 1,960 images
    per_subject = np.bincount([s for s, _ in pairs])
    assert per_subject.min() >= 6 and per_subject.max() == 7


def test_mask_covers_the_lower_face_and_leaves_the_eyes():
    """The masked copy differs from the non-masked one in the mouth region, hardly above the eyes."""
    top, bottom = [], []
    for subject in range(6):
        for label in range(7):
            nm, m, _ = draw_pair(1, subject, label, 64)
            d = np.abs(np.asarray(nm, dtype=float) - np.asarray(m, dtype=float)).mean(axis=(1, 2))
            top.append(d[:22].mean())  # hair, brows, eyes
            bottom.append(d[42:56].mean())  # mouth and chin
    assert np.mean(bottom) > 10 * np.mean(top)
    assert min(bottom) > 8  # every image's mouth region is changed, even by a skin-coloured mask


def test_expressions_differ_in_the_mouth_region():
    """Without a mask the mouth region carries the expression (same subject, different labels)."""
    crops = [np.asarray(draw_pair(2, 0, label, 64)[0], dtype=float)[40:56, 16:48] for label in range(7)]
    diffs = [np.abs(crops[i] - crops[6]).mean() for i in range(6)]
    assert min(diffs) > 2.0
