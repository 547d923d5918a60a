"""Fully Convolutional Data Description (Liznerski et al., paper 000) and its two baselines.

- :class:`FCDD`: a fully convolutional network trained with the FCDD loss (eq. 2); its pseudo-Huber output
  map A(X) is a low-resolution anomaly heatmap, upsampled with the receptive-field Gaussian of Algorithm 1.
- :class:`HSC`: the hypersphere classifier (eq. 1) on a network with a fully connected head; heatmaps are
  input gradients (raw for metrics, blurred with FCDD's Gaussian for display: :meth:`HSC.display_maps`).
- :class:`AE`: an MSE autoencoder; heatmaps are the per-pixel squared reconstruction error. It cannot use
  outlier exposure.

All three share the training loop: online outlier exposure, appendix C's batched augmentation, per-dataset
optimiser and schedule (:func:`defaults`), gradient accumulation, a progress bar, explicit seeding.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import training
from ..base import Detector, Scores, as_images, seeded
from . import nets
from . import pipeline as augment
from .losses import fcdd_loss, hsc_loss, pixel_loss, pseudo_huber
from .upsample import ReceptiveUpsampler

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
# Networks trained channels-last by default (FCDD, HSC and AE on them): benchmarks/fcdd_step_options.py measured
# the bare step 1.16-1.61x faster than contiguous on an AMD EPYC (AVX-512, 2 threads) for all four networks and
# the 32px HSC / AE; on an Intel Xeon 1.30-1.44x for the 32px and wide 28px networks, 0.94x for the 28px paper
# network. torch.compile added no steady gain on top of it and costs a compile per run. The authors' 224px VGG
# networks (net="official") stay channels-last as before (measured ~20% faster when they were added); the paper's
# 224px network is not measured: contiguous.
CHANNELS_LAST = ("28", "32", "28_wide", "32_lw3k")

# Semi-supervised MVTec-AD (eq. 3): as MVTec-AD, but without confetti noise the paper's sigma 12 does not apply:
# appendix A's formula (10 for this receptive field).
DATASETS["mvtec_semi"] = DATASETS["mvtec"] | {"sigma": None}
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
    # the HSC of the authors' code: the VGG features for MVTec-AD too, and its own network at 32px (CNN32)
    hsc_key = {"vgg_mvtec": "vgg", "32_lw3k": "32_authors"}.get(key, key)
    d["net"] = {"fcdd": f"fcdd_{key}", "hsc": f"hsc_{hsc_key}", "ae": f"ae_{AE_SIZE[key]}"}[method]
    d["upsample_net"] = nets.partner(f"fcdd_{key}")
    d["sigma"] = sigma if official else d.get("sigma")
    if method != "fcdd":
        d.pop("loss_on", None)   # a loss on heatmaps exists only for FCDD
    d["channels_last"] = official or key in CHANNELS_LAST
    return d


def paper_epochs(dataset: str) -> int:
    return DATASETS[dataset]["epochs"]


# ---------------------------------------------------------------------------------------- methods

class _Method(Detector):
    """The training loop FCDD, HSC and AE share. Hyperparameters in ``__init__`` (stored as given); :meth:`fit`
    returns self; :meth:`score` returns :class:`~oneclass.methods.base.Scores`."""

    uses_outliers = True
    fully_convolutional = False   # FCDD: heatmaps from the network's output, so losses on (upsampled) maps
    data_params = ("outliers",)

    def __init__(self, net: str = "fcdd_28", *, pipeline: str = "fmnist", background: str = "none",
                 outliers=None, oe_prob: float = 0.5, optimizer: str = "sgd", lr: float = 1e-2,
                 weight_decay: float = 1e-6, momentum: float = 0.9, nesterov: bool = True,
                 schedule: str = "exponential", gamma: float = 0.98, milestones=(), batch_size: int = 128,
                 accumulate: int = 1, sigma: float | None = None, upsample_net: str | None = None,
                 upsample: str = "paper", seed: int | None = None, net_options: dict | None = None,
                 channels_last: bool = False, normalize: str | None = None,
                 passes: int = 1, loss_on: str = "native", swap_labels: bool = False, eval_batch_size: int = 500,
                 device=None, precision: str = "fp32"):
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
        if upsample not in ("paper", "coverage"):
            raise ValueError(f"upsample must be 'paper' (Algorithm 1) or 'coverage' (ours: Algorithm 1 divided by "
                             f"the upsampled map of ones, no fall-off at the border), got {upsample!r}")
        if normalize not in (None, *augment.NORMALIZE):
            raise ValueError(f"unknown normalize {normalize!r}; choose one of {' | '.join(augment.NORMALIZE)} "
                             "(None: the dataset's own)")
        if outliers is not None and not self.uses_outliers:
            raise ValueError(f"{type(self).__name__} cannot use outlier exposure (the paper's AE has no way to "
                             "include anomalies); pass outliers=None")
        self.net, self.pipeline, self.background = net, pipeline, background
        self.outliers = outliers if outliers is None or isinstance(outliers, augment.Outliers) else \
            augment.Outliers(outliers)
        self.oe_prob, self.optimizer, self.lr, self.weight_decay = oe_prob, optimizer, lr, weight_decay
        self.momentum, self.nesterov, self.schedule, self.gamma = momentum, nesterov, schedule, gamma
        self.milestones, self.batch_size, self.accumulate = milestones, batch_size, accumulate
        self.sigma, self.seed, self.net_options = sigma, seed, net_options
        self.upsample_net, self.upsample = upsample_net, upsample
        self.channels_last, self.eval_batch_size, self.normalize = channels_last, eval_batch_size, normalize
        self.passes, self.loss_on, self.swap_labels = passes, loss_on, swap_labels
        self.device, self.precision = device, precision

    # -- hooks
    def _forward_loss(self, x, y, masks=None):
        """Loss of a training batch; ``masks`` (N, 1, H, W) when the anomalies come with pixel ground truth."""
        raise NotImplementedError

    def _forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            return self.net_(x).float()

    # -- training
    def fit(self, train, epochs: int = 1, progress: bool | None = None, *, monitor=None) -> "_Method":
        """Train on the nominal images of ``train`` (an ImageSet or uint8 tensor) for ``epochs`` epochs of
        ``passes`` passes over them; with outlier exposure each sample is swapped for an anomaly with probability
        ``oe_prob``. Outliers with masks (semi-supervised MVTec-AD) train FCDD with the pixel loss of eq. (3);
        ``swap_labels`` makes the nominal images the positive class (section 4.3's horse heatmaps).
        ``monitor``: a :class:`oneclass.monitor.Monitor` that records the learning curve."""
        x = as_images(train, "train")
        if epochs < 0 or int(epochs) != epochs:
            raise ValueError(f"epochs must be a whole number >= 0, got {epochs}")
        self._setup()
        dev = self.device_
        with seeded(self.seed_):
            self.net_ = nets.build(self.net, **dict(self.net_options or {})).to(dev)
        self.gen_ = training.generator(self.seed_ + 1)
        self.history_, self.epoch_seconds_ = [], []
        self.__dict__.pop("_upsampler", None)
        size = self.net_.input_size
        if x.shape[1] != self.net_.in_channels:
            raise ValueError(f"training images have {x.shape[1]} channel(s), network {self.net!r} takes "
                             f"{self.net_.in_channels}: load the data with channels={self.net_.in_channels} or "
                             "pick the network for this dataset")
        if x.shape[-1] != size and not (self.pipeline in ("imagenet", "voc", "mvtec") and x.shape[-1] > size):
            raise ValueError(f"training images are {x.shape[-2]}x{x.shape[-1]}, network {self.net!r} takes "
                             f"{size}x{size}: load the data at size={size} (ImageNet: 256, cropped to 224; "
                             "MVTec-AD: 240, cropped to 224)")
        x = x.to(dev)
        self.pipeline_ = augment.pipeline(self.pipeline, self.background, size=size,
                                          normalize=self.normalize).fit(x)
        outliers = self.outliers.to(dev) if self.outliers is not None else None
        if outliers is not None:
            outliers.check(x.shape[1], x.shape[-1])
        if self.channels_last:
            self.net_ = self.net_.to(memory_format=torch.channels_last)
        opt = training.optimizer(self.net_.parameters(), self.optimizer, self.lr, self.weight_decay, self.momentum,
                                 self.nesterov)
        sched = training.schedule(opt, self.schedule, self.gamma, tuple(self.milestones))
        pixel_masks = outliers is not None and outliers.masks is not None
        if self.fully_convolutional and (self.loss_on == "upsampled" or pixel_masks):
            # the authors' training upsampler (official_kernel: unnormalised, halved for even sizes): it sets the
            # scale of the full-resolution maps that the loss sees
            self._train_upsampler = ReceptiveUpsampler(self.net_, size, self.sigma, official=True,
                                                       coverage=self.upsample == "coverage")
        micro = self.batch_size // self.accumulate
        bar = training.progress(range(epochs), progress, desc=type(self).__name__, unit="epoch")
        if monitor is not None:
            monitor.start(self, training.n_batches(len(x) * self.passes, self.batch_size))
        self.net_.train()
        for _ in bar:
            started = time.perf_counter()
            total, count = 0.0, 0
            # one epoch = `passes` passes over the training set (MVTec-AD: ten), shuffled together
            for idx in training.batches(len(x) * self.passes, self.batch_size, self.gen_):
                idx = idx.to(dev) % len(x)
                opt.zero_grad(set_to_none=True)
                step_total = 0.0
                for part in idx.split(micro):
                    batch, y, masks = augment.mix_outliers(x[part], outliers, self.oe_prob, self.gen_)
                    if masks is None:
                        batch = self.pipeline_.train(batch, self.gen_)
                    else:
                        batch, masks = self.pipeline_.train(batch, self.gen_, masks)
                    if self.swap_labels:
                        y = 1 - y
                    loss = self._forward_loss(batch, y, masks)
                    (loss * len(part) / len(idx)).backward()
                    step_total += float(loss.detach()) * len(part)
                    count += len(part)
                opt.step()
                total += step_total
                if monitor is not None:
                    monitor.step(self, step_total / len(idx))
            sched.step()
            self.epoch_seconds_.append(time.perf_counter() - started)
            self.history_.append(training.check_loss(total / max(count, 1), len(self.history_) + 1,
                                                     type(self).__name__))
            bar.set_postfix(loss=f"{self.history_[-1]:.4f}")
        self.net_.eval()
        self._fitted = True
        if monitor is not None:
            monitor.finish(self)
        return self

    def _test_batches(self, test):
        self._check_fitted()
        x = as_images(test, "test")
        if x.shape[1] != self.net_.in_channels:
            raise ValueError(f"test images have {x.shape[1]} channel(s), the network takes {self.net_.in_channels}")
        for i in range(0, len(x), self.eval_batch_size):
            yield self.pipeline_.test(x[i:i + self.eval_batch_size].to(self.device_))

    @property
    def upsampler(self) -> ReceptiveUpsampler:
        """FCDD's Gaussian for this network size (for HSC / AE: the FCDD network of the same size)."""
        self._check_fitted()
        if getattr(self, "_upsampler", None) is None:
            ref = self.net_ if self.net.startswith("fcdd") else nets.build(self.upsample_net or nets.partner(self.net))
            self._upsampler = ReceptiveUpsampler(ref, self.net_.input_size, self.sigma,
                                                 coverage=getattr(self, "upsample", "paper") == "coverage")
        return self._upsampler

    def display_maps(self, maps) -> np.ndarray:
        """HSC's and AE's full-resolution maps blurred with FCDD's Gaussian, as the paper displays them."""
        return self.upsampler.blur(torch.as_tensor(np.asarray(maps, dtype=np.float32))).numpy()


class FCDD(_Method):
    """FCDD: heatmap A(X) = h(phi(X)) (pseudo-Huber of the 1-channel FCN output), anomaly score = mean of A
    (eq. 2's (1/uv)||A||_1), full-resolution heatmap = Algorithm 1's upsampling of A. With ``loss_on='upsampled'``
    eq. 2 is applied to the upsampled map; with outliers that carry masks, eq. 3's pixel loss is used."""

    fully_convolutional = True

    def _forward_loss(self, x, y, masks=None):
        A = pseudo_huber(self._forward(x))
        if masks is not None:
            return pixel_loss(self._train_upsampler(A), masks)      # eq. (3)
        if self.loss_on == "upsampled":
            return fcdd_loss(self._train_upsampler(A), y)
        return fcdd_loss(A, y)

    @torch.no_grad()
    def score(self, test, maps: bool = True) -> Scores:
        """Scores = mean of A; ``maps`` = Algorithm 1's upsampling of A (``native``: A itself)."""
        native = torch.cat([pseudo_huber(self._forward(b))[:, 0] for b in self._test_batches(test)])
        scores = native.flatten(1).mean(1)
        up = self.upsampler(native) if maps else None
        return Scores(scores, up, native)

    def display_maps(self, maps) -> np.ndarray:
        """FCDD's upsampled maps are shown as they are."""
        return np.asarray(maps)


class HSC(_Method):
    """HSC (eq. 1) on a network with a fully connected head, c = 0 absorbed by the last layer's bias.
    Score = h(phi(X)) = sqrt(||phi(X)||^2 + 1) - 1; heatmap = |d score / d X| summed over channels (raw)."""

    def __init__(self, net: str = "hsc_28", **kwargs):
        super().__init__(net, **kwargs)

    def _forward_loss(self, x, y, masks=None):   # pixel masks cannot help a fully connected head: image labels
        return hsc_loss(self._score(x), y)

    def _score(self, x):
        return torch.sqrt(self._forward(x).pow(2).sum(1) + 1) - 1

    def score(self, test, maps: bool = True) -> Scores:
        scores, grads = [], []
        for b in self._test_batches(test):
            b.requires_grad_(maps)
            with torch.set_grad_enabled(maps):
                s = self._score(b)
                if maps:
                    # eval-mode BN makes samples independent, so the gradient of the sum is per-sample
                    (g,) = torch.autograd.grad(s.sum(), b)
                    grads.append(g.abs().sum(1))
            scores.append(s.detach())
        return Scores(torch.cat(scores), torch.cat(grads) if maps else None)


class AE(_Method):
    """Autoencoder baseline: MSE training on nominal images only; score = mean squared reconstruction error,
    heatmap = squared error summed over channels."""

    uses_outliers = False

    def __init__(self, net: str = "ae_28", **kwargs):
        super().__init__(net, **kwargs)

    def _forward_loss(self, x, y, masks=None):
        return F.mse_loss(self._forward(x), x)

    @torch.no_grad()
    def score(self, test, maps: bool = True) -> Scores:
        errs = torch.cat([(self._forward(b) - b).pow(2).sum(1) for b in self._test_batches(test)])
        scores = errs.flatten(1).mean(1) / self.net_.in_channels
        return Scores(scores, errs if maps else None)


METHODS = {"fcdd": FCDD, "hsc": HSC, "ae": AE}


def make(method: str, dataset: str, net: str = "paper", *, outliers=None, vgg_weights=None,
         **overrides) -> _Method:
    """A method with ``dataset``'s appendix C defaults, updated by ``overrides`` (seed, lr, sigma, ...); an
    override that is None keeps the paper's value, so a notebook passes its parameters as they are.
    ``net``: 'paper' (appendix B's network), 'official' (the authors' code default: wide / LW3K / VGG, with
    their explicit sigma) or a network name of ``oneclass.methods.fcdd.nets`` of the method's kind.
    ``outliers`` go to the methods that can use them (the paper's AE trains on nominal images only, so it gets
    none); ``vgg_weights`` is the path of torchvision's VGG11-BN file for the VGG networks (offline use)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    kw = defaults(dataset, method, official=net == "official")
    if net not in ("paper", "official"):
        if not net.startswith(method + "_"):
            raise ValueError(f"network {net!r} does not fit method {method!r}: use a '{method}_...' network of "
                             f"oneclass.methods.fcdd.nets, or 'paper' / 'official'")
        kw |= {"net": net, "upsample_net": nets.partner(net)}
    if vgg_weights:
        if "vgg" not in kw["net"]:
            raise ValueError(f"vgg_weights is for the VGG networks (net='official' on 224px data), but the "
                             f"network is {kw['net']!r}: leave vgg_weights unset")
        kw["net_options"] = {"weights_path": str(vgg_weights)}
    if METHODS[method].uses_outliers:
        kw["outliers"] = outliers
    return METHODS[method](**(kw | {k: v for k, v in overrides.items() if v is not None}))


# ------------------------------------------------------------------------------ experiment helpers

# Image size and channels each dataset is loaded at (ImageNet: resized to 256, cropped to 224 by the pipeline).
LOAD = {"fmnist": (28, 1), "cifar10": (32, 3), "imagenet30": (256, 3), "mvtec": (240, 3), "mvtec_semi": (240, 3),
        "voc": (224, 3)}


# The paper set-ups a class-folder tree of one's own can borrow (`like`): image size, channels, network, optimiser,
# schedule and augmentation of that dataset's appendix-C configuration.
FOLDER_LIKE = ("fmnist", "cifar10", "imagenet30")


def setting(dataset, like: str | None = None) -> str:
    """The key of :data:`DATASETS` a one-vs-rest run trains with: ``dataset`` itself, or, for a class-folder tree
    of one's own (a path, see ``oneclass.data.source``), ``like``: one of :data:`FOLDER_LIKE`."""
    from ... import data

    if not data.is_path_category(dataset):
        if like not in (None, dataset):
            raise ValueError(f"like={like!r} is for a class-folder tree of your own (dataset given as a path); "
                             f"dataset {dataset!r} has its own set-up: leave like unset")
        return dataset
    if like not in FOLDER_LIKE:
        raise ValueError(f"dataset {dataset!r} is a folder of your own: set like to the paper set-up it trains "
                         f"with, one of {' | '.join(FOLDER_LIKE)} (28 px grey, 32 px RGB, 224 px RGB), got {like!r}")
    return like


def input_shape(dataset: str) -> tuple[int, int]:
    """(size, channels) ``dataset`` is loaded at for FCDD (appendix C; ImageNet and MVTec-AD larger than the
    224px network, cropped by the pipeline)."""
    if dataset not in LOAD:
        raise ValueError(f"FCDD has no input shape for dataset {dataset!r}; choose one of {sorted(LOAD)}")
    return LOAD[dataset]


def blur_images(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """uint8 images (N, C, H, W) blurred with a Gaussian of ``sigma`` pixels (kernel 2 * ceil(3 sigma) + 1,
    reflected borders), rounded back to uint8."""
    from torchvision.transforms.v2 import functional as TF

    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(images, [k, k], [sigma, sigma])


def default_exclude(dataset: str, source) -> list:
    """The OE classes a run drops when ``outlier_exclude`` is None: against CIFAR-10 with Tiny ImageNet as OE,
    the 22 Tiny ImageNet classes that are CIFAR-10 classes ('cifar10_overlap', see
    ``oneclass.data.TINY_IMAGENET_CIFAR10``); nothing otherwise."""
    from ... import data

    try:
        pair = (data.canonical(dataset), data.canonical(source) if isinstance(source, str) else None)
    except ValueError:
        return []
    return ["cifar10_overlap"] if pair == ("cifar10", "tiny_imagenet") else []


def outliers(source: str | None, dataset: str, limit: int | None = None, exclude=None, seed: int = 0,
             root=None, holdout: int = 0, blur: float = 0.0, jpeg: int | None = None) -> augment.Outliers | None:
    """The outlier-exposure source of a run, at ``dataset``'s load size and channels: ``None`` / 'none' (no
    OE), 'noise' or 'blobs' (synthetic noise anomalies), 'confetti' (section 4.2's confetti noise on the nominal
    image itself), or anything ``oneclass.data.load_outliers`` takes (a
    dataset name or an image folder), limited to ``limit`` distinct images (figure 6's sweep). ``holdout``
    further images of that source (drawn with ``seed``) are kept out of the pool, as ``.heldout``, for the
    learning curve's training-task probe (:func:`training_task_probe`). ``exclude`` None: :func:`default_exclude`.
    ``blur``: a Gaussian blur of that sigma (pixels, at the load size) on the OE images only, pool and held-out
    alike (a cue test: Tiny ImageNet photos carry more high-frequency energy than the JPEG CIFAR-10 copy here).
    ``jpeg``: encode the OE images (after any blur) as JPEG at that quality, pool and held-out alike
    (``data.jpeg_roundtrip``): 75 gives them the compression of the CIFAR-10 copy here, so that the artifacts no
    longer tell the nominal images from the OE."""
    from ... import data

    size, channels = input_shape(dataset)
    if source is not None and not isinstance(source, str):      # labelled anomalies (semi-supervised MVTec-AD)
        return augment.Outliers(source)
    if source in (None, "none"):
        return None
    if source == "confetti":
        return augment.Outliers.confetti()
    if source in ("noise", "blobs"):
        return augment.Outliers.noise_source("uniform" if source == "noise" else "blobs", channels, size)
    if holdout < 0:
        raise ValueError(f"outlier_holdout must be >= 0, got {holdout}")
    if blur < 0:
        raise ValueError(f"outlier_blur must be >= 0, got {blur}")
    data.core.check_jpeg(jpeg, name="outlier_jpeg_quality")
    if exclude is None:
        exclude = default_exclude(dataset, source)
    want = None if limit is None else limit + holdout
    pool = data.load_outliers(source, size, channels, limit=want, exclude=list(exclude or []) or None, seed=seed,
                              root=root)
    heldout = None
    if holdout:
        if holdout >= len(pool):
            raise ValueError(f"outlier_holdout={holdout} leaves no outlier-exposure images of the {len(pool)} "
                             f"of {source!r}: hold out fewer")
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed + 2))
        heldout, pool = pool.images[order[:holdout]], pool.subset(order[holdout:].sort().values)
    if blur:
        pool = dataclasses.replace(pool, images=blur_images(pool.images, blur))
        heldout = None if heldout is None else blur_images(heldout, blur)
    if jpeg is not None:
        pool, heldout = data.jpeg_roundtrip(pool, jpeg), None if heldout is None else data.jpeg_images(heldout, jpeg)
    oe = augment.Outliers(pool)
    # what the training-task probe needs to draw held-out images the way the pool was drawn
    oe.heldout, oe.excluded = heldout, list(pool.meta.get("excluded", []))
    oe.source, oe.exclude, oe.blur, oe.jpeg = source, list(exclude or []), blur, jpeg
    return oe


