"""Containers, errors and the small tensor utilities that every loader shares.

Images are always uint8 tensors of shape (N, C, H, W) held in memory, so training code can augment whole
batches as tensor operations instead of per-sample PIL pipelines.
"""
from __future__ import annotations

import dataclasses
import io
import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "ImageSet", "Split", "DatasetInfo", "DatasetMissingError", "CorruptImageError", "UnknownClassError",
    "data_root", "class_slug", "match_class", "valid_classes", "to_channels", "resize", "fit",
    "check_size", "check_channels",
]


# ----------------------------------------------------------------------------------------------- errors

class DatasetMissingError(FileNotFoundError):
    """A dataset's files are not under the data root (and could not be downloaded).

    The message names the dataset, lists the full paths that were expected, says where to get the files and
    mentions ``ONECLASS_DATA``. The same facts are attributes: ``dataset``, ``root``, ``missing``.
    """

    dataset: str = ""
    root: Path | None = None
    missing: tuple = ()

    @classmethod
    def build(cls, dataset: str, root: Path, missing, source: str, layout: str = "", cause=None,
              root_existed=None):
        missing = [Path(p) for p in missing]
        root_existed = root.is_dir() if root_existed is None else root_existed
        root_note = "" if root_existed else " (that folder does not exist)"
        own = dataset == "folder"     # a class-folder tree of one's own: the root is the tree itself
        lines = [f"your class-folder tree {root}{root_note} has no images in the layout below." if own else
                 f"dataset {dataset!r} is not available under the data root {root}{root_note}.", "Expected:"]
        lines += [f"  {p}" for p in missing[:20]]
        if len(missing) > 20:
            lines.append(f"  ... and {len(missing) - 20} more")
        if layout:
            lines.append(f"Layout: {layout}")
        lines.append(f"Get it from: {source}")
        if cause is not None:
            lines.append(f"Automatic download failed: {type(cause).__name__}: {_first_line(cause)}")
        lines.append("Give the path of a folder in that layout." if own else
                     "Put the files there, or set ONECLASS_DATA (or pass root=...) to the folder that holds them.")
        err = cls("\n".join(lines))
        err.dataset, err.root, err.missing = dataset, root, tuple(missing)
        return err


class CorruptImageError(ValueError):
    """An image file (or an image container such as an idx file or a CIFAR pickle) cannot be decoded.

    The message names the file and says to re-download or delete it; the file is the ``path`` attribute.
    """

    path: Path | None = None

    @classmethod
    def build(cls, path, reason, hint: str = ""):
        msg = (f"cannot read {path}: {reason}. The file is damaged or not what its name says: "
               f"re-download it or delete it.{(' ' + hint) if hint else ''}")
        err = cls(msg)
        err.path = Path(path)
        return err


class UnknownClassError(ValueError, KeyError):
    """A class name or index that the dataset does not have; the message lists the valid ones."""

    def __str__(self):
        # KeyError would otherwise print the message quoted with its newlines escaped.
        return str(self.args[0]) if self.args else ""


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


# ----------------------------------------------------------------------------------------------- root, class names

def data_root(root=None) -> Path:
    """The data root: ``root`` if given, else ``$ONECLASS_DATA``, else ``./data`` (need not exist yet)."""
    if root is None or root == "":
        root = os.environ.get("ONECLASS_DATA") or "data"
    return Path(root).expanduser().absolute()


def class_slug(name) -> str:
    """A file-system friendly form of a class name: ``'T-shirt/top' -> 't-shirt-top'``.

    Lower case; every run of characters other than letters, digits and ``_`` becomes one ``-``.
    """
    slug = re.sub(r"[^a-z0-9_]+", "-", str(name).strip().lower()).strip("-")
    return slug or "_"


def _loose(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def valid_classes(names, limit=120) -> str:
    """'0 'airplane', 1 'automobile', ...' for error messages (long lists cut after ``limit``)."""
    listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(names[:limit]))
    return listed + (f", ... ({len(names)} classes in total)" if len(names) > limit else "")


