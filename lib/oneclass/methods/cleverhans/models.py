"""The Clever Hans effect in anomaly detection (Kauffmann, Ruff, Montavon, Müller), section 3 and table 1: the
models in neuralized form.

Every model is written in the paper's features / distance / pooling form (its Table 1) and explains its score
by the paper's propagation (appendix A):

========  ===========================================================  ==========================================
model     outlier score o(x)                                           explanation (relevance of pixel i)
========  ===========================================================  ==========================================
``kde``   soft-min over squared distances to the training points      R_i = sum_j p_j o (x_i - x_ji)^2 / d_j,
          (Gaussian kernel, gamma by inlier validation likelihood,     p = soft-argmin weights (A.2, A.3)
          normalised or as eq. 1 prints it: ``bandwidth``)
``ae``    ||x - r(x)||^2, r(x) treated as constant                    R_i = (x_i - r_i)^2 (A.3)
``deep``  ||W phi(x)||^2: CNN features with l2-pooling, then a         R_k = h_k^2 at the whitened features h,
          regularised whitening W tuned on validation AUC              then LRP-0 through W (A.4), the gamma rule
                                                                       through the convolutions (A.5), l2-pools
                                                                       by their quadratic share, z^B at the input
``bag``   mean of the three scores standardised on inliers             average pooling (A.1): sum_m R^m / (3 s_m)
========  ===========================================================  ==========================================

The deep model's relevance goes through the network with zennit (one module instance per position, no
BatchNorm, bias-free layers, so that relevance is conserved). ``fit`` returns self; ``score(images)`` returns
:class:`~oneclass.methods.base.Scores` with ``scores`` (N,), higher = more anomalous, and ``maps`` (N, H, W), the
explanations. The paper's metrics are in :mod:`oneclass.metrics` (``explanation_metrics``), its cross-run
tables in :mod:`oneclass.tables`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ... import metrics
from ...mnist_c import CORRUPTIONS
from .. import training
from ..base import Detector, Scores, as_images, seeded
from .lrp import L2Pool, lrp_squared_norm

MODELS = ("kde", "ae", "deep", "bag")


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255)


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


# ================================================================================================ KDE

def smin(d: torch.Tensor, gamma: float) -> torch.Tensor:
    """Soft-min over the last axis: -1/gamma log mean_j exp(-gamma d_j). The paper's log-sum-exp form minus
    log(N)/gamma: the same ranking, and it lies between min and mean so relevance keeps the score's sign."""
    return -(torch.logsumexp(-gamma * d, dim=-1) - math.log(d.shape[-1])) / gamma


