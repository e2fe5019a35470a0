"""Training and evaluating one model on one fold: device, optimiser and schedule, the Trainer
(paired batches, train step, per-epoch loss terms), predict/evaluate."""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from msde_bench import budget
from msde_bench import metrics as M
from msde_bench.cellstate import Checkpoint, random_states, set_random_states
from msde_bench.checkpoints import cpu_state
from msde_bench.data.pairs import ImageCache
from msde_bench.data.transforms import PairedAugment, crop_padding
from msde_bench.device import autocast, channels_last, check_precision, compile_setting, optimizer_impl
from msde_bench.errors import MsdeError
from msde_bench.models.base import Method, input_normalisation
from msde_bench.paradigms.base import BATCH_VIEWS, Batch, Paradigm
from msde_bench.spec import OPTIMIZERS, SCHEDULES, TTA_KINDS, RunSpec, tta_kinds

if TYPE_CHECKING:
    from msde_bench.progress import RunProgress

#: the warm-up's first learning rate, as a fraction of the schedule's (RunSpec.warmup_epochs)
WARMUP_START = 0.01


def make_optimizer(spec: RunSpec, groups: list[dict], device: torch.device | None = None) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over the method's parameter groups; a group's `lr_scale` multiplies the lr;
    fused where optimizer_impl says so."""
    groups = [dict(g) for g in groups]
    for g in groups:
        g["lr"] = spec.lr * g.pop("lr_scale", 1.0)
    fused = {"fused": True} if device is not None and optimizer_impl(device) == "fused" else {}
    if spec.optimizer == "adam":
        return torch.optim.Adam(groups, lr=spec.lr, weight_decay=spec.weight_decay, **fused)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay, **fused)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay, **fused)
    raise MsdeError(f"unknown optimizer {spec.optimizer!r}; use {', '.join(OPTIMIZERS)}")


def make_scheduler(spec: RunSpec, optimizer: torch.optim.Optimizer):
    """The schedule stepped once per epoch (multistep, exponential, step), or None for the ones
    stepped every optimiser step (make_step_scheduler)."""
    sched = torch.optim.lr_scheduler
    if spec.schedule == "multistep":
        return sched.MultiStepLR(optimizer, list(spec.milestones), spec.gamma)
    if spec.schedule == "exponential":
        return sched.ExponentialLR(optimizer, spec.gamma)
    if spec.schedule == "step":
        return sched.StepLR(optimizer, max(1, spec.step_size), spec.gamma)
    if spec.schedule in SCHEDULES:
        return None
    raise MsdeError(f"unknown schedule {spec.schedule!r}; use {', '.join(SCHEDULES)}")


def warmup_steps(spec: RunSpec, steps_per_epoch: int) -> int:
    """The optimiser steps of the run's warm-up (RunSpec.warmup_epochs; 0: none)."""
    return round(spec.warmup_epochs * steps_per_epoch) if spec.warmup_epochs > 0 else 0


def make_step_scheduler(spec: RunSpec, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """What is stepped after every optimiser step, or None: cosine (a linear warm-up from
    WARMUP_START x lr over the warm-up's steps, then half a cosine from lr to 0 at the run's last
    step), onecycle (torch's OneCycleLR over the run: its warm-up the run's, default 30 %), and
    for the epoch schedules a linear warm-up (torch's LinearLR, which composes with them) when the
    spec asks for one."""
    sched = torch.optim.lr_scheduler
    total = max(1, spec.epochs * steps_per_epoch)
    warm = min(warmup_steps(spec, steps_per_epoch), total - 1)
    if spec.schedule == "cosine":
        def factor(step: int) -> float:
            if step < warm:
                return WARMUP_START + (1 - WARMUP_START) * step / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        return sched.LambdaLR(optimizer, factor)
    if spec.schedule == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
                                pct_start=warm / total if warm else 0.3)
    if warm:
        return sched.LinearLR(optimizer, start_factor=WARMUP_START, end_factor=1.0, total_iters=warm)
    return None


