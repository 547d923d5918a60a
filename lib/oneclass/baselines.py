"""The competitors the GEOM paper (001, section 5.1, Table 1) runs itself, and Deep SVDD, which it quotes.

Every detector has the library's habit: ``Det(**hyper).fit(train, epochs=..., progress=..., seed=...)`` returns
self, ``.score(test)`` returns :class:`BaselineScores` with ``scores`` (N,) 'higher = more anomalous' and ``maps``
(N, H, W) or None. Inputs are uint8 images (or an ImageSet) that :func:`prepare` scales to [-1, 1] and pads with
black to the network size, GEOM's only pre-processing (section 5.2).

- :class:`DeepSVDD` -- one-class Deep SVDD (Ruff et al. 2018; GEOM's E2E-OC-SVM column): LeNet-type network,
  autoencoder pretraining, centre = mean output with the +-0.1 rule (:func:`svdd_center`), its own global
  contrast normalisation + min-max pre-processing, gradient heatmaps.
- :class:`OCSVM` -- RAW-OC-SVM (pixels) and CAE-OC-SVM (codes of a convolutional autoencoder) with
  scikit-learn's OneClassSVM over the paper's grid nu x gamma, chosen either in hindsight on the labelled test
  set (the paper's protocol: an oracle) or on held-out *nominal* training images only (Tax & Mueller's
  consistency criterion; the paper's refs [30, 3] say such honest choices exist).
- :class:`DSEBM` -- deep structured energy-based model, energy 0.5||x - b||^2 - sum enc(x), denoising score
  matching with noise 0.5; score = energy.
- :class:`DAGMM` -- autoencoder with a 5-d code + relative reconstruction error + cosine similarity, estimation
  network 64-10-3 (a 3-component GMM); score = sample energy.
- :class:`ADGAN` -- WGAN-GP generator; a test image is scored by inverting the generator from 8 random seeds
  with 5 joint steps on the seed and a copy of the generator; score = mean final reconstruction error.

The CAE / DSEBM / DAGMM / ADGAN networks are the authors' DCGAN-like pair (:class:`ConvEncoder`,
:class:`ConvDecoder`): three stride-2 3x3 convolutions (64, 128, 256; a fourth, 512, at 64px) with batch norm
and ReLU, a dense code; the decoder mirrors it with transposed convolutions and a tanh output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import training
from .geom import prepare   # GEOM's data preparation: pixels in [-1, 1], padded to the network size

METHODS = ("deep_svdd", "raw_ocsvm", "cae_ocsvm", "dsebm", "dagmm", "adgan")
NU_GRID = tuple(round(0.1 * i, 1) for i in range(1, 10))           # section 5.1: nu in {0.1, ..., 0.9}
GAMMA_GRID = tuple(2.0 ** k for k in range(-7, 3))                  # gamma in {2^-7, ..., 2^2}


@dataclass
class BaselineScores:
    scores: np.ndarray               # (N,) higher = more anomalous
    maps: np.ndarray | None = None   # (N, H, W) at the input images' own size, or None
    subscores: dict = field(default_factory=dict)


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


def seeded(fit):
    """Run a ``fit(self, train, ..., seed=...)`` with torch's global RNG (network initialisation, dropout) forked and
    seeded from ``seed``, so that the same seed gives the same detector whatever ran before; seed=None uses the
    global RNG as it stands (runs.start seeds it)."""
    import functools

    @functools.wraps(fit)
    def wrapper(self, *args, seed: int | None = None, **kwargs):
        if seed is None:
            return fit(self, *args, seed=seed, **kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return fit(self, *args, seed=seed, **kwargs)

    return wrapper


def _fit_loop(params, loss_fn, n: int, epochs: int, batch_size: int, gen, lr: float, weight_decay: float = 0.0,
              milestones=(), progress=False, desc="train", drop_last: bool = False) -> list[float]:
    """Adam over ``epochs`` passes of shuffled index batches; ``loss_fn(idx)`` returns the batch loss."""
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    params = list(params)
    history = []
    if epochs == 0:
        return history
    opt = training.optimizer(params, "adam", lr=lr, weight_decay=weight_decay)
    sched = training.schedule(opt, "multistep" if milestones else "none", 0.1, milestones)
    bar = training.progress(range(epochs), bool(progress), desc=desc, leave=False)
    for _ in bar:
        losses = []
        for idx in training.batches(n, batch_size, gen, drop_last=drop_last and n > batch_size):
            if idx.numel() < 2:            # a 1-sample batch breaks batch norm
                continue
            loss = loss_fn(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        if losses:
            history.append(float(np.mean(losses)))
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


# --------------------------------------------------------------------------------------------- Deep SVDD

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


class DeepSVDD:
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
                 device: str | None = None):
        if preprocessing not in ("gcn_minmax", "none"):
            raise ValueError(f"preprocessing must be 'gcn_minmax' (Deep SVDD's) or 'none', got {preprocessing!r}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (batch norm), got {batch_size}")
        self.channels, self.rep_dim, self.lr, self.weight_decay = channels, rep_dim, lr, weight_decay
        self.batch_size, self.milestones, self.ae_lr, self.ae_weight_decay = batch_size, milestones, ae_lr, \
            ae_weight_decay
        self.ae_milestones, self.preprocessing, self.eps, self.size = ae_milestones, preprocessing, eps, size
        self.device = training.device(device)
        self.net = None
        self.c = None
        self.history: list[float] = []
        self.ae_history: list[float] = []

    def _input(self, images) -> torch.Tensor:
        x = prepare(images, self.size)
        if self.preprocessing == "gcn_minmax":
            x = gcn_l1(x)
            if self.minmax_ is not None:
                lo, hi = self.minmax_
                x = (x - lo) / (hi - lo)
        return x

    @seeded
    def fit(self, train, epochs: int | None = None, ae_epochs: int | None = None, progress: bool = False,
            seed: int | None = None) -> "DeepSVDD":
        """Pretrain the autoencoder (``ae_epochs``; 0 skips it), copy its encoder, set c, train the one-class
        objective (``epochs``). None takes the Deep SVDD paper's numbers for the channel count."""
        self.minmax_ = None
        x = self._input(train)
        if self.preprocessing == "gcn_minmax":
            # Deep SVDD scales with the extremes of the normal class's training data (its code's precomputed
            # per-class min / max); test images may fall slightly outside [0, 1].
            self.minmax_ = (float(x.min()), float(x.max()))
            x = (x - self.minmax_[0]) / (self.minmax_[1] - self.minmax_[0])
        n, c, size, _ = x.shape
        if n < 2:
            raise ValueError(f"Deep SVDD needs at least 2 training images, got {n}")
        self.size = size
        arch = dict(SVDD_NETS.get(c, SVDD_NETS[3]))
        arch["channels"] = tuple(self.channels or arch["channels"])
        arch["rep_dim"] = self.rep_dim or arch["rep_dim"]
        sched = SVDD_SCHEDULES.get(c, SVDD_SCHEDULES[3])
        epochs = sched["epochs"] if epochs is None else int(epochs)
        ae_epochs = sched["ae_epochs"] if ae_epochs is None else int(ae_epochs)
        milestones = sched["milestones"] if self.milestones is None else tuple(self.milestones)
        ae_milestones = sched["ae_milestones"] if self.ae_milestones is None else tuple(self.ae_milestones)
        gen = training.generator(seed)
        self.net = LeNet(c, size, **arch).to(self.device)
        if ae_epochs > 0:
            decoder = LeNetDecoder(c, size, **arch).to(self.device)
            ae = nn.Sequential(self.net, decoder).train()

            def ae_loss(idx):
                xb = x[idx].to(self.device)
                return ((ae(xb) - xb) ** 2).sum(dim=(1, 2, 3)).mean()

            self.ae_history = _fit_loop(ae.parameters(), ae_loss, n, ae_epochs, self.batch_size, gen, self.ae_lr,
                                        self.ae_weight_decay, [m for m in ae_milestones if m < ae_epochs],
                                        progress, "Deep SVDD autoencoder")
        self.c = svdd_center(self._embed(x), self.eps).to(self.device)
        self.net.train()

        def svdd_loss(idx):
            return ((self.net(x[idx].to(self.device)) - self.c) ** 2).sum(1).mean()

        self.history = _fit_loop(self.net.parameters(), svdd_loss, n, epochs, self.batch_size, gen, self.lr,
                                 self.weight_decay, [m for m in milestones if m < epochs], progress, "Deep SVDD")
        return self

    @torch.no_grad()
    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return _batched(self.net, x, 512, self.device)

    def _check(self):
        if self.net is None:
            raise RuntimeError("DeepSVDD is not fitted: call .fit(train_images) first")

    def score(self, test, maps: bool = False) -> BaselineScores:
        """Squared distance to c; ``maps=True`` adds gradient heatmaps (:meth:`explain`)."""
        self._check()
        z = self._embed(self._input(test))
        d = ((z - self.c.cpu()) ** 2).sum(1).double().numpy()
        return BaselineScores(d, self.explain(test) if maps else None)

    def explain(self, images) -> np.ndarray:
        """|d score / d pixel| summed over channels at the images' own size: the gradient heatmap the FCDD paper
        shows for the HSC baseline (Deep SVDD's paper has none of its own)."""
        self._check()
        x = self._input(images)
        self.net.eval()
        out = []
        for s in range(0, len(x), 256):
            xb = x[s:s + 256].to(self.device).requires_grad_(True)
            d = ((self.net(xb) - self.c) ** 2).sum()
            (g,) = torch.autograd.grad(d, xb)
            out.append(g.abs().sum(1).cpu())
        return _crop(torch.cat(out), _hw(images)).numpy()


