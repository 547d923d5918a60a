"""Wide residual networks (Zagoruyko & Komodakis), pre-activation form, as GEOM uses them.

``WRN(depth, widen, num_classes, in_channels)``: depth = 6n + 4 gives n blocks per group; three groups of
16*widen, 32*widen and 64*widen channels with strides 1, 2, 2; batch norm, ReLU, global average pooling, one
linear head. No dropout, no conv biases, He (fan-in) initialisation, BN momentum 0.1 and eps 1e-5, as in the
GEOM authors' Keras network (whose remaining differences, head initialisation, 'same' padding of the strided
convolutions and 8x8 pooling at 64px, are listed in the package README). WRN-10-4 for 32px inputs, WRN-16-8 for
64px ones.
"""
from __future__ import annotations

import torch
from torch import nn


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3-BN-ReLU-conv3 plus a shortcut; a 1x1 conv shortcut where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = _conv3(cin, cout, stride)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2 = _conv3(cout, cout)
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu1(self.bn1(x))
        # Where the shape changes, the projection sees the pre-activated input (Zagoruyko's convention), so the
        # residual path and the shortcut start from the same normalised signal.
        skip = x if self.shortcut is None else self.shortcut(a)
        return skip + self.conv2(self.relu2(self.bn2(self.conv1(a))))


class WRN(nn.Module):
    """Pre-activation wide residual network with a linear head of ``num_classes`` logits."""

    def __init__(self, depth: int = 10, widen: int = 4, num_classes: int = 72, in_channels: int = 3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        if widen < 1 or num_classes < 2 or in_channels < 1:
            raise ValueError(f"need widen >= 1, num_classes >= 2 and in_channels >= 1; got widen={widen}, "
                             f"num_classes={num_classes}, in_channels={in_channels}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.depth, self.widen, self.num_classes, self.in_channels = depth, widen, num_classes, in_channels
        self.stem = _conv3(in_channels, widths[0])
        blocks = []
        for g, stride in enumerate((1, 2, 2)):
            for b in range(n):
                blocks.append(PreActBlock(widths[g] if b == 0 else widths[g + 1], widths[g + 1],
                                          stride if b == 0 else 1))
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.relu = nn.BatchNorm2d(widths[3]), nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)   # the paper's 8x8 pool at 32px; global at any size
        self.head = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads, (N, 64 * widen)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"WRN expects (N, {self.in_channels}, H, W) inputs, got shape {tuple(x.shape)}")
        h = self.relu(self.bn(self.blocks(self.stem(x))))
        return self.pool(h).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def wrn_for(size: int, num_classes: int, in_channels: int) -> WRN:
    """The paper's choice: WRN-10-4 for inputs up to 32px, WRN-16-8 above (CatsVsDogs at 64px)."""
    depth, widen = (10, 4) if size <= 32 else (16, 8)
    return WRN(depth, widen, num_classes, in_channels)