def training_task_probe(train, oe, dataset: str, n: int = 500, seed: int = 0, root=None):
    """The learning curve's training-task probe: up to ``n`` nominal training images against as many *held-out*
    outlier-exposure images, never drawn during training: ``oe.heldout`` (``outliers(..., holdout=k)``), else
    the other split of the dataset ``oe`` came from (e.g. Tiny ImageNet's val), with the pool's exclusions and
    blur. Its AUC beside the test AUC shows a shortcut: a network that separates its OE ever better while the test
    AUC stalls has learnt what tells the OE corpus from the nominal images, not what makes an anomaly. Returns
    ((images, anomaly), None), or (None, why) when there is no held-out OE (no OE, a synthetic source, a folder,
    a copy without the other split)."""
    from ... import data

    held = getattr(oe, "heldout", None)
    if held is None:
        source = getattr(oe, "source", None)
        if source is None:
            return None, "no outlier exposure from a dataset"
        try:
            name = data.canonical(source)
        except ValueError:
            return None, f"{source!r} is a folder: hold images out with outlier_holdout"
        splits = data.DATASETS[name].splits
        if len(splits) < 2:
            return None, f"{name} has no held-out split: hold images out with outlier_holdout"
        size, channels = input_shape(dataset)
        try:
            held = data.load_outliers(name, size, channels, exclude=oe.exclude or None, seed=seed, root=root,
                                      split=splits[1]).images
        except data.DatasetMissingError:
            return None, f"{name}'s {splits[1]} split is not here: hold images out with outlier_holdout"
        if oe.blur:
            held = blur_images(held, oe.blur)
        if getattr(oe, "jpeg", None) is not None:
            held = data.jpeg_images(held, oe.jpeg)
    nominal = train.images if hasattr(train, "images") else train
    pick = torch.randperm(len(nominal), generator=torch.Generator().manual_seed(seed))[:n]
    held = held[torch.randperm(len(held), generator=torch.Generator().manual_seed(seed + 1))[:len(pick)]]
    anomaly = torch.cat([torch.zeros(len(pick)), torch.ones(len(held))]).long()
    return (torch.cat([nominal[pick], held.to(nominal.device)]), anomaly), None


