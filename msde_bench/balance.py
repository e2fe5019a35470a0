"""How much of the training signal a paradigm's cross-view terms carry (the term balance).

A paradigm's cross-view terms (Paradigm.cross_view_terms: contrastive's alignment, distill's
feature and logit terms) are what makes it more than the mixed baseline. Since 0.9.0 every epoch of
`train_history` records each loss part's share of the gradient (`grad_share.<part>`, measured by
training.grad_shares); a run records in its result the mean over folds and epochs of its
cross-view parts' shares (`balance`), and a note when that is under CROSS_VIEW_FLOOR. Results
written before carry no gradient share; for them the share of the *loss* that the weighted
cross-view term made up is computed from the recorded loss terms (LOSS_TERMS), and noted when
under the floor (a loss share is not a gradient share: it is said which one a note is).

Nothing here needs a plugin: the board reads a result's own `balance` block or its loss terms.
"""

from __future__ import annotations

import math

#: a run whose cross-view terms (Paradigm.cross_view_terms) carry under this share of the gradient
#: is noted as such: the paradigm then trains about as the mixed baseline does
CROSS_VIEW_FLOOR = 0.01

#: for results without gradient shares: paradigm -> (train_history key of the cross-view term,
#: the option that weighs it, its default)
LOSS_TERMS = {"contrastive": ("align", "alpha", 1.0), "distill": ("feature_mse", "lambda", 100.0)}


def _pct(x: float) -> str:
    return f"{100 * x:.2g} %" if x < 0.1 else f"{100 * x:.0f} %"


def grad_share(folds: list[dict], terms: tuple[str, ...] | list[str]) -> float | None:
    """The mean over every fold and epoch of the summed gradient shares of `terms`; None when no
    epoch records a gradient share."""
    values = []
    for fold in folds:
        for rec in fold.get("train_history") or []:
            keys = [k for k in rec if k.startswith("grad_share.")]
            if keys:
                values.append(sum(rec.get(f"grad_share.{t}", 0.0) for t in terms))
    return sum(values) / len(values) if values else None


def loss_share(paradigm: str, options: dict, folds: list[dict]) -> float | None:
    """For a result without gradient shares: the mean over folds and epochs of the weighted
    cross-view term's share of the total loss (LOSS_TERMS); None for another paradigm or when
    the history lacks the terms."""
    if paradigm not in LOSS_TERMS:
        return None
    key, option, default = LOSS_TERMS[paradigm]
    weight = float(options.get(option, default))
    values = [weight * rec[key] / rec["loss"] for fold in folds for rec in fold.get("train_history") or []
              if key in rec and rec.get("loss") and math.isfinite(rec["loss"])]
    return sum(values) / len(values) if values else None


def measured(terms: tuple[str, ...], folds: list[dict]) -> dict | None:
    """The `balance` block a new result records: its cross-view terms, their mean gradient share and,
    under CROSS_VIEW_FLOOR, the note; None for a paradigm without cross-view terms or unmeasured."""
    if not terms:
        return None
    share = grad_share(folds, terms)
    if share is None:
        return None
    out = dict(cross_view_terms=list(terms), grad_share=share)
    if share < CROSS_VIEW_FLOOR:
        out["note"] = (f"the cross-view term ({', '.join(terms)}) carried {_pct(share)} of the gradient, under "
                       f"{_pct(CROSS_VIEW_FLOOR)}: this run trained about as the mixed baseline does")
    return out


def of_result(result: dict) -> dict | None:
    """What a result says of its term balance: its own `balance` block, or for an older result the
    loss share of its cross-view term ({"loss_share", "note"?}); None when neither applies."""
    if isinstance(result.get("balance"), dict):
        return result["balance"]
    spec = result.get("spec") or {}
    share = loss_share(spec.get("paradigm", ""), spec.get("options") or {}, result.get("folds") or [])
    if share is None:
        return None
    out = dict(cross_view_terms=[LOSS_TERMS[spec["paradigm"]][0]], loss_share=share)
    if share < CROSS_VIEW_FLOOR:
        out["note"] = (f"the cross-view term ({out['cross_view_terms'][0]}) made up {_pct(share)} of the loss (recorded "
                       "before gradient shares were measured): this run trained about as the mixed baseline does")
    return out


def describe(result: dict) -> str | None:
    """One line on a result's term balance (`results show`, the web page's row details)."""
    b = of_result(result)
    if b is None:
        return None
    terms = ", ".join(b["cross_view_terms"])
    if "grad_share" in b:
        text = f"term balance: the cross-view term ({terms}) carried {_pct(b['grad_share'])} of the gradient"
    else:
        text = (f"term balance: the cross-view term ({terms}) made up {_pct(b['loss_share'])} of the loss (no "
                "gradient shares recorded)")
    return text + (f"; {b['note']}" if "note" in b else "")


#: the leaderboard's footnotes (one text for every row it marks, so that rows share a number)
BOARD_NOTE_GRAD = (f"The cross-view term (alignment, or the teacher's feature and logit terms) carried under "
                   f"{_pct(CROSS_VIEW_FLOOR)} of the gradient (train_history's grad_share): the paradigm trained "
                   "about as the mixed baseline does.")
BOARD_NOTE_LOSS = (f"The cross-view term made up under {_pct(CROSS_VIEW_FLOOR)} of the loss (recorded before 0.9.0 "
                   "measured gradient shares; the alignment term is under 0.1 % of the loss in these runs): the "
                   "paradigm trained about as the mixed baseline does.")


def board_note(results: list[dict]) -> str | None:
    """The row note for a leaderboard row of these results (its seeds): when any of them is under
    the floor, by gradient share where measured, else by loss share."""
    notes = [of_result(r) for r in results]
    low = [n for n in notes if n is not None and "note" in n]
    if not low:
        return None
    return BOARD_NOTE_GRAD if any("grad_share" in n for n in low) else BOARD_NOTE_LOSS
