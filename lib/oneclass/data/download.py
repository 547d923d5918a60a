"""Make sure a dataset's files are under the data root: download with torchvision when allowed, else explain.

torchvision's downloaders write exactly the layouts the loaders read (``<root>/MNIST/raw/...``,
``<root>/cifar-10-batches-py/...``), so a download is simply "let torchvision fetch into the data root".
Set ``ONECLASS_DOWNLOAD=0`` to never try (e.g. on CI, where a failed download only costs time).
"""
from __future__ import annotations

import os
from pathlib import Path

from .catalog import DATASETS
from .core import DatasetMissingError

# dataset -> (torchvision.datasets class, extra constructor arguments)
_TORCHVISION = {
    "mnist": ("MNIST", {}),
    "fmnist": ("FashionMNIST", {}),
    "emnist_letters": ("EMNIST", {"split": "letters"}),
    "cifar10": ("CIFAR10", {}),
    "cifar100": ("CIFAR100", {}),
    "cifar100_coarse": ("CIFAR100", {}),
}

# datasets torchvision has no class for, but that come as one archive unpacking into our layout
_ARCHIVES = {
    "tiny_imagenet": "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
}


def torchvision_download(dataset: str, root: Path) -> None:
    """Fetch ``dataset`` into ``root`` with torchvision's own downloaders (network errors propagate)."""
    import torchvision.datasets as tvd  # imported late: slow, and only needed when something is missing

    if dataset in _ARCHIVES:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(_ARCHIVES[dataset], str(root), remove_finished=True)
        return
    cls, kwargs = _TORCHVISION[dataset]
    getattr(tvd, cls)(str(root), download=True, **kwargs)


def download_allowed(dataset: str, download) -> bool:
    if download is None:
        download = DATASETS[dataset].downloadable and os.environ.get("ONECLASS_DOWNLOAD", "1") != "0"
    return bool(download) and (dataset in _TORCHVISION or dataset in _ARCHIVES)


def ensure(dataset: str, root: Path, expected, download=None, exists=None) -> None:
    """Return when every path in ``expected`` exists (by ``exists``, default ``Path.exists``).

    Otherwise download when allowed and check again; raise DatasetMissingError listing what is still missing.
    """
    exists = exists or Path.exists
    missing = [p for p in expected if not exists(p)]
    if not missing:
        return
    cause, root_existed = None, root.is_dir()
    if download_allowed(dataset, download):
        try:
            torchvision_download(dataset, root)
        except Exception as e:  # any failure (offline, checksum, disk) ends in the same actionable message
            cause = e
        missing = [p for p in expected if not exists(p)]
        if not missing:
            return
    info = DATASETS[dataset]
    raise DatasetMissingError.build(dataset, root, missing, info.source, info.layout, cause, root_existed)
