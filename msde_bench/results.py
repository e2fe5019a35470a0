"""The result file: schema, atomic write, load and validation."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from msde_bench.errors import ResultError

SCHEMA = "msde-bench/result/1"

_FOLD_FIELDS = {
    "fold": int, "test_subjects": list, "n_test_pairs": int, "acc_non_masked": float, "acc_masked": float,
    "acc_overall": float, "mask_gap": float, "macro_f1_non_masked": float, "macro_f1_masked": float, "pair_agreement": float,
    "per_class": dict, "confusion_non_masked": list, "confusion_masked": list, "train_seconds": float,
    "train_images_per_second": float,
}
_TOP_FIELDS = {
    "schema": str, "run_id": str, "created": str, "msde_bench_version": str, "spec": dict, "dataset": dict,
    "protocol": dict, "env": dict, "folds": list, "summary": dict,
}
_FRACTIONS = ("acc_non_masked", "acc_masked", "acc_overall", "macro_f1_non_masked", "macro_f1_masked",
              "pair_agreement")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Writes JSON to a temporary file in the same folder, fsyncs it and renames it into place, so
    a reader never sees a half-written file and a crash never destroys the previous version."""
    from msde_bench.atomic import write_text_atomic

    return write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")


def _type_ok(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def validate(obj: Any, path: str | os.PathLike = "<result>") -> dict:
    """Checks a loaded result against the schema; raises ResultError naming the file and field."""
    if not isinstance(obj, dict):
        raise ResultError(path, "not a JSON object")
    if obj.get("schema") != SCHEMA:
        raise ResultError(path, f"schema is {obj.get('schema')!r}, expected {SCHEMA!r} (not an msde-bench result)")
    for key, kind in _TOP_FIELDS.items():
        if key not in obj:
            raise ResultError(path, f"missing field {key!r}")
        if not _type_ok(obj[key], kind):
            raise ResultError(path, f"field {key!r} should be a {kind.__name__}")
    if not obj["folds"]:
        raise ResultError(path, "no folds")
    for i, fold in enumerate(obj["folds"]):
        if not isinstance(fold, dict):
            raise ResultError(path, f"folds[{i}] is not an object")
        for key, kind in _FOLD_FIELDS.items():
            if key not in fold:
                raise ResultError(path, f"folds[{i}] is missing {key!r}")
            if not _type_ok(fold[key], kind):
                raise ResultError(path, f"folds[{i}].{key} should be a {kind.__name__}")
        for key in _FRACTIONS:
            if not 0.0 <= fold[key] <= 1.0:
                raise ResultError(path, f"folds[{i}].{key} = {fold[key]} is not a fraction in [0, 1]")
    for key in ("name", "fingerprint", "n_pairs", "n_subjects"):
        if key not in obj["dataset"]:
            raise ResultError(path, f"dataset is missing {key!r}")
    for key in ("name", "version", "folds", "split", "selection"):
        if key not in obj["protocol"]:
            raise ResultError(path, f"protocol is missing {key!r}")
    for key, stat in obj["summary"].items():
        if not isinstance(stat, dict) or not {"mean", "std", "n"} <= set(stat):
            raise ResultError(path, f"summary.{key} should have mean, std and n")
    try:
        from msde_bench.spec import RunSpec

        RunSpec.from_dict(obj["spec"])
    except (TypeError, ValueError) as e:
        raise ResultError(path, f"spec is not a valid run spec ({e})") from None
    return obj


def load(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultError(path, "file not found") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ResultError(path, f"not valid JSON ({e})") from None
    return validate(obj, path)
