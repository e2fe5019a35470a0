"""The built-in dataset loaders: `synth:VARIANT` (the embedded set), a public dataset converted once
into the cache (`FORMAT:SRC[?KEY=VALUE&...]`, one loader per `data convert` format), and a folder in
the MSD-E layout.

A loader is called as `loader(data, progress=callback)`; `msde_bench.factory.load_dataset` picks it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

from filelock import FileLock

from msde_bench.data.msde import CONVERTING, read_msde
from msde_bench.data.pairs import PairedDataset
from msde_bench.data.synth import ensure_cached, variant_config
from msde_bench.errors import DataError, MsdeError
from msde_bench.home import cache_home


def load_synth(data: str, *, seed: int = 0, progress=None) -> PairedDataset:
    """`synth:VARIANT` (full, small, tiny), generated once into the cache."""
    variant = data.split(":", 1)[1] if ":" in data else "small"
    cfg = variant_config(variant, seed=seed)
    path = ensure_cached(cfg, progress=progress)
    ds = read_msde(path, name=f"synth-{variant}")
    ds.source = f"synth:{variant}"
    return ds


def load_folder(data: str, **_) -> PairedDataset:
    """A folder in the MSD-E layout (MSD-E/, MSD-ME/, Paired_files.txt)."""
    return read_msde(Path(data))


# ------------------------------------------------------------------------------------------
# public datasets converted once into the cache: --data FORMAT:SRC[?KEY=VALUE&...]

#: the settings of `data convert` a --data string may give after `?` (`map` repeatable), with defaults
CONVERT_KEYS = {"seed": "0", "landmarks": "auto", "mask-style": "random", "subject-pattern": None, "map": None,
                "name": None, "allow-skips": "false", "views": None}


def parse_converted(data: str) -> tuple[str, Path, dict]:
    """(format, source folder or file, settings) of `FORMAT:SRC[?KEY=VALUE&KEY=VALUE...]`. Values are
    percent-decoded (write `%26` for `&` and `%3F` for `?` inside a --subject-pattern); `map` may be
    given several times (`map=contempt=drop`)."""
    fmt, _, rest = data.partition(":")
    src, _, query = rest.partition("?")
    if not src:
        raise MsdeError(f"--data {data}: expected {fmt}:SRC (the folder or file of the public dataset)")
    settings: dict = {"map": []}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        key = unquote(key).strip()
        if not sep or key not in CONVERT_KEYS:
            raise MsdeError(f"--data {data}: {part!r} is not KEY=VALUE with KEY one of {', '.join(CONVERT_KEYS)}")
        if key == "map":
            settings["map"].append(unquote(value))
        else:
            settings[key] = unquote(value)
    for key, default in CONVERT_KEYS.items():
        settings.setdefault(key, default)
    try:
        settings["seed"] = int(settings["seed"])
    except ValueError:
        raise MsdeError(f"--data {data}: seed={settings['seed']!r} is not an integer") from None
    if settings["allow-skips"] not in ("true", "false"):
        raise MsdeError(f"--data {data}: allow-skips={settings['allow-skips']!r}: use true or false")
    return fmt, Path(os.path.expanduser(src)), settings


def converted_name(data: str) -> str:
    """The dataset name of `FORMAT:SRC[?settings]` (`name=`, else `m-<SRC's folder name>`), known
    without converting anything: what its run ids are made of."""
    _, src, settings = parse_converted(data)
    return settings["name"] or f"m-{src.resolve().stem.lower()}"


def _source_listing(src: Path) -> str:
    """A digest of every file under SRC (relative path and size): a changed source converts again."""
    h = hashlib.sha256()
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    for p in files:
        h.update(f"{p.relative_to(src).as_posix() if p != src else p.name}|{p.stat().st_size}\n".encode())
    return h.hexdigest()


def load_converted(data: str, *, progress=None) -> PairedDataset:
    """`FORMAT:SRC[?settings]`: the public dataset at SRC converted as `msde-bench data convert
    --format FORMAT` would (settings: seed, landmarks, mask-style, subject-pattern, map, views, allow-skips),
    once, into `$MSDE_BENCH_HOME/datasets/`, and reused while the source files, the settings and the
    mask drawing (convert.MASKS_VERSION) stay the same. Its name is `m-<SRC's folder name>` (or
    `name=`); result files record the --data string as its root, so that committed results carry no
    machine's path. A conversion that skipped items fails naming its skipped.txt, unless allow-skips=true."""
    from msde_bench.data.convert import MASKS_VERSION, convert, parse_class_map
    from msde_bench.data.masking import effective_placement

    fmt, src, settings = parse_converted(data)
    if not src.exists():
        raise DataError(src, f"source of --data {data} not found")
    placement = effective_placement(settings["landmarks"])
    # views: in the key only when given, so that the conversions cached before it existed stay valid
    key = dict(format=fmt, source=str(src.resolve()), files=_source_listing(src), masks=MASKS_VERSION,
               placement=placement, **{k: v for k, v in settings.items() if k not in ("name", "allow-skips")
                                       and not (k == "views" and v is None)})
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    name = converted_name(data)
    path = cache_home() / "datasets" / f"converted-{fmt}-{src.resolve().stem.lower()}-{digest}"
    if not (path / "meta.json").is_file() or (path / CONVERTING).exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):  # one process converts; the others wait and read it
            if not (path / "meta.json").is_file() or (path / CONVERTING).exists():
                if progress is not None:
                    progress(0, 0)
                report = convert(fmt, src, path, seed=settings["seed"], mask_style=settings["mask-style"],
                                 landmarks=settings["landmarks"], subject_pattern=settings["subject-pattern"],
                                 class_map=parse_class_map(settings["map"]), views=settings["views"],
                                 progress=(lambda n, total: progress(n, total)) if progress is not None else None)
                if report.skipped and settings["allow-skips"] != "true":
                    shutil.move(str(path / "skipped.txt"), str(path) + ".skipped.txt")
                    shutil.rmtree(path)
                    raise DataError(Path(str(path) + ".skipped.txt"), f"converting {src} skipped "
                                    f"{len(report.skipped)} items (first: {report.skipped[0]}); fix the source or add "
                                    "allow-skips=true to --data")
    ds = read_msde(path, name=name)
    ds.source = data
    return ds