OUTLIER_KEYWORDS = ("none", "noise", "blobs", "confetti")


def check_parameters(p: dict) -> list[str]:
    """What an FCDD notebook's parameters cannot run with, found before any data is read (the batch runner
    calls this through the notebooks' ``# checked by:`` line): a network of another method or for another image
    size or channel count, VGG weights without the VGG network or at a path that does not exist, an outlier
    source that is neither a keyword, a known dataset nor an existing folder."""
    from ... import data

    problems = []
    method, net = p.get("method", "fcdd"), p.get("net", "paper")
    dataset = p.get("dataset")
    if "like" in p:      # one-vs-rest: a dataset of the paper, or a class-folder tree of one's own
        if data.is_path_category(dataset):
            if not os.path.isdir(os.path.expanduser(str(dataset))):
                problems.append(f"dataset {dataset!r} is not a folder: give the path of a class-folder tree "
                                "(<tree>/{train,test}/<class>/* or <tree>/<class>/*)")
        elif dataset not in FOLDER_LIKE:
            problems.append(f"dataset {dataset!r}: choose {' | '.join(FOLDER_LIKE)} or the path of a class-folder "
                            "tree of your own (absolute, or starting with ~ ./ ../)")
        try:
            dataset = setting(dataset, p.get("like"))
        except ValueError as err:
            problems.append(str(err))
    setting_key = {"voc2007": "voc"}.get(dataset, dataset)
    if net not in ("paper", "official"):
        if net not in nets.NAMES:
            problems.append(f"net {net!r} is not a network; choose 'paper', 'official' or one of "
                            f"{', '.join(n for n in nets.NAMES if n.startswith(method + '_'))}")
        elif not net.startswith(method + "_"):
            problems.append(f"net {net!r} is not a {method} network; choose 'paper', 'official' or one of "
                            f"{', '.join(n for n in nets.NAMES if n.startswith(method + '_'))}")
        elif setting_key in LOAD:
            channels, size = nets.input_spec(net)
            load_size, load_channels = LOAD[setting_key]
            want = min(load_size, 224)
            if (channels, size) != (load_channels, want):
                problems.append(f"net {net!r} takes {channels}x{size}x{size} images, but {p.get('dataset')!r} is "
                                f"loaded as {load_channels}x{want}x{want}: pick a network for that size, or 'paper'")
    batch, accumulate = p.get("batch_size"), p.get("accumulate") or 1
    batch = batch or DATASETS.get(setting_key, {}).get("batch_size")
    if batch and batch % accumulate:
        problems.append(f"batch_size {batch} is not divisible by accumulate {accumulate}: each batch is split into "
                        "`accumulate` equal micro-batches")
    weights = p.get("vgg_weights")
    if weights:
        if net != "official":
            problems.append(f"vgg_weights is for net='official' (VGG11-BN), but net is {net!r}: leave it unset")
        elif not os.path.isfile(weights):
            problems.append(f"vgg_weights {weights!r} does not exist: download torchvision's vgg11_bn-6002323d.pth "
                            "and give its path")
    source = p.get("outlier_source")
    if isinstance(source, str) and source not in OUTLIER_KEYWORDS:
        try:
            data.canonical(source)
        except ValueError:
            if not os.path.isdir(source):
                problems.append(f"outlier_source {source!r} is neither {' | '.join(OUTLIER_KEYWORDS)}, a known "
                                f"dataset ({', '.join(data.DATASETS)}) nor an existing image folder")
    return problems


