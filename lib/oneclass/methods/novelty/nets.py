"""Novelty normalization (paper 002), section 3: the LeNet autoencoder, the novelty-scoring MLP with its L0 term
(eq. 2, 4) and the batch min-max normalisation (eq. 6)."""
from __future__ import annotations

import math

import torch
from torch import nn

NORMALIZE = ("combined", "terms", "none")
L0_MODES = ("hard_concrete", "literal", "none")
NORM_STATS = ("last_epoch", "all")
ABLATION = {   # Table 4's rows: name -> (novelty_scoring, normalize)
    "ae": (False, "none"),
    "ae_norm": (False, "combined"),
    "full": (True, "combined"),
}

# LeNet-style networks of the paper's section 4.2 (Deep SVDD's conv widths): conv channels, z, NS hidden widths.
# The paper gives the depth (two convs / two dense layers for 28 px, three / three for 32 px) and z, not the
# widths of the NS MLP; halving widths are our choice.
# The wider 28px ones are ours (the paper says only "similar" to Deep SVDD's network): same depth and z, more channels.
# "upsample": how the decoder doubles the resolution at each layer: "nearest" (Deep SVDD's fixed x2 interpolation
# before each transposed conv, the default) or "transposed" (ours: the transposed conv itself has stride 2 and learns
# the upsampling; section 4.2 says only that the decoder is "composed of transposed 2D-convolutional layers").
UPSAMPLE = ("nearest", "transposed")
CONFIGS = {
    "lenet28": {"channels": (8, 4), "z_dim": 32, "ns_hidden": (16,)},
    "lenet28_16_8": {"channels": (16, 8), "z_dim": 32, "ns_hidden": (16,)},
    "lenet28_32_64": {"channels": (32, 64), "z_dim": 32, "ns_hidden": (16,)},
    "lenet28_32_64_tconv": {"channels": (32, 64), "z_dim": 32, "ns_hidden": (16,), "upsample": "transposed"},
    "lenet28_64_128_tconv": {"channels": (64, 128), "z_dim": 32, "ns_hidden": (16,), "upsample": "transposed"},
    "lenet32": {"channels": (32, 64, 128), "z_dim": 64, "ns_hidden": (32, 16)},
}

# Hard-concrete constants of Louizos, Welling, Kingma (2018): temperature, stretch interval (gamma, zeta).
HC_BETA, HC_GAMMA, HC_ZETA = 2.0 / 3.0, -0.1, 1.1
LITERAL_ZERO = 1e-10


# --- networks -------------------------------------------------------------------------------------------------

class LeNetAutoencoder(nn.Module):
    """5x5 convs (pad 2, no bias) + BN (affine=False, eps 1e-4) + leaky ReLU + 2x2 max-pool, dense code z;
    a mirrored decoder of x2 upsampling + 5x5 transposed convs, sigmoid output in [0, 1] (Deep SVDD's layout).
    ``upsample="transposed"`` (ours) drops the fixed x2 interpolation: each 5x5 transposed conv has stride 2 and
    doubles the resolution itself (padding 2, output padding 1).

    ``batch_norm=False`` is section 4.2 as printed, which names only "a leaky ReLU activation and a 2x2 pixel
    pooling" after each convolution: no batch norm, and every conv, transposed conv and dense layer with a bias."""

    def __init__(self, in_channels: int, size: int, channels=(8, 4), z_dim: int = 32, batch_norm: bool = True,
                 upsample: str = "nearest"):
        super().__init__()
        if upsample not in UPSAMPLE:
            raise ValueError(f"unknown upsample {upsample!r}; choose one of {UPSAMPLE}")
        depth = len(channels)
        if size % 2 ** depth:
            raise ValueError(f"image size {size} is not divisible by 2**{depth} (one 2x2 pooling per conv layer); "
                             f"resize the images to a multiple of {2 ** depth} (28 and 32 work)")
        self.side = size // 2 ** depth
        self.channels = tuple(channels)
        bias = not batch_norm

        def norm(c):   # BN stands in for the bias where it is used
            return [nn.BatchNorm2d(c, eps=1e-4, affine=False)] if batch_norm else []

        enc, prev = [], in_channels
        for c in channels:
            enc += [nn.Conv2d(prev, c, 5, padding=2, bias=bias), *norm(c), nn.LeakyReLU(0.01), nn.MaxPool2d(2)]
            prev = c
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(prev * self.side ** 2, z_dim, bias=bias))
        self.expand = nn.Linear(z_dim, prev * self.side ** 2, bias=bias)
        dec, outs = [], list(reversed(channels[:-1])) + [in_channels]
        for i, c in enumerate(outs):
            last = i == len(outs) - 1
            if upsample == "nearest":
                dec += [nn.Upsample(scale_factor=2, mode="nearest"),
                        nn.ConvTranspose2d(prev, c, 5, padding=2, bias=bias or last)]
            else:
                dec += [nn.ConvTranspose2d(prev, c, 5, stride=2, padding=2, output_padding=1, bias=bias or last)]
            dec += [nn.Sigmoid()] if last else [*norm(c), nn.LeakyReLU(0.01)]
            prev = c
        self.decoder = nn.Sequential(*dec)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x):
        z = self.encoder(x)
        h = self.act(self.expand(z)).view(len(x), self.channels[-1], self.side, self.side)
        return self.decoder(h), z


