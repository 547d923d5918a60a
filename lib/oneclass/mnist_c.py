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

Each corruption follows the definition and the released severity in the original generator
(google-research/mnist-c, ``corruptions.py``), re-implemented here from its description and parameters and
checked one by one (``tests/test_mnist_c.py`` tests a property of each):

=============  ========================================================================  ==========================
corruption     the original's definition (released severity)                              ours
=============  ========================================================================  ==========================
shot_noise     Poisson(3 x) / 3 (severity 5)                                               same
impulse_noise  salt and pepper, 17% of pixels, half salt (skimage ``random_noise``, 4)    same
glass_blur     severity 1: Gaussian blur sigma 0.7, cast to uint8 (floor); two passes      same
               visiting rows and columns 27 down to 2, each pixel swapped with
               probability 0.5 with (h + dy, w + dx), dy, dx in {-1, 0}; blur again.
               The blur is skimage ``gaussian(..., multichannel=True)`` on a 2-D array,
               which treats the columns as channels: it blurs along the rows only
               (vertically)
motion_blur    ImageMagick ``MotionBlurImage`` radius 10, sigma 3, angle U(-45, 45)        same kernel; see below
               degrees: 21 taps i = 0..20, weights exp(-i^2 / 2 sigma^2) normalised, tap
               i reads the pixel round(i cos a) columns right and round(i sin a) rows
               down, edge pixels repeated (one-sided: the blur trails one way)
shear          +-0.4 (random sign), skimage ``AffineTransform(shear)`` as the inverse map  same (explicit matrices:
               about the centre (13.5, 13.5), bilinear, zeros outside (severity 2)         skimage 0.21 changed shear)
scale          inverse map scaled by 1 / 0.7 about the centre: the digit shrinks (3)      same
rotate         +-0.4 rad about the centre (severity 2)                                    same
brightness     +0.5 on the HSV value (for grey: the grey level), clipped (severity 5)      same
translate      +-3 px on each axis, random signs (severity 3)                             same
stripe         columns 0-6 and 21-27 inverted                                             same
fog            plasma fractal on a 256 x 256 map (diamond-square, wibble 100, noise        same
               wibble * U(-wibble, wibble), wibble / 1.4 after each level), normalised
               to [0, 1] on the whole map, its top-left 28 x 28 crop; x + 3 fog, times
               max(x) / (max(x) + 3) (severity 5)
spatter        severity 4, mud: N(0.65, 0.3) noise, Gaussian blur sigma 1, liquid where    same
               > 0.65; that mask blurred with sigma 1.5, kept where >= 0.8 (m); x (1 - m)
               + 63/255 m: strokes are darkened, black background turns mud-grey
dotted_line    a line from column 0, row r0 to column 27, row r1 (r0, r1 in 0..26) with   same
               profile log(1 - d / 2.3) + 1 of the vertical distance d (about 3 rows
               thick), column 27 cut, columns c with c // 2 even blanked (2-column
               dashes at 2-3, 6-7, ..., 26); added and clipped
zigzag         amplitude 2, half-period 2: vertices (2 i + 1) 2 along a line from column   same
               2 to 25 at alternate +-2 offsets, the line from row r0 (0..26) to r0 + k
               (k in -5..4); each segment drawn with the dotted line's profile over its
               column span; added and clipped
canny_edges    skimage ``canny`` (sigma 1)                                                same
=============  ========================================================================  ==========================

