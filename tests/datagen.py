"""Tiny fake datasets written in the real on-disk layouts, and the materialized real data for integration tests.

Every ``write_*`` function takes the data root (a ``tmp_path``), writes one dataset in the layout that
``oneclass.data`` reads, and returns what it wrote (pixel arrays, labels, paths) so tests can compare exactly.
Images are tiny; pixel-exact comparisons are possible for idx, pickles and PNG, while JPEG files are written
from flat colours so that decoding stays within a grey level or two.

``materialized_root()`` writes the project's real datasets (``../shared/data`` beside the repo) once into a
cache folder and returns it, or None when the shared data is absent.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ONECLASS_SHARED_DATA", REPO.parent / "shared" / "data"))
REAL_DATASETS = ("mnist", "fashion_mnist", "cifar10", "tiny_imagenet", "mvtec_bottle")


# ----------------------------------------------------------------------------------------------- files

def write_idx(path, array, gz: bool = False) -> Path:
    """An idx file (uint8 data) at ``path`` (``.gz`` appended and compressed when ``gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_image(path, array) -> Path:
    """Save a uint8 (H, W) or (H, W, 3) array with PIL; the format follows the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def flat_image(height: int, width: int, value, gray: bool = False) -> np.ndarray:
    """A single-colour image (JPEG-safe): ``value`` is a grey level or an (r, g, b) triple."""
    if gray:
        return np.full((height, width), value, dtype=np.uint8)
    return np.broadcast_to(np.asarray(value, dtype=np.uint8), (height, width, 3)).copy()


def _pixels(rng, n, shape):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------- idx datasets

def write_mnist_like(root, folder: str = "MNIST", n_train: int = 20, n_test: int = 10, n_classes: int = 10,
                     gz: bool = False, seed: int = 0) -> dict:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``; labels cycle 0..n_classes-1.

    Image 0 of each split is black except pixel (row 3, col 5) = 255, so orientation is checkable.
    Returns ``{'train': (x (N, 28, 28), y), 'test': (x, y), 'files': [paths]}``.
    """
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    out = {"files": []}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = _pixels(rng, n, (28, 28))
        x[0] = 0
        x[0, 3, 5] = 255
        y = (np.arange(n) % n_classes).astype(np.uint8)
        out["files"].append(write_idx(raw / f"{prefix}-images-idx3-ubyte", x, gz))
        out["files"].append(write_idx(raw / f"{prefix}-labels-idx1-ubyte", y, gz))
        out[split] = (x, y.astype(np.int64))
    return out


def write_fmnist_like(root, **kwargs) -> dict:
    """Fashion-MNIST layout ``<root>/FashionMNIST/raw/...``; see write_mnist_like."""
    return write_mnist_like(root, folder="FashionMNIST", **kwargs)


def write_emnist_letters_like(root, n_train: int = 52, n_test: int = 26, gz: bool = False, seed: int = 0) -> dict:
    """``<root>/EMNIST/raw/emnist-letters-{train,test}-...``, stored transposed with labels 1..26 as EMNIST does.

    Returns the *upright* images and 0-based labels (0 = 'a'): what the loader must give back. Upright image
    0 has a single lit pixel at (row 2, col 20).
    """
    rng = np.random.default_rng(seed)
    raw = Path(root) / "EMNIST" / "raw"
    out = {"files": []}
    for split, n in (("train", n_train), ("test", n_test)):
        upright = _pixels(rng, n, (28, 28))
        upright[0] = 0
        upright[0, 2, 20] = 255
        labels = np.arange(n) % 26
        stem = f"emnist-letters-{split}"
        out["files"].append(write_idx(raw / f"{stem}-images-idx3-ubyte", upright.transpose(0, 2, 1), gz))
        out["files"].append(write_idx(raw / f"{stem}-labels-idx1-ubyte", labels + 1, gz))
        out[split] = (upright, labels)
    return out


# ----------------------------------------------------------------------------------------------- CIFAR

def _bytes_keys(d):
    def encode(v):
        return [s.encode() for s in v] if isinstance(v, list) and v and isinstance(v[0], str) else v
    return {k.encode(): encode(v) for k, v in d.items()}


def _dump(path, d, bytes_keys):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(_bytes_keys(d) if bytes_keys else d, f, protocol=2)


def write_cifar10_like(root, n_per_batch: int = 4, n_test: int = 10, bytes_keys: bool = False, seed: int = 0) -> dict:
    """``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` with the official class names.

    ``bytes_keys`` writes bytes keys and names, like the original Python 2 pickles read with encoding='bytes'.
    Returns ``{'train': (x (N, 3, 32, 32), y), 'test': (x, y), 'classes': names}``.
    """
    from oneclass.data.catalog import CIFAR10_CLASSES

    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-10-batches-py"
    xs, ys = [], []
    for b in range(5):
        x = _pixels(rng, n_per_batch, (3, 32, 32))
        y = [(b * n_per_batch + i) % 10 for i in range(n_per_batch)]
        _dump(base / f"data_batch_{b + 1}", {"data": x.reshape(n_per_batch, -1), "labels": y,
                                             "batch_label": f"training batch {b + 1} of 5"}, bytes_keys)
        xs.append(x)
        ys += y
    xt = _pixels(rng, n_test, (3, 32, 32))
    yt = [i % 10 for i in range(n_test)]
    _dump(base / "test_batch", {"data": xt.reshape(n_test, -1), "labels": yt}, bytes_keys)
    _dump(base / "batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": n_per_batch},
          bytes_keys)
    return {"train": (np.concatenate(xs), np.array(ys)), "test": (xt, np.array(yt)), "classes": list(CIFAR10_CLASSES)}