def match_class(dataset: str, names, cls) -> int:
    """Index of ``cls`` in ``names``; UnknownClassError (listing the valid classes) when there is none."""
    if isinstance(cls, bool) or not isinstance(cls, (str, int)) and not hasattr(cls, "__index__"):
        raise TypeError(f"a class is an int index or a str name, got {type(cls).__name__}: {cls!r}")
    if not isinstance(cls, str):
        i = operator.index(cls)
        if 0 <= i < len(names):
            return i
        raise UnknownClassError(f"class index {i} is out of range for {dataset!r}; "
                                f"valid classes: {valid_classes(names)}")
    for key in (lambda s: s, str.lower, class_slug, _loose):
        hits = [i for i, n in enumerate(names) if key(n) == key(cls)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            matches = ", ".join(repr(names[i]) for i in hits)
            raise UnknownClassError(f"class {cls!r} is ambiguous for {dataset!r} (matches {matches}); "
                                    f"valid classes: {valid_classes(names)}")
    if cls.strip().isdigit():
        return match_class(dataset, names, int(cls))
    raise UnknownClassError(f"unknown class {cls!r} for {dataset!r}; valid classes: {valid_classes(names)}")


# ----------------------------------------------------------------------------------------------- containers

@dataclass(frozen=True)
class DatasetInfo:
    """What the library knows about a dataset before reading it.

    ``classes`` is None when the class list is read from disk (folder datasets); ``size`` is None when
    images vary in size; ``layout`` is the on-disk layout under the data root; ``source`` where to get it.
    """
    name: str
    channels: int
    size: int | None
    classes: tuple[str, ...] | None
    splits: tuple[str, ...]
    description: str
    layout: str = ""
    source: str = ""
    downloadable: bool = False
    test_split: str | None = "test"


@dataclass(eq=False)
class ImageSet:
    """A labelled set of images in memory.

    images  uint8 (N, C, H, W), contiguous
    labels  int64 (N,), index into ``classes``
    masks   uint8 (N, 1, H, W) of 0/1 pixel ground truth, or None when the dataset has none
    anomaly int64 (N,), 1 = anomalous, or None when the notion does not apply
    paths   source files when the images were decoded from files
    meta    extras a loader knows (e.g. ``words`` for ImageNet wnids, ``category`` for MVTec)
    """
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    masks: torch.Tensor | None = None
    anomaly: torch.Tensor | None = None
    paths: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        x = self.images
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
        self.images = x.contiguous()
        n = len(x)
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        self.classes = list(self.classes)
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(self.labels.shape)}")
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(f"labels out of range for {len(self.classes)} classes")
        if self.masks is not None:
            m = self.masks
            if m.dtype != torch.uint8 or tuple(m.shape) != (n, 1, *x.shape[2:]):
                raise ValueError(f"masks must be uint8 {(n, 1, *x.shape[2:])}, got {m.dtype} {tuple(m.shape)}")
            self.masks = m.contiguous()
        if self.anomaly is not None:
            self.anomaly = torch.as_tensor(self.anomaly, dtype=torch.int64)
            if self.anomaly.shape != (n,):
                raise ValueError(f"anomaly must have shape ({n},), got {tuple(self.anomaly.shape)}")
        if self.paths is not None:
            self.paths = [str(p) for p in self.paths]
            if len(self.paths) != n:
                raise ValueError(f"{len(self.paths)} paths for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        shape = tuple(self.images.shape[1:])
        extra = ""
        if self.anomaly is not None:
            extra += f", anomalous={int(self.anomaly.sum())}"
        if self.masks is not None:
            extra += ", masks"
        return f"ImageSet({self.name!r}, n={len(self)}, shape={shape}, classes={len(self.classes)}{extra})"

    @property
    def has_masks(self) -> bool:
        """True when pixel ground truth is available (``masks`` is not None)."""
        return self.masks is not None

    def subset(self, index) -> ImageSet:
        """The images selected by ``index`` (int tensor, bool mask, list, range, slice or int), all fields aligned."""
        idx = _as_index(index, len(self))
        pick = lambda t: None if t is None else t[idx]
        return dataclasses.replace(
            self, images=self.images[idx], labels=self.labels[idx], masks=pick(self.masks),
            anomaly=pick(self.anomaly), meta=dict(self.meta),
            paths=None if self.paths is None else [self.paths[i] for i in idx.tolist()])

    def float(self) -> torch.Tensor:
        """The images as float32 in [0, 1]."""
        return self.images.float().div_(255)

    def class_counts(self) -> list[int]:
        """Number of images per class, in class order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()


@dataclass(eq=False)
class Split:
    """A one-vs-rest split: ``train`` holds only normal images; ``test`` the whole test split with ``anomaly``."""
    train: ImageSet
    test: ImageSet
    normal: list[int]
    normal_names: list[str]


def _as_index(index, n: int) -> torch.Tensor:
    if isinstance(index, slice):
        return torch.arange(n)[index]
    if isinstance(index, int):
        index = [index]
    idx = torch.as_tensor(list(index) if isinstance(index, range) else index)
    if idx.dtype == torch.bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean index of shape {tuple(idx.shape)} for {n} images")
        return idx.nonzero().flatten()
    if idx.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    if idx.is_floating_point():
        raise IndexError("index must hold integers or booleans")
    idx = idx.flatten().long()
    return torch.where(idx < 0, idx + n, idx)


# ----------------------------------------------------------------------------------------------- pixels

def check_size(size):
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int (square side) or None, got {size!r}")
    return size


def check_channels(channels):
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grayscale), 3 (RGB) or None (as stored), got {channels!r}")
    return channels


def to_channels(images: torch.Tensor, channels) -> torch.Tensor:
    """Convert uint8 (N, C, H, W) to 1 or 3 channels; RGB -> gray uses PIL's ITU-R 601-2 luma, bit for bit."""
    c = images.shape[1]
    if channels is None or channels == c:
        return images
    if channels == 3 and c == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and c == 3:
        # Same fixed-point weights and rounding as PIL's convert('L'), so files and tensors agree.
        w = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
        return ((images.to(torch.int32) * w).sum(1, keepdim=True) + 0x8000).bitwise_right_shift(16).to(torch.uint8)
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels")


def resize(images: torch.Tensor, size, mode: str = "bilinear", chunk: int = 4096) -> torch.Tensor:
    """Square-resize uint8 (N, C, H, W) to (size, size); antialiased bilinear, or 'nearest' for masks.

    Works in chunks so a 60k-image set never needs a full float copy in memory.
    """
    if size is None or tuple(images.shape[2:]) == (size, size):
        return images
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].float()
        if mode == "nearest":
            y = F.interpolate(x, size=(size, size), mode="nearest-exact")
        else:
            y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


