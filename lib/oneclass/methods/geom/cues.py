"""What JPEG artifacts tell GEOM's network without looking at the object (ours, not the paper's).

GEOM trains a network to name which of its 72 transformations made an image, and scores an image normal when the
network can name them. A detector of that kind fails when a transformation can be named from something every
image has, anomalous or not. A JPEG copy of a dataset (this project's CIFAR-10 is one) carries two such cues:

* **transpose**: the standard quantisation tables treat horizontal and vertical frequencies differently (the
  luminance table's first row and column differ), so the DCT coefficients of an upright image sit on a lattice that
  a turned image's do not: a 90-degree rotation is visible in the artifacts.
* **shift**: 4:2:0 chroma subsampling codes colour in 16 x 16 blocks, so a 32 px image has a colour block edge at
  column 16; GEOM's translation by a quarter of the image (8 px) moves that edge to column 8 or 24.

:func:`compression_cues` measures both on a set of images as the balanced accuracy of a fixed rule (nothing is
fitted): 0.5 is chance, 1.0 a transformation read off every image; for the turn, the same rule read off the JPEG
grid is the control (what the image content alone gives). It measures the cue's presence, not that a network uses
it.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.fft import dctn

from ...data.core import JPEG_BLOCK   # 4:2:0 colour units: 8 x 8 blocks on a half-resolution plane
from .transforms import Transform, apply, index_maps

# The IJG / JPEG Annex K luminance table at quality 50, scaled to other qualities as libjpeg does.
LUMA_Q50 = np.array([[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
                     [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
                     [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
                     [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]])


def luma_table(quality: int) -> np.ndarray:
    """The luminance quantisation table libjpeg (and PIL) writes at ``quality`` (1-100)."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((LUMA_Q50 * scale + 50) // 100, 1, 255)


def _luma(x: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) or (N, 1, H, W) pixels -> JPEG's level-shifted luminance (N, H, W)."""
    x = x.astype(np.float64)
    y = x[:, 0] if x.shape[1] == 1 else 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    return y - 128.0


def _chroma(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    cb = -0.168736 * x[:, 0] - 0.331264 * x[:, 1] + 0.5 * x[:, 2]
    cr = 0.5 * x[:, 0] - 0.418688 * x[:, 1] - 0.081312 * x[:, 2]
    return cb, cr


def lattice_upright(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Per image: how much closer its luminance DCT coefficients lie to ``table``'s lattice than to the transposed
    table's, over the coefficient pairs (u, v) / (v, u) whose steps differ; > 0: the artifacts look upright."""
    y = _luma(x)
    n, h, w = y.shape
    if h % 8 or w % 8:
        raise ValueError(f"the JPEG lattice is read on 8 x 8 blocks: image sides must be multiples of 8, got {h}x{w}")
    blocks = y.reshape(n, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)
    c = dctn(blocks, axes=(-2, -1), norm="ortho")
    off = lambda a, q: np.abs(a / q - np.round(a / q)).mean(axis=(1, 2))
    score = np.zeros(n)
    for u in range(8):
        for v in range(u + 1, 8):
            a, b = table[u, v], table[v, u]
            if a == b:
                continue
            upright = off(c[..., u, v], a) + off(c[..., v, u], b)
            turned = off(c[..., u, v], b) + off(c[..., v, u], a)
            score += turned - upright
    return score


def chroma_edge_at_grid(x: np.ndarray, offset: int) -> np.ndarray:
    """Per image: the colour step across the 16-px block edges (columns 16, 32, ...) minus the step ``offset``
    columns further (where a shift by ``offset`` moves them); > 0: the edges sit where an unshifted 4:2:0 JPEG puts
    them. Comparing one direction at a time keeps the shift's own fill seam out of the comparison."""
    cb, cr = _chroma(x)
    w = x.shape[-1]

    def step(a, col):   # |jump across col-1 | col| above the neighbouring jumps, per image
        jump = np.abs(a[:, :, col] - a[:, :, col - 1])
        around = 0.5 * (np.abs(a[:, :, col - 1] - a[:, :, col - 2]) + np.abs(a[:, :, col + 1] - a[:, :, col]))
        return (jump - around).mean(axis=1)

    grid = [c for c in range(JPEG_BLOCK, w - 1, JPEG_BLOCK) if 2 <= c + offset <= w - 2]
    if not grid:
        return np.zeros(len(x))
    return sum(step(a, c) - step(a, c + offset) for a in (cb, cr) for c in grid) / len(grid)


def _turn_accuracy(x: torch.Tensor, table: np.ndarray) -> float:
    """Balanced accuracy of telling images from their 90-degree turns by the sign of :func:`lattice_upright`
    (a score of exactly 0 counts as half right)."""
    hit = lambda s, sign: float(np.mean(np.where(s == 0, 0.5, np.sign(s) == sign)))
    turned = torch.rot90(x, 1, (2, 3))
    return 0.5 * (hit(lattice_upright(x.numpy(), table), 1) + hit(lattice_upright(turned.numpy(), table), -1))


def compression_cues(images: torch.Tensor, quality: int = 75) -> dict:
    """Balanced accuracies (0.5: chance) of reading two of GEOM's transformations off JPEG artifacts, on uint8
    images (N, C, H, W): ``transpose`` tells each image from its 90-degree rotation by the luminance lattice of
    ``quality``'s table; ``shift`` tells it from its translation by a quarter of the image along either axis (as
    GEOM's 72 translate, edge-repeating fill) by the 4:2:0 colour block edges (None for one-channel images, which
    have no colour planes, or sizes where the shift lands on the block grid again). ``transpose_off_grid`` is the
    same rule on blocks 4 px off the grid: what the content alone gives (near 0.5 for most images; the cue is the
    difference). Both are None where the side is not a multiple of 8 (a turn then also moves the block grid, a
    stronger cue that this rule does not measure) or where ``quality``'s table is symmetric. Square images only."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"compression_cues takes uint8 images (N, 1 or 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    n, c, h, w = images.shape
    if h != w or n < 2:
        raise ValueError(f"compression_cues needs at least 2 square images, got {n} of {h}x{w}")
    table = luma_table(quality)
    x = images.cpu()
    out = {"transpose": None, "transpose_off_grid": None, "shift": None, "images": n}   # rounded to 3 decimals
    if h % 8 == 0 and (table != table.T).any():
        out["transpose"] = round(_turn_accuracy(x, table), 3)
        # the control: the same rule on blocks read 4 px off the JPEG grid, where only the content's own balance of
        # horizontal and vertical frequencies can tip it
        k = (h - 4) // 8 * 8
        out["transpose_off_grid"] = round(_turn_accuracy(x[:, :, 4:4 + k, 4:4 + k], table), 3)
    s = w // 4
    if c == 3 and s % JPEG_BLOCK:
        shifts = [(s, 0), (-s, 0), (0, s), (0, -s)]
        maps = index_maps([Transform(False, tx, ty, 0) for tx, ty in shifts], w)
        xs = x.numpy()

        def edge(a, tx, ty):   # columns for shifts along x, rows for shifts along y
            return chroma_edge_at_grid(a, tx) if tx else chroma_edge_at_grid(np.swapaxes(a, 2, 3), ty)

        plain = [float((edge(xs, tx, ty) > 0).mean()) for tx, ty in shifts]
        moved = [float((edge(apply(x, torch.full((n,), t), maps).numpy(), tx, ty) <= 0).mean())
                 for t, (tx, ty) in enumerate(shifts)]
        hits = [float(np.mean(plain)), float(np.mean(moved))]
        out["shift"] = round(0.5 * (hits[0] + hits[1]), 3)
    return out