# --------------------------------------------------------------------------------------------- OC-SVMs

def train_cae(x: torch.Tensor, epochs: int, rep_dim: int = 256, batch_size: int = 128, lr: float = 1e-3,
              gen=None, progress=False, device="cpu"):
    """The CAE of CAE-OC-SVM: encoder with a tanh code of 256, MSE, Adam. Returns (encoder, decoder, losses)."""
    n, c, size, _ = x.shape
    enc, dec = ConvEncoder(c, size, rep_dim, "tanh").to(device), ConvDecoder(c, size, rep_dim).to(device)
    ae = nn.Sequential(enc, dec).train()

    def loss(idx):
        xb = x[idx].to(device)
        return F.mse_loss(ae(xb), xb)

    history = _fit_loop(ae.parameters(), loss, n, epochs, batch_size, gen, lr, progress=progress, desc="CAE")
    return enc.eval(), dec.eval(), history


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (float64): the grid reuses them for every gamma (an RBF kernel matrix is
    exp(-gamma * D), so each grid point costs one libsvm solve on a precomputed kernel, not a kernel evaluation)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def consistent(rejected: float, nu: float, n: int, z: float = 2.0) -> bool:
    """Tax & Mueller's consistency test: a one-class model whose target rejection rate is nu is consistent when the
    rejection rate it shows on ``n`` held-out nominal samples is at most nu + z binomial standard deviations.
    Rejecting every held-out sample never counts (on a small held-out set the bound can exceed 1)."""
    return rejected < 1.0 and rejected <= nu + z * math.sqrt(nu * (1 - nu) / max(n, 1))


