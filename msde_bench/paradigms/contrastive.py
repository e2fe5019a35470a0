"""`contrastive`: the paper's paired feature alignment (MSD-E, section "contrastive learning").

Both views of every pair go through the one shared network in the same step: two forward passes,
as in the reference code, so in training each view is batch-normalised on its own while evaluation
uses the running statistics of both (`joint_forward=true`: one pass over both views, normalised
together, as the mixed baseline's batches are). The loss is

    beta * (L_method(non-masked) + L_method(masked)) + alpha * L_align(F_nm, F_m)

where L_method is the method's own supervised loss (cross-entropy for a plain backbone) and F the
last feature map, L2-normalised over channels at every position as the reference ResNet does
(`normalise=false` turns that off). `align` picks L_align:

- `mse` (the paper): mean squared error between the two feature maps;
- `cosine`: 1 - cosine similarity between the two flattened feature maps, averaged over pairs;
- `supcon`: a supervised contrastive loss (Khosla et al., 2020) over the 2B pooled, L2-normalised
  embeddings of the batch, in which the other view of the pair and every same-label sample are
  positives; `temperature` sets its temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from msde_bench.models.base import Method
from msde_bench.options import Option, positive
from msde_bench.paradigms.base import Batch, Paradigm

ALIGN = ("mse", "cosine", "supcon")


def align_mse(f_nm: torch.Tensor, f_m: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(f_nm, f_m)


def align_cosine(f_nm: torch.Tensor, f_m: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(f_nm.flatten(1), f_m.flatten(1), dim=1)).mean()


def supcon(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (the "L_out" form of Khosla et al.): for every anchor, the mean
    over its positives of -log(exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t)).

    z: N x D L2-normalised embeddings; y: N labels (the two views of a pair share a label, so they
    are positives of each other)."""
    n = z.shape[0]
    sim = z @ z.t() / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    per_anchor = -(log_prob.masked_fill(~pos, 0).sum(1)) / n_pos.clamp(min=1)
    return per_anchor[n_pos > 0].mean()


class Contrastive(Paradigm):
    name = "contrastive"
    description = "both views through one shared network; method loss on both + alpha * feature alignment"
    paper = "Sola & Gera, MSD-E (ICVGIP 2022), section 'contrastive learning'"
    images_per_item = 2
    paper_lr = 1e-3
    cross_view_terms = ("align",)
    weights_help = (
        "alpha multiplies the alignment term's gradient, beta the two supervised terms': the alignment's "
        "share of the gradient grows with alpha / beta, less than in proportion at large weights (the term then "
        "shrinks as it is optimised). With align=mse on L2-normalised maps the term is small by construction "
        "(the per-position MSE is (2 - 2 cos) / channels): on ResNet-18 at 48 px on M-CK+, alpha = 1 gives under "
        "0.1 %, 10 gives 0.3 %, 100 2.6 %, 1000 11 %, 1e4 23 %, which costs 0.12 non-masked accuracy "
        "(benchmarks/paradigms). The reference code's objective (softmax before the cross-entropy, a pooled "
        "normalised map) gave its alpha = 1 0.84 % of the gradient; the default, 30, gives about that share "
        "here. --quirks reference, which restores that objective, also restores alpha = 1.")
    #: under --quirks reference (the reference code's objective) the reference code's own weight
    reference_options = {"alpha": 1.0}
    options = {
        "alpha": Option(30.0, "weight of the alignment term (the figure's lambda): 30 gives it the share of the "
                              "gradient that the reference code's alpha = 1 had in its objective (benchmarks/"
                              "paradigms); --quirks reference sets 1", min=0.0),
        "beta": Option(1.0, "weight of the two supervised terms (the figure's sigma; reference code beta = 1)",
                       min=0.0),
        "align": Option("mse", "alignment loss: mse (the paper), cosine, or supcon", ALIGN),
        "temperature": Option(0.1, "temperature of the supcon alignment", check=positive),
        "normalise": Option(True, "L2-normalise the feature maps over channels before mse/cosine alignment, "
                                  "as the reference ResNet does"),
        "joint_forward": Option(False, "both views in one forward pass, so that batch norm normalises them "
                                       "together (default: one pass per view, as the reference code)"),
    }

    def align(self, out_nm, out_m, y: torch.Tensor) -> torch.Tensor:
        kind = self.opts["align"]
        if kind == "supcon":
            z = F.normalize(torch.cat([out_nm.embedding, out_m.embedding]).float(), dim=1)
            return supcon(z, torch.cat([y, y]), self.opts["temperature"])
        f_nm, f_m = out_nm.feature_map.float(), out_m.feature_map.float()
        if self.opts["normalise"]:
            f_nm, f_m = F.normalize(f_nm, dim=1), F.normalize(f_m, dim=1)
        return align_mse(f_nm, f_m) if kind == "mse" else align_cosine(f_nm, f_m)

    def training_step(self, method: Method, batch: Batch) -> dict[str, torch.Tensor]:
        if self.opts["joint_forward"]:
            out_nm, out_m = method(torch.cat([batch.non_masked, batch.masked])).split(batch.y.shape[0])
        else:
            out_nm = method(batch.non_masked)
            out_m = method(batch.masked)
        t_nm = method.loss(batch.non_masked, batch.y, out_nm, batch.state("non-masked"))
        t_m = method.loss(batch.masked, batch.y, out_m, batch.state("masked"))
        align = self.align(out_nm, out_m, batch.y)
        parts = {"ce_non_masked": self.opts["beta"] * t_nm["loss"], "ce_masked": self.opts["beta"] * t_m["loss"],
                 "align": self.opts["alpha"] * align}
        loss = parts["ce_non_masked"] + parts["ce_masked"] + parts["align"]
        terms = {f"non_masked.{k}": v for k, v in t_nm.items() if k != "loss"}
        terms.update({f"masked.{k}": v for k, v in t_m.items() if k != "loss"})
        return {**terms, "loss": loss, "loss_non_masked": t_nm["loss"], "loss_masked": t_m["loss"], "align": align,
                "logits": torch.cat([out_nm.logits, out_m.logits]), "targets": torch.cat([batch.y, batch.y]),
                "parts": parts}