class Mix(NamedTuple):
    """One batch's mixing (--mixup / --cutmix): image i becomes `weight` of itself and the rest of
    image partner[i] (mixup), or image i with the rows top:bottom and columns left:right of
    partner[i] pasted in (cutmix; `weight` is then the share of image i left)."""

    partner: torch.Tensor
    weight: float
    box: tuple[int, int, int, int] | None = None


def draw_mix(spec: RunSpec, n: int, gen: torch.Generator, device: torch.device) -> Mix | None:
    """The mixing of a batch of n items, drawn from the data-order generator (so a seed and a resume
    give the same draws): the partner permutation, then the weight from Beta(a, a) (numpy's, seeded
    from `gen`) and, for cutmix, the box (timm's rule: side sqrt(1 - weight), clipped, the weight
    made the exact share left). With both on, each batch picks one with probability 0.5."""
    if not (spec.mixup or spec.cutmix):
        return None
    partner = torch.randperm(n, generator=gen)
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
    cut = bool(spec.cutmix) and (not spec.mixup or rng.random() < 0.5)
    weight = float(rng.beta(spec.cutmix, spec.cutmix) if cut else rng.beta(spec.mixup, spec.mixup))
    if not cut:
        return Mix(partner.to(device), weight)
    h = w = spec.image_size
    ch, cw = int(h * math.sqrt(1 - weight)), int(w * math.sqrt(1 - weight))
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    weight = 1 - (bottom - top) * (right - left) / (h * w)
    return Mix(partner.to(device), weight, (top, bottom, left, right))


def mix_images(x: torch.Tensor, mix: Mix) -> torch.Tensor:
    """A batch mixed as `mix` says (draw_mix)."""
    other = x[mix.partner.to(x.device)]
    if mix.box is None:
        return x * mix.weight + other * (1 - mix.weight)
    top, bottom, left, right = mix.box
    out = x.clone()
    out[..., top:bottom, left:right] = other[..., top:bottom, left:right]
    return out


def budget_plan(spec: RunSpec, paradigm: Paradigm) -> tuple[int, int]:
    """(items per batch, passes over the items per epoch) under the spec's budget rule
    (spec.BUDGETS; the arithmetic: budget.plan). Under `steps` every paradigm takes the mixed
    baseline's optimiser steps, ceil(2 x pairs / batch_size) per epoch, with batch_size images per
    step."""
    return budget.plan(spec.budget, spec.batch_size, paradigm.views_per_pair, paradigm.images_per_item,
                       paradigm.name)


#: the decoded images go to the training device when they take at most this share of its free memory
DEVICE_CACHE_SHARE = 0.25


def epoch_steps(spec: RunSpec, paradigm: Paradigm, n_pairs: int) -> int:
    """Optimiser steps of an epoch of `paradigm` over n_pairs training pairs under the spec's budget
    (Trainer.batches drops a last batch of one item)."""
    items_per_batch, passes = budget_plan(spec, paradigm)
    full, rest = divmod(n_pairs * paradigm.views_per_pair * passes, items_per_batch)
    return full + (rest >= 2)


#: the batches of an epoch on which each loss part's share of the gradient is measured (evenly spaced,
#: the first and the last among them): one extra backward pass per part on each. A measured
#: contrastive step costs 2.5x a plain one (benchmarks/balance_overhead.py: ResNet-18, 48 px), so every
#: step would cost 150 % more and 4 of a CK+ fold's 52 steps an epoch cost about 11 % (on FER-2013's
#: 1,794 steps, 0.3 %). Exact parts, not the total less the others: under bf16 that difference drowns
#: a part of 0.01 % in rounding
GRAD_SHARE_BATCHES = 4


