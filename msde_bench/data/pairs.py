"""The one in-memory form of a paired dataset, and the decoded-image cache."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from msde_bench import CLASS_NAMES, NUM_CLASSES
from msde_bench.errors import DataError

#: how a set without subject identities gets its subjects (meta.json's subjects.how of such a
#: conversion, and what a conversion from before 0.4, which recorded nothing, did)
NO_IDENTITIES = "none: one subject per image (folds are image-level)"

@dataclass(frozen=True)
class Pair:
    """One (non-masked, masked) pair of images of one subject with one expression."""

    name: str
    subject: int
    label: int
    non_masked: Path
    masked: Path


@dataclass
class PairedDataset:
    name: str
    root: Path
    pairs: list[Pair]
    meta: dict = field(default_factory=dict)
    # what result files record as the root: the folder, or for a generated set its portable name
    # (`synth:small`), so that committed results do not carry one machine's cache path
    source: str | None = None
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)
    _faces: list[str] | None = field(default=None, init=False, repr=False, compare=False)
    _thumbnails: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def subjects(self) -> np.ndarray:
        return np.array([p.subject for p in self.pairs], dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        return np.array([p.label for p in self.pairs], dtype=np.int64)

    @property
    def classes(self) -> tuple[int, ...]:
        """The labels (MSD-E order) the set has, sorted: a model of this set is trained and scored
        over these (CK+ without contempt has six: no neutral), its head's outputs in this order."""
        return tuple(sorted({p.label for p in self.pairs}))

    def official_splits(self) -> list[str] | None:
        """Each pair's official split ("train"/"test") when the dataset carries one (converted
        public datasets), else None."""
        splits = self.meta.get("splits")
        if not isinstance(splits, dict) or not splits:
            return None
        return [splits.get(p.name, "train") for p in self.pairs]

    def face_digests(self) -> list[str]:
        """Per pair, the SHA-256 of its non-masked file's bytes: the face itself, whatever its name,
        its set or its mask (a conversion copies each source face unchanged, so two conversions of
        one source under other masks have the same digests). Read once per dataset object."""
        if self._faces is None:
            self._faces = [hashlib.sha256(p.non_masked.read_bytes()).hexdigest() for p in self.pairs]
        return self._faces

    def face_thumbnails(self) -> np.ndarray:
        """Per pair, its non-masked face as a 16 x 16 greyscale thumbnail, centred and scaled to unit
        length (N x 256 float32): the dot product of two is their correlation, about 1 for the same face
        re-encoded, resized or contrast-stretched, which the byte digests miss. Decoded once per
        dataset object."""
        if self._thumbnails is None:
            rows = []
            for p in self.pairs:
                g = np.asarray(load_image(p.non_masked).convert("L").resize((16, 16), Image.BILINEAR),
                               dtype=np.float32).ravel()
                g -= g.mean()
                norm = float(np.linalg.norm(g))
                rows.append(g / norm if norm > 0 else g)
            self._thumbnails = np.stack(rows) if rows else np.zeros((0, 256), np.float32)
        return self._thumbnails

    def fingerprint(self) -> str:
        """A hash of the pair list and the files' sizes: changes when the data changes. Computed
        once per dataset object (it stats every file), however many callers ask."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for p in self.pairs:
                h.update(f"{p.name}|{p.subject}|{p.label}|".encode())
                h.update(f"{_file_size(p.non_masked)}|{_file_size(p.masked)}\n".encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def subjects_how(self) -> str:
        """Where the subject identities come from: what a conversion recorded (a conversion before
        0.4 recorded nothing: it gave every image its own subject), the synthetic generator, or the
        file names of the MSD-E layout."""
        meta = self.meta or {}
        if meta.get("kind") == "msde-bench synthetic":
            return "drawn: the synthetic set's subjects"
        if meta.get("kind") == "msde-bench converted":
            return (meta.get("subjects") or {}).get("how") or NO_IDENTITIES
        return "file names ({subject}_{label}_... in the MSD-E layout)"

    def fold_grouping(self) -> str:
        """"subject" when folds can keep each person on one side, "image" when the set has no
        identities (every image its own subject: the folds are then image-level, not subject-disjoint)."""
        return "image" if self.subjects_how() == NO_IDENTITIES else "subject"

    def describe(self) -> dict:
        out = dict(name=self.name, root=self.source or str(self.root), fingerprint=self.fingerprint(),
                   n_pairs=len(self.pairs), n_subjects=int(len(np.unique(self.subjects))),
                   folds_by=self.fold_grouping(), classes=[CLASS_NAMES[c] for c in self.classes],
                   subjects_from=self.subjects_how())
        conversion = self.conversion()
        if conversion:
            out["conversion"] = conversion
        return out

    def conversion(self) -> dict | None:
        """What `data convert` recorded of a converted set (its meta.json): source format and folder
        name, the masking (masker, seed, style, drawing version, how many masks each placement
        drew) and the classes it dropped; None for any other set."""
        meta = self.meta or {}
        if meta.get("kind") != "msde-bench converted":
            return None
        counts = meta.get("counts") or {}
        masks = counts.get("masks") or {}
        masking = dict(meta.get("masking") or {})
        masking["placement"] = {k.split(":", 1)[1]: v for k, v in sorted(masks.items()) if k.startswith("placement:")}
        return dict(format=meta.get("source_format"), source=Path(str(meta.get("source", ""))).name,
                    masking=masking, dropped=counts.get("dropped") or {}, class_map=meta.get("class_map") or {})


def _file_size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:  # removed since the list was read, or a dangling link
        raise DataError(path, "file not found") from None
    except OSError as e:  # a symlink loop, no permission
        raise DataError(path, f"cannot read the file ({e.strerror or type(e).__name__})") from None


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer greyscale (modes I;16*, I) scaled from 0-65535 to 0-255, and float
    greyscale (F) from 0-1 (or 0-255 when it goes above 1): PIL's convert("RGB") would clip them."""
    a = np.asarray(im)
    if im.mode == "F":
        a = a.astype(np.float64) * (255.0 if np.nanmax(a) <= 1.0 else 1.0)
    else:
        a = a.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8), "L")


