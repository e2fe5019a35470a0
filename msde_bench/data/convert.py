"""Public FER datasets -> masked / non-masked pairs in the MSD-E layout.

`msde-bench data convert --format FORMAT SRC OUT` reads a dataset in its official layout, copies
each face unchanged into OUT/MSD-E, draws a synthetic mask on it into OUT/MSD-ME (masking.py),
and writes Paired_files.txt and meta.json (source format, label mapping, the official split of
every file, masking settings, counts). Labels are mapped to the MSD-E order (Surprise, Fear,
Disgust, Happiness, Sadness, Anger, Neutral); other classes are dropped and counted (`class_map`
maps or drops a class folder by name). Subject identities come from the file names where the
dataset has them (`ckplus`: `S010_004_00000017.png` = subject, sequence, frame; `imagefolder` with
`subject_pattern`, a regular expression whose named group `subject`, and optionally `sequence`, is
searched in each file's path); every pair's subject, sequence and source file are recorded in
meta.json. Datasets without identities get one subject per image (meta.json says so); the official
train/test split is kept and the `holdout` protocol uses it.

Bad items (a label outside the mapping, an unreadable image, a CSV row with the wrong pixel
count) are skipped and reported with file and line; the conversion finishes what it can and
writes OUT/skipped.txt. A re-run resumes: pairs already written and readable are kept.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from msde_bench import CLASS_NAMES
from msde_bench.atomic import atomic_target, check_writable, write_text_atomic
from msde_bench.choices import CONVERT_FORMATS
from msde_bench.data.formats import FORMATS as FORMAT_TABLE
from msde_bench.data.msde import CONVERTING, EXTENSIONS, MASKED_DIR, NON_MASKED_DIR, PAIR_LIST
from msde_bench.data.pairs import NO_IDENTITIES, load_image, open_image
from msde_bench.errors import DataError, MsdeError

FORMATS = CONVERT_FORMATS  # the table: msde_bench.data.formats

# source label -> MSD-E label (0 Surprise, 1 Fear, 2 Disgust, 3 Happiness, 4 Sadness, 5 Anger, 6 Neutral)
RAFDB = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6}  # RAF-DB's 1-7 are the same classes, 1-based
FER2013 = {0: 5, 1: 2, 2: 1, 3: 3, 4: 4, 5: 0, 6: 6}  # Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral
FERPLUS_COLUMNS = {"neutral": 6, "happiness": 3, "surprise": 0, "sadness": 4, "anger": 5, "disgust": 2, "fear": 1}
AFFECTNET = {0: 6, 1: 3, 2: 4, 3: 0, 4: 1, 5: 2, 6: 5}  # 7 contempt, 8 none, 9 uncertain, 10 no-face: dropped
SYNONYMS = {
    "surprise": 0, "surprised": 0, "fear": 1, "fearful": 1, "afraid": 1, "scared": 1, "disgust": 2, "disgusted": 2,
    "happiness": 3, "happy": 3, "joy": 3, "sadness": 4, "sad": 4, "anger": 5, "angry": 5, "neutral": 6, "calm": 6,
}
#: a source split's name -> the converted set's split; a validation split (FER-2013's PublicTest) stays
#: its own ("val"): the holdout protocol scores it beside the test split and never merges the two
SPLITS = {"train": "train", "training": "train", "test": "test", "val": "val", "validation": "val",
          "publictest": "val", "privatetest": "test"}
#: the mask drawing of a conversion (meta.json's masking.version): 1 drew the synthetic set's flat
#: polygons; 2 fits them to the face's landmarks (face_masks.draw_fitted_mask). A cached conversion
#: (`--data FORMAT:SRC`) is made again when it changes.
MASKS_VERSION = 2
#: CK+ as commonly distributed: S<subject>_<sequence>_<frame>; a sequence's frames are near duplicates
CKPLUS_PATTERN = r"(?:^|/)(?P<subject>S\d+)_(?P<sequence>\d+)_\d+\.[^/]+$"
#: meta.json's subjects.how of a CK+ conversion (pairs.NO_IDENTITIES: of one without identities)
SUBJECTS_FROM_CKPLUS = "file names (CK+: S<subject>_<sequence>_<frame>)"


@dataclass
class Item:
    """One face to convert: where it comes from, its MSD-E label and official split."""

    key: str  # a stable, unique name stem
    label: int
    split: str
    load: Callable[[], Image.Image]
    source: str  # for error messages: file or file:line
    copy_from: Path | None = None  # copy these bytes unchanged as the non-masked image
    ext: str = ".png"
    subject: str | None = None  # the dataset's own identity of the person, where it has one
    sequence: str | None = None  # the recording (video) the image comes from, where known
    source_class: str = ""  # the dataset's own name of the class (meta.json's counts before mapping)


@dataclass
class Report:
    written: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # class name -> count
    skipped: list = field(default_factory=list)  # "source: problem"
    masks: Counter = field(default_factory=Counter)  # mask kind, and "placement:<how>" -> count
    subjects: str = ""  # how many subjects, and where their identities came from
    #: per class before mapping (the dataset's own names or codes, the dropped ones included) and
    #: after (the MSD-E classes of the pairs written or kept)
    source_classes: Counter = field(default_factory=Counter)
    classes: Counter = field(default_factory=Counter)


# ------------------------------------------------------------------------------------------
# readers: each yields Items and reports what it skips or drops


def _open_image(path: Path, box: tuple[int, int, int, int] | None = None) -> Callable[[], Image.Image]:
    """A loader of the image (cropped to `box`, left-top-right-bottom, when given), run when needed."""
    def load() -> Image.Image:
        return load_image(path, box)

    return load


def read_rafdb(src: Path, report: Report) -> Iterator[Item]:
    labels = src / "EmoLabel" / "list_patition_label.txt"
    if not labels.is_file():
        raise DataError(labels, "label file not found (RAF-DB: EmoLabel/list_patition_label.txt)")
    for i, line in enumerate(labels.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{labels}:{i}"
        if len(parts) != 2 or not parts[1].isdigit():
            report.skipped.append(f"{where}: expected 'NAME LABEL', got {line.strip()!r}")
            continue
        name, raw = parts[0], int(parts[1])
        if raw not in RAFDB:
            report.skipped.append(f"{where}: label {raw} outside 1-7")
            continue
        stem = Path(name).stem
        image = src / "Image" / "aligned" / f"{stem}_aligned.jpg"
        if not image.is_file():
            report.skipped.append(f"{where}: image {image} not found")
            continue
        split = "train" if name.startswith("train") else "test"
        yield Item(stem, RAFDB[raw], split, _open_image(image), where, copy_from=image, ext=".jpg",
                   source_class=str(raw))


def read_fer2013(src: Path, report: Report) -> Iterator[Item]:
    path = src / "fer2013.csv" if src.is_dir() else src
    if not path.is_file():
        raise DataError(path, "label file not found (FER-2013: fer2013.csv)")
    votes = path.parent / "fer2013new.csv"
    ferplus = _ferplus_labels(votes, report) if votes.is_file() else None
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or [h.strip().lower() for h in header[:3]] != ["emotion", "pixels", "usage"]:
            raise DataError(path, "not a FER-2013 CSV (expected the columns emotion, pixels, Usage)")
        for i, row in enumerate(rows, 2):
            where = f"{path}:{i}"
            if len(row) < 3:
                report.skipped.append(f"{where}: expected 3 columns, got {len(row)}")
                continue
            try:
                raw = int(row[0])
                pixels = np.array(row[1].split(), dtype=np.int64)
            except (ValueError, OverflowError):
                report.skipped.append(f"{where}: emotion or pixels not integers")
                continue
            if pixels.size != 48 * 48:
                report.skipped.append(f"{where}: {pixels.size} pixels, expected 2304 (48 x 48)")
                continue
            if pixels.min() < 0 or pixels.max() > 255:
                report.skipped.append(f"{where}: pixel values {pixels.min()}-{pixels.max()}, expected 0-255")
                continue
            pixels = pixels.astype(np.uint8)
            if ferplus is not None:
                label = ferplus.get(i - 2)
                if label is None:
                    continue  # FER+ majority outside the seven classes (counted by _ferplus_labels)
            elif raw in FER2013:
                label = FER2013[raw]
            else:
                report.skipped.append(f"{where}: emotion {raw} outside 0-6")
                continue
            split = SPLITS.get(row[2].strip().lower())
            if split is None:
                report.skipped.append(f"{where}: unknown Usage {row[2]!r}")
                continue
            img = Image.fromarray(pixels.reshape(48, 48), "L")
            yield Item(f"fer{i - 2:05d}", label, split, lambda img=img: img.convert("RGB"), where,
                       source_class=CLASS_NAMES[label].lower() if ferplus is not None else str(raw))


def _ferplus_labels(path: Path, report: Report) -> dict[int, int]:
    """FER+ majority labels by row index of fer2013.csv; rows whose majority is contempt, unknown or
    not-a-face are dropped and counted."""
    out = {}
    with path.open(newline="") as f:
        rows = csv.DictReader(f)
        for i, row in enumerate(rows):
            counts = {}
            for col in ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                        "unknown", "NF"):
                try:
                    counts[col] = int(row.get(col) or 0)
                except ValueError:
                    counts[col] = 0
            best = max(counts, key=lambda c: counts[c])
            if best in FERPLUS_COLUMNS and counts[best] > 0:
                out[i] = FERPLUS_COLUMNS[best]
            else:
                report.dropped[best] += 1
    return out


def read_affectnet(src: Path, report: Report) -> Iterator[Item]:
    found = False
    for csv_name, split in (("training.csv", "train"), ("validation.csv", "test")):
        path = src / csv_name
        if not path.is_file():
            continue
        found = True
        with path.open(newline="") as f:
            rows = csv.DictReader(f)
            for i, row in enumerate(rows, 2):
                where = f"{path}:{i}"
                try:
                    raw = int(row["expression"])
                    box = [int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height")]
                    rel = row["subDirectory_filePath"]
                except (KeyError, ValueError, TypeError):
                    report.skipped.append(f"{where}: missing or non-numeric expression / face box")
                    continue
                if raw not in AFFECTNET:
                    name = {7: "contempt", 8: "none", 9: "uncertain", 10: "no-face"}.get(raw, f"label {raw}")
                    report.dropped[name] += 1
                    continue
                image = next((p for p in (src / "Manually_Annotated_Images" / rel, src / rel) if p.is_file()), None)
                if image is None:
                    report.skipped.append(f"{where}: image {rel} not found")
                    continue
                x, y, w, h = box
                yield Item(Path(rel).stem, AFFECTNET[raw], split, _open_image(image, (x, y, x + w, y + h)), where,
                           source_class=str(raw))
    if not found:
        raise DataError(src, "label file not found (AffectNet: training.csv and/or validation.csv)")


def _class_label(name: str, class_map: dict[str, str]) -> int | None:
    """The MSD-E label of a class folder: `class_map` first (a class name or "drop"), then the synonyms."""
    target = class_map.get(name.lower(), name.lower())
    return None if target == "drop" else SYNONYMS.get(target)


def read_imagefolder(src: Path, report: Report, subject_pattern: str | None = None,
                     class_map: dict[str, str] | None = None) -> Iterator[Item]:
    """One folder per class, optionally under train/ and test/. With `subject_pattern`, each file's
    path relative to `src` (with /) must contain a match whose group `subject` names the person
    (and `sequence`, optionally, the recording); a file that does not match is skipped."""
    if not src.is_dir():
        raise DataError(src, "folder not found")
    pattern = compile_subject_pattern(subject_pattern) if subject_pattern else None
    class_map = class_map or {}
    roots = [(src / s, SPLITS[s]) for s in ("train", "val", "validation", "test") if (src / s).is_dir()] or [
        (src, "train")]
    for root, split in roots:
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            label = _class_label(folder.name, class_map)
            if label is None:
                n = sum(1 for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
                report.dropped[folder.name.lower()] += n
                continue
            for image in sorted(folder.iterdir()):
                if image.suffix.lower() not in EXTENSIONS:
                    continue
                ext = image.suffix.lower()
                key = f"{split}-{folder.name.lower()}-{image.stem}"
                subject = sequence = None
                if pattern is not None:
                    rel = image.relative_to(src).as_posix()
                    m = pattern.search(rel)
                    if m is None or not m.group("subject"):
                        report.skipped.append(f"{image}: the subject pattern {pattern.pattern!r} does not match {rel!r}")
                        continue
                    subject = m.group("subject")
                    if "sequence" in pattern.groupindex and m.group("sequence"):
                        sequence = f"{subject}/{m.group('sequence')}"
                yield Item(key, label, split, _open_image(image), str(image), copy_from=image, ext=ext,
                           subject=subject, sequence=sequence, source_class=folder.name.lower())


def read_ckplus(src: Path, report: Report, class_map: dict[str, str] | None = None) -> Iterator[Item]:
    """CK+ in class folders (anger, contempt, disgust, fear, happy, sadness, surprise), files named
    S<subject>_<sequence>_<frame>; contempt, outside the seven classes, is dropped unless mapped."""
    yield from read_imagefolder(src, report, CKPLUS_PATTERN, class_map)


# ------------------------------------------------------------------------------------------
# the lab sets as distributed: identities, expressions and views from their own names


#: KDEF's and JAFFE's expression codes -> MSD-E labels
KDEF_CODES = {"SU": 0, "AF": 1, "DI": 2, "HA": 3, "SA": 4, "AN": 5, "NE": 6}
JAFFE_CODES = {"SU": 0, "FE": 1, "DI": 2, "HA": 3, "SA": 4, "AN": 5, "NE": 6}
#: RaFD's expression words -> MSD-E labels (contemptuous is outside the seven: dropped unless --map)
RAFD_WORDS = {"surprised": 0, "fearful": 1, "disgusted": 2, "happy": 3, "sad": 4, "angry": 5, "neutral": 6}
KDEF_NAME = re.compile(r"^(?P<session>[AB])(?P<sex>[FM])(?P<person>\d{2})(?P<code>[A-Z]{2})(?P<view>[A-Z]{1,2})$")
JAFFE_NAME = re.compile(r"^(?P<subject>[A-Z]{2})\.(?P<code>[A-Z]{2})(?P<take>\d+)\.(?P<number>\d+)$")
RAFD_NAME = re.compile(r"^Rafd(?P<angle>\d{3})_(?P<subject>\d+)_(?P<ethnicity>[A-Za-z]+)_(?P<sex>[A-Za-z]+)_"
                       r"(?P<word>[a-z]+)_(?P<gaze>[a-z]+)$", re.IGNORECASE)
#: Oulu-CASIA: the frames of each sequence a conversion keeps (the last ones: the expression's apex)
OULU_LAST_FRAMES = 3


def _image_files(src: Path) -> list[Path]:
    """Every image file under src (src itself when it is one), in name order."""
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise DataError(src, "folder not found")
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def check_views(fmt: str, views) -> tuple[str, ...]:
    """--views for a format: its known codes (case as the table writes them), else the default."""
    known = FORMAT_TABLE[fmt].views
    if not views:
        return FORMAT_TABLE[fmt].default_views
    if not known:
        raise MsdeError(f"--views: --format {fmt} has no views to choose among")
    wanted = [v.strip() for v in (views.split(",") if isinstance(views, str) else views) if v.strip()]
    by_key = {v.lower(): v for v in known}
    bad = [v for v in wanted if v.lower() not in by_key]
    if bad or not wanted:
        given = ",".join(wanted) or repr(views)
        raise MsdeError(f"--views {given}: {fmt} knows the views {', '.join(known)}"
                        + (f" ({bad[0]!r} is not one)" if bad else ""))
    return tuple(by_key[v.lower()] for v in wanted)


class _Takes:
    """Refuses a second file that claims the take of an earlier one (the same person, expression,
    take and view): a skipped item naming both."""

    def __init__(self, report: Report):
        self.report, self.seen = report, {}

    def new(self, key: tuple, path: Path) -> bool:
        if key in self.seen:
            self.report.skipped.append(f"{path}: the same person, expression and take as {self.seen[key]}; "
                                       "kept the first")
            return False
        self.seen[key] = path
        return True


def read_kdef(src: Path, report: Report, views=None) -> Iterator[Item]:
    """KDEF as distributed (`AF01AFS.JPG`: session, sex, person, expression, view), flat or in
    per-person folders; the views in `views` (default frontal, S); the others are counted as dropped."""
    views = check_views("kdef", views)
    takes = _Takes(report)
    for image in _image_files(src):
        m = KDEF_NAME.match(image.stem.upper())
        if m is None:
            report.skipped.append(f"{image}: not a KDEF name (session A/B, sex F/M, person, expression, view: "
                                  "AF01AFS.JPG)")
            continue
        code, view = m.group("code"), m.group("view")
        if code not in KDEF_CODES:
            report.skipped.append(f"{image}: unknown KDEF expression code {code!r} (known: {', '.join(KDEF_CODES)})")
            continue
        if view not in FORMAT_TABLE["kdef"].views:
            report.skipped.append(f"{image}: unknown KDEF view {view!r} (known: {', '.join(FORMAT_TABLE['kdef'].views)})")
            continue
        if view not in views:
            report.dropped[f"view {view}"] += 1
            continue
        subject = m.group("sex") + m.group("person")
        if not takes.new((subject, code, m.group("session"), view), image):
            continue
        yield Item(f"{image.stem.upper()}", KDEF_CODES[code], "train", _open_image(image), str(image),
                   copy_from=image, ext=image.suffix.lower(), subject=subject,
                   sequence=f"{subject}/{m.group('session')}", source_class=code)


def read_jaffe(src: Path, report: Report) -> Iterator[Item]:
    """JAFFE as distributed (`KA.AN1.39.tiff`: person, expression and take, number)."""
    takes = _Takes(report)
    for image in _image_files(src):
        m = JAFFE_NAME.match(image.stem.upper())
        if m is None:
            report.skipped.append(f"{image}: not a JAFFE name (person, expression + take, number: KA.AN1.39.tiff)")
            continue
        code = m.group("code")
        if code not in JAFFE_CODES:
            report.skipped.append(f"{image}: unknown JAFFE expression code {code!r} (known: {', '.join(JAFFE_CODES)})")
            continue
        subject = m.group("subject")
        if not takes.new((subject, code, m.group("take")), image):
            continue
        yield Item(image.stem.upper(), JAFFE_CODES[code], "train", _open_image(image), str(image),
                   subject=subject, source_class=code)


def read_rafd(src: Path, report: Report, views=None, class_map: dict[str, str] | None = None) -> Iterator[Item]:
    """RaFD as distributed (`Rafd090_01_Caucasian_female_angry_frontal.jpg`); the camera angles in
    `views` (default 090, frontal), every gaze; contemptuous dropped unless `class_map` maps it."""
    views = check_views("rafd", views)
    class_map = class_map or {}
    takes = _Takes(report)
    for image in _image_files(src):
        m = RAFD_NAME.match(image.stem)
        if m is None:
            report.skipped.append(f"{image}: not a RaFD name (Rafd<angle>_<person>_<ethnicity>_<sex>_<expression>_"
                                  "<gaze>.jpg)")
            continue
        angle, word, gaze = m.group("angle"), m.group("word").lower(), m.group("gaze").lower()
        if angle not in FORMAT_TABLE["rafd"].views:
            report.skipped.append(f"{image}: unknown RaFD camera angle {angle!r} (known: "
                                  f"{', '.join(FORMAT_TABLE['rafd'].views)})")
            continue
        label = _class_label(word, class_map)  # RaFD's words are among the synonyms
        if label is None and class_map.get(word, word) not in ("drop", "contemptuous"):
            report.skipped.append(f"{image}: unknown RaFD expression {word!r} (known: {', '.join(RAFD_WORDS)}, "
                                  "contemptuous)")
            continue
        if angle not in views:
            report.dropped[f"view {angle}"] += 1
            continue
        if label is None:  # contemptuous, outside the seven classes unless --map says otherwise, or mapped to drop
            report.dropped[word] += 1
            continue
        subject = str(int(m.group("subject")))
        if not takes.new((subject, word, angle, gaze), image):
            continue
        yield Item(image.stem, label, "train", _open_image(image), str(image), copy_from=image,
                   ext=image.suffix.lower(), subject=subject, sequence=f"{subject}/{word}", source_class=word)


def read_oulu(src: Path, report: Report, views=None, class_map: dict[str, str] | None = None) -> Iterator[Item]:
    """Oulu-CASIA as distributed (`VL/Strong/P001/Anger/000.jpeg`), or SRC one `<camera>/<lighting>`
    folder: per person and expression, the last OULU_LAST_FRAMES frames of the sequence, of the
    camera and lighting in `views` (default VL/Strong)."""
    views = check_views("oulu", views)
    class_map = class_map or {}
    if not src.is_dir():
        raise DataError(src, "folder not found")
    known = {v.lower(): v for v in FORMAT_TABLE["oulu"].views}
    own = "/".join(src.resolve().parts[-2:]).lower()  # SRC may be one <camera>/<lighting> folder
    sequences: dict[Path, list[Path]] = {}
    for image in _image_files(src):
        sequences.setdefault(image.parent, []).append(image)
    for folder, frames in sorted(sequences.items()):
        rel = folder.relative_to(src).parts
        view_key = f"{rel[0]}/{rel[1]}".lower() if len(rel) == 4 else own if len(rel) == 2 else None
        if view_key not in known:
            report.skipped.append(f"{folder}: not an Oulu-CASIA sequence folder (<camera>/<lighting>/P<person>/"
                                  "<expression>/, e.g. VL/Strong/P001/Anger)")
            continue
        view = known[view_key]
        subject, word = rel[-2], rel[-1].lower()
        if not re.fullmatch(r"P\d+", subject, re.IGNORECASE):
            report.skipped.append(f"{folder}: {subject!r} is not an Oulu-CASIA person folder (P001)")
            continue
        if view not in views:  # counted as the images it would have given: the last frames
            report.dropped[f"view {view}"] += min(len(frames), OULU_LAST_FRAMES)
            continue
        label = _class_label(word, class_map)
        if label is None:
            report.dropped[word] += min(len(frames), OULU_LAST_FRAMES)
            continue
        for image in frames[-OULU_LAST_FRAMES:]:
            key = f"{view}-{subject}-{word}-{image.stem}".replace("/", "-")
            yield Item(key, label, "train", _open_image(image), str(image), copy_from=image, ext=image.suffix.lower(),
                       subject=subject.upper(), sequence=f"{subject.upper()}/{word}/{view}", source_class=word)


def compile_subject_pattern(pattern: str) -> re.Pattern:
    """The --subject-pattern regular expression, checked: it must compile and name a `subject` group."""
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise MsdeError(f"--subject-pattern {pattern!r}: not a regular expression ({e})") from None
    if "subject" not in compiled.groupindex:
        raise MsdeError(f"--subject-pattern {pattern!r}: needs a named group (?P<subject>...) for the person "
                        "(and may have (?P<sequence>...) for the recording)")
    return compiled


def parse_class_map(entries) -> dict[str, str]:
    """--map NAME=CLASS|drop (repeatable): a class folder mapped to one of the seven classes (any of
    their synonyms) or dropped."""
    out = {}
    for entry in entries or ():
        name, sep, target = str(entry).partition("=")
        name, target = name.strip().lower(), target.strip().lower()
        if not sep or not name or not target:
            raise MsdeError(f"--map {entry!r}: expected NAME=CLASS or NAME=drop (e.g. contempt=drop)")
        if target != "drop" and target not in SYNONYMS:
            raise MsdeError(f"--map {entry!r}: {target!r} is not one of the seven classes "
                            f"({', '.join(c.lower() for c in CLASS_NAMES)}) or drop")
        out[name] = target
    return out


def subject_numbers(items: list[Item]) -> dict[str, int]:
    """The number each subject id gets in the MSD-E file names ({subject}_...): the digits of the ids
    where those tell every id apart (CK+ S010 -> 10), else their rank in sorted order (JAFFE KA -> 0)."""
    ids = sorted({it.subject for it in items if it.subject is not None})
    digits = {i: re.sub(r"\D", "", i) for i in ids}
    if all(digits.values()) and len({int(d) for d in digits.values()}) == len(ids):
        return {i: int(d) for i, d in digits.items()}
    return {i: n for n, i in enumerate(ids)}


READERS = {"rafdb": read_rafdb, "fer2013": read_fer2013, "affectnet": read_affectnet, "imagefolder": read_imagefolder,
           "ckplus": read_ckplus, "kdef": read_kdef, "jaffe": read_jaffe, "rafd": read_rafd, "oulu": read_oulu}
MAPPINGS = {"rafdb": RAFDB, "fer2013": FER2013, "affectnet": AFFECTNET, "imagefolder": SYNONYMS, "ckplus": SYNONYMS,
            "kdef": KDEF_CODES, "jaffe": JAFFE_CODES, "rafd": RAFD_WORDS, "oulu": SYNONYMS}
#: the formats whose class names `class_map` (--map) applies to, and those with views (--views)
FOLDER_FORMATS = tuple(f.name for f in FORMAT_TABLE.values() if f.maps_classes)
VIEW_FORMATS = tuple(f.name for f in FORMAT_TABLE.values() if f.views)


# ------------------------------------------------------------------------------------------
# writing


#: partner modes that are grayscale: the masked view is then written in mode L
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def _like_partner(masked: Image.Image, face: Image.Image, copy_from: Path | None) -> Image.Image:
    """The masked view in its partner's colours: a grayscale face (every pixel's channels equal)
    gets a grayscale mask, in mode L when its partner file is grayscale, so that the two views of a
    pair differ only by the mask, never by colour; a colour face keeps its coloured mask."""
    a = np.asarray(face)
    if a.ndim == 3 and not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])):
        return masked
    grey = masked.convert("L")
    mode = "RGB"
    if copy_from is not None:
        with open_image(copy_from) as im:
            mode = im.mode
    return grey if mode in GREY_MODES else grey.convert("RGB")


def _relative(source: str, src: Path) -> str:
    """A source file (or file:line) relative to the converted folder where it lies inside it."""
    try:
        return Path(source).relative_to(src).as_posix()
    except ValueError:
        return source


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in key)


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001
        return False


def _save_atomic(img: Image.Image, path: Path) -> None:
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    with atomic_target(path, suffix=path.suffix) as tmp:
        img.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def _copy_atomic(src: Path, path: Path) -> None:
    with atomic_target(path) as tmp:
        shutil.copyfile(src, tmp)


def _reader(fmt: str, src: Path, report: Report, subject_pattern: str | None,
            class_map: dict[str, str], views=None) -> Iterator[Item]:
    if subject_pattern is not None and fmt != "imagefolder":
        raise MsdeError(f"--subject-pattern: only with --format imagefolder (--format {fmt} "
                        + (f"reads the subjects from its {FORMAT_TABLE[fmt].subjects.split(' (')[0]})"
                           if "name" in FORMAT_TABLE[fmt].subjects else "has no identities to match)"))
    if class_map and fmt not in FOLDER_FORMATS:
        raise MsdeError(f"--map: only with --format {', '.join(FOLDER_FORMATS)} (named classes)")
    if views and fmt not in VIEW_FORMATS:
        raise MsdeError(f"--views: only with --format {', '.join(VIEW_FORMATS)} (--format {fmt} has no views)")
    options = dict(class_map=class_map) if fmt in FOLDER_FORMATS else {}
    if fmt == "imagefolder":
        options["subject_pattern"] = subject_pattern
    if fmt in VIEW_FORMATS:
        options["views"] = views
    return READERS[fmt](src, report, **options)


def convert(fmt: str, src: str | Path, out: str | Path, *, seed: int = 0, mask_style: str = "random",
            landmarks: str = "auto", progress: Callable[[int, int], None] | None = None,
            subject_pattern: str | None = None, class_map: dict[str, str] | None = None, views=None) -> Report:
    from msde_bench.data.masking import make_masker

    if fmt not in READERS:
        raise MsdeError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(src, "source not found")
    class_map = dict(class_map or {})
    report = Report()
    items = list(_reader(fmt, src, report, subject_pattern, class_map, views))  # lazy loaders: no image read yet
    report.source_classes = Counter(it.source_class for it in items) + Counter(
        {k: v for k, v in report.dropped.items() if not k.startswith("view ")})
    numbers = subject_numbers(items)
    with_ids = bool(numbers)
    masker = make_masker(seed, mask_style, landmarks)
    check_writable(out, "output folder")
    # until the last file is written, readers refuse OUT (a crash never leaves a set that validates)
    write_text_atomic(out / CONVERTING, "msde-bench data convert did not finish here; run it again to resume\n")
    (out / NON_MASKED_DIR).mkdir(parents=True, exist_ok=True)
    (out / MASKED_DIR).mkdir(parents=True, exist_ok=True)
    names, splits, pair_info, subject = [], {}, {}, 0
    for item in items:
        number = numbers[item.subject] if with_ids else subject  # without identities: one subject per image
        name = f"{number}_{item.label}_{_safe(item.key)}{item.ext}"
        nm_path, m_path = out / NON_MASKED_DIR / name, out / MASKED_DIR / name
        if nm_path.is_file() and m_path.is_file() and _readable(nm_path) and _readable(m_path):
            report.kept += 1  # resumed: already written and verified
        else:
            try:
                img = item.load()
            except DataError as e:
                report.skipped.append(f"{item.source}: {e.problem}")
                continue
            masked, info = masker(img, name)
            masked = _like_partner(masked, img, item.copy_from)
            if item.copy_from is not None:
                _copy_atomic(item.copy_from, nm_path)
            else:
                _save_atomic(img.convert("RGB"), nm_path)
            _save_atomic(masked, m_path)
            report.written += 1
            report.masks[info["mask"]] += 1
            report.masks[f"placement:{info['placement']}"] += 1
        names.append(name)
        report.classes[CLASS_NAMES[item.label]] += 1
        splits[name] = item.split
        info = dict(source=_relative(item.source, src))
        if with_ids:
            info.update(subject=item.subject, **({"sequence": item.sequence} if item.sequence else {}))
        pair_info[name] = info
        subject += 1
        if progress is not None:
            progress(subject, len(items))
    if not names:
        raise DataError(src, "nothing to convert: no usable images found")
    write_text_atomic(out / PAIR_LIST, "".join(n + "\n" for n in names))
    meta = dict(kind="msde-bench converted", source_format=fmt, source=str(src.resolve()),
                label_mapping={str(k): CLASS_NAMES[v] for k, v in MAPPINGS[fmt].items()},
                splits=splits, pairs=pair_info,
                masking=dict(masker=masker.name, seed=seed, style=mask_style, version=MASKS_VERSION),
                subjects=dict(
                    how=(SUBJECTS_FROM_CKPLUS if fmt == "ckplus" else f"--subject-pattern {subject_pattern}"
                         if fmt == "imagefolder" else f"{fmt}: {FORMAT_TABLE[fmt].subjects}")
                    if with_ids else NO_IDENTITIES,
                    ids={str(n): i for i, n in sorted(numbers.items(), key=lambda t: t[1])},
                    sequences=len({i["sequence"] for i in pair_info.values() if "sequence" in i})),
                class_map=class_map,
                counts=dict(pairs=len(names), written=report.written, kept=report.kept, skipped=len(report.skipped),
                            dropped=dict(report.dropped), masks=dict(report.masks),
                            source_classes=dict(report.source_classes), classes=dict(report.classes)),
                **({"views": list(check_views(fmt, views))} if fmt in VIEW_FORMATS else {}))
    n_subjects = len({n.split("_", 1)[0] for n in names})
    report.subjects = f"{n_subjects} ({meta['subjects']['how']})"
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
    write_text_atomic(out / "skipped.txt", "".join(s + "\n" for s in report.skipped))
    (out / CONVERTING).unlink()
    return report

