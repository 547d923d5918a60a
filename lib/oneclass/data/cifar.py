"""CIFAR-10 and CIFAR-100, read straight from the python pickles of the official distribution.

Layout under the data root (what the official tarballs and torchvision's downloaders unpack):

    cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    cifar-100-python/{train,test,meta}

There is no md5 gate (torchvision's CIFAR10 class has one): the project's CIFAR-10 copy is a faithful but lossy
re-encode with other checksums, and a shape check catches damaged files anyway. Pickles written by Python 2
(the originals) and by Python 3 with bytes keys are both read. ``cifar100`` gives the 100 fine labels,
``cifar100_coarse`` the 20 superclasses; class names come from the meta file.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .core import CorruptImageError, ImageSet
from .download import ensure

# dataset -> (folder, split -> batch files, meta file, labels key, class names key)
_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]},
                 "meta", "fine_labels", "fine_label_names"),
    "cifar100_coarse": ("cifar-100-python", {"train": ["train"], "test": ["test"]},
                        "meta", "coarse_labels", "coarse_label_names"),
}


def _text(v):
    return v.decode("latin1") if isinstance(v, bytes) else v


def read_pickle(path) -> dict:
    """One CIFAR pickle as a dict with str keys (bytes keys and bytes names decoded)."""
    try:
        with open(path, "rb") as f:
            # latin1 is what lets Python 3 read the numpy arrays inside the original Python 2 pickles.
            d = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise CorruptImageError.build(path, f"not a readable CIFAR pickle ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict):
        raise CorruptImageError.build(path, f"expected a dict in the pickle, found {type(d).__name__}")
    return {_text(k): v for k, v in d.items()}


def _batch(path: Path, labels_key: str):
    d = read_pickle(path)
    if "data" not in d or labels_key not in d:
        raise CorruptImageError.build(path, f"missing 'data' or {labels_key!r}; keys: {sorted(d)}")
    x = np.asarray(d["data"])
    y = np.asarray(d[labels_key], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (len(x),):
        raise CorruptImageError.build(path, f"expected uint8 data (N, 3072) with N labels, found {x.dtype} "
                                            f"{x.shape} and {y.shape} labels")
    return x, y


def load_cifar(dataset: str, split: str, root: Path, download=None, **_) -> ImageSet:
    """Load 'cifar10', 'cifar100' (fine labels) or 'cifar100_coarse' at 32x32 RGB."""
    folder, files, meta_name, labels_key, names_key = _LAYOUT[dataset]
    base = root / folder
    paths = [base / f for f in files[split]]
    ensure(dataset, root, paths + [base / meta_name], download)
    meta = read_pickle(base / meta_name)
    if names_key not in meta:
        raise CorruptImageError.build(base / meta_name, f"no {names_key!r}; keys: {sorted(meta)}")
    classes = [_text(n) for n in meta[names_key]]
    parts = [_batch(p, labels_key) for p in paths]
    x = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    y = np.concatenate([p[1] for p in parts])
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise CorruptImageError.build(paths[0], f"labels outside the {len(classes)} classes in {meta_name}")
    # rows are stored as a red plane, then green, then blue: exactly (3, 32, 32) in C order
    images = torch.from_numpy(np.ascontiguousarray(x).reshape(-1, 3, 32, 32))
    return ImageSet(images, torch.from_numpy(y), classes, dataset)
