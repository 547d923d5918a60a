"""Heatmap galleries from run folders, like the papers' figures.

:func:`normalize` is FCDD's appendix A contrast rule, the one place heatmaps are scaled for display (galleries
and the explorer widgets alike): subtract the minimum over a set of maps, divide by the eta-quantile of the
shifted maps over all pixels of the set, clamp to [0, 1]. The set is each map alone (``local``), the maps of
one figure (``figure``), or a whole split (``split``, given as ``reference``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SCOPES = ("local", "figure", "split")


def normalize(maps, eta: float = 0.97, scope: str = "figure", reference=None) -> np.ndarray:
    """Appendix A of FCDD: I(X) = min((A'(X) - min A) / q_eta(A - min A), 1) over the set A chosen by ``scope``."""
    maps = np.asarray(maps, dtype=np.float64)
    if not 0 < eta <= 1:
        raise ValueError(f"eta must be in (0, 1], got {eta}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if scope == "split" and reference is None:
        raise ValueError("scope 'split' needs reference= the maps of the whole split")
    if scope == "local":
        return np.stack([normalize(m[None], eta, "figure")[0] for m in maps]) if len(maps) else maps
    ref = maps if scope == "figure" else np.asarray(reference, dtype=np.float64)
    low = ref.min()
    q = np.quantile(ref - low, eta)
    scaled = (maps - low) / q if q > 0 else np.zeros_like(maps)
    return np.clip(scaled, 0.0, 1.0)


def blur(maps, sigma: float) -> np.ndarray:
    """Gaussian blur of each map (display only: metrics use the raw maps)."""
    from scipy.ndimage import gaussian_filter

    maps = np.asarray(maps, dtype=np.float64)
    return maps if sigma <= 0 else np.stack([gaussian_filter(m, sigma) for m in maps])


def pick(scores, anomaly, anomalous: int = 8, nominal: int = 0, among=None, descending: bool = False) -> np.ndarray:
    """Indices of the images a figure shows: the ``nominal`` most anomalous nominal images, then the
    ``anomalous`` most anomalous anomalous ones, each group in increasing score (FCDD's figure 4 order).
    ``among`` restricts the choice to these indices (e.g. :func:`oneclass.runs.gallery_index`'s subset); the
    result indexes the full ``scores``. ``descending`` reverses the whole order (the most anomalous first)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    anomaly = np.asarray(anomaly).astype(bool).reshape(-1)
    if scores.shape != anomaly.shape:
        raise ValueError(f"{scores.size} scores but {anomaly.size} anomaly labels")
    pool = np.arange(len(scores)) if among is None else np.asarray(among, dtype=np.int64)
    out = []
    for group, k in ((False, nominal), (True, anomalous)):
        idx = pool[anomaly[pool] == group]
        out.append(idx[np.argsort(scores[idx], kind="stable")][len(idx) - min(k, len(idx)):])
    order = np.concatenate(out).astype(np.int64)
    return order[::-1].copy() if descending else order


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img.transpose(1, 2, 0)
    return img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img


def figure(images, rows: dict, scores=None, masks=None, titles=None, cmap: str = "jet", row_height: float = 1.2,
           suptitle: str | None = None):
    """A grid: the inputs in the first row, then one row per named set of (already normalised) heatmaps, then
    the ground truth when given. Columns in the order given (sort them by score before calling)."""
    import matplotlib.pyplot as plt

    n = len(images)
    names = ["input", *rows] + (["ground truth"] if masks is not None else [])
    fig, axes = plt.subplots(len(names), max(n, 1), figsize=(max(n, 1) * row_height, len(names) * row_height),
                             squeeze=False)
    for j in range(n):
        img = _as_hwc(images[j])
        axes[0, j].imshow(img, cmap="gray" if img.ndim == 2 else None)
        for i, key in enumerate(rows, start=1):
            axes[i, j].imshow(np.asarray(rows[key][j]), cmap=cmap, vmin=0, vmax=1)
        if masks is not None:
            axes[-1, j].imshow(np.asarray(masks[j]).squeeze(), cmap="gray", vmin=0, vmax=1)
        if scores is not None:
            axes[0, j].set_title(f"{float(scores[j]):.3g}" if titles is None else titles[j], fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for i, name in enumerate(names):
        axes[i, 0].set_ylabel(name, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def load_run_maps(run: str | Path) -> dict:
    """maps.npz and scores.parquet of a run folder, aligned: gallery arrays plus their scores and labels."""
    import pandas as pd

    run = Path(run)
    if not (run / "maps.npz").exists():
        raise FileNotFoundError(f"{run} has no maps.npz: this method saved no heatmaps")
    with np.load(run / "maps.npz") as z:
        maps = {k: z[k] for k in z.files}
    scores = pd.read_parquet(run / "scores.parquet")
    if "index" in maps and "upsampled" in maps:
        sel = scores.set_index("index").loc[maps["index"]]
        maps["scores"] = sel["score"].to_numpy()
        maps["anomaly"] = sel["anomaly"].to_numpy() if "anomaly" in sel else np.zeros(len(sel), int)
    return maps


def run_figure(run: str | Path, group: str = "anomalous", n: int = 8, eta: float = 0.97, scope: str = "figure",
               sigma: float = 0.0, cmap: str = "jet", descending: bool = True, title: str | None = None):
    """Gallery of one run: ``n`` nominal or anomalous test images ordered by score, with their heatmaps."""
    m = load_run_maps(run)
    if "upsampled" not in m:
        raise ValueError(f"{run}: maps.npz has no 'upsampled' gallery maps")
    want = 1 if group == "anomalous" else 0
    idx = np.flatnonzero(m["anomaly"] == want)
    idx = idx[np.argsort(m["scores"][idx], kind="stable")]
    idx = (idx[::-1] if descending else idx)[:n]
    maps = blur(m["upsampled"][idx].astype(np.float64), sigma)
    reference = m.get("native") if scope == "split" else None
    heat = normalize(maps, eta, scope, reference)
    masks = m["masks"][idx] if "masks" in m else None
    return figure(m["images"][idx], {"heatmap": heat}, m["scores"][idx], masks, cmap=cmap,
                  suptitle=title or f"{Path(run).parent.name}: {group}, eta={eta}, {scope}")


def experiment_figure(run_dirs: list[Path], n: int = 4, eta: float = 0.97, scope: str = "local",
                      cmap: str = "jet", path: str | Path | None = None, cell: float = 0.95):
    """FCDD figure 4's layout: one block per class (one run each) of an image row above a heatmap row, the
    ``n`` most anomalous-scored *nominal* test images on the left half and the ``n`` most anomalous-scored
    *anomalous* ones on the right, scores under the images; ``cell`` inches per image (at the saved dpi of 110,
    about 100 px), labels at 9 pt."""
    import matplotlib.pyplot as plt

    blocks = []
    for run in run_dirs:
        try:
            m = load_run_maps(run)
        except FileNotFoundError:
            continue
        if "upsampled" not in m:
            continue
        halves = []
        for want in (0, 1):
            idx = np.flatnonzero(m["anomaly"] == want)
            idx = idx[np.argsort(-m["scores"][idx], kind="stable")][:n]
            halves.append((m["images"][idx], normalize(m["upsampled"][idx], eta, scope), m["scores"][idx]))
        blocks.append((Path(run).parent.name, halves))
    if not blocks:
        return None
    cols = 2 * n + 1                                   # nominal | spacer | anomalous
    fig, axes = plt.subplots(2 * len(blocks), cols, squeeze=False,
                             figsize=(cell * (2 * n + 0.3) + 1.2, cell * 2 * len(blocks) + 0.6),
                             gridspec_kw={"width_ratios": [1] * n + [0.3] + [1] * n, "wspace": 0.05,
                                          "hspace": 0.3})
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for b, (name, halves) in enumerate(blocks):
        for h, (imgs, heat, scores) in enumerate(halves):
            for j in range(min(n, len(imgs))):
                col = j if h == 0 else n + 1 + j
                img = _as_hwc(imgs[j])
                top, bottom = axes[2 * b, col], axes[2 * b + 1, col]
                top.imshow(img, cmap="gray" if img.ndim == 2 else None)
                bottom.imshow(heat[j], cmap=cmap, vmin=0, vmax=1)
                top.set_title(f"{scores[j]:.3g}", fontsize=7, pad=1)
        axes[2 * b, 0].set_ylabel(name, fontsize=9, rotation=0, ha="right", va="center")
        axes[2 * b + 1, 0].set_ylabel("heatmap", fontsize=7, rotation=0, ha="right", va="center")
    for h, label in enumerate(("nominal test images", "anomalous test images")):
        left, right = axes[0, 0 if h == 0 else n + 1].get_position(), axes[0, n - 1 if h == 0 else -1].get_position()
        fig.text((left.x0 + right.x1) / 2, left.y1 + 0.2 / fig.get_figheight(), label + " (most anomalous first)",
                 ha="center", va="bottom", fontsize=10)
    if path:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig


def methods_figure(run_dirs: dict, group: str = "anomalous", n: int = 8, eta: float = 0.97, scope: str = "local",
                   cmap: str = "jet", path: str | Path | None = None):
    """FCDD figure 6 style: the same test images (those every run stored) with one heatmap row per method.
    ``run_dirs`` maps a method name to its run folder; the columns follow the first method's scores."""
    import matplotlib.pyplot as plt

    loaded = {name: load_run_maps(run) for name, run in run_dirs.items()}
    loaded = {k: m for k, m in loaded.items() if "upsampled" in m}
    if not loaded:
        raise ValueError("none of these runs stored gallery heatmaps")
    first = next(iter(loaded.values()))
    want = 1 if group == "anomalous" else 0
    common = set(first["index"][first["anomaly"] == want].tolist())
    for m in loaded.values():
        common &= set(m["index"].tolist())
    if not common:
        raise ValueError("the runs share no gallery image: were they run on the same test set?")
    pos = {int(i): k for k, i in enumerate(first["index"])}
    chosen = sorted(common, key=lambda i: -first["scores"][pos[i]])[:n]
    rows = {}
    for name, m in loaded.items():
        where = {int(i): k for k, i in enumerate(m["index"])}
        rows[name] = normalize(np.stack([m["upsampled"][where[i]] for i in chosen]).astype(np.float64), eta, scope)
    masks = np.stack([first["masks"][pos[i]] for i in chosen]) if "masks" in first else None
    fig = figure(np.stack([first["images"][pos[i]] for i in chosen]), rows,
                 [first["scores"][pos[i]] for i in chosen], masks, cmap=cmap)
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def clever_hans_figure4(images, ground_truth, maps, scores=None, n: int = 8, title: str | None = None):
    """Figure 4's layout: input, ground-truth explanation, model explanation max(0, R) (each map scaled to
    its own maximum) for the ``n`` given images."""
    def unit(a):
        a = np.maximum(np.asarray(a, dtype=np.float64)[:n], 0)
        top = a.reshape(len(a), -1).max(1).clip(min=1e-12)
        return a / top[:, None, None]

    return figure(np.asarray(images)[:n], {"ground truth": unit(ground_truth), "explanation": unit(maps)},
                  None if scores is None else np.asarray(scores)[:n], cmap="hot", suptitle=title)


def fcdd_run_maps(run_dir, index, size: int) -> np.ndarray:
    """Heatmaps of test images ``index`` from a run folder's saved ``native`` maps, as the paper displays them:
    FCDD's low-resolution maps upsampled with Algorithm 1, HSC's / AE's full-resolution maps blurred with
    FCDD's Gaussian (sigma as the run used it)."""
    import json

    import torch
    import yaml

    run_dir = Path(run_dir)
    network = json.loads((run_dir / "metrics.json").read_text()).get("network")
    if network is None:
        raise ValueError(f"{run_dir}/metrics.json names no network: it was not written by fcdd_one_vs_rest")
    params = yaml.safe_load((run_dir / "params.yaml").read_text()) if (run_dir / "params.yaml").exists() else {}
    sigma = (params.get("parameters") or {}).get("sigma")
    with np.load(run_dir / "maps.npz") as z:
        native = torch.as_tensor(z["native"][np.asarray(index)].astype(np.float32))
    from .methods.fcdd import ReceptiveUpsampler, nets

    up = ReceptiveUpsampler(nets.build(nets.partner(network)), size, sigma)
    return (up(native) if network.startswith("fcdd") else up.blur(native)).numpy()


def fcdd_sweep_figure(run_dirs: dict, images, index, eta: float = 0.93):
    """Figure 6: one row of heatmaps per run (e.g. FCDD and HSC with 2, 8, 128, 2048 and all OE images) for
    the same test images ``index``; each heatmap normalised on its own (appendix A, X = {X}), eta 0.93."""
    images = np.asarray(getattr(images, "images", images))
    rows = {label: normalize(fcdd_run_maps(path, index, images.shape[-1]), eta, "local")
            for label, path in run_dirs.items()}
    return figure(images[np.asarray(index)], rows)


def fcdd_figure8(det, setup, out, eta: float = 0.97):
    """FCDD figure 8 for a :class:`oneclass.methods.fcdd.clever_hans.HorseSetup`: (a) described test images from the most to the least described-like with their heatmaps;
    (b) VOC: the described images whose heatmaps put the largest share of their mass into the lower-left
    region; the probe: the images of (a) with the watermark pasted. Returns the two figures."""
    from . import metrics

    ours = np.flatnonzero((setup.test.anomaly == 0).numpy())
    top = ours[np.argsort(-out.scores[ours], kind="stable")]
    pick = np.concatenate([top[:5], top[-3:]]) if len(top) > 8 else top
    name = setup.class_name
    fig_a = figure(setup.test.images[pick].numpy(), {"FCDD": normalize(out.maps[pick], eta)},
                           out.scores[pick], suptitle=f"figure 8a: {name} test images, most to least {name}-like")
    if setup.voc:
        mass = metrics.heatmap_mass_fraction(out.maps[ours], setup.region)
        pick_b = ours[np.argsort(-np.nan_to_num(mass), kind="stable")[:8]]
        images, maps, scores = setup.test.images[pick_b], out.maps[pick_b], out.scores[pick_b]
        title = "figure 8b: the most lower-left heatmaps (watermark candidates)"
    else:
        images = setup.stamp(setup.test.images[pick])
        again = det.score(images)
        maps, scores = again.maps, again.scores
        title = "figure 8b: the same images with the watermark pasted"
    fig_b = figure(images.numpy(), {"FCDD": normalize(maps, eta)}, scores, suptitle=title)
    return fig_a, fig_b
