"""The Clever Hans effect in anomaly detection (Kauffmann, Ruff, Montavon, Müller): models, LRP, metrics.

Every model is written in the paper's features / distance / pooling form (its Table 1) and explains its score
by the paper's propagation (appendix A):

========  ===========================================================  ==========================================
model     outlier score o(x)                                           explanation (relevance of pixel i)
========  ===========================================================  ==========================================
``kde``   soft-min over squared distances to the training points      R_i = sum_j p_j o (x_i - x_ji)^2 / d_j,
          (Gaussian kernel, gamma by inlier validation likelihood)     p = soft-argmin weights (A.2, A.3)
``ae``    ||x - r(x)||^2, r(x) treated as constant                    R_i = (x_i - r_i)^2 (A.3)
``deep``  ||W phi(x)||^2: CNN features with l2-pooling, then a         R_k = h_k^2 at the whitened features h,
          regularised whitening W tuned on validation AUC              then LRP-0 through W (A.4), the gamma rule
                                                                       through the convolutions (A.5), l2-pools
                                                                       by their quadratic share, z^B at the input
``bag``   mean of the three scores standardised on inliers             average pooling (A.1): sum_m R^m / (3 s_m)
========  ===========================================================  ==========================================

The deep model's relevance goes through the network with zennit (one module instance per position, no
BatchNorm, bias-free layers, so that relevance is conserved). ``fit`` returns self; ``score(images)`` returns an
:class:`Output` with ``scores`` (N,), higher = more anomalous, and ``maps`` (N, H, W), the explanations.

Metrics: :func:`explanation_metrics` (detection AUC, explanation accuracy, Clever Hans score = AUC - explanation
accuracy) and :func:`run_explanation_metrics` for any run folder with explanation maps and ground truth;
:func:`collect` gathers them over run folders into one table.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics, training
from .mnist_c import CORRUPTIONS

MODELS = ("kde", "ae", "deep", "bag")
PAPER_NAMES = {"kde": "KDE", "ae": "Auto", "deep": "Deep", "bag": "Bag"}


@dataclass
class Output:
    scores: np.ndarray            # (N,) float64, higher = more anomalous
    maps: np.ndarray | None       # (N, H, W) float32 relevance (explanation), or None


def as_images(x) -> torch.Tensor:
    """uint8 (N, C, H, W) from an ImageSet or a tensor / array; anything else is refused with the fix."""
    x = getattr(x, "images", x)
    x = torch.as_tensor(x)
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W) or an ImageSet, got {x.dtype} {tuple(x.shape)}; "
                         "pass ImageSet.images, not .float()")
    if len(x) == 0:
        raise ValueError("no images: the set is empty")
    return x


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


class KDE:
    """Gaussian kernel density estimate as a soft-min over squared distances (paper eq. 1).

    ``gamma=None`` picks the stiffness (1 / (2 sigma^2)) from ``gammas`` (or a default grid around the data's
    scale) by the mean log-likelihood of the inlier validation images."""

    def __init__(self, gamma: float | None = None, gammas=None, batch_size: int = 256):
        self.gamma, self.gammas, self.batch_size = gamma, gammas, batch_size

    def fit(self, train, val=None, progress=None, **_) -> "KDE":
        x = as_images(train)
        self.shape_ = tuple(x.shape[1:])
        self.train_ = _float(x).reshape(len(x), -1).double()
        if self.gamma is None:
            if val is None:
                raise ValueError("KDE needs inlier validation images to choose its bandwidth (val=...), or a fixed "
                                 "gamma=...")
            v = _float(as_images(val)).reshape(len(as_images(val)), -1).double()
            d = torch.cat([sq_distances(v[s], self.train_) for s in _chunks(len(v), self.batch_size)])
            dim = v.shape[1]
            grid = self.gammas
            if grid is None:   # around gamma = D / (2 * typical nearest-neighbour distance), a decade each way
                base = dim / (2 * float(d.min(1).values.median().clamp_min(1e-6)))
                grid = base * np.logspace(-2, 1, 31)
            ll = [float((-smin(d, g) * g).mean() + dim / 2 * math.log(g / math.pi)) for g in grid]
            self.gamma_ = float(grid[int(np.argmax(ll))])
            self.validation_ = {"gammas": [float(g) for g in grid], "log_likelihood": ll}
        else:
            self.gamma_ = float(self.gamma)
        return self

    def score(self, images, explain: bool = True) -> Output:
        x = as_images(images)
        flat = _float(x).reshape(len(x), -1).double()
        xs, sq = self.train_, self.train_ ** 2
        scores, maps = [], []
        for s in _chunks(len(x), self.batch_size):
            a = flat[s]
            d = sq_distances(a, xs)
            o = smin(d, self.gamma_)
            scores.append(o)
            if explain:
                # pooling (A.2): R_j = p_j o; distance layer (A.3): R_ij = R_j (a_i - x_ji)^2 / d_j
                w = torch.softmax(-self.gamma_ * d, dim=1) / d.clamp_min(1e-12)
                r = o[:, None] * (a * a * w.sum(1, keepdim=True) - 2 * a * (w @ xs) + w @ sq)
                maps.append(r.reshape(len(a), *self.shape_).sum(1).float())
        return Output(torch.cat(scores).numpy(), torch.cat(maps).numpy() if explain else None)

    def state(self) -> dict:
        return {"gamma_": self.gamma_, "train_": self.train_, "shape_": self.shape_}


# ================================================================================================ autoencoders

class LeNetAE(nn.Module):
    """MNIST-C autoencoder: two 5x5 conv + max-pool blocks (16 and 32 channels), two dense layers to a 64-d code
    (1568 -> 128 -> 64, the widths of Deep SAD's MNIST LeNet; the paper gives only the layout); the decoder
    mirrors it with upsampling and transposed convolutions."""

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


class Autoencoder:
    """Reconstruction model o(x) = ||x - r(x)||^2; Adam on the MSE, keeping the epoch with the lowest inlier
    validation reconstruction error (the paper's model selection)."""

    def __init__(self, arch: str = "lenet", epochs: int = 20, batch_size: int = 128, lr: float = 1e-3,
                 weight_decay: float = 0.0, seed: int = 0, batch_eval: int = 512):
        if arch not in ("lenet", "blocks"):
            raise ValueError(f"unknown autoencoder arch {arch!r}; choose 'lenet' (MNIST-C) or 'blocks' (MVTec)")
        self.arch, self.epochs, self.batch_size, self.lr = arch, epochs, batch_size, lr
        self.weight_decay, self.seed, self.batch_eval = weight_decay, seed, batch_eval

    def _build(self, c, s):
        return LeNetAE(c, s) if self.arch == "lenet" else BlockAE(c, s)

    def fit(self, train, val=None, progress=None, **_) -> "Autoencoder":
        x = as_images(train)
        torch.manual_seed(self.seed)
        self.net_ = self._build(x.shape[1], x.shape[2])
        opt = training.optimizer(self.net_.parameters(), "adam", self.lr, self.weight_decay)
        gen = training.generator(self.seed)
        v = as_images(val) if val is not None else None
        best, self.history_ = (math.inf, None), []
        bar = training.progress(range(self.epochs), progress, desc="autoencoder", leave=False)
        for epoch in bar:
            self.net_.train()
            total = 0.0
            for idx in training.batches(len(x), self.batch_size, gen):
                b = _float(x[idx])
                loss = F.mse_loss(self.net_(b), b)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            val_err = float(self._errors(v).mean()) if v is not None else total / len(x)
            self.history_.append({"epoch": epoch + 1, "train_mse": total / len(x), "val_error": val_err})
            bar.set_postfix(val=f"{val_err:.3f}")
            if val_err < best[0]:
                best = (val_err, copy.deepcopy(self.net_.state_dict()))
        if best[1] is not None:
            self.net_.load_state_dict(best[1])
        self.best_epoch_ = int(np.argmin([h["val_error"] for h in self.history_])) + 1 if self.history_ else 0
        self.net_.eval()
        return self

    @torch.no_grad()
    def reconstruct(self, images) -> torch.Tensor:
        x = as_images(images)
        self.net_.eval()
        return torch.cat([self.net_(_float(x[s])) for s in _chunks(len(x), self.batch_eval)])

    def _errors(self, images) -> torch.Tensor:
        x = as_images(images)
        return ((_float(x) - self.reconstruct(x)) ** 2).flatten(1).sum(1)

    def score(self, images, explain: bool = True) -> Output:
        x = as_images(images)
        r = (_float(x) - self.reconstruct(x)) ** 2      # distance layer (A.3) with r(x) held constant
        return Output(r.flatten(1).sum(1).double().numpy(), r.sum(1).numpy() if explain else None)

    def state(self) -> dict:
        return {"net_": self.net_.state_dict(), "history_": self.history_, "best_epoch_": self.best_epoch_}


# ================================================================================================ deep one-class

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


class DeepOneClass:
    """Deep one-class model o(x) = ||W phi(x)||^2 on the features phi of a CNN classifier trained on a labelled
    dataset (the paper: EMNIST letters for MNIST-C; here whatever ``pretrain`` names), with a whitening
    W = (M + lam tr(M)/d I)^(-1/2) of the inliers' feature second moment M (uncentred, so the model is centred
    at the origin as appendix A requires), lam chosen by the validation AUC when validation outliers are given."""

    def __init__(self, pretrain: str = "fmnist", pretrain_limit: int | None = None, epochs: int = 3,
                 batch_size: int = 128, lr: float = 1e-3, lam: float | None = None, lams=None, seed: int = 0,
                 lrp_gamma: float = 0.25, cache_dir: str | None = None, batch_eval: int = 512):
        self.pretrain, self.pretrain_limit, self.epochs, self.batch_size = pretrain, pretrain_limit, epochs, batch_size
        self.lr, self.lam, self.lams, self.seed, self.lrp_gamma = lr, lam, lams, seed, lrp_gamma
        self.cache_dir, self.batch_eval = cache_dir, batch_eval

    # --- feature extractor
    def _pretrain(self, channels: int, size: int, progress=None) -> FeatureCNN:
        from . import data

        key = hashlib.sha1(json.dumps([self.pretrain, self.pretrain_limit, self.epochs, self.batch_size, self.lr,
                                       self.seed, channels, size, 1]).encode()).hexdigest()[:16]
        path = Path(self.cache_dir) / f"featurecnn-{key}.pt" if self.cache_dir else None
        labelled = None
        if path is None or not path.exists():
            labelled = data.load(self.pretrain, "train", size=size, channels=channels)
            if self.pretrain_limit:
                idx = torch.randperm(len(labelled), generator=training.generator(self.seed))[:self.pretrain_limit]
                labelled = labelled.subset(idx)
        torch.manual_seed(self.seed)
        net = FeatureCNN(channels, classes=len(labelled.classes) if labelled is not None else
                         torch.load(path, weights_only=True)["classifier.weight"].shape[0])
        if path is not None and path.exists():
            net.load_state_dict(torch.load(path, weights_only=True))
            self.pretrain_log_ = json.loads(path.with_suffix(".json").read_text())
            return net.eval()
        opt = training.optimizer(net.parameters(), "adam", self.lr)
        gen = training.generator(self.seed)
        x, y = labelled.images, labelled.labels
        log = []
        for epoch in training.progress(range(self.epochs), progress, desc=f"features on {self.pretrain}", leave=False):
            net.train()
            correct = total = 0.0
            for idx in training.batches(len(x), self.batch_size, gen):
                out = net(_float(x[idx]))
                loss = F.cross_entropy(out, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                correct += float((out.argmax(1) == y[idx]).sum())
                total += float(loss.detach()) * len(idx)
            log.append({"epoch": epoch + 1, "loss": total / len(x), "train_accuracy": correct / len(x)})
        self.pretrain_log_ = {"dataset": self.pretrain, "images": len(x), "epochs": log}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), path)
            path.with_suffix(".json").write_text(json.dumps(self.pretrain_log_))
        return net.eval()

    @torch.no_grad()
    def features(self, images) -> torch.Tensor:
        x = as_images(images)
        return torch.cat([self.net_.features(_float(x[s])) for s in _chunks(len(x), self.batch_eval)]).double()

    def fit(self, train, val=None, val_anomaly=None, progress=None, **_) -> "DeepOneClass":
        x = as_images(train)
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
                auc = metrics.auc(self._score_features(pv).numpy(), val_anomaly)
                self.validation_.append({"lam": float(lam), "auc": auc})
            grid = [max(self.validation_, key=lambda r: r["auc"])["lam"]]
        self._set_whitening(grid[0])
        return self

    def _set_whitening(self, lam: float):
        self.lam_ = float(lam)
        inv_sqrt = (self.evals_.clamp_min(0) + lam * self.scale_).rsqrt()
        self.whiten_ = (self.evecs_ * inv_sqrt) @ self.evecs_.T   # symmetric (M + lam)^(-1/2)

    def _score_features(self, phi):
        return ((phi @ self.whiten_) ** 2).sum(1)

    def network(self) -> nn.Sequential:
        """features -> whitening as one bias-free network (what LRP walks through); output h, score ||h||^2."""
        lin = nn.Linear(self.whiten_.shape[0], self.whiten_.shape[0], bias=False)
        lin.weight.data = self.whiten_.T.float().contiguous()
        return nn.Sequential(copy.deepcopy(self.net_.features), lin).eval()

    def score(self, images, explain: bool = True) -> Output:
        x = as_images(images)
        scores = self._score_features(self.features(x)).numpy()
        return Output(scores, self.explain(x) if explain else None)

    def explain(self, images) -> np.ndarray:
        x = as_images(images)
        return np.concatenate([lrp_squared_norm(self.network(), _float(x[s]), self.lrp_gamma)
                               for s in _chunks(len(x), self.batch_eval)])

    def state(self) -> dict:
        return {"net_": self.net_.state_dict(), "evals_": self.evals_, "evecs_": self.evecs_, "scale_": self.scale_,
                "lam_": self.lam_, "validation_": self.validation_, "pretrain_log_": self.pretrain_log_}


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
    return rel.sum(1).detach().numpy()


# ================================================================================================ bagging

class Bag:
    """Average pooling of standardised scores (section 5). The paper standardises on the class's training
    examples; a KDE scores its own training points with a zero self-distance, so we standardise on the
    held-out inlier validation images instead. Explanation: each model's relevance times 1/(3 s_m); the mean
    shift is a bias and, as LRP does with biases, keeps its share of relevance out of the pixels."""

    def __init__(self, members: dict):
        if not members:
            raise ValueError("a bag needs at least one fitted model, e.g. Bag({'kde': kde, 'ae': ae, 'deep': deep})")
        self.members = dict(members)

    def fit(self, train=None, val=None, **_) -> "Bag":
        if val is None:
            raise ValueError("Bag.fit needs inlier images to standardise on (val=...)")
        self.stats_ = {}
        for name, m in self.members.items():
            s = m.score(val, explain=False).scores
            self.stats_[name] = (float(s.mean()), float(s.std()) or 1.0)
        return self

    def score(self, images, explain: bool = True, parts: dict | None = None) -> Output:
        parts = parts or {name: m.score(images, explain) for name, m in self.members.items()}
        k = len(self.members)
        scores = sum((parts[n].scores - mu) / sd for n, (mu, sd) in self.stats_.items()) / k
        maps = sum(parts[n].maps / (k * sd) for n, (mu, sd) in self.stats_.items()) if explain else None
        return Output(scores, maps)


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
    if model == "deep" or cache_dir is None:
        return m.fit(x, val=val, val_anomaly=val_anomaly, progress=progress), False
    v = as_images(val) if val is not None else None
    h = hashlib.sha1(json.dumps([model, hyper, 2], sort_keys=True, default=str).encode())
    for t in (x, v):
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.numpy().tobytes())
    path = Path(cache_dir) / f"{model}-{h.hexdigest()[:16]}.pt"
    if path.exists():
        state = torch.load(path, weights_only=False)
        if model == "ae":
            m.net_ = m._build(x.shape[1], x.shape[2])
            m.net_.load_state_dict(state.pop("net_"))
            m.net_.eval()
        m.__dict__.update(state)
        return m, True
    m.fit(x, val=v, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(m.state(), buf)
    path.write_bytes(buf.getvalue())
    return m, False


# ================================================================================================ protocols

@dataclass
class Protocol:
    """What one run needs: inlier training images, a validation set with some outliers, and a test set whose
    anomalous images carry a ground-truth explanation map (zeros for nominal ones)."""

    train: torch.Tensor         # uint8 (N, C, H, W) inliers only
    val: torch.Tensor           # uint8 inliers and some outliers
    val_anomaly: torch.Tensor   # int64 (V,)
    test: torch.Tensor          # uint8
    anomaly: torch.Tensor       # int64 (T,)
    ground_truth: torch.Tensor | None   # float32 (T, H, W) in [0, 1], or None when the data has no pixel truth
    labels: torch.Tensor        # int64 (T,) the dataset's own labels (digit / defect type)
    note: str = ""


def _pick(n: int, k: int | None, gen) -> torch.Tensor:
    idx = torch.randperm(n, generator=gen)
    return idx if k is None or k >= n else idx[:k]


def mnist_c_protocol(corruption: str, root=None, n_train: int | None = None, n_val: int = 1000,
                     n_test: int | None = None, seed: int = 0, data_seed: int = 0) -> Protocol:
    """MNIST-C as one anomaly class per corruption (our reading of the paper; it gives no protocol in words):
    inliers are clean MNIST digits (all ten); training uses the MNIST training images minus ``n_val`` held
    out; validation = those held-out clean images plus their corrupted versions from the MNIST-C training
    split; test = ``n_test`` MNIST test images, clean (nominal) and corrupted (anomalous) - the same digits
    twice, so only the corruption separates them."""
    from . import data, mnist_c

    gen = training.generator(seed)
    clean_train = data.load("mnist", "train", root=root).images
    order = torch.randperm(len(clean_train), generator=gen)
    n_val = min(n_val, len(clean_train) // 5)
    val_idx, train_idx = order[:n_val], order[n_val:]
    if n_train is not None:
        train_idx = train_idx[:n_train]
    c_train = mnist_c.load(corruption, "train", root=root, seed=data_seed)
    c_test = mnist_c.load(corruption, "test", root=root, seed=data_seed)
    t = _pick(len(c_test), n_test, gen).sort().values
    test = torch.cat([c_test.clean[t], c_test.images[t]])
    gt = torch.cat([torch.zeros_like(c_test.ground_truth[t]), c_test.ground_truth[t]])
    val = torch.cat([clean_train[val_idx], c_train.images[val_idx]])
    return Protocol(train=clean_train[train_idx], val=val,
                    val_anomaly=torch.cat([torch.zeros(n_val), torch.ones(n_val)]).long(), test=test,
                    anomaly=torch.cat([torch.zeros(len(t)), torch.ones(len(t))]).long(), ground_truth=gt,
                    labels=torch.cat([c_test.labels[t], c_test.labels[t]]),
                    note="released MNIST-C files" if c_test.released else "MNIST-C regenerated by oneclass.mnist_c")


def mvtec_protocol(category: str, root=None, size: int = 64, channels: int | None = None, val_fraction=0.2,
                   seed: int = 0) -> Protocol:
    """An MVTec-AD category: training = train/good minus a held-out ``val_fraction``; validation = those
    held-out good images plus ``val_fraction`` of each defect type's test images (the paper tunes the deep
    model's whitening on 'a validation set with some outliers'); test = the rest of the test folder. Ground
    truth = the defect masks (None when the category has no ground_truth folder)."""
    from . import data

    gen = training.generator(seed)
    split = data.one_vs_rest("mvtec", category, root=root, size=size, channels=channels)
    tr, te = split.train, split.test
    order = torch.randperm(len(tr), generator=gen)
    n_val = max(1, int(round(val_fraction * len(tr))))
    val_idx, keep = [], []
    for label in te.labels.unique():
        members = (te.labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        k = int(round(val_fraction * len(members))) if int(label) != 0 else 0
        val_idx.append(members[:k])
        keep.append(members[k:])
    val_idx, keep = torch.cat(val_idx).sort().values, torch.cat(keep).sort().values
    val = torch.cat([tr.images[order[:n_val]], te.images[val_idx]])
    val_anomaly = torch.cat([torch.zeros(n_val), te.anomaly[val_idx].float()]).long()
    gt = te.masks[keep][:, 0].float() if te.masks is not None else None
    note = "" if gt is not None else (f"MVTec {category}: no ground-truth masks here, so no explanation accuracy "
                                      "(detection AUC only)")
    return Protocol(train=tr.images[order[n_val:]], val=val, val_anomaly=val_anomaly, test=te.images[keep],
                    anomaly=te.anomaly[keep], ground_truth=gt, labels=te.labels[keep], note=note)


def fit_and_explain(model: str, proto: Protocol, hyper: dict, cache_dir=None, progress=None):
    """Fit ``model`` ('kde', 'ae', 'deep' or 'bag' = all three plus the bag) on a protocol and score and
    explain its test set. Returns (Output, fitted models by name, facts: fit / score seconds per model, whether
    it came from the cache, and the selected KDE stiffness / autoencoder epoch / whitening regulariser)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    import time

    names = ["kde", "ae", "deep"] if model == "bag" else [model]
    fitted, parts, seconds = {}, {}, {}
    for name in names:
        t = time.time()
        fitted[name], cached = fit_cached(name, hyper.get(name, {}), proto.train, proto.val, proto.val_anomaly,
                                          cache_dir, progress)
        seconds[f"{name}_fit_seconds"] = time.time() - t
        seconds[f"{name}_from_cache"] = bool(cached)
        t = time.time()
        parts[name] = fitted[name].score(proto.test)
        seconds[f"{name}_score_seconds"] = time.time() - t
        chosen = {"kde": "gamma_", "ae": "best_epoch_", "deep": "lam_"}[name]
        seconds[f"{name}_{chosen.strip('_')}"] = getattr(fitted[name], chosen, None)
    if model != "bag":
        return parts[model], fitted, seconds
    bag = Bag(fitted).fit(val=proto.val[proto.val_anomaly == 0])
    fitted["bag"] = bag
    return bag.score(proto.test, parts=parts), fitted, seconds


def figure4(images, ground_truth, maps, scores=None, n: int = 8, title: str | None = None):
    """Figure 4's layout: input, ground-truth explanation, model explanation max(0, R) (each map scaled to
    its own maximum) for the ``n`` given images."""
    from .gallery import figure

    def unit(a):
        a = np.maximum(np.asarray(a, dtype=np.float64)[:n], 0)
        top = a.reshape(len(a), -1).max(1).clip(min=1e-12)
        return a / top[:, None, None]

    return figure(np.asarray(images)[:n], {"ground truth": unit(ground_truth), "explanation": unit(maps)},
                  None if scores is None else np.asarray(scores)[:n], cmap="hot", suptitle=title)


# ================================================================================================ metrics

def explanation_metrics(scores, anomaly, maps, ground_truth) -> dict:
    """AUC, explanation accuracy (over the anomalous images) and Clever Hans score = AUC - explanation accuracy.
    ``maps`` are resized (bilinear) to the ground truth's resolution when they differ."""
    anomaly = np.asarray(anomaly).astype(bool).reshape(-1)
    maps, gt = np.asarray(maps, dtype=np.float64), np.asarray(ground_truth, dtype=np.float64)
    if gt.ndim == 4:
        gt = gt[:, 0]
    if len(maps) != len(anomaly) or len(gt) != len(anomaly):
        raise ValueError(f"{len(maps)} maps, {len(gt)} ground-truth maps and {len(anomaly)} labels: pass one of each "
                         "per test image")
    maps = _resize_like(maps, gt)
    auc = metrics.auc(scores, anomaly)
    acc = metrics.explanation_accuracy(maps[anomaly], gt[anomaly])
    return {"auc": auc, "explanation_accuracy": acc, "clever_hans": metrics.clever_hans_score(auc, acc)}


def run_explanation_metrics(run_dir, write: bool = False) -> dict:
    """Explanation accuracy and Clever Hans score of a finished run folder that saved maps and ground truth.

    Reads ``scores.parquet`` (score, anomaly) and ``maps.npz``: the explanation is ``native`` (or
    ``explanations``), for every test image or for the gallery rows listed in ``index``; the ground truth is
    ``ground_truth`` (continuous) or ``masks`` (0/1), for every test image or for the rows in ``index``. Only
    rows that have both are used (the AUC is always over all test images). ``write`` merges the result into
    metrics.json as ``explanation_accuracy`` / ``clever_hans`` (plus ``explained_images``)."""
    import pandas as pd

    run_dir = Path(run_dir)
    frame = pd.read_parquet(run_dir / "scores.parquet")
    if "anomaly" not in frame:
        raise ValueError(f"{run_dir}/scores.parquet has no 'anomaly' column: save_scores(..., anomaly=...)")
    if not (run_dir / "maps.npz").exists():
        raise FileNotFoundError(f"{run_dir} has no maps.npz: the method saved no maps, so there is nothing to explain")
    z = np.load(run_dir / "maps.npz")
    n = len(frame)
    index = z["index"].astype(int) if "index" in z else None
    exp_key = next((k for k in ("explanations", "native") if k in z), None)
    gt_key = next((k for k in ("ground_truth", "masks") if k in z), None)
    if exp_key is None or gt_key is None:
        raise ValueError(f"{run_dir}/maps.npz has keys {sorted(z.files)}: explanation metrics need an explanation "
                         "map ('native' or 'explanations') and ground truth ('ground_truth' or 'masks'); a dataset "
                         "without pixel ground truth (e.g. the MVTec bottle copy here) cannot have them")

    def rows(arr):
        if len(arr) == n:
            return np.arange(n)
        if index is not None and len(arr) == len(index):
            return index
        raise ValueError(f"{run_dir}: a map array has {len(arr)} rows, neither the {n} test images nor the "
                         f"{0 if index is None else len(index)} gallery rows of 'index'")

    ex, gt = z[exp_key].astype(np.float32), z[gt_key].astype(np.float32)
    if ex.ndim == 4:
        ex = ex.sum(1)
    ex_rows, gt_rows = rows(ex), rows(gt)
    common = np.intersect1d(ex_rows, gt_rows)
    ex = ex[_positions(ex_rows, common)]
    gt = gt[_positions(gt_rows, common)]
    anomaly = frame["anomaly"].to_numpy().astype(bool)
    auc = metrics.auc(frame["score"].to_numpy(), anomaly)
    sel = anomaly[common]
    if not sel.any():
        raise ValueError(f"{run_dir}: no anomalous test image has both an explanation and ground truth")
    acc = metrics.explanation_accuracy(_resize_like(ex[sel], gt[sel]), gt[sel])
    out = {"auc": auc, "explanation_accuracy": acc, "clever_hans": metrics.clever_hans_score(auc, acc),
           "explained_images": int(anomaly[common].sum())}
    if write:
        m = json.loads((run_dir / "metrics.json").read_text())
        m.update({k: out[k] for k in ("explanation_accuracy", "clever_hans", "explained_images")})
        (run_dir / "metrics.json").write_text(json.dumps(m, indent=2))
    return out


def _positions(rows, wanted) -> np.ndarray:
    where = {int(r): i for i, r in enumerate(rows)}
    return np.array([where[int(r)] for r in wanted], dtype=np.int64)


def _resize_like(maps, gt):
    if maps.shape[1:] == gt.shape[1:]:
        return maps
    return F.interpolate(torch.from_numpy(np.ascontiguousarray(maps))[:, None], size=gt.shape[1:], mode="bilinear",
                         align_corners=False)[:, 0].numpy()


def collect(root) -> "pd.DataFrame":
    """One row per finished run folder below ``root`` that has explanation maps and ground truth (any method:
    Clever Hans models, FCDD, HSC, AE, ...): experiment, dataset, class, method, seed, AUC, explanation accuracy,
    Clever Hans score. Runs without ground truth are listed with NaN explanation columns."""
    import pandas as pd

    from . import runs

    rows = []
    for path in runs.finished_runs(root):
        info = runs.read_run(path)
        p = info["params"]
        par = p.get("parameters", {}) if isinstance(p.get("parameters"), dict) else {}
        row = {"experiment": p.get("experiment", path.parents[2].name), "dataset": p.get("dataset"),
               "class": str(p.get("normal_class", path.parent.name)), "seed": p.get("seed"),
               "method": par.get("model") or par.get("method") or p.get("model") or p.get("method"),
               "path": str(path)}
        try:
            row |= run_explanation_metrics(path)
        except (FileNotFoundError, ValueError):
            row |= {"auc": info["metrics"].get("auc"), "explanation_accuracy": np.nan, "clever_hans": np.nan}
        rows.append(row)
    return pd.DataFrame(rows, columns=["experiment", "dataset", "class", "method", "seed", "auc",
                                       "explanation_accuracy", "clever_hans", "explained_images", "path"])


# ================================================================================================ paper tables

def figure2_table(frame, dataset: str = "mnist_c") -> "pd.DataFrame":
    """Detection AUC (%) per class and model, mean over seeds, next to figure 2's numbers."""
    import pandas as pd

    from . import reported

    f = frame[frame["dataset"] == dataset]
    ours = f.groupby(["class", "method"])["auc"].mean().unstack("method") * 100
    paper = reported.frame("cleverhans")
    paper = paper[(paper["table"] == "Figure 2") & (paper["dataset"] == dataset)]
    pap = paper.pivot_table(index="class", columns="method", values="value") * 100
    cols = {}
    for m in MODELS:
        if m in ours:
            cols[(PAPER_NAMES[m], "ours")] = ours[m]
        if PAPER_NAMES[m] in pap:
            cols[(PAPER_NAMES[m], "paper")] = pap[PAPER_NAMES[m]]
    return pd.DataFrame(cols).round(1)


def top3_table(frame, dataset: str = "mnist_c", k: int = 3) -> "pd.DataFrame":
    """The k classes with the highest Clever Hans score (%) per model (figure 3), ours next to the paper's."""
    import pandas as pd

    from . import reported

    f = frame[(frame["dataset"] == dataset) & frame["clever_hans"].notna()]
    ours = f.groupby(["method", "class"])["clever_hans"].mean() * 100
    paper = reported.frame("cleverhans")
    paper = paper[(paper["table"] == "Figure 3") & (paper["dataset"] == dataset)]
    out = []
    for m in MODELS:
        mine = ours.get(m, pd.Series(dtype=float)).sort_values(ascending=False).head(k) if m in ours.index.levels[0] \
            else pd.Series(dtype=float)
        theirs = paper[paper["method"] == PAPER_NAMES[m]].sort_values("value", ascending=False).head(k)
        for rank in range(k):
            out.append({"model": PAPER_NAMES[m], "rank": rank + 1,
                        "ours": mine.index[rank] if rank < len(mine) else None,
                        "ours_score": round(float(mine.iloc[rank]), 1) if rank < len(mine) else None,
                        "paper": theirs["class"].iloc[rank] if rank < len(theirs) else None,
                        "paper_score": round(float(theirs["value"].iloc[rank]) * 100, 1) if rank < len(theirs)
                        else None})
    return pd.DataFrame(out)


def summary_table(frame, dataset: str = "mnist_c") -> "pd.DataFrame":
    """Mean AUC and mean Clever Hans score (%) per model over classes (figure 6, left)."""
    f = frame[frame["dataset"] == dataset]
    g = f.groupby("method")[["auc", "explanation_accuracy", "clever_hans"]].mean() * 100
    g["classes"] = f.groupby("method")["class"].nunique()
    return g.reindex([m for m in MODELS if m in g.index]).round(1)


__all__ = ["CORRUPTIONS", "MODELS", "KDE", "Autoencoder", "DeepOneClass", "Bag", "FeatureCNN", "L2Pool", "LeNetAE",
           "BlockAE", "Output", "build", "fit_cached", "lrp_composite", "lrp_squared_norm", "smin", "explanation_metrics",
           "run_explanation_metrics", "collect", "figure2_table", "top3_table", "summary_table", "Protocol",
           "mnist_c_protocol", "mvtec_protocol", "fit_and_explain", "figure4"]
