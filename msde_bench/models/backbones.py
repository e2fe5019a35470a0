"""Backbones from timm, built without downloading anything, and local checkpoint loading."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from msde_bench.checkpoints import load_torch
from msde_bench.errors import MsdeError


@functools.lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    import msde_bench.models.small_input  # noqa: F401 - registers the small-input ResNet-18 variants with timm

    return frozenset(timm.list_models()) | frozenset(timm.list_models(pretrained=True))


def is_timm_model(name: str) -> bool:
    """True for a name timm.create_model accepts (without or with a pretrained tag)."""
    return name in _timm_names()


def create_trunk(name: str, *, pretrained: bool = False, **kwargs) -> nn.Module:
    """A timm model without classifier and pooling: `forward_features(x)` gives the feature map
    (or, with `features_only=True, out_indices=...`, a model returning intermediate maps).

    Weights are only fetched with `pretrained=True` (the explicit `--pretrained` flag); failure to
    fetch them is reported as one clear line.
    """
    import timm

    if not is_timm_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise MsdeError(f"unknown model {name!r} (neither a method plugin nor a timm model){hint}")
    try:
        if kwargs.get("features_only"):
            return timm.create_model(name, pretrained=pretrained, **kwargs)
        return timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="", **kwargs)
    except Exception as e:  # noqa: BLE001 - any hub/network failure becomes one line
        if pretrained:
            raise MsdeError(f"could not get pretrained weights for {name!r} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else 'no message'}); they are fetched "
                            "from the model hub, which needs network access; use --init PATH with a "
                            "local checkpoint instead") from None
        raise


def _state_dict_of(obj) -> dict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state", "model_state_dict", "net"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise ValueError("no state dict found")


def load_init(module: nn.Module, path: str | Path, *, head_prefixes=("fc.", "classifier.", "head.")) -> dict:
    """Loads a local checkpoint into `module`, with or without a `module.` prefix, or the trunk
    of an msde-bench fold model (its `trunk.` keys).

    The classifier head of the checkpoint is ignored. Returns the missing and unexpected keys so
    the caller can report them; a checkpoint that matches nothing is an error.
    """
    path = Path(path)
    try:
        state = _state_dict_of(load_torch(path))
    except ValueError:
        raise MsdeError(f"{path}: not a readable PyTorch checkpoint (no state dict in it)") from None
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = module.state_dict()
    if not set(state) & set(own) and any(k.startswith("trunk.") for k in state):
        # an msde-bench fold model (`<out>/<run_id>/fold<k>.pt`): the method's trunk, without its heads
        state = {k[len("trunk."):]: v for k, v in state.items() if k.startswith("trunk.")}
    clean = {k: v for k, v in state.items() if not any(k.startswith(h) for h in head_prefixes)}
    shape_mismatch = [k for k, v in clean.items() if k in own and own[k].shape != v.shape]
    if shape_mismatch:
        raise MsdeError(f"{path}: shapes differ for {len(shape_mismatch)} keys, e.g. {shape_mismatch[0]} "
                        f"({tuple(clean[shape_mismatch[0]].shape)} vs {tuple(own[shape_mismatch[0]].shape)})")
    result = module.load_state_dict(clean, strict=False)
    loaded = len(clean) - len(result.unexpected_keys)
    if loaded == 0:
        raise MsdeError(f"{path}: no key of the checkpoint matches the model "
                        f"(e.g. {next(iter(clean), '(empty)')!r} vs {next(iter(own))!r})")
    return dict(path=str(path), loaded=loaded, missing=list(result.missing_keys),
                unexpected=list(result.unexpected_keys))
