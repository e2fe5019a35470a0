"""The Paradigm contract, the batch it receives and the fold context it is prepared with."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from msde_bench.models.base import LossState, Method
from msde_bench.options import Option

if TYPE_CHECKING:  # annotations only
    from rich.console import Console

    from msde_bench.data.pairs import ImageCache
    from msde_bench.spec import RunSpec


BATCH_VIEWS = ("pair", "non-masked", "masked", "own")


@dataclass
class Batch:
    """One training batch: the views of each pair the paradigm asked for (Paradigm.batch_views),
    augmented with the same draw per pair, normalised."""

    non_masked: torch.Tensor | None
    masked: torch.Tensor | None
    y: torch.Tensor
    #: for paradigms with views_per_pair == 2: 0 = train on the non-masked view, 1 = the masked one
    view: torch.Tensor | None = None
    #: the pairs' indices in the dataset (methods that keep per-sample state, e.g. SCN's relabelling)
    index: torch.Tensor | None = None
    epoch: int = 0
    #: the 0-based optimiser step of the fold and the fold's seed (LossState.generator)
    step: int = 0
    seed: int = 0
    #: the dataset's number of pairs (every index is below it)
    pairs: int | None = None
    #: under batch_views "own": each item's own view (view 0 non-masked, 1 masked)
    images: torch.Tensor | None = None
    #: the run's --label-smoothing (LossState.label_smoothing)
    label_smoothing: float = 0.0
    #: under --mixup / --cutmix: (partner, weight) of the batch's mixing (LossState.mix)
    mix: tuple[torch.Tensor, float] | None = None

    def state(self, view: str, views: torch.Tensor | None = None) -> LossState:
        """What Method.loss receives: epoch, pair indices, which view the images are ("non-masked",
        "masked", or "mixed" with `views` giving 1 where the image is masked), step, seed, the
        dataset's number of pairs, the run's label smoothing and the batch's mixing."""
        return LossState(self.epoch, self.index, view, views, self.step, self.seed, self.pairs, self.label_smoothing,
                         self.mix)


@dataclass(frozen=True)
class FoldContext:
    """What `Paradigm.prepare` receives: one fold of one run."""

    spec: RunSpec
    #: the decoded images of the whole dataset (uint8), indexed by pair
    cache: ImageCache
    train_idx: np.ndarray
    test_idx: np.ndarray
    #: every pair's subject id
    subjects: np.ndarray
    device: torch.device
    #: the fold's seed (derived from the run's seed and the fold index)
    seed: int
    fold: int
    #: `fit(spec, seed) -> (method, timing)`: trains a model of `spec` on this fold's training
    #: pairs with the harness's Trainer (distill's teacher); timing has train_seconds
    fit: Callable[[RunSpec, int], tuple[Method, dict]]
    #: `build(spec) -> method`: an untrained model of `spec`, --init not loaded (to load a checkpoint into)
    build: Callable[[RunSpec], Method]
    console: Console | None = None

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)


class Paradigm(ABC):
    """A training paradigm: which views the method sees and which cross-view terms are added.

    The harness builds it as `cls(options)` (its own `--opt` values, defaults filled in), calls
    `prepare(ctx)` once per fold, then `training_step(method, batch)` once per optimiser step."""

    name = "base"
    description = ""
    paper = ""
    options: dict[str, Option] = {}
    #: 2 when an epoch visits each view of a pair as a separate training sample
    views_per_pair = 1
    #: images the model sees per batch item (2 when both views go through the network together)
    images_per_item = 1
    #: which images a batch carries (BATCH_VIEWS): "pair" both views of every pair (non_masked and
    #: masked); "non-masked" or "masked" that view only (the other field is None); "own" (with
    #: views_per_pair == 2) each item's own view in `images`, `view` telling which, non_masked and
    #: masked None. The harness gathers and augments only these images, with the same random draw
    #: per pair as for both views. A method with a pair_transform always gets "pair" batches.
    batch_views = "pair"
    #: the learning rate of the reference code under --recipe paper
    paper_lr = 1e-3
    #: the names of training_step's "parts" that tie the two views together (contrastive's
    #: alignment, distill's feature and logit terms): a run whose cross-view parts carry under
    #: balance.CROSS_VIEW_FLOOR of the gradient gets a note in its result and on its leaderboard row
    cross_view_terms: tuple[str, ...] = ()
    #: what each weight option does to its term's share of the gradient (`msde-bench paradigms`)
    weights_help = ""
    #: option values of the reference code that differ from the defaults, set under `--quirks
    #: reference` (which restores the reference code's objective) unless given with --opt; e.g.
    #: contrastive's alpha = 1, whose default gives the alignment the share it had in that objective
    reference_options: dict[str, Any] = {}

    def __init__(self, options: dict[str, Any]):
        self.opts = {k: options[k] for k in self.options}

    def prepare(self, ctx: FoldContext) -> None:
        """Called once per fold before training (distill trains or loads its teacher here)."""

    def skip_init(self) -> bool:
        """True when the student must not load --init (distill's quirk_student_random_init)."""
        return False

    def report(self) -> dict:
        """What the result should record about this fold's paradigm (e.g. where the teacher came from)."""
        return {}

    def resume_state(self) -> dict:
        """What a cell checkpoint (msde_bench.cellstate) must save of the paradigm's own state so
        that a resumed training goes on as if it had never stopped: a dict of tensors and plain
        values. Default: the state of every torch.Generator attribute (distill's view draws);
        override it when the paradigm keeps other state that changes during training."""
        return {k: v.get_state() for k, v in vars(self).items() if isinstance(v, torch.Generator)}

    def load_resume_state(self, state: dict) -> None:
        """Restores what resume_state returned (after prepare)."""
        for k, v in state.items():
            getattr(self, k).set_state(v)

    @abstractmethod
    def training_step(self, method: Method, batch: Batch) -> dict[str, torch.Tensor]:
        """Returns the loss terms ('loss' is what is minimised; every other scalar is averaged per
        epoch into the result's train_history) and 'logits'/'targets' for the running training
        accuracy. Optionally 'parts': {name: tensor}, the weighted terms whose sum is 'loss'
        (e.g. {"ce_non_masked": beta * ce_nm, "ce_masked": beta * ce_m, "align": alpha * align});
        the harness then measures each part's share of the gradient on the parameters every part
        reaches, on a few batches an epoch (training.GRAD_SHARE_BATCHES), into train_history as
        `grad_share.<name>`."""