class OCSVM:
    """RAW-OC-SVM (``features='raw'``, flattened [-1, 1] pixels) or CAE-OC-SVM (``features='cae'``, the 256-d
    tanh code of a convolutional autoencoder trained on the normal class) with an RBF OneClassSVM.

    ``selection``:

    - ``'hindsight'`` -- the paper's protocol: every (nu, gamma) of the grid is fitted on the training set and the
      one with the best AUROC *on the labelled test set* is kept. An oracle: ``fit`` needs ``hindsight_test``
      (an ImageSet with ``.anomaly``) and every table must say so.
    - ``'heldout'`` -- honest: ``heldout_fraction`` of the nominal training images are held out; each grid point
      is fitted on the rest and scored on them; among the grid points whose held-out rejection rate is consistent
      with nu (:func:`consistent`), the one with the smallest nu and, for it, the largest gamma (the most complex
      kernel the held-out data still support) is kept, then refitted on all training images. The test set is
      never seen (passing one is an error).

    ``svm_limit``: fit the SVMs on at most this many training images (a budget cut; the authors themselves
    subsample to 5,000 / 2,500 on CatsVsDogs because the SVM is quadratic in N).
    """

    def __init__(self, features: str = "raw", selection: str = "hindsight", nus=NU_GRID, gammas=GAMMA_GRID,
                 heldout_fraction: float = 0.2, svm_limit: int | None = None, cae_rep_dim: int = 256,
                 cae_lr: float = 1e-3, cae_batch_size: int = 128, size: int | None = None, device: str | None = None):
        if features not in ("raw", "cae"):
            raise ValueError(f"features must be 'raw' (RAW-OC-SVM) or 'cae' (CAE-OC-SVM), got {features!r}")
        if selection not in ("hindsight", "heldout"):
            raise ValueError(f"selection must be 'hindsight' (the paper's oracle) or 'heldout', got {selection!r}")
        if not 0 < heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
        self.features, self.selection, self.nus, self.gammas = features, selection, tuple(nus), tuple(gammas)
        self.heldout_fraction, self.svm_limit, self.size = heldout_fraction, svm_limit, size
        self.cae_rep_dim, self.cae_lr, self.cae_batch_size = cae_rep_dim, cae_lr, cae_batch_size
        self.device = training.device(device)
        self.svm = None
        self.encoder = None
        self.history: list[float] = []
        self.grid_: list[dict] = []
        self.selected_on_: dict = {}

    @property
    def oracle(self) -> bool:
        return self.selection == "hindsight"

    @torch.no_grad()
    def _features(self, images) -> np.ndarray:
        x = prepare(images, self.size)
        if self.features == "raw":
            return x.reshape(len(x), -1).double().numpy()
        return _batched(self.encoder, x, 512, self.device).double().numpy()

    @seeded
    def fit(self, train, epochs: int = 200, progress: bool = False, seed: int | None = None,
            hindsight_test=None) -> "OCSVM":
        """Train the CAE (``epochs``, CAE-OC-SVM only), then choose (nu, gamma) and fit the SVM."""
        from sklearn.svm import OneClassSVM

        if self.selection == "hindsight" and (hindsight_test is None or getattr(hindsight_test, "anomaly", None)
                                              is None):
            raise ValueError("selection='hindsight' chooses nu and gamma by test AUROC (the paper's oracle): pass "
                             "hindsight_test=<the test ImageSet with .anomaly>, or use selection='heldout'")
        if self.selection == "heldout" and hindsight_test is not None:
            raise ValueError("selection='heldout' chooses on held-out nominal training images only; it must not "
                             "see the test set: drop hindsight_test")
        gen = training.generator(seed)
        x = prepare(train, self.size)
        self.size = x.shape[-1]
        if self.features == "cae":
            self.encoder, _, self.history = train_cae(x, int(epochs), self.cae_rep_dim, self.cae_batch_size,
                                                      self.cae_lr, gen, progress, self.device)
        feats = self._features(x)
        n = len(feats)
        order = torch.randperm(n, generator=gen).numpy()
        grid = [(nu, g) for nu in self.nus for g in self.gammas]
        bar = training.progress(grid, bool(progress), desc=f"OC-SVM grid ({self.selection})", leave=False)
        self.grid_ = []
        if self.selection == "hindsight":
            from .metrics import auc

            fit_idx = np.sort(order[: self.svm_limit]) if self.svm_limit else np.arange(n)
            test_feats = self._features(hindsight_test)
            anomaly = np.asarray(hindsight_test.anomaly)
            d_fit, d_test = _sq_dists(feats[fit_idx], feats[fit_idx]), _sq_dists(test_feats, feats[fit_idx])
            for nu, g in bar:
                svm = OneClassSVM(kernel="precomputed", nu=nu).fit(np.exp(-g * d_fit))
                a = auc(-svm.decision_function(np.exp(-g * d_test)), anomaly)
                self.grid_.append({"nu": nu, "gamma": g, "test_auc": a})
            pick = max(self.grid_, key=lambda r: r["test_auc"])   # first of equals, in grid order
            self.selected_on_ = {"data": "test", "labels_used": True, "n_images": len(test_feats),
                                 "fit_index": fit_idx}
        else:
            n_held = max(1, int(round(self.heldout_fraction * n)))
            if n - n_held < 2:
                raise ValueError(f"{n} training images leave too few to fit after holding out {n_held}; "
                                 "lower heldout_fraction or use more training images")
            held_idx, rest = np.sort(order[:n_held]), order[n_held:]
            fit_idx = np.sort(rest[: self.svm_limit]) if self.svm_limit else np.sort(rest)
            d_fit, d_held = _sq_dists(feats[fit_idx], feats[fit_idx]), _sq_dists(feats[held_idx], feats[fit_idx])
            for nu, g in bar:
                svm = OneClassSVM(kernel="precomputed", nu=nu).fit(np.exp(-g * d_fit))
                rejected = float((svm.decision_function(np.exp(-g * d_held)) < 0).mean())
                self.grid_.append({"nu": nu, "gamma": g, "heldout_rejection": rejected,
                                   "consistent": consistent(rejected, nu, n_held)})
            ok = [r for r in self.grid_ if r["consistent"]] or \
                [min(self.grid_, key=lambda r: r["heldout_rejection"] - r["nu"])]   # none: the least inconsistent
            # Smallest nu first: a consistency test at nu = 0.9 passes almost any kernel, at 0.1 only a kernel
            # that generalises to unseen nominal images; then the narrowest kernel (largest gamma) that passes.
            pick = max(ok, key=lambda r: (-r["nu"], r["gamma"]))
            self.selected_on_ = {"data": "heldout_nominal", "labels_used": False, "n_images": n_held,
                                 "heldout_index": held_idx, "fit_index": fit_idx}
            # the chosen model is refitted on every training image (held-out ones included)
            fit_idx = np.sort(order[: self.svm_limit]) if self.svm_limit else np.arange(n)
        self.nu_, self.gamma_ = pick["nu"], pick["gamma"]
        self.svm = OneClassSVM(kernel="rbf", nu=self.nu_, gamma=self.gamma_).fit(feats[fit_idx])
        return self

    def score(self, test) -> BaselineScores:
        """Anomaly score = -decision_function (the SVM's signed distance, positive inside the support)."""
        if self.svm is None:
            raise RuntimeError("OCSVM is not fitted: call .fit(train_images, ...) first")
        return BaselineScores(-self.svm.decision_function(self._features(test)).astype(np.float64))


