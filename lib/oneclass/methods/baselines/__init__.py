"""The competitors the GEOM paper (001, section 5.1, Table 1) runs itself, and Deep SVDD, which it quotes.

Files: ``common`` (GEOM's pre-processing, the authors' DCGAN-like encoder / decoder pair, the training loop), one
file per competitor: ``deep_svdd``, ``ocsvm`` (RAW- and CAE-OC-SVM), ``dsebm``, ``dagmm``, ``adgan``.

Every detector follows :mod:`oneclass.methods.base`: ``Det(**hyper, seed=..., device=...).fit(train, epochs=...,
progress=...)`` returns self, ``.score(test, maps=True)`` returns :class:`~oneclass.methods.base.Scores` with
``scores`` (N,) 'higher = more anomalous' and ``maps`` (N, H, W) or None. Inputs are uint8 images (or an ImageSet) that :func:`prepare` scales to [-1, 1] and pads with
black to the network size, GEOM's only pre-processing (section 5.2).

- :class:`DeepSVDD` -- one-class Deep SVDD (Ruff et al. 2018; GEOM's E2E-OC-SVM column): LeNet-type network,
  autoencoder pretraining, centre = mean output with the +-0.1 rule (:func:`svdd_center`), its own global
  contrast normalisation + min-max pre-processing, gradient heatmaps.
- :class:`OCSVM` -- RAW-OC-SVM (pixels) and CAE-OC-SVM (codes of a convolutional autoencoder) with
  scikit-learn's OneClassSVM over the paper's grid nu x gamma, chosen either in hindsight on the labelled test
  set (the paper's protocol: an oracle) or on held-out *nominal* training images only (Tax & Mueller's
  consistency criterion; the paper's refs [30, 3] say such honest choices exist).
- :class:`DSEBM` -- deep structured energy-based model, energy 0.5||x - b||^2 - sum enc(x), denoising score
  matching with noise 0.5; score = energy.
- :class:`DAGMM` -- autoencoder with a 5-d code + relative reconstruction error + cosine similarity, estimation
  network 64-10-3 (a 3-component GMM); score = sample energy.
- :class:`ADGAN` -- WGAN-GP generator; a test image is scored by inverting the generator from 8 random seeds
  with 5 joint steps on the seed and a copy of the generator; score = mean final reconstruction error.

The CAE / DSEBM / DAGMM / ADGAN networks are the authors' DCGAN-like pair (:class:`ConvEncoder`,
:class:`ConvDecoder`): three stride-2 3x3 convolutions (64, 128, 256; a fourth, 512, at 64px) with batch norm
and ReLU, a dense code; the decoder mirrors it with transposed convolutions and a tanh output.
"""
import numpy as np

from . import adgan, common, dagmm, deep_svdd, dsebm, ocsvm
from .adgan import ADGAN
from .common import GAMMA_GRID, METHODS, NU_GRID, ConvDecoder, ConvEncoder, prepare
from .dagmm import DAGMM, gmm_energy, gmm_parameters
from .deep_svdd import SVDD_NETS, SVDD_SCHEDULES, DeepSVDD, LeNet, LeNetDecoder, gcn_l1, svdd_center
from .dsebm import DSEBM
from .ocsvm import OCSVM, consistent, train_cae

_MAKERS = {"deep_svdd": (DeepSVDD, {}), "raw_ocsvm": (OCSVM, {"features": "raw"}),
           "cae_ocsvm": (OCSVM, {"features": "cae"}), "dsebm": (DSEBM, {}), "dagmm": (DAGMM, {}),
           "adgan": (ADGAN, {})}


def build(method: str, **hyper):
    """A detector by the notebooks' method name (``METHODS``) with ``hyper`` for its constructor. So that one
    notebook can run every competitor with one set of parameters, a keyword that another competitor takes but
    this one does not is left out, and a None value keeps the constructor's default; a keyword that no
    competitor takes is refused (a misspelling)."""
    if method not in _MAKERS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    cls, fixed = _MAKERS[method]
    known = set().union(*(set(c._param_names()) for c, _ in _MAKERS.values()))
    unknown = sorted(set(hyper) - known)
    if unknown:
        raise TypeError(f"no competitor takes {unknown}; the constructors take {sorted(known)}")
    mine = set(cls._param_names())
    return cls(**(fixed | {k: v for k, v in hyper.items() if k in mine and v is not None}))


