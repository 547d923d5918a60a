"""The Clever Hans paper (003), section 4-5: the data protocols (MNIST-C corruptions, MVTec-AD categories) and
one call that fits a model (or all three and their bag) and explains its test set."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import training
from .models import MODELS, Bag, fit_cached

# ================================================================================================ protocols

@dataclass
class Protocol:
    """What one run needs: inlier training images, a validation set with some outliers, and a test set whose
    anomalous images carry a ground-truth explanation map (zeros for nominal ones)."""

    train: torch.Tensor         # uint8 (N, C, H, W) inliers only
    val: torch.Tensor           # uint8 inliers and some outliers
    val_anomaly: torch.Tensor   # int64 (V,)
    test: torch.Tensor          # uint8
    anomaly: torch.Tensor       # int64 (T,)
    ground_truth: torch.Tensor | None   # float32 (T, H, W) in [0, 1], or None when the data has no pixel truth
    labels: torch.Tensor        # int64 (T,) the dataset's own labels (digit / defect type)
    note: str = ""


def _pick(n: int, k: int | None, gen) -> torch.Tensor:
    idx = torch.randperm(n, generator=gen)
    return idx if k is None or k >= n else idx[:k]


TUNINGS = ("per_corruption", "mixed")
# What counts as the anomaly's pixels (the paper: "from which ground-truth explanations of anomalies can be built",
# no definition): 'change_or_drawn' the pixel change, or what was drawn (dotted_line, zigzag, spatter's mud mask)
# where larger, and the whole image for brightness and fog (oneclass.mnist_c.ground_truth); 'change' only the pixel
# change |corrupted - clean|, for every corruption (a stroke drawn over white ink, or mud's mask where it barely
# changes a pixel, is no anomaly a pixel-wise model can see).
GROUND_TRUTHS = ("change_or_drawn", "change")


def mnist_c_protocol(corruption: str, root=None, n_train: int | None = None, n_val: int = 1000,
                     n_test: int | None = None, seed: int = 0, data_seed: int = 0,
                     tuning: str = "per_corruption", ground_truth: str = "change_or_drawn") -> Protocol:
    """MNIST-C as one anomaly class per corruption (our reading of the paper; it gives no protocol in words):
    inliers are clean MNIST digits (all ten); training uses the MNIST training images minus ``n_val`` held
    out; validation = those held-out clean images plus their corrupted versions from the MNIST-C training
    split; test = ``n_test`` MNIST test images, clean (nominal) and corrupted (anomalous) - the same digits
    twice, so only the corruption separates them.

    ``tuning`` says which outliers the validation set holds (only the deep model's whitening uses them):
    'per_corruption' the run's own corruption (the paper's 'validation set with some outliers' read per
    corruption: optimistic, the detector is tuned to the anomaly it is tested on); 'mixed' the held-out digits
    split in 15 blocks, block k corrupted by the k-th corruption, the same set for every run.

    ``ground_truth``: which pixels are the anomaly (:data:`GROUND_TRUTHS`)."""
    from ... import data, mnist_c

    if tuning not in TUNINGS:
        raise ValueError(f"unknown validation tuning {tuning!r}; choose one of {TUNINGS}")
    if ground_truth not in GROUND_TRUTHS:
        raise ValueError(f"unknown ground_truth reading {ground_truth!r}; choose one of {GROUND_TRUTHS}")
    gen = training.generator(seed)
    clean_train = data.load("mnist", "train", root=root).images
    order = torch.randperm(len(clean_train), generator=gen)
    n_val = min(n_val, len(clean_train) // 5)
    val_idx, train_idx = order[:n_val], order[n_val:]
    if n_train is not None:
        train_idx = train_idx[:n_train]
    c_train = mnist_c.load(corruption, "train", root=root, seed=data_seed)
    c_test = mnist_c.load(corruption, "test", root=root, seed=data_seed)
    t = _pick(len(c_test), n_test, gen).sort().values
    test = torch.cat([c_test.clean[t], c_test.images[t]])
    truth = c_test.ground_truth[t] if ground_truth == "change_or_drawn" else \
        (c_test.images[t].float() - c_test.clean[t].float()).abs().reshape(c_test.ground_truth[t].shape) / 255.0
    gt = torch.cat([torch.zeros_like(truth), truth])
    if tuning == "per_corruption":
        outliers = c_train.images[val_idx]
    else:
        blocks = torch.tensor_split(val_idx, len(mnist_c.CORRUPTIONS))
        outliers = torch.cat([mnist_c.images_at(c, "train", b.numpy(), root=root, seed=data_seed)
                              for c, b in zip(mnist_c.CORRUPTIONS, blocks)])
    val = torch.cat([clean_train[val_idx], outliers])
    return Protocol(train=clean_train[train_idx], val=val,
                    val_anomaly=torch.cat([torch.zeros(n_val), torch.ones(n_val)]).long(), test=test,
                    anomaly=torch.cat([torch.zeros(len(t)), torch.ones(len(t))]).long(), ground_truth=gt,
                    labels=torch.cat([c_test.labels[t], c_test.labels[t]]),
                    note="released MNIST-C files" if c_test.released else "MNIST-C regenerated by oneclass.mnist_c")


def mvtec_protocol(category: str, root=None, size: int = 64, channels: int | None = None, val_fraction=0.2,
                   seed: int = 0) -> Protocol:
    """An MVTec-AD category: training = train/good minus a held-out ``val_fraction``; validation = those
    held-out good images plus ``val_fraction`` of each defect type's test images (the paper tunes the deep
    model's whitening on 'a validation set with some outliers'); test = the rest of the test folder. Ground
    truth = the defect masks (None when the category has no ground_truth folder)."""
    from ... import data

    gen = training.generator(seed)
    split = data.one_vs_rest("mvtec", category, root=root, size=size, channels=channels)
    tr, te = split.train, split.test
    order = torch.randperm(len(tr), generator=gen)
    n_val = max(1, int(round(val_fraction * len(tr))))
    val_idx, keep = [], []
    for label in te.labels.unique():
        members = (te.labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        k = int(round(val_fraction * len(members))) if int(label) != 0 else 0
        val_idx.append(members[:k])
        keep.append(members[k:])
    val_idx, keep = torch.cat(val_idx).sort().values, torch.cat(keep).sort().values
    val = torch.cat([tr.images[order[:n_val]], te.images[val_idx]])
    val_anomaly = torch.cat([torch.zeros(n_val), te.anomaly[val_idx].float()]).long()
    gt = te.masks[keep][:, 0].float() if te.masks is not None else None
    note = "" if gt is not None else (f"MVTec {category}: no ground-truth masks here, so no explanation accuracy "
                                      "(detection AUC only)")
    return Protocol(train=tr.images[order[n_val:]], val=val, val_anomaly=val_anomaly, test=te.images[keep],
                    anomaly=te.anomaly[keep], ground_truth=gt, labels=te.labels[keep], note=note)


def protocol(dataset: str, cls, n_train: int | None = None, n_val: int = 1000, n_test: int | None = None,
             size: int = 64, seed: int = 0, root=None, tuning: str = "per_corruption",
             ground_truth: str = "change_or_drawn") -> Protocol:
    """The protocol of one run: ``dataset`` 'mnist_c' (``cls`` a corruption; :func:`mnist_c_protocol`, with
    ``tuning`` and ``ground_truth``) or 'mvtec' (``cls`` a category at ``size`` px; :func:`mvtec_protocol`)."""
    if dataset == "mnist_c":
        return mnist_c_protocol(cls, root=root, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed,
                                tuning=tuning, ground_truth=ground_truth)
    if dataset == "mvtec":
        return mvtec_protocol(cls, root=root, size=size, seed=seed)
    raise ValueError(f"the Clever Hans paper evaluates 'mnist_c' and 'mvtec', not {dataset!r}")


def hyperparameters(dataset: str, seed: int = 0, ae_epochs: int = 10, deep_pretrain: str = "",
                    deep_pretrain_limit: int | None = None, deep_epochs: int = 2, lrp_gamma: float = 0.25,
                    cache_dir=None, device=None, precision: str = "fp32", bandwidth: str = "likelihood") -> dict:
    """Each model's constructor arguments for ``dataset`` (what :func:`fit_and_explain` takes): the
    autoencoder's architecture (LeNet for MNIST-C, four blocks for MVTec-AD) and the deep model's labelled
    substitute set (``deep_pretrain``; empty: Fashion-MNIST for MNIST-C, Tiny ImageNet for MVTec-AD), the KDE's
    ``bandwidth`` rule (:class:`~.models.KDE`)."""
    common = {"device": device, "precision": precision}
    pretrain = deep_pretrain or ("fmnist" if dataset == "mnist_c" else "tiny_imagenet")
    return {"kde": {"bandwidth": bandwidth} | common,
            "ae": {"arch": "lenet" if dataset == "mnist_c" else "blocks", "epochs": ae_epochs, "seed": seed} | common,
            "deep": {"pretrain": pretrain, "pretrain_limit": deep_pretrain_limit, "epochs": deep_epochs,
                     "seed": seed, "lrp_gamma": lrp_gamma,
                     "cache_dir": None if cache_dir is None else str(cache_dir)} | common}


def fit_and_explain(model: str, proto: Protocol, hyper: dict, cache_dir=None, progress=None):
    """Fit ``model`` ('kde', 'ae', 'deep' or 'bag' = all three plus the bag) on a protocol and score and
    explain its test set. Returns (Output, fitted models by name, facts: fit / score seconds per model, whether
    it came from the cache, and the selected KDE stiffness / autoencoder epoch / whitening regulariser)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    import time

    names = ["kde", "ae", "deep"] if model == "bag" else [model]
    fitted, parts, seconds = {}, {}, {}
    for name in names:
        t = time.time()
        fitted[name], cached = fit_cached(name, hyper.get(name, {}), proto.train, proto.val, proto.val_anomaly,
                                          cache_dir, progress)
        seconds[f"{name}_fit_seconds"] = time.time() - t
        seconds[f"{name}_from_cache"] = bool(cached)
        t = time.time()
        parts[name] = fitted[name].score(proto.test)
        seconds[f"{name}_score_seconds"] = time.time() - t
        chosen = {"kde": "gamma_", "ae": "best_epoch_", "deep": "lam_"}[name]
        seconds[f"{name}_{chosen.strip('_')}"] = getattr(fitted[name], chosen, None)
        if name == "kde" and getattr(fitted[name], "validation_", None):   # 0: the grid's broadest bandwidth
            seconds["kde_gamma_index"] = fitted[name].validation_["gammas"].index(fitted[name].gamma_)
    if model != "bag":
        return parts[model], fitted, seconds
    bag = Bag(dict(fitted), device=hyper.get("kde", {}).get("device")).fit(val=proto.val[proto.val_anomaly == 0])
    fitted["bag"] = bag
    return bag.score(proto.test, parts=parts), fitted, seconds