#: the most pixels msde-bench decodes of one face image (4096 x 4096): a face crop needs far fewer, and
#: masking or resizing a larger one takes gigabytes (a 10,000 x 10,000 image grew `data convert` to 20 GB)
MAX_PIXELS = 4096 * 4096


def check_size(path: Path, size: tuple[int, int], limit: int = MAX_PIXELS) -> None:
    """DataError naming the file when an image (its header's size) is larger than msde-bench decodes."""
    w, h = size
    if w * h > limit:
        raise DataError(path, f"{w} x {h} pixels ({w * h / 1e6:.0f} MP): larger than the {limit / 1e6:.1f} MP "
                              "msde-bench decodes of one face image; downscale it first")


def load_image(path: Path, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Opens and fully decodes one image as RGB (cropped to `box`, left-top-right-bottom, when given);
    grayscale (8, 16 or 32 bits), RGBA and palette images are converted. Every way an image can fail
    to load is one DataError naming the file; so is a larger image than MAX_PIXELS, found from its
    header before anything is decoded (with a `box`, the crop must be within it, and the whole image
    within PIL's own limit)."""
    with open_image(path) as im:
        if box is None:
            check_size(path, im.size)
        else:
            check_size(path, (box[2] - box[0], box[3] - box[1]))
            im = im.crop(box)  # decodes the whole image once, keeps the crop
        im.load()
        if im.mode.startswith("I") or im.mode == "F":
            return _to_8bit(im).convert("RGB")
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            return Image.alpha_composite(bg, im).convert("RGB")
        return im.convert("RGB")


@contextlib.contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """PIL's Image.open, with every way it (or reading the image inside the block) can fail turned
    into one DataError naming the file: missing, unreadable (a symlink loop, a folder), not an
    image, corrupt, or larger than PIL's decompression-bomb limit."""
    try:
        with Image.open(path) as im:
            yield im
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except UnidentifiedImageError:
        raise DataError(path, "not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as e:
        raise DataError(path, f"refused: the image claims more pixels than PIL's safety limit ({e})") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, not an image") from None
    except (OSError, SyntaxError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise DataError(path, f"cannot read the image ({reason})") from None


def _decode(path: Path, size: int) -> np.ndarray:
    im = load_image(path)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.array(im, dtype=np.uint8)  # a writable copy


class ImageCache:
    """Every image of a dataset decoded once, resized to `size`, as uint8 tensors N x 3 x H x W.

    Training and evaluation index into these tensors; nothing is decoded again during a run.
    `labels` are the pairs' class indices as the model's head sees them: positions in `classes`,
    the labels (MSD-E order) the set has (range(7) for a set with all seven, so the two agree);
    `class_ids` maps them back.
    """

    #: every class, unless the dataset lacks some (a subclass that fills the tensors itself has all seven)
    classes: tuple[int, ...] = tuple(range(NUM_CLASSES))

    def __init__(self, dataset: PairedDataset, size: int, threads: int | None = None):
        self.size = size
        self.fingerprint = dataset.fingerprint()
        n = len(dataset.pairs)
        self.classes = dataset.classes
        self.labels = torch.as_tensor(np.searchsorted(np.array(self.classes), dataset.labels))
        self.non_masked = torch.empty((n, size, size, 3), dtype=torch.uint8)
        self.masked = torch.empty((n, size, size, 3), dtype=torch.uint8)
        threads = threads or min(8, os.cpu_count() or 1)

        def work(i: int) -> None:
            p = dataset.pairs[i]
            self.non_masked[i] = torch.from_numpy(_decode(p.non_masked, size))
            self.masked[i] = torch.from_numpy(_decode(p.masked, size))

        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(work, range(n)))
        self.non_masked = self.non_masked.permute(0, 3, 1, 2).contiguous()
        self.masked = self.masked.permute(0, 3, 1, 2).contiguous()
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= NUM_CLASSES:
            raise ValueError("labels out of range")  # the readers check this first

    def __len__(self) -> int:
        return self.labels.shape[0]

    def class_ids(self, indices) -> np.ndarray:
        """Head indices (labels or predictions) as labels in the MSD-E order."""
        return np.asarray(self.classes, dtype=np.int64)[np.asarray(indices, dtype=np.int64)]

    def over_classes(self, classes) -> ImageCache:
        """This cache with its labels as positions in `classes` (a model's outputs, MSD-E labels in
        order), which must hold every class the dataset has: a model trained on more classes scored
        on this set. Itself when they are its own classes; the images are shared, never copied."""
        classes = tuple(int(c) for c in classes)
        if classes == tuple(self.classes):
            return self
        missing = sorted(set(self.classes) - set(classes))
        if missing:
            raise ValueError(f"classes {missing} of the set are not among {list(classes)}")
        view = copy.copy(self)
        view.__dict__.pop("_copies", None)
        ids = self.class_ids(self.labels.cpu().numpy())
        view.classes = classes
        view.labels = torch.as_tensor(np.searchsorted(np.array(classes), ids)).to(self.labels.device)
        return view

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded images of both views."""
        return self.non_masked.nbytes + self.masked.nbytes

    @property
    def device(self) -> torch.device:
        return self.non_masked.device

    def on(self, device: torch.device | str) -> ImageCache:
        """This cache with its tensors on `device`: itself where they already are, else a copy made
        once per device and kept (a run's folds share it)."""
        device = torch.device(device)
        if device.type == self.device.type and (device.index is None or device == self.device):
            return self
        copies = self.__dict__.setdefault("_copies", {})
        if str(device) not in copies:
            other = copy.copy(self)
            other._copies = {}
            other.non_masked, other.masked = self.non_masked.to(device), self.masked.to(device)
            other.labels = self.labels.to(device)
            copies[str(device)] = other
        return copies[str(device)]
