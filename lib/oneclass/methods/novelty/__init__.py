"""*One-class anomaly detection via novelty normalization* (Wu, Lu, Fuh, Liu; paper 002).

Files: ``nets`` (autoencoder, novelty-scoring head with its L0 term, batch min-max normalisation: section 3),
``detector`` (:class:`NoveltyNormalization`, the Table 4 ablation rows, the paper's input shapes), ``claims``
(Table 4's gains read from published results, with a verdict per reading).
"""
from . import claims, nets
from .claims import ablation_gains, table_readings
from .detector import AE_LOSS, CONFIGURATIONS, LOAD, LR_STEP_UNITS, RECONSTRUCTION, NoveltyNormalization, input_shape
from .nets import (ABLATION, CONFIGS, L0_MODES, NORM_STATS, NORMALIZE, BatchMinMax, L0Linear, LeNetAutoencoder,
                   NoveltyScorer)

__all__ = ["ablation_gains", "table_readings", "claims", "AE_LOSS", "CONFIGURATIONS", "LR_STEP_UNITS", "RECONSTRUCTION", "LOAD", "NoveltyNormalization", "input_shape", "ABLATION", "CONFIGS", "L0_MODES",
           "NORM_STATS", "NORMALIZE", "BatchMinMax", "L0Linear", "LeNetAutoencoder", "NoveltyScorer", "nets"]
