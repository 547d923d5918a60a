"""FCDD paper (000), section 3 and appendix A: Algorithm 1's receptive-field upsampling with a fixed Gaussian."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import nets

# --------------------------------------------------------------------------------- upsampling (Alg. 1)

def official_kernel(size: int, sigma: float) -> torch.Tensor:
    """The authors' upsampling kernel: the outer product of an unnormalised 1-D Gaussian (peak 1). For an even
    ``size`` they sample ``size - 1`` taps, repeat the centre tap and halve the result (the 2-D peak is 0.25), so
    that two equal centre taps do not fall off the peak. It sets the scale of the maps their training loss sees."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    n = size - 1 if size % 2 == 0 else size
    ax = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    g = torch.exp(-ax ** 2 / (2 * sigma ** 2))
    if size % 2 == 0:
        g = torch.cat([g[:n // 2 + 1], g[n // 2:]]) / 2
    return torch.outer(g, g).float()


def gaussian_kernel(size: int, sigma: float, normalize: bool = True) -> torch.Tensor:
    """A size x size Gaussian centred at ((size-1)/2, (size-1)/2), G_2 of Algorithm 1 (sums to ~1 when
    ``normalize``; the authors' code uses peak 1 instead, which only rescales the maps)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma ** 2))
    if normalize:
        g = g / (2 * math.pi * sigma ** 2)
    return g.float()


class ReceptiveUpsampler:
    """Algorithm 1 as one strided transposed convolution: every low-resolution pixel a adds a * G_2(c, sigma)
    at the centre c of its receptive field. Kernel size = receptive field, stride = cumulative stride, both
    read from the network's layers (:func:`oneclass.nets.geometry`); sigma defaults to appendix A's.

    Border pixels receive fewer overlapping Gaussians than inner ones, so Algorithm 1's maps fall off in a frame
    about half a receptive field wide whatever the content (a constant A gives a map that is low at the border),
    which biases pixel metrics against defects near the border. ``coverage=True`` (ours, not the paper's) divides
    by the upsampled map of ones, so a constant A gives a constant map."""

    def __init__(self, net: torch.nn.Module, input_size: int, sigma: float | None = None, normalize: bool = True,
                 official: bool = False, coverage: bool = False):
        self.geometry = g = nets.geometry(net, input_size)
        self.input_size = int(input_size)
        self.sigma = float(sigma) if sigma is not None else nets.paper_sigma(g.rf)
        kernel = official_kernel(g.rf, self.sigma) if official else gaussian_kernel(g.rf, self.sigma, normalize)
        self.kernel = kernel[None, None]
        # the kernel's centre for output pixel 0 lands at (rf-1)/2; the receptive field's centre is at g.start
        self.shift = int(round((g.rf - 1) / 2 - g.start))
        self.coverage = bool(coverage)

    def __call__(self, A: torch.Tensor) -> torch.Tensor:
        out = self._upsample(A)
        if self.coverage:
            ones = torch.ones((1, *torch.as_tensor(A).shape[-2:]), dtype=torch.float32, device=out.device)
            cover = self._upsample(ones)[0]
            out = out / cover.clamp_min(torch.finfo(torch.float32).tiny)
        return out

    def _upsample(self, A: torch.Tensor) -> torch.Tensor:
        A = torch.as_tensor(A, dtype=torch.float32)
        squeeze = A.ndim == 3
        if squeeze:
            A = A[:, None]
        if A.ndim != 4 or A.shape[1] != 1:
            raise ValueError(f"expected low-resolution maps (N, u, v) or (N, 1, u, v), got {tuple(A.shape)}")
        out = F.conv_transpose2d(A, self.kernel.to(A.device), stride=self.geometry.jump)
        s, n = self.shift, self.input_size
        h, w = out.shape[-2:]
        out = F.pad(out, (-s, n - (w - s), -s, n - (h - s)))   # negative padding crops
        return out[:, 0] if squeeze else out

    def blur(self, maps: torch.Tensor) -> torch.Tensor:
        """The same Gaussian as a same-size blur (the paper blurs the baselines' heatmaps with it)."""
        maps = torch.as_tensor(maps, dtype=torch.float32)
        k = self.geometry.rf | 1   # odd, so that 'same' padding does not shift the map
        kernel = gaussian_kernel(k, self.sigma, normalize=False)
        kernel = (kernel / kernel.sum())[None, None].to(maps.device)
        return F.conv2d(maps[:, None], kernel, padding=k // 2)[:, 0]


def receptive_upsample(A: torch.Tensor, net: torch.nn.Module, input_size: int, sigma: float | None = None,
                       normalize: bool = True, coverage: bool = False) -> torch.Tensor:
    """Upsample low-resolution FCDD heatmaps (N, u, v) to the input size (N, H, W) with Algorithm 1."""
    return ReceptiveUpsampler(net, input_size, sigma, normalize, coverage=coverage)(A)


