"""RunSpec: everything a run needs, frozen and serialisable; the recipes; per-part seeds."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from msde_bench.choices import augment_steps
from msde_bench.errors import MsdeError, SpecError
from msde_bench.protocol import PROTOCOLS

#: The training setups. `paper` is the reference code's (the MSD-E paper's training setup): Adam, weight decay
#: 1e-4, batch 96, 224 px, 25 epochs (the reference asks for 25 and runs 24: quirk_24_epochs),
#: lr / 10 at the start of epochs 15 and 22 (after 14 and 21 finished epochs), 10 folds, the
#: reference augmentation list; the learning rate is the paradigm's `paper_lr` (1e-3 for
#: baseline and contrastive, 1e-2 for distill). `quick` is sized for a 2-core CPU:
#: the small synthetic set at 48 px, 5 folds, 6 epochs, horizontal flips only (the reference
#: augmentation slows convergence in so short a schedule); the default `msde-bench run` finishes
#: in under 3 minutes there (README, "Speed"). `real48` is the CPU-sized recipe for real faces: the quick
#: recipe's training at 48 px (the native size of CK+ and FER-2013 crops) under the protocol's 10 folds;
#: a CK+ fold (834 training pairs) trains in about 40 s on 2 cores. The real-face leaderboard uses it.
#:
#: `budget` says how paradigms are made comparable (BUDGETS): `paper` keeps the reference's equal
#: epochs, `quick` gives every paradigm equal optimiser steps and equal images per step.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(lr=1e-3, weight_decay=1e-4, batch_size=96, image_size=224, epochs=25, milestones=(14, 21),
                  gamma=0.1, folds=10, augment="paper", data="synth:full", optimizer="adam", schedule="multistep",
                  budget="epochs"),
    "quick": dict(lr=2e-3, weight_decay=1e-4, batch_size=32, image_size=48, epochs=6, milestones=(5,),
                  gamma=0.1, folds=5, augment="flip", data="synth:small", optimizer="adam", schedule="multistep",
                  budget="steps"),
    "real48": dict(lr=2e-3, weight_decay=1e-4, batch_size=32, image_size=48, epochs=6, milestones=(5,),
                   gamma=0.1, folds=10, augment="flip", data="synth:small", optimizer="adam", schedule="multistep",
                   budget="steps"),
}

#: the recipes sized for a CPU: bf16 autocast by default where the CPU has bf16 hardware
#: (device.default_precision)
CPU_RECIPES = ("quick", "real48")

#: How a run's length is counted, so that paradigms can be compared (training.budget_plan):
#: - `epochs`: `epochs` passes over the paradigm's items (pairs, or pair views for the mixed
#:   baseline) in batches of `batch_size` items: the reference code's rule. A contrastive batch of
#:   32 pairs is 64 images, so contrastive takes half the optimiser steps of the mixed baseline,
#:   and distill's student sees half its images.
#: - `steps`: every paradigm takes the mixed baseline's optimiser steps with `batch_size` images
#:   per step: an "epoch" is as many training images as the fold has (both views of every pair).
#:   Contrastive batches hold batch_size / 2 pairs; single-view paradigms (baseline on one view,
#:   distill) pass over their pairs twice per epoch.
BUDGETS = ("steps", "epochs")

#: --select-on: where each fold chooses among an option's candidate values (msde_bench.selection)
SELECT_ON = ("val",)

#: --optimizer: torch.optim.Adam, AdamW (decoupled weight decay) or SGD with momentum (training.make_optimizer)
OPTIMIZERS = ("adam", "adamw", "sgd")

#: --schedule (training.make_scheduler): multistep (lr x gamma at each of `milestones`), exponential
#: (x gamma every epoch), step (x gamma every `step_size` epochs), all stepped at an epoch's end;
#: cosine (from lr to 0 over the run, after any warm-up) and onecycle (torch's OneCycleLR: up from
#: lr / 25 to lr over the warm-up, default 30 % of the run, then cosine down to lr / 1e4), stepped
#: every optimiser step
SCHEDULES = ("multistep", "exponential", "step", "cosine", "onecycle")

#: --tta: the test-time augmentations a run can score beside its plain numbers (training.tta_views)
TTA_KINDS = ("flip", "10crop")

#: the recipe's training knobs that `run` and `compare` override by a flag of the same name (--weight-decay,
#: ...) and a grid by a key: one list for the command line, the grid keys and the run labels
TRAINING_FIELDS = ("optimizer", "weight_decay", "schedule", "warmup_epochs", "augment", "label_smoothing", "ema_decay",
                   "mixup", "cutmix", "tta")

#: the fields a spec leaves out of its dict (and so of its digest) at these values
OPTIONAL_DEFAULTS = {"warmup_epochs": 0.0, "label_smoothing": 0.0, "ema_decay": 0.0, "mixup": 0.0, "cutmix": 0.0,
                     "tta": ""}


def tta_kinds(value: str) -> tuple[str, ...]:
    """The kinds of a --tta value ("flip", "10crop" or "flip,10crop"; "" none); ValueError naming
    what is wrong."""
    if not value:
        return ()
    kinds = tuple(k.strip() for k in str(value).split(","))
    unknown = [k for k in kinds if k not in TTA_KINDS]
    if unknown:
        raise ValueError(f"unknown test-time augmentation {unknown[0]!r}; use {' or '.join(TTA_KINDS)}, or both "
                         "joined by a comma")
    if kinds != tuple(k for k in TTA_KINDS if k in kinds):
        raise ValueError(f"write each once, in the order {','.join(TTA_KINDS)}")
    return kinds

#: --precision: fp32, or autocast to bf16 (CUDA and CPU) or fp16 (CUDA, with a gradient scaler)
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class RunSpec:
    model: str = "resnet18"
    paradigm: str = "baseline"
    data: str = "synth:small"  # "synth:VARIANT" or a path to an MSD-E-layout folder
    protocol: str = "clean"  # clean | faithful | holdout (msde_bench.protocol)
    folds: int = 5
    run_folds: tuple[int, ...] = ()  # empty: every fold
    recipe: str = "quick"
    epochs: int = 6
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    image_size: int = 48
    milestones: tuple[int, ...] = (5,)
    gamma: float = 0.1
    augment: str = "flip"
    optimizer: str = "adam"  # adam | sgd
    momentum: float = 0.9  # sgd only
    schedule: str = "multistep"  # multistep (milestones, gamma) | exponential (gamma per epoch) | step (step_size, gamma)
    step_size: int = 0
    seed: int = 0
    device: str = "cpu"
    options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    init: str | None = None
    pretrained: bool = False
    #: BUDGETS; a spec that names none (results written before the rule existed) ran under `epochs`
    budget: str = "epochs"
    #: PRECISIONS: fp32, or bf16/fp16 autocast (training and evaluation); results written before the
    #: field existed ran bf16 on CUDA and fp32 elsewhere (spec_build.complete_spec)
    precision: str = "fp32"
    #: cross-dataset runs (`--test-data`): each fold's model is scored on this set instead of its own
    #: test fold (recorded beside it as `in_domain`). None (every run before it) is left out of the
    #: dict, so specs without it keep their digests (run ids)
    test_data: str | None = None
    #: nested weight selection (`--opt KEY=V1,V2,... --select-on val`, msde_bench.selection): the
    #: candidate values of options, as ((key, (value, ...)), ...); each fold chooses among them on a
    #: validation split of its own training side and trains once more with its choice. `select_on`
    #: is "val" with candidates and None without. Both are left out of the dict when unset, so specs
    #: without them keep their digests (run ids)
    candidates: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    select_on: str | None = None
    #: the training knobs of issue 37's recipe search (0.11), each left out of the dict at its default
    #: (OPTIONAL_DEFAULTS), so specs without them keep their digests (run ids):
    #: - warmup_epochs: a linear warm-up of the learning rate from 1 % over this many epochs, stepped
    #:   every optimiser step, before the schedule (cosine, onecycle: the warm-up is part of the cycle)
    #: - label_smoothing: the cross-entropy's label smoothing (methods that declare `applies_label_options`)
    #: - ema_decay: keep an exponential moving average of the weights (and buffers), updated after
    #:   every optimiser step with this decay; the fold is evaluated, saved and recorded with it
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    ema_decay: float = 0.0
    #: --mixup / --cutmix: the Beta(a, a) of mixing each training batch with a permutation of itself
    #: (0: off; both on: each batch one or the other, p 0.5, as timm's Mixup); the same partner,
    #: weight and box for both views of a pair (LossState.mix)
    mixup: float = 0.0
    cutmix: float = 0.0
    #: --tta: test-time augmentations scored beside the fold's numbers (never instead of them), each
    #: on the test split (and a holdout's validation split) as the fold record's `tta`
    tta: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["test_data"] is None:
            del d["test_data"]
        if not self.candidates:
            del d["candidates"]
        else:
            d["candidates"] = {k: list(v) for k, v in self.candidates}
        if d["select_on"] is None:
            del d["select_on"]
        for key, default in OPTIONAL_DEFAULTS.items():
            if d[key] == default:
                del d[key]
        d["run_folds"] = list(self.run_folds)
        d["milestones"] = list(self.milestones)
        d["options"] = {k: v for k, v in self.options}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown spec fields {sorted(unknown)}")
        d = dict(d)
        d["run_folds"] = tuple(d.get("run_folds", ()))
        d["milestones"] = tuple(d.get("milestones", ()))
        d["options"] = tuple(sorted(dict(d.get("options", {})).items()))
        d["candidates"] = tuple(sorted((k, tuple(v)) for k, v in dict(d.get("candidates", {})).items()))
        return cls(**d)

    def __post_init__(self) -> None:
        for problem in self.problems():
            raise SpecError(problem)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.budget not in BUDGETS:
            raise ValueError(f"unknown budget {self.budget!r}; choose one of {', '.join(BUDGETS)}")

    def problems(self) -> list[str]:
        """The settings out of range, each as the one-line error that names its option."""
        out = []

        def number(name: str, value, low: float, *, strict: bool = False, kind=(int, float)) -> None:
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool) or not isinstance(value, kind):
                out.append(f"{flag} {value!r}: expected {'an integer' if kind is int else 'a number'}")
            elif not math.isfinite(value):
                out.append(f"{flag} {value}: must be a finite number")
            elif value < low or (strict and value == low):
                out.append(f"{flag} {value}: must be {'>' if strict else '>='} {low:g}")

        number("epochs", self.epochs, 1, kind=int)
        number("batch_size", self.batch_size, 2, kind=int)  # batch norm cannot train on one image
        number("folds", self.folds, 1, kind=int)
        number("image_size", self.image_size, 1, kind=int)
        number("lr", self.lr, 0, strict=True)
        number("weight_decay", self.weight_decay, 0)
        number("momentum", self.momentum, 0)
        number("gamma", self.gamma, 0, strict=True)
        number("step_size", self.step_size, 0, kind=int)
        number("seed", self.seed, 0, kind=int)
        number("warmup_epochs", self.warmup_epochs, 0)
        number("label_smoothing", self.label_smoothing, 0)
        number("ema_decay", self.ema_decay, 0)
        number("mixup", self.mixup, 0)
        number("cutmix", self.cutmix, 0)
        for name in ("label_smoothing", "ema_decay"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1:
                out.append(f"--{name.replace('_', '-')} {value}: must be below 1")
        if isinstance(self.warmup_epochs, (int, float)) and isinstance(self.epochs, int) \
                and self.warmup_epochs >= self.epochs > 0:
            out.append(f"--warmup-epochs {self.warmup_epochs:g}: must be fewer than the run's {self.epochs} epochs")
        if self.optimizer not in OPTIMIZERS:
            out.append(f"--optimizer {self.optimizer}: choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            out.append(f"--schedule {self.schedule}: choose one of {', '.join(SCHEDULES)}")
        try:
            augment_steps(self.augment)
        except ValueError as e:
            out.append(f"--augment {self.augment}: {e}")
        try:
            tta_kinds(self.tta)
        except ValueError as e:
            out.append(f"--tta {self.tta}: {e}")
        if self.tta and self.protocol == "faithful":
            out.append(f"--tta {self.tta}: the faithful protocol scores the epoch it picks on the test fold; "
                       "test-time augmentation is offered under clean and holdout only")
        if isinstance(self.seed, int) and self.seed > MAX_SEED:
            out.append(f"--seed {self.seed}: must be <= {MAX_SEED} (numpy seeds are 32-bit)")
        if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in self.milestones):
            out.append(f"milestones {list(self.milestones)}: must be epochs >= 1")
        if self.select_on not in (None, *SELECT_ON):
            out.append(f"--select-on {self.select_on}: choose one of {', '.join(SELECT_ON)}")
        elif self.candidates and self.select_on is None:
            key, values = self.candidates[0]
            out.append(f"--opt {key}={','.join(map(str, values))}: a list of candidate values needs --select-on val "
                       "(each fold then chooses one on a validation split of its training subjects)")
        elif self.select_on and not self.candidates:
            out.append(f"--select-on {self.select_on}: no option has candidates to choose from (give one as "
                       "--opt KEY=V1,V2,...)")
        for key, values in self.candidates:
            if len(values) < 2:
                out.append(f"--opt {key}={','.join(map(str, values))}: a list of candidates needs at least two "
                           "different values")
        return out

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def run_id(self, dataset_name: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-." else "-" for c in f"{self.model}-{self.paradigm}-{dataset_name}")
        return f"{safe}-{self.digest()}"

    def with_(self, **kw) -> RunSpec:
        return replace(self, **kw)

    def whole(self) -> RunSpec:
        """The spec of the whole run: every fold (a `--fold k` run is one cell of it)."""
        return replace(self, run_folds=())


#: `--init pretrain:DATA[#...]`: the harness's own pretraining on another set (msde_bench.pretrain)
PRETRAIN_PREFIX = "pretrain:"


def is_pretrain(init: str | None) -> bool:
    """Whether an --init value asks for the harness's pretraining (it stays as written in the spec;
    a file is recorded by its absolute path)."""
    return bool(init) and str(init).startswith(PRETRAIN_PREFIX)


def derive_seed(seed: int, *parts) -> int:
    """A seed for one part of a run (a fold, a teacher), independent of the order parts run in."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