# --------------------------------------------------------------------------------------------- DSEBM

class DSEBM(nn.Module):
    """Deep structured energy-based model (Zhai et al. 2016) with the GEOM authors' deeper energy:
    E(x) = 0.5 ||x - b||^2 - sum_j enc_j(x), enc = :class:`ConvEncoder` with a ReLU code. Trained by denoising
    score matching: the reconstruction of a noisy input x~ is x~ - dE/dx~, regressed onto the clean x (MSE).
    Anomaly score = E(x); the map is |dE/dx| (the residual the model would remove), summed over channels."""

    def __init__(self, rep_dim: int = 256, noise: float = 0.5, lr: float = 1e-3, batch_size: int = 128,
                 size: int | None = None, device: str | None = None):
        super().__init__()
        self.rep_dim, self.noise, self.lr, self.batch_size, self.size = rep_dim, noise, lr, batch_size, size
        self.device_ = training.device(device)
        self.encoder = None
        self.history: list[float] = []

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x - self.b) ** 2).flatten(1).sum(1) - self.encoder(x).flatten(1).sum(1)

    @seeded
    def fit(self, train, epochs: int = 200, progress: bool = False, seed: int | None = None) -> "DSEBM":
        x = prepare(train, self.size)
        n, c, size, _ = x.shape
        self.size = size
        gen = training.generator(seed)
        self.encoder = ConvEncoder(c, size, self.rep_dim, "relu").to(self.device_)
        self.b = nn.Parameter(torch.zeros(c, size, size, device=self.device_))
        self.train()

        def loss(idx):
            xb = x[idx].to(self.device_)
            noisy = (xb + self.noise * torch.randn(xb.shape, generator=gen).to(self.device_)).requires_grad_(True)
            (g,) = torch.autograd.grad(self.energy(noisy).sum(), noisy, create_graph=True)
            return F.mse_loss(noisy - g, xb)

        self.history = _fit_loop(self.parameters(), loss, n, int(epochs), self.batch_size, gen, self.lr,
                                 progress=progress, desc="DSEBM")
        return self

    def score(self, test, maps: bool = False) -> BaselineScores:
        if self.encoder is None:
            raise RuntimeError("DSEBM is not fitted: call .fit(train_images) first")
        x = prepare(test, self.size)
        self.eval()
        scores, out = [], []
        for s in range(0, len(x), 256):
            xb = x[s:s + 256].to(self.device_).requires_grad_(maps)
            e = self.energy(xb)
            if maps:
                (g,) = torch.autograd.grad(e.sum(), xb)
                out.append(g.abs().sum(1).detach().cpu())
            scores.append(e.detach().cpu())
        m = _crop(torch.cat(out), _hw(test)).numpy() if maps else None
        return BaselineScores(torch.cat(scores).double().numpy(), m)

    def explain(self, images) -> np.ndarray:
        """|dE/dx| summed over channels at the images' own size."""
        return self.score(images, maps=True).maps


