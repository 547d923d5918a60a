"""The entry points every notebook uses: load a split, name classes, build one-vs-rest splits."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .catalog import DATASETS, IMAGENET30_CLASSES, canonical
from .cifar import _LAYOUT as _CIFAR_LAYOUT, load_cifar
from .core import (ImageSet, Split, check_channels, check_jpeg, check_size, data_root, fit, jpeg_roundtrip,
                   match_class, valid_classes)
from .download import ensure
from .folders import folder_classes, load_folder_dataset, tree_has_splits
from .idx import _existing, idx_files, load_idx_dataset
from .mvtec import category_folder, is_path_category, load_mvtec, mvtec_categories
from .voc import load_voc

_LOADERS = {
    "mnist": load_idx_dataset, "fmnist": load_idx_dataset, "emnist_letters": load_idx_dataset,
    "cifar10": load_cifar, "cifar100": load_cifar, "cifar100_coarse": load_cifar,
    "tiny_imagenet": load_folder_dataset, "imagenet30": load_folder_dataset, "imagenet22k": load_folder_dataset,
    "imagenet1k_val": load_folder_dataset, "catsvsdogs": load_folder_dataset, "folder": load_folder_dataset,
    "voc2007": load_voc,
}


def source(dataset, root=None) -> tuple[str, object]:
    """(canonical name, root) of ``dataset``: a path (absolute, or starting with ~ ./ ../) is a class-folder tree
    of one's own, read as dataset 'folder' with the tree as its root."""
    if is_path_category(dataset):
        return "folder", Path(str(dataset)).expanduser().absolute()
    name = canonical(dataset)
    if name == "folder" and root is None:
        raise ValueError("dataset 'folder' reads a class-folder tree of your own: give the tree's path as the "
                         "dataset ('~/my_tree', '/data/my_tree') or as root=")
    return name, root


def load(dataset: str, split: str = "train", root=None, size=None, channels=None, download=None, *,
         skip_corrupt: bool = False) -> ImageSet:
    """One split of ``dataset`` as uint8 tensors, resized to ``size`` x ``size`` and converted to ``channels``.

    ``size=None`` / ``channels=None`` keep what is stored (folder datasets: RGB, and all images must share a
    size). ``download=None`` downloads the torchvision-downloadable datasets when they are missing (unless
    ``ONECLASS_DOWNLOAD=0``); anything still missing raises DatasetMissingError. ``skip_corrupt`` leaves out
    image files that fail to decode instead of raising CorruptImageError (listed in ``meta['skipped']``).
    """
    name, root = source(dataset, root)
    if name == "mvtec":
        raise ValueError("MVTec is loaded per category: data.load_mvtec('bottle', split) "
                         "or data.one_vs_rest('mvtec', 'bottle')")
    if name == "mnist_c":
        raise ValueError("MNIST-C is loaded per corruption, with its clean originals and ground truth: "
                         "oneclass.mnist_c.load('fog', split)")
    info = DATASETS[name]
    if split not in info.splits:
        raise ValueError(f"{name!r} has splits {', '.join(info.splits)}; got {split!r}")
    size, channels = check_size(size), check_channels(channels)
    images = _LOADERS[name](name, split, data_root(root), size=size, channels=channels, download=download,
                            skip_corrupt=skip_corrupt)
    return fit(images, size, channels)


def classes(dataset: str, root=None) -> list[str]:
    """Class names in label order; folder datasets read them from disk (MVTec: 15 official + folders found)."""
    name, root = source(dataset, root)
    if name == "mvtec":
        return mvtec_categories(root)
    if DATASETS[name].classes is not None:
        return list(DATASETS[name].classes)
    if name == "imagenet30" and not (data_root(root) / "ImageNet30").is_dir():
        return sorted(IMAGENET30_CLASSES)   # the release's 30 class folders, in the order a listing sorts them
    return folder_classes(name, data_root(root))


