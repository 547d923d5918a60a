"""Novelty normalization (Wu, Lu, Fuh, Liu; Pattern Recognition Letters 2021): an autoencoder, a novelty-scoring
MLP on its code z, an L0 term on the MLP's weights, and batch min-max normalisation of the combined score.

The paper's equations, as implemented here::

    L_r(x)   = mean squared error between x and De(En(x))                    (eq. 1, 'we use mean square error')
    NS(x)    = sigmoid(MLP(En(x)))                                           (eq. 2)
    S_i      = (1 - l1) L_r(x_i) + l1 NS(x_i)                                (eq. 7; S_i = L_r without the NS head)
    Reg(S_i) = (S_i - S_min) / (S_max - S_min), min / max over the batch     (eq. 6)
    loss     = mean_i Reg(S_i) - l2 ||W||_0                                  (eq. 4 with the normalisation inside)
    p(x)     = (S(x) - mean S_min) / (mean S_max - mean S_min)               (eq. 5 normalised by eq. 6 at test)

No public code exists; the readings taken where the paper is ambiguous (each one a parameter):

* ``normalize="combined"`` normalises S (eq. 6 and 7 as printed); ``"terms"`` normalises L_r and NS each before
  combining them (the text says the module 'normalizes the reconstruction error and novelty score at the same
  time'). Only ``"terms"`` changes the test ranking by itself: a min-max map of one score is monotone.
* ``norm_gradient=True`` lets the loss differentiate through the batch min and max (the normalisation is part
  of the loss 'before backpropagation'); False treats them as constants, which reduces the normalisation to a
  per-batch rescaling of the gradient.
* ``norm_stats="last_epoch"`` averages the batch min / max over the final epoch (the statistics of the model that
  is tested); ``"all"`` averages over every training batch as the text literally says.
* The L0 term: ``l0="hard_concrete"`` gates every MLP weight with Louizos et al.'s hard-concrete gates and uses
  their expected number of open gates (differentiable); ``"literal"`` counts the weights with |w| > 1e-10, which
  has no gradient and so cannot change training; ``"none"`` drops it. The paper *subtracts* l2 ||W||_0 (it wants
  the weights not to collapse to zero), so a positive ``lambda2`` rewards open gates; a negative one penalises
  them as Louizos et al. do.

The NS head has no negatives: every training image is nominal and its target is 0. What keeps NS from the
trivial constant-0 solution is the batch normalisation (the most novel-looking image of each batch is mapped to 1,
and the normalised loss rewards spreading the batch apart), not the L0 term.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import training

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
CONFIGS = {
    "lenet28": {"channels": (8, 4), "z_dim": 32, "ns_hidden": (16,)},
    "lenet32": {"channels": (32, 64, 128), "z_dim": 64, "ns_hidden": (32, 16)},
}

# Hard-concrete constants of Louizos, Welling, Kingma (2018): temperature, stretch interval (gamma, zeta).
HC_BETA, HC_GAMMA, HC_ZETA = 2.0 / 3.0, -0.1, 1.1
LITERAL_ZERO = 1e-10


# --- networks -------------------------------------------------------------------------------------------------

class LeNetAutoencoder(nn.Module):
    """5x5 convs (pad 2, no bias) + BN (affine=False, eps 1e-4) + leaky ReLU + 2x2 max-pool, dense code z;
    a mirrored decoder of x2 upsampling + 5x5 transposed convs, sigmoid output in [0, 1]."""

    def __init__(self, in_channels: int, size: int, channels=(8, 4), z_dim: int = 32):
        super().__init__()
        depth = len(channels)
        if size % 2 ** depth:
            raise ValueError(f"image size {size} is not divisible by 2**{depth} (one 2x2 pooling per conv layer); "
                             f"resize the images to a multiple of {2 ** depth} (28 and 32 work)")
        self.side = size // 2 ** depth
        self.channels = tuple(channels)
        enc, prev = [], in_channels
        for c in channels:
            enc += [nn.Conv2d(prev, c, 5, padding=2, bias=False), nn.BatchNorm2d(c, eps=1e-4, affine=False),
                    nn.LeakyReLU(0.01), nn.MaxPool2d(2)]
            prev = c
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(prev * self.side ** 2, z_dim, bias=False))
        self.expand = nn.Linear(z_dim, prev * self.side ** 2, bias=False)
        dec, outs = [], list(reversed(channels[:-1])) + [in_channels]
        for i, c in enumerate(outs):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ConvTranspose2d(prev, c, 5, padding=2,
                                                                                    bias=i == len(outs) - 1)]
            dec += [nn.BatchNorm2d(c, eps=1e-4, affine=False), nn.LeakyReLU(0.01)] if i < len(outs) - 1 \
                else [nn.Sigmoid()]
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
            u = torch.rand(la.shape, generator=self.noise_generator).clamp(1e-6, 1 - 1e-6)
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


# --- the method -----------------------------------------------------------------------------------------------

@dataclass
class NoveltyScores:
    """``scores`` (N,) the normalised p(x) (higher = more anomalous); ``maps`` (N, H, W) per-pixel squared
    reconstruction error summed over channels; the sub-scores each computed on the same fitted model."""

    scores: np.ndarray
    maps: np.ndarray
    reconstruction: np.ndarray          # L_r per image (mean squared error)
    novelty: np.ndarray | None          # NS per image in [0, 1]; None without the NS head
    combined: np.ndarray                # S of eq. 7 before normalisation
    columns: dict = field(default_factory=dict)

    def subscores(self) -> dict:
        """Named per-image scores for scores.parquet and per-score AUCs."""
        out = {"reconstruction": self.reconstruction, "combined": self.combined}
        if self.novelty is not None:
            out["novelty"] = self.novelty
        return out


def _float_images(images) -> torch.Tensor:
    x = getattr(images, "images", images)
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) (an ImageSet or a tensor), got shape {tuple(x.shape)}; "
                         "add the channel axis with x[:, None] for grey images")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise ValueError(f"images have dtype {x.dtype}; pass uint8 pixels or floats in [0, 1]")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("float images must lie in [0, 1] (the decoder ends in a sigmoid); pass uint8 pixels or "
                         "scale them with x / 255")
    return x.float()


class NoveltyNormalization:
    """Autoencoder + novelty scoring + novelty normalisation, fitted on nominal images only.

    ``net``: "auto" (lenet28 for 1-channel, lenet32 for 3-channel images) or a key of CONFIGS.
    ``novelty_scoring`` / ``normalize`` switch the paper's modules (Table 4: see ABLATION); ``lambda1`` weighs
    NS against L_r (eq. 4, 5, 7); ``lambda2`` weighs the L0 term, subtracted as in eq. 4.
    Optimiser: Adam, lr x ``lr_gamma`` every ``lr_step`` epochs ('decays ... 0.1 for every 30 steps').
    """

    def __init__(self, net: str = "auto", novelty_scoring: bool = True, normalize: str = "combined",
                 lambda1: float = 0.5, lambda2: float = 1e-5, l0: str = "hard_concrete", norm_gradient: bool = False,
                 norm_stats: str = "last_epoch", lr: float = 1e-3, lr_step: int = 30, lr_gamma: float = 0.1,
                 weight_decay: float = 0.0, batch_size: int = 128, seed: int = 0, device: str = "cpu"):
        if normalize not in NORMALIZE:
            raise ValueError(f"unknown normalize {normalize!r}; choose one of {NORMALIZE}")
        if l0 not in L0_MODES:
            raise ValueError(f"unknown l0 {l0!r}; choose one of {L0_MODES}")
        if norm_stats not in NORM_STATS:
            raise ValueError(f"unknown norm_stats {norm_stats!r}; choose one of {NORM_STATS}")
        if net != "auto" and net not in CONFIGS:
            raise ValueError(f"unknown net {net!r}; choose 'auto' or one of {sorted(CONFIGS)}")
        if not 0.0 <= lambda1 < 1.0:
            raise ValueError(f"lambda1 must be in [0, 1) (the weight of NS against L_r), got {lambda1}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2: the normalisation takes a min and a max over the batch")
        self.net, self.novelty_scoring, self.normalize = net, bool(novelty_scoring), normalize
        self.lambda1, self.lambda2, self.l0 = float(lambda1), float(lambda2), l0
        self.norm_gradient, self.norm_stats = bool(norm_gradient), norm_stats
        self.lr, self.lr_step, self.lr_gamma, self.weight_decay = lr, lr_step, lr_gamma, weight_decay
        self.batch_size, self.seed, self.device = int(batch_size), int(seed), device
        self.history: list[dict] = []
        self.model_: nn.ModuleDict | None = None

    @classmethod
    def ablation(cls, variant: str, **hyper) -> "NoveltyNormalization":
        """A row of Table 4: 'ae' (autoencoder only), 'ae_norm' (+ normalization), 'full' (+ NS).
        ``normalize`` in ``hyper`` replaces the row's normalisation (e.g. 'terms' for the full model)."""
        if variant not in ABLATION:
            raise ValueError(f"unknown ablation variant {variant!r}; choose one of {sorted(ABLATION)}")
        ns, norm = ABLATION[variant]
        return cls(**({"novelty_scoring": ns, "normalize": norm} | hyper))

    # -- building

    def _config(self, x: torch.Tensor) -> dict:
        name = self.net if self.net != "auto" else ("lenet28" if x.shape[1] == 1 else "lenet32")
        return dict(CONFIGS[name], name=name)

    def _build(self, x: torch.Tensor) -> nn.ModuleDict:
        cfg = self._config(x)
        k = 2 if (self.normalize == "terms" and self.novelty_scoring) else 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            parts = {"ae": LeNetAutoencoder(x.shape[1], x.shape[-1], cfg["channels"], cfg["z_dim"]),
                     "norm": BatchMinMax(k, gradient=self.norm_gradient)}
            if self.novelty_scoring:
                parts["ns"] = NoveltyScorer(cfg["z_dim"], cfg["ns_hidden"], self.l0)
        self.config_ = cfg
        return nn.ModuleDict(parts).to(self.device)

    # -- the equations

    def _terms(self, x: torch.Tensor):
        """Reconstruction, per-image L_r, NS (or None) for a batch."""
        m = self.model_
        rec, z = m["ae"](x)
        lr_ = (x - rec).pow(2).flatten(1).mean(1)
        ns = m["ns"](z) if self.novelty_scoring else None
        return rec, lr_, ns

    def _combine(self, lr_: torch.Tensor, ns: torch.Tensor | None) -> torch.Tensor:
        return lr_ if ns is None else (1 - self.lambda1) * lr_ + self.lambda1 * ns

    def _normalised(self, lr_: torch.Tensor, ns: torch.Tensor | None) -> torch.Tensor:
        """The score the loss averages (training) or p(x) (eval), per image."""
        norm = self.model_["norm"]
        if self.normalize == "none":
            return self._combine(lr_, ns)
        if self.normalize == "terms" and ns is not None:
            n = norm(torch.stack([lr_, ns], 1))
            return self._combine(n[:, 0], n[:, 1])
        return norm(self._combine(lr_, ns)[:, None])[:, 0]

    def l0_term(self) -> torch.Tensor:
        return self.model_["ns"].l0() if self.novelty_scoring else torch.zeros(())

    # -- fit / score

    def fit(self, train_set, epochs: int = 10, progress: bool | None = False) -> "NoveltyNormalization":
        """Train on nominal images (an ImageSet or a uint8 / [0, 1] float tensor (N, C, H, W)); returns self."""
        x = _float_images(train_set)
        if len(x) < 2:
            raise ValueError(f"need at least 2 training images, got {len(x)}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.model_ = self._build(x)
        gen = training.generator(self.seed)
        if self.novelty_scoring:
            self.model_["ns"].set_noise_generator(torch.Generator().manual_seed(self.seed + 1))
        opt = training.optimizer(self.model_.parameters(), "adam", lr=self.lr, weight_decay=self.weight_decay)
        steps = list(range(self.lr_step, epochs, self.lr_step)) if self.lr_step else []
        sched = training.schedule(opt, "multistep" if steps else "none", gamma=self.lr_gamma, milestones=steps)
        self.history = []
        self.model_.train()
        bar = training.progress(range(epochs), progress, desc="novelty", unit="epoch")
        for epoch in bar:
            if self.norm_stats == "last_epoch":
                self.model_["norm"].reset()
            sums = np.zeros(4)
            for idx in training.batches(len(x), self.batch_size, gen, shuffle=True):
                if len(idx) < 2:   # a last batch of one image has no min-max range
                    continue
                xb = x[idx].to(self.device)
                _, lr_, ns = self._terms(xb)
                l0 = self.l0_term()
                loss = self._normalised(lr_, ns).mean() - self.lambda2 * l0
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums += [loss.item() * len(idx), lr_.detach().sum().item(),
                         0.0 if ns is None else ns.detach().sum().item(), len(idx)]
            sched.step()
            n = sums[3]
            rec = {"epoch": epoch + 1, "loss": sums[0] / n, "reconstruction": sums[1] / n,
                   "novelty": sums[2] / n if self.novelty_scoring else None, "l0": float(self.l0_term().detach())}
            self.history.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", rec=f"{rec['reconstruction']:.4f}")
        self.model_.eval()
        return self

    @torch.no_grad()
    def score(self, test_set, batch_size: int = 500) -> NoveltyScores:
        if self.model_ is None:
            raise RuntimeError("NoveltyNormalization is not fitted: call .fit(train_set) before .score(test_set)")
        x = _float_images(test_set)
        self.model_.eval()
        out = {"p": [], "lr": [], "ns": [], "s": [], "map": []}
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(self.device)
            rec, lr_, ns = self._terms(xb)
            lr_, ns = lr_.double(), None if ns is None else ns.double()
            out["p"].append(self._normalised(lr_, ns))
            out["lr"].append(lr_)
            out["s"].append(self._combine(lr_, ns))
            out["map"].append((xb - rec).pow(2).sum(1))
            if ns is not None:
                out["ns"].append(ns)
        cat = {k: torch.cat(v).cpu().numpy().astype(np.float64) for k, v in out.items() if v}
        return NoveltyScores(scores=cat["p"], maps=cat["map"].astype(np.float32), reconstruction=cat["lr"],
                             novelty=cat.get("ns"), combined=cat["s"])

    # -- what the notebook reports

    @property
    def normalisation_stats(self) -> dict:
        """The averaged batch minima and maxima that score() applies."""
        norm = self.model_["norm"]
        return {"min": norm.running_min.tolist(), "max": norm.running_max.tolist(), "batches": int(norm.count)}

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model_.parameters())


