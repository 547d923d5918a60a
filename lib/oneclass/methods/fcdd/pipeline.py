"""Appendix C's pre-processing pipelines as batched tensor operations, plus outlier exposure mixing,
synthetic noise anomalies, FCDD's confetti noise (section 4.2), the background ablation of section 4.1 and the
watermark of the Clever Hans probe (section 4.3).

Every random choice draws from an explicit ``torch.Generator``: the same seed gives the same batches.
Images enter as uint8 (N, C, H, W) tensors and leave as normalised float32.

Devices: the images may live on any device; every result is on the device of the images it was computed from.
Random numbers are drawn on the CPU with the (CPU) generator and then moved to the images' device, and small
per-image parameters (jitter factors, hue matrices, blur matrices, blob fields) are built on the CPU and moved,
so the same seed gives the same draws on every device, and on a CPU nothing is moved at all.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
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
    dy = torch.randint(0, h - size + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, w - size + 1, (n,), generator=gen).to(x.device)
    ar = torch.arange(size, device=x.device)
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
    flip = torch.rand(x.shape[0], generator=gen).to(x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _gray(x):
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _factor(n, amount, gen, device):
    """Per-image factors in [1 - a, 1 + a] on ``device``; ``amount`` is a number or a tensor of n per-image
    strengths (on any device). Drawn and computed on the CPU, then moved."""
    if isinstance(amount, torch.Tensor):
        amount = amount.reshape(n, 1, 1, 1).cpu()
    return (1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * amount).to(device)


def _nonzero(amount) -> bool:
    return bool((amount != 0).any()) if isinstance(amount, torch.Tensor) else bool(amount)


def color_jitter(x: torch.Tensor, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, gen: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random brightness, contrast, saturation (factors in [1-a, 1+a]) and hue (shift in [-h, h] of a
    turn), on float images in [0, 1]. Each strength is a number or a tensor of one strength per image. Fixed
    order (torchvision's ColorJitter permutes it; at the 0.01 and 0.04 strengths of appendix C the order does not
    matter), hue as a rotation in YIQ space (no HSV round trip)."""
    _check(x)
    n = x.shape[0]
    if _nonzero(brightness):
        x = (x * _factor(n, brightness, gen, x.device)).clamp_(0, 1)
    if _nonzero(contrast):
        mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        f = _factor(n, contrast, gen, x.device)
        x = (x * f + mean * (1 - f)).clamp_(0, 1)
    if x.shape[1] == 3 and _nonzero(saturation):
        f = _factor(n, saturation, gen, x.device)
        x = (x * f + _gray(x) * (1 - f)).clamp_(0, 1)
    if x.shape[1] == 3 and _nonzero(hue):
        hue = hue.reshape(n).cpu() if isinstance(hue, torch.Tensor) else hue
        x = _hue_rotate(x, (torch.rand(n, generator=gen) * 2 - 1) * hue * 2 * math.pi)
    return x


_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _hue_rotate(x, angle):
    """Rotate the hue of each image of ``x`` by ``angle`` (n,) radians; the (n, 3, 3) matrices are built on the
    CPU (``angle`` is a CPU tensor) and moved to the images' device."""
    angle = angle.cpu()
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(angle), 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(_YIQ) @ rot @ _YIQ            # (n, 3, 3): RGB -> YIQ, rotate IQ, back
    return torch.einsum("nij,njhw->nihw", m.to(x.device), x).clamp_(0, 1)


def gaussian_noise(x: torch.Tensor, std, gen: torch.Generator | None = None) -> torch.Tensor:
    """x + N(0, std^2); ``std`` is a number or a tensor broadcastable to x (e.g. one std per image) on x's
    device. The noise is drawn on the CPU and moved to x's device."""
    return x + torch.randn(x.shape, generator=gen).to(x.device) * std


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


