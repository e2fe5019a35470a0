"""Seeing what a model looks at: Grad-CAM pairs, t-SNE, confusion matrices, attention shift.

Everything starts from a result file and the fold models `msde-bench run --save-models` wrote
next to it: the spec rebuilds the model, the dataset is read again (its fingerprint must match)
and the protocol's folds are recomputed from the spec's seed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from msde_bench import CLASS_NAMES
from msde_bench import protocol as P
from msde_bench import results as R
from msde_bench.atomic import write_text_atomic
from msde_bench.checkpoints import model_path, read_model
from msde_bench.choices import CAM_METHODS
from msde_bench.data.pairs import ImageCache
from msde_bench.errors import MsdeError
from msde_bench.factory import build_method, load_dataset
from msde_bench.models.base import set_input_normalisation
from msde_bench.spec import RunSpec
from msde_bench.training import eval_augment

# ------------------------------------------------------------------------------------------
# loading fold models


def load_model(path: Path, spec: RunSpec, num_classes: int) -> nn.Module:
    """A saved fold model, rebuilt from its spec with `num_classes` outputs (its dataset's classes),
    in eval mode, told the evaluation's input normalisation (it sees evaluation inputs only)."""
    method, _ = build_method(spec, load=False, num_classes=num_classes)
    method.load_state_dict(read_model(path)["state_dict"])
    set_input_normalisation(method, eval_augment(spec).normalisation)
    return method.eval()


@dataclass
class Explained:
    """One fold of one run, ready to look at."""

    result: dict
    result_path: Path
    spec: RunSpec
    fold: int
    method: nn.Module
    cache: object
    test_idx: np.ndarray
    train_idx: np.ndarray


def load_fold(result_path: str | Path, fold: int | None = None) -> Explained:
    result_path = Path(result_path)
    result = R.load(result_path)
    spec = RunSpec.from_dict(result["spec"])
    done = [f["fold"] for f in result["folds"]]
    fold = done[0] if fold is None else fold
    if fold not in done:
        raise MsdeError(f"{result_path}: fold {fold} is not in this result (folds {done})")
    record = next(x for x in result["folds"] if x["fold"] == fold)
    saved = record.get("model_file")
    path = result_path.parent / saved if saved else model_path(result_path, result["run_id"], fold)
    dataset = load_dataset(spec.data)
    if dataset.fingerprint() != result["dataset"]["fingerprint"]:
        raise MsdeError(f"{spec.data}: the dataset changed since {result_path} was written (fingerprint "
                        f"{dataset.fingerprint()} vs {result['dataset']['fingerprint']})")
    folds = P.make_folds(spec.protocol, dataset.subjects, dataset.labels, spec.folds, spec.seed,
                         dataset.official_splits())
    f = folds[fold]
    if list(f.test_subjects) != list(record["test_subjects"]):
        raise MsdeError(f"{result_path}: fold {fold}'s test subjects cannot be reproduced")
    method = load_model(path, spec, len(dataset.classes))
    return Explained(result, result_path, spec, fold, method, ImageCache(dataset, spec.image_size), f.test, f.train)


# ------------------------------------------------------------------------------------------
# computing


def _inputs(ex: Explained, idx: np.ndarray, view: str) -> torch.Tensor:
    src = ex.cache.non_masked if view == "non-masked" else ex.cache.masked
    return eval_augment(ex.spec).eval(src[torch.as_tensor(idx)], torch.device("cpu"))


def _rgb(ex: Explained, idx: np.ndarray, view: str) -> np.ndarray:
    src = ex.cache.non_masked if view == "non-masked" else ex.cache.masked
    return src[torch.as_tensor(idx)].permute(0, 2, 3, 1).numpy().astype(np.float32) / 255.0


@torch.no_grad()
def outputs(ex: Explained, idx: np.ndarray, view: str, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, embeddings) of one view."""
    preds, embs = [], []
    for s in range(0, len(idx), batch):
        out = ex.method(_inputs(ex, idx[s:s + batch], view))
        preds.append(out.logits.argmax(1).numpy())
        embs.append(out.embedding.float().numpy())
    return np.concatenate(preds), np.concatenate(embs)


def class_name(ex: Explained, index: int) -> str:
    """The expression a head index of the fold's model stands for (ImageCache.classes)."""
    return CLASS_NAMES[ex.cache.classes[int(index)]]


def pick_pairs(ex: Explained, n: int) -> np.ndarray:
    """n test pairs, balanced over classes: round robin over the classes in label order, each class's
    pairs in dataset order; deterministic."""
    labels = ex.cache.labels.numpy()
    by_class = [list(ex.test_idx[labels[ex.test_idx] == c]) for c in range(len(ex.cache.classes))]
    out = []
    while len(out) < n and any(by_class):
        for c in range(len(ex.cache.classes)):
            if by_class[c] and len(out) < n:
                out.append(by_class[c].pop(0))
    return np.array(out, dtype=np.int64)


class _Logits(nn.Module):
    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, x):
        return self.method(x).logits


