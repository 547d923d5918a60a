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
from . import adgan, common, dagmm, deep_svdd, dsebm, ocsvm
from .adgan import ADGAN
from .common import GAMMA_GRID, METHODS, NU_GRID, ConvDecoder, ConvEncoder, prepare
from .dagmm import DAGMM, gmm_energy, gmm_parameters
from .deep_svdd import SVDD_NETS, SVDD_SCHEDULES, DeepSVDD, LeNet, LeNetDecoder, gcn_l1, svdd_center
from .dsebm import DSEBM
from .ocsvm import OCSVM, consistent, train_cae

def build(method: str, **hyper):
    """A detector by the notebooks' method name (``METHODS``); ``hyper`` goes to its constructor."""
    makers = {"deep_svdd": (DeepSVDD, {}), "raw_ocsvm": (OCSVM, {"features": "raw"}),
              "cae_ocsvm": (OCSVM, {"features": "cae"}), "dsebm": (DSEBM, {}), "dagmm": (DAGMM, {}),
              "adgan": (ADGAN, {})}
    if method not in makers:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    cls, fixed = makers[method]
    return cls(**(fixed | hyper))


# The method names of the GEOM paper's Table 1 columns (lib/oneclass/reported/geom.csv).
PAPER_NAMES = {"deep_svdd": "E2E-OC-SVM", "raw_ocsvm": "RAW-OC-SVM", "cae_ocsvm": "CAE-OC-SVM", "dsebm": "DSEBM",
               "dagmm": "DAGMM", "adgan": "ADGAN"}


def input_shape(dataset: str) -> tuple[int, int]:
    """(size, channels) the competitors load ``dataset`` at: GEOM's (:func:`oneclass.methods.geom.input_shape`)."""
    from ..geom import input_shape as geom_shape

    return geom_shape(dataset)


__all__ = ["ADGAN", "DAGMM", "DSEBM", "DeepSVDD", "OCSVM", "METHODS", "PAPER_NAMES", "NU_GRID", "GAMMA_GRID", "build",
           "input_shape", "prepare", "ConvEncoder", "ConvDecoder", "LeNet", "LeNetDecoder", "SVDD_NETS",
           "SVDD_SCHEDULES", "gcn_l1", "svdd_center", "consistent", "train_cae", "gmm_energy", "gmm_parameters"]
