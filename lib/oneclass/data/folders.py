"""Image files in folders: listing, decoding into uint8 tensors, and the class-folder datasets.

Layouts under the data root:

    tiny-imagenet-200/{wnids.txt, words.txt, train/<wnid>/images/*.JPEG,
                       val/val_annotations.txt, val/images/*.JPEG}
    ImageNet30/{train,test}/<class>/**/*.{jpg,JPEG,png}       (the test release nests one level deeper)
    imagenet22k/<wnid>/**/*                                     (single split 'train')
    imagenet/val/<wnid>/**/*                                    (ImageNet-1k val sorted into wnid folders)
    PetImages/{Cat,Dog}/*.jpg                                   (Kaggle / Microsoft Cats vs Dogs)

and a class-folder tree of one's own anywhere on disk (dataset 'folder', or its path as the dataset name):

    <tree>/{train,test}/<class>/**/*       a split of your own; a class may be missing from train (test-only)
    <tree>/<class>/**/*                    no split folders: per class, files in natural filename order, every
                                           5th (positions 4, 9, 14, ...) is test, the rest train (as Cats vs Dogs)

Class order is the sorted folder names (Tiny ImageNet: sorted wnids, as torchvision's ImageFolder would give).
Files that are not images by their extension (Thumbs.db, README, hidden files) are skipped. A file with an
image extension that fails to decode raises CorruptImageError naming it, unless ``skip_corrupt=True``
(Kaggle's PetImages ships a few broken files), in which case it is left out and listed in
``meta['skipped']``.

Variable-size images are resized to ``size`` x ``size`` while decoding: a plain (aspect-changing) square resize,
except Cats vs Dogs, which is resized so its short side is ``size`` and centre-cropped. Without ``size`` all
images must already share one size. Large JPEGs are decoded at a reduced scale when that still leaves at
least ``size`` pixels per side (PIL's draft mode), which makes sampling big photos down to 32 pixels much faster.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .catalog import DATASETS
from .core import CorruptImageError, DatasetMissingError, ImageSet
from .download import ensure

FOLDER_DATASETS = ("tiny_imagenet", "imagenet30", "imagenet22k", "imagenet1k_val", "catsvsdogs", "folder")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}


def is_image_file(path) -> bool:
    p = Path(path)
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def list_images(folder, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path; non-image and hidden files skipped."""
    folder = Path(folder)
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames if is_image_file(f)]
    return sorted(found)


def subfolders(folder) -> list[str]:
    return sorted(d.name for d in Path(folder).iterdir() if d.is_dir() and not d.name.startswith("."))


# ----------------------------------------------------------------------------------------------- decoding

