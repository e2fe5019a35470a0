"""Choice lists of options whose modules are slow to import (torch, grad-cam), defined once here so
that the command line can offer them without importing those modules: explain and data.convert
take theirs from here."""

from msde_bench.data.formats import FORMAT_NAMES

#: pytorch-grad-cam's methods that `msde-bench explain --cam` offers (explain.cam_class maps them)
CAM_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam", "scorecam")
#: the public datasets `msde-bench data convert --format` reads (data.convert; the table: data.formats)
CONVERT_FORMATS = FORMAT_NAMES
#: minutes between two checkpoints of a cell's training within an epoch (cellstate; every epoch's end
#: saves one as well): `--checkpoint-minutes`'s default
CHECKPOINT_MINUTES = 10.0

#: --augment: `paper` (the reference code's list), `none`, or steps joined by "+" in this order, each
#: drawn once per pair and applied to both views alike (data.transforms.PairedAugment):
#: flip (horizontal, p 0.5); crop (a random crop of the image size from the image zero-padded by
#: 1/12 of its side on every edge, 4 px at 48 px: torchvision's RandomCrop(padding=4)); affine
#: (rotation +-10 degrees and scale 0.9-1.1, bilinear, borders reflected; p 1); erase (random
#: erasing: p 0.5, 2-33 % of the image, aspect 0.3-3.3, filled with the mean colour)
AUGMENT_STEPS = ("flip", "crop", "affine", "erase")
AUGMENT_PRESETS = ("paper", "none")


def augment_steps(kind: str) -> tuple[str, ...]:
    """The steps of an --augment value (a preset is one step); ValueError naming what is wrong."""
    if not isinstance(kind, str) or not kind:
        raise ValueError("expected paper, none or steps joined by + (" + "+".join(AUGMENT_STEPS) + ")")
    if kind in AUGMENT_PRESETS:
        return (kind,)
    steps = tuple(kind.split("+"))
    unknown = [s for s in steps if s not in AUGMENT_STEPS]
    if unknown:
        raise ValueError(f"unknown step {unknown[0]!r}; use paper, none, or any of "
                         f"{', '.join(AUGMENT_STEPS)} joined by +")
    canonical = tuple(s for s in AUGMENT_STEPS if s in steps)
    if steps != canonical:
        raise ValueError(f"write each step once, in the order {'+'.join(AUGMENT_STEPS)}: {'+'.join(canonical)}")
    return steps
