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
  anomalous' (the negated normality score; ``subscores`` keep both normality scores), gradient maps of that score.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import training
from ..base import Detector, Scores, seeded
from .dirichlet import dirichlet_normality, fit_dirichlet_stats, simplified_normality
from .transforms import apply, index_maps, transformations
from .intuition import IntuitionNet, authors_ascent
from .wrn import WRN

NETS = ("wrn", "intuition")

# --------------------------------------------------------------------------------------------- the method

PIXEL_RANGES = {"minus1_1": -1.0, "unit": 0.0}     # the lower end of the pixel scale; the upper end is 1


def prepare(images, size: int | None = None, low: float = -1.0) -> torch.Tensor:
    """uint8 images (N, C, H, W) or an ImageSet -> float in [-1, 1] (the paper's only pre-processing), padded
    centrally with black (-1) to ``size`` x ``size`` (Fashion-MNIST 28 -> 32). Float input must already be in
    [-1, 1]. GEOM and its competitors (oneclass.methods.baselines) share it. ``low=0``: [0, 1] and black 0 (the
    authors' section-6 scaling)."""
    x = getattr(images, "images", images)
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() * ((1.0 - low) / 255.0) + low
    elif x.is_floating_point():
        if x.numel() and (x.min() < low - 0.001 or x.max() > 1.001):
            raise ValueError(f"float images must already be scaled to [{low:g}, 1]; pass uint8 images to have them "
                             "scaled")
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
        x = F.pad(x, (left, size - w - left, top, size - h - top), value=low)
    return x


def crop_center(maps: torch.Tensor, hw) -> torch.Tensor:
    """The central ``hw`` window of maps made on padded inputs (undoes :func:`prepare`'s padding)."""
    size = maps.shape[-1]
    top, left = (size - hw[0]) // 2, (size - hw[1]) // 2
    return maps[..., top:top + hw[0], left:left + hw[1]]


