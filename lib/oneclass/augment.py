"""Appendix C's pre-processing pipelines as batched tensor operations, plus outlier exposure mixing,
synthetic noise anomalies and the background ablation of section 4.1.

Every random choice draws from an explicit ``torch.Generator``: the same seed gives the same batches.
Images enter as uint8 (N, C, H, W) tensors and leave as normalised float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

BACKGROUNDS = ("none", "black_center", "black_border")


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is taken to be in [0, 1] already."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if not x.is_floating_point():
        raise TypeError(f"images must be uint8 or float in [0, 1], got {x.dtype}")
    return x.float()


def _check(x: torch.Tensor):
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}; "
                         "add a batch dimension with x[None]")


def random_crop(x: torch.Tensor, size: int, pad: int = 0, gen: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``pad`` on every side, then a random ``size`` x ``size`` crop per image (one gather)."""
    _check(x)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    n, c, h, w = x.shape
    if size > h or size > w:
        raise ValueError(f"crop size {size} exceeds the (padded) image size {h}x{w}")
    dy = torch.randint(0, h - size + 1, (n,), generator=gen)
    dx = torch.randint(0, w - size + 1, (n,), generator=gen)
    ar = torch.arange(size)
    idx = ((dy[:, None] + ar)[:, :, None] * w + (dx[:, None] + ar)[:, None, :]).reshape(n, 1, -1)
    return x.reshape(n, c, h * w).gather(2, idx.expand(n, c, -1)).reshape(n, c, size, size)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    _check(x)
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"crop size {size} exceeds the image size {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def random_hflip(x: torch.Tensor, p: float = 0.5, gen: torch.Generator | None = None) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _gray(x):
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _factor(n, amount, gen):
    return 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * amount


