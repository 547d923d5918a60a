"""MNIST-C (Mu & Gilmer 2019) regenerated offline from MNIST, with the ground-truth explanation of every image.

The Clever Hans paper (Kauffmann et al.) scores explanations against 'what the corruption changed'. The released
MNIST-C has no such maps, so this module regenerates the 15 corruptions from MNIST with numpy / scipy /
scikit-image / torch, seeded, and writes them in the released layout under the data root::

    <root>/mnist_c/<corruption>/{train,test}_images.npy    uint8 (N, 28, 28, 1), same order as MNIST
    <root>/mnist_c/<corruption>/{train,test}_labels.npy    uint8 (N,) digit labels
    <root>/mnist_c/<corruption>/{train,test}_groundtruth.npy   float16 (N, 28, 28) in [0, 1]  (ours, not released)
    <root>/mnist_c/<corruption>/oneclass.json              how it was made (seed, version, approximations)

When a folder already holds the released ``*_images.npy`` (no ``oneclass.json``), it is read as it is and the
ground truth is computed as |corrupted - clean| against ``mnist_c/identity`` (or MNIST itself).

Severities are those of the released set: shot noise Poisson(3x)/3; impulse noise salt & pepper with amount
0.17; glass blur sigma 0.7, shift 1, 2 iterations; motion blur radius 10, sigma 3, angle U(-45, 45) degrees;
shear +-0.4; scale 0.7 (the digit shrinks about the centre); rotate +-0.4 rad; brightness +0.5 clipped;
translate +-3 px on each axis; stripe (columns 0-6 and 21-27 inverted); fog 3.0 x plasma fractal (decay 1.4);
canny edges (sigma 1). Where our version is only an approximation of the original it says so in
:data:`APPROXIMATIONS` (and in ``oneclass.json``).

Ground truth of a corrupted image: |x_corrupted - x_clean| in [0, 1]; the exact mask of what was drawn for
dotted_line, zigzag and spatter (a stroke over a white digit changes no pixel value but is still the anomaly);
the whole image for brightness and fog (they act on every pixel, even where clipping hides it). The zigzag's
mask is its anti-aliased coverage.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .data.catalog import MNIST_C_CORRUPTIONS

CORRUPTIONS = MNIST_C_CORRUPTIONS   # the data catalog's list: the runner validates classes against it
SPLITS = ("train", "test")
VERSION = 1   # bump when a corruption changes: caches with another version are regenerated
SIZE = 28
CENTRE = (SIZE - 1) / 2

APPROXIMATIONS = {
    "motion_blur": "approximated: the original uses ImageMagick's motion blur; here a one-sided line kernel of "
                   "11 taps (radius 10) with Gaussian weights (sigma 3) along a random angle in [-45, 45] degrees, "
                   "sampled bilinearly",
    "spatter": "approximated: blobs from thresholded, blurred Gaussian noise, painted white; the original's "
               "exact spatter generator is not reproduced",
    "dotted_line": "our choice: one line between two random points, every second pixel painted white",
    "zigzag": "our choice: an anti-aliased polyline through 4 random points, painted white",
    "fog": "plasma fractal (diamond-square) on a 32x32 grid cropped to 28x28; the grid size is our choice",
}

_WHOLE_IMAGE = {"brightness", "fog"}
_EXACT_MASK = {"dotted_line", "zigzag", "spatter"}


def check_corruption(corruption: str) -> str:
    name = str(corruption).strip().lower().replace("-", "_").replace(" ", "_")
    if name not in CORRUPTIONS and name != "identity":
        raise ValueError(f"unknown MNIST-C corruption {corruption!r}; valid: {', '.join(CORRUPTIONS)} "
                         "(and 'identity' for the clean images)")
    return name


def _seed(corruption: str, split: str, seed: int) -> np.random.Generator:
    # One stream per (corruption, split): regenerating one folder never changes another.
    c = (("identity",) + CORRUPTIONS).index(corruption)
    return np.random.default_rng([int(seed), c, SPLITS.index(split) if split in SPLITS else 9])


# ----------------------------------------------------------------------------------------------- warping

def _sample(x: np.ndarray, src_x: np.ndarray, src_y: np.ndarray, padding: str = "zeros") -> np.ndarray:
    """Bilinear sample of images x (N, H, W) at source pixel coordinates (N, H, W) each (pixel centres at ints)."""
    n, h, w = x.shape
    grid = np.stack([src_x / (w - 1) * 2 - 1, src_y / (h - 1) * 2 - 1], axis=-1)
    out = F.grid_sample(torch.from_numpy(x[:, None].astype(np.float32)), torch.from_numpy(grid.astype(np.float32)),
                        mode="bilinear", padding_mode=padding, align_corners=True)
    return out[:, 0].numpy().astype(np.float64)


def _affine(x: np.ndarray, mats: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """Warp each image by the inverse map q = M (p - c) + c + shift (p output pixel, q where it is read from),
    zeros outside; the skimage ``warp(x, inverse_map=...)`` convention with explicit matrices, because skimage
    changed what ``AffineTransform(shear=...)`` means in 0.21."""
    yy, xx = np.meshgrid(np.arange(SIZE, dtype=np.float64), np.arange(SIZE, dtype=np.float64), indexing="ij")
    px, py = xx - CENTRE, yy - CENTRE
    m = mats.reshape(-1, 2, 2)
    sx = m[:, 0, 0, None, None] * px + m[:, 0, 1, None, None] * py + CENTRE
    sy = m[:, 1, 0, None, None] * px + m[:, 1, 1, None, None] * py + CENTRE
    if shift is not None:
        sx = sx + shift[:, 0, None, None]
        sy = sy + shift[:, 1, None, None]
    return _sample(x, sx, sy)


def _signs(rng, n):
    return rng.choice(np.array([-1.0, 1.0]), size=n)


# ----------------------------------------------------------------------------------------------- corruptions
# Each takes float images (N, 28, 28) in [0, 1] and a generator; returns (corrupted in [0, 1], exact mask or None).

def shot_noise(x, rng):
    return np.clip(rng.poisson(x * 3.0) / 3.0, 0, 1), None


def impulse_noise(x, rng, amount=0.17):
    hit = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(np.float64), x), None


def glass_blur(x, rng, sigma=0.7, delta=1, iterations=2):
    blur = lambda a: ndimage.gaussian_filter(a, sigma=(0, sigma, sigma), mode="nearest", truncate=4.0)
    x = blur(x)
    n = len(x)
    rows = np.arange(n)
    # Local pixel shuffling, the same visiting order for every image, random offsets in [-delta, delta).
    for _ in range(iterations):
        for h in range(SIZE - delta, delta, -1):
            for w in range(SIZE - delta, delta, -1):
                d = rng.integers(-delta, delta, size=(n, 2))
                hp, wp = h + d[:, 0], w + d[:, 1]
                a, b = x[:, h, w].copy(), x[rows, hp, wp].copy()
                x[:, h, w], x[rows, hp, wp] = b, a
    return np.clip(blur(x), 0, 1), None


def motion_blur(x, rng, radius=10, sigma=3.0):
    angle = np.deg2rad(rng.uniform(-45, 45, size=len(x)))
    yy, xx = np.meshgrid(np.arange(SIZE, dtype=np.float64), np.arange(SIZE, dtype=np.float64), indexing="ij")
    taps = np.arange(radius + 1, dtype=np.float64)
    weights = np.exp(-taps ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    out = np.zeros_like(x)
    for t, wt in zip(taps, weights):
        sx = xx[None] - t * np.cos(angle)[:, None, None]
        sy = yy[None] - t * np.sin(angle)[:, None, None]
        out += wt * _sample(x, sx, sy, padding="border")
    return np.clip(out, 0, 1), None


def shear(x, rng, amount=0.4):
    s = amount * _signs(rng, len(x))
    # skimage < 0.21 AffineTransform(shear=s): [[1, -sin s], [0, cos s]] in (col, row) coordinates
    mats = np.stack([np.stack([np.ones_like(s), -np.sin(s)], -1), np.stack([np.zeros_like(s), np.cos(s)], -1)], 1)
    return np.clip(_affine(x, mats), 0, 1), None


def scale(x, rng, factor=0.7):
    mats = np.tile(np.eye(2) / factor, (len(x), 1, 1))
    return np.clip(_affine(x, mats), 0, 1), None


def rotate(x, rng, angle=0.4):
    a = angle * _signs(rng, len(x))
    c, s = np.cos(a), np.sin(a)
    mats = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)
    return np.clip(_affine(x, mats), 0, 1), None


def brightness(x, rng, amount=0.5):
    # MNIST-C adds to HSV value; for a grey image value is the grey level itself.
    return np.clip(x + amount, 0, 1), None


def translate(x, rng, pixels=3):
    shift = pixels * np.stack([_signs(rng, len(x)), _signs(rng, len(x))], 1)
    return np.clip(_affine(x, np.tile(np.eye(2), (len(x), 1, 1)), -shift), 0, 1), None


def stripe(x, rng):
    out = x.copy()
    out[:, :, :7] = 1 - out[:, :, :7]
    out[:, :, 21:] = 1 - out[:, :, 21:]
    return out, None


def plasma_fractal(n: int, rng, size: int = 32, decay: float = 1.4) -> np.ndarray:
    """Diamond-square plasma fractals (n, size, size) in [0, 1]; ``size`` a power of two."""
    maps = np.zeros((n, size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        wibble /= decay
        # squares: each square's centre is the mean of its corners plus noise
        corners = maps[:, 0:size:step, 0:size:step]
        mean = (corners + np.roll(corners, -1, 1) + np.roll(corners, -1, 2) + np.roll(np.roll(corners, -1, 1), -1, 2)) / 4
        maps[:, half:size:step, half:size:step] = mean + rng.uniform(-wibble, wibble, mean.shape)
        # diamonds: points between corners are the mean of their four neighbours plus noise
        for oy, ox in ((0, half), (half, 0)):
            ys, xs = np.arange(oy, size, step), np.arange(ox, size, step)
            yg, xg = np.meshgrid(ys, xs, indexing="ij")
            neigh = (maps[:, (yg - half) % size, xg] + maps[:, (yg + half) % size, xg]
                     + maps[:, yg, (xg - half) % size] + maps[:, yg, (xg + half) % size]) / 4
            maps[:, yg, xg] = neigh + rng.uniform(-wibble, wibble, neigh.shape)
        step = half
    maps -= maps.min(axis=(1, 2), keepdims=True)
    maps /= np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
    return maps


def fog(x, rng, amount=3.0, decay=1.4):
    top = x.max(axis=(1, 2), keepdims=True)
    fogged = x + amount * plasma_fractal(len(x), rng, 32, decay)[:, :SIZE, :SIZE]
    return np.clip(fogged * top / (top + amount), 0, 1), None


def spatter(x, rng, blobs_quantile=0.93, sigma=1.0):
    noise = ndimage.gaussian_filter(rng.normal(size=x.shape), sigma=(0, sigma, sigma), mode="wrap")
    thr = np.quantile(noise.reshape(len(x), -1), blobs_quantile, axis=1)[:, None, None]
    mask = noise > thr
    return np.where(mask, 1.0, x), mask


def dotted_line(x, rng):
    from skimage.draw import line

    out, mask = x.copy(), np.zeros(x.shape, dtype=bool)
    ends = rng.integers(0, SIZE, size=(len(x), 4))
    for i, (r0, c0, r1, c1) in enumerate(ends):
        rr, cc = line(r0, c0, r1, c1)
        rr, cc = rr[::2], cc[::2]
        out[i, rr, cc] = 1.0
        mask[i, rr, cc] = True
    return out, mask


def zigzag(x, rng, points=4):
    from skimage.draw import line_aa

    out, mask = x.copy(), np.zeros(x.shape)
    pts = rng.integers(0, SIZE, size=(len(x), points, 2))
    for i in range(len(x)):
        for (r0, c0), (r1, c1) in zip(pts[i, :-1], pts[i, 1:]):
            rr, cc, val = line_aa(r0, c0, r1, c1)
            keep = (rr >= 0) & (rr < SIZE) & (cc >= 0) & (cc < SIZE)
            rr, cc, val = rr[keep], cc[keep], val[keep]
            val = np.rint(val * 255) / 255   # the stroke's coverage as stored, so the mask is what was drawn
            out[i, rr, cc] = np.maximum(out[i, rr, cc], val)
            mask[i, rr, cc] = np.maximum(mask[i, rr, cc], val)
    return out, mask


def canny_edges(x, rng, sigma=1.0):
    from skimage.feature import canny

    return np.stack([canny(img, sigma=sigma).astype(np.float64) for img in x]), None


_FUNCS = {name: globals()[name] for name in CORRUPTIONS}


# ----------------------------------------------------------------------------------------------- public API

def _as_float(images) -> np.ndarray:
    x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if x.ndim == 4:
        if 1 not in (x.shape[1], x.shape[-1]):
            raise ValueError(f"MNIST-C corrupts grayscale images; got shape {x.shape} (use channels=1)")
        x = x.reshape(len(x), *x.shape[-3:]).squeeze(1) if x.shape[1] == 1 else x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (SIZE, SIZE):
        raise ValueError(f"MNIST-C corrupts 28x28 images (N, 28, 28) or (N, 1, 28, 28); got shape {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"MNIST-C corrupts uint8 images (0..255), got {x.dtype}; pass ImageSet.images")
    return x.astype(np.float64) / 255.0


def ground_truth(corrupted, clean, corruption: str, mask=None) -> np.ndarray:
    """The ground-truth explanation (N, 28, 28) float32 in [0, 1] of corrupted vs clean uint8 images."""
    corruption = check_corruption(corruption)
    diff = np.abs(_as_float(corrupted) - _as_float(clean)).astype(np.float32)
    if corruption in _WHOLE_IMAGE:
        return np.ones_like(diff)
    if corruption in _EXACT_MASK and mask is not None:
        return np.maximum(diff, np.asarray(mask, dtype=np.float32))
    return diff


def corrupt(images, corruption: str, seed: int = 0, rng: np.random.Generator | None = None):
    """Corrupt uint8 images (N, 28, 28) or (N, 1, 28, 28): returns (corrupted uint8 (N, 28, 28), ground truth
    float32 (N, 28, 28)). Seeded: the same images, corruption and seed give the same result."""
    corruption = check_corruption(corruption)
    x = _as_float(images)
    u8 = np.rint(x * 255).astype(np.uint8)
    if corruption == "identity":
        return u8, np.zeros(x.shape, np.float32)
    rng = rng if rng is not None else np.random.default_rng([int(seed), CORRUPTIONS.index(corruption)])
    out, mask = _FUNCS[corruption](x.copy(), rng)
    out8 = np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)
    return out8, ground_truth(out8, u8, corruption, mask)


def folder(corruption: str, root=None) -> Path:
    from .data import data_root

    return data_root(root) / "mnist_c" / check_corruption(corruption)


def _mnist(split: str, root=None):
    from . import data

    return data.load("mnist", split, root=root)


def generate(corruption: str, split: str = "test", root=None, seed: int = 0, force: bool = False,
             chunk: int = 10000) -> Path:
    """Write ``mnist_c/<corruption>/<split>_*.npy`` under the data root from MNIST (skipped when our cache with
    the same seed and version, or a released copy, is there). Returns the folder."""
    corruption = check_corruption(corruption)
    if split not in SPLITS:
        raise ValueError(f"MNIST-C splits are {SPLITS}, got {split!r}")
    out = folder(corruption, root)
    stamp = out / "oneclass.json"
    images_file = out / f"{split}_images.npy"
    meta = json.loads(stamp.read_text()) if stamp.exists() else None
    if images_file.exists() and not force:
        if meta is None:                        # a released copy: never overwrite it
            return out
        if meta.get("version") == VERSION and meta.get("seed") == seed and split in meta.get("splits", []):
            return out
    mnist = _mnist(split, root)
    rng = _seed(corruption, split, seed)
    imgs, gts = [], []
    for i in range(0, len(mnist), chunk):
        a, g = corrupt(mnist.images[i:i + chunk], corruption, rng=rng)
        imgs.append(a)
        gts.append(g)
    out.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]   # concurrent writers never share a temporary name
    tmp = {kind: out / f".{split}_{kind}.{tag}.npy" for kind in ("images", "labels", "groundtruth")}
    np.save(tmp["images"], np.concatenate(imgs)[..., None])
    np.save(tmp["labels"], mnist.labels.numpy().astype(np.uint8))
    np.save(tmp["groundtruth"], np.concatenate(gts).astype(np.float16))
    # rename last, images last of all: a folder with images is complete
    for kind in ("labels", "groundtruth", "images"):
        tmp[kind].rename(out / f"{split}_{kind}.npy")
    splits = sorted(set((meta or {}).get("splits", []) if (meta or {}).get("seed") == seed else []) | {split})
    stamp.write_text(json.dumps({"version": VERSION, "seed": seed, "splits": splits, "source": "regenerated from MNIST "
                                 "by oneclass.mnist_c", "approximation": APPROXIMATIONS.get(corruption)}, indent=2))
    return out


@dataclass
class Corrupted:
    """One split of one MNIST-C corruption, aligned with MNIST's order."""

    corruption: str
    images: torch.Tensor        # uint8 (N, 1, 28, 28) corrupted
    clean: torch.Tensor         # uint8 (N, 1, 28, 28) the MNIST originals
    labels: torch.Tensor        # int64 (N,) digits
    ground_truth: torch.Tensor  # float32 (N, 28, 28) in [0, 1]
    released: bool              # read from a released copy (ground truth recomputed as |x_c - x|)

    def __len__(self):
        return len(self.images)


