"""The Clever Hans paper (003), appendix A: explanations by layer-wise relevance propagation (zennit rules)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class L2Pool(nn.Module):
    """l2-pooling sqrt(mean(x^2)) over k x k windows (or to a fixed output size): positively homogeneous, so
    LRP's z-rule gives each input its quadratic share x_i^2 / sum x^2 of the pooled relevance."""

    def __init__(self, kernel: int = 2, output_size: int | None = None, eps: float = 1e-12):
        super().__init__()
        self.kernel, self.output_size, self.eps = kernel, output_size, eps

    def forward(self, x):
        sq = x * x
        pooled = F.adaptive_avg_pool2d(sq, self.output_size) if self.output_size else F.avg_pool2d(sq, self.kernel)
        return torch.sqrt(pooled + self.eps)


def lrp_composite(gamma: float = 0.25, low: float = 0.0, high: float = 1.0):
    """The paper's rules as a zennit composite: z^B (box [low, high]) at the first convolution, the gamma rule
    at the others, LRP-0 at the whitening (A.4), the quadratic share at l2-pools, ReLU passes relevance on."""
    from zennit.composites import SpecialFirstLayerMapComposite
    from zennit.rules import Epsilon, Gamma, Norm, Pass, ZBox

    layer_map = [(nn.ReLU, Pass()), (L2Pool, Norm(stabilizer=1e-12)), (nn.Conv2d, Gamma(gamma, stabilizer=1e-12)),
                 (nn.Linear, Epsilon(epsilon=1e-12))]
    return SpecialFirstLayerMapComposite(layer_map, [(nn.Conv2d, ZBox(low, high, stabilizer=1e-12))])


def lrp_squared_norm(net: nn.Module, x: torch.Tensor, gamma: float = 0.25) -> np.ndarray:
    """Relevance maps (N, H, W) of o(x) = ||net(x)||^2: the distance layer gives R_k = h_k^2 (A.3 with mu = 0),
    which zennit then propagates through ``net`` (channels summed)."""
    x = x.detach().clone().requires_grad_(True)
    composite = lrp_composite(gamma)
    with composite.context(net) as modified:
        h = modified(x)
        (rel,) = torch.autograd.grad(h, x, grad_outputs=(h * h).detach())
    return rel.sum(1).detach().cpu().numpy()


