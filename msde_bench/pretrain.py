"""Face-pretrained starts made by the harness: `--init 'pretrain:DATA[#KEY=VALUE&...]'`.

The MSD-E paper, and every FER method, starts from a model trained on a large face set; nothing can
be downloaded here, so the harness trains that model itself: the run's model, as a mixed baseline
(both views) on the training pairs of DATA (its official train split if it has one, else every
pair), under a recipe (default `real48`), once, cached under `$MSDE_BENCH_HOME/pretrained/` (keyed by
that spec and DATA's fingerprint; a file lock lets one process train it while the others wait, as
for distill teachers). Every fold of the run then starts from its trunk (the head is dropped, as for
any `--init`). Settings after `#`: `recipe`, `epochs`, `seed` (default 0), `train_on` (mixed,
non-masked or masked). The spec keeps the string (so it names the run); every fold record and the
result record `pretrained`: the file's SHA-256, its dataset (name, fingerprint, training pairs),
the pretraining spec and its training time. DATA must not be the run's data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from msde_bench import cellstate as CS
from msde_bench.checkpoints import cpu_state, file_sha256, load_torch, save_torch_atomic
from msde_bench.choices import CHECKPOINT_MINUTES
from msde_bench.data.pairs import ImageCache, PairedDataset
from msde_bench.errors import MsdeError
from msde_bench.factory import other_dataset, paradigm_class
from msde_bench.home import cache_home
from msde_bench.spec import PRETRAIN_PREFIX, RECIPES, RunSpec, derive_seed, is_pretrain, make_spec
from msde_bench.spec_build import canonical_spec

PRETRAINED_FORMAT = "msde-bench/pretrained/1"
SETTINGS = {"recipe": "real48", "epochs": None, "seed": "0", "train_on": "mixed"}


def parse(init: str) -> tuple[str, dict]:
    """(DATA, settings) of a `pretrain:DATA[#KEY=VALUE&...]` string; unknown or bad settings are errors."""
    body = init[len(PRETRAIN_PREFIX):]
    data, _, query = body.partition("#")
    if not data:
        raise MsdeError(f"--init {init}: name the set to pretrain on (pretrain:DATA)")
    settings = dict(SETTINGS)
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or key not in SETTINGS:
            raise MsdeError(f"--init {init}: unknown setting {item!r}; settings are {', '.join(SETTINGS)}")
        settings[key] = value
    if settings["recipe"] not in RECIPES or settings["recipe"] == "official":
        raise MsdeError(f"--init {init}: recipe {settings['recipe']!r}: choose one of "
                        f"{', '.join(r for r in RECIPES if r != 'official')}")
    if settings["train_on"] not in ("mixed", "non-masked", "masked"):
        raise MsdeError(f"--init {init}: train_on {settings['train_on']!r}: choose mixed, non-masked or masked")
    for key in ("epochs", "seed"):
        if settings[key] is not None and not str(settings[key]).isdigit():
            raise MsdeError(f"--init {init}: {key} {settings[key]!r}: expected a whole number")
    return data, settings


def pretrain_spec(run: RunSpec, init: str) -> tuple[str, RunSpec]:
    """The pretraining run's DATA and spec: the run's model, size, precision and device."""
    data, s = parse(init)
    spec = make_spec(model=run.model, paradigm="baseline", recipe=s["recipe"],
                     paper_lr=paradigm_class("baseline").paper_lr, data=data,
                     options={"train_on": s["train_on"]}, image_size=run.image_size, precision=run.precision,
                     device=run.device, seed=int(s["seed"]), epochs=int(s["epochs"]) if s["epochs"] else None,
                     folds=1, protocol="clean")
    return data, canonical_spec(spec)


def training_pairs(dataset: PairedDataset) -> np.ndarray:
    """The official train split when the set has one, else every pair."""
    splits = dataset.official_splits()
    if splits is not None and "train" in splits:
        return np.array([i for i, s in enumerate(splits) if s == "train"])
    return np.arange(len(dataset))


def check(run: RunSpec, dataset: PairedDataset) -> PairedDataset | None:
    """Before anything trains: the pretraining set loads and is not the run's set. Returns it."""
    if not is_pretrain(run.init):
        return None
    data, _ = pretrain_spec(run, run.init)
    pre = other_dataset(data)
    if pre.fingerprint() == dataset.fingerprint():
        raise MsdeError(f"--init {run.init}: pretrains on the run's own images ({dataset.name}); a pretrained "
                        "start must come from another set")
    # the same faces under other names, subjects or masks (PairedDataset.face_digests: the non-masked bytes)
    own = set(dataset.face_digests())
    faces = pre.face_digests()
    shared = [pre.pairs[i].name for i in training_pairs(pre) if faces[i] in own]
    if shared:
        raise MsdeError(f"--init {run.init}: its training pairs hold {len(shared)} of the run's own images "
                        f"(first: {', '.join(shared[:3])}); a pretrained start must not have seen the faces it is "
                        "tested on")
    return pre