# --------------------------------------------------------------------------------------------- DAGMM

def gmm_parameters(z: torch.Tensor, gamma: torch.Tensor, jitter: float = 1e-3):
    """Mixture weights, means and covariances from soft memberships (DAGMM's eq. 5); ``jitter`` on the diagonal
    keeps the covariances invertible."""
    nk = gamma.sum(0)                                            # (K,)
    phi = nk / len(z)
    mu = gamma.T @ z / nk[:, None]                               # (K, D)
    d = z[None] - mu[:, None]                                    # (K, N, D)
    sigma = torch.einsum("kn,knd,kne->kde", gamma.T, d, d) / nk[:, None, None]
    sigma = sigma + jitter * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return phi, mu, sigma


def gmm_energy(z: torch.Tensor, phi, mu, sigma) -> torch.Tensor:
    """Sample energy -log sum_k phi_k N(z | mu_k, sigma_k), in log space."""
    chol = torch.linalg.cholesky(sigma)                          # (K, D, D)
    d = (z[None] - mu[:, None]).transpose(1, 2)                  # (K, D, N)
    sol = torch.linalg.solve_triangular(chol, d, upper=False)    # (K, D, N)
    maha = (sol ** 2).sum(1)                                     # (K, N)
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
    log_n = -0.5 * (maha + logdet[:, None] + z.shape[1] * math.log(2 * math.pi))
    return -torch.logsumexp(torch.log(phi.clamp_min(1e-12))[:, None] + log_n, 0)