class GEOM(Detector):
    """GEOM detector. Hyperparameters follow the paper (WRN-10-4, Adam 1e-3, batch 128, L2 5e-4).

    ``transforms``: 'geom72' (paper), 'geom8', or a list of :class:`Transform`. ``size``: the network's input
    size; smaller images are padded centrally with black (-1), as the paper pads Fashion-MNIST 28 -> 32.
    ``depth``/``widen``: None picks the paper's WRN for the size. ``score_kind``: 'dirichlet' or 'simplified'
    decides which normality becomes ``.scores``. ``fit_limit``: fit the Dirichlets on at most this many training
    images (a budget cut; the paper uses all of them). ``channels_last`` speeds up CPU convolutions (same numbers
    up to float rounding); ``precision``: 'auto' (bf16 only where the hardware has it natively), 'fp32', 'bf16'
    (an autocast of the network; the paper's numbers are float32). ``monitor_fit``: training images the
    Dirichlets of a learning curve's intermediate points are fitted on. ``net``: 'wrn' (the paper's) or
    'intuition' (the authors' small flatten network of section 6, :mod:`.intuition`); ``pixel_range``:
    'minus1_1' (the paper's [-1, 1]) or 'unit' ([0, 1], black padding 0: the authors' section-6 scaling).
    """

    def __init__(self, transforms="geom72", size: int | None = None, depth: int | None = None,
                 widen: int | None = None, lr: float = 1e-3, weight_decay: float = 5e-4, batch_size: int = 128,
                 eval_batch_size: int = 512, score_kind: str = "dirichlet", fit_limit: int | None = None,
                 dirichlet_max_iter: int = 1000, dirichlet_tol: float = 1e-9, seed: int | None = None,
                 device=None, channels_last: bool = True, precision: str = "fp32", monitor_fit: int = 500,
                 net: str = "wrn", pixel_range: str = "minus1_1"):
        if score_kind not in ("dirichlet", "simplified"):
            raise ValueError(f"score_kind must be 'dirichlet' or 'simplified', got {score_kind!r}")
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (batch norm), got {batch_size}")
        if net not in NETS:
            raise ValueError(f"net must be one of {' | '.join(NETS)}, got {net!r}")
        if pixel_range not in PIXEL_RANGES:
            raise ValueError(f"pixel_range must be one of {' | '.join(PIXEL_RANGES)}, got {pixel_range!r}")
        self.net, self.pixel_range = net, pixel_range
        self.transforms, self.size, self.depth, self.widen = transforms, size, depth, widen
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.eval_batch_size, self.score_kind, self.fit_limit = eval_batch_size, score_kind, fit_limit
        self.dirichlet_max_iter, self.dirichlet_tol = dirichlet_max_iter, dirichlet_tol
        self.seed, self.device, self.channels_last, self.precision = seed, device, channels_last, precision
        self.monitor_fit = monitor_fit

    # -- input handling
    def _prepare(self, images) -> torch.Tensor:
        return prepare(images, getattr(self, "size_", self.size), PIXEL_RANGES[self.pixel_range])

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # under bf16 the logits go back to float32 before log_softmax so the scores keep float32's range
        with self._autocast():
            return self.net_(x).float()

    # -- training
    def fit(self, train, epochs: float | None = None, progress: bool | None = False, *, monitor=None) -> "GEOM":
        """Train on the self-labelled set, then fit one Dirichlet per transformation on the training images.

        ``epochs``: passes over the |T| x N self-labelled set (default ceil(200/|T|), the paper's); a fraction
        trains on that share of it. ``monitor``: a :class:`oneclass.monitor.Monitor`; its points before the end
        score with Dirichlets fitted on at most ``monitor_fit`` training images (see :meth:`monitor_scores`).
        """
        self._setup()
        dev = self.device_
        x = self._prepare(train)
        n, c, size, _ = x.shape
        if n < 2:
            raise ValueError(f"GEOM needs at least 2 training images, got {n}")
        self.size_ = size
        self.transforms_ = transformations(self.transforms, size)
        T = len(self.transforms_)
        self.maps_ = index_maps(self.transforms_, size).to(dev)
        if epochs is None:
            epochs = math.ceil(200 / T)
        if epochs <= 0:
            raise ValueError(f"epochs must be positive, got {epochs}")
        depth, widen = (self.depth, self.widen)
        if depth is None or widen is None:
            depth, widen = (10, 4) if size <= 32 else (16, 8)
        gen = training.generator(self.seed_)
        with seeded(self.seed_):
            self.net_ = (WRN(depth, widen, T, c) if self.net == "wrn" else IntuitionNet(c, size, T)).to(dev)
        if self.channels_last:
            self.net_ = self.net_.to(memory_format=torch.channels_last)
        opt = training.optimizer(self.net_.parameters(), "adam", lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, int(round(epochs * n * T)))
        steps = math.ceil(total / self.batch_size)
        x = x.to(dev)
        if monitor is not None:
            # the Dirichlets of the curve's points: fitted on a fixed subset drawn by a generator of its own
            pick = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed_ + 7))[:self.monitor_fit]
            self._monitor_x = x[pick.to(dev)]
            monitor.start(self, math.ceil(n * T / self.batch_size))
        self.net_.train()
        self.history_ = []
        bar = training.progress(enabled=bool(progress), total=steps, desc="GEOM train", leave=False)
        done = 0
        while done < total:
            # One epoch = a fresh permutation of all (image, transformation) pairs.
            perm = torch.randperm(n * T, generator=gen)[: total - done]
            for start in range(0, perm.numel(), self.batch_size):
                pairs = perm[start:start + self.batch_size].to(dev)
                if pairs.numel() < 2:     # a 1-sample tail batch would break batch norm
                    continue
                img, t = pairs // T, pairs % T
                xb = apply(x[img], t, self.maps_)
                loss = F.cross_entropy(self._forward(xb), t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.history_.append(training.check_loss(loss.item(), (done + start) // (n * T) + 1, "GEOM"))
                if monitor is not None:
                    monitor.step(self, self.history_[-1])
                bar.update(1)
            done += perm.numel()
        bar.close()
        self.net_.eval()
        fit_x = x
        if self.fit_limit is not None and self.fit_limit < n:
            fit_x = x[torch.randperm(n, generator=gen)[:self.fit_limit].to(dev)]
        mean_p, mean_log_p = self._softmax_stats(fit_x, progress)
        fit = fit_dirichlet_stats(mean_p, mean_log_p, self.dirichlet_max_iter, self.dirichlet_tol)
        self.alpha_ = torch.from_numpy(fit.alpha).float()
        self.dirichlet_converged_, self.dirichlet_iterations_ = fit.converged, fit.iterations
        self._fitted = True
        if monitor is not None:
            self.__dict__.pop("_monitor_x", None)
            monitor.finish(self)
        return self

    def monitor_scores(self, images) -> np.ndarray:
        """Anomaly scores mid-training (the learning curve's points): the Dirichlet score with the Dirichlets
        fitted, at this point of training, on the monitor's fixed subset of at most ``monitor_fit`` training
        images (the finished detector fits them on every training image)."""
        mean_p, mean_log_p = self._softmax_stats(self._monitor_x, False)
        fit = fit_dirichlet_stats(mean_p, mean_log_p, self.dirichlet_max_iter, self.dirichlet_tol)
        saved = getattr(self, "alpha_", None)
        self.alpha_ = torch.from_numpy(fit.alpha).float()
        try:
            dn, sn = self.normality(images)
        finally:
            if saved is None:
                del self.alpha_
            else:
                self.alpha_ = saved
        return -(dn if self.score_kind == "dirichlet" else sn)

    def _log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, T) log-softmax of every transformation of every image; one forward per transformation batch."""
        B, T = x.shape[0], len(self.transforms_)
        imgs = torch.arange(B, device=x.device).repeat_interleave(T)
        ts = torch.arange(T, device=x.device).repeat(B)
        out = []
        for s in range(0, B * T, self.eval_batch_size):
            xb = apply(x[imgs[s:s + self.eval_batch_size]], ts[s:s + self.eval_batch_size], self.maps_)
            out.append(F.log_softmax(self._forward(xb).float(), dim=1))
        return torch.cat(out).reshape(B, T, T)

    def _chunk(self) -> int:
        return max(1, self.eval_batch_size // len(self.transforms_))

    @torch.no_grad()
    def _softmax_stats(self, x: torch.Tensor, progress: bool):
        T = len(self.transforms_)
        sum_p = torch.zeros(T, T, dtype=torch.float64)
        sum_lp = torch.zeros(T, T, dtype=torch.float64)
        for s in training.progress(range(0, x.shape[0], self._chunk()), bool(progress), desc="GEOM Dirichlet fit",
                                   leave=False):
            lp = self._log_probs(x[s:s + self._chunk()].to(self.device_)).double().cpu()
            sum_lp += lp.sum(0)
            sum_p += lp.exp().sum(0)
        return (sum_p / x.shape[0]).numpy(), (sum_lp / x.shape[0]).numpy()

    def _normality(self, lp: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        kind = kind or self.score_kind
        return dirichlet_normality(lp, self.alpha_.to(lp.device)) if kind == "dirichlet" else simplified_normality(lp)

    # -- scoring
    @torch.no_grad()
    def normality(self, images, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(Dirichlet normality, simplified normality) per image; higher = more normal."""
        self._check_fitted()
        x = self._prepare(images)
        self.net_.eval()
        dn, sn = [], []
        for s in training.progress(range(0, x.shape[0], self._chunk()), bool(progress), desc="GEOM score",
                                   leave=False):
            lp = self._log_probs(x[s:s + self._chunk()].to(self.device_))
            dn.append(self._normality(lp, "dirichlet").cpu())
            sn.append(simplified_normality(lp).cpu())
        return torch.cat(dn).double().numpy(), torch.cat(sn).double().numpy()

    def score(self, test, maps: bool = True, progress: bool = False) -> Scores:
        """Scores with 'higher = more anomalous' (the negated normality); ``maps`` adds gradient maps.
        ``subscores``: ``normality_dirichlet`` (the paper's n_S) and ``normality_simplified``, higher = more
        normal."""
        dn, sn = self.normality(test, progress)
        scores = -(dn if self.score_kind == "dirichlet" else sn)
        return Scores(scores, self.explain(test, progress=progress) if maps else None,
                      subscores={"normality_dirichlet": dn, "normality_simplified": sn})

    def explain(self, images, progress: bool = False) -> np.ndarray:
        """|d anomaly score / d pixel| summed over channels, at the images' own size (N, H, W).

        Beyond the paper: GEOM has no localisation of its own; this is the plain gradient heatmap the FCDD paper
        uses for its HSC baseline. The gradient flows back through every transformation to the original
        pixels, so the map is in the untransformed image's frame.
        """
        self._check_fitted()
        raw = getattr(images, "images", images)
        hw = tuple(raw.shape[-2:])
        x = self._prepare(images)
        self.net_.eval()
        out = []
        for s in training.progress(range(0, x.shape[0], self._chunk()), bool(progress), desc="GEOM explain",
                                   leave=False):
            xb = x[s:s + self._chunk()].to(self.device_).requires_grad_(True)
            n = self._normality(self._log_probs(xb))
            (g,) = torch.autograd.grad(-n.sum(), xb)
            out.append(crop_center(g.abs().sum(1), hw).cpu())
        return torch.cat(out).numpy()

    def maximize_normality(self, images, steps: int = 200, lr: float = 0.01, kind: str = "simplified",
                           clamp: bool = True, rule: str = "adam") -> np.ndarray:
        """Gradient ascent on the input to raise the normality score (the paper's Figure 1); returns floats in the
        detector's pixel range. ``kind``: 'simplified' (the paper's choice for this figure) or 'dirichlet'.
        ``rule``: 'adam' (ours: Adam at ``lr``, clamped to the pixel range) or 'authors' (the authors' code:
        :func:`.intuition.authors_ascent`, which needs ``pixel_range='unit'``; ``lr`` and ``clamp`` unused)."""
        self._check_fitted()
        if rule not in ("adam", "authors"):
            raise ValueError(f"rule must be 'adam' or 'authors', got {rule!r}")
        x = self._prepare(images).to(self.device_)
        self.net_.eval()
        hw = tuple(getattr(images, "images", images).shape[-2:])
        if rule == "authors":
            if self.pixel_range != "unit":
                raise ValueError("the authors' ascent rule works on images in [0, 1]: use pixel_range='unit'")
            out = authors_ascent(lambda v: self._normality(self._log_probs(v), kind), x, steps)
            return crop_center(out, hw).cpu().numpy()
        x = x.clone().requires_grad_(True)
        low = PIXEL_RANGES[self.pixel_range]
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            n = self._normality(self._log_probs(x), kind)
            opt.zero_grad()
            (-n.sum()).backward()
            opt.step()
            if clamp:
                with torch.no_grad():
                    x.clamp_(low, 1)
        return crop_center(x.detach(), hw).cpu().numpy()


# --------------------------------------------------------------------------------------------- data set-up

# How each dataset is loaded for GEOM (load size, channels) and the network's input size (section 5.2):
# Fashion-MNIST stays 28px and is padded to 32 with black inside GEOM; CatsVsDogs is resized to 64px.
DATA = {
    "cifar10": (32, 3, 32), "cifar100_coarse": (32, 3, 32), "fmnist": (28, 1, 32), "catsvsdogs": (64, 3, 64),
    "mnist": (28, 1, 28),
}


def check_parameters(p: dict) -> list[str]:
    """What a GEOM notebook's parameters cannot run with, found before any data is read: a WRN depth that is
    not 6n + 4, a width without a depth (or the reverse)."""
    problems = []
    depth, widen = p.get("depth"), p.get("widen")
    if depth is not None and (depth < 10 or (depth - 4) % 6):
        problems.append(f"depth {depth} is not a WRN depth: it must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...)")
    if (depth is None) != (widen is None):
        problems.append(f"depth and widen go together (got depth={depth!r}, widen={widen!r}): set both, or "
                        "neither for the paper's WRN")
    return problems


def data_setup(dataset: str) -> tuple[int, int, int]:
    """(load size, channels, network input size) of a dataset, as the paper pre-processes it."""
    from ...data import canonical

    name = canonical(dataset)
    if name not in DATA:
        raise ValueError(f"GEOM has no pre-processing for {dataset!r}; known: {sorted(DATA)}")
    return DATA[name]


def input_shape(dataset: str) -> tuple[int, int]:
    """(size, channels) GEOM loads ``dataset`` at (the network size may be larger: :func:`data_setup`)."""
    size, channels, _ = data_setup(dataset)
    return size, channels


def transformed(images, transforms="geom72", size: int | None = None) -> np.ndarray:
    """Every transformation of every image, for display: uint8 (N, |T|, C, S, S), padded to ``size`` as GEOM
    pads its inputs."""
    x = prepare(images, size)
    ts = transformations(transforms, x.shape[-1])
    n, T = x.shape[0], len(ts)
    out = apply(x.repeat_interleave(T, 0), torch.arange(T).repeat(n), index_maps(ts, x.shape[-1]))
    return ((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).reshape(n, T, *x.shape[1:]).numpy()