def takes_monitor(det) -> bool:
    """Whether the competitor's fit records a learning curve (Deep SVDD, DSEBM, DAGMM, ADGAN: iterative training
    that is the detector; not the OC-SVMs, whose detector, the SVM, is fitted once after the CAE)."""
    import inspect

    return "monitor" in inspect.signature(det.fit).parameters


def fit(det, train, test=None, epochs: int | None = None, ae_epochs: int | None = None, progress=None,
        monitor=None):
    """``det.fit(train)`` with what that competitor takes: ``epochs`` (None: the paper's), Deep SVDD's
    ``ae_epochs`` (None: its paper's), and, for an OC-SVM that selects (nu, gamma) in hindsight, the labelled
    ``test`` set (the GEOM paper's oracle; the held-out selection never sees it); ``monitor`` where the
    competitor takes one (:func:`takes_monitor`). Returns the fitted detector."""
    kw = {"progress": progress} | ({"epochs": epochs} if epochs is not None else {})
    if monitor is not None:
        if not takes_monitor(det):
            raise ValueError(f"{type(det).__name__} records no learning curve: leave monitor_every unset for it")
        kw["monitor"] = monitor
    if ae_epochs is not None and isinstance(det, DeepSVDD):
        kw["ae_epochs"] = ae_epochs
    if isinstance(det, OCSVM) and det.oracle:
        kw["hindsight_test"] = test
    return det.fit(train, **kw)


def test_limit(method: str, test_limit: int | None, inversion_limit: int | None) -> int | None:
    """How many test images a competitor scores: ``test_limit``, and for ADGAN (whose inversion per image is
    slow) at most ``inversion_limit`` (the authors score 5,000)."""
    limits = [n for n in (test_limit, inversion_limit if method == "adgan" else None) if n is not None]
    return min(limits) if limits else None


def selection(det) -> dict:
    """What an OC-SVM's (nu, gamma) selection kept and whether it was the oracle; {} for the other competitors
    (the metrics a run stores beside the detection metrics)."""
    if not isinstance(det, OCSVM):
        return {}
    return {"nu": det.nu_, "gamma": det.gamma_, "oracle": bool(det.oracle)}


def selection_report(det) -> str:
    """One paragraph on an OC-SVM's selection: the data it looked at, the (nu, gamma) it kept, and the spread of
    the grid's test AUROCs (hindsight) or how many grid points were consistent (held out)."""
    if not isinstance(det, OCSVM):
        return f"{type(det).__name__}: no hyperparameter selection (the paper's fixed settings)"
    info = det.selected_on_
    text = (f"selection {det.selection!r} looked at {info['n_images']} {info['data']} images (labels used: "
            f"{info['labels_used']}); kept nu = {det.nu_}, gamma = 2^{np.log2(det.gamma_):.0f}")
    if det.oracle:
        aucs = np.array([r["test_auc"] for r in det.grid_])
        return text + (f"\ntest AUROC over the grid: min {aucs.min():.3f}, median {np.median(aucs):.3f}, "
                       f"max {aucs.max():.3f} (ORACLE: chosen on test labels)")
    return text + f"\n{sum(r['consistent'] for r in det.grid_)} of {len(det.grid_)} grid points consistent"


def input_shape(dataset: str) -> tuple[int, int]:
    """(size, channels) the competitors load ``dataset`` at: GEOM's (:func:`oneclass.methods.geom.input_shape`)."""
    from ..geom import input_shape as geom_shape

    return geom_shape(dataset)


__all__ = ["ADGAN", "DAGMM", "DSEBM", "DeepSVDD", "OCSVM", "METHODS", "NU_GRID", "GAMMA_GRID", "build", "takes_monitor",
           "fit", "test_limit", "selection", "selection_report",
           "input_shape", "prepare", "ConvEncoder", "ConvDecoder", "LeNet", "LeNetDecoder", "SVDD_NETS",
           "SVDD_SCHEDULES", "gcn_l1", "svdd_center", "consistent", "train_cae", "gmm_energy", "gmm_parameters"]