#: the correlation of two faces' thumbnails (PairedDataset.face_thumbnails) from which they are called the
#: same face: re-encoded, resized copies of CK+ faces give 0.999 or more, a contrast-stretched copy of a
#: CK+ frame in FER-2013's training split 0.981, and the 28,709 other FER-2013 faces against CK+'s 927 at
#: most 0.94
NEAR_CORRELATION = 0.97


def near_duplicates(run: RunSpec, dataset: PairedDataset, pre: PairedDataset) -> str | None:
    """A warning when the pretraining set's training faces hold near-copies of the run's faces, which
    the byte digests of `check` cannot see (the same face re-encoded, resized or contrast-stretched):
    the count and the first pairs; None when there are none. Decodes both sets once (about 13 s for
    FER-2013 against CK+ on 2 loaded cores)."""
    own = dataset.face_thumbnails()
    idx = training_pairs(pre)
    theirs = pre.face_thumbnails()[idx]
    found = []
    for start in range(0, len(theirs), 4096):
        corr = theirs[start:start + 4096] @ own.T
        for i in np.nonzero(corr.max(axis=1) >= NEAR_CORRELATION)[0]:
            j = int(np.argmax(corr[i]))
            found.append(f"{pre.pairs[idx[start + i]].name} ~ {dataset.pairs[j].name} (r = {corr[i, j]:.3f})")
    if not found:
        return None
    return (f"--init {run.init}: {len(found)} of its training faces look like copies of the run's own faces "
            f"(thumbnail correlation >= {NEAR_CORRELATION}; {'; '.join(found[:3])}): the start may have seen "
            "those test faces")


def ensure(run: RunSpec, device: torch.device, fit: Callable, console=None,
           checkpoint_minutes: float = CHECKPOINT_MINUTES) -> tuple[Path, dict]:
    """The cached pretrained model of `run.init` (trained now by `fit(spec, cache, idx, device,
    seed, checkpoint=...) -> (method, timing)` if it is not cached), and what results record of it.
    The pretraining checkpoints beside the cache file (`<key>.ckpt`, msde_bench.cellstate: at every
    epoch's end and every `checkpoint_minutes`), and a stopped one continues from there."""
    data, spec = pretrain_spec(run, run.init)
    dataset = other_dataset(data)
    key = hashlib.sha256(json.dumps(dict(spec=spec.to_dict(), data=dataset.fingerprint()),
                                    sort_keys=True).encode()).hexdigest()[:16]
    path = cache_home() / "pretrained" / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.is_file():
            idx = training_pairs(dataset)
            if console is not None:
                console.print(f"pretraining {spec.model} on {len(idx)} training pairs of {dataset.name} ({data}; "
                              f"recipe {spec.recipe}, {spec.epochs} epochs, once: cached for every fold and run)")
            cache = ImageCache(dataset, spec.image_size)
            say = console.print if console is not None else (lambda text: None)
            ck = CS.Checkpoint(path.with_suffix(".ckpt"), dict(spec=spec.to_dict(), fingerprint=dataset.fingerprint(),
                                                               fold=None, phase="pretrain"),
                               CS.Policy(resume=True, minutes=checkpoint_minutes), say)
            method, timing = fit(spec, cache, idx, device, derive_seed(spec.seed, "pretrain"), checkpoint=ck)
            meta = dict(init=run.init, dataset=dict(name=dataset.name, root=dataset.source or str(dataset.root),
                                                    fingerprint=dataset.fingerprint(), n_train_pairs=int(len(idx)),
                                                    classes=list(dataset.describe()["classes"])),
                        spec=spec.to_dict(), train_seconds=float(timing["train_seconds"]))
            save_torch_atomic(path, dict(format=PRETRAINED_FORMAT, meta=meta, state_dict=cpu_state(method)))
            ck.remove()
    obj = load_torch(path)
    if not isinstance(obj, dict) or obj.get("format") != PRETRAINED_FORMAT:
        raise MsdeError(f"{path}: not a pretrained model file of msde-bench; delete it to pretrain again")
    about = dict(obj["meta"], file=path.name, sha256=file_sha256(path))
    return path, about