def decode_image(path, size=None, channels: int = 3, crop: bool = False) -> np.ndarray:
    """One image file as uint8 (channels, H, W); resized to size x size (``crop``: short side + centre crop)."""
    try:
        mode = "L" if channels == 1 else "RGB"
        with Image.open(path) as im:
            if size is not None:
                im.draft(mode, (size, size))  # JPEG only: decode at 1/2, 1/4, 1/8 scale while that stays >= size
            im = im.convert(mode)
        if size is not None and im.size != (size, size):
            if crop:
                im = ImageOps.fit(im, (size, size), method=Image.Resampling.BILINEAR)
            else:
                im = im.resize((size, size), Image.Resampling.BILINEAR)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        raise CorruptImageError.build(path, f"{type(e).__name__}: {e}") from e
    a = np.asarray(im)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def decode_images(paths, size=None, channels: int = 3, crop: bool = False, skip_corrupt: bool = False):
    """Decode files into uint8 (N, C, H, W) with a thread pool (PIL releases the GIL while decoding).

    Returns ``(images, kept)``: ``kept`` are the positions in ``paths`` that decoded (all of them unless
    ``skip_corrupt``). Without ``size`` all images must have the size of the first one.
    """
    paths = [Path(p) for p in paths]

    def one(i):
        try:
            return decode_image(paths[i], size, channels, crop)
        except CorruptImageError:
            if skip_corrupt:
                return None
            raise

    # Decode straight into one preallocated array: big sets would not fit in memory twice.
    first, shape, start = None, None if size is None else (channels, size, size), 0
    while shape is None and start < len(paths):
        first = one(start)
        shape = None if first is None else first.shape
        start += 1
    if shape is None:
        return torch.zeros((0, channels, size or 0, size or 0), dtype=torch.uint8), []
    out = np.empty((len(paths), *shape), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    if first is not None:
        out[start - 1], ok[start - 1] = first, True

    def put(i):
        a = one(i)
        if a is None:
            return
        if a.shape != shape:
            ref = paths[np.flatnonzero(ok)[0]]
            raise ValueError(f"images have different sizes: {ref} is {shape[2]}x{shape[1]}, {paths[i]} is "
                             f"{a.shape[2]}x{a.shape[1]}; pass size= to resize them to one square size")
        out[i], ok[i] = a, True

    with ThreadPoolExecutor(_workers()) as pool:
        list(pool.map(put, range(start, len(paths))))
    kept = np.flatnonzero(ok).tolist()
    return torch.from_numpy(out if len(kept) == len(paths) else out[ok]), kept


def decode_set(name, paths, labels, classes, size, channels, crop=False, skip_corrupt=False, meta=None) -> ImageSet:
    """An ImageSet from labelled files; skipped corrupt files are listed in ``meta['skipped']``."""
    images, kept = decode_images(paths, size, channels, crop, skip_corrupt)
    # how the files were decoded: oneclass.predict decodes new images the same way
    meta = dict(meta or {}, decode={"size": size, "channels": channels, "crop": bool(crop)})
    if len(kept) < len(paths):
        kept_set = set(kept)
        meta["skipped"] = [str(p) for i, p in enumerate(paths) if i not in kept_set]
    labels = torch.as_tensor([labels[i] for i in kept], dtype=torch.int64)
    return ImageSet(images, labels, classes, name, paths=[str(paths[i]) for i in kept], meta=meta)


# ----------------------------------------------------------------------------------------------- listings
# A listing finds the labelled files of one split without decoding them, so outlier exposure can pick a few.

@dataclass
class Listing:
    paths: list
    labels: list
    classes: list
    meta: dict = field(default_factory=dict)
    crop: bool = False  # resize the short side and centre-crop instead of a plain square resize


def _missing(dataset, root, paths):
    info = DATASETS[dataset]
    return DatasetMissingError.build(dataset, root, paths, info.source, info.layout)


def _require(dataset, root, *paths):
    absent = [p for p in paths if not Path(p).exists()]
    if absent:
        raise _missing(dataset, root, absent)


def _class_files(dataset, root, split_dir: Path, classes, recursive=True, sub=""):
    paths, labels = [], []
    for label, cls in enumerate(classes):
        folder = split_dir / cls / sub if sub else split_dir / cls
        _require(dataset, root, folder)
        files = list_images(folder, recursive)
        if not files:
            raise _missing(dataset, root, [folder / "<image files>"])
        paths += files
        labels += [label] * len(files)
    return paths, labels


def _folder_tree_classes(dataset, root, folder: Path):
    _require(dataset, root, folder)
    names = subfolders(folder)
    if not names:
        raise _missing(dataset, root, [folder / "<class>" / "<image files>"])
    return names


def tiny_imagenet_words(root: Path) -> dict[str, str]:
    path = root / "tiny-imagenet-200" / "words.txt"
    if not path.exists():
        return {}
    words = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        wnid, _, text = line.partition("\t")
        words[wnid.strip()] = text.strip()
    return words


def tree_has_splits(root: Path) -> bool:
    """Whether a class-folder tree of one's own has its own train/ and test/ folders."""
    return (root / "train").is_dir() and (root / "test").is_dir()


def folder_classes(dataset: str, root: Path) -> list[str]:
    """Class names of a folder dataset, read from disk."""
    if dataset == "folder":
        if not tree_has_splits(root):
            return _folder_tree_classes(dataset, root, root)
        return sorted(set(_folder_tree_classes(dataset, root, root / "train"))
                      | set(_folder_tree_classes(dataset, root, root / "test")))
    if dataset == "tiny_imagenet":
        path = root / "tiny-imagenet-200" / "wnids.txt"
        _require(dataset, root, path)
        return sorted({w.strip() for w in path.read_text().split() if w.strip()})
    if dataset == "imagenet30":
        base = root / "ImageNet30"
        return _folder_tree_classes(dataset, root, base / ("train" if (base / "train").is_dir() else "test"))
    if dataset == "imagenet22k":
        return _folder_tree_classes(dataset, root, root / "imagenet22k")
    if dataset == "imagenet1k_val":
        return _folder_tree_classes(dataset, root, root / "imagenet" / "val")
    return list(DATASETS[dataset].classes)


def natural_key(path: Path):
    """Order '2.jpg' before '10.jpg' (numeric stems by value), other names after them alphabetically."""
    stem = path.stem
    return (0, int(stem), path.name) if stem.isdigit() else (1, 0, path.name)


def list_folder_dataset(dataset: str, split: str, root: Path, download=None) -> Listing:
    """Labelled files of ``split`` of a folder dataset, in a deterministic order (Tiny ImageNet is downloaded
    when missing and allowed)."""
    if dataset == "tiny_imagenet":
        ensure(dataset, root, [root / "tiny-imagenet-200" / "wnids.txt"], download)
    classes = folder_classes(dataset, root)
    if dataset == "tiny_imagenet":
        base = root / "tiny-imagenet-200"
        words = tiny_imagenet_words(root)
        meta = {"words": [words.get(w, "") for w in classes]}
        if split == "train":
            paths, labels = _class_files(dataset, root, base / "train", classes, recursive=False, sub="images")
            return Listing(paths, labels, classes, meta)
        ann = base / "val" / "val_annotations.txt"
        _require(dataset, root, ann)
        index = {w: i for i, w in enumerate(classes)}
        paths, labels = [], []
        for n, line in enumerate(ann.read_text().splitlines(), 1):
            parts = line.split("\t") if "\t" in line else line.split()
            if not parts or not parts[0]:
                continue
            if len(parts) < 2 or parts[1] not in index:
                raise CorruptImageError.build(ann, f"line {n} names no known wnid: {line!r}")
            paths.append(base / "val" / "images" / parts[0])
            labels.append(index[parts[1]])
        _require(dataset, root, *paths)
        return Listing(paths, labels, classes, meta)
    if dataset == "imagenet30":
        split_dir = root / "ImageNet30" / split
        _require(dataset, root, split_dir)
        return Listing(*_class_files(dataset, root, split_dir, classes), classes)
    if dataset == "imagenet22k":
        return Listing(*_class_files(dataset, root, root / "imagenet22k", classes), classes)
    if dataset == "imagenet1k_val":
        return Listing(*_class_files(dataset, root, root / "imagenet" / "val", classes), classes)
    if dataset == "folder" and tree_has_splits(root):
        paths, labels = [], []
        for label, cls in enumerate(classes):
            if (root / split / cls).is_dir():     # a class may exist in one split only (test-only anomalies)
                files = list_images(root / split / cls)
                paths += files
                labels += [label] * len(files)
        if not paths:
            raise _missing(dataset, root, [root / split / "<class>" / "<image files>"])
        return Listing(paths, labels, classes)
    if dataset in ("catsvsdogs", "folder"):
        base = root / "PetImages" if dataset == "catsvsdogs" else root
        paths, labels = [], []
        for label, cls in enumerate(classes):
            _require(dataset, root, base / cls)
            files = sorted(list_images(base / cls, recursive=dataset == "folder"), key=natural_key)
            # the fixed 80/20 rule: every 5th file in natural order is a test image
            keep = [p for i, p in enumerate(files) if (i % 5 == 4) == (split == "test")]
            paths += keep
            labels += [label] * len(keep)
        if dataset == "folder" and not paths:
            raise _missing(dataset, root, [base / "<class>" / "<image files>"])
        return Listing(paths, labels, classes, crop=dataset == "catsvsdogs")
    raise ValueError(f"{dataset!r} is not a folder dataset")


def list_path_source(folder) -> Listing:
    """A user's folder of images (searched recursively); the class of a file is its top-level subfolder."""
    folder = Path(folder).expanduser().absolute()
    files = list_images(folder)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {folder}")
    tops = [p.relative_to(folder).parts for p in files]
    names = [t[0] if len(t) > 1 else folder.name for t in tops]
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return Listing(files, [index[n] for n in names], classes)


def load_folder_dataset(dataset: str, split: str, root: Path, size=None, channels=None, skip_corrupt=False,
                        download=None, **_) -> ImageSet:
    listing = list_folder_dataset(dataset, split, root, download)
    channels = channels or DATASETS[dataset].channels
    return decode_set(dataset, listing.paths, listing.labels, listing.classes, size, channels,
                      listing.crop, skip_corrupt, listing.meta)
