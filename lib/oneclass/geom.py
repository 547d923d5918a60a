"""GEOM: anomaly detection with geometric transformations (Golan & El-Yaniv, NeurIPS 2018).

A WRN learns to tell which of |T| geometric transformations was applied to a nominal image (a self-labelled
|T|-class problem). At test time every transformation is applied to the image; the softmax response under
transformation t is scored by a Dirichlet fitted (maximum likelihood) to the training images' responses under t.

- :func:`transformations` -- the paper's 72 (flip x translate x rotate, in the authors' index order), the
  8-element flip x rotate set, or any subset / explicit list of :class:`Transform`.
- :func:`apply` -- a batch of images, one transformation index per image, in one gather (every transformation
  here is a pixel index map, so the self-labelled set is never materialised).
- :func:`fit_dirichlet` -- Minka's fixed point with Wicker's initialisation; :func:`dirichlet_normality`,
  :func:`simplified_normality`.
- :class:`GEOM` -- ``GEOM(**hyper).fit(train, epochs=...)``, ``.score(test)`` with scores 'higher = more
  anomalous' (the negated normality score), ``.explain(images)`` gradient maps of that score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import digamma, polygamma

from . import training

EULER_GAMMA = -float(digamma(1.0))


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


def transformations(kind: str | Sequence = "geom72", size: int = 32) -> list[Transform]:
    """A transformation set.

    ``"geom72"``: the paper's 72, index t = 36*flip + 12*i_tx + 4*i_ty + k with shifts (0, -s, +s), s = size//4
    (8 at 32px, 16 at 64px). ``"geom8"``: flip x the four rotations (t = 4*flip + k). A sequence of
    :class:`Transform` (or 4-tuples) is taken as given, e.g. ``[IDENTITY, Transform(True, 0, 0, 0)]``.
    """
    if isinstance(kind, str):
        s = size // 4
        if kind == "geom72":
            return [Transform(f, tx, ty, k) for f in (False, True) for tx in (0, -s, s) for ty in (0, -s, s)
                    for k in range(4)]
        if kind == "geom8":
            return [Transform(f, 0, 0, k) for f in (False, True) for k in range(4)]
        raise ValueError(f"unknown transformation set {kind!r}: use 'geom72', 'geom8' or a list of Transform")
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


# --------------------------------------------------------------------------------------------- Dirichlet

def inverse_digamma(y: np.ndarray, newton_steps: int = 5) -> np.ndarray:
    """psi^{-1}(y) by Newton's method from Minka's starting point (5 steps reach float64 precision)."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(divide="ignore"):     # np.where evaluates the branch it then discards
        x = np.where(y >= -2.22, np.exp(np.minimum(y, 700.0)) + 0.5, -1.0 / (y + EULER_GAMMA))
    for _ in range(newton_steps):
        x = x - (digamma(x) - y) / polygamma(1, x)
    return x


@dataclass
class DirichletFit:
    alpha: np.ndarray      # (K,), or (T, K) when T Dirichlets were fitted at once
    iterations: int        # the most any of them needed
    converged: bool        # all of them


