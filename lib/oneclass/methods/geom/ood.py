"""GEOM paper (001), section 5.5: out-of-distribution detection in a labelled multi-class set, and its baseline
ODIN (Liang et al., ICLR 2018).

The paper gives the idea in one paragraph: a WRN with two softmax heads, one for the dataset's categories (used
only in training) and one for the transformations (GEOM), scored with the simplified normality score; trained on
CIFAR-10, tested against resized Tiny-ImageNet images as ODIN does. The rest is from the authors' public code
(``multiclass_experiment.py``; facts taken from it, the code is ours):

* :class:`TwoHeadWRN`: WRN-16-8 whose pooled features feed both heads; each training image gets one random
  transformation of the 72 per step, its loss is cross-entropy of the category head plus cross-entropy of the
  transformation head; SGD with Nesterov momentum 0.9, lr 0.1, x0.2 at epochs 60, 120 and 160 of 200, batch
  128, weight decay 5e-4 (Keras' l2 of half that), no other augmentation (the transformations are it).
* Score: the simplified normality, mean over t of p(t | T_t(x)) from the transformation head.
* ODIN's classifier (:class:`ODIN`), as the authors trained their plain CIFAR-10 WRN: the same network and
  schedule with one head, horizontal flips and shifts of up to 4 px (reflected borders). ODIN scores the
  temperature-scaled maximum softmax of an input moved by epsilon against the gradient of its own loss; ODIN's
  paper tunes the temperature T and epsilon on 1,000 out-of-distribution images (T in 1 ... 1000, epsilon in 21
  steps from 0 to 0.004, by the false-positive rate at 95% true-positive rate): :meth:`ODIN.tune`.

Epsilon is in units of [0, 1] pixels (ODIN's images before normalisation); our inputs are in [-1, 1], so the step
is 2 epsilon there.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import training
from ..base import Detector, Scores, seeded
from .detector import prepare
from .dirichlet import simplified_normality
from .transforms import apply, index_maps, transformations
from .wrn import WRN

# the authors' multi-class schedule: x0.2 at these fractions of the run (epochs 60, 120, 160 of 200)
MILESTONES = (0.3, 0.6, 0.8)
ODIN_TEMPERATURES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
ODIN_EPSILONS = tuple(float(e) for e in np.linspace(0, 0.004, 21))


class TwoHeadWRN(WRN):
    """A WRN whose pooled features feed a transformation head (``head``, what GEOM scores) and a category head
    (``class_head``, training only)."""

    def __init__(self, depth: int, widen: int, n_transforms: int, n_classes: int, in_channels: int = 3):
        super().__init__(depth, widen, n_transforms, in_channels)
        self.class_head = nn.Linear(self.head.in_features, n_classes)
        nn.init.kaiming_normal_(self.class_head.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.class_head.bias)

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.head(f), self.class_head(f)


def _milestones(epochs: float) -> list[int]:
    return sorted({max(1, round(f * epochs)) for f in MILESTONES})


def _sgd(net, lr, weight_decay, epochs):
    opt = training.optimizer(net.parameters(), "sgd", lr=lr, weight_decay=weight_decay, momentum=0.9)
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, _milestones(epochs), gamma=0.2)


def _train_epochs(det, n: int, per_epoch: int, epochs: float, opt, sched, batch_loss, desc: str, progress) -> None:
    """The SGD loop both section-5.5 networks share: ``round(epochs * per_epoch)`` steps over fresh permutations of
    the ``n`` images (``det.batch_size`` each; a last batch of one image is skipped), the scheduler stepped once per
    ``per_epoch`` steps; ``batch_loss(idx, gen)`` gives a batch's loss. Sets ``det.history_``."""
    gen = training.generator(det.seed_)
    steps = max(1, round(epochs * per_epoch))
    det.history_ = []
    det.net_.train()
    bar = training.progress(enabled=bool(progress), total=steps, desc=desc, leave=False)
    step = 0
    while step < steps:
        perm = torch.randperm(n, generator=gen)
        for b in range(per_epoch):
            idx = perm[b * det.batch_size:(b + 1) * det.batch_size]
            if step == steps or len(idx) < 2:
                break
            loss = batch_loss(idx, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            det.history_.append(training.check_loss(loss.item(), step // per_epoch + 1, desc))
            bar.update(1)
            if step % per_epoch == 0:
                sched.step()
    bar.close()
    det.net_.eval()


def _labels(train) -> torch.Tensor:
    labels = getattr(train, "labels", None)
    if labels is None:
        raise ValueError("section 5.5's models train on a labelled multi-class set: pass an ImageSet with labels")
    return torch.as_tensor(labels).long()


class GEOMOOD(Detector):
    """Section 5.5's two-headed GEOM: ``fit(train)`` on labelled images (all classes in-distribution),
    ``score(test)``: minus the simplified normality (higher = more out-of-distribution)."""

    gives_maps = False

    def __init__(self, transforms="geom72", depth: int = 16, widen: int = 8, lr: float = 0.1,
                 weight_decay: float = 5e-4, batch_size: int = 128, eval_batch_size: int = 512,
                 seed: int | None = None, device=None, precision: str = "fp32"):
        self.transforms, self.depth, self.widen, self.lr = transforms, depth, widen, lr
        self.weight_decay, self.batch_size, self.eval_batch_size = weight_decay, batch_size, eval_batch_size
        self.seed, self.device, self.precision = seed, device, precision

    def fit(self, train, epochs: float = 200, progress: bool | None = False) -> "GEOMOOD":
        """``epochs`` passes over the images (each image one random transformation per pass, ``n // batch``
        steps: the last partial batch is dropped, as Keras' ``steps_per_epoch``)."""
        self._setup()
        dev = self.device_
        x, y = prepare(train), _labels(train)
        n, c, size, _ = x.shape
        if n < self.batch_size:
            raise ValueError(f"{n} training images for batches of {self.batch_size}: lower batch_size")
        self.size_ = size
        self.transforms_ = transformations(self.transforms, size)
        self.maps_ = index_maps(self.transforms_, size).to(dev)
        T = len(self.transforms_)
        self.n_classes_ = int(y.max()) + 1
        with seeded(self.seed_):
            self.net_ = TwoHeadWRN(self.depth, self.widen, T, self.n_classes_, c).to(dev)
        opt, sched = _sgd(self.net_, self.lr, self.weight_decay, epochs)

        def batch_loss(idx, gen):
            t = torch.randint(0, T, (len(idx),), generator=gen)
            xb = apply(x[idx].to(dev), t.to(dev), self.maps_)
            with self._autocast():
                t_logits, c_logits = self.net_.both(xb)
            return F.cross_entropy(t_logits.float(), t.to(dev)) + F.cross_entropy(c_logits.float(), y[idx].to(dev))

        # n // batch steps per epoch: the last partial batch is dropped, as Keras' steps_per_epoch
        _train_epochs(self, n, n // self.batch_size, epochs, opt, sched, batch_loss, "GEOM two heads", progress)
        self._fitted = True
        return self

    @torch.no_grad()
    def normality(self, images) -> np.ndarray:
        """The simplified normality of each image: mean over t of p(t | T_t(x)) from the transformation head."""
        self._check_fitted()
        x = prepare(images, self.size_)
        T = len(self.transforms_)
        chunk = max(1, self.eval_batch_size // T)
        out = []
        for s in range(0, len(x), chunk):
            xb = x[s:s + chunk].to(self.device_)
            B = len(xb)
            ts = torch.arange(T, device=xb.device).repeat(B)
            with self._autocast():
                logits = self.net_(apply(xb.repeat_interleave(T, 0), ts, self.maps_)).float()
            out.append(simplified_normality(F.log_softmax(logits, 1).reshape(B, T, T)).cpu())
        return torch.cat(out).double().numpy()

    def tune(self, val_in, val_out) -> "GEOMOOD":
        """Nothing to tune: GEOM uses no out-of-distribution images (the held-out ones stay unused)."""
        return self

    def summary(self) -> dict:
        """What a run records beside its metrics (ODIN: its chosen temperature and epsilon; here nothing)."""
        return {}

    def score(self, test, maps: bool = False) -> Scores:
        n = self.normality(test)
        return Scores(-n, None, subscores={"normality_simplified": n})


def fpr_at_tpr(in_normality: np.ndarray, out_normality: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate (out-of-distribution images accepted) at the threshold that keeps ``tpr`` of the
    in-distribution images (higher normality = more in-distribution): ODIN's tuning criterion."""
    threshold = np.quantile(np.asarray(in_normality, dtype=np.float64), 1 - tpr)
    return float(np.mean(np.asarray(out_normality) >= threshold))


class ODIN(Detector):
    """ODIN on a plain classifier (see the module docstring). ``temperature`` / ``epsilon``: fixed values, or
    None to be chosen by :meth:`tune` on held-out in- and out-of-distribution images."""

    gives_maps = False

    def __init__(self, depth: int = 16, widen: int = 8, lr: float = 0.1, weight_decay: float = 5e-4,
                 batch_size: int = 128, shift: int = 4, temperature: float | None = None,
                 epsilon: float | None = None, temperatures=ODIN_TEMPERATURES, epsilons=ODIN_EPSILONS,
                 eval_batch_size: int = 256, seed: int | None = None, device=None, precision: str = "fp32"):
        self.depth, self.widen, self.lr, self.weight_decay = depth, widen, lr, weight_decay
        self.batch_size, self.shift, self.temperature, self.epsilon = batch_size, shift, temperature, epsilon
        self.temperatures, self.epsilons, self.eval_batch_size = list(temperatures), list(epsilons), eval_batch_size
        self.seed, self.device, self.precision = seed, device, precision

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Random horizontal flips and shifts of up to ``shift`` px with reflected borders, per image."""
        n, _, h, w = x.shape
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        if not self.shift:
            return x
        s = self.shift
        padded = F.pad(x, (s, s, s, s), mode="reflect")
        dy, dx = (torch.randint(0, 2 * s + 1, (n,), generator=gen) for _ in range(2))
        rows = (dy[:, None] + torch.arange(h)).to(x.device)
        cols = (dx[:, None] + torch.arange(w)).to(x.device)
        return padded[torch.arange(n, device=x.device)[:, None, None, None],
                      torch.arange(x.shape[1], device=x.device)[None, :, None, None],
                      rows[:, None, :, None], cols[:, None, None, :]]

    def fit(self, train, epochs: float = 200, progress: bool | None = False) -> "ODIN":
        self._setup()
        dev = self.device_
        x, y = prepare(train), _labels(train)
        n, c, size, _ = x.shape
        if n < self.batch_size:
            raise ValueError(f"{n} training images for batches of {self.batch_size}: lower batch_size")
        self.size_ = size
        self.n_classes_ = int(y.max()) + 1
        with seeded(self.seed_):
            self.net_ = WRN(self.depth, self.widen, self.n_classes_, c).to(dev)
        opt, sched = _sgd(self.net_, self.lr, self.weight_decay, epochs)

        def batch_loss(idx, gen):
            xb = self._augment(x[idx].to(dev), gen)
            with self._autocast():
                return F.cross_entropy(self.net_(xb).float(), y[idx].to(dev))

        # Keras' flow: every image once per epoch
        _train_epochs(self, n, math.ceil(n / self.batch_size), epochs, opt, sched, batch_loss, "ODIN classifier",
                      progress)
        self.temperature_, self.epsilon_ = self.temperature, self.epsilon
        self._fitted = True
        return self

    def _loss_sign(self, x: torch.Tensor, temperature: float) -> torch.Tensor:
        """sign(grad_x -log S_yhat(x; T)) per image, yhat the predicted class."""
        x = x.detach().clone().requires_grad_(True)
        logits = self.net_(x).float() / temperature
        (g,) = torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1), reduction="sum"), x)
        return g.sign()

    def perturb(self, x: torch.Tensor, temperature: float, epsilon: float) -> torch.Tensor:
        """ODIN's input preprocessing: x - epsilon * sign(-grad_x log S_yhat(x; T)), yhat the predicted class, in
        [-1, 1] units (2 epsilon)."""
        return (x.detach() - 2.0 * epsilon * self._loss_sign(x, temperature)).detach()

    def _max_softmax(self, images, pairs) -> np.ndarray:
        """(len(pairs), N) max softmax of each image for each (T, epsilon); one gradient per temperature."""
        x = prepare(images, self.size_)
        out = np.zeros((len(pairs), len(x)))
        temps = sorted({t for t, _ in pairs})
        for s in range(0, len(x), self.eval_batch_size):
            xb = x[s:s + self.eval_batch_size].to(self.device_)
            for temp in temps:
                sign = self._loss_sign(xb, temp)          # one gradient per temperature, every epsilon reuses it
                with torch.no_grad():
                    for k, (t, eps) in enumerate(pairs):
                        if t == temp:
                            moved = xb - 2.0 * eps * sign
                            p = F.softmax(self.net_(moved).float() / t, 1).max(1).values
                            out[k, s:s + len(xb)] = p.cpu().numpy()
        return out

    def tune(self, val_in, val_out) -> "ODIN":
        """Choose temperature and epsilon (those not fixed at construction) on held-out in- and
        out-of-distribution images by the smallest false-positive rate at 95% true-positive rate (ties: the first
        in grid order). ``tuning_`` keeps the grid's rates."""
        self._check_fitted()
        temps = [self.temperature] if self.temperature is not None else self.temperatures
        epss = [self.epsilon] if self.epsilon is not None else self.epsilons
        pairs = [(t, e) for t in temps for e in epss]
        s_in, s_out = self._max_softmax(val_in, pairs), self._max_softmax(val_out, pairs)
        rates = [fpr_at_tpr(a, b) for a, b in zip(s_in, s_out)]
        best = int(np.argmin(rates))
        self.temperature_, self.epsilon_ = pairs[best]
        self.tuning_ = {"temperature": [p[0] for p in pairs], "epsilon": [p[1] for p in pairs], "fpr95": rates}
        return self

    def summary(self) -> dict:
        """The temperature and epsilon it scores with, and the tuning images' false-positive rate at 95% TPR."""
        out = {"temperature": self.temperature_, "epsilon": self.epsilon_}
        return out | ({"tuning_fpr95": min(self.tuning_["fpr95"])} if hasattr(self, "tuning_") else {})

    def score(self, test, maps: bool = False) -> Scores:
        self._check_fitted()
        if self.temperature_ is None or self.epsilon_ is None:
            raise RuntimeError("ODIN has no temperature / epsilon: pass them to the constructor or call "
                               ".tune(val_in, val_out) first")
        n = self._max_softmax(test, [(self.temperature_, self.epsilon_)])[0]
        return Scores(-n, None, subscores={"max_softmax": n})


METHODS = {"geom": GEOMOOD, "odin": ODIN}
PAPER_NAMES = {"geom": "GEOM", "odin": "ODIN"}          # section 5.5's names (reported/geom.csv)


def make(method: str, temperatures=None, epsilons=None, **hyper) -> Detector:
    """Section 5.5's detector by name: 'geom' (:class:`GEOMOOD`) or 'odin' (:class:`ODIN`, with ODIN's grids
    where ``temperatures`` / ``epsilons`` are None); ``hyper`` are the constructor's shared arguments."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {' | '.join(METHODS)}")
    if method == "odin":
        hyper |= {"temperatures": temperatures or ODIN_TEMPERATURES, "epsilons": epsilons or ODIN_EPSILONS}
    return METHODS[method](**hyper)


class OODSplit(NamedTuple):
    train: object       # ImageSet: the in-distribution classes' training images, labels 0..k-1 in ``classes`` order
    tune_in: object     # held out for ODIN's tuning, never scored
    tune_out: object
    test_in: object     # scored: anomaly 0
    test_out: object    # scored: anomaly 1
    classes: list

    def test(self) -> tuple[torch.Tensor, np.ndarray]:
        """The scored images (in-distribution first) and their anomaly labels."""
        images = torch.cat([self.test_in.images, self.test_out.images])
        return images, np.r_[np.zeros(len(self.test_in), int), np.ones(len(self.test_out), int)]


def ood_split(dataset: str = "cifar10", ood: str = "tiny_imagenet", classes=None, train_limit: int | None = None,
              test_limit: int | None = None, ood_limit: int | None = None, tune_size: int = 1000, seed: int = 0,
              size: int = 32, root=None) -> OODSplit:
    """Section 5.5's data: ``classes`` of ``dataset`` (None: all) in-distribution, ``ood`` (a dataset name or an
    image folder, :func:`oneclass.data.load_outliers`) out of it. ``tune_size`` test images of the classes and
    ``tune_size`` out-of-distribution images are drawn first (with ``seed``) for ODIN's tuning; the scored sets
    are the rest, cut to ``test_limit`` (the same share of every class) and ``ood_limit``."""
    import dataclasses

    from ... import data

    names = data.classes(dataset, root)
    inside = [names[data.resolve_class(dataset, c, root)] for c in (classes or names)]
    ids = torch.tensor([names.index(c) for c in inside])

    def of_inside(split):
        s = data.load(dataset, split, root, size=size, channels=3)
        s = s.subset(torch.isin(s.labels, ids))
        relabel = {int(i): k for k, i in enumerate(ids)}
        return dataclasses.replace(s, labels=torch.tensor([relabel[int(v)] for v in s.labels]), classes=inside)

    train = data.subsample(of_inside("train"), train_limit, seed)
    test = of_inside(data.DATASETS[data.canonical(dataset)].test_split)
    pool = data.load_outliers(ood, size, 3, seed=seed, root=root)
    if tune_size >= min(len(test), len(pool)):
        raise ValueError(f"tune_size={tune_size} leaves nothing to score ({len(test)} test and {len(pool)} "
                         f"out-of-distribution images): hold out fewer")
    a = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed)).numpy()
    b = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed + 1)).numpy()
    test_in = data.subsample(test.subset(np.sort(a[tune_size:])), test_limit, seed)
    test_out = pool.subset(np.sort(b[tune_size:][:ood_limit]))
    return OODSplit(train, test.subset(np.sort(a[:tune_size])), pool.subset(np.sort(b[:tune_size])), test_in,
                    test_out, inside)
