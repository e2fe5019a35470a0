"""ResNet-18 variants for small faces, registered with timm by name (so that `--model NAME` and a
method's `backbone` option take them like any timm model, and the spec records which one ran):

- `resnet18_nomaxpool`: timm's resnet18 without the stem's max-pool (a 48 px input ends in a 3 x 3
  map instead of 2 x 2);
- `resnet18_cifar`: the CIFAR-style ResNet-18 of the FER-2013 repositories that reach about 0.73: a
  3 x 3 stride-1 stem convolution and no max-pool (a 48 px input ends in a 6 x 6 map).

Both have no pretrained weights (timm's ImageNet weights are for the 7 x 7 stride-2 stem)."""

from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

#: name -> the stem variant SmallInputResNet builds (what it changes in timm's ResNet-18)
VARIANTS = {"resnet18_nomaxpool": "nomaxpool", "resnet18_cifar": "cifar"}


#: what timm knows of each (no weights: url empty), read by register_model from this module
default_cfgs = generate_default_cfgs({name: dict(url="", num_classes=1000, input_size=(3, 48, 48), first_conv="conv1",
                                                 classifier="fc") for name in VARIANTS})


class SmallInputResNet(ResNet):
    """timm's ResNet with the stem `stem_variant` ("nomaxpool": no max-pool; "cifar": a 3 x 3
    stride-1 convolution and no max-pool); its feature_info's reductions follow the change."""

    def __init__(self, *args, stem_variant: str = "nomaxpool", **kwargs):
        super().__init__(*args, **kwargs)
        self.maxpool = nn.Identity()
        shrink = 2
        if stem_variant == "cifar":
            self.conv1 = nn.Conv2d(self.conv1.in_channels, self.conv1.out_channels, 3, stride=1, padding=1, bias=False)
            shrink = 4
        elif stem_variant != "nomaxpool":
            raise ValueError(f"unknown stem variant {stem_variant!r}")
        for info in self.feature_info:
            info["reduction"] = max(1, info["reduction"] // shrink)


def _create(variant: str, pretrained: bool = False, **kwargs) -> ResNet:
    args = dict(block=BasicBlock, layers=(2, 2, 2, 2), stem_variant=VARIANTS[variant])
    return build_model_with_cfg(SmallInputResNet, variant, pretrained, **dict(args, **kwargs))


@register_model
def resnet18_nomaxpool(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 without the stem's max-pool (msde-bench)."""
    return _create("resnet18_nomaxpool", pretrained, **kwargs)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with a 3 x 3 stride-1 stem and no max-pool (msde-bench)."""
    return _create("resnet18_cifar", pretrained, **kwargs)
