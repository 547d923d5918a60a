"""Deep SVDD (Ruff et al. 2018), the E2E-OC-SVM column of the GEOM paper's Table 1: LeNet-type network,
autoencoder pretraining, the centre with the +-0.1 rule, global contrast normalisation + min-max."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import training
from ..base import Detector, Scores, seeded
from .common import _batched, _crop, _fit_loop, _hw, _levels, prepare

def gcn_l1(x: torch.Tensor) -> torch.Tensor:
    """Per-image global contrast normalisation with the l1 scale (Deep SVDD's pre-processing)."""
    flat = x.reshape(len(x), -1)
    centred = flat - flat.mean(1, keepdim=True)
    scale = centred.abs().mean(1, keepdim=True).clamp_min(1e-12)
    return (centred / scale).reshape(x.shape)


def svdd_center(features: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """Deep SVDD's centre: the mean network output, with every coordinate closer to 0 than ``eps`` pushed out to
    +-eps (keeping its sign; an exact 0 goes to +eps), so that no coordinate of c can be matched by a dead unit
    that outputs zero for every input."""
    if features.dim() != 2 or len(features) == 0:
        raise ValueError(f"need network outputs (N, D) with N >= 1, got shape {tuple(features.shape)}")
    c = features.double().mean(0)
    small = c.abs() < eps
    c[small & (c >= 0)] = eps
    c[small & (c < 0)] = -eps
    return c.float()


class LeNet(nn.Module):
    """Deep SVDD's LeNet-type network: 5x5 convs (pad 2, no bias), each with batch norm (eps 1e-4, no affine),
    leaky ReLU 0.01 and 2x2 max-pool, then a linear map to ``rep_dim`` without bias (bias terms let the network
    collapse onto the centre, the paper's proposition 2)."""

    def __init__(self, in_channels: int, size: int, channels=(32, 64, 128), rep_dim: int = 128):
        super().__init__()
        layers, prev = [], in_channels
        for c in channels:
            layers += [nn.Conv2d(prev, c, 5, padding=2, bias=False), nn.BatchNorm2d(c, eps=1e-4, affine=False),
                       nn.LeakyReLU(0.01), nn.MaxPool2d(2)]
            prev = c
        if size % 2 ** len(channels):
            raise ValueError(f"input size {size} is not divisible by {2 ** len(channels)} ({len(channels)} poolings)")
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Linear(prev * (size // 2 ** len(channels)) ** 2, rep_dim, bias=False)

    def forward(self, x):
        return self.fc(self.features(x))


class LeNetDecoder(nn.Module):
    """Deep SVDD's decoder: the code reshaped to (rep_dim/16, 4, 4), leaky ReLU, then 5x5 transposed convs
    (no bias) with batch norm and leaky ReLU, nearest x2 upsampling before the last ``log2(size/4)`` of them,
    and a sigmoid (inputs are min-max scaled to [0, 1])."""

    def __init__(self, out_channels: int, size: int, channels=(32, 64, 128), rep_dim: int = 128):
        super().__init__()
        if rep_dim % 16:
            raise ValueError(f"rep_dim must be a multiple of 16 to be reshaped to 4x4, got {rep_dim}")
        ups = _levels(size)
        targets = list(reversed(channels)) + [out_channels]
        if ups > len(targets):
            raise ValueError(f"{len(channels)} layers cannot upsample 4 -> {size}; use more conv layers")
        self.layers = nn.ModuleList()
        self.up = []
        prev = rep_dim // 16
        for i, c in enumerate(targets):
            last = i == len(targets) - 1
            block = [nn.ConvTranspose2d(prev, c, 5, padding=2, bias=False)]
            if not last:
                block += [nn.BatchNorm2d(c, eps=1e-4, affine=False), nn.LeakyReLU(0.01)]
            self.layers.append(nn.Sequential(*block))
            self.up.append(i >= len(targets) - ups)
            prev = c
        self.rep_dim = rep_dim

    def forward(self, z):
        x = F.leaky_relu(z.view(len(z), self.rep_dim // 16, 4, 4), 0.01)
        for up, layer in zip(self.up, self.layers):
            if up:
                x = F.interpolate(x, scale_factor=2)
            x = layer(x)
        return torch.sigmoid(x)


# Deep SVDD's networks and schedules (its code's defaults: MNIST-type for one channel, CIFAR-10 for three).
SVDD_NETS = {1: {"channels": (8, 4), "rep_dim": 32}, 3: {"channels": (32, 64, 128), "rep_dim": 128}}
SVDD_SCHEDULES = {1: {"epochs": 150, "milestones": (50,), "ae_epochs": 150, "ae_milestones": (50,)},
                  3: {"epochs": 150, "milestones": (50,), "ae_epochs": 350, "ae_milestones": (250,)}}


class DeepSVDD(Detector):
    """One-class Deep SVDD: minimise the mean squared distance of the network outputs to a fixed centre c.

    ``channels`` / ``rep_dim``: None picks the Deep SVDD paper's LeNet for the image's channel count (1: convs 8,
    4, code 32; 3: convs 32, 64, 128, code 128). ``preprocessing``: 'gcn_minmax' (the Deep SVDD paper's: l1
    global contrast normalisation, then min-max scaling to [0, 1] with the training set's extremes) or 'none'
    (the [-1, 1] pixels as they come). Adam with lr 1e-4, weight decay 5e-7, batch 200, lr x0.1 at the
    milestones; the autoencoder pretraining has its own epochs and milestones.
    """

    def __init__(self, channels=None, rep_dim: int | None = None, lr: float = 1e-4, weight_decay: float = 5e-7,
                 batch_size: int = 200, milestones=None, ae_lr: float = 1e-4, ae_weight_decay: float = 5e-7,
                 ae_milestones=None, preprocessing: str = "gcn_minmax", eps: float = 0.1, size: int | None = None,
                 seed: int | None = None, device=None, precision: str = "fp32"):
        if preprocessing not in ("gcn_minmax", "none"):
            raise ValueError(f"preprocessing must be 'gcn_minmax' (Deep SVDD's) or 'none', got {preprocessing!r}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (batch norm), got {batch_size}")
        self.channels, self.rep_dim, self.lr, self.weight_decay = channels, rep_dim, lr, weight_decay
        self.batch_size, self.milestones, self.ae_lr, self.ae_weight_decay = batch_size, milestones, ae_lr, \
            ae_weight_decay
        self.ae_milestones, self.preprocessing, self.eps, self.size = ae_milestones, preprocessing, eps, size
        self.seed, self.device, self.precision = seed, device, precision

    def _input(self, images) -> torch.Tensor:
        x = prepare(images, getattr(self, "size_", self.size))
        if self.preprocessing == "gcn_minmax":
            x = gcn_l1(x)
            if self.minmax_ is not None:
                lo, hi = self.minmax_
                x = (x - lo) / (hi - lo)
        return x

    def _net(self, x):
        with self._autocast():
            return self.net_(x).float()

    def fit(self, train, epochs: int | None = None, progress: bool = False, *,
            ae_epochs: int | None = None, monitor=None) -> "DeepSVDD":
        """Pretrain the autoencoder (``ae_epochs``; 0 skips it), copy its encoder, set c, train the one-class
        objective (``epochs``). None takes the Deep SVDD paper's numbers for the channel count. ``monitor``
        records the learning curve of the one-class phase."""
        self._setup()
        with seeded(self.seed_):
            return self._fit(train, epochs, progress, ae_epochs, monitor)

    def _fit(self, train, epochs, progress, ae_epochs, monitor=None):
        dev = self.device_
        self.minmax_ = None
        self.__dict__.pop("size_", None)
        x = self._input(train)
        if self.preprocessing == "gcn_minmax":
            # Deep SVDD scales with the extremes of the normal class's training data (its code's precomputed
            # per-class min / max); test images may fall slightly outside [0, 1].
            self.minmax_ = (float(x.min()), float(x.max()))
            x = (x - self.minmax_[0]) / (self.minmax_[1] - self.minmax_[0])
        n, c, size, _ = x.shape
        if n < 2:
            raise ValueError(f"Deep SVDD needs at least 2 training images, got {n}")
        self.size_ = size
        arch = dict(SVDD_NETS.get(c, SVDD_NETS[3]))
        arch["channels"] = tuple(self.channels or arch["channels"])
        arch["rep_dim"] = self.rep_dim or arch["rep_dim"]
        sched = SVDD_SCHEDULES.get(c, SVDD_SCHEDULES[3])
        epochs = sched["epochs"] if epochs is None else int(epochs)
        ae_epochs = sched["ae_epochs"] if ae_epochs is None else int(ae_epochs)
        milestones = sched["milestones"] if self.milestones is None else tuple(self.milestones)
        ae_milestones = sched["ae_milestones"] if self.ae_milestones is None else tuple(self.ae_milestones)
        gen = training.generator(self.seed_)
        x = x.to(dev)
        self.net_ = LeNet(c, size, **arch).to(dev)
        self.ae_history_ = []
        if ae_epochs > 0:
            decoder = LeNetDecoder(c, size, **arch).to(dev)
            ae = nn.Sequential(self.net_, decoder).train()

            def ae_loss(idx):
                xb = x[idx]
                with self._autocast():
                    rec = ae(xb).float()
                return ((rec - xb) ** 2).sum(dim=(1, 2, 3)).mean()

            self.ae_history_ = _fit_loop(ae.parameters(), ae_loss, n, ae_epochs, self.batch_size, gen, self.ae_lr,
                                         self.ae_weight_decay, [m for m in ae_milestones if m < ae_epochs],
                                         progress, "Deep SVDD autoencoder", device=dev)
        self.c_ = svdd_center(self._embed(x), self.eps).to(dev)
        self.net_.train()

        def svdd_loss(idx):
            return ((self._net(x[idx]) - self.c_) ** 2).sum(1).mean()

        self.history_ = _fit_loop(self.net_.parameters(), svdd_loss, n, epochs, self.batch_size, gen, self.lr,
                                  self.weight_decay, [m for m in milestones if m < epochs], progress, "Deep SVDD",
                                  device=dev, monitor=monitor, det=self)
        self.net_.eval()
        self._fitted = True
        if monitor is not None:
            monitor.finish(self)
        return self

    @torch.no_grad()
    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        self.net_.eval()
        return _batched(self._net, x, 512, self.device_)

    def score(self, test, maps: bool = True) -> Scores:
        """Squared distance to c; ``maps`` adds gradient heatmaps (:meth:`explain`)."""
        self._check_fitted()
        z = self._embed(self._input(test))
        d = ((z - self.c_.cpu()) ** 2).sum(1).double()
        return Scores(d, self.explain(test) if maps else None)

    def explain(self, images) -> np.ndarray:
        """|d score / d pixel| summed over channels at the images' own size: the gradient heatmap the FCDD paper
        shows for the HSC baseline (Deep SVDD's paper has none of its own)."""
        self._check_fitted()
        x = self._input(images)
        self.net_.eval()
        out = []
        for s in range(0, len(x), 256):
            xb = x[s:s + 256].to(self.device_).requires_grad_(True)
            d = ((self._net(xb) - self.c_) ** 2).sum()
            (g,) = torch.autograd.grad(d, xb)
            out.append(g.abs().sum(1).cpu())
        return _crop(torch.cat(out), _hw(images)).numpy()