def cam_class(name: str):
    import pytorch_grad_cam as pgc

    table = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
             "layercam": pgc.LayerCAM, "hirescam": pgc.HiResCAM, "eigencam": pgc.EigenCAM, "scorecam": pgc.ScoreCAM}
    if name not in table:
        raise MsdeError(f"--cam {name}: choose one of {', '.join(CAM_METHODS)}")
    return table[name]


def target_layer(method: nn.Module, name: str | None = None) -> nn.Module:
    """The method's declared Grad-CAM layer, or the module called `name` (e.g. `trunk.layer3`, for
    finer maps at small input sizes, where ResNet's layer4 is 2 x 2 at 48 px)."""
    if name:
        modules = dict(method.named_modules())
        if name not in modules:
            near = [n for n in modules if n.count(".") <= 1 and n][:12]
            raise MsdeError(f"--layer {name}: no such module; e.g. {', '.join(near)}")
        return modules[name]
    try:
        return method.target_layer()
    except NotImplementedError:
        raise MsdeError(f"{type(method).__name__} declares no Grad-CAM target layer (Method.target_layer)") from None


#: below this many cells a side, the declared layer's map is too coarse to show where a face is looked at
MIN_CAM_SIDE = 4


def default_layer(ex: Explained) -> str | None:
    """The layer Grad-CAM uses without --layer: the method's declared one (None), unless its map is
    smaller than MIN_CAM_SIDE a side at the run's input size and the trunk has a `layer3` (ResNet's
    layer4 is 2 x 2 at 48 px): then `trunk.layer3`, twice as fine."""
    method = ex.method
    try:
        declared = method.target_layer()
    except NotImplementedError:
        return None
    seen: dict = {}
    hook = declared.register_forward_hook(lambda m, i, o: seen.setdefault("out", o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            method(_inputs(ex, ex.test_idx[:1], "non-masked"))
    finally:
        hook.remove()
    out = seen.get("out")
    small = isinstance(out, torch.Tensor) and out.ndim == 4 and min(out.shape[-2:]) < MIN_CAM_SIDE
    return "trunk.layer3" if small and "trunk.layer3" in dict(method.named_modules()) else None


def cams(ex: Explained, idx: np.ndarray, view: str, targets: np.ndarray, cam: str = "gradcam",
         batch: int = 32, layer: str | None = None) -> np.ndarray:
    """CAMs (N x H x W in [0, 1]) of one view, for the given target classes."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    method = ex.method
    reshape = None if layer else (method.cam_reshape_transform() if hasattr(method, "cam_reshape_transform") else None)
    out = []
    with cam_class(cam)(model=_Logits(method), target_layers=[target_layer(method, layer)],
                        reshape_transform=reshape) as c:
        for s in range(0, len(idx), batch):
            x = _inputs(ex, idx[s:s + batch], view)
            tg = [ClassifierOutputTarget(int(t)) for t in targets[s:s + batch]]
            out.append(c(input_tensor=x, targets=tg))
    method.eval()
    return np.concatenate(out).astype(np.float32)


def tsne(embeddings: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = len(embeddings)
    perplexity = float(max(2.0, min(30.0, (n - 1) / 3)))
    return TSNE(n_components=2, random_state=seed, init="pca", perplexity=perplexity).fit_transform(
        embeddings.astype(np.float64))


def row_normalised(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its own sum (empty rows stay 0): the reference code's column-aligned
    division is not reproduced."""
    cm = np.asarray(cm, dtype=np.float64)
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)


# ------------------------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_cam_pairs(ex_list: list[Explained], idx: np.ndarray, cam: str, path: Path, layer: str | None = None) -> None:
    """Rows = pairs; for each run: non-masked, its CAM, masked, its CAM."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    plt = _plt()
    per_pair = 4 * len(ex_list)
    across = 2 if len(ex_list) == 1 else 1  # one run: two pairs side by side, so the grid is not a strip
    rows = -(-len(idx) // across)
    cols = per_pair * across
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.3 * rows), squeeze=False)
    labels = ex_list[0].cache.labels.numpy()[idx]
    for r, ex in enumerate(ex_list):
        for v, view in enumerate(("non-masked", "masked")):
            preds, _ = outputs(ex, idx, view)
            maps = cams(ex, idx, view, preds, cam, layer=layer)
            rgb = _rgb(ex, idx, view)
            for i in range(len(idx)):
                row, c0 = i // across, (i % across) * per_pair + 4 * r + 2 * v
                tag = f"{ex.spec.paradigm} · " if len(ex_list) > 1 else ""
                axes[row, c0].imshow(rgb[i])
                axes[row, c0].set_title(f"{tag}{view}\ntrue {class_name(ex, labels[i])}", fontsize=9)
                axes[row, c0 + 1].imshow(show_cam_on_image(rgb[i], maps[i], use_rgb=True))
                ok = "✓" if preds[i] == labels[i] else "✗"
                axes[row, c0 + 1].set_title(f"pred {class_name(ex, preds[i])} {ok}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def figure_tsne(ex: Explained, path: Path, with_train: bool = False, lines: int = 12) -> np.ndarray:
    """t-SNE of the pooled embeddings of both views; returns the coordinates (also written as CSV)."""
    plt = _plt()
    idx = ex.test_idx if not with_train else np.concatenate([ex.test_idx, ex.train_idx])
    _, e_nm = outputs(ex, idx, "non-masked")
    _, e_m = outputs(ex, idx, "masked")
    xy = tsne(np.concatenate([e_nm, e_m]), ex.spec.seed)
    n = len(idx)
    labels = ex.cache.labels.numpy()[idx]
    fig, ax = plt.subplots(figsize=(7, 6))
    colours = plt.get_cmap("tab10")
    for k in range(min(lines, n)):
        ax.plot([xy[k, 0], xy[n + k, 0]], [xy[k, 1], xy[n + k, 1]], color="0.6", lw=0.7, zorder=1)
    for c in range(len(ex.cache.classes)):
        sel = labels == c
        ax.scatter(xy[:n][sel, 0], xy[:n][sel, 1], s=18, color=colours(c), marker="o", label=class_name(ex, c),
                   zorder=2)
        ax.scatter(xy[n:][sel, 0], xy[n:][sel, 1], s=22, color=colours(c), marker="x", zorder=2)
    ax.set_title(f"t-SNE of pooled embeddings ({'test + train' if with_train else 'test'} fold {ex.fold}): "
                 "o non-masked, x masked", fontsize=9)
    handles, _ = ax.get_legend_handles_labels()
    handles += [plt.Line2D([], [], color="black", marker="o", ls="", label="non-masked view"),
                plt.Line2D([], [], color="black", marker="x", ls="", label="masked view")]
    ax.legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    header = "pair,view,label,x,y"
    ids = ex.cache.class_ids(labels)  # in the MSD-E order, as the dataset's file names give them
    rows = [f"{int(p)},{v},{int(ids[i])},{xy[j, 0]:.6f},{xy[j, 1]:.6f}"
            for j, (i, p, v) in enumerate([(i, p, "non-masked") for i, p in enumerate(idx)] +
                                          [(i, p, "masked") for i, p in enumerate(idx)])]
    write_text_atomic(path.with_suffix(".csv"), header + "\n" + "\n".join(rows) + "\n")
    return xy


def figure_confusion(ex: Explained, path: Path) -> dict:
    from sklearn.metrics import confusion_matrix

    plt = _plt()
    labels = ex.cache.labels.numpy()[ex.test_idx]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    out = {}
    for ax, view in zip(axes, ("non-masked", "masked")):
        preds, _ = outputs(ex, ex.test_idx, view)
        k = len(ex.cache.classes)
        cm = confusion_matrix(labels, preds, labels=list(range(k)))
        norm = row_normalised(cm)
        out[view] = norm
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{norm[i, j]:.2f}\n({cm[i, j]})", ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.6 else "black")
        ax.set_xticks(range(k), [class_name(ex, c)[:4] for c in range(k)], fontsize=7)
        ax.set_yticks(range(k), [class_name(ex, c) for c in range(k)], fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{view} (rows sum to 1; counts in brackets)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return out


def fold_record(ex: Explained) -> dict:
    return next(f for f in ex.result["folds"] if f["fold"] == ex.fold)


def figure_curves(ex: Explained, path: Path) -> bool:
    """The fold's training curves from the result's train_history: every loss term per epoch
    (log scale when all are positive), training accuracy, learning rate. False when the result
    records no history (older results)."""
    history = fold_record(ex).get("train_history") or []
    if not history:
        return False
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    terms = [k for k in history[0] if k not in ("epoch", "train_acc", "lr")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for k in terms:
        axes[0].plot(epochs, [h.get(k, np.nan) for h in history], marker="o", ms=3, lw=2 if k == "loss" else 1,
                     label=k)
    if all(h.get(k, 1) > 0 for h in history for k in terms):
        axes[0].set_yscale("log")
    axes[0].set_title("loss terms (training, mean per epoch)", fontsize=9)
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].plot(epochs, [h["train_acc"] for h in history], marker="o", ms=3, color="tab:green")
    axes[1].set_ylim(0, 1)
    axes[1].set_title("training accuracy", fontsize=9)
    axes[2].plot(epochs, [h["lr"] for h in history], marker="o", ms=3, color="tab:gray")
    axes[2].set_yscale("log")
    axes[2].set_title("learning rate (at the start of the epoch)", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, also for a 1-epoch run
        ax.grid(alpha=0.3)
    fig.suptitle(f"{ex.spec.model} · {ex.spec.paradigm} · fold {ex.fold}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def figure_attention_shift(ex: Explained, cam: str, path: Path, layer: str | None = None) -> None:
    """Per class: the mean CAM of the non-masked and of the masked test images (each for its true
    class) and their difference (masked - non-masked: where the model looks more when masked)."""
    plt = _plt()
    idx = ex.test_idx
    labels = ex.cache.labels.numpy()[idx]
    m_nm = cams(ex, idx, "non-masked", labels, cam, layer=layer)
    m_m = cams(ex, idx, "masked", labels, cam, layer=layer)
    k = len(ex.cache.classes)
    rgb_nm, rgb_m = _rgb(ex, idx, "non-masked"), _rgb(ex, idx, "masked")
    fig, axes = plt.subplots(k, 3, figsize=(8.0, 2.3 * k), squeeze=False)
    for c in range(k):
        sel = labels == c
        if not sel.any():
            for ax in axes[c]:
                ax.axis("off")
            continue
        a, b = m_nm[sel].mean(0), m_m[sel].mean(0)
        d = b - a
        lim = max(1e-6, float(np.abs(d).max()))
        faces = (rgb_nm[sel].mean(0).mean(-1), rgb_m[sel].mean(0).mean(-1), rgb_m[sel].mean(0).mean(-1))
        for ax, face, img, title, kw in (
                (axes[c, 0], faces[0], a, "non-masked", dict(cmap="jet", vmin=0, vmax=1)),
                (axes[c, 1], faces[1], b, "masked", dict(cmap="jet", vmin=0, vmax=1)),
                (axes[c, 2], faces[2], d, "masked − non-masked", dict(cmap="RdBu_r", vmin=-lim, vmax=lim))):
            ax.imshow(face, cmap="gray", vmin=0, vmax=1)  # the class's mean face beneath the map
            shown = ax.imshow(img, alpha=0.55, **kw)
            ax.set_title(f"{class_name(ex, c)}: {title}", fontsize=8)
            ax.axis("off")
            bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            bar.ax.tick_params(labelsize=6)
    fig.suptitle(f"mean {cam} per expression over the test fold, on the mean face; right: red = looks more "
                 "when masked, blue = less", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def explain(result_path: str | Path, out: str | Path | None = None, fold: int | None = None, n: int = 14,
            cam: str = "gradcam", tsne_train: bool = False, compare: str | Path | None = None,
            layer: str | None = None, say=None) -> Path:
    """Writes the figures and report.md for one fold of a run (or two runs side by side). `say(text)`
    is told each step as it starts, with the seconds since the start (the CLI prints them)."""
    t0 = time.perf_counter()

    def step(text: str) -> None:
        if say is not None:
            say(f"[{time.perf_counter() - t0:5.1f} s] {text}")

    cam_class(cam)
    step(f"loading fold {fold if fold is not None else '(first)'} of {Path(result_path).name} and decoding its images")
    ex = load_fold(result_path, fold)
    runs = [ex]
    if compare is not None:
        other = load_fold(compare, ex.fold)
        if other.cache.fingerprint != ex.cache.fingerprint or not np.array_equal(other.test_idx, ex.test_idx):
            raise MsdeError(f"{compare}: not the same dataset and test fold as {result_path}; cannot compare")
        runs.append(other)
    if layer is None and (layer := default_layer(ex)) is not None:
        step(f"Grad-CAM on {layer}: the declared layer's map is under {MIN_CAM_SIDE} x {MIN_CAM_SIDE} at "
             f"{ex.spec.image_size} px (--layer chooses another)")
    out = Path(out) if out else ex.result_path.parent / f"{ex.result['run_id']}-explain" / f"fold{ex.fold}"
    out.mkdir(parents=True, exist_ok=True)
    pairs = pick_pairs(ex, n)
    figs = []
    name = "gradcam_compare.png" if compare else "gradcam_pairs.png"
    step(f"{cam} on {len(pairs)} test pairs")
    figure_cam_pairs(runs, pairs, cam, out / name, layer)
    figs.append((name, f"{cam} for {len(pairs)} test pairs balanced over the expressions: each image, and its CAM for "
                       "the predicted class with the prediction (✓ correct, ✗ wrong)"
                       + (f"; left {runs[0].spec.paradigm}, right {runs[1].spec.paradigm}" if compare else "") + "."))
    for i, ex_i in enumerate(runs):
        sfx = f"_{i + 1}" if compare else ""
        step(f"t-SNE of the test fold's embeddings ({ex_i.spec.paradigm})")
        figure_tsne(ex_i, out / f"tsne{sfx}.png", tsne_train)
        figs.append((f"tsne{sfx}.png", f"t-SNE of the pooled embeddings ({ex_i.spec.model} · {ex_i.spec.paradigm}), "
                                       "colour = expression, o = non-masked, x = masked; grey lines join the two "
                                       f"views of a few pairs (seed {ex_i.spec.seed}; coordinates in tsne{sfx}.csv)."))
        figure_confusion(ex_i, out / f"confusion{sfx}.png")
        figs.append((f"confusion{sfx}.png", f"Confusion matrices ({ex_i.spec.paradigm}) of the test fold, rows "
                                            "normalised to sum to 1, counts in brackets."))
        if figure_curves(ex_i, out / f"curves{sfx}.png"):
            figs.append((f"curves{sfx}.png", f"Training curves of this fold ({ex_i.spec.paradigm}): every loss term "
                                             "the paradigm and the method recorded per epoch, training accuracy and "
                                             "learning rate (the result's train_history)."))
        step(f"{cam} over the whole test fold (attention shift, {ex_i.spec.paradigm})")
        figure_attention_shift(ex_i, cam, out / f"attention_shift{sfx}.png", layer)
        figs.append((f"attention_shift{sfx}.png", f"Mean {cam} over the test fold per expression ({ex_i.spec.paradigm}) "
                                                  "for each view, and masked − non-masked (red: looked at more when "
                                                  "masked)."))
    s = ex.result["summary"]
    lines = [f"# {ex.result['run_id']}: fold {ex.fold}", "",
             f"{ex.spec.model} · {ex.spec.paradigm} · {ex.result['dataset']['name']} · protocol "
             f"{ex.result['protocol']['name']} · run accuracy non-masked {s['acc_non_masked']['mean']:.3f}, masked "
             f"{s['acc_masked']['mean']:.3f}" + (f" · compared with {runs[1].result['run_id']}" if compare else ""),
             ""]
    for fname, caption in figs:
        lines += [f"![{fname}]({fname})", "", caption, ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    write_text_atomic(out / "explain.json", json.dumps(dict(result=str(result_path), fold=ex.fold, cam=cam, layer=layer,
                                                            pairs=pairs.tolist(), figures=[f for f, _ in figs]),
                                                       indent=1))
    return out
