"""The Method contract every model of the harness follows: Method (abstract), its Output, the
LossState its loss receives, and BackboneMethod (a method built on a timm trunk)."""

from __future__ import annotations

import functools
import hashlib
from abc import ABCMeta, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from msde_bench.models.backbones import create_trunk
from msde_bench.options import Option, parse_options


class Output(NamedTuple):
    """What `Method.forward` returns."""

    #: B x C, before softmax: what evaluation scores (argmax) and what logit distillation matches
    logits: torch.Tensor
    #: B x D, the pooled feature used by the classifier (t-SNE, supcon alignment)
    embedding: torch.Tensor
    #: B x D x h x w, the last feature map (what contrastive aligns and distill matches)
    feature_map: torch.Tensor
    #: whatever the method's loss needs (attention weights, branch logits, ...)
    extras: dict | None = None

    def split(self, n: int) -> tuple[Output, Output]:
        """The outputs of a forward pass over two stacked batches of n images each: the first n
        and the last n (extras that are batch-first tensors of 2n rows are split, others shared)."""

        def part(v, sl):
            return v[sl] if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == 2 * n else v

        halves = []
        for sl in (slice(0, n), slice(n, 2 * n)):
            extras = None if self.extras is None else {k: part(v, sl) for k, v in self.extras.items()}
            halves.append(Output(self.logits[sl], self.embedding[sl], self.feature_map[sl], extras))
        return halves[0], halves[1]


@dataclass(frozen=True)
class LossState:
    """What `Method.loss` receives besides the batch.

    - `epoch`: the 0-based training epoch;
    - `index`: the pairs' dataset indices (B,), for methods with per-sample state (SCN);
    - `view`: "non-masked", "masked", or "mixed" (then `views` is 1 where the image is masked);
    - `step`: the 0-based optimiser step of this fold's training; `seed` the fold's seed;
    - `pairs`: the dataset's number of pairs (every `index` is below it), or None when unknown,
      so that per-sample state can live in a tensor of fixed size on the device;
    - `label_smoothing`: the run's `--label-smoothing` (0: none), and `mix`: under `--mixup` /
      `--cutmix`, (partner, weight): every image of the batch was mixed with image `partner[i]`
      of the same batch, keeping `weight` of its own, so its target is `weight` x y + (1 - weight) x
      y[partner]; None without. A method that declares `applies_label_options` gives both to its
      classification cross-entropy (cross_entropy_terms does).
    `generator()` returns a torch.Generator seeded from (seed, step): every call in one step
    returns the same stream, so a method can draw one random pairing shared by both views of a
    contrastive step without touching any other random stream."""

    epoch: int = 0
    index: torch.Tensor | None = None
    view: str = "non-masked"
    views: torch.Tensor | None = None
    step: int = 0
    seed: int = 0
    pairs: int | None = None
    label_smoothing: float = 0.0
    mix: tuple[torch.Tensor, float] | None = None

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        text = f"{self.seed}:step:{self.step}"
        return torch.Generator(device).manual_seed(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))


def cross_entropy_terms(out: Output, y: torch.Tensor, state: LossState | None = None) -> dict[str, torch.Tensor]:
    """The plain supervised objective: {"loss": ce, "ce": ce}, with the label smoothing and the
    mixing of `state` (LossState.label_smoothing, LossState.mix) when given: under mixing, the
    weighted cross-entropies of both targets."""
    smoothing = state.label_smoothing if state is not None else 0.0
    ce = F.cross_entropy(out.logits, y, label_smoothing=smoothing)
    if state is not None and state.mix is not None:
        partner, weight = state.mix
        ce = weight * ce + (1 - weight) * F.cross_entropy(out.logits, y[partner], label_smoothing=smoothing)
    return {"loss": ce, "ce": ce}