def write_cifar100_like(root, n_train: int = 20, n_test: int = 10, bytes_keys: bool = False, seed: int = 0) -> dict:
    """``<root>/cifar-100-python/{train,test,meta}`` with fine and coarse labels (coarse = fine % 20 here).

    Returns ``{'train': (x, fine, coarse), 'test': (...), 'fine_names': [...], 'coarse_names': [...]}``.
    """
    from oneclass.data.catalog import CIFAR100_CLASSES, CIFAR100_COARSE_CLASSES

    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-100-python"
    out = {"fine_names": list(CIFAR100_CLASSES), "coarse_names": list(CIFAR100_COARSE_CLASSES)}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _pixels(rng, n, (3, 32, 32))
        fine = (np.arange(n) * 7 % 100).tolist()
        coarse = [f % 20 for f in fine]
        _dump(base / split, {"data": x.reshape(n, -1), "fine_labels": fine, "coarse_labels": coarse}, bytes_keys)
        out[split] = (x, np.array(fine), np.array(coarse))
    _dump(base / "meta", {"fine_label_names": out["fine_names"], "coarse_label_names": out["coarse_names"]},
          bytes_keys)
    return out


# ----------------------------------------------------------------------------------------------- folder trees

def write_tiny_imagenet_like(root, wnids=("n03", "n01", "n02"), n_train: int = 3, n_val: int = 2,
                             size: int = 64) -> dict:
    """``<root>/tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images/*.JPEG,val/...}``.

    wnids.txt is written unsorted (classes must come back sorted). Image k of class c is a flat grey
    ``(40 * (sorted index of c) + 10 * k) mod 250``; the last training image of each class is a grayscale JPEG, as
    Tiny ImageNet has some. Returns ``{'classes', 'words', 'train': [(path, label, grey)], 'val': [...]}``.
    """
    base = Path(root) / "tiny-imagenet-200"
    base.mkdir(parents=True, exist_ok=True)
    classes = sorted(wnids)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    words = {w: f"thing {w}, other name" for w in wnids}
    (base / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in words.items()) + "n99\tunused\n")
    out = {"classes": classes, "words": [words[c] for c in classes], "train": [], "val": []}
    for label, w in enumerate(classes):
        for k in range(n_train):
            grey = (40 * label + 10 * k) % 250
            p = write_image(base / "train" / w / "images" / f"{w}_{k}.JPEG",
                            flat_image(size, size, grey, gray=(k == n_train - 1)))
            out["train"].append((p, label, grey))
        (base / "train" / w / f"{w}_boxes.txt").write_text("not an image\n")
    lines = []
    for k in range(n_val * len(classes)):
        label = k % len(classes)
        grey = 200 + label
        p = write_image(base / "val" / "images" / f"val_{k}.JPEG", flat_image(size, size, grey))
        lines.append(f"val_{k}.JPEG\t{classes[label]}\t0\t0\t{size - 1}\t{size - 1}")
        out["val"].append((p, label, grey))
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return out


