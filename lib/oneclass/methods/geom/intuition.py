"""GEOM paper (001), section 6 and Figure 1, as the authors' public code runs them (``intuition_experiments.py``;
facts taken from it, the code is ours).

* :class:`IntuitionNet`: conv 3x3 (32, 'same', ReLU) -> batch norm -> 2x2 max pool -> flatten -> dense 10 (ReLU)
  -> batch norm -> dense |T| (softmax), on MNIST padded to 32 px with zeros and scaled to [0, 1]; Keras defaults
  throughout (Glorot-uniform weights, zero biases, batch norm momentum 0.99 and epsilon 1e-3). A flatten network
  learns position-specific templates; a global-pooling WRN can read a shift from the zero-padded border of any
  digit, which is why the protocol decides section 6's translation number.
* :data:`AUTHORS`: the rest of that protocol: Adam 1e-3 without weight decay, batch 64, 10 epochs over the
  |T| x N self-labelled set, the last 10% of the training images held out (Keras' ``validation_split=0.1``), and
  the simplified normality score (mean over t of p(t | T_t(x))).
* :func:`authors_ascent`: Figure 1's input optimisation: 200 steps of plain gradient ascent on the simplified
  score at step 5 x 0.99, each step keeping only the gradient entries whose |gradient x pixel| reaches the image's
  80th percentile and blurring the image with a Gaussian of sigma 0.28 (scipy's 3-tap kernel, edges repeated);
  at the end, clipping to [0, 1] and zeroing the pixels below the image's 80th percentile.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

# The protocol of the authors' intuition experiments (GEOM keyword arguments; epochs and the held-out share apart).
AUTHORS = dict(net="intuition", size=32, pixel_range="unit", batch_size=64, weight_decay=0.0,
               score_kind="simplified")
AUTHORS_EPOCHS = 10
AUTHORS_VALIDATION_SPLIT = 0.1      # Keras' validation_split: the last 10% of the samples never train
ASCENT = dict(steps=200, eta=5.0 * 0.99, keep_quantile=0.8, blur_sigma=0.28)


class IntuitionNet(nn.Module):
    """The authors' small classifier of section 6 (see the module docstring), for ``size`` x ``size`` inputs."""

    def __init__(self, in_channels: int = 1, size: int = 32, num_classes: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)      # Keras momentum 0.99 = torch 0.01
        self.fc1 = nn.Linear(32 * (size // 2) ** 2, 10)
        self.bn2 = nn.BatchNorm1d(10, eps=1e-3, momentum=0.01)
        self.head = nn.Linear(10, num_classes)
        for layer in (self.conv, self.fc1, self.head):               # Keras: Glorot uniform, zero biases
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.bn1(F.relu(self.conv(x))), 2)
        return self.head(self.bn2(F.relu(self.fc1(x.flatten(1)))))   # logits; the loss applies the softmax


def blur(x: torch.Tensor, sigma: float = ASCENT["blur_sigma"], truncate: float = 4.0) -> torch.Tensor:
    """A Gaussian blur of (N, C, H, W) images as scipy.ndimage.gaussian_filter(x, sigma) over the two image axes:
    radius int(truncate * sigma + 0.5), half-sample symmetric edges (for radius 1: the edge pixel repeated)."""
    r = int(truncate * sigma + 0.5)
    if r == 0:
        return x
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    y = torch.cat([y[..., :r].flip(-1), y, y[..., -r:].flip(-1)], -1)          # symmetric edges (scipy 'reflect')
    y = F.conv2d(y, k.reshape(1, 1, 1, -1))
    y = torch.cat([y[..., :r, :].flip(-2), y, y[..., -r:, :].flip(-2)], -2)
    y = F.conv2d(y, k.reshape(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def _per_image_quantile(v: torch.Tensor, q: float) -> torch.Tensor:
    """np.percentile(v[i], 100 q) (linear interpolation) for each image i, shaped to broadcast over v."""
    return torch.quantile(v.flatten(1), q, dim=1).reshape(-1, *([1] * (v.dim() - 1)))


def ascent_step(x: torch.Tensor, grad: torch.Tensor, eta: float = ASCENT["eta"],
                keep_quantile: float = ASCENT["keep_quantile"], blur_sigma: float = ASCENT["blur_sigma"]):
    """One step of Figure 1's rule: zero the gradient where |grad * x| is below the image's ``keep_quantile``
    quantile, add ``eta`` times the rest, blur."""
    strength = (grad * x).abs()
    grad = torch.where(strength < _per_image_quantile(strength, keep_quantile), torch.zeros_like(grad), grad)
    return blur(x + eta * grad, blur_sigma)


def finish(x: torch.Tensor, keep_quantile: float = ASCENT["keep_quantile"]) -> torch.Tensor:
    """The rule's last step: clip to [0, 1], zero the pixels below the image's ``keep_quantile`` quantile."""
    x = x.clamp(0, 1)
    return torch.where(x < _per_image_quantile(x.abs(), keep_quantile), torch.zeros_like(x), x)


def authors_ascent(normality, x: torch.Tensor, steps: int = ASCENT["steps"], **rule) -> torch.Tensor:
    """Figure 1's optimisation of images ``x`` in [0, 1] (N, C, H, W) for ``steps`` steps; ``normality(x)`` gives
    the per-image score to raise (differentiable). Each image's step depends on that image alone."""
    keep = rule.get("keep_quantile", ASCENT["keep_quantile"])
    x = x.detach().clone()
    for _ in range(steps):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(normality(x).sum(), x)
        x = ascent_step(x.detach(), g, **rule)
    return finish(x, keep)

