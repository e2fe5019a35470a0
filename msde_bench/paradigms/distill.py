"""`distill`: knowledge distillation from a non-masked teacher (MSD-E, section "knowledge distillation").

A teacher of the same model is trained first on the non-masked images of the fold's training
pairs from the fold's seed (the baseline paradigm with train_on=non-masked, the recipe's baseline
learning rate, `teacher_epochs`: with the default, the very model the non-masked baseline run of
the same settings trains on the fold), or loaded from `teacher=PATH`; it is frozen in eval mode.
The student sees the masked view of each pair with probability p (per sample, as the reference
code draws it) and the non-masked view otherwise. The loss is

    L_method(student) + lambda * MSE(F_teacher(non-masked), F_student(input))
                      [+ kd_weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))]

with F the last feature map, L2-normalised over channels as the reference ResNet does. Each
fold's teacher is cached under $MSDE_BENCH_HOME/teachers (msde_bench.teachers) and reused when
the same spec runs again or the non-masked baseline has trained it (a file lock lets one process
train it while others that need it wait and load it); a teacher never sees the fold's test
subjects (checked before training, and for a cached or loaded teacher from the subjects stored
with it).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from msde_bench import teachers
from msde_bench.device import channels_last
from msde_bench.errors import MsdeError
from msde_bench.models.base import Method
from msde_bench.options import QUIRKS, Option, is_method_key, positive
from msde_bench.paradigms.base import Batch, FoldContext, Paradigm
from msde_bench.protocol import subjects_of
from msde_bench.spec import RECIPES, RunSpec, derive_seed


class Distill(Paradigm):
    name = "distill"
    description = "a frozen non-masked teacher; the student sees the masked view with probability p"
    paper = "Sola & Gera, MSD-E (ICVGIP 2022), section 'knowledge distillation'"
    paper_lr = 1e-2
    cross_view_terms = ("feature", "kd")
    weights_help = (
        "lambda multiplies the feature term's gradient (kd_weight the logit term's): its share of the gradient "
        "grows with lambda, less than in proportion at large weights (the term shrinks as it is optimised). "
        "On ResNet-18 at 48 px on M-CK+ (benchmarks/paradigms), lambda = 1000 gives the feature term 32 % of the "
        "gradient; the reference code's objective (softmax before the cross-entropy, a pooled normalised map) "
        "gave its lambda = 100 35 %, so the default is 1000. --quirks reference, which restores that objective, "
        "also restores lambda = 100.")
    #: under --quirks reference (the reference code's objective) the reference code's own weight
    reference_options = {"lambda": 100.0}
    options = {
        "lambda": Option(1000.0, "weight of the feature-map MSE to the teacher: 1000 gives it the share of the "
                                 "gradient that the reference code's lambda = 100 had in its objective "
                                 "(benchmarks/paradigms); --quirks reference sets 100", min=0.0),
        "p": Option(0.5, "probability that the student sees the masked view of a pair", min=0.0, max=1.0),
        "teacher": Option("", "a teacher checkpoint to load instead of training one (a file written by "
                              "msde-bench, or a state dict of the same model)"),
        "teacher_epochs": Option(0, "epochs of teacher training (0: the run's epochs)", min=0),
        "normalise": Option(True, "L2-normalise both feature maps over channels before the MSE, as the "
                                  "reference ResNet does"),
        "kd_weight": Option(0.0, "weight of logit distillation (KL divergence); 0 turns it off", min=0.0),
        "kd_temperature": Option(4.0, "temperature of logit distillation", check=positive),
        "quirk_student_random_init": Option(False, "ignore --init for the student, as the reference code "
                                                   "silently does (it loads after wrapping in DataParallel)"),
    }

    def __init__(self, options):
        super().__init__(options)
        self.teacher: Method | None = None
        self.info: dict = {}
        self.gen = torch.Generator()

    def skip_init(self) -> bool:
        return bool(self.opts["quirk_student_random_init"])

    # -- the teacher ---------------------------------------------------------------------------

    def teacher_spec(self, spec: RunSpec) -> RunSpec:
        """The teacher is the baseline non-masked model of the same model (with the same method
        options and quirks) and recipe."""
        quirks = {k: v for k, v in spec.options if k in QUIRKS or is_method_key(spec.model, k)}
        lr = RECIPES[spec.recipe]["lr"] if spec.recipe in RECIPES else spec.lr
        return spec.with_(paradigm="baseline", options=tuple(sorted({**quirks, "train_on": "non-masked"}.items())),
                          epochs=self.opts["teacher_epochs"] or spec.epochs, lr=lr, run_folds=())

    def prepare(self, ctx: FoldContext) -> None:
        spec, subjects = ctx.spec, ctx.subjects
        train_subjects = subjects_of(ctx.train_idx, subjects)
        test_subjects = subjects_of(ctx.test_idx, subjects)
        assert not set(train_subjects) & set(test_subjects), "teacher training pairs include test subjects"
        tspec = self.teacher_spec(spec)
        if self.opts["teacher"]:
            source = str(self.opts["teacher"])
            teacher, meta = teachers.load(Path(source), lambda: ctx.build(tspec), spec.model)
        else:
            # the fold's seed: the teacher is the model the non-masked baseline run trains on this fold
            cached = teachers.TeacherCache(tspec, ctx.fold, ctx.seed, ctx.cache.fingerprint, train_subjects)
            teacher, meta, source = cached.get(lambda: ctx.build(tspec), lambda: ctx.fit(tspec, ctx.seed), ctx.say)
        seen = meta.get("train_subjects")
        if seen is not None:
            leaked = sorted(set(seen) & set(test_subjects))
            if leaked:
                raise MsdeError(f"{source}: the teacher was trained on subjects {leaked[:10]} that fold "
                                f"{ctx.fold} tests; a teacher must see only the fold's training subjects")
        else:
            ctx.say(f"[yellow]warning[/]: {source} records no training subjects; cannot check that it "
                    "never saw this fold's test subjects")
        teacher = teacher.to(ctx.device).eval()
        if channels_last(ctx.device, spec.precision):  # as the student and a freshly trained teacher
            teacher = teacher.to(memory_format=torch.channels_last)
        for p in teacher.parameters():
            p.requires_grad_(False)
            p.grad = None  # a freshly trained teacher still holds its last step's gradients
        self.teacher = teacher
        self.info = dict(teacher=source, teacher_train_subjects=seen, teacher_train_seconds=meta.get("train_seconds"))
        self.gen = torch.Generator().manual_seed(derive_seed(spec.seed, "distill-views", ctx.fold))

    def report(self) -> dict:
        return dict(self.info)

    # -- training ------------------------------------------------------------------------------

    def student_views(self, batch: Batch) -> torch.Tensor:
        """Per pair: True where the student sees the masked view (probability p)."""
        draw = torch.rand(batch.y.shape[0], generator=self.gen) < self.opts["p"]
        return draw.to(batch.y.device)

    def training_step(self, method: Method, batch: Batch) -> dict[str, torch.Tensor]:
        masked = self.student_views(batch)
        x = torch.where(masked.view(-1, 1, 1, 1), batch.masked, batch.non_masked)
        with torch.no_grad():
            t_out = self.teacher(batch.non_masked)
        s_out = method(x)
        terms = method.loss(x, batch.y, s_out, batch.state("mixed", masked.long()))
        f_t, f_s = t_out.feature_map.float(), s_out.feature_map.float()
        if self.opts["normalise"]:
            f_t, f_s = F.normalize(f_t, dim=1), F.normalize(f_s, dim=1)
        feat = F.mse_loss(f_s, f_t)
        parts = {"method": terms["loss"], "feature": self.opts["lambda"] * feat}
        out = {**{f"method.{k}": v for k, v in terms.items() if k != "loss"},
               "loss_method": terms["loss"], "feature_mse": feat, "logits": s_out.logits,
               "targets": batch.y, "masked_share": masked.float().mean(), "parts": parts}
        if self.opts["kd_weight"] > 0:
            kd = kd_loss(s_out.logits.float(), t_out.logits.float(), self.opts["kd_temperature"])
            out["kd"] = kd
            parts["kd"] = self.opts["kd_weight"] * kd
        out["loss"] = sum(parts.values())
        return out


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's logit distillation: T^2 * KL(softmax(teacher / T) || softmax(student / T)), batch mean."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.softmax(teacher_logits / t, dim=1),
                    reduction="batchmean") * t * t