JPEG_ORIENTATIONS = ("upright", "random", "random_grid")
JPEG_BLOCK = 16    # a 4:2:0 JPEG codes colour in 16 x 16 pixel units, luminance in 8 x 8 blocks


def check_jpeg(quality, orientation: str = "upright", name: str = "jpeg_quality"):
    """``quality`` if it is a JPEG quality (an integer from 1 to 100) or None and ``orientation`` one of
    :data:`JPEG_ORIENTATIONS`; else a ValueError naming the parameter (``name``)."""
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100):
        raise ValueError(f"{name} must be an integer from 1 to 100 (or None: no re-encoding), got {quality!r}")
    if orientation not in JPEG_ORIENTATIONS:
        raise ValueError(f"jpeg_orientation must be one of {', '.join(map(repr, JPEG_ORIENTATIONS))}, got "
                         f"{orientation!r}")
    return quality


def jpeg_images(x: torch.Tensor, quality: int, orientation: str = "upright", seed: int = 0) -> torch.Tensor:
    """uint8 images (N, C, H, W) with C 1 or 3, each encoded as JPEG at ``quality`` and decoded again (on the CPU,
    where PIL works), on the device of ``x``; ``quality`` None: ``x`` unchanged. See :func:`jpeg_roundtrip`."""
    if check_jpeg(quality, orientation) is None:
        return x
    c = x.shape[1]
    if c not in (1, 3):
        raise ValueError(f"JPEG holds 1- or 3-channel images, got {c} channels")
    pixels = x.permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(pixels)
    rng = np.random.default_rng(seed)
    turns = rng.integers(0, 4, (len(pixels), 2)) if orientation != "upright" else None
    rolls = rng.integers(0, JPEG_BLOCK, (len(pixels), 2)) if orientation == "random_grid" else None
    for i, im in enumerate(pixels):
        k, mirror = (0, 0) if turns is None else (int(turns[i, 0]), int(turns[i, 1]) % 2)
        dy, dx = (0, 0) if rolls is None else (int(rolls[i, 0]), int(rolls[i, 1]))
        im = np.roll(np.rot90(im[:, ::-1] if mirror else im, k), (dy, dx), (0, 1))
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(im[..., 0] if c == 1 else im)).save(buf, "JPEG", quality=quality,
                                                                                 subsampling="4:2:0")
        dec = np.roll(np.asarray(Image.open(buf)), (-dy, -dx), (0, 1))
        dec = np.rot90(dec[..., None] if c == 1 else dec, -k)
        out[i] = dec[:, ::-1] if mirror else dec
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(x.device)