def _blur_matrix(n: int, size: int, sigma: float) -> torch.Tensor:
    """(n, n) matrix M of a normalised ``size``-tap Gaussian with reflect padding ('dcb|abcd|cba', as
    torch's and kornia's 'reflect'): (M @ v)[i] = sum_t k[t] v[reflect(i + t - size // 2)]."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-ax ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    rows = torch.arange(n)[:, None].expand(n, size)
    cols = rows + torch.arange(size)[None, :] - size // 2
    period = 2 * (n - 1) if n > 1 else 1
    cols = cols.remainder(period)
    cols = torch.where(cols >= n, period - cols, cols)
    m = torch.zeros(n, n, dtype=torch.float64)
    m.index_put_((rows.reshape(-1), cols.reshape(-1)), k.repeat(n), accumulate=True)
    return m.float()


def gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Same-size Gaussian blur of a float batch (N, C, H, W) with a normalised ``size``-tap kernel and reflect
    padding (the border mode of kornia's gaussian_blur2d, which the authors' code uses). Separable, as two matrix
    products: 14x faster than the same blur as a 25x25 convolution on one CPU thread
    (benchmarks/fcdd_mvtec_throughput.py)."""
    _check(x)
    h, w = x.shape[-2:]
    rows, cols = _blur_matrix(h, size, sigma).to(x.device), _blur_matrix(w, size, sigma).T.to(x.device)
    return rows @ x.float() @ cols


@dataclass(frozen=True)
class Blob:
    """One confetti blob: image index, centre (row, column), side in pixels, rotation in degrees, the value added
    to each channel before blurring (coloured: one value in [-256, -1] per channel; dark: -255) and its kind."""

    image: int
    row: int
    col: int
    side: int
    angle: float
    value: tuple
    kind: str


def _blob_fields(n, c, h, w, density, sides, rotation, ensure_blob, dark, gen):
    """One field of square blobs: every pixel is a blob centre with probability ``density`` (a CPU tensor: the
    blobs are drawn and painted one by one on the CPU)."""
    centres = torch.rand(n, h, w, generator=gen) < density
    if ensure_blob and density > 0:
        # images without a blob draw their field again (as the authors' code), until every one has one
        while True:
            empty = (~centres.flatten(1).any(1)).nonzero()[:, 0]
            if not len(empty):
                break
            centres[empty] = torch.rand(len(empty), h, w, generator=gen) < density
    idx = centres.nonzero()                       # (B, 3): image, row, col
    b = len(idx)
    side = torch.randint(sides[0], sides[1] + 1, (b,), generator=gen)
    angle = (torch.rand(b, generator=gen) * 2 - 1) * rotation
    if dark:
        value = torch.full((b, c), -255.0)
    else:   # the authors' colorrange (-256, 0): a random shade per channel, so a tinted shadow
        value = torch.randint(-256, 0, (b, c), generator=gen).float()
    field = torch.zeros(n, c, h, w)
    for j, (i, r, q) in enumerate(idx.tolist()):     # later blobs overwrite earlier ones
        # only the blob's bounding box (radius: half the diagonal) is evaluated, clipped to the image
        rad = int(math.ceil(float(side[j]) * math.sqrt(0.5))) + 1
        r0, r1, q0, q1 = max(r - rad, 0), min(r + rad + 1, h), max(q - rad, 0), min(q + rad + 1, w)
        dy = torch.arange(r0, r1, dtype=torch.float32)[:, None] - r
        dx = torch.arange(q0, q1, dtype=torch.float32)[None, :] - q
        t = math.radians(float(angle[j]))
        u = math.cos(t) * dx + math.sin(t) * dy
        v = -math.sin(t) * dx + math.cos(t) * dy
        half = float(side[j]) / 2
        inside = (u.abs() <= half) & (v.abs() <= half)
        patch = field[i, :, r0:r1, q0:q1]
        patch[:, inside] = value[j, :, None]
    kind = "dark" if dark else "colored"
    blobs = [Blob(int(i), int(r), int(q), int(s_), float(a), tuple(val.tolist()), kind)
             for (i, r, q), s_, a, val in zip(idx.tolist(), side, angle, value)]
    return field, blobs


