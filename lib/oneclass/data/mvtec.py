"""MVTec-AD categories, and any folder of your own in the same layout.

Layout of one category folder, ``<root>/mvtec_anomaly_detection/<category>/`` (``load_mvtec``) or anywhere
(``load_mvtec_folder``, or ``load_mvtec`` with the category given as a path, e.g. ``'/data/widgets'``, which is
how a params file or a notebook's ``category`` names a folder of one's own):

    train/good/*.png
    test/good/*.png, test/<defect>/*.png
    ground_truth/<defect>/<stem>_mask.png       optional; one mask per defective test image

Images may have any size and be RGB or grayscale, PNG or JPEG. Labels are defect types with
``classes = ['good', <defect folders sorted>]`` in both splits, so indices agree; ``anomaly = label != 0``.
``channels=None`` keeps the stored colour: grayscale categories (grid, screw, zipper) come as 1 channel.
Masks are read when ``ground_truth/`` exists: resized with nearest neighbour to the image size and binarised
(> 127 -> 1), zeros for good images. Without ``ground_truth/`` (e.g. the project's bottle copy), ``masks`` is
None, ``has_masks`` is False and ``meta['masks_missing']`` says why: only image-level metrics are possible.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .catalog import DATASETS, MVTEC_CLASSES
from .core import (CorruptImageError, DatasetMissingError, ImageSet, UnknownClassError, check_channels, check_size,
                   data_root, match_class)
from .folders import decode_set, is_image_file, list_images, subfolders

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def mvtec_categories(root=None) -> list[str]:
    """The 15 official categories, then any other category folder found under the data root (sorted)."""
    base = data_root(root) / "mvtec_anomaly_detection"
    extra = [c for c in subfolders(base) if c not in MVTEC_CLASSES] if base.is_dir() else []
    return list(MVTEC_CLASSES) + extra


def _missing(folder: Path, paths) -> DatasetMissingError:
    info = DATASETS["mvtec"]
    return DatasetMissingError.build("mvtec", folder.parent, paths, info.source, info.layout)


def is_path_category(category) -> bool:
    """A category given as a folder anywhere on disk: an absolute path or one starting with '~', './' or '../'
    ('/data/widgets', '~/widgets', './widgets'), never a class name (Fashion-MNIST's 'T-shirt/top' is a name)."""
    if not isinstance(category, (str, Path)):
        return False
    s = str(category)
    return Path(s).is_absolute() or s.startswith(("~", "./", "../", ".\\", "..\\"))


def category_folder(category, root: Path) -> Path:
    """``<root>/mvtec_anomaly_detection/<category>`` for a category given by name (any case) or index, or the
    folder itself for a category given as a path (:func:`is_path_category`); a category that is not known gives
    the folder that was looked for, for the caller's missing-data message."""
    if is_path_category(category):
        return Path(category).expanduser().absolute()
    categories = mvtec_categories(root)
    try:
        category = categories[match_class("mvtec", categories, category)]
    except UnknownClassError:
        pass
    return root / "mvtec_anomaly_detection" / str(category)


def load_mvtec(category: str, split: str = "train", root=None, size=None, channels=None,
               skip_corrupt: bool = False) -> ImageSet:
    """One MVTec-AD category from ``<root>/mvtec_anomaly_detection/<category>`` (name, any case, or index)."""
    root = data_root(root)
    folder = category_folder(category, root)
    if not folder.is_dir():
        info = DATASETS["mvtec"]
        raise DatasetMissingError.build("mvtec", root, [folder / "train" / "good", folder / "test"],
                                        info.source, info.layout)
    return load_mvtec_folder(folder, split, size, channels, skip_corrupt)


def load_mvtec_folder(path, split: str = "train", size=None, channels=None, skip_corrupt: bool = False) -> ImageSet:
    """A category folder in MVTec-AD layout (see the module docstring)."""
    folder = Path(path).expanduser().absolute()
    size, channels = check_size(size), check_channels(channels)
    if split not in ("train", "test"):
        raise ValueError(f"MVTec split must be 'train' or 'test', got {split!r}")
    test_dir = folder / "test"
    if split == "test" and not test_dir.is_dir():
        raise _missing(folder, [test_dir])
    defects = [d for d in subfolders(test_dir) if d != "good"] if test_dir.is_dir() else []
    classes = ["good"] + defects
    if split == "train":
        sources = [(folder / "train" / "good", 0)]
    else:
        sources = [(test_dir / c, i) for i, c in enumerate(classes) if c != "good" or (test_dir / c).is_dir()]
    paths, labels = [], []
    for d, label in sources:
        if not d.is_dir():
            raise _missing(folder, [d])
        files = list_images(d, recursive=False)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise _missing(folder, [d / "<image files>" for d, _ in sources])
    if channels is None:
        channels = _stored_channels(paths[0])
    images = decode_set("mvtec", paths, labels, classes, size, channels, skip_corrupt=skip_corrupt,
                        meta={"category": folder.name, "folder": str(folder)})
    anomaly = (images.labels != 0).long()
    gt = folder / "ground_truth"
    if not gt.is_dir():
        meta = dict(images.meta, masks_missing=f"no ground_truth folder at {gt}")
        return dataclasses.replace(images, anomaly=anomaly, meta=meta)
    masks = torch.zeros((len(images), 1, *images.images.shape[2:]), dtype=torch.uint8)
    h, w = images.images.shape[2:]
    for i, m in _defect_masks(folder, images, (w, h)).items():
        masks[i, 0] = torch.from_numpy(m)
    return dataclasses.replace(images, anomaly=anomaly, masks=masks)


def _stored_channels(path: Path) -> int:
    try:
        with Image.open(path) as im:
            return 1 if im.mode in _GRAY_MODES else 3
    except Exception as e:
        raise CorruptImageError.build(path, f"{type(e).__name__}: {e}") from e


def _mask_path(folder: Path, gt: Path, image: Path, defect: str) -> Path:
    expected = gt / defect / f"{image.stem}_mask.png"
    if expected.exists():
        return expected
    # users' own folders may store masks as JPEG/BMP/...
    others = sorted(p for p in (gt / defect).glob(f"{image.stem}_mask.*") if is_image_file(p))
    if not others:
        raise _missing(folder, [expected])
    return others[0]


def _defect_masks(folder: Path, images: ImageSet, size_wh) -> dict[int, np.ndarray]:
    """{index: 0/1 mask} for the defective images of a set loaded from ``folder``, read at ``size_wh``
    (None: as stored)."""
    gt = folder / "ground_truth"
    return {i: _read_mask(_mask_path(folder, gt, Path(p), images.classes[label]), size_wh)
            for i, (p, label) in enumerate(zip(images.paths, images.labels.tolist())) if label != 0}


def _read_mask(path: Path, size_wh) -> np.ndarray:
    """A mask as 0/1 uint8, resized with nearest neighbour to ``size_wh`` (None: as stored)."""
    try:
        with Image.open(path) as im:
            m = im.convert("L")
        if size_wh is not None and m.size != tuple(size_wh):
            m = m.resize(tuple(size_wh), Image.Resampling.NEAREST)
    except Exception as e:
        raise CorruptImageError.build(path, f"{type(e).__name__}: {e}") from e
    return (np.asarray(m) > 127).astype(np.uint8)


def semi_supervised_split(test: ImageSet, per_defect: int = 1, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """FCDD's semi-supervised MVTec-AD setting (section 4.2): ``per_defect`` anomalous test images of every
    defect type, drawn at random with ``seed``, are moved into training (with their masks). Returns
    (labelled anomalies, remaining test set); the two are disjoint and the remaining set keeps every good image."""
    if test.anomaly is None:
        raise ValueError("the test set has no anomaly labels: load it with load_mvtec(category, 'test')")
    if per_defect < 1:
        raise ValueError(f"per_defect must be >= 1, got {per_defect}")
    g = torch.Generator().manual_seed(int(seed))
    picked = []
    for label in sorted(set(test.labels[test.anomaly == 1].tolist())):
        members = (test.labels == label).nonzero()[:, 0]
        if len(members) <= per_defect:
            raise ValueError(f"defect type {test.classes[label]!r} has only {len(members)} test image(s); moving "
                             f"{per_defect} into training would leave none to test on")
        picked.append(members[torch.randperm(len(members), generator=g)[:per_defect]])
    if not picked:
        raise ValueError("the test set has no anomalous images to move into training")
    chosen = torch.zeros(len(test), dtype=torch.bool)
    chosen[torch.cat(picked)] = True
    return test.subset(chosen), test.subset(~chosen)


def size_summary(shapes) -> str:
    """'N sizes from HxW to HxW' for a list of (h, w): what an error about sizes says instead of every shape."""
    shapes = list(shapes)
    areas = [h * w for h, w in shapes]
    lo, hi = shapes[int(np.argmin(areas))], shapes[int(np.argmax(areas))]
    return f"{len(set(shapes))} different sizes among {len(shapes)} masks, from {lo[0]}x{lo[1]} to {hi[0]}x{hi[1]} (height x width)"


class MaskFiles:
    """The ground-truth masks of an MVTec-layout test set, one per image, read from disk on access (0/1 uint8
    (H, W) at the mask file's own resolution, or ``size`` x ``size`` with nearest neighbour; zeros at the image's
    stored size for good images). A sequence, so :func:`oneclass.metrics.pixel_metrics` can walk a test set of
    any sizes without holding it in memory."""

    def __init__(self, images: ImageSet, size=None):
        folder = Path(images.meta.get("folder", ""))
        if images.paths is None or not (folder / "ground_truth").is_dir():
            raise ValueError(f"no ground-truth masks for this set "
                             f"({images.meta.get('masks_missing', 'no ground_truth folder')})")
        self.folder, self.size = folder, check_size(size)
        self.paths = [Path(p) for p in images.paths]
        self.defects = [images.classes[label] if label != 0 else None for label in images.labels.tolist()]
        for i, d in enumerate(self.defects):       # every mask file exists before any metric starts
            if d is not None:
                _mask_path(folder, folder / "ground_truth", self.paths[i], d)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        wh = None if self.size is None else (self.size, self.size)
        if self.defects[i] is not None:
            return _read_mask(_mask_path(self.folder, self.folder / "ground_truth", self.paths[i], self.defects[i]),
                              wh)
        if wh is None:
            with Image.open(self.paths[i]) as im:      # the header only: no decode
                wh = im.size
        return np.zeros((wh[1], wh[0]), np.uint8)

    def shapes(self) -> list[tuple[int, int]]:
        out = []
        for i in range(len(self)):
            if self.size is not None:
                out.append((self.size, self.size))
                continue
            path = self.paths[i] if self.defects[i] is None else \
                _mask_path(self.folder, self.folder / "ground_truth", self.paths[i], self.defects[i])
            with Image.open(path) as im:
                out.append((im.size[1], im.size[0]))
        return out


def mvtec_masks(images: ImageSet, size=None) -> MaskFiles:
    """The test set's masks as a lazy sequence (:class:`MaskFiles`): images and masks may have any sizes."""
    return MaskFiles(images, size)


def load_mvtec_masks(images: ImageSet, size=None) -> np.ndarray:
    """The ground-truth masks of an MVTec-AD test set (as loaded by :func:`load_mvtec`, possibly subsampled or
    split), read from disk at ``size`` x ``size`` (nearest neighbour) or, with ``size=None``, at their stored
    resolution, stacked: uint8 (N, H, W) of 0/1, zeros for good images. Only the mask files are read, never the
    images. A category whose masks differ in size cannot be stacked: use :func:`mvtec_masks` (lazy, any sizes)
    with :func:`oneclass.metrics.pixel_metrics`, or pass ``size``."""
    files = MaskFiles(images, size)
    shapes = files.shapes()
    if len(set(shapes)) > 1:
        raise ValueError(f"the masks of {files.folder.name!r} differ in size ({size_summary(shapes)}): use "
                         "data.mvtec_masks(test) with metrics.pixel_metrics (each map against its own mask), or "
                         "pass size= to read them all at one resolution")
    return np.stack([files[i] for i in range(len(files))])