def fit_dirichlet_stats(mean_p: np.ndarray, mean_log_p: np.ndarray, max_iter: int = 1000,
                        tol: float = 1e-9) -> DirichletFit:
    """Maximum-likelihood Dirichlet from its sufficient statistics (mean of p and of log p over samples).

    Rows of 2-D inputs are independent fits (one per transformation), iterated together until each has
    converged (a converged row is frozen, so the result equals fitting the rows one by one)."""
    mean_p = np.asarray(mean_p, dtype=np.float64)
    mean_log_p = np.asarray(mean_log_p, dtype=np.float64)
    if mean_p.shape != mean_log_p.shape or mean_p.ndim not in (1, 2) or mean_p.shape[-1] < 2:
        raise ValueError(f"need mean p and mean log p of the same shape (K,) or (T, K) with K >= 2, got "
                         f"{mean_p.shape} and {mean_log_p.shape}")
    if not np.all(np.isfinite(mean_log_p)):
        raise ValueError("mean log-probability is not finite: compute log p with log_softmax, not log(softmax)")
    single = mean_p.ndim == 1
    mean_p, mean_log_p = np.atleast_2d(mean_p), np.atleast_2d(mean_log_p)
    k = mean_p.shape[1]
    # Jensen: log mean p >= mean log p; clamping to that bound keeps log(mean p) finite when p underflowed.
    with np.errstate(divide="ignore"):
        log_s = np.maximum(np.log(mean_p), mean_log_p)
    s = np.exp(log_s)
    denom = (s * (log_s - mean_log_p)).sum(1, keepdims=True)
    alpha = np.where(denom > 0, s * (k - 1) * EULER_GAMMA / np.where(denom > 0, denom, 1.0), 1.0)
    active = np.ones(len(alpha), dtype=bool)
    iterations = 0
    while active.any() and iterations < max_iter:
        iterations += 1
        a = alpha[active]
        new = inverse_digamma(digamma(a.sum(1, keepdims=True)) + mean_log_p[active])
        done = np.max(np.abs(new - a), axis=1) < tol
        alpha[active] = new
        active[np.flatnonzero(active)[done]] = False
    return DirichletFit(alpha[0] if single else alpha, iterations, not active.any())


def fit_dirichlet(log_p, max_iter: int = 1000, tol: float = 1e-9) -> DirichletFit:
    """Fit a Dirichlet to samples given as log-probabilities (N, K) (log space: zeros in p are fine)."""
    log_p = np.asarray(log_p.detach().cpu() if hasattr(log_p, "detach") else log_p, dtype=np.float64)
    if log_p.ndim != 2 or log_p.shape[0] < 2 or log_p.shape[1] < 2:
        raise ValueError(f"fit_dirichlet needs (N >= 2, K >= 2) log-probabilities, got shape {log_p.shape}")
    return fit_dirichlet_stats(np.exp(log_p).mean(0), log_p.mean(0), max_iter, tol)