def confetti_noise(images: torch.Tensor, gen: torch.Generator | None = None, *, colored_density: float = 1.8e-5,
                   dark_density: float = 1.2e-5, sides: tuple = (8, 54), rotation: float = 45.0,
                   blur_size: int = 25, blur_sigma: float = 5.0, ensure_blob: bool = True,
                   invert_threshold: float = 0.025, return_blobs: bool = False):
    """FCDD's synthetic anomalies for MVTec-AD (section 4.2, figure 7): 'confetti' of square blobs.

    Two fields of blobs are drawn per image. In each, every pixel is a blob centre with probability ``density``
    (a 240x240 image: Poisson with mean 1.04 coloured and 0.69 dark blobs); a blob is a square with a side drawn
    uniformly from ``sides`` (inclusive), rotated by an angle uniform in [-rotation, rotation] degrees.
    Coloured blobs add one random value in [-256, -1] per channel (a tinted shadow: the authors' colour range
    (-256, 0)), dark blobs subtract 255. With ``ensure_blob`` an image whose field came out empty draws it again,
    so each field has at least one blob (mean 1.61 coloured, 1.38 dark at 240 px). The sum of the two fields is
    blurred with a Gaussian (``blur_size`` taps, ``blur_sigma``, reflect padding), added to the image and clamped
    to [0, 255]. As in the authors' code, an image that the noise would hardly change (mean change below
    ``invert_threshold`` grey levels, e.g. a black image that cannot get darker) gets the negated noise when that
    changes it more: bright blobs. Apply it to the 240px image, before the random crop (the authors' order).

    ``images``: uint8 (N, C, H, W). Returns uint8 images of the same shape; with ``return_blobs`` also the
    list of :class:`Blob` drawn. The same generator state gives the same confetti.
    """
    _check(images)
    if images.dtype != torch.uint8:
        raise TypeError(f"confetti noise works on uint8 images (as oneclass.data loads them), got {images.dtype}")
    lo, hi = sides
    if not 1 <= lo <= hi:
        raise ValueError(f"blob sides must satisfy 1 <= min <= max, got {sides}")
    for name, d in (("colored_density", colored_density), ("dark_density", dark_density)):
        if not 0 <= d <= 1:
            raise ValueError(f"{name} is a per-pixel probability, got {d}")
    n, c, h, w = images.shape
    colored, b1 = _blob_fields(n, c, h, w, colored_density, sides, rotation, ensure_blob, False, gen)
    dark, b2 = _blob_fields(n, c, h, w, dark_density, sides, rotation, ensure_blob, True, gen)
    field = (colored + dark).to(images.device)
    if blur_size and blur_sigma:
        field = gaussian_blur(field, blur_size, blur_sigma)
    base = images.float()
    change = ((base + field).clamp(0, 255) - base).flatten(1).mean(1).abs()
    inverted = ((base - field).clamp(0, 255) - base).flatten(1).mean(1).abs()
    flip = (change < invert_threshold) & (inverted > change)
    field = torch.where(flip[:, None, None, None], -field, field)
    out = (base + field).round_().clamp_(0, 255).to(torch.uint8)
    return (out, b1 + b2) if return_blobs else out


def local_contrast_normalization(x: torch.Tensor) -> torch.Tensor:
    """Per image: subtract the mean over all pixels and channels, divide by the mean absolute deviation
    (the l1 'local contrast normalisation' of Deep SVDD's and FCDD's MVTec pipelines)."""
    _check(x)
    centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
    return centred / centred.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)


def watermark_mask(height: int, width: int, text: str = "(c) VOC") -> torch.Tensor:
    """A watermark-like glyph mask in [0, 1] of ``height`` x ``width``: ``text`` rendered with PIL's built-in
    font at 8x the size, then area-downsampled (anti-aliased strokes, as a faint logo has)."""
    from PIL import Image, ImageDraw, ImageFont

    if height < 2 or width < 2:
        raise ValueError(f"a watermark needs at least 2x2 pixels, got {height}x{width}")
    scale = 8
    font = ImageFont.load_default()
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    canvas = Image.new("L", (box[2] - box[0] + 2, box[3] - box[1] + 2), 0)
    ImageDraw.Draw(canvas).text((1 - box[0], 1 - box[1]), text, fill=255, font=font)
    canvas = canvas.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    canvas = canvas.resize((width, height), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)


def watermark_box(size: int, fraction: float = 0.3, corner: str = "lower_left") -> tuple[slice, slice]:
    """Rows and columns of the watermark region: ``fraction`` of the side wide, a third of that high, in
    ``corner`` (the PASCAL VOC horse watermarks sit in the lower left)."""
    corners = ("lower_left", "lower_right", "upper_left", "upper_right")
    if corner not in corners:
        raise ValueError(f"unknown corner {corner!r}; choose one of {corners}")
    if not 0 < fraction <= 1:
        raise ValueError(f"watermark fraction of the side must be in (0, 1], got {fraction}")
    w = max(2, round(size * fraction))
    h = max(2, round(w / 3))
    rows = slice(size - h, size) if corner.startswith("lower") else slice(0, h)
    cols = slice(0, w) if corner.endswith("left") else slice(size - w, size)
    return rows, cols


