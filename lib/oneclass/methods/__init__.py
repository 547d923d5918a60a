"""Every method of the library, one folder per paper, all following one contract (:mod:`.base`).

=================  ========================================================================  =====================
folder             paper                                                                     detectors
=================  ========================================================================  =====================
``fcdd/``          Liznerski et al., Explainable Deep One-Class Classification (000)         FCDD, HSC, AE
``geom/``          Golan & El-Yaniv, Deep Anomaly Detection Using Geometric Transforms (001)  GEOM
``baselines/``     the competitors of GEOM's Table 1 (001)                                   DeepSVDD, OCSVM, DSEBM,
                                                                                             DAGMM, ADGAN
``novelty/``       Wu et al., One-class anomaly detection via novelty normalization (002)    NoveltyNormalization
``cleverhans/``    Kauffmann et al., The Clever Hans Effect in Anomaly Detection (003)       KDE, Autoencoder,
                                                                                             DeepOneClass, Bag
=================  ========================================================================  =====================

Each folder has a README (the paper, the section each file implements, our results against the paper's).
"""
from .base import Detector, Scores, as_images, resolve_device, resolve_precision

FAMILIES = ("fcdd", "geom", "baselines", "novelty", "cleverhans")


def detectors() -> dict:
    """Every detector class by its name (imports all families)."""
    import importlib

    out = {}
    for family in FAMILIES:
        module = importlib.import_module(f"{__name__}.{family}")
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, Detector):
                out[name] = obj
    return out


__all__ = ["Detector", "Scores", "as_images", "resolve_device", "resolve_precision", "FAMILIES", "detectors"]