What remains an approximation is listed in :data:`APPROXIMATIONS` (and in each folder's ``oneclass.json``): the
motion blur's pixel rounding inside ImageMagick, and the conversion of the original's float output to the
released uint8 (its release script is not public; we round to the nearest integer).

Ground truth of a corrupted image: |x_corrupted - x_clean| in [0, 1]; for dotted_line and zigzag the stroke as
drawn (a stroke over a white digit changes no pixel value but is still the anomaly) and for spatter the mud mask
m, each the larger of that and the pixel change; the whole image for brightness and fog (they act on every
pixel, even where clipping hides it).
"""
from __future__ import annotations

import json
import math
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
VERSION = 2   # bump when a corruption changes: caches with another version are regenerated (2: the original's definitions)
SIZE = 28
CENTRE = (SIZE - 1) / 2

APPROXIMATIONS = {
    "motion_blur": "ImageMagick's MotionBlurImage kernel re-implemented (21 taps, Gaussian weights sigma 3, offsets "
                   "rounded along the angle, edge pixels repeated); ImageMagick's own quantum rounding is not",
}
ROUNDING = "corrupted images rounded to the nearest uint8 (the original release script is not public)"

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

def _sample(x: np.ndarray, src_x: np.ndarray, src_y: np.ndarray) -> np.ndarray:
    """Bilinear sample of images x (N, H, W) at source pixel coordinates (N, H, W) each (pixel centres at ints)."""
    n, h, w = x.shape
    grid = np.stack([src_x / (w - 1) * 2 - 1, src_y / (h - 1) * 2 - 1], axis=-1)
    out = F.grid_sample(torch.from_numpy(x[:, None].astype(np.float32)), torch.from_numpy(grid.astype(np.float32)),
                        mode="bilinear", padding_mode="zeros", align_corners=True)
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


def _gaussian_rows(x, sigma):
    """skimage ``gaussian(img, sigma, multichannel=True)`` of a 2-D image: blurs along the rows only (vertically),
    mode 'nearest', truncate 4."""
    return ndimage.gaussian_filter1d(x, sigma, axis=1, mode="nearest", truncate=4.0)


def shuffle_plan(n: int, rng, delta: int = 1, iterations: int = 2, p_swap: float = 0.5):
    """The glass blur's local pixel shuffling as a plan: for each visited (h, w), which of the n images swap
    and by which offsets (dy, dx) in [-delta, delta). Rows and columns are visited from 28 - delta down to
    delta + 1, ``iterations`` times."""
    for _ in range(iterations):
        for h in range(SIZE - delta, delta, -1):
            for w in range(SIZE - delta, delta, -1):
                swap = rng.random(n) < p_swap
                yield h, w, swap, rng.integers(-delta, delta, size=(n, 2))


def glass_blur(x, rng, sigma=0.7, delta=1, iterations=2, p_swap=0.5):
    x = np.floor(_gaussian_rows(x, sigma) * 255) / 255   # the original casts the first blur to uint8
    rows = np.arange(len(x))
    for h, w, swap, d in shuffle_plan(len(x), rng, delta, iterations, p_swap):
        i = rows[swap]
        hp, wp = h + d[swap, 0], w + d[swap, 1]
        a, b = x[i, h, w].copy(), x[i, hp, wp].copy()
        x[i, h, w], x[i, hp, wp] = b, a
    return np.clip(_gaussian_rows(x, sigma), 0, 1), None


def motion_kernel(angle_deg: float, radius: float = 10, sigma: float = 3.0):
    """ImageMagick's motion-blur kernel: (weights (W,), column offsets (W,), row offsets (W,)), W = 2 ceil(r) + 1."""
    width = int(2 * math.ceil(radius) + 1)
    i = np.arange(width, dtype=np.float64)
    w = np.exp(-i ** 2 / (2 * sigma ** 2))
    a = math.radians(angle_deg)
    return w / w.sum(), np.ceil(i * math.cos(a) - 0.5).astype(int), np.ceil(i * math.sin(a) - 0.5).astype(int)


def motion_blur(x, rng, radius=10, sigma=3.0):
    angles = rng.uniform(-45, 45, size=len(x))
    yy, xx = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    out = np.zeros_like(x)
    for i, angle in enumerate(angles):
        for wt, dc, dr in zip(*motion_kernel(angle, radius, sigma)):
            out[i] += wt * x[i][np.clip(yy + dr, 0, SIZE - 1), np.clip(xx + dc, 0, SIZE - 1)]
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


def plasma_fractal(n: int, rng, size: int = 256, decay: float = 1.4, chunk: int = 64) -> np.ndarray:
    """n diamond-square plasma fractals (n, size, size) float32, each normalised to [0, 1]; ``size`` a power of two.
    Noise at a level is wibble * U(-wibble, wibble), wibble starting at 100 and divided by ``decay`` after it."""
    if size & (size - 1):
        raise ValueError(f"the plasma fractal needs a power-of-two size, got {size}")
    out = np.empty((n, size, size), np.float32)
    noise = lambda shape, w: (rng.random(shape, dtype=np.float32) * 2 - 1) * np.float32(w * w)
    for s in range(0, n, chunk):
        m = np.zeros((min(chunk, n - s), size, size), np.float32)
        step, wibble = size, 100.0
        while step >= 2:
            half = step // 2
            corners = m[:, 0:size:step, 0:size:step]
            total = corners + np.roll(corners, -1, 1)
            total = total + np.roll(total, -1, 2)
            m[:, half::step, half::step] = total / 4 + noise(total.shape, wibble)
            centres, corners = m[:, half::step, half::step], m[:, 0::step, 0::step]
            # a diamond point's four neighbours: two square centres and two corners (wrapping around)
            rows = centres + np.roll(centres, 1, 1) + corners + np.roll(corners, -1, 2)
            m[:, 0::step, half::step] = rows / 4 + noise(rows.shape, wibble)
            cols = centres + np.roll(centres, 1, 2) + corners + np.roll(corners, -1, 1)
            m[:, half::step, 0::step] = cols / 4 + noise(cols.shape, wibble)
            step, wibble = half, wibble / decay
        m -= m.min(axis=(1, 2), keepdims=True)
        out[s:s + len(m)] = m / np.maximum(m.max(axis=(1, 2), keepdims=True), 1e-12)
    return out


def fog(x, rng, amount=3.0, decay=1.4, map_size=256):
    top = x.max(axis=(1, 2), keepdims=True)
    fogged = x + amount * plasma_fractal(len(x), rng, map_size, decay)[:, :SIZE, :SIZE]
    return np.clip(fogged * top / (top + amount), 0, 1), None


MUD = 63 / 255


def spatter(x, rng, loc=0.65, scale=0.3, sigma=1.0, threshold=0.65, mask_sigma=1.5, keep=0.8):
    blur = lambda a, s: ndimage.gaussian_filter(a, sigma=(0, s, s), mode="nearest", truncate=4.0)
    liquid = blur(rng.normal(loc, scale, size=x.shape), sigma)
    m = blur((liquid > threshold).astype(np.float32), mask_sigma).astype(np.float64)
    m[m < keep] = 0
    return np.clip(x * (1 - m) + MUD * m, 0, 1), m


def line_profile(c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
    """The original's drawn line (28, 28) in [0, 1]: log(1 - d / 2.3) + 1 of the vertical distance d to the
    line through (c0, r0), (c1, r1), over columns floor(c0) .. ceil(c1) - 1; empty for a vertical segment."""
    if c1 == c0:
        return np.zeros((SIZE, SIZE))
    cc, rr = np.meshgrid(np.arange(SIZE, dtype=np.float64), np.arange(SIZE, dtype=np.float64))
    d = np.clip(np.abs(rr - ((r1 - r0) / (c1 - c0) * (cc - c0) + r0)), 0, 2.3 - 1e-10)
    v = np.clip(np.log(1 - d / 2.3) + 1, 0, 1)
    v[:, :int(np.floor(c0))] = 0
    v[:, int(np.ceil(c1)):] = 0
    return v


def dotted_line(x, rng):
    ends = rng.integers(0, SIZE - 1, size=(len(x), 2))
    blank = (np.arange(SIZE) // 2) % 2 == 0       # columns 0-1, 4-5, ...: the gaps between 2-column dashes
    strokes = np.stack([line_profile(0, r0, SIZE - 1, r1) for r0, r1 in ends])
    strokes[:, :, blank] = 0
    return np.clip(x + strokes, 0, 1), strokes


def zigzag_vertices(r0: float, r1: float, a: float = 2.0, b: float = 2.0, c0: float = 2, c1: float = 25):
    """The zigzag's vertices (columns, rows): along the line (c0, r0) -> (c1, r1), one every ``a`` (half-period)
    at alternating offsets +-``b`` (amplitude), the original's closing vertex at the line's end."""
    theta = math.atan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / math.cos(theta)
    pts = [(0.0, 0.0)]
    for i in range(int((d - a) // (2 * a)) + 1):
        pts.append(((2 * i + 1) * a, (-1) ** i * b))
    end = 2 * a * (d // (2 * a))
    if d != end:
        pts.append((d, pts[-1][1] / (2 * (d - end))))
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cs, rs = rot @ np.array(pts).T
    return cs + c0, rs + r0


def zigzag(x, rng):
    out, mask = x.copy(), np.zeros_like(x)
    r0 = rng.integers(0, SIZE - 1, size=len(x))
    r1 = r0 + rng.integers(-5, 5, size=len(x))
    for i in range(len(x)):
        cs, rs = zigzag_vertices(r0[i], r1[i])
        for k in range(1, len(cs)):
            seg = line_profile(cs[k - 1], rs[k - 1], cs[k], rs[k])
            out[i] = np.clip(out[i] + seg, 0, 1)
            mask[i] = np.clip(mask[i] + seg, 0, 1)
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


def _made_here(meta: dict | None, seed: int) -> bool:
    """Whether a folder's stamp was written by this version of the module with this seed."""
    return bool(meta) and meta.get("version") == VERSION and meta.get("seed") == seed


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
        if _made_here(meta, seed) and split in meta.get("splits", []):
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
    splits = sorted(set(meta.get("splits", []) if _made_here(meta, seed) else []) | {split})   # only splits made like this one
    stamp.write_text(json.dumps({"version": VERSION, "seed": seed, "splits": splits, "source": "regenerated from MNIST "
                                 "by oneclass.mnist_c", "approximation": APPROXIMATIONS.get(corruption),
                                 "rounding": ROUNDING}, indent=2))
    return out


def _ready(corruption: str, split: str, root=None, seed: int = 0, generate_missing: bool = True) -> Path:
    """The corruption's folder with an up-to-date split: a released copy as it is; our own cache regenerated
    when it was made by another version of this module or another seed."""
    out = folder(corruption, root)
    images = out / f"{split}_images.npy"
    if images.exists() and not (out / "oneclass.json").exists():
        return out                                       # a released copy
    if not generate_missing:
        meta = json.loads((out / "oneclass.json").read_text()) if images.exists() else None
        if not (_made_here(meta, seed) and split in meta.get("splits", [])):
            raise FileNotFoundError(f"{images} is missing or was made by another version of oneclass.mnist_c: call "
                                    f"mnist_c.generate({corruption!r}, {split!r}) or put the released MNIST-C there")
        return out
    return generate(corruption, split, root, seed)      # returns at once when the cache is current


def images_at(corruption: str, split: str, index, root=None, seed: int = 0) -> torch.Tensor:
    """Corrupted images ``index`` of a split (uint8 (k, 1, 28, 28)), read without loading the whole split
    (generated and cached first when missing)."""
    out = _ready(check_corruption(corruption), split, root, seed)
    x = np.load(out / f"{split}_images.npy", mmap_mode="r")
    idx = np.asarray(index, dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(x[idx]).reshape(len(idx), 1, SIZE, SIZE))


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
    out = _ready(corruption, split, root, seed, generate_missing)
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
