"""Outlier-exposure corpora: a sample of any dataset, or of a folder of images, at the target size and colour.

The sample is chosen before decoding, so asking for a few images of a large folder corpus (ImageNet-22k)
decodes only those. Without ``limit`` the whole corpus is kept, in its listing order.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .api import load
from .catalog import DATASETS, canonical
from .core import ImageSet, UnknownClassError, check_channels, check_size, data_root, fit, match_class
from .folders import FOLDER_DATASETS, Listing, decode_images, list_folder_dataset, list_path_source
from .voc import list_voc


def load_outliers(source, size: int, channels: int, limit=None, exclude=None, seed: int = 0, root=None, *,
                  download=None, skip_corrupt: bool = False, split: str | None = None) -> ImageSet:
    """``limit`` distinct images (chosen with ``seed``) of ``source`` at ``size`` x ``size``, ``channels`` 1 or 3.

    ``source``: a dataset name ('tiny_imagenet', 'cifar100', 'emnist_letters', 'imagenet22k', ...; its first
    split, i.e. 'train', unless ``split`` names another: a held-out set of the same corpus) or a folder of images
    (searched recursively; a file's class is its top-level subfolder). ``exclude``: class names or indices to drop,
    matched like ``resolve_class``, or a named list of :data:`NAMED_EXCLUSIONS` ('cifar10_overlap'); names the
    source does not have are ignored (an ImageNet-1k wnid list against a 22k subset), the dropped ones are listed in
    ``meta['excluded']``. Fewer than ``limit`` usable images is an error, never a silent shortfall.
    """
    size, channels = check_size(size), check_channels(channels)
    if size is None or channels is None:
        raise ValueError("load_outliers needs size (int) and channels (1 or 3) to match the normal data")
    if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    name, folder = _source(source)
    if name == "mvtec":
        raise ValueError("MVTec is not an outlier-exposure corpus; pick a natural-image dataset or a folder")
    if split is not None and (folder is not None or split not in DATASETS[name].splits):
        have = "a folder has no splits" if folder is not None else f"{name} has {', '.join(DATASETS[name].splits)}"
        raise ValueError(f"outlier split {split!r} does not exist: {have}")
    split = None if folder is not None else split or DATASETS[name].splits[0]
    if folder is not None:
        listing = list_path_source(folder)
    elif name == "voc2007":
        listing = list_voc(split, data_root(root))
    elif name in FOLDER_DATASETS:
        listing = list_folder_dataset(name, split, data_root(root), download)
    else:
        return _from_tensors(name, split, size, channels, limit, exclude, seed, root, download)
    return _from_listing(name, listing, size, channels, limit, exclude, seed, skip_corrupt)


def _source(source):
    """(dataset name, None) or (name for the set, folder path)."""
    if isinstance(source, Path) or os.sep in str(source) or str(source).startswith((".", "~")):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"outlier folder {folder.absolute()} does not exist")
        return str(folder.absolute()), folder
    try:
        return canonical(source), None
    except ValueError:
        if Path(source).is_dir():
            return str(Path(source).absolute()), Path(source)
        raise


#: Tiny ImageNet classes that *are* CIFAR-10 classes: wnid -> (CIFAR-10 class, the Tiny ImageNet class). As
#: outlier exposure against a CIFAR-10 class they are that class labelled anomalous (2-6 % of the OE for the
#: classes concerned). The FCDD paper's OE for CIFAR-10, CIFAR-100, was chosen because it shares no class with it.
TINY_IMAGENET_CIFAR10 = {
    "n02814533": ("automobile", "beach wagon / station wagon"), "n03100240": ("automobile", "convertible"),
    "n03670208": ("automobile", "limousine"), "n04285008": ("automobile", "sports car"),
    "n03796401": ("truck", "moving van"),
    "n01855672": ("bird", "goose"), "n02056570": ("bird", "king penguin"), "n02058221": ("bird", "albatross"),
    "n02002724": ("bird", "black stork"),
    "n02123045": ("cat", "tabby cat"), "n02123394": ("cat", "Persian cat"), "n02124075": ("cat", "Egyptian cat"),
    "n02085620": ("dog", "Chihuahua"), "n02094433": ("dog", "Yorkshire terrier"),
    "n02099601": ("dog", "golden retriever"), "n02099712": ("dog", "Labrador retriever"),
    "n02106662": ("dog", "German shepherd"), "n02113799": ("dog", "standard poodle"),
    "n01641577": ("frog", "bullfrog"), "n01644900": ("frog", "tailed frog"),
    "n03447447": ("ship", "gondola"), "n03662601": ("ship", "lifeboat"),
}
#: Close to a CIFAR-10 class without being one of its classes (kept by ``cifar10_overlap``, dropped by
#: ``cifar10_overlap_wide``): vehicles CIFAR-10's automobile / truck classes do not contain, and a deer-like antelope.
TINY_IMAGENET_CIFAR10_BORDERLINE = {
    "n03977966": ("automobile / truck", "police van"), "n04146614": ("truck", "school bus"),
    "n04487081": ("truck", "trolleybus"), "n03393912": ("truck", "freight car"),
    "n04465501": ("truck", "tractor"), "n02423022": ("deer", "gazelle"),
}
#: Named exclusion lists that ``exclude`` accepts beside class names.
NAMED_EXCLUSIONS = {"cifar10_overlap": sorted(TINY_IMAGENET_CIFAR10),
                    "cifar10_overlap_wide": sorted(TINY_IMAGENET_CIFAR10) + sorted(TINY_IMAGENET_CIFAR10_BORDERLINE)}


def expand_exclusions(exclude) -> list:
    """``exclude`` with the named lists (:data:`NAMED_EXCLUSIONS`, e.g. 'cifar10_overlap') replaced by their
    class names."""
    out = []
    for e in [exclude] if isinstance(exclude, str) else list(exclude or []):
        out += NAMED_EXCLUSIONS.get(e, [e]) if isinstance(e, str) else [e]
    return out


def _excluded(dataset, classes, exclude) -> list[int]:
    dropped = []
    for e in expand_exclusions(exclude):
        try:
            dropped.append(match_class(dataset, classes, e))
        except UnknownClassError:
            pass  # a name this corpus does not have: nothing to drop
    return sorted(set(dropped))


def _order(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def _short(name, have, limit, excluded):
    why = f" after excluding {len(excluded)} classes" if excluded else ""
    return ValueError(f"{name!r} has only {have} usable images{why}; asked for {limit or 'at least 1'}")


def _from_tensors(name, split, size, channels, limit, exclude, seed, root, download) -> ImageSet:
    full = load(name, split, root=root, download=download)
    drop = _excluded(name, full.classes, exclude)
    candidates = (~torch.isin(full.labels, torch.tensor(drop, dtype=torch.int64))).nonzero().flatten()
    if (limit or 1) > len(candidates):
        raise _short(name, len(candidates), limit, drop)
    if limit is not None:
        candidates = candidates[np.sort(_order(len(candidates), seed)[:limit])]
    out = fit(full.subset(candidates), size, channels)
    out.meta.update(source=name, excluded=[full.classes[i] for i in drop], seed=seed)
    return out


def _from_listing(name, listing: Listing, size, channels, limit, exclude, seed, skip_corrupt) -> ImageSet:
    drop = set(_excluded(name, listing.classes, exclude))
    candidates = [i for i, y in enumerate(listing.labels) if y not in drop]
    target = len(candidates) if limit is None else limit
    if (limit or 1) > len(candidates):
        raise _short(name, len(candidates), limit, drop)
    if limit is not None:
        candidates = [candidates[j] for j in _order(len(candidates), seed)]
    # Decode in the random order; a skipped corrupt file is replaced by the next candidate.
    chosen, parts, skipped, pos = [], [], [], 0
    while len(chosen) < target and pos < len(candidates):
        batch = candidates[pos:pos + target - len(chosen)]
        pos += len(batch)
        images, kept = decode_images([listing.paths[i] for i in batch], size, channels, listing.crop, skip_corrupt)
        kept_set = set(kept)
        skipped += [str(listing.paths[i]) for k, i in enumerate(batch) if k not in kept_set]
        chosen += [batch[k] for k in kept]
        parts.append(images)
    if len(chosen) < (limit or 1):
        raise _short(name, len(chosen), limit, drop)
    order = np.argsort(chosen, kind="stable")  # back to listing order: reproducible, readable paths
    images = torch.cat(parts)[torch.from_numpy(order)]
    chosen = [chosen[k] for k in order]
    meta = dict(listing.meta, source=name, excluded=[listing.classes[i] for i in sorted(drop)], seed=seed)
    if skipped:
        meta["skipped"] = skipped
    return ImageSet(images, [listing.labels[i] for i in chosen], listing.classes, name,
                    paths=[str(listing.paths[i]) for i in chosen], meta=meta)