def _class_tree(folder: Path, classes, n: int, size=(24, 16), nest: str = "", ext: str = ".JPEG") -> list:
    """``folder/<class>/[nest/]<i><ext>`` flat colours; returns [(path, label, colour)]."""
    written = []
    for label, c in enumerate(classes):
        for k in range(n):
            colour = (30 * label, 100 + 20 * k, 50)
            sub = folder / c / nest if nest else folder / c
            written.append((write_image(sub / f"{c}_{k}{ext}", flat_image(size[1], size[0], colour)), label, colour))
    return written


def write_imagenet30_like(root, classes=("acorn", "airliner", "banjo"), n_train: int = 2, n_test: int = 2) -> dict:
    """``<root>/ImageNet30/{train,test}/<class>/...``; test images nested one folder deeper, as released."""
    base = Path(root) / "ImageNet30"
    return {"classes": sorted(classes),
            "train": _class_tree(base / "train", sorted(classes), n_train),
            "test": _class_tree(base / "test", sorted(classes), n_test, nest="n00000000", ext=".jpg")}


def write_imagenet22k_like(root, wnids=("n001", "n002", "n003", "n004"), n: int = 3) -> dict:
    """``<root>/imagenet22k/<wnid>/*.JPEG`` plus a README (not an image) at the top."""
    base = Path(root) / "imagenet22k"
    written = _class_tree(base, sorted(wnids), n)
    (base / "README.txt").write_text("fall 2011 release\n")
    return {"classes": sorted(wnids), "train": written}


def write_imagenet1k_val_like(root, wnids=("n01440764", "n01443537"), n: int = 2) -> dict:
    """``<root>/imagenet/val/<wnid>/*.JPEG``."""
    return {"classes": sorted(wnids), "val": _class_tree(Path(root) / "imagenet" / "val", sorted(wnids), n)}


def write_petimages_like(root, n_per_class: int = 10, corrupt: str | None = None) -> dict:
    """``<root>/PetImages/{Cat,Dog}/<i>.jpg`` (non-square, flat colours) plus a Thumbs.db in each folder.

    Cat images have grey ``i``-dependent levels, Dog images are RGB. ``corrupt='Cat'`` (or 'Dog') overwrites
    file ``3.jpg`` of that class with garbage, like the broken files of the Kaggle release.
    Returns ``{'Cat': [paths in natural order], 'Dog': [...], 'corrupt': path or None}``.
    """
    base = Path(root) / "PetImages"
    out = {"corrupt": None}
    for c, colour in (("Cat", (200, 10, 10)), ("Dog", (10, 10, 200))):
        paths = []
        for i in range(n_per_class):
            w, h = (30, 20) if i % 2 else (20, 40)
            paths.append(write_image(base / c / f"{i}.jpg", flat_image(h, w, colour)))
        (base / c / "Thumbs.db").write_bytes(b"\x00not an image")
        out[c] = paths
    if corrupt:
        bad = base / corrupt / "3.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
        out["corrupt"] = bad
    return out


def write_gray_jpegs(folder, sizes=((40, 20), (20, 30), (33, 17)), value: int = 128) -> list[Path]:
    """Grayscale JPEGs of the given (width, height) sizes, flat grey ``value``, in ``folder``."""
    return [write_image(Path(folder) / f"gray_{w}x{h}.jpg", flat_image(h, w, value, gray=True)) for w, h in sizes]


def write_voc_like(root, n: int = 6, horse=(1, 4), splits=None) -> dict:
    """``<root>/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}``; images in ``horse`` hold a horse.

    Every image has a person; horse images add a horse object (marked difficult in one of them). Default
    splits: even indices 'train', odd 'val', all 'test'. Returns ``{'ids', 'horse': set of ids, 'splits'}``.
    """
    base = Path(root) / "VOCdevkit" / "VOC2007"
    ids = [f"{i:06d}" for i in range(n)]
    horses = {ids[i] for i in horse}
    splits = splits or {"train": ids[0::2], "val": ids[1::2], "test": ids}
    for k, i in enumerate(ids):
        w, h = (50, 30) if k % 2 else (30, 40)
        write_image(base / "JPEGImages" / f"{i}.jpg", flat_image(h, w, (20 * k, 90, 160)))
        objects = ["person"] + (["horse"] if i in horses else [])
        xml = "".join(f"<object><name>{o}</name><difficult>{int(o == 'horse' and k == horse[-1])}</difficult>"
                      f"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
                      for o in objects)
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><folder>VOC2007</folder><filename>{i}.jpg</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{xml}</annotation>")
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    for split, members in splits.items():
        (main / f"{split}.txt").write_text("\n".join(members) + "\n")
    return {"ids": ids, "horse": horses, "splits": splits}