def color_jitter(x: torch.Tensor, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, gen: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random brightness, contrast, saturation (factors in [1-a, 1+a]) and hue (shift in [-h, h] of a
    turn), on float images in [0, 1]. Fixed order (torchvision's ColorJitter permutes it; at the 0.01 and 0.04
    strengths of appendix C the order does not matter), hue as a rotation in YIQ space (no HSV round trip)."""
    _check(x)
    n = x.shape[0]
    if brightness:
        x = (x * _factor(n, brightness, gen)).clamp_(0, 1)
    if contrast:
        mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        f = _factor(n, contrast, gen)
        x = (x * f + mean * (1 - f)).clamp_(0, 1)
    if x.shape[1] == 3 and saturation:
        f = _factor(n, saturation, gen)
        x = (x * f + _gray(x) * (1 - f)).clamp_(0, 1)
    if x.shape[1] == 3 and hue:
        x = _hue_rotate(x, (torch.rand(n, generator=gen) * 2 - 1) * hue * 2 * math.pi)
    return x


_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _hue_rotate(x, angle):
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(angle), 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(_YIQ) @ rot @ _YIQ            # (n, 3, 3): RGB -> YIQ, rotate IQ, back
    return torch.einsum("nij,njhw->nihw", m, x).clamp_(0, 1)


def gaussian_noise(x: torch.Tensor, std: float, gen: torch.Generator | None = None) -> torch.Tensor:
    return x + torch.randn(x.shape, generator=gen) * std


def black_out(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Background ablation of section 4.1 (figure 9): ``black_center`` blacks a centred square of 20/32 of
    the side, ``black_border`` a border of 6/32 of the side (20x20 and 6px at 32px); ``none`` is a no-op."""
    if mode in (None, "none"):
        return x
    if mode not in BACKGROUNDS:
        raise ValueError(f"unknown background mode {mode!r}; choose one of {BACKGROUNDS}")
    _check(x)
    h, w = x.shape[-2:]
    x = x.clone()
    if mode == "black_center":
        bh, bw = round(h * 20 / 32), round(w * 20 / 32)
        top, left = (h - bh) // 2, (w - bw) // 2
        x[..., top:top + bh, left:left + bw] = 0
    else:
        bh, bw = round(h * 6 / 32), round(w * 6 / 32)
        x[..., :bh, :] = 0
        x[..., h - bh:, :] = 0
        x[..., :, :bw] = 0
        x[..., :, w - bw:] = 0
    return x


def noise_images(n: int, channels: int, size: int, gen: torch.Generator | None = None,
                 kind: str = "uniform") -> torch.Tensor:
    """Synthetic anomalies as uint8 images: ``uniform`` pixel noise, or ``blobs`` (uniform noise at 1/4 of
    the resolution, upsampled: smooth, low-frequency structure)."""
    if kind == "uniform":
        return torch.randint(0, 256, (n, channels, size, size), generator=gen, dtype=torch.uint8)
    if kind == "blobs":
        low = torch.rand(n, channels, max(1, size // 4), max(1, size // 4), generator=gen)
        return (F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False) * 255).round().to(
            torch.uint8)
    raise ValueError(f"unknown noise kind {kind!r}; choose 'uniform' or 'blobs'")


class Outliers:
    """Where online outlier exposure draws its anomalies: a fixed pool of uint8 images, or synthetic noise
    generated on demand (``Outliers.noise(channels, size)``)."""

    def __init__(self, images: torch.Tensor | None = None, noise: str | None = None, channels: int | None = None,
                 size: int | None = None):
        if images is not None:
            images = getattr(images, "images", images)
            if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
                raise TypeError("outlier images must be a uint8 (N, C, H, W) tensor or an ImageSet; load them with "
                                "oneclass.data.load_outliers(source, size, channels, limit=...)")
            if len(images) == 0:
                raise ValueError("the outlier pool is empty: check the outlier source and its limit")
        elif noise is None:
            raise ValueError("give outlier images or a noise kind")
        self.images, self.noise, self.channels, self.size = images, noise, channels, size

    @classmethod
    def noise_source(cls, kind: str, channels: int, size: int) -> "Outliers":
        return cls(noise=kind, channels=channels, size=size)

    def __len__(self):
        return len(self.images) if self.images is not None else 0

    def draw(self, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        if self.images is None:
            return noise_images(n, self.channels, self.size, gen, self.noise)
        return self.images[torch.randint(0, len(self.images), (n,), generator=gen)]

    def check(self, channels: int, size: int):
        if self.images is not None and tuple(self.images.shape[1:]) != (channels, size, size):
            raise ValueError(f"outlier images are {tuple(self.images.shape[1:])}, nominal images are "
                             f"{(channels, size, size)}: load the outliers at the nominal size and channels")


def mix_outliers(nominal: torch.Tensor, outliers: Outliers | None, p: float = 0.5,
                 gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Online outlier exposure (appendix C): each image of the batch is replaced, with probability ``p``, by a
    random auxiliary anomaly, before augmentation. Returns the batch and its labels (1 = anomaly)."""
    labels = torch.zeros(len(nominal), dtype=torch.long)
    if outliers is None or p <= 0:
        return nominal, labels
    swap = torch.rand(len(nominal), generator=gen) < p
    k = int(swap.sum())
    if k:
        nominal = nominal.clone()
        nominal[swap] = outliers.draw(k, gen).to(nominal.dtype)
        labels[swap] = 1
    return nominal, labels


@dataclass
class Pipeline:
    """A pre-processing pipeline: training augmentation and the test transform, both ending in normalisation
    with per-channel ``mean`` / ``std`` (fitted on the nominal training images by :meth:`fit`)."""

    name: str = "none"
    size: int | None = None           # network input size; None: the images' size
    crop_pad: int | None = None       # random crop to `size` after zero-padding (None: no random crop)
    flip: bool = False
    jitter: float = 0.0
    noise: float = 0.0
    background: str = "none"
    mean: torch.Tensor | None = field(default=None, repr=False)
    std: torch.Tensor | None = field(default=None, repr=False)

    def fit(self, images: torch.Tensor, chunk: int = 4096) -> "Pipeline":
        """Per-channel mean and std of the nominal training images (after the test transform's crop)."""
        total = sq = 0.0
        count = 0
        for i in range(0, len(images), chunk):
            x = self._crop_test(to_float(images[i:i + chunk]))
            total = total + x.sum(dim=(0, 2, 3), dtype=torch.float64)
            sq = sq + x.pow(2).sum(dim=(0, 2, 3), dtype=torch.float64)
            count += x.numel() // x.shape[1]
        mean = total / count
        self.mean = mean.float()
        self.std = (sq / count - mean ** 2).clamp_min(1e-12).sqrt().float().clamp_min(1e-3)
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            raise RuntimeError("pipeline is not fitted: call .fit(nominal_training_images) first")
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def _crop_test(self, x):
        return center_crop(x, self.size) if self.size and x.shape[-1] != self.size else x

    def train(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """uint8 batch (nominal and outliers mixed) -> augmented, normalised float batch."""
        x = black_out(to_float(x), self.background)
        if self.jitter:
            x = color_jitter(x, self.jitter, self.jitter, self.jitter, self.jitter, gen)
        size = self.size or x.shape[-1]
        if self.crop_pad is not None:
            x = random_crop(x, size, self.crop_pad, gen)
        elif x.shape[-1] != size:
            x = center_crop(x, size)
        if self.flip:
            x = random_hflip(x, 0.5, gen)
        if self.noise:
            x = gaussian_noise(x, self.noise, gen)
        return self.normalize(x)

    def test(self, x: torch.Tensor) -> torch.Tensor:
        """Test images are never blacked out or augmented (section 4.1): crop to size, normalise."""
        return self.normalize(self._crop_test(to_float(x)))


def pipeline(name: str, background: str = "none", size: int | None = None) -> Pipeline:
    """Appendix C's pipelines: ``fmnist`` (crop 28 after padding 2, flip), ``cifar10`` (jitter 0.01, crop 32
    after padding 4, flip, noise 0.001), ``imagenet`` (images resized to 256: jitter, random crop 224, flip,
    noise; test: centre crop 224), ``voc`` (224 squares: as cifar10 without crop), ``none``."""
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background mode {background!r}; choose one of {BACKGROUNDS}")
    presets = {
        "none": dict(),
        "fmnist": dict(size=28, crop_pad=2, flip=True),
        "cifar10": dict(size=32, crop_pad=4, flip=True, jitter=0.01, noise=0.001),
        "imagenet": dict(size=224, crop_pad=0, flip=True, jitter=0.01, noise=0.001),
        "voc": dict(size=224, flip=True, jitter=0.01, noise=0.001),
    }
    if name not in presets:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {sorted(presets)} (MVTec-AD comes with its "
                         "own issue)")
    kw = presets[name] | ({"size": size} if size else {})
    return Pipeline(name=name, background=background, **kw)