def jpeg_roundtrip(images: ImageSet, quality: int | None, orientation: str = "upright", seed: int = 0) -> ImageSet:
    """``images`` encoded as JPEG at ``quality`` and decoded again, each image on its own (None: unchanged).

    The settings are those of the project's lossy CIFAR-10 copy (PIL's baseline encoder, the standard tables
    scaled to ``quality``, 4:2:0 chroma subsampling; one-channel images as greyscale JPEG), so a run can measure
    what such a copy costs: on exact data (MNIST, Fashion-MNIST) it simulates the copy, and on the copy itself a
    lower quality shows which way, and how steeply, AUCs move with the compression. Masks and labels are kept.

    ``orientation``: 'upright' encodes each image as it is, like the copy; 'random' encodes it turned by a random
    multiple of 90 degrees and mirrored at random (``seed``), then turns it back. The standard quantisation tables
    treat horizontal and vertical frequencies differently, so upright artifacts tell which way up an image is;
    randomly oriented ones do not (a test of GEOM's rotation task on the JPEG copy). 'random_grid' also puts the
    block grid at a random phase: the turned image is rolled by a random 0-15 pixels along each axis before encoding
    and rolled back after, so neither the 8-px luminance blocks nor the 16-px colour units sit at fixed positions
    (GEOM's 8-px shifts can no longer be read off them: ``geom.compression_cues``). The roll wraps: blocks that
    straddle the image border mix its opposite edges.
    """
    if check_jpeg(quality, orientation) is None:
        return images
    meta = dict(images.meta, jpeg_quality=quality, jpeg_orientation=orientation)
    return dataclasses.replace(images, images=jpeg_images(images.images, quality, orientation, seed), meta=meta)


def fit(images: ImageSet, size=None, channels=None) -> ImageSet:
    """``images`` resized to size x size and converted to ``channels`` (no copy when nothing changes)."""
    x = to_channels(resize(images.images, size), channels)
    masks = images.masks
    if masks is not None and size is not None:
        masks = resize(masks, size, mode="nearest")
    if x is images.images and masks is images.masks:
        return images
    return dataclasses.replace(images, images=x, masks=masks)
