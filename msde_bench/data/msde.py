"""The MSD-E layout: reader and validation.

    ROOT/MSD-E/<name>     non-masked image
    ROOT/MSD-ME/<name>    masked image of the same subject and expression
    ROOT/Paired_files.txt optional: one name per line; when present only these pairs are used

`<name>` is `{subject}_{label}_{rest}.{ext}` (the rest is optional), label 0-6 = Surprise, Fear,
Disgust, Happiness, Sadness, Anger, Neutral, as in the reference code. Every problem is raised as
a DataError naming the file (and line of the pair list) and the problem.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from msde_bench import CLASS_NAMES, NUM_CLASSES
from msde_bench.data.pairs import Pair, PairedDataset, load_image, open_image
from msde_bench.errors import DataError

NON_MASKED_DIR = "MSD-E"
MASKED_DIR = "MSD-ME"
PAIR_LIST = "Paired_files.txt"
#: present while `data convert` writes a folder: the reader refuses a folder whose conversion stopped
CONVERTING = ".msde-bench-converting"
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def parse_name(name: str, where: str | Path) -> tuple[int, int]:
    """(subject, label) from `{subject}_{label}_{rest}.{ext}`; `where` names the file in errors."""
    stem = Path(name).stem
    parts = stem.split("_")
    if len(parts) < 2:
        raise DataError(where, f"name {name!r} is not of the form {{subject}}_{{label}}_{{rest}}")
    try:
        subject = int(parts[0])
    except ValueError:
        raise DataError(where, f"subject {parts[0]!r} in {name!r} is not an integer") from None
    try:
        label = int(parts[1])
    except ValueError:
        raise DataError(where, f"label {parts[1]!r} in {name!r} is not an integer") from None
    if not 0 <= label < NUM_CLASSES:
        raise DataError(where, f"label {label} in {name!r} is out of range 0-{NUM_CLASSES - 1}")
    if subject < 0:
        raise DataError(where, f"subject {subject} in {name!r} is negative")
    return subject, label


def _listing(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(folder, "folder not found (an MSD-E root holds MSD-E/ and MSD-ME/)")
    files = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir():
            continue
        try:
            p.name.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes (surrogate-escaped): shown as \xNN, never a traceback
            shown = os.fsencode(str(p)).decode("utf-8", "backslashreplace")
            raise DataError(shown, "its file name is not valid UTF-8; rename it") from None
        if p.suffix.lower() not in EXTENSIONS:
            raise DataError(p, f"unsupported extension {p.suffix or '(none)'!r}; use one of {', '.join(EXTENSIONS)}")
        files[p.name] = p
    return files


def read_pair_list(path: Path) -> list[tuple[int, str]]:
    """(line number, name) for every non-empty line; a name listed twice is an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(path, "not a UTF-8 text file") from None
    seen: dict[str, int] = {}
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        name = line.split(",")[0].strip()  # the reference code reads the first CSV column
        if not name:
            continue
        name = Path(name).name
        if name in seen:
            raise DataError(f"{path}:{i}", f"{name!r} is listed twice (first on line {seen[name]})")
        seen[name] = i
        out.append((i, name))
    return out


def read_msde(root: str | Path, *, check_images: bool = False, name: str | None = None) -> PairedDataset:
    """Reads (and validates) an MSD-E-layout folder into a PairedDataset.

    With `check_images`, every image is fully decoded too; otherwise decoding errors surface when
    the image cache is built, still before any training starts.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    if (root / CONVERTING).exists():
        raise DataError(root, "a `msde-bench data convert` into this folder did not finish; run it again (it "
                              "resumes where it stopped)")
    nm_files = _listing(root / NON_MASKED_DIR)
    m_files = _listing(root / MASKED_DIR)
    pair_list = root / PAIR_LIST
    if pair_list.is_file():
        names = []
        for line, n in read_pair_list(pair_list):
            for folder, files in ((NON_MASKED_DIR, nm_files), (MASKED_DIR, m_files)):
                if n not in files:
                    raise DataError(f"{pair_list}:{line}", f"names {n!r}, which is missing from {root / folder}")
            names.append(n)
    else:
        for a, b, folder in ((nm_files, m_files, MASKED_DIR), (m_files, nm_files, NON_MASKED_DIR)):
            for n, p in a.items():
                if n not in b:
                    raise DataError(p, f"missing partner {root / folder / n}")
        names = sorted(nm_files)
    if not names:
        raise DataError(root, "empty dataset: no image pairs found")
    pairs = []
    for n in names:
        subject, label = parse_name(n, nm_files[n])
        pairs.append(Pair(name=n, subject=subject, label=label, non_masked=nm_files[n], masked=m_files[n]))
    pairs.sort(key=lambda p: (p.subject, p.label, p.name))
    if check_images:
        for p in pairs:
            load_image(p.non_masked)
            load_image(p.masked)
    meta = {}
    if (root / "meta.json").is_file():
        try:
            meta = json.loads((root / "meta.json").read_text())
        except (ValueError, UnicodeDecodeError):
            raise DataError(root / "meta.json", "not valid JSON") from None
        if not isinstance(meta, dict):
            raise DataError(root / "meta.json", f"expected a JSON object, found {type(meta).__name__}")
    return PairedDataset(name=name or _default_name(root, meta), root=root, pairs=pairs, meta=meta)


def _default_name(root: Path, meta: dict) -> str:
    if meta.get("kind") == "msde-bench synthetic":
        cfg = meta.get("config", {})
        return f"synth-{cfg.get('variant', 'custom')}"
    return root.resolve().name or "msde"


def stats(ds: PairedDataset) -> dict:
    """Counts for `msde-bench data stats`: pairs per class, per subject, image sizes; an image that
    cannot be read is a DataError naming it."""
    labels = Counter(p.label for p in ds.pairs)
    per_subject = Counter(p.subject for p in ds.pairs)
    sizes: Counter = Counter()
    for p in ds.pairs:
        for path in (p.non_masked, p.masked):
            with open_image(path) as im:
                sizes[f"{im.size[0]}x{im.size[1]}"] += 1
    counts = np.array(list(per_subject.values()))
    conversion = ds.conversion() or {}
    masking = conversion.get("masking") or {}
    return dict(
        n_pairs=len(ds.pairs),
        n_images=2 * len(ds.pairs),
        n_subjects=len(per_subject),
        subjects_from=ds.subjects_how(),
        per_class={CLASS_NAMES[c]: labels.get(c, 0) for c in range(NUM_CLASSES)},
        pairs_per_subject=dict(min=int(counts.min()), mean=float(counts.mean()), max=int(counts.max())),
        image_sizes=dict(sizes.most_common()),
        # a converted set: how its masks were placed (landmarks, or the template where none were found)
        mask_placement=masking.get("placement") or None,
        mask_drawing=masking.get("version", 1) if conversion else None,
    )
