"""*The Clever Hans Effect in Anomaly Detection* (Kauffmann, Ruff, Montavon, Müller; paper 003).

Files: ``models`` (KDE, autoencoder, deep one-class, bag in neuralized form: section 3, table 1), ``lrp``
(appendix A's propagation rules with zennit), ``protocols`` (MNIST-C and MVTec-AD set-ups, fit-and-explain).
"""
from . import lrp, models, protocols
from .lrp import L2Pool, lrp_composite, lrp_squared_norm
from .models import (BANDWIDTHS, CORRUPTIONS, KDE, MODELS, Autoencoder, Bag, BlockAE, DeepOneClass, FeatureCNN,
                     LeNetAE, build, fit_cached, smin, sq_distances)
from .protocols import GROUND_TRUTHS, TUNINGS, Protocol, fit_and_explain, hyperparameters, mnist_c_protocol, mvtec_protocol, protocol


def input_shape(dataset: str) -> tuple[int, int]:
    """(size, channels) the paper's models take: MNIST-C 28px grey, MVTec-AD 64px colour (its autoencoder [13])."""
    shapes = {"mnist_c": (28, 1), "mnist": (28, 1), "mvtec": (64, 3)}
    if dataset not in shapes:
        raise ValueError(f"the Clever Hans models have no input shape for {dataset!r}; choose one of {sorted(shapes)}")
    return shapes[dataset]


def check_parameters(p: dict) -> list[str]:
    """What the Clever Hans notebook's parameters cannot run with, found before any data is read: a pretraining
    set for the deep model's features that is not a known labelled dataset; a validation mix asked of MVTec-AD."""
    from ...data import canonical

    if p.get("ground_truth", "change_or_drawn") != "change_or_drawn" and p.get("dataset") == "mvtec":
        return [f"ground_truth {p['ground_truth']!r} is a reading of MNIST-C's generated truth; MVTec-AD's truth is "
                "its annotated defect masks (leave ground_truth='change_or_drawn')"]
    if p.get("deep_tuning", "per_corruption") != "per_corruption" and p.get("dataset") == "mvtec":
        return [f"deep_tuning {p['deep_tuning']!r} is for MNIST-C; an MVTec-AD category's validation outliers are "
                "already its own defect types mixed (leave deep_tuning='per_corruption')"]
    source = p.get("deep_pretrain") or ""
    if source:
        try:
            canonical(source)
        except ValueError as err:
            return [f"deep_pretrain {source!r}: {err} (or leave it empty for the paper's substitute)"]
    return []


__all__ = ["check_parameters", "BANDWIDTHS", "GROUND_TRUTHS", "TUNINGS", "CORRUPTIONS", "KDE", "MODELS", "Autoencoder", "Bag", "BlockAE", "DeepOneClass",
           "FeatureCNN", "LeNetAE", "L2Pool", "build", "fit_cached", "smin", "sq_distances", "lrp_composite",
           "lrp_squared_norm", "Protocol", "fit_and_explain", "hyperparameters", "protocol", "mnist_c_protocol", "mvtec_protocol", "input_shape",
           "lrp", "models", "protocols"]
