"""The budget rules' arithmetic (spec.BUDGETS), without torch: what `training.budget_plan` computes
for a paradigm, and which built-in paradigms train identically under both rules, so that the
leaderboard (which imports no torch) can say it.

A paradigm's shape is (views_per_pair, images_per_item): 2 views per pair when an epoch visits
each view of a pair as a separate sample, 2 images per item when both views go through the network
together (paradigms.base.Paradigm).
"""

from __future__ import annotations

from typing import Any

from msde_bench.errors import MsdeError


def plan(budget: str, batch_size: int, views_per_pair: int, images_per_item: int,
         paradigm: str = "paradigm") -> tuple[int, int]:
    """(items per batch, passes over the items per epoch) under `budget`. Under `steps` every
    paradigm takes the mixed baseline's optimiser steps, ceil(2 x pairs / batch_size) per epoch,
    with batch_size images per step."""
    if budget == "epochs":
        return batch_size, 1
    images_per_pass = views_per_pair * images_per_item  # images a pass over the items shows, per pair
    if images_per_pass not in (1, 2):
        raise MsdeError(f"paradigm {paradigm!r} shows {images_per_pass} images per pair in a pass; "
                        "--budget steps needs 1 or 2 (use --budget epochs)")
    items = batch_size // images_per_item
    if items < 2:
        raise MsdeError(f"--batch-size {batch_size}: paradigm {paradigm!r} puts {images_per_item} images "
                        f"in a batch item, so a batch would hold {items} item(s); batch norm needs 2")
    return items, 2 // images_per_pass


def same_under_both(batch_size: int, views_per_pair: int, images_per_item: int) -> bool:
    """Whether a paradigm of this shape trains identically under `steps` and `epochs`."""
    try:
        return plan("steps", batch_size, views_per_pair, images_per_item) == plan(
            "epochs", batch_size, views_per_pair, images_per_item)
    except MsdeError:
        return False


def builtin_shape(paradigm: str, options: dict[str, Any]) -> tuple[int, int] | None:
    """(views_per_pair, images_per_item) of a built-in paradigm with these options, without
    importing it; None for any other paradigm (a plugin's: ask its class). tests/test_budget.py
    checks every built-in paradigm and option value against the classes."""
    if paradigm == "baseline":
        return (2 if options.get("train_on", "mixed") == "mixed" else 1), 1
    if paradigm == "contrastive":
        return 1, 2
    if paradigm == "distill":
        return 1, 1
    return None
