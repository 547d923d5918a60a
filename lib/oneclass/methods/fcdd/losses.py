"""FCDD paper (000), section 3: the pseudo-Huber heatmap, the HSC loss (eq. 1), the FCDD loss (eq. 2) and the
semi-supervised pixel loss (eq. 3)."""
from __future__ import annotations

import torch

EPS = 1e-31   # the authors' guard inside log(1 - exp(-s)); representable in float32


# --------------------------------------------------------------------------------------------- losses

def pseudo_huber(x: torch.Tensor) -> torch.Tensor:
    """h(a) = sqrt(a^2 + 1) - 1, element-wise: quadratic near 0, linear far away."""
    return torch.sqrt(x * x + 1) - 1


def hsc_loss(score: torch.Tensor, anomaly: torch.Tensor) -> torch.Tensor:
    """Eq. (1) given per-sample scores s = h(phi(X)) >= 0: s for nominal samples, -log(1 - exp(-s)) for
    anomalies, averaged over the batch. ``1 - exp(-s)`` is computed as ``-expm1(-s)`` (exact for small s)."""
    if score.shape != anomaly.shape:
        raise ValueError(f"scores {tuple(score.shape)} and labels {tuple(anomaly.shape)} must have the same shape")
    anomalous = -torch.log(-torch.expm1(-score) + EPS)
    return torch.where(anomaly.bool(), anomalous, score).mean()


def fcdd_loss(A: torch.Tensor, anomaly: torch.Tensor) -> torch.Tensor:
    """Eq. (2): the HSC loss of the mean of each sample's heatmap A(X) (N, 1, u, v) or (N, u, v)."""
    return hsc_loss(A.flatten(1).mean(1), anomaly)


def pixel_loss(A: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Eq. (3), the semi-supervised pixel-wise FCDD loss on full-resolution heatmaps A'(X) (N, H, W) and
    ground-truth masks (N, H, W) in {0, 1}: (1/m) sum (1 - Y) A' - log(1 - exp(-(1/m) sum Y A')), both terms
    divided by the total pixel count m. The second term is only taken for images with anomalous pixels
    (for the others it is a constant, log(EPS))."""
    A, masks = A.flatten(1), masks.flatten(1).to(A.dtype)
    if A.shape != masks.shape:
        raise ValueError(f"heatmaps {tuple(A.shape)} and masks {tuple(masks.shape)} must have the same size; "
                         "upsample the heatmaps to the mask resolution first")
    m = A.shape[1]
    nominal = ((1 - masks) * A).sum(1) / m
    s = (masks * A).sum(1) / m
    anomalous = torch.where(masks.amax(1) > 0, -torch.log(-torch.expm1(-s) + EPS), torch.zeros_like(s))
    return (nominal + anomalous).mean()


