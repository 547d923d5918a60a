"""GEOM paper (001), sections 3 and 5.1: the geometric transformations (flip x translate x rotate, in the
authors' index order) as pixel index maps, applied to a batch in one gather."""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch

class Transform(NamedTuple):
    """flip (horizontal), then translate by (tx, ty) pixels with symmetric padding, then rotate k*90 degrees
    counter-clockwise. tx > 0 moves content right, ty > 0 moves it down."""

    flip: bool
    tx: int
    ty: int
    k: int

    def __str__(self) -> str:
        parts = (["flip"] if self.flip else []) + ([f"tx{self.tx:+d}"] if self.tx else []) + \
                ([f"ty{self.ty:+d}"] if self.ty else []) + ([f"rot{90 * self.k}"] if self.k else [])
        return "+".join(parts) or "identity"


IDENTITY = Transform(False, 0, 0, 0)
SETS = ("geom72", "geom8", "flip", "translate", "translate_right")
SECTION6_SHIFT = 7      # section 6: "translation by 7 pixels"


def transformations(kind: str | Sequence = "geom72", size: int = 32) -> list[Transform]:
    """A transformation set.

    ``"geom72"``: the paper's 72, index t = 36*flip + 12*i_tx + 4*i_ty + k with shifts (0, -s, +s), s = size//4
    (8 at 32px, 16 at 64px). ``"geom8"``: flip x the four rotations (t = 4*flip + k). ``"flip"`` and
    ``"translate"``: section 6's pairs: identity and a flip; identity and a shift by 7 px moving the content up
    (the authors' Keras ``tx=7`` shifts rows); ``"translate_right"``: ours, the shift along the other axis (content
    moves right: the reading this library used before the authors' code was checked). A sequence of
    :class:`Transform` (or 4-tuples) is taken as given, e.g. ``[IDENTITY, Transform(True, 0, 0, 0)]``.
    """
    if isinstance(kind, str):
        s = size // 4
        if kind == "geom72":
            return [Transform(f, tx, ty, k) for f in (False, True) for tx in (0, -s, s) for ty in (0, -s, s)
                    for k in range(4)]
        if kind == "geom8":
            return [Transform(f, 0, 0, k) for f in (False, True) for k in range(4)]
        if kind == "flip":          # section 6: {identity, horizontal flip}
            return [IDENTITY, Transform(True, 0, 0, 0)]
        if kind == "translate":         # section 6 as the authors shift: rows, content up by 7 px
            return [IDENTITY, Transform(False, 0, -SECTION6_SHIFT, 0)]
        if kind == "translate_right":   # ours: columns, content right by 7 px
            return [IDENTITY, Transform(False, SECTION6_SHIFT, 0, 0)]
        raise ValueError(f"unknown transformation set {kind!r}: use one of {SETS} or a list of Transform")
    out = [Transform(bool(t[0]), int(t[1]), int(t[2]), int(t[3]) % 4) for t in kind]
    if len(out) < 2:
        raise ValueError(f"GEOM needs at least 2 transformations to classify, got {len(out)}")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate transformations in {[str(t) for t in out]}: each label must be distinct")
    if any(abs(t.tx) >= size or abs(t.ty) >= size for t in out):
        raise ValueError(f"a translation of {size}px or more leaves no image content; use shifts below {size}")
    return out


def _shift_symmetric(a: np.ndarray, tx: int, ty: int) -> np.ndarray:
    """Translate a 2-D array, filling with numpy's 'symmetric' padding (the edge pixel is repeated, as scipy's
    'reflect' mode that the authors' Keras transform uses; torch's 'reflect' would skip the edge)."""
    h, w = a.shape
    py, px = abs(ty), abs(tx)
    padded = np.pad(a, ((py, py), (px, px)), mode="symmetric")
    return padded[py - ty: py - ty + h, px - tx: px - tx + w]


def index_maps(ts: Sequence[Transform], size: int) -> torch.Tensor:
    """(|T|, size*size) long tensor: output pixel p of transformation t reads input pixel maps[t, p]."""
    base = np.arange(size * size).reshape(size, size)
    maps = []
    for t in ts:
        a = base[:, ::-1] if t.flip else base
        if t.tx or t.ty:
            a = _shift_symmetric(a, t.tx, t.ty)
        maps.append(np.rot90(a, t.k).reshape(-1))
    return torch.from_numpy(np.ascontiguousarray(np.stack(maps))).long()


def apply(x: torch.Tensor, t_idx, maps: torch.Tensor) -> torch.Tensor:
    """Transform a batch (N, C, H, W) with one transformation index per image, in one gather (differentiable)."""
    n, c, h, w = x.shape
    if h != w or maps.shape[1] != h * w:
        raise ValueError(f"transformation maps are for {int(math.isqrt(maps.shape[1]))}px square images, got "
                         f"{h}x{w}: rotations by 90 degrees need square images of the size the maps were made for")
    t_idx = torch.as_tensor(t_idx, dtype=torch.long, device=x.device).reshape(-1)
    if t_idx.numel() != n:
        raise ValueError(f"{t_idx.numel()} transformation indices for {n} images: pass one per image")
    idx = maps.to(x.device)[t_idx].unsqueeze(1).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, idx).reshape(n, c, h, w)

