"""Section 4.3 of the FCDD paper: the Clever Hans effect on PASCAL VOC horses (figure 8), and a controlled probe
that pastes a watermark into a share of the nominal training images of a one-vs-rest dataset.

:func:`horse_setup` loads either set-up (VOC 2007: horse images of train against the val split; the probe: the
one-vs-rest split with ``watermark_fraction`` of the nominal training images watermarked); :func:`probe_metrics`
measures the detector's AUC and where its heatmaps look (the heatmap mass in the watermark region) and, for
the probe, what pasting the watermark into the test images changes; :func:`oneclass.gallery.fcdd_figure8` draws figure 8 from them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ... import metrics
from . import pipeline


@dataclass
class HorseSetup:
    """Training and test images of one section 4.3 run, and the watermark geometry the measurements use."""

    setting: str              # the key of fcdd.DATASETS the run trains with: 'voc', 'fmnist' or 'cifar10'
    train: object             # ImageSet: the described (nominal) class, some images watermarked in the probe
    test: object              # ImageSet with .anomaly: 0 = described class, 1 = other
    class_name: str
    region: np.ndarray        # bool (H, W): the lower-left watermark box
    marked: torch.Tensor      # bool (len(train),): which training images carry the pasted watermark
    width: float
    opacity: float

    @property
    def voc(self) -> bool:
        return self.setting == "voc"

    @property
    def area_share(self) -> float:
        return float(self.region.mean())

    def stamp(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` with the probe's watermark pasted into the lower-left corner."""
        return pipeline.paste_watermark(images, self.width, opacity=self.opacity)


def horse_setup(dataset: str, normal_class, seed: int = 0, train_limit: int | None = None,
                test_limit: int | None = None, watermark_fraction: float = 0.0, watermark_width: float = 0.4,
                watermark_opacity: float = 0.7, root=None) -> HorseSetup:
    """The data of a section 4.3 run: 'voc2007' (the paper's; VOC brings its own watermarks) or a one-vs-rest
    dataset FCDD has a 32 / 28 px set-up for (fmnist, cifar10), where ``watermark_fraction`` of the nominal
    training images (drawn with ``seed``) get a pasted watermark ``watermark_width`` of the side wide."""
    from ... import data
    from .detectors import input_shape

    voc = data.canonical(dataset) == "voc2007"
    if voc and watermark_fraction:
        raise ValueError("PASCAL VOC brings its own watermarks: leave watermark_fraction = 0 for dataset='voc2007' "
                         "(the probe pastes watermarks into datasets that have none)")
    if not 0 <= watermark_fraction <= 1:
        raise ValueError(f"watermark_fraction is a share of the training images, in [0, 1]; got {watermark_fraction}")
    setting = "voc" if voc else data.canonical(dataset)
    if setting not in ("voc", "fmnist", "cifar10"):
        # (ImageNet-30 trains on random 224 crops of 256 px images: a corner watermark would be cut away)
        raise ValueError(f"no FCDD set-up for dataset {dataset!r} here: the probe runs on fmnist and cifar10, "
                         "section 4.3 on voc2007")
    size, channels = input_shape(setting)
    if voc:
        cls = data.resolve_class("voc2007", normal_class)
        everything = data.load("voc2007", "train", root=root, size=size, channels=channels)
        train = everything.subset(everything.labels == cls)
        test = data.load("voc2007", "val", root=root, size=size, channels=channels)
        test.anomaly = (test.labels != cls).long()
        class_name = test.classes[cls]
    else:
        split = data.one_vs_rest(dataset, normal_class, root=root, size=size, channels=channels)
        train, test, class_name = split.train, split.test, split.normal_names[0]
    train = data.subsample(train, train_limit, seed)
    test = data.subsample(test, test_limit, seed)
    rows, cols = pipeline.watermark_box(size, watermark_width)
    region = np.zeros((size, size), dtype=bool)
    region[rows, cols] = True
    marked = torch.zeros(len(train), dtype=torch.bool)
    marked[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[
        :round(watermark_fraction * len(train))]] = True
    if marked.any():
        images = train.images.clone()
        images[marked] = pipeline.paste_watermark(images[marked], watermark_width, opacity=watermark_opacity)
        train = dataclasses.replace(train, images=images)
    return HorseSetup(setting, train, test, class_name, region, marked, watermark_width, watermark_opacity)


def probe_metrics(det, setup: HorseSetup, out, swap_labels: bool = True) -> dict:
    """AUC (the described class positive when labels are swapped), the region's area share and the mean
    heatmap mass in it on described and other test images; for the probe also the mass on watermarked
    described images, the mean score change the watermark causes on each group, and the AUC when every
    other-class test image carries the watermark (a Clever Hans model takes them for the described class)."""
    test = setup.test
    positive = (1 - test.anomaly) if swap_labels else test.anomaly
    described = (test.anomaly == 0).numpy()
    mass = metrics.heatmap_mass_fraction(out.maps, setup.region)
    # "positive" names the AUC's positive class, so that a run folder's auc can be recomputed from its scores
    result = {"auc": metrics.auc(out.scores, positive), "positive": "described" if swap_labels else "anomalous",
              "area_share": setup.area_share,
              "mass_described": float(np.nanmean(mass[described])), "mass_other": float(np.nanmean(mass[~described]))}
    if setup.voc:
        return result
    marked = det.score(setup.stamp(test.images))
    mixed = np.where(described, out.scores, marked.scores)
    return result | {
        "mass_described_watermarked": float(np.nanmean(metrics.heatmap_mass_fraction(marked.maps[described],
                                                                                      setup.region))),
        "score_shift_described": float(np.mean(marked.scores[described] - out.scores[described])),
        "score_shift_other": float(np.mean(marked.scores[~described] - out.scores[~described])),
        "auc_watermarked_others": metrics.auc(mixed, positive)}