def nominal_classes(dataset: str, root=None) -> list[str]:
    """The classes that can be nominal: those with training images (a tree of one's own may hold test-only
    classes, anomalies only); for every other dataset all its classes."""
    name, root = source(dataset, root)
    names = classes(name, root)
    base = data_root(root)
    if name == "folder" and tree_has_splits(base):
        return [c for c in names if (base / "train" / c).is_dir()]
    return names


def resolve_class(dataset: str, cls, root=None) -> int:
    """The label index of ``cls``: an int index, or a name (exact, case-insensitive, or its slug)."""
    name, root = source(dataset, root)
    return match_class(name, classes(name, root), cls)


def _as_list(normal) -> list:
    if hasattr(normal, "tolist"):  # numpy / torch scalars and arrays
        normal = normal.tolist()
    if isinstance(normal, (str, int)) or not hasattr(normal, "__iter__"):
        return [normal]
    return list(normal)


def one_vs_rest(dataset: str, normal, root=None, size=None, channels=None, *, download=None,
                skip_corrupt: bool = False, jpeg_quality: int | None = None,
                jpeg_orientation: str = "upright") -> Split:
    """The one-vs-rest protocol: ``normal`` classes (one, or a list for a multi-class nominal set) are normal.

    ``train`` holds the training images of the normal classes only (anomaly 0); ``test`` is the whole test
    split with ``anomaly`` = 1 for every image outside the normal classes. For MVTec, ``normal`` is one
    category: train = its train/good, test = its whole test folder with the defect labels.
    ``jpeg_quality``: re-encode the train and test images as JPEG at that quality (:func:`core.jpeg_roundtrip`),
    after resizing: a measurement of what a lossy copy of the dataset costs, not a paper's pre-processing;
    ``jpeg_orientation`` 'random' encodes each image turned and mirrored at random (train and test drawn apart);
    'random_grid' also rolls it by a random 0-15 px before encoding (the block grid at a random phase).
    """
    check_jpeg(jpeg_quality, jpeg_orientation)
    code = lambda images, seed: jpeg_roundtrip(images, jpeg_quality, jpeg_orientation, seed)
    name, root = source(dataset, root)
    test_split = DATASETS[name].test_split
    if test_split is None:
        raise ValueError(f"{name!r} has no test split (it serves as an outlier-exposure corpus: load_outliers)")
    wanted = _as_list(normal)
    names = classes(name, root)
    if not wanted:
        raise ValueError(f"empty nominal set for {name!r}: pass at least one normal class (name or index); "
                         f"valid classes: {valid_classes(names)}")
    ids = list(dict.fromkeys(match_class(name, names, c) for c in wanted))
    opts = dict(root=root, size=size, channels=channels)
    if name == "mvtec":
        if len(ids) != 1:
            raise ValueError(f"MVTec one-vs-rest takes exactly one category, got {[names[i] for i in ids]}")
        cat = names[ids[0]]
        return Split(code(load_mvtec(cat, "train", skip_corrupt=skip_corrupt, **opts), 0),
                     code(load_mvtec(cat, "test", skip_corrupt=skip_corrupt, **opts), 1), ids, [cat])
    if len(ids) == len(names):
        raise ValueError(f"every class of {name!r} is in the nominal set, so the test set has no anomalies")
    opts.update(download=download, skip_corrupt=skip_corrupt)
    normal_ids = torch.tensor(ids)
    train = load(name, "train", **opts)
    keep = torch.isin(train.labels, normal_ids)
    if not keep.any():
        raise ValueError(f"no training images of the nominal set {[names[i] for i in ids]} in {name!r}")
    train = train.subset(keep)
    train.anomaly = torch.zeros(len(train), dtype=torch.int64)
    test = load(name, test_split, **opts)
    test = dataclasses.replace(test, anomaly=(~torch.isin(test.labels, normal_ids)).long())
    return Split(code(train, 0), code(test, 1), ids, [train.classes[i] for i in ids])