def write_mvtec_like(root, category: str = "widget", size=(32, 24), gray: bool = False, n_train: int = 3,
                     n_good_test: int = 2, defects=None, masks: bool = True, ext: str = ".png",
                     folder: Path | None = None, sizes=None) -> dict:
    """One category in MVTec-AD layout under ``<root>/mvtec_anomaly_detection/<category>`` (or ``folder``).

    ``sizes``: a list of (width, height) cycled over the images (masks match their image), with every other
    image grayscale, for a category of varying sizes and modes; None: every image ``size`` and ``gray``.

    ``size`` is (width, height). Good images are flat grey 100; defect image k of a defect type has a white
    box at rows [2, 6), columns [3 + k, 9 + k), and its mask (255 inside the box) is
    ``ground_truth/<defect>/<stem>_mask.png`` when ``masks``. Returns ``{'folder', 'classes', 'train': [paths],
    'test': [(path, label, box or None)]}`` with ``box = (top, bottom, left, right)``.
    """
    defects = defects or {"crack": 2, "hole": 1}
    folder = Path(folder) if folder else Path(root) / "mvtec_anomaly_detection" / category
    count = iter(range(10**6))
    shape = {}

    def picture(box=None):
        i = next(count)
        w, h = sizes[i % len(sizes)] if sizes else size
        g = bool(i % 2) if sizes else gray
        a = flat_image(h, w, 100, gray=True) if g else flat_image(h, w, (100, 100, 100))
        if box:
            a[box[0]:box[1], box[2]:box[3]] = 255
        shape["hw"] = (h, w)
        return a

    classes = ["good"] + sorted(defects)
    out = {"folder": folder, "classes": classes, "train": [], "test": []}
    for k in range(n_train):
        out["train"].append(write_image(folder / "train" / "good" / f"{k:03d}{ext}", picture()))
    for k in range(n_good_test):
        out["test"].append((write_image(folder / "test" / "good" / f"{k:03d}{ext}", picture()), 0, None))
    for d in sorted(defects):
        for k in range(defects[d]):
            box = (2, 6, 3 + k, 9 + k)
            p = write_image(folder / "test" / d / f"{k:03d}{ext}", picture(box))
            if masks:
                m = np.zeros(shape["hw"], dtype=np.uint8)
                m[box[0]:box[1], box[2]:box[3]] = 255
                write_image(folder / "ground_truth" / d / f"{k:03d}_mask.png", m)
            out["test"].append((p, classes.index(d), box))
    return out


# ----------------------------------------------------------------------------------------------- real data

def real_or_generated_root(tmp_factory) -> tuple[Path, bool]:
    """(data root, is_real): the materialized real datasets when ``../shared/data`` exists (and
    ``ONECLASS_TEST_GENERATED_DATA`` is not set), else MNIST, Fashion-MNIST, CIFAR-10 and Tiny-ImageNet generated
    in their real layouts, large enough for every smoke preset (300 test images, 300 training images per class),
    so that the notebook tests run on a clean checkout."""
    if not os.environ.get("ONECLASS_TEST_GENERATED_DATA"):
        real = materialized_root()
        if real is not None:
            return real, True
    root = tmp_factory.mktemp("generated-data")
    write_mnist_like(root, n_train=3000, n_test=300)
    write_fmnist_like(root, n_train=3000, n_test=300)
    write_cifar10_like(root, n_per_batch=600, n_test=300)
    write_tiny_imagenet_like(root, n_train=30)
    return root, False


def materialized_root(names=REAL_DATASETS) -> Path | None:
    """The project's real datasets written once into a cache folder; None when ``../shared/data`` is absent.

    The cache is ``$ONECLASS_TEST_CACHE`` or ``<repo>/.cache/data`` (git-ignored). materialize.py skips
    datasets whose stamp file exists; a file lock keeps parallel test processes from writing at once.
    """
    script = SHARED_DATA / "materialize.py"
    if not script.exists():
        return None
    cache = Path(os.environ.get("ONECLASS_TEST_CACHE") or REPO / ".cache" / "data").absolute()
    cache.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not (cache / f".materialized-{n}").exists()]
    if todo:
        import fcntl  # POSIX only, and only needed when something is left to write

        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subprocess.run([sys.executable, str(script), str(cache), *todo], check=True,
                           stdout=subprocess.DEVNULL)
    return cache
