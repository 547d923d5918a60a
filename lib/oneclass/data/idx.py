"""MNIST, Fashion-MNIST and EMNIST letters, read from the raw idx files that torchvision's downloaders write.

Layout under the data root (``.gz`` versions of each file are read too):

    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    EMNIST/raw/emnist-letters-{train,test}-{images-idx3,labels-idx1}-ubyte

EMNIST stores every image transposed (column-major, a leftover of its conversion from NIST): the loader
transposes them back so letters stand upright like MNIST digits. EMNIST letters labels are 1..26 on disk
(0 is an unused 'N/A' class in torchvision); here they are 0..25 for 'a'..'z'.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .catalog import DATASETS
from .core import CorruptImageError, ImageSet
from .download import ensure

# idx type codes -> numpy dtypes (multi-byte values are big-endian)
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# dataset -> (folder under the root, file name pattern, split -> file prefix)
_FILES = {
    "mnist": ("MNIST/raw", "{prefix}-{kind}-ubyte", {"train": "train", "test": "t10k"}),
    "fmnist": ("FashionMNIST/raw", "{prefix}-{kind}-ubyte", {"train": "train", "test": "t10k"}),
    "emnist_letters": ("EMNIST/raw", "emnist-letters-{prefix}-{kind}-ubyte", {"train": "train", "test": "test"}),
}


def read_idx(path) -> np.ndarray:
    """Parse one idx file (optionally gzip-compressed) into a numpy array, checking its size against its header."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                buf = np.frombuffer(bytearray(f.read()), dtype=np.uint8)
        else:
            buf = np.fromfile(path, dtype=np.uint8)  # writable, so torch can share it without a copy
    except (OSError, EOFError) as e:
        raise CorruptImageError.build(path, e) from e
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or int(buf[2]) not in _DTYPES:
        raise CorruptImageError.build(path, "not an idx file (bad magic number)")
    ndim = int(buf[3])
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise CorruptImageError.build(path, "truncated idx header")
    dims = tuple(int(d) for d in buf[4:header].view(">u4"))
    dtype = np.dtype(_DTYPES[int(buf[2])])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        raise CorruptImageError.build(path, f"{len(buf)} bytes where its header {dims} implies {expected}")
    return buf[header:].view(dtype).reshape(dims)


def _existing(path: Path) -> Path:
    """The file itself if present, else its .gz sibling."""
    return path if path.exists() else path.with_name(path.name + ".gz")


def idx_files(dataset: str, split: str, root: Path) -> tuple[Path, Path]:
    """The (images, labels) idx paths of ``split``, uncompressed names."""
    folder, pattern, prefixes = _FILES[dataset]
    base = root / folder
    return tuple(base / pattern.format(prefix=prefixes[split], kind=kind) for kind in ("images-idx3", "labels-idx1"))


def load_idx_dataset(dataset: str, split: str, root: Path, download=None, **_) -> ImageSet:
    """Load MNIST-like ``dataset`` ('mnist', 'fmnist', 'emnist_letters') at its native 28x28, one channel."""
    files = idx_files(dataset, split, root)
    ensure(dataset, root, files, download, exists=lambda p: _existing(p).exists())
    img_path, lab_path = (_existing(p) for p in files)
    x, y = read_idx(img_path), read_idx(lab_path)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise CorruptImageError.build(img_path, f"expected uint8 images (N, H, W), found {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise CorruptImageError.build(lab_path, f"expected {len(x)} labels for {img_path.name}, found shape {y.shape}")
    classes = list(DATASETS[dataset].classes)
    labels = torch.from_numpy(y.astype(np.int64))
    if dataset == "emnist_letters":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
        labels -= 1
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise CorruptImageError.build(lab_path, f"labels outside the {len(classes)} classes of {dataset}")
    return ImageSet(torch.from_numpy(x).unsqueeze(1), labels, classes, dataset)
