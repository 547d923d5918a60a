"""Fully Convolutional Data Description (Liznerski et al., paper 000) and its two baselines.

- :class:`FCDD`: a fully convolutional network trained with the FCDD loss (eq. 2); its pseudo-Huber output
  map A(X) is a low-resolution anomaly heatmap, upsampled with the receptive-field Gaussian of Algorithm 1.
- :class:`HSC`: the hypersphere classifier (eq. 1) on a network with a fully connected head; heatmaps are
  input gradients (raw for metrics, blurred with FCDD's Gaussian for display: :meth:`HSC.blur`).
- :class:`AE`: an MSE autoencoder; heatmaps are the per-pixel squared reconstruction error. It cannot use
  outlier exposure.

All three share the training loop: online outlier exposure, appendix C's batched augmentation, per-dataset
optimiser and schedule (:func:`defaults`), gradient accumulation, a progress bar, explicit seeding.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import augment, nets, training

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
    read from the network's layers (:func:`oneclass.nets.geometry`); sigma defaults to appendix A's."""

    def __init__(self, net: torch.nn.Module, input_size: int, sigma: float | None = None, normalize: bool = True,
                 official: bool = False):
        self.geometry = g = nets.geometry(net, input_size)
        self.input_size = int(input_size)
        self.sigma = float(sigma) if sigma is not None else nets.paper_sigma(g.rf)
        kernel = official_kernel(g.rf, self.sigma) if official else gaussian_kernel(g.rf, self.sigma, normalize)
        self.kernel = kernel[None, None]
        # the kernel's centre for output pixel 0 lands at (rf-1)/2; the receptive field's centre is at g.start
        self.shift = int(round((g.rf - 1) / 2 - g.start))

    def __call__(self, A: torch.Tensor) -> torch.Tensor:
        A = torch.as_tensor(A, dtype=torch.float32)
        squeeze = A.ndim == 3
        if squeeze:
            A = A[:, None]
        if A.ndim != 4 or A.shape[1] != 1:
            raise ValueError(f"expected low-resolution maps (N, u, v) or (N, 1, u, v), got {tuple(A.shape)}")
        out = F.conv_transpose2d(A, self.kernel, stride=self.geometry.jump)
        s, n = self.shift, self.input_size
        h, w = out.shape[-2:]
        out = F.pad(out, (-s, n - (w - s), -s, n - (h - s)))   # negative padding crops
        return out[:, 0] if squeeze else out

    def blur(self, maps: torch.Tensor) -> torch.Tensor:
        """The same Gaussian as a same-size blur (the paper blurs the baselines' heatmaps with it)."""
        maps = torch.as_tensor(maps, dtype=torch.float32)
        k = self.geometry.rf | 1   # odd, so that 'same' padding does not shift the map
        kernel = gaussian_kernel(k, self.sigma, normalize=False)
        kernel = (kernel / kernel.sum())[None, None]
        return F.conv2d(maps[:, None], kernel, padding=k // 2)[:, 0]


def receptive_upsample(A: torch.Tensor, net: torch.nn.Module, input_size: int, sigma: float | None = None,
                       normalize: bool = True) -> torch.Tensor:
    """Upsample low-resolution FCDD heatmaps (N, u, v) to the input size (N, H, W) with Algorithm 1."""
    return ReceptiveUpsampler(net, input_size, sigma, normalize)(A)


# ------------------------------------------------------------------------------------ configuration

# Per-dataset settings of appendix C and the authors' runners (REFERENCE_FACTS). `net` is the paper's
# network; `official_net` the authors' code default. Batch sizes are the effective batch (accumulate splits it).
DATASETS = {
    "fmnist": dict(net="28", official_net="28_wide", pipeline="fmnist", optimizer="sgd", lr=1e-2,
                   weight_decay=1e-6, schedule="exponential", gamma=0.98, milestones=(), batch_size=128,
                   epochs=400, official_sigma=1.2),
    "cifar10": dict(net="32", official_net="32_lw3k", pipeline="cifar10", optimizer="adam", lr=1e-3,
                    weight_decay=1e-6, schedule="multistep", gamma=0.1, milestones=(400, 500), batch_size=200,
                    epochs=600, official_sigma=1.2),
    "imagenet30": dict(net="224", official_net="vgg", pipeline="imagenet", optimizer="adam", lr=1e-3,
                       weight_decay=1e-6, schedule="multistep", gamma=0.1, milestones=(400, 500), batch_size=200,
                       epochs=600, official_sigma=8.0),
    # Section 4.2 / appendix C: the ImageNet network, SGD-Nesterov lr 1e-3 x0.985 per epoch, weight decay 1e-5
    # (the authors' code: 1e-4), batch 128, 200 epochs of ten passes each, sigma 12 with confetti noise (the
    # paper's own choice, not appendix A's formula), loss on the upsampled map (authors' code).
    "mvtec": dict(net="224", official_net="vgg_mvtec", pipeline="mvtec", optimizer="sgd", lr=1e-3,
                  weight_decay=1e-5, schedule="exponential", gamma=0.985, milestones=(), batch_size=128,
                  epochs=200, official_sigma=12.0, sigma=12.0, passes=10, loss_on="upsampled"),
    # Section 4.3: as CIFAR-10 (Adam, x0.1 at 400 / 500) on 224px squares, the ImageNet network.
    "voc": dict(net="224", official_net="vgg", pipeline="voc", optimizer="adam", lr=1e-3, weight_decay=1e-6,
                schedule="multistep", gamma=0.1, milestones=(400, 500), batch_size=200, epochs=600,
                official_sigma=8.0),
}
AE_SIZE = {"28": 28, "28_wide": 28, "32": 32, "32_lw3k": 32, "224": 224, "vgg": 224, "vgg_mvtec": 224}


def defaults(dataset: str, method: str = "fcdd", official: bool = False) -> dict:
    """Constructor arguments of ``method`` ('fcdd', 'hsc', 'ae') for ``dataset`` as in appendix C; with
    ``official`` the authors' code's wider network and explicit sigma. (``epochs`` is returned separately by
    :func:`paper_epochs`.)"""
    if dataset not in DATASETS:
        raise ValueError(f"no FCDD defaults for dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    d = dict(DATASETS[dataset])
    official_key = d.pop("official_net")
    key = official_key if official else d["net"]
    sigma = d.pop("official_sigma")
    d.pop("epochs")
    hsc_key = "vgg" if key == "vgg_mvtec" else key
    d["net"] = {"fcdd": f"fcdd_{key}", "hsc": f"hsc_{hsc_key}", "ae": f"ae_{AE_SIZE[key]}"}[method]
    d["upsample_net"] = nets.partner(f"fcdd_{key}")
    d["sigma"] = sigma if official else d.get("sigma")
    if method != "fcdd":
        d.pop("loss_on", None)   # a loss on heatmaps exists only for FCDD
    # the wide official networks are conv-bound: oneDNN's channels-last kernels are ~20% faster on CPU
    d["channels_last"] = official
    return d


def paper_epochs(dataset: str) -> int:
    return DATASETS[dataset]["epochs"]


# ---------------------------------------------------------------------------------------- methods

@dataclass
class Scores:
    """``scores`` (N,) higher = more anomalous; ``maps`` (N, H, W) at the input size or None; ``native``
    (N, u, v) the model's own low-resolution maps (FCDD) or None."""

    scores: np.ndarray
    maps: np.ndarray | None = None
    native: np.ndarray | None = None


def _images(data, name: str) -> torch.Tensor:
    x = getattr(data, "images", data)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise TypeError(f"{name} must be an ImageSet or a (N, C, H, W) tensor, got "
                        f"{type(x).__name__}{'' if not hasattr(x, 'shape') else tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise TypeError(f"{name} images must be uint8 (as oneclass.data loads them), got {x.dtype}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    return x


class _Method:
    """Shared training loop. Hyperparameters in ``__init__``; :meth:`fit` returns self; :meth:`score`
    returns :class:`Scores`."""

    uses_outliers = True
    fully_convolutional = False   # FCDD: heatmaps from the network's output, so losses on (upsampled) maps

    def __init__(self, net: str = "fcdd_28", *, pipeline: str = "fmnist", background: str = "none",
                 outliers=None, oe_prob: float = 0.5, optimizer: str = "sgd", lr: float = 1e-2,
                 weight_decay: float = 1e-6, momentum: float = 0.9, nesterov: bool = True,
                 schedule: str = "exponential", gamma: float = 0.98, milestones=(), batch_size: int = 128,
                 accumulate: int = 1, sigma: float | None = None, upsample_net: str | None = None,
                 seed: int | None = None, net_options: dict | None = None, channels_last: bool = False,
                 passes: int = 1, loss_on: str = "native", swap_labels: bool = False):
        if net not in nets.NAMES:
            raise ValueError(f"unknown network {net!r}; choose one of {', '.join(nets.NAMES)}")
        if batch_size % accumulate:
            raise ValueError(f"batch_size {batch_size} is not divisible by accumulate {accumulate}: the effective "
                             "batch is split into `accumulate` equal micro-batches")
        if not 0 <= oe_prob <= 1:
            raise ValueError(f"oe_prob must be a probability, got {oe_prob}")
        if passes < 1:
            raise ValueError(f"passes (passes over the training set per epoch) must be >= 1, got {passes}")
        if loss_on not in ("native", "upsampled"):
            raise ValueError(f"loss_on must be 'native' (the u x v map, eq. 2) or 'upsampled' (Algorithm 1's "
                             f"full-resolution map, the authors' MVTec-AD setting), got {loss_on!r}")
        if outliers is not None and not self.uses_outliers:
            raise ValueError(f"{type(self).__name__} cannot use outlier exposure (the paper's AE has no way to "
                             "include anomalies); pass outliers=None")
        self.net_name, self.pipeline_name, self.background = net, pipeline, background
        self.outliers = outliers if outliers is None or isinstance(outliers, augment.Outliers) else \
            augment.Outliers(outliers)
        self.oe_prob, self.optimizer, self.lr, self.weight_decay = oe_prob, optimizer, lr, weight_decay
        self.momentum, self.nesterov, self.schedule, self.gamma = momentum, nesterov, schedule, gamma
        self.milestones, self.batch_size, self.accumulate = tuple(milestones), batch_size, accumulate
        self.sigma, self.seed, self.net_options = sigma, seed, dict(net_options or {})
        self.upsample_net = upsample_net or nets.partner(net)
        self.channels_last = channels_last
        self.passes, self.loss_on, self.swap_labels = passes, loss_on, swap_labels
        self.history: list[float] = []          # mean training loss per epoch
        self.epoch_seconds: list[float] = []    # wall time per epoch (batching, OE, augmentation and steps)

    # -- hooks
    def _forward_loss(self, x, y, masks=None):
        """Loss of a training batch; ``masks`` (N, 1, H, W) when the anomalies come with pixel ground truth."""
        raise NotImplementedError

    # -- training
    def _build(self):
        seed = self.seed if self.seed is not None else int(torch.randint(0, 2**31, (1,)).item())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = nets.build(self.net_name, **self.net_options)
        self.gen_ = training.generator(seed + 1)
        return net

    def fit(self, train, epochs: int = 1, progress: bool | None = None) -> "_Method":
        """Train on the nominal images of ``train`` (an ImageSet or uint8 tensor) for ``epochs`` epochs of
        ``passes`` passes over them; with outlier exposure each sample is swapped for an anomaly with probability
        ``oe_prob``. Outliers with masks (semi-supervised MVTec-AD) train FCDD with the pixel loss of eq. (3);
        ``swap_labels`` makes the nominal images the positive class (section 4.3's horse heatmaps)."""
        x = _images(train, "train")
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.net_ = self._build()
        self.history, self.epoch_seconds = [], []
        self.__dict__.pop("upsampler_", None)
        size = self.net_.input_size
        if x.shape[1] != self.net_.in_channels:
            raise ValueError(f"training images have {x.shape[1]} channel(s), network {self.net_name!r} takes "
                             f"{self.net_.in_channels}: load the data with channels={self.net_.in_channels} or "
                             "pick the network for this dataset")
        if x.shape[-1] != size and not (self.pipeline_name in ("imagenet", "voc", "mvtec") and x.shape[-1] > size):
            raise ValueError(f"training images are {x.shape[-2]}x{x.shape[-1]}, network {self.net_name!r} takes "
                             f"{size}x{size}: load the data at size={size} (ImageNet: 256, cropped to 224; "
                             "MVTec-AD: 240, cropped to 224)")
        self.pipeline_ = augment.pipeline(self.pipeline_name, self.background, size=size).fit(x)
        if self.outliers is not None:
            self.outliers.check(x.shape[1], x.shape[-1])
        if self.channels_last:
            self.net_ = self.net_.to(memory_format=torch.channels_last)
        opt = training.optimizer(self.net_.parameters(), self.optimizer, self.lr, self.weight_decay, self.momentum,
                                 self.nesterov)
        sched = training.schedule(opt, self.schedule, self.gamma, self.milestones)
        pixel_masks = self.outliers is not None and self.outliers.masks is not None
        if self.fully_convolutional and (self.loss_on == "upsampled" or pixel_masks):
            # the authors' training upsampler (official_kernel: unnormalised, halved for even sizes): it sets the
            # scale of the full-resolution maps that the loss sees
            self.train_upsampler_ = ReceptiveUpsampler(self.net_, size, self.sigma, official=True)
        micro = self.batch_size // self.accumulate
        bar = training.progress(range(epochs), progress, desc=type(self).__name__, unit="epoch")
        self.net_.train()
        for _ in bar:
            started = time.perf_counter()
            total, count = 0.0, 0
            # one epoch = `passes` passes over the training set (MVTec-AD: ten), shuffled together
            for idx in training.batches(len(x) * self.passes, self.batch_size, self.gen_):
                idx = idx % len(x)
                opt.zero_grad(set_to_none=True)
                for part in idx.split(micro):
                    batch, y, masks = augment.mix_outliers(x[part], self.outliers, self.oe_prob, self.gen_)
                    if masks is None:
                        batch = self.pipeline_.train(batch, self.gen_)
                    else:
                        batch, masks = self.pipeline_.train(batch, self.gen_, masks)
                    if self.swap_labels:
                        y = 1 - y
                    if self.channels_last:
                        batch = batch.contiguous(memory_format=torch.channels_last)
                    loss = self._forward_loss(batch, y, masks)
                    (loss * len(part) / len(idx)).backward()
                    total += float(loss.detach()) * len(part)
                    count += len(part)
                opt.step()
            sched.step()
            self.epoch_seconds.append(time.perf_counter() - started)
            self.history.append(total / max(count, 1))
            bar.set_postfix(loss=f"{self.history[-1]:.4f}")
            if not math.isfinite(self.history[-1]):
                raise FloatingPointError(f"training loss became {self.history[-1]} in epoch {len(self.history)}: "
                                         "lower the learning rate")
        self.net_.eval()
        return self

    def _check_fitted(self):
        if not hasattr(self, "net_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(train, epochs=...) first")

    def _test_batches(self, test, batch_size):
        self._check_fitted()
        x = _images(test, "test")
        if x.shape[1] != self.net_.in_channels:
            raise ValueError(f"test images have {x.shape[1]} channel(s), the network takes {self.net_.in_channels}")
        for i in range(0, len(x), batch_size):
            b = self.pipeline_.test(x[i:i + batch_size])
            yield b.contiguous(memory_format=torch.channels_last) if self.channels_last else b

    @property
    def upsampler(self) -> ReceptiveUpsampler:
        """FCDD's Gaussian for this network size (for HSC / AE: the FCDD network of the same size)."""
        self._check_fitted()
        if not hasattr(self, "upsampler_"):
            ref = self.net_ if self.net_name.startswith("fcdd") else nets.build(self.upsample_net)
            self.upsampler_ = ReceptiveUpsampler(ref, self.net_.input_size, self.sigma)
        return self.upsampler_


class FCDD(_Method):
    """FCDD: heatmap A(X) = h(phi(X)) (pseudo-Huber of the 1-channel FCN output), anomaly score = mean of A
    (eq. 2's (1/uv)||A||_1), full-resolution heatmap = Algorithm 1's upsampling of A. With ``loss_on='upsampled'``
    eq. 2 is applied to the upsampled map; with outliers that carry masks, eq. 3's pixel loss is used."""

    fully_convolutional = True

    def _forward_loss(self, x, y, masks=None):
        A = pseudo_huber(self.net_(x))
        if masks is not None:
            return pixel_loss(self.train_upsampler_(A), masks)      # eq. (3)
        if self.loss_on == "upsampled":
            return fcdd_loss(self.train_upsampler_(A), y)
        return fcdd_loss(A, y)

    @torch.no_grad()
    def score(self, test, batch_size: int = 500, maps: bool = True) -> Scores:
        native = torch.cat([pseudo_huber(self.net_(b))[:, 0] for b in self._test_batches(test, batch_size)])
        scores = native.flatten(1).mean(1)
        up = self.upsampler(native).numpy() if maps else None
        return Scores(scores.numpy().astype(np.float64), up, native.numpy())


class HSC(_Method):
    """HSC (eq. 1) on a network with a fully connected head, c = 0 absorbed by the last layer's bias.
    Score = h(phi(X)) = sqrt(||phi(X)||^2 + 1) - 1; heatmap = |d score / d X| summed over channels (raw)."""

    def __init__(self, net: str = "hsc_28", **kwargs):
        super().__init__(net, **kwargs)

    def _forward_loss(self, x, y, masks=None):   # pixel masks cannot help a fully connected head: image labels
        return hsc_loss(self._score(x), y)

    def _score(self, x):
        return torch.sqrt(self.net_(x).pow(2).sum(1) + 1) - 1

    def score(self, test, batch_size: int = 500, maps: bool = True) -> Scores:
        scores, grads = [], []
        for b in self._test_batches(test, batch_size):
            b.requires_grad_(maps)
            with torch.set_grad_enabled(maps):
                s = self._score(b)
                if maps:
                    # eval-mode BN makes samples independent, so the gradient of the sum is per-sample
                    (g,) = torch.autograd.grad(s.sum(), b)
                    grads.append(g.abs().sum(1))
            scores.append(s.detach())
        return Scores(torch.cat(scores).numpy().astype(np.float64),
                      torch.cat(grads).numpy() if maps else None, None)

    def blur(self, maps) -> np.ndarray:
        """Gradient heatmaps blurred with FCDD's Gaussian (for display, as in the paper's figures)."""
        return self.upsampler.blur(torch.as_tensor(maps)).numpy()


class AE(_Method):
    """Autoencoder baseline: MSE training on nominal images only; score = mean squared reconstruction error,
    heatmap = squared error summed over channels."""

    uses_outliers = False

    def __init__(self, net: str = "ae_28", **kwargs):
        super().__init__(net, **kwargs)

    def _forward_loss(self, x, y, masks=None):
        return F.mse_loss(self.net_(x), x)

    @torch.no_grad()
    def score(self, test, batch_size: int = 500, maps: bool = True) -> Scores:
        errs = torch.cat([(self.net_(b) - b).pow(2).sum(1) for b in self._test_batches(test, batch_size)])
        scores = errs.flatten(1).mean(1) / self.net_.in_channels
        return Scores(scores.numpy().astype(np.float64), errs.numpy() if maps else None, None)

    def blur(self, maps) -> np.ndarray:
        return self.upsampler.blur(torch.as_tensor(maps)).numpy()


METHODS = {"fcdd": FCDD, "hsc": HSC, "ae": AE}


def make(method: str, dataset: str, net: str = "paper", **overrides) -> _Method:
    """A method with ``dataset``'s appendix C defaults, updated by ``overrides`` (outliers, seed, lr, ...).
    ``net``: 'paper' (appendix B's network), 'official' (the authors' code default: wide / LW3K / VGG, with
    their explicit sigma) or a network name of ``oneclass.nets`` of the method's kind."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    kw = defaults(dataset, method, official=net == "official")
    if net not in ("paper", "official"):
        if not net.startswith(method + "_"):
            raise ValueError(f"network {net!r} does not fit method {method!r}: use a '{method}_...' network of "
                             f"oneclass.nets, or 'paper' / 'official'")
        kw |= {"net": net, "upsample_net": nets.partner(net)}
    return METHODS[method](**(kw | overrides))


# ------------------------------------------------------------------------------ experiment helpers

# Image size and channels each dataset is loaded at (ImageNet: resized to 256, cropped to 224 by the pipeline).
LOAD = {"fmnist": (28, 1), "cifar10": (32, 3), "imagenet30": (256, 3), "mvtec": (240, 3), "voc": (224, 3)}


def outliers(source: str | None, dataset: str, limit: int | None = None, exclude=None, seed: int = 0,
             root=None) -> augment.Outliers | None:
    """The outlier-exposure source of a run, at ``dataset``'s load size and channels: ``None`` / 'none' (no
    OE), 'noise' or 'blobs' (synthetic noise anomalies), 'confetti' (section 4.2's confetti noise on the nominal
    image itself), or anything ``oneclass.data.load_outliers`` takes (a
    dataset name or an image folder), limited to ``limit`` distinct images (figure 6's sweep)."""
    from . import data

    size, channels = LOAD[dataset]
    if source in (None, "none"):
        return None
    if source == "confetti":
        return augment.Outliers.confetti()
    if source in ("noise", "blobs"):
        return augment.Outliers.noise_source("uniform" if source == "noise" else "blobs", channels, size)
    return augment.Outliers(data.load_outliers(source, size, channels, limit=limit, exclude=list(exclude or []) or None,
                                               seed=seed, root=root))


# ------------------------------------------------------------------------------------------ figures

def display_maps(run_dir, index, size: int) -> np.ndarray:
    """Heatmaps of test images ``index`` from a run folder's saved ``native`` maps, as the paper displays them:
    FCDD's low-resolution maps upsampled with Algorithm 1, HSC's / AE's full-resolution maps blurred with
    FCDD's Gaussian (sigma as the run used it)."""
    import json
    from pathlib import Path

    import yaml

    run_dir = Path(run_dir)
    network = json.loads((run_dir / "metrics.json").read_text()).get("network")
    if network is None:
        raise ValueError(f"{run_dir}/metrics.json names no network: it was not written by fcdd_one_vs_rest")
    params = yaml.safe_load((run_dir / "params.yaml").read_text()) if (run_dir / "params.yaml").exists() else {}
    sigma = (params.get("parameters") or {}).get("sigma")
    with np.load(run_dir / "maps.npz") as z:
        native = torch.as_tensor(z["native"][np.asarray(index)].astype(np.float32))
    up = ReceptiveUpsampler(nets.build(nets.partner(network)), size, sigma)
    return (up(native) if network.startswith("fcdd") else up.blur(native)).numpy()


def sweep_figure(run_dirs: dict, images, index, eta: float = 0.93):
    """Figure 6: one row of heatmaps per run (e.g. FCDD and HSC with 2, 8, 128, 2048 and all OE images) for
    the same test images ``index``; each heatmap normalised on its own (appendix A, X = {X}), eta 0.93."""
    from . import gallery

    images = np.asarray(getattr(images, "images", images))
    rows = {label: gallery.normalize(display_maps(path, index, images.shape[-1]), eta, "local")
            for label, path in run_dirs.items()}
    return gallery.figure(images[np.asarray(index)], rows)
