"""RAW-OC-SVM and CAE-OC-SVM of the GEOM paper's Table 1 (section 5.1): an RBF one-class SVM on pixels or on the
code of a convolutional autoencoder, (nu, gamma) chosen in hindsight on the test set (the paper) or on held-out
nominal images (ours)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ... import metrics
from .. import training
from ..base import Detector, Scores, seeded
from .common import GAMMA_GRID, NU_GRID, ConvDecoder, ConvEncoder, _batched, _fit_loop, prepare

def train_cae(x: torch.Tensor, epochs: int, rep_dim: int = 256, batch_size: int = 128, lr: float = 1e-3,
              gen=None, progress=False, device="cpu"):
    """The CAE of CAE-OC-SVM: encoder with a tanh code of 256, MSE, Adam. Returns (encoder, decoder, losses)."""
    n, c, size, _ = x.shape
    enc, dec = ConvEncoder(c, size, rep_dim, "tanh").to(device), ConvDecoder(c, size, rep_dim).to(device)
    ae = nn.Sequential(enc, dec).train()
    x = x.to(device)

    def loss(idx):
        xb = x[idx]
        return F.mse_loss(ae(xb), xb)

    history = _fit_loop(ae.parameters(), loss, n, epochs, batch_size, gen, lr, progress=progress, desc="CAE",
                        device=device)
    return enc.eval(), dec.eval(), history


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (float64): the grid reuses them for every gamma (an RBF kernel matrix is
    exp(-gamma * D), so each grid point costs one libsvm solve on a precomputed kernel, not a kernel evaluation)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def consistent(rejected: float, nu: float, n: int, z: float = 2.0) -> bool:
    """Tax & Mueller's consistency test: a one-class model whose target rejection rate is nu is consistent when the
    rejection rate it shows on ``n`` held-out nominal samples is at most nu + z binomial standard deviations.
    Rejecting every held-out sample never counts (on a small held-out set the bound can exceed 1)."""
    return rejected < 1.0 and rejected <= nu + z * math.sqrt(nu * (1 - nu) / max(n, 1))


class OCSVM(Detector):
    """RAW-OC-SVM (``features='raw'``, flattened [-1, 1] pixels) or CAE-OC-SVM (``features='cae'``, the 256-d
    tanh code of a convolutional autoencoder trained on the normal class) with an RBF OneClassSVM.

    ``selection``:

    - ``'hindsight'`` -- the paper's protocol: every (nu, gamma) of the grid is fitted on the training set and the
      one with the best AUROC *on the labelled test set* is kept. An oracle: ``fit`` needs ``hindsight_test``
      (an ImageSet with ``.anomaly``) and every table must say so.
    - ``'heldout'`` -- honest: ``heldout_fraction`` of the nominal training images are held out; each grid point
      is fitted on the rest and scored on them; among the grid points whose held-out rejection rate is consistent
      with nu (:func:`consistent`), the one with the smallest nu and, for it, the largest gamma (the most complex
      kernel the held-out data still support) is kept, then refitted on all training images. The test set is
      never seen (passing one is an error).

    ``svm_limit``: fit the SVMs on at most this many training images (a budget cut; the authors themselves
    subsample to 5,000 / 2,500 on CatsVsDogs because the SVM is quadratic in N).
    """

    gives_maps = False

    def __init__(self, features: str = "raw", selection: str = "hindsight", nus=NU_GRID, gammas=GAMMA_GRID,
                 heldout_fraction: float = 0.2, svm_limit: int | None = None, cae_rep_dim: int = 256,
                 cae_lr: float = 1e-3, cae_batch_size: int = 128, size: int | None = None, seed: int | None = None,
                 device=None, precision: str = "fp32"):
        if features not in ("raw", "cae"):
            raise ValueError(f"features must be 'raw' (RAW-OC-SVM) or 'cae' (CAE-OC-SVM), got {features!r}")
        if selection not in ("hindsight", "heldout"):
            raise ValueError(f"selection must be 'hindsight' (the paper's oracle) or 'heldout', got {selection!r}")
        if not 0 < heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
        self.features, self.selection, self.nus, self.gammas = features, selection, nus, gammas
        self.heldout_fraction, self.svm_limit, self.size = heldout_fraction, svm_limit, size
        self.cae_rep_dim, self.cae_lr, self.cae_batch_size = cae_rep_dim, cae_lr, cae_batch_size
        self.seed, self.device, self.precision = seed, device, precision

    @property
    def oracle(self) -> bool:
        return self.selection == "hindsight"

    @torch.no_grad()
    def _features(self, images) -> np.ndarray:
        x = prepare(images, getattr(self, "size_", self.size))
        if self.features == "raw":
            return x.reshape(len(x), -1).double().numpy()
        return _batched(self.encoder_, x, 512, self.device_).double().numpy()

    def fit(self, train, epochs: int = 200, progress: bool = False, *, hindsight_test=None) -> "OCSVM":
        """Train the CAE (``epochs``, CAE-OC-SVM only), then choose (nu, gamma) and fit the SVM."""
        if self.selection == "hindsight" and (hindsight_test is None or getattr(hindsight_test, "anomaly", None)
                                              is None):
            raise ValueError("selection='hindsight' chooses nu and gamma by test AUROC (the paper's oracle): pass "
                             "hindsight_test=<the test ImageSet with .anomaly>, or use selection='heldout'")
        if self.selection == "heldout" and hindsight_test is not None:
            raise ValueError("selection='heldout' chooses on held-out nominal training images only; it must not "
                             "see the test set: drop hindsight_test")
        self._setup()
        with seeded(self.seed_):
            return self._fit(train, epochs, progress, hindsight_test)

    def _fit(self, train, epochs, progress, hindsight_test):
        from sklearn.svm import OneClassSVM

        gen = training.generator(self.seed_)
        self.__dict__.pop("size_", None)
        x = prepare(train, self.size)
        self.size_ = x.shape[-1]
        self.history_ = []
        if self.features == "cae":
            self.encoder_, _, self.history_ = train_cae(x, int(epochs), self.cae_rep_dim, self.cae_batch_size,
                                                        self.cae_lr, gen, progress, self.device_)
        feats = self._features(x)
        n = len(feats)
        order = torch.randperm(n, generator=gen).numpy()
        grid = [(nu, g) for nu in self.nus for g in self.gammas]
        bar = training.progress(grid, bool(progress), desc=f"OC-SVM grid ({self.selection})", leave=False)
        self.grid_ = []
        if self.selection == "hindsight":
            fit_idx = np.sort(order[: self.svm_limit]) if self.svm_limit else np.arange(n)
            test_feats = self._features(hindsight_test)
            anomaly = np.asarray(hindsight_test.anomaly)
            d_fit, d_test = _sq_dists(feats[fit_idx], feats[fit_idx]), _sq_dists(test_feats, feats[fit_idx])
            for nu, g in bar:
                svm = OneClassSVM(kernel="precomputed", nu=nu).fit(np.exp(-g * d_fit))
                a = metrics.auc(-svm.decision_function(np.exp(-g * d_test)), anomaly)
                self.grid_.append({"nu": nu, "gamma": g, "test_auc": a})
            pick = max(self.grid_, key=lambda r: r["test_auc"])   # first of equals, in grid order
            self.selected_on_ = {"data": "test", "labels_used": True, "n_images": len(test_feats),
                                 "fit_index": fit_idx}
        else:
            n_held = max(1, int(round(self.heldout_fraction * n)))
            if n - n_held < 2:
                raise ValueError(f"{n} training images leave too few to fit after holding out {n_held}; "
                                 "lower heldout_fraction or use more training images")
            held_idx, rest = np.sort(order[:n_held]), order[n_held:]
            fit_idx = np.sort(rest[: self.svm_limit]) if self.svm_limit else np.sort(rest)
            d_fit, d_held = _sq_dists(feats[fit_idx], feats[fit_idx]), _sq_dists(feats[held_idx], feats[fit_idx])
            for nu, g in bar:
                svm = OneClassSVM(kernel="precomputed", nu=nu).fit(np.exp(-g * d_fit))
                rejected = float((svm.decision_function(np.exp(-g * d_held)) < 0).mean())
                self.grid_.append({"nu": nu, "gamma": g, "heldout_rejection": rejected,
                                   "consistent": consistent(rejected, nu, n_held)})
            ok = [r for r in self.grid_ if r["consistent"]] or \
                [min(self.grid_, key=lambda r: r["heldout_rejection"] - r["nu"])]   # none: the least inconsistent
            # Smallest nu first: a consistency test at nu = 0.9 passes almost any kernel, at 0.1 only a kernel
            # that generalises to unseen nominal images; then the narrowest kernel (largest gamma) that passes.
            pick = max(ok, key=lambda r: (-r["nu"], r["gamma"]))
            self.selected_on_ = {"data": "heldout_nominal", "labels_used": False, "n_images": n_held,
                                 "heldout_index": held_idx, "fit_index": fit_idx}
            # the chosen model is refitted on every training image (held-out ones included)
            fit_idx = np.sort(order[: self.svm_limit]) if self.svm_limit else np.arange(n)
        self.nu_, self.gamma_ = pick["nu"], pick["gamma"]
        self.svm_ = OneClassSVM(kernel="rbf", nu=self.nu_, gamma=self.gamma_).fit(feats[fit_idx])
        self._fitted = True
        return self

    def score(self, test, maps: bool = True) -> Scores:
        """Anomaly score = -decision_function (the SVM's signed distance, positive inside the support); an
        OC-SVM has no heatmap, so ``maps`` is always None."""
        self._check_fitted()
        return Scores(-self.svm_.decision_function(self._features(test)).astype(np.float64))