# --- notebook helpers -------------------------------------------------------------------------------------------

LOAD = {"mnist": (28, 1), "fmnist": (28, 1), "cifar10": (32, 3)}
PAPER_METHOD = {"ae": "Autoencoder only", "ae_norm": "+ Normalization", "full": "+ NS"}


def load_shape(dataset: str) -> tuple[int, int]:
    """(size, channels) the paper's networks take for ``dataset``."""
    if dataset not in LOAD:
        raise ValueError(f"the paper evaluates {sorted(LOAD)}, not {dataset!r}; the networks need 28px grey or "
                         "32px RGB images (pass size / channels to data.one_vs_rest yourself for other data)")
    return LOAD[dataset]


def paper_numbers(dataset: str, normal_names: list, variant: str = "full") -> dict:
    """The paper's AUCs for this run: its class cell (Tables 1-3 or 5), its mean, and the Table 4 row."""
    from . import reported

    ours = "Novelty normalization"
    if len(normal_names) > 1:
        cls = "+".join(normal_names)
        return {"table": "Table 5", "class": reported.value("novelty", "Table 5", dataset, PAPER_METHOD[variant], cls),
                "mean": None, "ablation": None}
    table = {"mnist": "Table 1", "cifar10": "Table 2", "fmnist": "Table 3"}[dataset]
    return {"table": table,
            "class": reported.value("novelty", table, dataset, ours, normal_names[0]) if variant == "full" else None,
            "mean": reported.value("novelty", table, dataset, ours, "mean") if variant == "full" else None,
            "ablation": reported.value("novelty", "Table 4", dataset, PAPER_METHOD[variant], "mean")}