def dirichlet_normality(log_p: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Simplified Dirichlet normality: mean over t of sum_k (alpha_tk - 1) log p_tk. log_p: (N, T, K), alpha:
    (T, K). Higher = more normal. (The paper sums over t; the mean orders images identically.)"""
    return ((alpha.to(log_p) - 1) * log_p).sum(-1).mean(-1)


def simplified_normality(log_p: torch.Tensor) -> torch.Tensor:
    """The paper's preliminary score: mean over t of the probability of the right transformation, p_tt."""
    return torch.diagonal(log_p, dim1=-2, dim2=-1).exp().mean(-1)


# --------------------------------------------------------------------------------------------- the method

@dataclass
class GeomScores:
    scores: np.ndarray                 # (N,) anomaly score = -normality of the chosen kind: higher = more anomalous
    maps: np.ndarray | None            # (N, h, w) gradient maps, or None
    normality: np.ndarray              # (N,) Dirichlet normality (higher = more normal), the paper's n_S
    simplified: np.ndarray             # (N,) simplified normality (higher = more normal)
    subscores: dict = field(default_factory=dict)


def prepare(images, size: int | None = None) -> torch.Tensor:
    """uint8 images (N, C, H, W) or an ImageSet -> float in [-1, 1] (the paper's only pre-processing), padded
    centrally with black (-1) to ``size`` x ``size`` (Fashion-MNIST 28 -> 32). Float input must already be in
    [-1, 1]. GEOM and its competitors (oneclass.baselines) share it."""
    x = getattr(images, "images", images)
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 127.5 - 1.0
    elif x.is_floating_point():
        if x.numel() and (x.min() < -1.001 or x.max() > 1.001):
            raise ValueError("float images must already be scaled to [-1, 1]; pass uint8 images to have them scaled")
        x = x.float()
    else:
        raise ValueError(f"images must be uint8 (0-255) or float in [-1, 1], got dtype {x.dtype}")
    h, w = x.shape[-2:]
    size = size or max(h, w)
    if h > size or w > size:
        raise ValueError(f"images are {h}x{w}, larger than the network input {size}: load them at that size "
                         "(data.load(..., size=...))")
    if (h, w) != (size, size):
        top, left = (size - h) // 2, (size - w) // 2
        x = F.pad(x, (left, size - w - left, top, size - h - top), value=-1.0)
    return x


class GEOM:
    """GEOM detector. Hyperparameters follow the paper (WRN-10-4, Adam 1e-3, batch 128, L2 5e-4).

    ``transforms``: 'geom72' (paper), 'geom8', or a list of :class:`Transform`. ``size``: the network's input
    size; smaller images are padded centrally with black (-1), as the paper pads Fashion-MNIST 28 -> 32.
    ``depth``/``widen``: None picks the paper's WRN for the size. ``score``: 'dirichlet' or 'simplified' decides
    which normality becomes ``.scores``. ``channels_last`` speeds up CPU convolutions (same numbers up to
    float rounding); ``precision='bf16'`` runs the network under bfloat16 autocast (about 2x on CPUs with
    AVX512-BF16; a budget option, the paper's numbers are float32).
    """

    def __init__(self, transforms="geom72", size: int | None = None, depth: int | None = None,
                 widen: int | None = None, lr: float = 1e-3, weight_decay: float = 5e-4, batch_size: int = 128,
                 eval_batch_size: int = 512, score: str = "dirichlet", dirichlet_max_iter: int = 1000,
                 dirichlet_tol: float = 1e-9, device: str | None = None, channels_last: bool = True,
                 precision: str = "fp32"):
        if score not in ("dirichlet", "simplified"):
            raise ValueError(f"score must be 'dirichlet' or 'simplified', got {score!r}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (batch norm), got {batch_size}")
        self.transforms_spec, self.size, self.depth, self.widen = transforms, size, depth, widen
        self.lr, self.weight_decay, self.batch_size, self.eval_batch_size = lr, weight_decay, batch_size, \
            eval_batch_size
        self.score_kind, self.dirichlet_max_iter, self.dirichlet_tol = score, dirichlet_max_iter, dirichlet_tol
        self.device = training.device(device)
        self.channels_last, self.precision = channels_last, precision
        self.net = None
        self.alpha = None
        self.history: list[float] = []

    # -- input handling
    def _prepare(self, images) -> torch.Tensor:
        return prepare(images, self.size)

    def _crop(self, maps: torch.Tensor, hw) -> torch.Tensor:
        size = maps.shape[-1]
        top, left = (size - hw[0]) // 2, (size - hw[1]) // 2
        return maps[..., top:top + hw[0], left:left + hw[1]]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            # bfloat16 convolutions run about twice as fast on CPUs with AVX512-BF16 (and on GPUs); the logits
            # go back to float32 before log_softmax so the scores keep float32's range.
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                return self.net(x).float()
        return self.net(x)

    # -- training
    def fit(self, train, epochs: float | None = None, progress: bool = False, fit_limit: int | None = None,
            seed: int | None = None) -> "GEOM":
        """Train on the self-labelled set, then fit one Dirichlet per transformation on the training images.

        ``epochs``: passes over the |T| x N self-labelled set (default ceil(200/|T|), the paper's); a fraction
        trains on that share of it. ``fit_limit``: fit the Dirichlets on at most this many training images
        (a budget cut; the paper uses all of them).
        """
        from .wrn import WRN

        x = self._prepare(train)
        n, c, size, _ = x.shape
        if n < 2:
            raise ValueError(f"GEOM needs at least 2 training images, got {n}")
        self.size = size
        self.transforms = transformations(self.transforms_spec, size)
        T = len(self.transforms)
        self.maps_ = index_maps(self.transforms, size)
        if epochs is None:
            epochs = math.ceil(200 / T)
        if epochs <= 0:
            raise ValueError(f"epochs must be positive, got {epochs}")
        depth, widen = (self.depth, self.widen)
        if depth is None or widen is None:
            depth, widen = (10, 4) if size <= 32 else (16, 8)
        gen = training.generator(seed)
        self.net = WRN(depth, widen, T, c).to(self.device)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        opt = training.optimizer(self.net.parameters(), "adam", lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, int(round(epochs * n * T)))
        steps = math.ceil(total / self.batch_size)
        self.net.train()
        self.history = []
        bar = training.progress(enabled=bool(progress), total=steps, desc="GEOM train", leave=False)
        done = 0
        while done < total:
            # One epoch = a fresh permutation of all (image, transformation) pairs.
            perm = torch.randperm(n * T, generator=gen)[: total - done]
            for start in range(0, perm.numel(), self.batch_size):
                pairs = perm[start:start + self.batch_size]
                if pairs.numel() < 2:     # a 1-sample tail batch would break batch norm
                    continue
                img, t = pairs // T, pairs % T
                xb = apply(x[img].to(self.device), t, self.maps_)
                loss = F.cross_entropy(self._forward(xb), t.to(self.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.history.append(loss.item())
                bar.update(1)
            done += perm.numel()
        bar.close()
        fit_x = x
        if fit_limit is not None and fit_limit < n:
            fit_x = x[torch.randperm(n, generator=gen)[:fit_limit]]
        mean_p, mean_log_p = self._softmax_stats(fit_x, progress)
        fit = fit_dirichlet_stats(mean_p, mean_log_p, self.dirichlet_max_iter, self.dirichlet_tol)
        self.alpha = torch.from_numpy(fit.alpha).float()
        self.dirichlet_converged_, self.dirichlet_iterations_ = fit.converged, fit.iterations
        return self

    def _check_fitted(self):
        if self.net is None or self.alpha is None:
            raise RuntimeError("GEOM is not fitted: call .fit(train_images) first")

    def _log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, T) log-softmax of every transformation of every image; one forward per transformation batch."""
        B, T = x.shape[0], len(self.transforms)
        imgs = torch.arange(B).repeat_interleave(T)
        ts = torch.arange(T).repeat(B)
        out = []
        for s in range(0, B * T, self.eval_batch_size):
            xb = apply(x[imgs[s:s + self.eval_batch_size]], ts[s:s + self.eval_batch_size], self.maps_)
            out.append(F.log_softmax(self._forward(xb).float(), dim=1))
        return torch.cat(out).reshape(B, T, T)

    def _chunk(self) -> int:
        return max(1, self.eval_batch_size // len(self.transforms))

    @torch.no_grad()
    def _softmax_stats(self, x: torch.Tensor, progress: bool):
        from .training import progress as bar

        self.net.eval()
        T = len(self.transforms)
        sum_p = torch.zeros(T, T, dtype=torch.float64)
        sum_lp = torch.zeros(T, T, dtype=torch.float64)
        for s in bar(range(0, x.shape[0], self._chunk()), bool(progress), desc="GEOM Dirichlet fit", leave=False):
            lp = self._log_probs(x[s:s + self._chunk()].to(self.device)).double().cpu()
            sum_lp += lp.sum(0)
            sum_p += lp.exp().sum(0)
        return (sum_p / x.shape[0]).numpy(), (sum_lp / x.shape[0]).numpy()

    # -- scoring
    @torch.no_grad()
    def normality(self, images, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(Dirichlet normality, simplified normality) per image; higher = more normal."""
        from .training import progress as bar

        self._check_fitted()
        x = self._prepare(images)
        self.net.eval()
        dn, sn = [], []
        for s in bar(range(0, x.shape[0], self._chunk()), bool(progress), desc="GEOM score", leave=False):
            lp = self._log_probs(x[s:s + self._chunk()].to(self.device))
            dn.append(dirichlet_normality(lp, self.alpha).cpu())
            sn.append(simplified_normality(lp).cpu())
        return torch.cat(dn).double().numpy(), torch.cat(sn).double().numpy()

    def score(self, test, maps: bool = False, progress: bool = False) -> GeomScores:
        """Scores with 'higher = more anomalous' (the negated normality); ``maps=True`` adds gradient maps."""
        dn, sn = self.normality(test, progress)
        scores = -(dn if self.score_kind == "dirichlet" else sn)
        return GeomScores(scores=scores, maps=self.explain(test, progress=progress) if maps else None,
                          normality=dn, simplified=sn,
                          subscores={"normality_dirichlet": dn, "normality_simplified": sn})

    def explain(self, images, progress: bool = False) -> np.ndarray:
        """|d anomaly score / d pixel| summed over channels, at the images' own size (N, H, W).

        Beyond the paper: GEOM has no localisation of its own; this is the plain gradient heatmap the FCDD paper
        uses for its HSC baseline. The gradient flows back through every transformation to the original
        pixels, so the map is in the untransformed image's frame.
        """
        from .training import progress as bar

        self._check_fitted()
        raw = getattr(images, "images", images)
        hw = tuple(raw.shape[-2:])
        x = self._prepare(images)
        self.net.eval()
        out = []
        for s in bar(range(0, x.shape[0], self._chunk()), bool(progress), desc="GEOM explain", leave=False):
            xb = x[s:s + self._chunk()].to(self.device).requires_grad_(True)
            lp = self._log_probs(xb)
            n = dirichlet_normality(lp, self.alpha) if self.score_kind == "dirichlet" else simplified_normality(lp)
            (g,) = torch.autograd.grad(-n.sum(), xb)
            out.append(self._crop(g.abs().sum(1), hw).cpu())
        return torch.cat(out).numpy()

    def maximize_normality(self, images, steps: int = 200, lr: float = 0.01, kind: str = "simplified",
                           clamp: bool = True) -> np.ndarray:
        """Gradient ascent on the input to raise the normality score (the paper's Figure 1); returns uint8-range
        floats in [-1, 1]. ``kind``: 'simplified' (the paper's choice for this figure) or 'dirichlet'."""
        self._check_fitted()
        x = self._prepare(images).to(self.device).clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        self.net.eval()
        for _ in range(steps):
            lp = self._log_probs(x)
            n = simplified_normality(lp) if kind == "simplified" else dirichlet_normality(lp, self.alpha)
            opt.zero_grad()
            (-n.sum()).backward()
            opt.step()
            if clamp:
                with torch.no_grad():
                    x.clamp_(-1, 1)
        hw = tuple(getattr(images, "images", images).shape[-2:])
        return self._crop(x.detach(), hw).cpu().numpy()


# --------------------------------------------------------------------------------------------- data set-up

# How each dataset is loaded for GEOM (load size, channels) and the network's input size (section 5.2):
# Fashion-MNIST stays 28px and is padded to 32 with black inside GEOM; CatsVsDogs is resized to 64px.
DATA = {
    "cifar10": (32, 3, 32), "cifar100_coarse": (32, 3, 32), "fmnist": (28, 1, 32), "catsvsdogs": (64, 3, 64),
    "mnist": (28, 1, 28),
}


def data_setup(dataset: str) -> tuple[int, int, int]:
    """(load size, channels, network input size) of a dataset, as the paper pre-processes it."""
    from .data import canonical

    name = canonical(dataset)
    if name not in DATA:
        raise ValueError(f"GEOM has no pre-processing for {dataset!r}; known: {sorted(DATA)}")
    return DATA[name]


def transformed(images, transforms="geom72", size: int | None = None) -> np.ndarray:
    """Every transformation of every image, for display: uint8 (N, |T|, C, S, S), padded to ``size`` as GEOM
    pads its inputs."""
    det = GEOM(transforms, size=size)
    x = det._prepare(images)
    ts = transformations(transforms, x.shape[-1])
    n, T = x.shape[0], len(ts)
    out = apply(x.repeat_interleave(T, 0), torch.arange(T).repeat(n), index_maps(ts, x.shape[-1]))
    return ((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).reshape(n, T, *x.shape[1:]).numpy()
