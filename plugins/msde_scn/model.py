"""SCN on a timm trunk: per-sample importance weights, rank regularisation, relabelling.

Official code: github.com/kaiwang960112/Self-Cure-Network (src/train.py, Res18Feature), read at
commit 9f4c3ad8. Logits are alpha_i * (W f_i + b) with alpha_i = sigmoid(Linear(f_i)); the loss is
CE(alpha-weighted logits) + max(0, margin_1 - (mean alpha of the top beta of the batch - mean alpha of
the rest)); from the 1-based epoch `relabel_epoch` on, a sample whose maximum predicted probability exceeds that of
its label by margin_2 gets the predicted label from then on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msde_bench.api import BackboneMethod, LossState, Option, Output


def rank_regularisation(alpha: torch.Tensor, beta: float, margin: float) -> torch.Tensor:
    """max(0, margin - (mean of the top floor(beta * B) alphas - mean of the others))."""
    a = alpha.flatten()
    n_high = int(beta * a.shape[0])
    if n_high < 1 or n_high >= a.shape[0]:
        return a.sum() * 0
    top = torch.sort(a, descending=True).values
    return F.relu(margin - (top[:n_high].mean() - top[n_high:].mean()))


class SCN(BackboneMethod):
    paper = "Wang et al., Suppressing Uncertainties for Large-Scale Facial Expression Recognition, CVPR 2020"
    description = "Self-Cure Network: importance-weighted logits, rank regularisation, relabelling"
    options = {
        **BackboneMethod.options,
        "beta": Option(0.7, "share of the batch in the high-importance group"),
        "margin_1": Option(0.07, "rank-regularisation margin (the official README's value for batch 64; 0.15 "
                                 "was for batch 1024)"),
        "margin_2": Option(0.2, "relabel when max probability - probability of the label exceeds this"),
        "relabel_epoch": Option(10, "first epoch (1-based, as the official loop counts) at which relabelling may "
                                    "happen", min=1),
        "relabel": Option(True, "relabel at all (MSD-E's labels are clean; false turns it off)"),
        "drop_rate": Option(0.0, "dropout on the pooled feature"),
        "quirk_relabel_any": Option(False, "relabel any sample of the batch that meets the margin, as the "
                                           "official code does; default: only the low-importance group, as "
                                           "the paper describes"),
    }
    official_recipe = dict(optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="exponential", gamma=0.9,
                           epochs=70, batch_size=64, image_size=224, augment="flip")
    #: the official code relabels any sample; its recipe comes with its rule (an explicit --opt wins)
    official_options = dict(quirk_relabel_any=True)

    def __init__(self, num_classes: int = 7, pretrained: bool = False, options: dict | None = None):
        super().__init__(num_classes, pretrained, options)
        self.dropout = nn.Dropout(self.opts["drop_rate"])
        self.alpha = nn.Sequential(nn.Linear(self.dim, 1), nn.Sigmoid())
        self.fc = nn.Linear(self.dim, num_classes)
        #: per (pair index * 2 + view): the label it was relabelled to, or -1; one slot more for the
        #: writes of samples that keep their label. A device tensor, so relabelling needs no host sync.
        self._labels: torch.Tensor | None = None
        self._pending: list = []

    @property
    def relabelled(self) -> dict[int, int]:
        """{pair index * 2 + view: new label} of every relabelled sample so far (reads the device)."""
        if self._labels is None:
            return {}
        return {k: v for k, v in enumerate(self._labels[:-1].tolist()) if v >= 0}

    def forward(self, x: torch.Tensor) -> Output:
        fmap = self.features(x)
        emb = fmap.mean(dim=(2, 3))
        f = self.dropout(emb)
        alpha = self.alpha(f)
        return Output(alpha * self.fc(f), emb, fmap, {"alpha": alpha})

    @staticmethod
    def _keys(state: LossState, y: torch.Tensor) -> torch.Tensor | None:
        """pair index * 2 + view of every sample (on y's device), or None without pair indices."""
        if state.index is None:
            return None
        views = state.views
        if views is None:
            views = torch.full_like(y, 1 if state.view == "masked" else 0)
        return state.index.to(y.device) * 2 + views.to(y.device).long()

    def _table(self, keys: torch.Tensor, pairs: int | None) -> torch.Tensor:
        need = 2 * pairs if pairs is not None else int(keys.max()) + 1  # a host sync only without `pairs`
        if self._labels is None or self._labels.shape[0] - 1 < need or self._labels.device != keys.device:
            table = torch.full((need + 1,), -1, dtype=torch.long, device=keys.device)
            if self._labels is not None:
                old = self._labels[:-1].to(keys.device)
                table[:min(need, old.shape[0])] = old[:need]
            self._labels = table
        return self._labels

    def loss(self, x, y, out, state):
        alpha = out.extras["alpha"]
        keys = self._keys(state, y)
        if keys is not None and self._labels is not None:
            new = self._table(keys, state.pairs)[keys]
            y = torch.where(new >= 0, new, y)
        wce = F.cross_entropy(out.logits, y)
        rr = rank_regularisation(alpha, self.opts["beta"], self.opts["margin_1"])
        if (self.training and keys is not None and self.opts["relabel"]
                and state.epoch + 1 >= self.opts["relabel_epoch"]):  # state.epoch is 0-based
            self._pending.append((keys, out.logits.detach(), y.detach(), alpha.detach().flatten(), state.pairs))
        return {"loss": wce + rr, "wce": wce, "rank": rr}

    def resume_state(self) -> dict:
        return {"labels": self._labels}

    def load_resume_state(self, state: dict) -> None:
        labels = state.get("labels")
        self._labels = None if labels is None else labels.to(next(self.parameters()).device)

    def after_step(self) -> None:
        """Relabel with the predictions of the step just taken (as the official code does), on the
        device: the samples that keep their label write to the table's spare last slot."""
        for keys, logits, y, alpha, pairs in self._pending:
            flip, pred = relabel_mask(logits, y, alpha, self.opts["beta"], self.opts["margin_2"],
                                      any_sample=self.opts["quirk_relabel_any"])
            table = self._table(keys, pairs)
            table.index_put_((torch.where(flip, keys, table.shape[0] - 1),), pred)
        self._pending.clear()


def relabel_mask(logits, y, alpha, beta, margin, any_sample=False) -> tuple[torch.Tensor, torch.Tensor]:
    """(flip, pred): which samples' max probability beats their label's by `margin`, restricted to the
    low-importance group (the batch's bottom 1 - beta by alpha) unless `any_sample`, and the predicted
    labels; on the logits' device, without a host sync."""
    probs = torch.softmax(logits.float(), dim=1)
    p_max, pred = probs.max(dim=1)
    p_y = probs.gather(1, y.view(-1, 1)).squeeze(1)
    flip = (p_max - p_y) > margin
    if not any_sample:
        n_high = int(beta * logits.shape[0])
        low = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
        low[torch.argsort(alpha, descending=True)[:n_high]] = False
        flip &= low
    return flip, pred

