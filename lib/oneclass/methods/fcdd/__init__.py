"""FCDD, *Explainable Deep One-Class Classification* (Liznerski et al., paper 000), with its HSC and AE baselines.

Files, by the paper's concepts: ``losses`` (eq. 1-3), ``upsample`` (Algorithm 1, appendix A), ``nets``
(appendix B and the authors' wider networks), ``pipeline`` (appendix C's pre-processing, outlier exposure,
confetti noise, watermarks), ``detectors`` (:class:`FCDD`, :class:`HSC`, :class:`AE`, per-dataset defaults), ``clever_hans`` (section 4.3:
VOC horses, the watermark probe, figure 8).
"""
from . import clever_hans, losses, nets, pipeline, upsample
from .detectors import (AE, CHANNELS_LAST, DATASETS, FCDD, HSC, LOAD, METHODS, check_parameters, defaults, input_shape,
                        make, mvtec_split, outliers, paper_epochs, training_task_probe, blur_images,
                        default_exclude, setting, FOLDER_LIKE)
from .losses import EPS, fcdd_loss, hsc_loss, pixel_loss, pseudo_huber
from .upsample import ReceptiveUpsampler, gaussian_kernel, official_kernel, receptive_upsample

__all__ = ["AE", "CHANNELS_LAST", "check_parameters", "DATASETS", "FCDD", "HSC", "LOAD", "METHODS", "mvtec_split", "defaults", "input_shape", "make", "outliers", "training_task_probe", "blur_images", "default_exclude", "setting", "FOLDER_LIKE",
           "paper_epochs", "EPS", "fcdd_loss", "hsc_loss", "pixel_loss", "pseudo_huber", "ReceptiveUpsampler",
           "gaussian_kernel", "official_kernel", "receptive_upsample", "clever_hans", "losses", "nets", "pipeline", "upsample"]