class DAGMM(nn.Module):
    """Deep autoencoding Gaussian mixture model (Zong et al. 2018) as the GEOM authors ran it: the CAE pair with a
    linear 5-d code; z = (code, relative Euclidean reconstruction error, cosine similarity); estimation network
    64 tanh - dropout 0.5 - 10 tanh - dropout 0.5 - 3 softmax; loss = MSE + lambda_energy * mean energy +
    lambda_diag * sum 1/diag(Sigma). Adam, batch 256. Anomaly score = sample energy under the mixture fitted to
    the whole training set after training (the DAGMM paper's choice; the authors' Keras code keeps the last
    training batch's estimate)."""

    def __init__(self, rep_dim: int = 5, n_components: int = 3, lambda_energy: float = 0.01,
                 lambda_diag: float = 5e-4, lr: float = 1e-3, batch_size: int = 256, size: int | None = None,
                 device: str | None = None):
        super().__init__()
        self.rep_dim, self.n_components, self.lambda_energy, self.lambda_diag = rep_dim, n_components, \
            lambda_energy, lambda_diag
        self.lr, self.batch_size, self.size = lr, batch_size, size
        self.device_ = training.device(device)
        self.encoder = None
        self.history: list[float] = []

    def _z(self, x):
        code = self.encoder(x)
        rec = self.decoder(code)
        xf, rf = x.flatten(1), rec.flatten(1)
        rel = (xf - rf).norm(dim=1) / xf.norm(dim=1).clamp_min(1e-12)
        cos = F.cosine_similarity(xf, rf, dim=1)
        return torch.cat([code, rel[:, None], cos[:, None]], 1), rec

    @seeded
    def fit(self, train, epochs: int = 200, progress: bool = False, seed: int | None = None) -> "DAGMM":
        x = prepare(train, self.size)
        n, c, size, _ = x.shape
        self.size = size
        gen = training.generator(seed)
        self.encoder = ConvEncoder(c, size, self.rep_dim, "linear").to(self.device_)
        self.decoder = ConvDecoder(c, size, self.rep_dim).to(self.device_)
        self.estimation = nn.Sequential(nn.Linear(self.rep_dim + 2, 64), nn.Tanh(), nn.Dropout(0.5),
                                        nn.Linear(64, 10), nn.Tanh(), nn.Dropout(0.5),
                                        nn.Linear(10, self.n_components), nn.Softmax(1)).to(self.device_)
        self.train()

        def loss(idx):
            xb = x[idx].to(self.device_)
            z, rec = self._z(xb)
            gamma = self.estimation(z)
            phi, mu, sigma = gmm_parameters(z.double(), gamma.double())
            energy = gmm_energy(z.double(), phi, mu, sigma).mean()
            diag = (1.0 / torch.diagonal(sigma, dim1=1, dim2=2)).sum()
            return F.mse_loss(rec, xb) + (self.lambda_energy * energy + self.lambda_diag * diag).float()

        self.history = _fit_loop(self.parameters(), loss, n, int(epochs), self.batch_size, gen, self.lr,
                                 progress=progress, desc="DAGMM", drop_last=True)
        self.eval()
        with torch.no_grad():
            z = _batched(lambda b: self._z(b)[0], x, 512, self.device_).double()
            gamma = _batched(self.estimation, z.float(), 4096, self.device_).double()
            self.phi_, self.mu_, self.sigma_ = gmm_parameters(z, gamma)
        return self

    @torch.no_grad()
    def score(self, test) -> BaselineScores:
        if self.encoder is None:
            raise RuntimeError("DAGMM is not fitted: call .fit(train_images) first")
        self.eval()
        z = _batched(lambda b: self._z(b)[0], prepare(test, self.size), 512, self.device_).double()
        return BaselineScores(gmm_energy(z, self.phi_, self.mu_, self.sigma_).numpy())