MVTEC_MODES = {"unsupervised": "mvtec", "semi": "mvtec_semi"}


def mvtec_split(category, mode: str = "unsupervised", per_defect: int = 1, seed: int = 0, size: int = 240,
                root=None):
    """Section 4.2's data for one MVTec-AD category: (setting, train, test, labelled). ``mode`` 'unsupervised'
    trains on good images with confetti noise (setting 'mvtec', labelled None); 'semi' moves ``per_defect``
    anomalous test images of every defect type, with their masks, into training (setting 'mvtec_semi', the key of
    :data:`DATASETS` and of :func:`oneclass.reported.fcdd_number`), and needs the category's ground-truth masks."""
    from ... import data

    if mode not in MVTEC_MODES:
        raise ValueError(f"mode must be 'unsupervised' (confetti noise) or 'semi' (labelled anomalies with masks, "
                         f"eq. 3), got {mode!r}")
    train = data.load_mvtec(category, "train", root=root, size=size, channels=3)
    test = data.load_mvtec(category, "test", root=root, size=size, channels=3)
    if not int(test.anomaly.sum()) or int(test.anomaly.sum()) == len(test):
        raise ValueError(f"{test.meta['folder']}/test holds {int(test.anomaly.sum())} defective and "
                         f"{len(test) - int(test.anomaly.sum())} good images: the AUCs need both; add a test/good "
                         "folder and at least one test/<defect> folder before training")
    labelled = None
    if mode == "semi":
        if not test.has_masks:
            raise ValueError(f"semi-supervised FCDD trains on the ground-truth masks, and {train.meta['category']!r} "
                             f"has none here ({test.meta['masks_missing']}). Put MVTec-AD's ground_truth/ folder of "
                             "this category in place, or run mode='unsupervised'.")
        labelled, test = data.semi_supervised_split(test, per_defect, seed)
    return MVTEC_MODES[mode], train, test, labelled