#: the largest --seed: numpy's generators (the fold split) take 32-bit seeds
MAX_SEED = 2**32 - 1

#: every --recipe name: the two presets and the method's own published recipe
RECIPE_NAMES = (*RECIPES, "official")
_RECIPE_KEYS = ("lr", "weight_decay", "batch_size", "image_size", "epochs", "milestones", "gamma", "folds", "augment",
                "optimizer", "momentum", "schedule", "step_size", "budget", "warmup_epochs", "label_smoothing",
                "ema_decay", "mixup", "cutmix")


def make_spec(*, model: str, paradigm: str, recipe: str, paper_lr: float | None = None, data: str | None = None,
              options: dict | None = None, official: dict | None = None, **overrides) -> RunSpec:
    """A RunSpec from a recipe, the paradigm's paper learning rate and explicit overrides (None
    means "the recipe's value"). `official` is the method's official recipe: under
    `recipe="official"` it overrides the paper recipe (protocol, data and folds stay the paper's)."""
    if recipe == "official":
        if not official:
            raise MsdeError(f"model {model!r} has no official recipe; use --recipe paper or quick")
        unknown = set(official) - set(_RECIPE_KEYS)
        if unknown:
            raise MsdeError(f"model {model!r}: official recipe has unknown keys {sorted(unknown)}")
        r = {**RECIPES["paper"], **official}
    else:
        r = RECIPES[recipe]
    options = dict(options or {})
    defaults = RunSpec()
    values = {k: r.get(k, getattr(defaults, k)) for k in _RECIPE_KEYS}
    if recipe == "paper" and paper_lr is not None:
        values["lr"] = paper_lr
    if recipe in ("paper", "official") and options.get("quirk_24_epochs") and "epochs" not in (official or {}):
        values["epochs"] = 24
    epochs = overrides.get("epochs")
    if epochs is not None and overrides.get("milestones") is None and epochs != values["epochs"]:
        # --epochs keeps the schedule's shape: milestones and step size scale with the epochs
        ratio = epochs / values["epochs"]
        values["milestones"] = tuple(max(1, round(m * ratio)) for m in values["milestones"])
        values["step_size"] = max(1, round(values["step_size"] * ratio)) if values["step_size"] else 0
        values["warmup_epochs"] = values["warmup_epochs"] * ratio
    for k, v in overrides.items():
        if v is not None:
            values[k] = v
    values["milestones"] = tuple(values["milestones"])
    values["run_folds"] = tuple(sorted(set(values.get("run_folds", ()))))
    return RunSpec(model=model, paradigm=paradigm, data=data or r.get("data", RECIPES["paper"]["data"]), recipe=recipe,
                   options=tuple(sorted(options.items())), **values)
