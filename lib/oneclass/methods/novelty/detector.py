"""Novelty normalization (Wu, Lu, Fuh, Liu; Pattern Recognition Letters 2021): an autoencoder, a novelty-scoring
MLP on its code z, an L0 term on the MLP's weights, and batch min-max normalisation of the combined score.

The paper's equations, as implemented here::

    L_r(x)   = mean squared error between x and De(En(x))                    (eq. 1, 'we use mean square error')
    NS(x)    = sigmoid(MLP(En(x)))                                           (eq. 2)
    S_i      = (1 - l1) L_r(x_i) + l1 NS(x_i)                                (eq. 7; S_i = L_r without the NS head)
    Reg(S_i) = (S_i - S_min) / (S_max - S_min), min / max over the batch     (eq. 6)
    loss     = mean_i Reg(S_i) - l2 ||W||_0                                  (eq. 4 with the normalisation inside)
    p(x)     = (S(x) - mean S_min) / (mean S_max - mean S_min)               (eq. 5 normalised by eq. 6 at test)

No public code exists; the readings taken where the paper is ambiguous (each one a parameter):

* ``normalize="combined"`` normalises S (eq. 6 and 7 as printed); ``"terms"`` normalises L_r and NS each before
  combining them (the text says the module 'normalizes the reconstruction error and novelty score at the same
  time'). Only ``"terms"`` changes the test ranking by itself: a min-max map of one score is monotone.
* ``norm_gradient=True`` lets the loss differentiate through the batch min and max (the normalisation is part
  of the loss 'before backpropagation'); False treats them as constants, which reduces the normalisation to a
  per-batch rescaling of the gradient.
* ``norm_stats="last_epoch"`` averages the batch min / max over the final epoch (the statistics of the model that
  is tested); ``"all"`` averages over every training batch as the text literally says.
* ``reconstruction``: ``"mse"`` (eq. 1's 'mean square error' per image, training and test) or ``"l2"`` (eq. 5's
  ||x - x~||_2); its scale decides how much NS weighs against it in S and p(x).
* The L0 term: ``l0="hard_concrete"`` gates every MLP weight with Louizos et al.'s hard-concrete gates and uses
  their expected number of open gates (differentiable); ``"literal"`` counts the weights with |w| > 1e-10, which
  has no gradient and so cannot change training; ``"none"`` drops it. The paper *subtracts* l2 ||W||_0 (it wants
  the weights not to collapse to zero), so a positive ``lambda2`` rewards open gates; a negative one penalises
  them as Louizos et al. do.

The NS head has no negatives: every training image is nominal and its target is 0. What keeps NS from the
trivial constant-0 solution is the batch normalisation (the most novel-looking image of each batch is mapped to 1,
and the normalised loss rewards spreading the batch apart), not the L0 term.

Named configurations (:data:`CONFIGURATIONS`, :meth:`NoveltyNormalization.ablation`):

* ``library_default``: the readings above with their defaults (min / max detached, hard-concrete L0, MSE);
* ``paper_as_written``: the literal reading: gradient through the batch min / max, the literal L0 count, eq. 5's
  L2 norm;
* ``ae_on_raw_reconstruction`` (ours, not the paper's): ``ae_loss="raw_reconstruction"``, the autoencoder trains on
  the raw mean L_r while the normalised score's gradient reaches only the NS head (L_r detached inside S), with
  the gradient through the batch min / max, so that neither part can undo the other.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .. import training
from ..base import Detector, Scores, as_images, seeded
from ..baselines.deep_svdd import gcn_l1
from .nets import ABLATION, CONFIGS, L0_MODES, NORM_STATS, NORMALIZE, BatchMinMax, LeNetAutoencoder, NoveltyScorer

RECONSTRUCTION = ("mse", "l2")
AE_LOSS = ("normalised", "raw_reconstruction")
CONFIGURATIONS = {
    "library_default": {},
    "paper_as_written": dict(norm_gradient=True, l0="literal", reconstruction="l2"),
    "ae_on_raw_reconstruction": dict(ae_loss="raw_reconstruction", norm_gradient=True),   # ours
}

# --- the method -----------------------------------------------------------------------------------------------

def _float_images(images) -> torch.Tensor:
    """uint8 pixels -> [0, 1] (the decoder ends in a sigmoid)."""
    return as_images(images).float() / 255.0


PREPROCESSING = ("none", "gcn_minmax")
LR_STEP_UNITS = ("epoch", "step")   # what section 4.2's 'every 30 steps' counts: epochs (our default) or optimiser steps


class NoveltyNormalization(Detector):
    """Autoencoder + novelty scoring + novelty normalisation, fitted on nominal images only.

    ``net``: "auto" (lenet28 for 1-channel, lenet32 for 3-channel images) or a key of CONFIGS.
    ``novelty_scoring`` / ``normalize`` switch the paper's modules (Table 4: see ABLATION); ``lambda1`` weighs
    NS against L_r (eq. 4, 5, 7); ``lambda2`` weighs the L0 term, subtracted as in eq. 4.
    Optimiser: Adam, lr x ``lr_gamma`` every ``lr_step`` epochs ('decays ... 0.1 for every 30 steps'), or every
    ``lr_step`` optimiser steps with ``lr_step_unit='step'`` (the sentence read word for word).
    ``preprocessing``: 'none' (pixels in [0, 1]; the paper names none) or 'gcn_minmax' (ours, borrowed from Deep
    SVDD: l1 global contrast normalisation per image, then min-max scaling with the training set's extremes).
    ``ae_batch_norm``: True, Deep SVDD's layout (batch norm, no biases); False, section 4.2 as printed (each conv
    followed by leaky ReLU and pooling only, with biases).
    """

    def __init__(self, net: str = "auto", novelty_scoring: bool = True, normalize: str = "combined",
                 lambda1: float = 0.5, lambda2: float = 1e-5, l0: str = "hard_concrete", norm_gradient: bool = False,
                 norm_stats: str = "last_epoch", lr: float = 1e-3, lr_step: int = 30, lr_gamma: float = 0.1,
                 lr_step_unit: str = "epoch",
                 weight_decay: float = 0.0, batch_size: int = 128, eval_batch_size: int = 500, seed: int | None = 0,
                 device=None, precision: str = "fp32", reconstruction: str = "mse", ae_loss: str = "normalised",
                 preprocessing: str = "none", ae_batch_norm: bool = True):
        if not isinstance(ae_batch_norm, bool):
            raise ValueError(f"ae_batch_norm must be True (Deep SVDD's layout) or False (section 4.2 as printed: no "
                             f"batch norm, biases instead), got {ae_batch_norm!r}")
        self.ae_batch_norm = ae_batch_norm
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {preprocessing!r}; choose one of {PREPROCESSING}")
        self.preprocessing = preprocessing
        if reconstruction not in RECONSTRUCTION:
            raise ValueError(f"unknown reconstruction {reconstruction!r}; choose one of {RECONSTRUCTION}")
        if ae_loss not in AE_LOSS:
            raise ValueError(f"unknown ae_loss {ae_loss!r}; choose one of {AE_LOSS}")
        self.reconstruction, self.ae_loss = reconstruction, ae_loss
        if normalize not in NORMALIZE:
            raise ValueError(f"unknown normalize {normalize!r}; choose one of {NORMALIZE}")
        if l0 not in L0_MODES:
            raise ValueError(f"unknown l0 {l0!r}; choose one of {L0_MODES}")
        if lr_step_unit not in LR_STEP_UNITS:
            raise ValueError(f"unknown lr_step_unit {lr_step_unit!r}; choose one of {LR_STEP_UNITS}")
        if norm_stats not in NORM_STATS:
            raise ValueError(f"unknown norm_stats {norm_stats!r}; choose one of {NORM_STATS}")
        if net != "auto" and net not in CONFIGS:
            raise ValueError(f"unknown net {net!r}; choose 'auto' or one of {sorted(CONFIGS)}")
        if not 0.0 <= lambda1 < 1.0:
            raise ValueError(f"lambda1 must be in [0, 1) (the weight of NS against L_r), got {lambda1}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2: the normalisation takes a min and a max over the batch")
        self.net, self.novelty_scoring, self.normalize = net, novelty_scoring, normalize
        self.lambda1, self.lambda2, self.l0 = lambda1, lambda2, l0
        self.norm_gradient, self.norm_stats = norm_gradient, norm_stats
        self.lr, self.lr_step, self.lr_gamma, self.weight_decay = lr, lr_step, lr_gamma, weight_decay
        self.lr_step_unit = lr_step_unit
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.device, self.precision = device, precision

    @classmethod
    def ablation(cls, variant: str, configuration: str = "library_default", **hyper) -> "NoveltyNormalization":
        """A row of Table 4: 'ae' (autoencoder only), 'ae_norm' (+ normalization), 'full' (+ NS), under a named
        ``configuration`` (:data:`CONFIGURATIONS`). ``normalize`` in ``hyper`` replaces the row's normalisation
        (e.g. 'terms' for the full model); a hyperparameter given as None keeps the configuration's, the row's or
        the class's default, in that order."""
        if variant not in ABLATION:
            raise ValueError(f"unknown ablation variant {variant!r}; choose one of {sorted(ABLATION)}")
        if configuration not in CONFIGURATIONS:
            raise ValueError(f"unknown configuration {configuration!r}; choose one of {' | '.join(CONFIGURATIONS)}")
        ns, norm = ABLATION[variant]
        return cls(**({"novelty_scoring": ns, "normalize": norm} | CONFIGURATIONS[configuration]
                      | {k: v for k, v in hyper.items() if v is not None}))

    # -- building

    def _config(self, x: torch.Tensor) -> dict:
        name = self.net if self.net != "auto" else ("lenet28" if x.shape[1] == 1 else "lenet32")
        return dict(CONFIGS[name], name=name)

    def _build(self, x: torch.Tensor) -> nn.ModuleDict:
        cfg = self._config(x)
        k = 2 if (self.normalize == "terms" and self.novelty_scoring) else 1
        with seeded(self.seed_):
            parts = {"ae": LeNetAutoencoder(x.shape[1], x.shape[-1], cfg["channels"], cfg["z_dim"],
                                            batch_norm=self.ae_batch_norm, upsample=cfg.get("upsample", "nearest")),
                     "norm": BatchMinMax(k, gradient=self.norm_gradient)}
            if self.novelty_scoring:
                parts["ns"] = NoveltyScorer(cfg["z_dim"], cfg["ns_hidden"], self.l0)
        self.config_ = cfg
        return nn.ModuleDict(parts).to(self.device_)

    # -- the equations

    def _terms(self, x: torch.Tensor):
        """Reconstruction, per-image L_r, NS (or None) for a batch."""
        m = self.model_
        with self._autocast():
            rec, z = m["ae"](x)
            if self.ae_loss == "raw_reconstruction":     # ours: the NS head reads the code without training it
                z = z.detach()
            ns = m["ns"](z).float() if self.novelty_scoring else None
        rec = rec.float()
        sq = (x - rec).pow(2).flatten(1)
        lr_ = sq.mean(1) if self.reconstruction == "mse" else sq.sum(1).clamp_min(1e-12).sqrt()
        return rec, lr_, ns

    def _combine(self, lr_: torch.Tensor, ns: torch.Tensor | None) -> torch.Tensor:
        return lr_ if ns is None else (1 - self.lambda1) * lr_ + self.lambda1 * ns

    def _normalised(self, lr_: torch.Tensor, ns: torch.Tensor | None) -> torch.Tensor:
        """The score the loss averages (training) or p(x) (eval), per image."""
        norm = self.model_["norm"]
        if self.normalize == "none":
            return self._combine(lr_, ns)
        if self.normalize == "terms" and ns is not None:
            n = norm(torch.stack([lr_, ns], 1))
            return self._combine(n[:, 0], n[:, 1])
        return norm(self._combine(lr_, ns)[:, None])[:, 0]

    def loss(self, lr_: torch.Tensor, ns: torch.Tensor | None) -> torch.Tensor:
        """Eq. 4 on a batch: the mean normalised score minus lambda2 ||W||_0; with ``ae_loss="raw_reconstruction"``
        (ours) the mean raw L_r plus the normalised score of the detached L_r (the NS head reading the detached
        code), so the autoencoder learns from L_r alone and the normalised term trains only the NS head."""
        if self.ae_loss == "raw_reconstruction":
            return lr_.mean() + self._normalised(lr_.detach(), ns).mean() - self.lambda2 * self.l0_term()
        return self._normalised(lr_, ns).mean() - self.lambda2 * self.l0_term()

    def l0_term(self) -> torch.Tensor:
        return self.model_["ns"].l0() if self.novelty_scoring else torch.zeros((), device=self.device_)

    # -- fit / score

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels as the autoencoder sees them (``preprocessing``)."""
        if self.preprocessing == "none":
            return x
        lo, hi = self.minmax_
        return (gcn_l1(x) - lo) / max(hi - lo, 1e-12)

    def fit(self, train, epochs: int = 10, progress: bool | None = False, *, monitor=None) -> "NoveltyNormalization":
        """Train on nominal images (an ImageSet or a uint8 tensor (N, C, H, W)); returns self. ``monitor``: a
        :class:`oneclass.monitor.Monitor` that records the learning curve."""
        x = _float_images(train)
        self.minmax_ = None
        if self.preprocessing == "gcn_minmax":   # the training set's extremes after GCN, as Deep SVDD takes them
            g = gcn_l1(x)
            self.minmax_ = (float(g.min()), float(g.max()))
        x = self._input(x)
        if len(x) < 2:
            raise ValueError(f"need at least 2 training images, got {len(x)}")
        if epochs < 1 or int(epochs) != epochs:
            raise ValueError(f"epochs must be a whole number >= 1, got {epochs}")
        self._setup()
        self.model_ = self._build(x)
        x = x.to(self.device_)
        gen = training.generator(self.seed_)
        if self.novelty_scoring:
            self.model_["ns"].set_noise_generator(torch.Generator().manual_seed(self.seed_ + 1))
        opt = training.optimizer(self.model_.parameters(), "adam", lr=self.lr, weight_decay=self.weight_decay)
        per_epoch = len(x) // self.batch_size + (len(x) % self.batch_size >= 2)   # a batch of one is skipped
        per_step = self.lr_step_unit == "step"
        horizon = epochs * per_epoch if per_step else epochs
        steps = list(range(self.lr_step, horizon, self.lr_step)) if self.lr_step else []
        sched = training.schedule(opt, "multistep" if steps else "none", gamma=self.lr_gamma, milestones=steps)
        self.history_ = []
        if monitor is not None:
            monitor.start(self, per_epoch)
        self.model_.train()
        bar = training.progress(range(epochs), progress, desc="novelty", unit="epoch")
        for epoch in bar:
            if self.norm_stats == "last_epoch":
                self.model_["norm"].reset()
            sums = np.zeros(4)
            for idx in training.batches(len(x), self.batch_size, gen, shuffle=True):
                if len(idx) < 2:   # a last batch of one image has no min-max range
                    continue
                xb = x[idx.to(self.device_)]
                _, lr_, ns = self._terms(xb)
                loss = self.loss(lr_, ns)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if per_step:
                    sched.step()
                sums += [loss.item() * len(idx), lr_.detach().sum().item(),
                         0.0 if ns is None else ns.detach().sum().item(), len(idx)]
                if monitor is not None:
                    monitor.step(self, loss.item())
            lr_now = opt.param_groups[0]["lr"]   # the rate of the epoch's last step
            if not per_step:
                sched.step()
            n = sums[3]
            rec = {"epoch": epoch + 1, "loss": sums[0] / n, "reconstruction": sums[1] / n,
                   "novelty": sums[2] / n if self.novelty_scoring else None, "l0": float(self.l0_term().detach()),
                   "lr": lr_now}
            training.check_loss(rec["loss"], epoch + 1, "NoveltyNormalization")
            self.history_.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", rec=f"{rec['reconstruction']:.4f}")
        self.model_.eval()
        self._fitted = True
        self._check_collapse(x)
        if monitor is not None:
            monitor.finish(self)
        return self

    COLLAPSE_RATIO = 1e-3   # reconstructions this much less varied than the inputs: one image for every input

    @torch.no_grad()
    def _check_collapse(self, x: torch.Tensor, n: int = 256) -> None:
        """Warn when the trained autoencoder returns (nearly) the same image for every input: its reconstruction
        error is then a distance to that image, not a reconstruction score. ``output_spread_``: the mean over
        pixels of the reconstructions' standard deviation across up to ``n`` training images; ``input_spread_``:
        the same for the inputs."""
        xb = x[:n]
        rec, _ = self.model_["ae"](xb)
        self.output_spread_ = float(rec.float().std(0).mean())
        self.input_spread_ = float(xb.float().std(0).mean())
        if self.output_spread_ < self.COLLAPSE_RATIO * self.input_spread_:
            fixes = ([] if self.ae_batch_norm else ["batch norm (ae_batch_norm=True)"]) + \
                    ([] if self.preprocessing == "none" else ["pixels without GCN (preprocessing='none')"]) + \
                    [f"a lower learning rate than {self.lr:g}", "another seed"]
            warnings.warn(f"NoveltyNormalization: the autoencoder has collapsed to one output image (its "
                          f"reconstructions vary {self.output_spread_:.2g} across training images, the inputs "
                          f"{self.input_spread_:.2g}), so its reconstruction error only measures the distance to "
                          f"that image; try {', '.join(fixes[:-1])} or {fixes[-1]}", RuntimeWarning, stacklevel=4)

    @torch.no_grad()
    def monitor_scores(self, images) -> np.ndarray:
        """Anomaly scores mid-training (the learning curve's points): p(x) with the batch statistics gathered so
        far; before the first step, when there are none, the combined score S (under ``combined`` normalisation
        it ranks the images as p(x) does)."""
        x = self._input(_float_images(images))
        ready = self.normalize == "none" or int(self.model_["norm"].count) > 0
        out = []
        for i in range(0, len(x), self.eval_batch_size):
            _, lr_, ns = self._terms(x[i:i + self.eval_batch_size].to(self.device_))
            lr_, ns = lr_.double(), None if ns is None else ns.double()
            out.append(self._normalised(lr_, ns) if ready else self._combine(lr_, ns))
        return torch.cat(out).cpu().numpy()

    @torch.no_grad()
    def score(self, test, maps: bool = True) -> Scores:
        """``scores``: the normalised p(x) (higher = more anomalous); ``maps``: per-pixel squared reconstruction
        error summed over channels; ``subscores``: ``reconstruction`` (L_r), ``combined`` (S of eq. 7 before
        normalisation) and ``novelty`` (NS in [0, 1], with the NS head), each on the same fitted model."""
        self._check_fitted()
        x = self._input(_float_images(test))
        self.model_.eval()
        out = {"p": [], "lr": [], "ns": [], "s": [], "map": []}
        for i in range(0, len(x), self.eval_batch_size):
            xb = x[i:i + self.eval_batch_size].to(self.device_)
            rec, lr_, ns = self._terms(xb)
            lr_, ns = lr_.double(), None if ns is None else ns.double()
            out["p"].append(self._normalised(lr_, ns))
            out["lr"].append(lr_)
            out["s"].append(self._combine(lr_, ns))
            if maps:
                out["map"].append((xb - rec).pow(2).sum(1))
            if ns is not None:
                out["ns"].append(ns)
        cat = {k: torch.cat(v).cpu().numpy().astype(np.float64) for k, v in out.items() if v}
        sub = {"reconstruction": cat["lr"], "combined": cat["s"]} | ({"novelty": cat["ns"]} if "ns" in cat else {})
        return Scores(cat["p"], cat["map"] if maps else None, subscores=sub)

    # -- what the notebook reports

    @property
    def normalisation_stats(self) -> dict:
        """The averaged batch minima and maxima that score() applies."""
        norm = self.model_["norm"]
        return {"min": norm.running_min.tolist(), "max": norm.running_max.tolist(), "batches": int(norm.count)}

    def n_parameters(self) -> int:
        self._check_fitted()
        return sum(p.numel() for p in self.model_.parameters())


# --- notebook helpers -------------------------------------------------------------------------------------------

LOAD = {"mnist": (28, 1), "fmnist": (28, 1), "cifar10": (32, 3)}


def input_shape(dataset: str) -> tuple[int, int]:
    """(size, channels) the paper's networks take for ``dataset``."""
    if dataset not in LOAD:
        raise ValueError(f"the paper evaluates {sorted(LOAD)}, not {dataset!r}; the networks need 28px grey or "
                         "32px RGB images (pass size / channels to data.one_vs_rest yourself for other data)")
    return LOAD[dataset]


