"""GEOM, *Deep Anomaly Detection Using Geometric Transformations* (Golan & El-Yaniv, paper 001).

Files: ``transforms`` (the 72 transformations, section 3 / 5.1), ``dirichlet`` (the normality score, section 4),
``wrn`` (the wide residual network, section 5.1), ``intuition`` (section 6 and Figure 1 as the authors' code
runs them), ``ood`` (section 5.5: the two-headed WRN and ODIN), ``detector`` (:class:`GEOM`, the paper's pre-processing),
``cues`` (ours: what a JPEG copy's artifacts tell the network about the transformation, without the object).
"""
from . import cues, dirichlet, intuition, ood, transforms, wrn
from .cues import compression_cues
from .detector import (DATA, GEOM, NETS, PIXEL_RANGES, check_parameters, crop_center, data_setup, input_shape,
                       prepare, transformed)
from .intuition import IntuitionNet
from .dirichlet import (EULER_GAMMA, DirichletFit, dirichlet_normality, fit_dirichlet, fit_dirichlet_stats,
                        inverse_digamma, simplified_normality)
from .transforms import IDENTITY, SETS, Transform, apply, index_maps, transformations
from .wrn import WRN, wrn_for

__all__ = ["DATA", "GEOM", "NETS", "PIXEL_RANGES", "IntuitionNet", "intuition", "ood", "check_parameters", "SETS", "crop_center", "data_setup", "input_shape", "prepare", "transformed", "EULER_GAMMA",
           "DirichletFit", "dirichlet_normality", "fit_dirichlet", "fit_dirichlet_stats", "inverse_digamma",
           "simplified_normality", "IDENTITY", "Transform", "apply", "index_maps", "transformations", "WRN",
           "wrn_for", "dirichlet", "transforms", "wrn", "cues", "compression_cues"]