def load(corruption: str, split: str = "test", root=None, seed: int = 0, generate_missing: bool = True) -> Corrupted:
    """Corrupted images, their clean originals and ground truth; regenerated (and cached) when missing."""
    corruption = check_corruption(corruption)
    out = folder(corruption, root)
    if not (out / f"{split}_images.npy").exists():
        if not generate_missing:
            raise FileNotFoundError(f"{out / f'{split}_images.npy'} is missing: call mnist_c.generate("
                                    f"{corruption!r}, {split!r}) or put the released MNIST-C there")
        generate(corruption, split, root, seed)
    released = not (out / "oneclass.json").exists()
    x = np.load(out / f"{split}_images.npy")
    x = x.reshape(len(x), SIZE, SIZE)
    labels = np.load(out / f"{split}_labels.npy").astype(np.int64)
    ident = folder("identity", root) / f"{split}_images.npy"
    clean = np.load(ident).reshape(-1, SIZE, SIZE) if ident.exists() else _mnist(split, root).images[:, 0].numpy()
    if len(clean) != len(x):
        raise ValueError(f"{out} holds {len(x)} {split} images but the clean set has {len(clean)}: the corrupted "
                         "and clean sets must be aligned (same MNIST order); regenerate with force=True")
    gt_file = out / f"{split}_groundtruth.npy"
    if gt_file.exists():
        gt = np.load(gt_file).astype(np.float32)
    else:
        gt = ground_truth(x, clean, corruption)
    return Corrupted(corruption, torch.from_numpy(np.ascontiguousarray(x))[:, None],
                     torch.from_numpy(np.ascontiguousarray(clean))[:, None], torch.from_numpy(labels),
                     torch.from_numpy(gt), released)
