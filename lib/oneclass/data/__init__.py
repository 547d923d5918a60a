"""Datasets from their standard on-disk layouts under one data root, as uint8 tensors in memory.

    from oneclass import data
    split = data.one_vs_rest("fmnist", "Trouser", size=28)      # split.train / split.test (with .anomaly)
    oe = data.load_outliers("tiny_imagenet", size=32, channels=3, limit=1000, seed=0)

The data root is ``root=`` if given, else ``$ONECLASS_DATA``, else ``./data``. Each module's docstring
states the layout it reads: ``idx`` (MNIST, Fashion-MNIST, EMNIST letters), ``cifar`` (CIFAR-10/100),
``folders`` (Tiny ImageNet, ImageNet-30, ImageNet-22k, ImageNet-1k val, Cats vs Dogs), ``mvtec``, ``voc``.
Missing data is downloaded with torchvision where that is possible and allowed; otherwise (and when the
download fails) DatasetMissingError says which files to put where. Nothing is ever substituted.
"""
from .api import classes, load, nominal_classes, one_vs_rest, require, resolve_class, source, subsample
from .catalog import DATASETS, IMAGENET30_CLASSES, canonical
from .core import (CorruptImageError, DatasetInfo, DatasetMissingError, ImageSet, Split, UnknownClassError,
                   class_slug, data_root, jpeg_images, jpeg_roundtrip, match_class, resize, to_channels)
from .folders import decode_images, list_images
from .idx import read_idx
from .mvtec import (category_folder, is_path_category, load_mvtec, load_mvtec_folder, load_mvtec_masks, mvtec_categories, mvtec_masks,
                    semi_supervised_split)
from .outliers import (NAMED_EXCLUSIONS, TINY_IMAGENET_CIFAR10, TINY_IMAGENET_CIFAR10_BORDERLINE, expand_exclusions,
                       load_outliers)

__all__ = [
    "data_root", "DATASETS", "classes", "nominal_classes", "source", "require", "resolve_class", "class_slug", "load", "one_vs_rest", "load_outliers", "NAMED_EXCLUSIONS", "TINY_IMAGENET_CIFAR10",
    "TINY_IMAGENET_CIFAR10_BORDERLINE", "expand_exclusions",
    "subsample",
    "load_mvtec", "load_mvtec_folder", "is_path_category", "category_folder", "mvtec_categories", "semi_supervised_split", "load_mvtec_masks", "mvtec_masks", "ImageSet", "Split", "DatasetInfo",
    "DatasetMissingError", "CorruptImageError", "UnknownClassError", "canonical", "match_class",
    "IMAGENET30_CLASSES", "jpeg_images", "jpeg_roundtrip", "resize", "to_channels", "read_idx", "list_images", "decode_images",
]