# --------------------------------------------------------------------------------------------- ADGAN

def _adam_step(p, g, m, v, t, lr, beta1, beta2=0.999, eps=1e-7):
    """One Adam update of a batch of independent parameter copies (Keras' epsilon)."""
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    step = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    return p - step * m / (v.sqrt() + eps)


class ADGAN:
    """ADGAN (Deecke et al. 2018) as the GEOM authors ran it.

    Training: a WGAN-GP with the DCGAN-like pair (critic = :class:`ConvEncoder` with a linear 1-d output,
    generator = :class:`ConvDecoder` from a 256-d Gaussian), Adam lr 1e-4, betas (0, 0.9), gradient penalty 20
    (two-sided), 2 critic updates per generator update, ``batches_per_epoch`` generator updates per epoch
    (100, 100 epochs in the paper). Scoring: for each test image and each of ``n_seeds`` seeds z ~ N(0, I), a fresh
    copy of the generator and z are optimised jointly for ``steps`` rounds (z: Adam 0.25, beta1 0.5; generator:
    Adam 5e-5, beta1 0.5; MSE to the image); the score is the mean over seeds of the final MSE. The copies for
    all seeds (and ``chunk`` images) run batched with ``torch.func.vmap``.
    """

    def __init__(self, noise_dim: int = 256, lr: float = 1e-4, gp: float = 20.0, critic_steps: int = 2,
                 batch_size: int = 128, batches_per_epoch: int = 100, n_seeds: int = 8, steps: int = 5,
                 z_lr: float = 0.25, g_lr: float = 5e-5, chunk: int = 2, size: int | None = None,
                 device: str | None = None):
        self.noise_dim, self.lr, self.gp, self.critic_steps = noise_dim, lr, gp, critic_steps
        self.batch_size, self.batches_per_epoch, self.n_seeds, self.steps = batch_size, batches_per_epoch, \
            n_seeds, steps
        self.z_lr, self.g_lr, self.chunk, self.size = z_lr, g_lr, chunk, size
        self.device = training.device(device)
        self.generator = None
        self.history: list[float] = []

    @seeded
    def fit(self, train, epochs: int = 100, progress: bool = False, seed: int | None = None) -> "ADGAN":
        x = prepare(train, self.size)
        n, c, size, _ = x.shape
        if n < 2:
            raise ValueError(f"ADGAN needs at least 2 training images, got {n}")
        self.size = size
        self.gen_ = training.generator(seed)
        g = self.gen_
        G = ConvDecoder(c, size, self.noise_dim).to(self.device)
        D = ConvEncoder(c, size, 1, "linear").to(self.device)
        opt_g = torch.optim.Adam(G.parameters(), lr=self.lr, betas=(0.0, 0.9))
        opt_d = torch.optim.Adam(D.parameters(), lr=self.lr, betas=(0.0, 0.9))
        bs = min(self.batch_size, n)
        bar = training.progress(range(int(epochs)), bool(progress), desc="ADGAN WGAN-GP", leave=False)
        for _ in bar:
            losses = []
            for _ in range(self.batches_per_epoch):
                for _ in range(self.critic_steps):
                    real = x[torch.randperm(n, generator=g)[:bs]].to(self.device)
                    with torch.no_grad():
                        fake = G(torch.randn(bs, self.noise_dim, generator=g).to(self.device))
                    w = torch.rand(bs, 1, 1, 1, generator=g).to(self.device)
                    mix = (w * real + (1 - w) * fake).requires_grad_(True)
                    (grad,) = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)
                    penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
                    loss_d = D(fake).mean() - D(real).mean() + self.gp * penalty
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                loss_g = -D(G(torch.randn(bs, self.noise_dim, generator=g).to(self.device))).mean()
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                losses.append(loss_d.item())
            self.history.append(float(np.mean(losses)))
            bar.set_postfix(critic=f"{self.history[-1]:.3f}")
        self.generator = G.eval()
        return self

    def score(self, test, progress: bool = False, seed: int | None = None) -> BaselineScores:
        """Mean final reconstruction MSE over the seeds (batch norm in inference mode throughout; the authors'
        Keras code runs the generator update in training mode on a batch of one, which blanks its first batch
        norm)."""
        from torch.func import functional_call, grad, vmap

        if self.generator is None:
            raise RuntimeError("ADGAN is not fitted: call .fit(train_images) first")
        x = prepare(test, self.size)
        G = self.generator.eval()
        names = [k for k, _ in G.named_parameters()]
        base = [p.detach() for _, p in G.named_parameters()]
        buffers = {k: b for k, b in G.named_buffers()}
        gen = training.generator(seed) if seed is not None else self.gen_

        def loss(params, z, img):
            out = functional_call(G, ({k: p for k, p in zip(names, params)}, buffers), (z[None],))
            return ((out[0] - img) ** 2).mean()

        grad_z = vmap(grad(loss, argnums=1))
        grad_p = vmap(grad(loss, argnums=0))
        batched_loss = vmap(loss)
        S = self.n_seeds
        scores = []
        bar = training.progress(range(0, len(x), self.chunk), bool(progress), desc="ADGAN inversion", leave=False)
        for s in bar:
            imgs = x[s:s + self.chunk].to(self.device)
            B = len(imgs) * S
            img = imgs.repeat_interleave(S, 0)
            z = torch.randn(B, self.noise_dim, generator=gen).to(self.device)
            params = [p.unsqueeze(0).expand(B, *p.shape).clone() for p in base]
            mz, vz = torch.zeros_like(z), torch.zeros_like(z)
            mp, vp = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
            for t in range(1, self.steps + 1):
                z = _adam_step(z, grad_z(params, z, img), mz, vz, t, self.z_lr, 0.5)
                gp = grad_p(params, z, img)
                params = [_adam_step(p, gi, m, v, t, self.g_lr, 0.5) for p, gi, m, v in zip(params, gp, mp, vp)]
            with torch.no_grad():
                final = batched_loss(params, z, img)
            scores.append(final.reshape(len(imgs), S).mean(1).cpu())
        return BaselineScores(torch.cat(scores).double().numpy())


# --------------------------------------------------------------------------------------------- one entry point

def build(method: str, **hyper):
    """A detector by the notebooks' method name (``METHODS``); ``hyper`` goes to its constructor."""
    makers = {"deep_svdd": DeepSVDD, "raw_ocsvm": lambda **k: OCSVM(features="raw", **k),
              "cae_ocsvm": lambda **k: OCSVM(features="cae", **k), "dsebm": DSEBM, "dagmm": DAGMM, "adgan": ADGAN}
    if method not in makers:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    return makers[method](**hyper)


# The method names of the GEOM paper's Table 1 columns (lib/oneclass/reported/geom.csv).
PAPER_NAMES = {"deep_svdd": "E2E-OC-SVM", "raw_ocsvm": "RAW-OC-SVM", "cae_ocsvm": "CAE-OC-SVM", "dsebm": "DSEBM",
               "dagmm": "DAGMM", "adgan": "ADGAN"}