class Method(nn.Module, metaclass=ABCMeta):
    """A FER method: `forward(x) -> Output` and its own supervised objective `loss`.

    The harness builds it as `cls(num_classes=K, pretrained=bool, options=dict)` (K: the classes the
    dataset has, 7 for MSD-E, 6 for CK+ without neutral; options: the method's `--opt` values by
    their bare names, defaults filled in), moves it to the device, to
    channels_last where that layout is the faster one (CUDA; the CPU under bf16), and trains it in
    the spec's precision (bf16 autocast by default on CUDA and, under the quick recipe, on a CPU with
    bf16 hardware; fp32 otherwise): a method's code must work in both layouts. Inputs are float
    B x 3 x H x W images normalised with ImageNet mean/std (IMAGENET_MEAN/STD; mean = std = 0.5
    under quirk_eval_normalisation at evaluation), H = W = the recipe's image size; a method that
    needs the pixels back reads `self.input_normalisation`, the (mean, std) of the images it is
    given now (the harness sets it while it evaluates).

    - `forward(x)` returns Output for any input size (use adaptive pooling, never a fixed 7 x 7);
    - `loss(x, y, out, state)` returns the method's loss terms, `"loss"` being what is minimised;
      the paradigms call it for every view they train on, in training mode only;
    - `param_groups(lr)` gives the optimiser's parameter groups (a group may carry `lr_scale`);
    - `pair_transform(non_masked, masked, generator)` a training-only transform of a batch of
      pairs, drawn once per pair (both views get the same draw); default: none;
    - `after_step()` runs after every optimiser step (relabelling, centre updates);
    - `on_epoch_start(epoch)` at the start of every training epoch, after `train()`;
    - `target_layer()` is the layer Grad-CAM looks at; `cam_reshape_transform()` optional;
    - `resolve_options(options, image_size)` (classmethod) gives the option values with every
      run-dependent one (such as DACL's `attention_grid=0`, "the trunk's map size") replaced by what
      it means at this image size; the harness calls it when it builds a spec, and the spec records
      the result. Default: the options unchanged.
    Class attributes: `applies_label_options` (True: its loss gives `state.label_smoothing` and
    `state.mix` to its classification cross-entropy, e.g. through cross_entropy_terms(out, y,
    state); the harness refuses `--label-smoothing`, `--mixup` and `--cutmix` for a method without
    it), `options` (the `--opt` values it accepts), `official_recipe` (RunSpec
    overrides used under `--recipe official`), `official_options` (option values that
    `--recipe official` sets unless given with --opt), `paper`, `description`.
    """

    options: dict[str, Option] = {}
    applies_label_options: bool = False
    official_recipe: dict = {}
    official_options: dict = {}
    paper: str = ""
    description: str = ""
    #: (mean, std) per channel of the images forward() receives (see input_normalisation below)
    input_normalisation: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN, IMAGENET_STD)

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Output:
        """Logits, pooled embedding and last feature map of a batch of images."""

    @abstractmethod
    def loss(self, x: torch.Tensor, y: torch.Tensor, out: Output, state: LossState) -> dict[str, torch.Tensor]:
        """The method's supervised loss terms for one view; 'loss' is what is minimised, every
        other scalar is logged per epoch in the result's train_history."""

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def pair_transform(self, non_masked: torch.Tensor, masked: torch.Tensor,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A training-only transform of normalised B x 3 x H x W batches of both views; draw one
        value per pair from `generator` (a CPU generator) and apply it to both views."""
        return non_masked, masked

    @classmethod
    def resolve_options(cls, options: dict, image_size: int) -> dict:
        """The method's options (bare names, defaults filled in) with run-dependent values resolved
        for inputs of image_size x image_size (see the class docstring); default: unchanged."""
        return options

    def after_step(self) -> None:
        """Called after every optimiser step."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called at the start of every training epoch, after the model is put in training mode,
        and again at the start of a resumed one (msde_bench.cellstate): set what depends on the
        epoch, do not count calls."""

    def resume_state(self) -> dict:
        """The training state the method keeps outside its state dict (tensors and plain values; e.g.
        SCN's relabelled labels), which a cell checkpoint (msde_bench.cellstate) saves between
        steps so that a resumed training goes on exactly as an uninterrupted one. Default: none."""
        return {}

    def load_resume_state(self, state: dict) -> None:
        """Restores what resume_state returned, into a freshly built method."""

    def target_layer(self) -> nn.Module:
        """The layer Grad-CAM looks at."""
        raise NotImplementedError

    def cam_reshape_transform(self):
        """For Grad-CAM: a function mapping the target layer's output to B x C x h x w (e.g. RAN, whose
        trunk sees every crop, keeps the whole image's map), or None."""
        return None


def set_input_normalisation(model: nn.Module, normalisation: tuple) -> list[tuple[Method, tuple]]:
    """Sets `input_normalisation` of every Method in `model` (wrappers and their inner method
    alike); returns (method, the value it had) for each."""
    before = [(m, m.input_normalisation) for m in model.modules() if isinstance(m, Method)]
    for m, _ in before:
        m.input_normalisation = normalisation
    return before


@contextmanager
def input_normalisation(model: nn.Module, normalisation: tuple) -> Iterator[None]:
    """set_input_normalisation for the duration, e.g. the evaluation's mean = std = 0.5 under
    quirk_eval_normalisation."""
    before = set_input_normalisation(model, normalisation)
    try:
        yield
    finally:
        for m, old in before:
            m.input_normalisation = old


class DoubleSoftmax(Method):
    """The reference classifier's quirk: the head ends in softmax, and its probabilities are what
    the loss (cross-entropy, which applies log-softmax again) receives. Predictions are unchanged."""

    def __init__(self, inner: Method):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> Output:
        out = self.inner(x)
        return out._replace(logits=torch.softmax(out.logits.float(), dim=1))

    def loss(self, x, y, out, state):
        return self.inner.loss(x, y, out, state)

    def param_groups(self, lr: float) -> list[dict]:
        return self.inner.param_groups(lr)

    def pair_transform(self, non_masked, masked, generator):
        return self.inner.pair_transform(non_masked, masked, generator)

    def after_step(self) -> None:
        self.inner.after_step()

    def on_epoch_start(self, epoch: int) -> None:
        self.inner.on_epoch_start(epoch)

    def resume_state(self) -> dict:
        return self.inner.resume_state()

    def load_resume_state(self, state: dict) -> None:
        self.inner.load_resume_state(state)

    def target_layer(self) -> nn.Module:
        return self.inner.target_layer()

    def cam_reshape_transform(self):
        return self.inner.cam_reshape_transform()


@functools.lru_cache(maxsize=32)
def _feature_map_size(backbone: str, image_size: int, trunk_kwargs: tuple) -> tuple[int, int]:
    kwargs = dict(trunk_kwargs)
    with torch.device("meta"):
        trunk = create_trunk(backbone, pretrained=False, **kwargs).eval()  # batch norm takes one image in eval
        x = torch.empty(1, 3, image_size, image_size)
        fmap = trunk(x)[-1] if kwargs.get("features_only") else trunk.forward_features(x)
    return (1, fmap.shape[1]) if fmap.ndim == 3 else (fmap.shape[2], fmap.shape[3])


class BackboneMethod(Method):
    """A method built on a timm trunk (`backbone` option, default resnet18): `self.trunk` gives the
    feature map through `features`, `self.dim` its channels, `self.opts` the option values.
    `--init` loads into the trunk. Subclasses implement `forward` and `loss`."""

    options: dict[str, Option] = {"backbone": Option("resnet18", "the timm trunk the method is built on")}
    #: extra arguments for timm.create_model (e.g. features_only=True, out_indices=(2, 3))
    trunk_kwargs: dict = {}
    #: L2-normalise the feature map over channels at every position in `features`, as the MSD-E
    #: reference ResNet's forward does (the harness sets it under quirk_pool_normalised)
    l2_feature_map: bool = False

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__()
        self.opts = {**parse_options([], type(self).options), **(options or {})}
        self.num_classes = num_classes
        self.trunk = create_trunk(self.opts["backbone"], pretrained=pretrained, **self.trunk_kwargs)
        if self.trunk_kwargs.get("features_only"):
            self.dims = list(self.trunk.feature_info.channels())
            self.dim = self.dims[-1]
        else:
            self.dim = self.trunk.num_features

    @classmethod
    def feature_map_size(cls, backbone: str, image_size: int) -> tuple[int, int]:
        """(h, w) of the feature map `features` gives for image_size x image_size inputs (the trunk
        is built on the meta device: no weights, no compute). A features_only trunk answers for its
        last map; a token model for its 1 x N map."""
        return _feature_map_size(backbone, image_size, tuple(sorted(cls.trunk_kwargs.items())))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.trunk.forward_features(x)
        if fmap.ndim == 3:  # token models (B, N, D): treat tokens as a 1 x N map
            fmap = fmap.transpose(1, 2).unsqueeze(2)
        return F.normalize(fmap, dim=1) if self.l2_feature_map else fmap

    def target_layer(self) -> nn.Module:
        for name in ("layer4", "stages", "blocks", "features"):
            layer = getattr(self.trunk, name, None)
            if layer is not None:
                return layer[-1] if isinstance(layer, nn.Sequential) else layer
        return self.trunk
