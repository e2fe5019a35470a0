"""Per-image predictions of a cell (`--log-samples`, as lm-evaluation-harness's `--log_samples`).

A cell run with it writes `<run_id>/fold<k>.samples.jsonl` beside its record: a header line
(format, run id, fold, the head's classes), then one line per test image (each pair twice: its
non-masked and its masked view): pair name, view, subject, label, prediction (class names), and the
class probabilities. The record names the file (`samples_file`, relative to the result's folder)
and its SHA-256 (`samples_sha256`), so an edited or truncated file is refused when read. The fold's
metrics can be recomputed from the file (`metrics`), and equal the recorded ones exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from msde_bench import CLASS_NAMES, atomic
from msde_bench import metrics as M
from msde_bench.errors import MsdeError

SAMPLES_FORMAT = "msde-bench/samples/1"
VIEWS = ("non-masked", "masked")


def rows(names: list[str], subjects: np.ndarray, idx: np.ndarray, classes: tuple[int, ...], y: np.ndarray,
         pred_nm: np.ndarray, pred_m: np.ndarray, prob_nm: np.ndarray, prob_m: np.ndarray) -> list[dict]:
    """One row per test image, pairs in `idx` order, the non-masked view first. Labels and
    predictions are MSD-E label ids (training.predict's); probabilities are over `classes`."""
    heads = [CLASS_NAMES[c] for c in classes]
    out = []
    for k, i in enumerate(np.asarray(idx)):
        for view, pred, prob in (("non-masked", pred_nm, prob_nm), ("masked", pred_m, prob_m)):
            out.append(dict(pair=names[i], view=view, subject=int(subjects[i]), label=CLASS_NAMES[int(y[k])],
                            prediction=CLASS_NAMES[int(pred[k])],
                            probs={h: round(float(p), 6) for h, p in zip(heads, prob[k])}))
    return out


def write(path: Path, header: dict, lines: list[dict]) -> str:
    """Writes the file atomically; returns its SHA-256."""
    text = "".join(json.dumps(obj, separators=(",", ":")) + "\n"
                   for obj in [dict(format=SAMPLES_FORMAT, **header), *lines])
    data = text.encode("utf-8")
    atomic.write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def read(path: Path, sha256: str | None = None) -> tuple[dict, list[dict]]:
    """(header, rows) of a samples file; an unreadable file, another format or a digest other than
    the record's (`sha256`) is an error naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise MsdeError(f"{path}: cannot read the predictions file ({e.strerror or e})") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise MsdeError(f"{path}: the predictions file is not the one the run wrote (its SHA-256 differs from "
                        "the record's): edited or truncated")
    try:
        objs = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError) as e:
        raise MsdeError(f"{path}: not a predictions file ({e})") from None
    if not objs or not isinstance(objs[0], dict) or objs[0].get("format") != SAMPLES_FORMAT:
        raise MsdeError(f"{path}: not an msde-bench predictions file (no {SAMPLES_FORMAT} header)")
    return objs[0], objs[1:]


def metrics(lines: list[dict]) -> dict:
    """The fold's metrics (metrics.fold_metrics) recomputed from the rows: each pair's two views."""
    ids = {name: i for i, name in enumerate(CLASS_NAMES)}
    by_pair: dict[str, dict] = {}
    for r in lines:
        by_pair.setdefault(r["pair"], {})[r["view"]] = r
    pairs = [p for p in by_pair.values() if set(p) == set(VIEWS)]
    if len(pairs) != len(by_pair):
        raise MsdeError("a pair in the predictions has not exactly its two views")
    y = np.array([ids[p["non-masked"]["label"]] for p in pairs])
    pred_nm = np.array([ids[p["non-masked"]["prediction"]] for p in pairs])
    pred_m = np.array([ids[p["masked"]["prediction"]] for p in pairs])
    return M.fold_metrics(y, pred_nm, pred_m)


def samples_path(cell_json: Path) -> Path:
    """`<run_id>/fold<k>.samples.jsonl` beside a cell's `fold<k>.json`."""
    return cell_json.with_name(cell_json.stem + ".samples.jsonl")