class L0Linear(nn.Module):
    """A dense layer whose weights carry an L0 term: hard-concrete gates (Louizos et al.), a literal count of
    non-zero weights, or nothing."""

    def __init__(self, n_in: int, n_out: int, mode: str = "hard_concrete", init_open: float = 0.9):
        super().__init__()
        if mode not in L0_MODES:
            raise ValueError(f"unknown L0 mode {mode!r}; choose one of {L0_MODES}")
        self.mode = mode
        self.linear = nn.Linear(n_in, n_out)
        if mode == "hard_concrete":
            # Louizos et al. initialise log alpha so that gates start mostly open (dropout rate ~ 1 - init_open).
            self.log_alpha = nn.Parameter(torch.full((n_out, n_in), math.log(init_open / (1 - init_open))))
        self.noise_generator: torch.Generator | None = None

    def gates(self) -> torch.Tensor:
        """Sampled gates in training (reparametrised, differentiable in log alpha), their mode at test time."""
        la = self.log_alpha
        if self.training:
            u = torch.rand(la.shape, generator=self.noise_generator).to(la.device).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + la) / HC_BETA)
        else:
            s = torch.sigmoid(la)
        return (s * (HC_ZETA - HC_GAMMA) + HC_GAMMA).clamp(0.0, 1.0)

    def weight(self) -> torch.Tensor:
        w = self.linear.weight
        return w * self.gates() if self.mode == "hard_concrete" else w

    def forward(self, x):
        return nn.functional.linear(x, self.weight(), self.linear.bias)

    def l0(self) -> torch.Tensor:
        """Hard-concrete: expected number of non-zero gates (Louizos et al. eq. 12), differentiable.
        Literal: the number of weights with |w| > 1e-10, a constant for autograd. None: 0."""
        if self.mode == "hard_concrete":
            return torch.sigmoid(self.log_alpha - HC_BETA * math.log(-HC_GAMMA / HC_ZETA)).sum()
        if self.mode == "literal":
            return (self.linear.weight.detach().abs() > LITERAL_ZERO).sum().float()
        return self.linear.weight.new_zeros(())


class NoveltyScorer(nn.Module):
    """The NS module: an MLP on z with leaky ReLUs between dense layers and a sigmoid on its scalar output."""

    def __init__(self, z_dim: int, hidden=(16,), l0: str = "hard_concrete"):
        super().__init__()
        widths = [z_dim, *hidden, 1]
        self.layers = nn.ModuleList(L0Linear(a, b, l0) for a, b in zip(widths[:-1], widths[1:]))
        self.act = nn.LeakyReLU(0.01)

    def forward(self, z):
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return torch.sigmoid(h).squeeze(1)

    def l0(self) -> torch.Tensor:
        return sum(layer.l0() for layer in self.layers)

    def set_noise_generator(self, gen: torch.Generator | None) -> None:
        for layer in self.layers:
            layer.noise_generator = gen


class BatchMinMax(nn.Module):
    """Eq. 6 over the batch dimension in training; at test time the averages of the batch minima and maxima.

    ``k`` columns are normalised independently (1: the combined score; 2: reconstruction error and NS).
    ``gradient`` False detaches the batch min / max, so they act as constants in the loss.
    """

    def __init__(self, k: int = 1, gradient: bool = True, eps: float = 1e-12):
        super().__init__()
        self.gradient, self.eps = gradient, eps
        self.register_buffer("min_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("max_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def reset(self) -> None:
        self.min_sum.zero_(), self.max_sum.zero_(), self.count.zero_()

    @property
    def running_min(self) -> torch.Tensor:
        return self.min_sum / self.count.clamp(min=1)

    @property
    def running_max(self) -> torch.Tensor:
        return self.max_sum / self.count.clamp(min=1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """s: (B, k) -> normalised (B, k)."""
        if self.training:
            if len(s) < 2:
                raise ValueError("batch min-max normalisation needs at least 2 samples per batch; "
                                 "raise batch_size or drop the last incomplete batch")
            lo, hi = s.min(0).values, s.max(0).values
            self.min_sum += lo.detach().double()
            self.max_sum += hi.detach().double()
            self.count += 1
            if not self.gradient:
                lo, hi = lo.detach(), hi.detach()
        else:
            if int(self.count) == 0:
                raise RuntimeError("the normaliser has no statistics: fit the model before scoring")
            # float64 at test time: in float32 the affine map can merge two close scores into a tie and move the AUC
            s = s.double()
            lo, hi = self.running_min, self.running_max
        return (s - lo) / (hi - lo + self.eps)


