"""DSEBM (Zhai et al. 2016) as the GEOM authors ran it for their Table 1 (section 5.1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import training
from ..base import Detector, Scores, seeded
from .common import ConvEncoder, _crop, _fit_loop, _hw, prepare


class _Energy(nn.Module):
    """E(x) = 0.5 ||x - b||^2 - sum_j enc_j(x)."""

    def __init__(self, channels: int, size: int, rep_dim: int):
        super().__init__()
        self.encoder = ConvEncoder(channels, size, rep_dim, "relu")
        self.b = nn.Parameter(torch.zeros(channels, size, size))

    def forward(self, x):
        return 0.5 * ((x - self.b) ** 2).flatten(1).sum(1) - self.encoder(x).flatten(1).sum(1)


class DSEBM(Detector):
    """Deep structured energy-based model (Zhai et al. 2016) with the GEOM authors' deeper energy:
    E(x) = 0.5 ||x - b||^2 - sum_j enc_j(x), enc = :class:`ConvEncoder` with a ReLU code. Trained by denoising
    score matching: the reconstruction of a noisy input x~ is x~ - dE/dx~, regressed onto the clean x (MSE).
    Anomaly score = E(x); the map is |dE/dx| (the residual the model would remove), summed over channels."""

    def __init__(self, rep_dim: int = 256, noise: float = 0.5, lr: float = 1e-3, batch_size: int = 128,
                 size: int | None = None, seed: int | None = None, device=None, precision: str = "fp32"):
        self.rep_dim, self.noise, self.lr, self.batch_size, self.size = rep_dim, noise, lr, batch_size, size
        self.seed, self.device, self.precision = seed, device, precision

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.energy_(x).float()

    def fit(self, train, epochs: int = 200, progress: bool = False, *, monitor=None) -> "DSEBM":
        self._setup()
        dev = self.device_
        x = prepare(train, self.size)
        n, c, size, _ = x.shape
        self.size_ = size
        gen = training.generator(self.seed_)
        with seeded(self.seed_):
            self.energy_ = _Energy(c, size, self.rep_dim).to(dev).train()
        x = x.to(dev)

        def loss(idx):
            xb = x[idx]
            noise = torch.randn(xb.shape, generator=gen).to(dev)
            noisy = (xb + self.noise * noise).requires_grad_(True)
            (g,) = torch.autograd.grad(self.energy(noisy).sum(), noisy, create_graph=True)
            return F.mse_loss(noisy - g, xb)

        self.history_ = _fit_loop(self.energy_.parameters(), loss, n, int(epochs), self.batch_size, gen, self.lr,
                                  progress=progress, desc="DSEBM", device=dev, monitor=monitor, det=self)
        self.energy_.eval()
        self._fitted = True
        if monitor is not None:
            monitor.finish(self)
        return self

    def score(self, test, maps: bool = True) -> Scores:
        """Energy per image; ``maps``: |dE/dx| summed over channels at the images' own size."""
        self._check_fitted()
        x = prepare(test, self.size_)
        self.energy_.eval()
        scores, out = [], []
        for s in range(0, len(x), 256):
            xb = x[s:s + 256].to(self.device_).requires_grad_(maps)
            with torch.set_grad_enabled(maps):
                e = self.energy(xb)
                if maps:
                    (g,) = torch.autograd.grad(e.sum(), xb)
                    out.append(g.abs().sum(1).detach().cpu())
            scores.append(e.detach().cpu())
        m = _crop(torch.cat(out), _hw(test)) if maps else None
        return Scores(torch.cat(scores).double(), m)