def measured_batches(steps: int, k: int = GRAD_SHARE_BATCHES) -> set[int]:
    """The indices of the batches of an epoch of `steps` on which the gradient shares are measured."""
    if steps <= 0:
        return set()
    return {round(i * (steps - 1) / (k - 1)) for i in range(k)} if k > 1 and steps > 1 else {0}


def grad_shares(parts: dict[str, torch.Tensor], params: list[torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Each weighted loss part's share of the gradient: the L2 norm of its gradient on the
    parameters that every part reaching any parameter reaches (the shared ones: an alignment term
    never reaches the classifier, which the cross-entropy alone trains), over the sum of the parts'
    norms. A part that reaches no parameter has share 0. The graph is kept for the step's backward.
    The shares stay on the device (0-dim tensors): reading them is the caller's, once an epoch."""
    grads: dict[str, tuple] = {}
    for name, part in parts.items():
        if isinstance(part, torch.Tensor) and part.requires_grad:
            grads[name] = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
    reached = [i for i in range(len(params)) if grads and all(g[i] is not None for g in grads.values())]
    zero = torch.zeros((), device=params[0].device if params else None)
    norms = {name: torch.stack([grads[name][i].float().pow(2).sum() for i in reached]).sum().sqrt()
             if name in grads and reached else zero for name in parts}
    total = torch.stack(list(norms.values())).sum()
    return {name: torch.where(total > 0, v / total.clamp(min=torch.finfo(torch.float32).tiny), zero)
            for name, v in norms.items()}


#: the steps a run's time estimate is measured on: after the first WARMUP_STEPS (one-off costs), TIMED_STEPS
WARMUP_STEPS, TIMED_STEPS = 2, 8


def place_cache(cache: ImageCache, device: torch.device) -> ImageCache:
    """Where training and evaluation read the images from: the training device itself when the
    cache takes at most DEVICE_CACHE_SHARE of its free memory (a batch is then an index into device
    memory, with no host copy), else host memory (on CUDA each gathered batch is then page-locked
    and copied without blocking the host, as a pin_memory DataLoader does)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return cache.on(device) if cache.nbytes <= DEVICE_CACHE_SHARE * free else cache.on("cpu")
    return cache.on(device)  # the CPU itself; MPS and other unified-memory devices


def _is_scalar(v) -> bool:
    return (isinstance(v, torch.Tensor) and v.ndim == 0) or (isinstance(v, (int, float)) and not isinstance(v, bool))


class Trainer:
    """Trains one method with one paradigm on one fold's training pairs."""

    def __init__(self, spec: RunSpec, method: Method, paradigm: Paradigm, device: torch.device):
        self.spec = spec
        self.method = method.to(device)
        if channels_last(device, spec.precision):
            self.method = self.method.to(memory_format=torch.channels_last)
        if compile_setting():  # the forward only: losses, optimiser and method hooks stay eager
            self.method.compile()
        self.paradigm = paradigm
        self.device = device
        self.augment = PairedAugment(spec.augment)
        self.optimizer = make_optimizer(spec, self.method.param_groups(spec.lr), device)
        if device.type == "cuda":  # fixed input sizes: let cuDNN pick the fastest convolution algorithms
            torch.backends.cudnn.benchmark = True
        self.scheduler = make_scheduler(spec, self.optimizer)
        #: the schedule stepped every optimiser step (make_step_scheduler): made by fit, which knows the steps
        self.step_scheduler = None
        #: the average of the weights under --ema-decay (torch's AveragedModel), updated after every step
        self.ema = None
        if spec.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.method, multi_avg_fn=get_ema_multi_avg_fn(spec.ema_decay),
                                     use_buffers=True)
        self.items_per_batch, self.passes = budget_plan(spec, paradigm)
        check_precision(spec.precision, device)
        # fp16 needs loss scaling; bf16 has fp32's range and does not
        self.scaler = torch.amp.GradScaler(device.type) if spec.precision == "fp16" else None

    def steps_per_epoch(self, n_pairs: int) -> int:
        """Optimiser steps of an epoch over n_pairs training pairs (batches() drops a last batch of one item)."""
        return epoch_steps(self.spec, self.paradigm, n_pairs)

    def _items_per_epoch(self, n_pairs: int) -> int:
        return n_pairs * self.paradigm.views_per_pair * self.passes

    def train_step(self, batch: Batch, measure: bool = False) -> dict[str, torch.Tensor]:
        """One optimiser step. With `measure` and a paradigm that returns "parts", the result also
        has "grad_share": {part: share of the gradient} (grad_shares), measured before the step."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.spec.precision):
            out = self.paradigm.training_step(self.method, batch)
        parts = out.pop("parts", None)
        if measure and parts:
            params = [p for p in self.method.parameters() if p.requires_grad]
            out["grad_share"] = grad_shares(parts, params)
        if self.scaler is None:
            out["loss"].backward()
            self.optimizer.step()
        else:
            self.scaler.scale(out["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.step_scheduler is not None:
            self.step_scheduler.step()
        self.method.after_step()
        if self.ema is not None:
            self.ema.update_parameters(self.method)
        return out

    def batch_views(self) -> str:
        """What a batch carries (Paradigm.batch_views); "pair" for a method with a pair_transform."""
        kind = self.paradigm.batch_views
        if kind not in BATCH_VIEWS or (kind == "own" and self.paradigm.views_per_pair != 2):
            raise MsdeError(f"paradigm {self.paradigm.name!r}: batch_views {kind!r} (choose one of "
                            f"{', '.join(BATCH_VIEWS)}; \"own\" needs views_per_pair 2)")
        if type(self.method).pair_transform is not Method.pair_transform:
            return "pair"
        return kind

    def batches(self, cache: ImageCache, train_idx: np.ndarray, gen: torch.Generator, epoch: int = 0,
                first_step: int = 0, skip: int = 0, resume_gen: torch.Tensor | None = None):
        """One epoch of batches: a seeded shuffle of the items (pairs, or pair views for
        paradigms that visit each view separately; under the steps budget, single-view paradigms
        visit them twice, one shuffle per pass), each augmented with one draw per pair, then
        the method's pair_transform. The last batch of an epoch is kept unless it has a single
        item (batch norm cannot train on one sample). The images are gathered from `cache` where it
        is (place_cache puts it on the training device when it fits: a batch is then an index into
        device memory), and only the views the paradigm uses (batch_views). A resumed epoch
        (msde_bench.cellstate) draws the same order from `gen` at the epoch's start, then sets `gen`
        to `resume_gen` (its state after the first `skip` batches) and yields from batch `skip` on."""
        vpp = self.paradigm.views_per_pair
        kind = self.batch_views()
        here = cache.device
        idx = torch.as_tensor(train_idx).to(here)
        n_items = len(idx) * vpp
        # drawn on the CPU generator (the same order on every device), moved once an epoch
        perm = torch.cat([torch.randperm(n_items, generator=gen) for _ in range(self.passes)]).to(here)
        if resume_gen is not None:
            gen.set_state(resume_gen)
        bs = self.items_per_batch
        seed = gen.initial_seed()
        last = channels_last(self.device, self.spec.precision)
        to = functools.partial(torch.Tensor.to, device=self.device, non_blocking=True)

        def pin(t: torch.Tensor) -> torch.Tensor:  # a host batch bound for a GPU: page-locked, copied async
            return t.pin_memory() if here.type == "cpu" and self.device.type == "cuda" else t

        for step, start in enumerate(range(0, len(perm), bs)):
            if step < skip:
                continue
            items = perm[start:start + bs]
            if len(items) < 2:  # batch norm cannot train on one sample
                continue
            pairs = idx[items // vpp]
            view = items % vpp if vpp > 1 else None
            nm = m = images = None
            if kind == "pair":
                nm, m = self.augment(pin(cache.non_masked[pairs]), pin(cache.masked[pairs]), gen, self.device)
                nm, m = self.method.pair_transform(nm, m, gen)
            elif kind == "own":
                own = torch.where(view.view(-1, 1, 1, 1).bool(), cache.masked[pairs], cache.non_masked[pairs])
                images = self.augment.one(pin(own), gen, self.device)
            elif kind == "non-masked":
                nm = self.augment.one(pin(cache.non_masked[pairs]), gen, self.device)
            else:
                m = self.augment.one(pin(cache.masked[pairs]), gen, self.device)
            mix = draw_mix(self.spec, len(items), gen, self.device)
            if mix is not None:
                nm, m, images = (None if t is None else mix_images(t, mix) for t in (nm, m, images))
            if last:
                nm, m, images = (None if t is None else t.contiguous(memory_format=torch.channels_last)
                                 for t in (nm, m, images))
            yield Batch(nm, m, to(cache.labels[pairs]), None if view is None else to(view), to(pairs), epoch,
                        first_step + step, seed, len(cache), images, self.spec.label_smoothing,
                        None if mix is None else (mix.partner, mix.weight))

    def fit(self, cache: ImageCache, train_idx: np.ndarray, gen: torch.Generator,
            on_epoch: Callable[[int], None] | None = None, progress: RunProgress | None = None,
            on_record: Callable[[int, dict], None] | None = None, checkpoint: Checkpoint | None = None,
            extra: dict | None = None) -> dict:
        """Trains `spec.epochs` epochs; returns train_seconds, train_images_per_second and
        train_history: per epoch the mean of every scalar the paradigm's training_step returned
        (weighted by batch items), train_acc, the epoch's learning rate and, for a paradigm that
        returns "parts", each part's mean share of the gradient over the epoch's measured batches
        (measured_batches) as `grad_share.<part>`. After each epoch:
        `on_record(epoch, record)` (epoch from 1; the history's record), then `on_epoch(epoch)`
        (epoch from 0).

        With `checkpoint` (msde_bench.cellstate), the whole training state is saved there at the end
        of every epoch and whenever one is due within an epoch, and a training whose checkpoint
        loads continues from it; `extra` (a dict the caller keeps its own per-epoch state in, e.g.
        the faithful protocol's best epoch) is saved with it and updated in place on resume.
        train_seconds then counts the training kept from before the stop and after it."""
        self.method.train()
        cache = place_cache(cache, self.device)
        steps = self.steps_per_epoch(len(train_idx))
        # Batch.step numbers batch slots (a dropped one-item last batch keeps its number)
        slots = -(-self._items_per_epoch(len(train_idx)) // self.items_per_batch)
        self.step_scheduler = make_step_scheduler(self.spec, self.optimizer, steps)
        saved = checkpoint.load() if checkpoint is not None else None
        history: list[dict] = []
        n_images, first_epoch, skip, before = 0, 0, 0, 0.0
        if saved is not None:
            self._load_state(saved, gen)
            history, n_images, before = saved["history"], saved["n_images"], saved["seconds"]
            first_epoch, skip = saved["epoch"], saved["step"]
            if extra is not None:
                extra.update(saved["extra"])
            checkpoint.resumed(first_epoch, skip, before)
        t0 = time.perf_counter()
        step = first_epoch * slots
        timing = (progress is not None and progress.wants_step_time() and steps >= WARMUP_STEPS + TIMED_STEPS
                  and saved is None)
        for epoch in range(first_epoch, self.spec.epochs):
            self.method.on_epoch_start(epoch)
            if progress:
                progress.start_epoch(epoch, steps)
            resumed = saved is not None and epoch == first_epoch and skip > 0
            if resumed:  # the running sums of the epoch's first `skip` batches
                acc = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else
                           {n: t.to(self.device) for n, t in v.items()} if isinstance(v, dict) else v)
                       for k, v in saved["acc"].items()}
                epoch_gen = saved["epoch_gen"]
                gen.set_state(epoch_gen)
            else:
                # lr: the epoch's first (a schedule stepped every step has moved on by a resume)
                acc = dict(sums={}, correct=torch.zeros((), device=self.device), seen=0, shares={}, n_measured=0,
                           epoch_images=n_images, lr=self.optimizer.param_groups[0]["lr"])
                epoch_gen = gen.get_state()
            lr = acc.get("lr", self.optimizer.param_groups[0]["lr"])
            sums, shares = acc["sums"], acc["shares"]  # shares: summed on the device, read at the epoch's end
            shown = time.perf_counter()
            measure = measured_batches(steps)
            batches = self.batches(cache, train_idx, gen, epoch, step, skip=skip if resumed else 0,
                                   resume_gen=saved["gen"] if resumed else None)
            for i, batch in enumerate(batches, start=skip if resumed else 0):
                out = self.train_step(batch, measure=i in measure)
                if "grad_share" in out:
                    acc["n_measured"] += 1
                    for k, v in out.pop("grad_share").items():
                        shares[k] = shares[k] + v if k in shares else v
                if timing and epoch == 0 and i in (WARMUP_STEPS - 1, WARMUP_STEPS + TIMED_STEPS - 1):
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    if i == WARMUP_STEPS - 1:
                        t_timed = time.perf_counter()
                    else:  # the run's time estimate (RunProgress.step_time)
                        progress.step_time((time.perf_counter() - t_timed) / TIMED_STEPS)
                n = out["targets"].shape[0]
                acc["seen"] += n
                for k, v in out.items():
                    if k not in ("logits", "targets") and _is_scalar(v):
                        v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                        sums[k] = sums.get(k, 0) + v.to(self.device) * n
                acc["correct"] += (out["logits"].detach().argmax(1) == out["targets"]).sum()
                n_images += batch.y.shape[0] * self.paradigm.images_per_item
                if progress is not None:
                    progress.tick(i + 1, steps, n_images - acc["epoch_images"])
                # the running loss is read (a host sync on a GPU) at most twice a second, only for the bars
                if progress is not None and progress.wants_batches() and (
                        i == steps - 1 or time.perf_counter() - shown >= 0.5):
                    progress.batch(i + 1, float(sums["loss"]) / max(acc["seen"], 1),
                                   float(acc["correct"]) / max(acc["seen"], 1))
                    shown = time.perf_counter()
                if checkpoint is not None and i + 1 < steps and checkpoint.due():
                    checkpoint.save(self._state(epoch, i + 1, gen, epoch_gen, acc, history, n_images,
                                                before + time.perf_counter() - t0, extra))
            step += slots
            seen = acc["seen"]
            if seen == 0:
                raise MsdeError(f"epoch {epoch + 1} had no batch to train on: {len(train_idx)} training pairs in "
                                f"batches of {self.items_per_batch} (a batch needs 2 items); lower --batch-size or "
                                "use more data")
            if self.scheduler is not None:
                self.scheduler.step()
            record = {k: float(v) / max(seen, 1) for k, v in sums.items()}
            bad = sorted(k for k, v in record.items() if not math.isfinite(v))
            if bad:  # checked once an epoch: no host sync per step
                raise MsdeError(f"the loss became non-finite in epoch {epoch + 1} ({', '.join(bad)} = "
                                f"{record[bad[0]]}); training stopped and nothing was written. Lower --lr "
                                f"(now {self.spec.lr:g}) or check the --opt values")
            record = dict(epoch=epoch + 1, **record, train_acc=float(acc["correct"]) / max(seen, 1), lr=lr,
                          **{f"grad_share.{k}": float(v) / acc["n_measured"] for k, v in shares.items()})
            history.append(record)
            if progress:
                progress.end_epoch(epoch, record)
            if on_record is not None:
                on_record(epoch + 1, record)
            if on_epoch is not None:
                with self.averaged():
                    on_epoch(epoch)
                self.method.train()
            if checkpoint is not None:
                checkpoint.save(self._state(epoch + 1, 0, gen, gen.get_state(), None, history, n_images,
                                            before + time.perf_counter() - t0, extra))
        seconds = before + time.perf_counter() - t0
        if self.ema is not None:  # from here on the fold is its weights' average: evaluated, saved, recorded
            self.method.load_state_dict(self.ema.module.state_dict())
        return dict(train_seconds=seconds, train_images_per_second=n_images / seconds if seconds else 0.0,
                    train_history=history)

    @contextlib.contextmanager
    def averaged(self):
        """The method with the weights' average (--ema-decay) in it for the duration (an evaluation
        between epochs: the faithful protocol's), its own weights back after; a no-op without EMA."""
        if self.ema is None:
            yield
            return
        own = {k: v.clone() for k, v in self.method.state_dict().items()}
        self.method.load_state_dict(self.ema.module.state_dict())
        try:
            yield
        finally:
            self.method.load_state_dict(own)

    # -- the training state (msde_bench.cellstate) -----------------------------------------------

    def _state(self, epoch: int, step: int, gen: torch.Generator, epoch_gen: torch.Tensor, acc: dict | None,
               history: list[dict], n_images: int, seconds: float, extra: dict | None) -> dict:
        """Everything a training needs to continue at batch `step` of epoch `epoch` (0-based; step
        0: the epoch's start) exactly as it would have gone on: on the CPU, every tensor copied."""
        def cpu(v):
            if isinstance(v, torch.Tensor):
                return v.detach().cpu().clone()
            if isinstance(v, dict):
                return {k: cpu(t) for k, t in v.items()}
            if isinstance(v, (list, tuple)):
                return type(v)(cpu(t) for t in v)
            return v

        return dict(epoch=epoch, step=step, model=cpu_state(self.method), optimizer=cpu(self.optimizer.state_dict()),
                    scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
                    step_scheduler=self.step_scheduler.state_dict() if self.step_scheduler is not None else None,
                    ema=cpu(self.ema.state_dict()) if self.ema is not None else None,
                    scaler=self.scaler.state_dict() if self.scaler is not None else None,
                    method=cpu(self.method.resume_state()), paradigm=cpu(self.paradigm.resume_state()),
                    gen=gen.get_state(), epoch_gen=epoch_gen.clone(), random=random_states(),
                    acc=cpu(acc) if acc is not None else None, history=[dict(r) for r in history],
                    n_images=n_images, seconds=seconds, extra=cpu(dict(extra or {})))

    def _load_state(self, state: dict, gen: torch.Generator) -> None:
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.step_scheduler is not None:
            self.step_scheduler.load_state_dict(state["step_scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.method.load_resume_state(state["method"])
        self.paradigm.load_resume_state(state["paradigm"])
        gen.set_state(state["gen"])
        set_random_states(state["random"])


def tta_views(x: torch.Tensor, kind: str) -> list[torch.Tensor]:
    """The inputs one test-time augmentation averages over (spec.TTA_KINDS): flip, the image and its
    mirror; 10crop, the four corner crops and the centre crop of side W - crop_padding(W) (44 px at
    48, as the FER-2013 recipes that train on random 44 px crops test) and their mirrors, scored at
    that size (the models pool adaptively)."""
    if kind == "flip":
        return [x, x.flip(3)]
    if kind == "10crop":
        h, w = x.shape[-2:]
        c = w - crop_padding(w)
        top, left = (h - c) // 2, (w - c) // 2
        crops = [x[..., :c, :c], x[..., :c, w - c:], x[..., h - c:, :c], x[..., h - c:, w - c:],
                 x[..., top:top + c, left:left + c]]
        return crops + [t.flip(3) for t in crops]
    raise MsdeError(f"unknown test-time augmentation {kind!r}; use {', '.join(TTA_KINDS)}")


@torch.no_grad()
def predict(method: Method, cache: ImageCache, idx: np.ndarray, device: torch.device,
            batch_size: int = 128, augment: PairedAugment | None = None,
            precision: str = "fp32", probabilities: bool = False, tta: str | None = None) -> tuple[np.ndarray, ...]:
    """Predictions for both views of the given pairs: (labels, pred non-masked, pred masked), as
    labels in the MSD-E order (the head's outputs stand for `cache.classes`). With `probabilities`,
    also each view's class probabilities (softmax of the logits, float32, N x len(cache.classes),
    columns in `cache.classes` order): (labels, pred nm, pred m, prob nm, prob m). The predictions
    are the same either way (the argmax of the same logits). With `tta` (tta_views), each image's
    prediction is the argmax of its views' mean softmax (the probabilities are that mean)."""
    augment = augment or PairedAugment("none")
    cache = place_cache(cache, device)
    method.eval()
    preds = {"nm": [], "m": []}
    probs: dict[str, list] = {"nm": [], "m": []}
    idx_t = torch.as_tensor(idx).to(cache.device)
    with input_normalisation(method, augment.normalisation):
        for start in range(0, len(idx_t), batch_size):
            sel = idx_t[start:start + batch_size]
            for src, view in ((cache.non_masked, "nm"), (cache.masked, "m")):
                x = augment.eval(src[sel], device)
                if channels_last(device, precision):
                    x = x.contiguous(memory_format=torch.channels_last)
                if tta:
                    with autocast(device, precision):
                        prob = torch.stack([torch.softmax(method(v).logits.float(), dim=1)
                                            for v in tta_views(x, tta)]).mean(0)
                    preds[view].append(prob.argmax(1))
                    if probabilities:
                        probs[view].append(prob)
                    continue
                with autocast(device, precision):
                    logits = method(x).logits
                preds[view].append(logits.argmax(1))  # read back once, at the end
                if probabilities:
                    probs[view].append(torch.softmax(logits.float(), dim=1))
    out = tuple(cache.class_ids(t.cpu().numpy()) for t in (cache.labels[idx_t], torch.cat(preds["nm"]),
                                                             torch.cat(preds["m"])))
    if probabilities:
        out += tuple(torch.cat(probs[v]).cpu().numpy() for v in ("nm", "m"))
    return out


def eval_augment(spec: RunSpec) -> PairedAugment:
    """Evaluation preprocessing: ImageNet mean/std as in training, or the reference's 0.5/0.5."""
    if spec.option("quirk_eval_normalisation", False):
        return PairedAugment("none", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return PairedAugment("none")


def evaluate(method: Method, cache: ImageCache, idx: np.ndarray, device: torch.device, spec: RunSpec,
             predictions: list | None = None, tta: str | None = None) -> dict:
    """The fold metrics of `method` on the pairs `idx` (with `tta`, under that test-time
    augmentation: tta_views). With `predictions` (a list), also appends (labels, pred non-masked,
    pred masked, prob non-masked, prob masked) to it (samples.rows)."""
    bs = max(2 * spec.batch_size, 64)
    out = predict(method, cache, idx, device, bs, eval_augment(spec), spec.precision,
                  probabilities=predictions is not None, tta=tta)
    if predictions is not None:
        predictions.append(out)
    return M.fold_metrics(*out[:3])


def evaluate_tta(method: Method, cache: ImageCache, idx: np.ndarray, device: torch.device, spec: RunSpec) -> dict:
    """Under `--tta`: {kind: {acc_non_masked, acc_masked, acc_overall}} of `method` on the pairs
    `idx` with each test-time augmentation (tta_views): numbers recorded beside the fold's, never
    instead of them."""
    out = {}
    for kind in tta_kinds(spec.tta):
        m = evaluate(method, cache, idx, device, spec, tta=kind)
        out[kind] = {k: m[k] for k in ("acc_non_masked", "acc_masked", "acc_overall")}
    return out