def paste_watermark(images: torch.Tensor, fraction: float = 0.3, corner: str = "lower_left",
                    opacity: float = 0.7, text: str = "(c) VOC") -> torch.Tensor:
    """uint8 (N, C, H, W) images with a white, semi-transparent text watermark blended into a corner region
    (:func:`watermark_box`): pixel = (1 - opacity * glyph) * pixel + opacity * glyph * 255."""
    _check(images)
    if images.dtype != torch.uint8:
        raise TypeError(f"watermarks are pasted into uint8 images, got {images.dtype}")
    rows, cols = watermark_box(images.shape[-1], fraction, corner)
    glyph = (watermark_mask(rows.stop - rows.start, cols.stop - cols.start, text) * opacity).to(images.device)
    out = images.clone()
    region = out[..., rows, cols].float()
    out[..., rows, cols] = ((1 - glyph) * region + glyph * 255).round().clamp(0, 255).to(torch.uint8)
    return out


def noise_images(n: int, channels: int, size: int, gen: torch.Generator | None = None,
                 kind: str = "uniform", device: torch.device | str | None = None) -> torch.Tensor:
    """Synthetic anomalies as uint8 images: ``uniform`` pixel noise, or ``blobs`` (uniform noise at 1/4 of
    the resolution, upsampled: smooth, low-frequency structure). Made on the CPU, returned on ``device``
    (None: the CPU)."""
    if kind == "uniform":
        out = torch.randint(0, 256, (n, channels, size, size), generator=gen, dtype=torch.uint8)
    elif kind == "blobs":
        low = torch.rand(n, channels, max(1, size // 4), max(1, size // 4), generator=gen)
        out = (F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False) * 255).round().to(
            torch.uint8)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; choose 'uniform' or 'blobs'")
    return out if device is None else out.to(device)


class Outliers:
    """Where online outlier exposure draws its anomalies: a fixed pool of uint8 images (optionally with their
    pixel masks, for the semi-supervised pixel loss), synthetic noise generated on demand
    (:meth:`noise_source`), or a corruption of the nominal image itself (:meth:`confetti`)."""

    def __init__(self, images: torch.Tensor | None = None, noise: str | None = None, channels: int | None = None,
                 size: int | None = None, masks: torch.Tensor | None = None, corrupt=None):
        if images is not None:
            if masks is None and getattr(images, "masks", None) is not None:
                masks = images.masks
            images = getattr(images, "images", images)
            if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
                raise TypeError("outlier images must be a uint8 (N, C, H, W) tensor or an ImageSet; load them with "
                                "oneclass.data.load_outliers(source, size, channels, limit=...)")
            if len(images) == 0:
                raise ValueError("the outlier pool is empty: check the outlier source and its limit")
            if masks is not None and tuple(masks.shape) != (len(images), 1, *images.shape[2:]):
                raise ValueError(f"outlier masks {tuple(masks.shape)} do not match the images "
                                 f"{tuple(images.shape)}: one (1, H, W) mask per image")
        elif noise is None and corrupt is None:
            raise ValueError("give outlier images, a noise kind or a corruption")
        self.images, self.noise, self.channels, self.size = images, noise, channels, size
        self.masks, self.corrupt = masks, corrupt
        self._noise_device = None     # where a noise source delivers its images (None: the CPU)

    @property
    def device(self) -> torch.device | None:
        """Where :meth:`draw` delivers: the pool's device, a noise source's (the CPU unless moved with :meth:`to`),
        None for a corruption (it works wherever the nominal images are)."""
        if self.images is not None:
            return self.images.device
        if self.noise is not None:
            return getattr(self, "_noise_device", None) or torch.device("cpu")
        return None

    def to(self, device: torch.device | str) -> "Outliers":
        """These outliers with the pool's images and masks on ``device`` (self when they are there already);
        a noise source delivers its noise there; a corruption works wherever the nominal images are (self)."""
        device = torch.device(device)
        if self.images is not None:
            images = self.images.to(device)
            masks = None if self.masks is None else self.masks.to(device)
            if images is self.images and masks is self.masks:
                return self
            moved = copy.copy(self)
            moved.images, moved.masks = images, masks
            return moved
        if self.noise is not None:
            if _same_device(self.device, device):
                return self
            moved = copy.copy(self)
            moved._noise_device = device
            return moved
        return self

    @classmethod
    def noise_source(cls, kind: str, channels: int, size: int) -> "Outliers":
        return cls(noise=kind, channels=channels, size=size)

    @classmethod
    def confetti(cls, **options) -> "Outliers":
        """Anomalies made from the nominal image being replaced: :func:`confetti_noise` with ``options``."""
        return cls(corrupt=lambda x, gen: confetti_noise(x, gen, **options))

    def __len__(self):
        return len(self.images) if self.images is not None else 0

    def __repr__(self) -> str:
        if self.images is not None:
            shape = "x".join(map(str, self.images.shape[1:]))
            return f"Outliers({len(self.images)} images of {shape}{', with masks' if self.masks is not None else ''})"
        if self.noise is not None:
            return f"Outliers(noise={self.noise!r}, {self.channels}x{self.size}x{self.size}, drawn on demand)"
        return "Outliers(a corruption of the nominal image, e.g. confetti noise)"

    def draw(self, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        return self.draw_with_masks(n, gen)[0]

    def draw_with_masks(self, n: int, gen: torch.Generator | None = None):
        """``n`` anomalies and their masks (None when the pool has none)."""
        if self.images is None:
            return noise_images(n, self.channels, self.size, gen, self.noise, self.device), None
        pick = torch.randint(0, len(self.images), (n,), generator=gen)
        images = self.images[pick.to(self.images.device)]
        return images, None if self.masks is None else self.masks[pick.to(self.masks.device)]

    def check(self, channels: int, size: int):
        if self.images is not None and tuple(self.images.shape[1:]) != (channels, size, size):
            raise ValueError(f"outlier images are {tuple(self.images.shape[1:])}, nominal images are "
                             f"{(channels, size, size)}: load the outliers at the nominal size and channels")


def _same_device(a, b) -> bool:
    """Whether two device names are the same device ('cuda' and 'cuda:0' are, when 0 is the current one)."""
    return torch.empty(0, device=a).device == torch.empty(0, device=b).device


def mix_outliers(nominal: torch.Tensor, outliers: Outliers | None, p: float = 0.5,
                 gen: torch.Generator | None = None):
    """Online outlier exposure (appendix C): each image of the batch is replaced, with probability ``p``, by a
    random auxiliary anomaly (or, for a corruption such as confetti noise, by its corrupted self), before
    augmentation. Returns the batch, its labels (1 = anomaly) and pixel masks (uint8 (N, 1, H, W), zeros for
    nominal images) when the outlier pool carries masks, else None; all three on the nominal batch's device
    (outliers drawn elsewhere are moved there: :meth:`Outliers.to` them once beforehand to avoid the copies)."""
    dev = nominal.device
    labels = torch.zeros(len(nominal), dtype=torch.long, device=dev)
    if outliers is None or p <= 0:
        return nominal, labels, None
    swap = torch.rand(len(nominal), generator=gen).to(dev) < p
    k = int(swap.sum())
    masks = None
    if outliers.masks is not None:
        masks = torch.zeros((len(nominal), 1, *nominal.shape[2:]), dtype=torch.uint8, device=dev)
    if k:
        nominal = nominal.clone()
        if outliers.corrupt is not None:
            nominal[swap] = outliers.corrupt(nominal[swap], gen).to(dev, nominal.dtype)
        else:
            drawn, drawn_masks = outliers.draw_with_masks(k, gen)
            nominal[swap] = drawn.to(dev, nominal.dtype)
            if masks is not None:
                masks[swap] = drawn_masks.to(dev, masks.dtype)
        labels[swap] = 1
    return nominal, labels, masks


def _resize(x: torch.Tensor, size: int, image_channels: int | None = None) -> torch.Tensor:
    """Resize a float batch to size x size: the first ``image_channels`` channels bilinearly (antialiased), the
    rest (stacked masks) with nearest neighbour; ``None``: all channels are image channels."""
    c = x.shape[1] if image_channels is None else image_channels
    parts = []
    if c:
        parts.append(F.interpolate(x[:, :c], size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    if c < x.shape[1]:
        parts.append(F.interpolate(x[:, c:], size=(size, size), mode="nearest"))
    return torch.cat(parts, 1)


@dataclass
class Pipeline:
    """A pre-processing pipeline: training augmentation and the test transform, both ending in normalisation,
    ``(x - shift) / scale`` per channel, fitted on the nominal training images by :meth:`fit`: mean and standard
    deviation, or, with ``lcn``, per-image contrast normalisation followed by the per-channel min and max range
    (MVTec-AD). ``train`` and ``test`` also carry pixel masks along (cropped and resized with the images)."""

    name: str = "none"
    size: int | None = None           # network input size; None: the images' size
    crop_pad: int | None = None       # random crop to `size` after zero-padding (None: no random crop)
    resize_prob: float = 0.0          # chance per image of a resize to `size` instead of the crop (MVTec: 0.5)
    flip: bool = False
    jitter: float = 0.0
    jitter_choices: tuple = ()        # per image, one of these jitter strengths at random (MVTec: 0.04, 0.0005)
    noise: float = 0.0                # std of additive Gaussian noise (relative: times the image's own std)
    noise_prob: float = 1.0           # chance per image of getting the noise
    noise_relative: bool = False
    test_resize: bool = False         # test images resized to `size` (whole image kept) instead of centre-cropped
    lcn: bool = False                 # contrast-normalise each image, then min-max scale per channel
    background: str = "none"
    shift: torch.Tensor | None = field(default=None, repr=False)
    scale: torch.Tensor | None = field(default=None, repr=False)

    def fit(self, images: torch.Tensor, chunk: int = 1024) -> "Pipeline":
        """Normalisation statistics of the nominal training images after the test transform, stored on the
        images' device."""
        total = sq = 0.0
        lo = hi = None
        count = 0
        for i in range(0, len(images), chunk):
            x = self._geometry_test(to_float(images[i:i + chunk]))
            if self.lcn:
                x = local_contrast_normalization(x)
                lo_c, hi_c = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
                lo = lo_c if lo is None else torch.minimum(lo, lo_c)
                hi = hi_c if hi is None else torch.maximum(hi, hi_c)
                continue
            total = total + x.sum(dim=(0, 2, 3), dtype=torch.float64)
            sq = sq + x.pow(2).sum(dim=(0, 2, 3), dtype=torch.float64)
            count += x.numel() // x.shape[1]
        if self.lcn:
            self.shift, self.scale = lo.float(), (hi - lo).clamp_min(1e-6).float()
            return self
        mean = total / count
        self.shift = mean.float()
        self.scale = (sq / count - mean ** 2).clamp_min(1e-12).sqrt().float().clamp_min(1e-3)
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - shift) / scale`` per channel; the statistics (kept on the device of the images :meth:`fit` saw,
        or on the CPU after loading a checkpoint) are moved to x's device."""
        if self.shift is None:
            raise RuntimeError("pipeline is not fitted: call .fit(nominal_training_images) first")
        if self.lcn:
            x = local_contrast_normalization(x)
        shift, scale = self.shift.to(x.device), self.scale.to(x.device)
        return (x - shift[:, None, None]) / scale[:, None, None]

    def _geometry_test(self, x, masks=None):
        if not self.size or x.shape[-1] == self.size:
            return x if masks is None else (x, masks)
        if self.test_resize:
            x = _resize(x, self.size)
            if masks is not None:
                masks = _resize(masks.float(), self.size, 0).to(masks.dtype)
        else:
            x = center_crop(x, self.size)
            masks = None if masks is None else center_crop(masks, self.size)
        return x if masks is None else (x, masks)

    def train(self, x: torch.Tensor, gen: torch.Generator | None = None, masks: torch.Tensor | None = None):
        """uint8 batch (nominal and outliers mixed) -> augmented, normalised float batch; with ``masks``
        (N, 1, H, W) returns (batch, masks) with the masks cropped exactly as the images. The background
        ablation's box is blacked out last, after crop, flip and noise (as the authors' code does), so it covers
        the same pixels of every training tensor whatever the crop."""
        x = to_float(x)
        n, c = x.shape[:2]
        if self.jitter_choices:   # per-image strengths: drawn and kept on the CPU (color_jitter moves its factors)
            choices = torch.tensor(self.jitter_choices, dtype=torch.float32)
            amount = choices[torch.randint(0, len(choices), (n,), generator=gen)]
            x = color_jitter(x, amount, amount, amount, amount, gen)
        elif self.jitter:
            x = color_jitter(x, self.jitter, self.jitter, self.jitter, self.jitter, gen)
        size = self.size or x.shape[-1]
        if masks is not None:
            x = torch.cat([x, masks.to(x.device, x.dtype)], 1)
        if self.crop_pad is not None:
            cropped = random_crop(x, size, self.crop_pad, gen)
            if self.resize_prob > 0 and x.shape[-1] != size:
                whole = torch.rand(n, generator=gen).to(x.device) < self.resize_prob
                if whole.any():
                    cropped[whole] = _resize(x[whole], size, c)
            x = cropped
        elif x.shape[-1] != size:
            x = center_crop(x, size)
        if self.flip:
            x = random_hflip(x, 0.5, gen)
        if masks is not None:
            x, masks = x[:, :c], x[:, c:].round().to(masks.dtype)
        if self.noise:
            std = self.noise * (x.flatten(1).std(1).reshape(n, 1, 1, 1) if self.noise_relative else 1.0)
            if self.noise_prob < 1:   # (no extra draw otherwise: the other pipelines' random streams stay as they were)
                std = std * (torch.rand(n, 1, 1, 1, generator=gen) < self.noise_prob).float().to(x.device)
            x = gaussian_noise(x, std, gen)
            if self.noise_relative:
                x = x.clamp(0, 1)
        x = self.normalize(black_out(x, self.background))
        return x if masks is None else (x, masks)

    def test(self, x: torch.Tensor, masks: torch.Tensor | None = None):
        """Test images are never blacked out or augmented (section 4.1): crop (or resize) to size, normalise."""
        out = self._geometry_test(to_float(x), masks)
        if masks is None:
            return self.normalize(out)
        return self.normalize(out[0]), out[1]


#: ``normalize`` choices of :func:`pipeline`: per-channel mean and standard deviation of the nominal training
#: images (appendix C's "data normalization"), or per-image l1 contrast normalisation followed by the per-channel
#: min-max range of the nominal training images (the authors' code for Fashion-MNIST ('lcnaug1') and MVTec-AD).
NORMALIZE = ("meanstd", "lcn_minmax")


def pipeline(name: str, background: str = "none", size: int | None = None, normalize: str | None = None) -> Pipeline:
    """Appendix C's pipelines: ``fmnist`` (crop 28 after padding 2, flip; contrast normalisation and the nominal
    class's min-max, as the authors' code: appendix C says only "data normalization"), ``cifar10`` (jitter 0.01, crop 32
    after padding 4, flip, noise 0.001), ``imagenet`` (images resized to 256: jitter, random crop 224, flip,
    noise; test: centre crop 224), ``voc`` (224 squares: as cifar10 without crop), ``mvtec`` (images resized to
    240: random crop 224 or, for half of the images, a resize to 224 (the authors' code), jitter 0.04 or 0.0005 at
    random, a 50% chance of Gaussian noise with a tenth of the
    image's standard deviation, contrast normalisation and per-class min-max; test: resized to 224), ``none``.
    ``normalize`` (one of :data:`NORMALIZE`) overrides the pipeline's own normalisation (None: fmnist and mvtec
    'lcn_minmax', the others 'meanstd')."""
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background mode {background!r}; choose one of {BACKGROUNDS}")
    presets = {
        "none": dict(),
        "fmnist": dict(size=28, crop_pad=2, flip=True, lcn=True),
        "cifar10": dict(size=32, crop_pad=4, flip=True, jitter=0.01, noise=0.001),
        "imagenet": dict(size=224, crop_pad=0, flip=True, jitter=0.01, noise=0.001),
        "voc": dict(size=224, flip=True, jitter=0.01, noise=0.001),
        "mvtec": dict(size=224, crop_pad=0, resize_prob=0.5, jitter_choices=(0.04, 0.0005), noise=0.1, noise_prob=0.5,
                      noise_relative=True, test_resize=True, lcn=True),
    }
    if name not in presets:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {sorted(presets)}")
    if normalize not in (None, *NORMALIZE):
        raise ValueError(f"unknown normalize {normalize!r}; choose one of {' | '.join(NORMALIZE)} (None: the "
                         "pipeline's own)")
    kw = presets[name] | ({"size": size} if size else {})
    if normalize is not None:
        kw["lcn"] = normalize == "lcn_minmax"
    return Pipeline(name=name, background=background, **kw)