def sq_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (len(x), len(y)) of flattened rows, float64 to keep small ones exact."""
    d = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None] - 2 * x @ y.T
    return d.clamp_min_(0)


BANDWIDTHS = ("likelihood", "unnormalised")


class KDE(Detector):
    """Gaussian kernel density estimate as a soft-min over squared distances (paper eq. 1).

    ``gamma=None`` picks the stiffness (1 / (2 sigma^2)) from ``gammas`` (default: a grid of 41 values, 0.1
    decade apart, from 1/1000 to 10 times the data's scale D / (2 median nearest-neighbour distance)) on the
    inlier validation images, by one of two readings of the paper's 'bandwidth chosen by validation likelihood':

    * ``bandwidth="likelihood"``: the mean log-likelihood of the normalised Gaussian KDE (eq. 1 with its
      constant, D/2 log(gamma / pi)); it has an interior maximum, typically a stiff kernel close to a
      nearest-neighbour detector;
    * ``bandwidth="unnormalised"``: eq. 1 as printed, 'up to a constant factor and additive term', maximised
      as it is: -gamma smin(d) = log mean_j exp(-gamma d_j) falls as gamma grows, so this picks the broadest
      kernel on the grid, where the soft-min tends to the mean squared distance and the KDE ranks images by
      their distance to the training mean.

    Distances are float64 on ``device``; ``precision`` is accepted for the common contract and not used (a KDE
    has no network)."""

    def __init__(self, gamma: float | None = None, gammas=None, bandwidth: str = "likelihood", batch_size: int = 256,
                 seed: int | None = None, device=None, precision: str = "fp32"):
        if bandwidth not in BANDWIDTHS:
            raise ValueError(f"unknown KDE bandwidth rule {bandwidth!r}; choose one of {BANDWIDTHS}")
        self.gamma, self.gammas, self.bandwidth, self.batch_size = gamma, gammas, bandwidth, batch_size
        self.seed, self.device, self.precision = seed, device, precision

    def _points(self) -> torch.Tensor:
        """The training points as float64 rows on the device (kept as uint8 in ``train_``, 8x smaller)."""
        if getattr(self, "_x64", None) is None:
            self._x64 = _float(self.train_.to(self.device_)).reshape(len(self.train_), -1).double()
        return self._x64

    def _loaded(self):
        self._x64 = None

    def fit(self, train, progress=None, *, val=None) -> "KDE":
        x = as_images(train)
        self._setup()
        self.shape_ = tuple(x.shape[1:])
        self.train_ = x.clone()
        self._x64 = None
        xs = self._points()
        if self.gamma is None:
            if val is None:
                raise ValueError("KDE needs inlier validation images to choose its bandwidth (val=...), or a fixed "
                                 "gamma=...")
            v = _float(as_images(val).to(self.device_)).reshape(len(as_images(val)), -1).double()
            d = torch.cat([sq_distances(v[s], xs) for s in _chunks(len(v), self.batch_size)])
            dim = v.shape[1]
            grid = self.gammas
            if grid is None:   # around gamma = D / (2 * typical nearest-neighbour distance)
                base = dim / (2 * float(d.min(1).values.median().clamp_min(1e-6)))
                grid = base * np.logspace(-3, 1, 41)
            unnormalised = [float((-smin(d, g) * g).mean()) for g in grid]
            ll = [u + dim / 2 * math.log(g / math.pi) for u, g in zip(unnormalised, grid)]
            objective = ll if self.bandwidth == "likelihood" else unnormalised
            self.gamma_ = float(grid[int(np.argmax(objective))])
            self.validation_ = {"gammas": [float(g) for g in grid], "log_likelihood": ll,
                                "unnormalised": unnormalised, "bandwidth": self.bandwidth}
        else:
            self.gamma_ = float(self.gamma)
        self._fitted = True
        return self

    def score(self, images, maps: bool = True) -> Scores:
        self._check_fitted()
        x = as_images(images)
        flat = _float(x.to(self.device_)).reshape(len(x), -1).double()
        xs = self._points()
        sq = xs ** 2
        scores, out = [], []
        for s in _chunks(len(x), self.batch_size):
            a = flat[s]
            d = sq_distances(a, xs)
            o = smin(d, self.gamma_)
            scores.append(o)
            if maps:
                # pooling (A.2): R_j = p_j o; distance layer (A.3): R_ij = R_j (a_i - x_ji)^2 / d_j
                w = torch.softmax(-self.gamma_ * d, dim=1) / d.clamp_min(1e-12)
                r = o[:, None] * (a * a * w.sum(1, keepdim=True) - 2 * a * (w @ xs) + w @ sq)
                out.append(r.reshape(len(a), *self.shape_).sum(1).float())
        return Scores(torch.cat(scores), torch.cat(out) if maps else None)


# ================================================================================================ autoencoders

class LeNetAE(nn.Module):
    """MNIST-C autoencoder: two 5x5 conv + max-pool blocks (16 and 32 channels), two dense layers to a 64-d code
    (1568 -> 128 -> 64, the widths of Deep SAD's Fashion-MNIST LeNet, without its batch norm and leaky ReLU; the
    paper gives only the layout); the decoder mirrors it with upsampling and transposed convolutions."""

    def __init__(self, channels: int = 1, size: int = 28, code: int = 64, hidden: int = 128, widths=(16, 32)):
        super().__init__()
        if size % 4:
            raise ValueError(f"the LeNet autoencoder needs a size divisible by 4, got {size}")
        s, (a, b) = size // 4, widths
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, a, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(b * s * s, hidden), nn.ReLU(), nn.Linear(hidden, code))
        self.decoder = nn.Sequential(
            nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, b * s * s), nn.ReLU(), nn.Unflatten(1, (b, s, s)),
            nn.Upsample(scale_factor=2), nn.ConvTranspose2d(b, a, 5, padding=2), nn.ReLU(),
            nn.Upsample(scale_factor=2), nn.ConvTranspose2d(a, channels, 5, padding=2), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


class BlockAE(nn.Module):
    """MVTec autoencoder after Huang et al. (the paper's [13]): four blocks of two 3x3 convolutions with
    max-pooling, a 512-d dense bottleneck, and four mirrored blocks with upsampling."""

    def __init__(self, channels: int = 3, size: int = 64, code: int = 512, widths=(32, 64, 128, 256)):
        super().__init__()
        if size % 16:
            raise ValueError(f"the 4-block autoencoder needs a size divisible by 16, got {size}")
        s, enc, cin = size // 16, [], channels
        for w in widths:
            enc += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
                    nn.MaxPool2d(2)]
            cin = w
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(cin * s * s, code))
        dec = [nn.Linear(code, cin * s * s), nn.ReLU(), nn.Unflatten(1, (cin, s, s))]
        for w in list(widths[::-1][1:]) + [32]:
            dec += [nn.Upsample(scale_factor=2), nn.Conv2d(cin, w, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(w, w, 3, padding=1), nn.ReLU()]
            cin = w
        self.decoder = nn.Sequential(*dec, nn.Conv2d(cin, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


class Autoencoder(Detector):
    """Reconstruction model o(x) = ||x - r(x)||^2; Adam on the MSE, keeping the epoch with the lowest inlier
    validation reconstruction error (the paper's model selection). ``epochs`` is the default of :meth:`fit`."""

    def __init__(self, arch: str = "lenet", epochs: int = 20, batch_size: int = 128, lr: float = 1e-3,
                 weight_decay: float = 0.0, seed: int | None = 0, batch_eval: int = 512, device=None,
                 precision: str = "fp32"):
        if arch not in ("lenet", "blocks"):
            raise ValueError(f"unknown autoencoder arch {arch!r}; choose 'lenet' (MNIST-C) or 'blocks' (MVTec)")
        self.arch, self.epochs, self.batch_size, self.lr = arch, epochs, batch_size, lr
        self.weight_decay, self.seed, self.batch_eval = weight_decay, seed, batch_eval
        self.device, self.precision = device, precision

    def _build(self, c, s):
        return LeNetAE(c, s) if self.arch == "lenet" else BlockAE(c, s)

    def _net(self, b):
        with self._autocast():
            return self.net_(b).float()

    def fit(self, train, epochs: int | None = None, progress=None, *, val=None, monitor=None) -> "Autoencoder":
        """Train on ``train``; with ``val`` (inlier validation images) keep the epoch with the lowest validation
        error. ``monitor``: a :class:`oneclass.monitor.Monitor` (its last point is the kept epoch's model)."""
        x = as_images(train)
        epochs = self.epochs if epochs is None else epochs
        if epochs < 1 or int(epochs) != epochs:
            raise ValueError(f"epochs must be a whole number >= 1, got {epochs}")
        self._setup()
        with seeded(self.seed_):
            self.net_ = self._build(x.shape[1], x.shape[2]).to(self.device_)
        self._fitted = True   # _errors scores the validation images while training
        opt = training.optimizer(self.net_.parameters(), "adam", self.lr, self.weight_decay)
        gen = training.generator(self.seed_)
        x = x.to(self.device_)
        v = as_images(val) if val is not None else None
        best, self.history_ = (math.inf, None), []
        bar = training.progress(range(int(epochs)), progress, desc="autoencoder", leave=False)
        if monitor is not None:
            monitor.start(self, training.n_batches(len(x), self.batch_size))
        for epoch in bar:
            self.net_.train()
            total = 0.0
            for idx in training.batches(len(x), self.batch_size, gen):
                b = _float(x[idx.to(self.device_)])
                loss = F.mse_loss(self._net(b), b)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                if monitor is not None:
                    monitor.step(self, float(loss.detach()))
            training.check_loss(total / len(x), epoch + 1, "Clever Hans autoencoder")
            val_err = float(self._errors(v).mean()) if v is not None else total / len(x)
            self.history_.append({"epoch": epoch + 1, "train_mse": total / len(x), "val_error": val_err})
            bar.set_postfix(val=f"{val_err:.3f}")
            if val_err < best[0]:
                best = (val_err, copy.deepcopy(self.net_.state_dict()))
        if best[1] is not None:
            self.net_.load_state_dict(best[1])
        self.best_epoch_ = int(np.argmin([h["val_error"] for h in self.history_])) + 1 if self.history_ else 0
        self.net_.eval()
        if monitor is not None:
            monitor.finish(self)
        return self

    @torch.no_grad()
    def reconstruct(self, images) -> torch.Tensor:
        x = as_images(images).to(self.device_)
        self.net_.eval()
        return torch.cat([self._net(_float(x[s])) for s in _chunks(len(x), self.batch_eval)])

    def _errors(self, images) -> torch.Tensor:
        x = as_images(images).to(self.device_)
        return ((_float(x) - self.reconstruct(x)) ** 2).flatten(1).sum(1)

    def score(self, images, maps: bool = True) -> Scores:
        self._check_fitted()
        x = as_images(images).to(self.device_)
        r = (_float(x) - self.reconstruct(x)) ** 2      # distance layer (A.3) with r(x) held constant
        return Scores(r.flatten(1).sum(1).double(), r.sum(1) if maps else None)


# ================================================================================================ deep one-class

class FeatureCNN(nn.Module):
    """Three bias-free convolutions interleaved with l2-pooling, 640 features (160 channels x 2 x 2).

    The paper gives 'three convolutional layers interleaved with l2 pooling, 640 dimensions'; the kernel sizes
    and widths are ours. No biases and no BatchNorm: relevance is then conserved layer by layer."""

    def __init__(self, channels: int = 1, widths=(16, 32, 160), classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, widths[0], 5, padding=2, bias=False), nn.ReLU(), L2Pool(2),
            nn.Conv2d(widths[0], widths[1], 5, padding=2, bias=False), nn.ReLU(), L2Pool(2),
            nn.Conv2d(widths[1], widths[2], 3, bias=False), nn.ReLU(), L2Pool(output_size=2),
            nn.Flatten())
        self.dim = widths[2] * 4
        self.classifier = nn.Linear(self.dim, classes)

    def forward(self, x):
        return self.classifier(self.features(x))


class DeepOneClass(Detector):
    """Deep one-class model o(x) = ||W phi(x)||^2 on the features phi of a CNN classifier trained on a labelled
    dataset (the paper: EMNIST letters for MNIST-C; here whatever ``pretrain`` names), with a whitening
    W = (M + lam tr(M)/d I)^(-1/2) of the inliers' feature second moment M (uncentred, so the model is centred
    at the origin as appendix A requires), lam chosen by the validation AUC when validation outliers are given."""

    def __init__(self, pretrain: str = "fmnist", pretrain_limit: int | None = None, epochs: int = 3,
                 batch_size: int = 128, lr: float = 1e-3, lam: float | None = None, lams=None, seed: int = 0,
                 lrp_gamma: float = 0.25, cache_dir: str | None = None, batch_eval: int = 512, device=None,
                 precision: str = "fp32"):
        self.pretrain, self.pretrain_limit, self.epochs, self.batch_size = pretrain, pretrain_limit, epochs, batch_size
        self.lr, self.lam, self.lams, self.seed, self.lrp_gamma = lr, lam, lams, seed, lrp_gamma
        self.cache_dir, self.batch_eval, self.device, self.precision = cache_dir, batch_eval, device, precision

    # --- feature extractor
    def _pretrain(self, channels: int, size: int, progress=None) -> FeatureCNN:
        from ... import data

        key = hashlib.sha1(json.dumps([self.pretrain, self.pretrain_limit, self.epochs, self.batch_size, self.lr,
                                       self.seed_, channels, size, 1]).encode()).hexdigest()[:16]
        path = Path(self.cache_dir) / f"featurecnn-{key}.pt" if self.cache_dir else None
        labelled = None
        if path is None or not path.exists():
            labelled = data.load(self.pretrain, "train", size=size, channels=channels)
            if self.pretrain_limit:
                idx = torch.randperm(len(labelled), generator=training.generator(self.seed_))[:self.pretrain_limit]
                labelled = labelled.subset(idx)
        with seeded(self.seed_):
            net = FeatureCNN(channels, classes=len(labelled.classes) if labelled is not None else
                             torch.load(path, weights_only=True)["classifier.weight"].shape[0])
        net = net.to(self.device_)
        if path is not None and path.exists():
            net.load_state_dict(torch.load(path, weights_only=True, map_location=self.device_))
            self.pretrain_log_ = json.loads(path.with_suffix(".json").read_text())
            return net.eval()
        opt = training.optimizer(net.parameters(), "adam", self.lr)
        gen = training.generator(self.seed_)
        x, y = labelled.images.to(self.device_), labelled.labels.to(self.device_)
        log = []
        for epoch in training.progress(range(self.epochs), progress, desc=f"features on {self.pretrain}", leave=False):
            net.train()
            correct = total = 0.0
            for idx in training.batches(len(x), self.batch_size, gen):
                idx = idx.to(self.device_)
                with self._autocast():
                    out = net(_float(x[idx])).float()
                loss = F.cross_entropy(out, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                correct += float((out.argmax(1) == y[idx]).sum())
                total += float(loss.detach()) * len(idx)
            training.check_loss(total / len(x), epoch + 1, f"feature CNN on {self.pretrain}")
            log.append({"epoch": epoch + 1, "loss": total / len(x), "train_accuracy": correct / len(x)})
        self.pretrain_log_ = {"dataset": self.pretrain, "images": len(x), "epochs": log}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), path)
            path.with_suffix(".json").write_text(json.dumps(self.pretrain_log_))
        return net.eval()

    @torch.no_grad()
    def features(self, images) -> torch.Tensor:
        x = as_images(images).to(self.device_)
        with self._autocast():
            return torch.cat([self.net_.features(_float(x[s])).float()
                              for s in _chunks(len(x), self.batch_eval)]).double()

    def fit(self, train, progress=None, *, val=None, val_anomaly=None) -> "DeepOneClass":
        x = as_images(train)
        self._setup()
        self.net_ = self._pretrain(x.shape[1], x.shape[2], progress)
        for p in self.net_.parameters():
            p.requires_grad_(False)
        phi = self.features(x)
        m = phi.T @ phi / len(phi)
        self.evals_, self.evecs_ = torch.linalg.eigh(m)
        self.scale_ = float(torch.trace(m)) / m.shape[0]
        grid = [self.lam] if self.lam is not None else list(self.lams if self.lams is not None
                                                            else np.logspace(-9, 0, 19))
        self.validation_ = []
        if len(grid) > 1:
            if val is None or val_anomaly is None or len(np.unique(np.asarray(val_anomaly))) < 2:
                raise ValueError("choosing the whitening's regulariser needs validation images with some outliers "
                                 "(val=..., val_anomaly=... with both 0 and 1), or a fixed lam=...")
            pv = self.features(val)
            for lam in grid:
                self._set_whitening(lam)
                auc = metrics.auc(self._score_features(pv).cpu().numpy(), val_anomaly)
                self.validation_.append({"lam": float(lam), "auc": auc})
            grid = [max(self.validation_, key=lambda r: r["auc"])["lam"]]
        self._set_whitening(grid[0])
        self._fitted = True
        return self

    def _set_whitening(self, lam: float):
        self.lam_ = float(lam)
        inv_sqrt = (self.evals_.clamp_min(0) + lam * self.scale_).rsqrt()
        self.whiten_ = (self.evecs_ * inv_sqrt) @ self.evecs_.T   # symmetric (M + lam)^(-1/2)

    def _score_features(self, phi):
        return ((phi @ self.whiten_) ** 2).sum(1)

    def network(self) -> nn.Sequential:
        """features -> whitening as one bias-free network (what LRP walks through); output h, score ||h||^2."""
        lin = nn.Linear(self.whiten_.shape[0], self.whiten_.shape[0], bias=False).to(self.device_)
        lin.weight.data = self.whiten_.T.float().contiguous()
        return nn.Sequential(copy.deepcopy(self.net_.features), lin).eval()

    def score(self, images, maps: bool = True) -> Scores:
        self._check_fitted()
        x = as_images(images)
        scores = self._score_features(self.features(x))
        return Scores(scores, self.explain(x) if maps else None)

    def explain(self, images) -> np.ndarray:
        """LRP relevance maps (N, H, W) of the score (appendix A.4-A.5), in float32 whatever ``precision``."""
        x = as_images(images).to(self.device_)
        net = self.network()
        return np.concatenate([lrp_squared_norm(net, _float(x[s]), self.lrp_gamma)
                               for s in _chunks(len(x), self.batch_eval)])


# ================================================================================================ bagging

class Bag(Detector):
    """Average pooling of standardised scores (section 5). The paper standardises on the class's training
    examples; a KDE scores its own training points with a zero self-distance, so we standardise on the
    held-out inlier validation images instead. Explanation: each model's relevance times 1/(3 s_m); the mean
    shift is a bias and, as LRP does with biases, keeps its share of relevance out of the pixels."""

    def __init__(self, members: dict, seed: int | None = None, device=None, precision: str = "fp32"):
        if not members:
            raise ValueError("a bag needs at least one fitted model, e.g. Bag({'kde': kde, 'ae': ae, 'deep': deep})")
        self.members, self.seed, self.device, self.precision = members, seed, device, precision

    def fit(self, train=None, progress=None, *, val=None) -> "Bag":
        """Standardise each member's score on the inlier images ``val`` (the members are fitted already)."""
        if val is None:
            raise ValueError("Bag.fit needs inlier images to standardise on (val=...)")
        self._setup()
        self.stats_ = {}
        for name, m in self.members.items():
            s = m.score(val, maps=False).scores
            self.stats_[name] = (float(s.mean()), float(s.std()) or 1.0)
        self._fitted = True
        return self

    def score(self, images, maps: bool = True, parts: dict | None = None) -> Scores:
        """The bag's score and relevance; ``parts`` reuses the members' Scores on the same images."""
        self._check_fitted()
        parts = parts or {name: m.score(images, maps) for name, m in self.members.items()}
        k = len(self.members)
        scores = sum((parts[n].scores - mu) / sd for n, (mu, sd) in self.stats_.items()) / k
        out = sum(parts[n].maps / (k * sd) for n, (mu, sd) in self.stats_.items()) if maps else None
        return Scores(scores, out, subscores={f"{n}_score": parts[n].scores for n in self.stats_})

    def _to_device(self, device):
        for m in self.members.values():
            if m.is_fitted():
                m.device_ = device
                m._to_device(device)


# ================================================================================================ building models

def build(model: str, **hyper):
    """A model by name: 'kde', 'ae' (hyper: arch, epochs, ...), 'deep' (pretrain, epochs, ...)."""
    if model == "kde":
        return KDE(**hyper)
    if model == "ae":
        return Autoencoder(**hyper)
    if model == "deep":
        return DeepOneClass(**hyper)
    raise ValueError(f"unknown model {model!r}; choose one of {MODELS[:3]} (a 'bag' is built from fitted models)")


def fit_cached(model: str, hyper: dict, train, val=None, val_anomaly=None, cache_dir=None, progress=None):
    """Fit a model, or reload it from ``cache_dir`` when the same model, hyperparameters and training images
    were fitted before: on MNIST-C the KDE and the autoencoder do not depend on the corruption, so a grid of
    15 corruptions fits them once. The deep model caches its feature extractor and re-tunes its whitening."""
    m = build(model, **hyper)
    x = as_images(train)
    if model != "deep" and val is not None and val_anomaly is not None:
        # KDE and AE are tuned on inliers only (so one fit serves every corruption)
        val, val_anomaly = as_images(val)[torch.as_tensor(val_anomaly) == 0], None
    if model == "deep":
        return m.fit(x, val=val, val_anomaly=val_anomaly, progress=progress), False
    if cache_dir is None:
        return m.fit(x, val=val, progress=progress), False
    v = as_images(val) if val is not None else None
    h = hashlib.sha1(json.dumps([model, hyper, 3], sort_keys=True, default=str).encode())
    for t in (x, v):
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
    path = Path(cache_dir) / f"{model}-{h.hexdigest()[:16]}.pt"
    if path.exists():
        return type(m).load(path, device=m.device), True
    m.fit(x, val=v, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path)
    return m, False


