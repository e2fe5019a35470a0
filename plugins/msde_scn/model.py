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
        self.relabelled: dict[int, int] = {}  # (pair index * 2 + view) -> new label
        self._pending: list = []

    def forward(self, x: torch.Tensor) -> Output:
        fmap = self.features(x)
        emb = fmap.mean(dim=(2, 3))
        f = self.dropout(emb)
        alpha = self.alpha(f)
        return Output(alpha * self.fc(f), emb, fmap, {"alpha": alpha})

    @staticmethod
    def _keys(state: LossState, n: int) -> list[int] | None:
        if state.index is None:
            return None
        views = state.views
        if views is None:
            views = torch.full((n,), 1 if state.view == "masked" else 0)
        return (state.index.cpu() * 2 + views.cpu().long()).tolist()

    def loss(self, x, y, out, state):
        alpha = out.extras["alpha"]
        keys = self._keys(state, y.shape[0])
        if keys is not None and self.relabelled:
            y = torch.tensor([self.relabelled.get(k, int(t)) for k, t in zip(keys, y.tolist())], device=y.device)
        wce = F.cross_entropy(out.logits, y)
        rr = rank_regularisation(alpha, self.opts["beta"], self.opts["margin_1"])
        if (self.training and keys is not None and self.opts["relabel"]
                and state.epoch + 1 >= self.opts["relabel_epoch"]):  # state.epoch is 0-based
            self._pending.append((keys, out.logits.detach(), y.detach(), alpha.detach().flatten()))
        return {"loss": wce + rr, "wce": wce, "rank": rr}

    def after_step(self) -> None:
        """Relabel with the predictions of the step just taken (as the official code does)."""
        for keys, logits, y, alpha in self._pending:
            for k, new in relabel_decisions(keys, logits, y, alpha, self.opts["beta"], self.opts["margin_2"],
                                            any_sample=self.opts["quirk_relabel_any"]).items():
                self.relabelled[k] = new
        self._pending.clear()


def relabel_decisions(keys, logits, y, alpha, beta, margin, any_sample=False) -> dict[int, int]:
    """{key: new label} for the samples whose max probability beats their label's by `margin`,
    restricted to the low-importance group (the batch's bottom 1 - beta by alpha) unless `any_sample`."""
    probs = torch.softmax(logits.float(), dim=1)
    p_max, pred = probs.max(dim=1)
    p_y = probs.gather(1, y.view(-1, 1)).squeeze(1)
    flip = (p_max - p_y) > margin
    if not any_sample:
        n_high = int(beta * len(keys))
        low = torch.ones(len(keys), dtype=torch.bool)
        low[torch.argsort(alpha, descending=True)[:n_high].cpu()] = False
        flip &= low.to(flip.device)
    return {keys[i]: int(pred[i]) for i in torch.nonzero(flip).flatten().tolist()}