def subsample(images: ImageSet, limit: int | None, seed: int = 0) -> ImageSet:
    """``limit`` images chosen at random with ``seed``, the same share of every class (and of nominal /
    anomalous images when the set has anomaly labels), at least one of each: a reduced one-vs-rest test set keeps
    its proportions and every anomaly class, so its AUC stays defined. ``None`` keeps all."""
    if limit is None or limit >= len(images):
        return images
    if limit < 1:
        raise ValueError(f"limit must be a positive number of images or None, got {limit}")
    g = torch.Generator().manual_seed(int(seed))
    labels = getattr(images, "labels", None)
    anomaly = getattr(images, "anomaly", None)
    key = torch.zeros(len(images), dtype=torch.long)
    if labels is not None:
        key = key + torch.as_tensor(labels).long() * 2
    if anomaly is not None:
        key = key + torch.as_tensor(anomaly).long()
    values, counts = key.unique(return_counts=True)
    quota = limit * counts.double() / len(key)
    take = quota.floor().long().clamp(min=1)
    # largest remainders fill up to exactly `limit` (or take from the largest classes when the minimum of one
    # per class overshoots)
    while int(take.sum()) < limit:
        room = (take < counts).double() * (quota - take.double() + 1e-9 * counts.double())
        take[int(room.argmax())] += 1
    while int(take.sum()) > limit and int(take.max()) > 1:
        take[int(take.argmax())] -= 1
    picks = []
    for value, k in zip(values, take.tolist()):
        idx = torch.nonzero(key == value).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return images.subset(torch.cat(picks).sort().values)


def require(dataset: str, root=None, download=None, normal=None) -> None:
    """Make sure ``dataset``'s files are under the data root without reading them: download what is missing
    when that is possible and allowed, else raise DatasetMissingError naming the files expected and where to get
    them. ``normal``: the class a run needs (an MVTec-AD category, an MNIST-C corruption). The batch runner calls
    this once per dataset before any kernel starts, so parallel runs never download the same files at once."""
    name, root = source(dataset, root)
    root = data_root(root)
    if name == "folder":
        folder_classes(name, root)      # raises DatasetMissingError for a missing or empty class tree
    elif name in ("mnist", "fmnist", "emnist_letters"):
        files = [f for split in ("train", "test") for f in idx_files(name, split, root)]
        ensure(name, root, files, download, exists=lambda p: _existing(p).exists())
    elif name in _CIFAR_LAYOUT:
        folder, splits, meta, _, _ = _CIFAR_LAYOUT[name]
        ensure(name, root, [root / folder / f for files in splits.values() for f in files] + [root / folder / meta],
               download)
    elif name == "tiny_imagenet":
        base = root / "tiny-imagenet-200"
        ensure(name, root, [base / "wnids.txt", base / "train"], download)   # val is checked when it is read
    elif name in ("imagenet30", "imagenet22k", "imagenet1k_val"):
        folder_classes(name, root)      # raises DatasetMissingError for a missing or empty class tree
    # the folder datasets below cannot be downloaded: ensure() only checks and explains
    elif name == "catsvsdogs":
        ensure(name, root, [root / "PetImages" / c for c in DATASETS[name].classes], download, exists=Path.is_dir)
    elif name == "voc2007":
        base = root / "VOCdevkit" / "VOC2007"
        ensure(name, root, [base / "ImageSets" / "Main", base / "JPEGImages", base / "Annotations"], download,
               exists=Path.is_dir)
    elif name == "mvtec":
        if normal is None:
            expected = [root / "mvtec_anomaly_detection"]
        else:
            folder = category_folder(normal, root)
            expected = [folder / "train" / "good", folder / "test"]
        ensure(name, root, expected, download, exists=Path.is_dir)
    elif name == "mnist_c":
        # MNIST-C is regenerated from MNIST where its corruption folder is missing
        corruptions = [normal] if isinstance(normal, str) else list(DATASETS[name].classes)
        if any(not (root / "mnist_c" / c).is_dir() for c in corruptions):
            require("mnist", root, download)
