"""What the GEOM paper's competitors share: GEOM's pre-processing, the authors' DCGAN-like encoder / decoder
pair, and a training loop over index batches."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import training
from ..base import Detector, Scores, seeded
from ..geom import prepare   # GEOM's data preparation: pixels in [-1, 1], padded to the network size

METHODS = ("deep_svdd", "raw_ocsvm", "cae_ocsvm", "dsebm", "dagmm", "adgan")
NU_GRID = tuple(round(0.1 * i, 1) for i in range(1, 10))           # section 5.1: nu in {0.1, ..., 0.9}
GAMMA_GRID = tuple(2.0 ** k for k in range(-7, 3))                  # gamma in {2^-7, ..., 2^2}


# --------------------------------------------------------------------------------------------- data

def _crop(maps: torch.Tensor, hw) -> torch.Tensor:
    size = maps.shape[-1]
    top, left = (size - hw[0]) // 2, (size - hw[1]) // 2
    return maps[..., top:top + hw[0], left:left + hw[1]]


def _hw(images):
    return tuple(getattr(images, "images", images).shape[-2:])


def _levels(size: int, base: int = 4) -> int:
    levels = math.log2(size / base) if size >= base else -1
    if levels != int(levels) or levels < 1:
        raise ValueError(f"network input size {size} must be {base} x a power of two (e.g. 32 or 64): pad or "
                         "resize the images (Fashion-MNIST is padded to 32 as in the GEOM paper)")
    return int(levels)


def _batched(fn, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    return torch.cat([fn(x[s:s + batch_size].to(device)).detach().cpu() for s in range(0, len(x), batch_size)]) \
        if len(x) else torch.zeros(0)


def _fit_loop(params, loss_fn, n: int, epochs: int, batch_size: int, gen, lr: float, weight_decay: float = 0.0,
              milestones=(), progress=False, desc="train", drop_last: bool = False, device=None,
              monitor=None, det=None) -> list[float]:
    """Adam over ``epochs`` passes of shuffled index batches; ``loss_fn(idx)`` returns the batch loss.
    ``monitor`` (with the detector ``det`` it scores) records a learning curve; the caller calls
    ``monitor.finish(det)`` once the detector is fitted."""
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    params = list(params)
    history = []
    if epochs == 0:
        return history
    opt = training.optimizer(params, "adam", lr=lr, weight_decay=weight_decay)
    sched = training.schedule(opt, "multistep" if milestones else "none", 0.1, milestones)
    bar = training.progress(range(epochs), bool(progress), desc=desc, leave=False)
    drop = drop_last and n > batch_size
    if monitor is not None:
        monitor.start(det, training.n_batches(n, batch_size, drop) - (0 if drop or n % batch_size != 1 else 1))
    for _ in bar:
        losses = []
        for idx in training.batches(n, batch_size, gen, drop_last=drop):
            if idx.numel() < 2:            # a 1-sample batch breaks batch norm
                continue
            loss = loss_fn(idx if device is None else idx.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if monitor is not None:
                monitor.step(det, losses[-1])
        sched.step()
        if losses:
            history.append(training.check_loss(np.mean(losses), len(history) + 1, desc))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    return history


# --------------------------------------------------------------------------------------------- DCGAN-like pair

class ConvEncoder(nn.Module):
    """The GEOM authors' encoder (from the DCGAN discriminator): stride-2 3x3 convs 64, 128, 256 (+512 at 64px),
    each with batch norm and ReLU, then a dense code with ``activation`` (tanh for the CAE, relu for DSEBM,
    linear for DAGMM and the WGAN critic)."""

    def __init__(self, in_channels: int, size: int, rep_dim: int = 256, activation: str = "tanh"):
        super().__init__()
        levels = _levels(size)
        chans = [64 * 2 ** i for i in range(levels)]
        layers, prev = [], in_channels
        for c in chans:
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            prev = c
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Linear(prev * 16, rep_dim)
        acts = {"tanh": nn.Tanh(), "relu": nn.ReLU(), "linear": nn.Identity()}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        self.act = acts[activation]

    def forward(self, x):
        return self.act(self.fc(self.features(x)))


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder` (the DCGAN generator): dense to 256 x 4 x 4 with batch norm and ReLU, stride-2
    3x3 transposed convs 128, 64 (+64 at 64px) with batch norm and ReLU, a last one to the image channels, tanh."""

    def __init__(self, out_channels: int, size: int, rep_dim: int = 256):
        super().__init__()
        levels = _levels(size)
        self.fc = nn.Sequential(nn.Linear(rep_dim, 256 * 16), nn.BatchNorm1d(256 * 16), nn.ReLU())
        chans = [128, 64] + [64] * (levels - 3)
        layers, prev = [], 256
        for c in chans[:levels - 1]:
            layers += [nn.ConvTranspose2d(prev, c, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(c),
                       nn.ReLU()]
            prev = c
        layers += [nn.ConvTranspose2d(prev, out_channels, 3, stride=2, padding=1, output_padding=1), nn.Tanh()]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z):
        return self.deconv(self.fc(z).view(len(z), 256, 4, 4))


