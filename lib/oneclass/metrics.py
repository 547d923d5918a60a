"""Metrics on scores and maps (never on models). Scores mean 'more anomalous is higher' everywhere.

Detection: :func:`auc` (anomalies positive), :func:`aupr_in` (nominal positive, on the negated score) and
:func:`aupr_out` (anomalies positive), the convention of GEOM's tables, as average precision and by the
trapezoidal rule (:func:`aupr_trapezoid`, the GEOM authors' code). Localisation: pixel AUC pooled over all
pixels of all test images (FCDD's code) and averaged per anomalous image (FCDD's text), and AUPRO (the MVTec-AD
benchmark's per-region overlap): :func:`pixel_metrics` computes all three with each map at its own mask's size.
Explanations: the
Clever Hans paper's explanation accuracy and Clever Hans score.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def _array(x, name: str, dtype=np.float64) -> np.ndarray:
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=dtype)
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN/inf value(s): a metric of non-finite scores is "
                         "meaningless; fix the model or the score (compute it in log space)")
    return x


def _labels(y, n: int) -> np.ndarray:
    y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y).astype(int).reshape(-1)
    if y.size != n:
        raise ValueError(f"{y.size} labels for {n} scores: pass one 0/1 anomaly label per score")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError(f"anomaly labels must be 0 (nominal) or 1 (anomalous), got values {np.unique(y)[:10]}")
    if len(np.unique(y)) < 2:
        raise ValueError("the test set has only one class (all nominal or all anomalous): AUC is undefined; "
                         "use a test split that holds both")
    return y


def auc(scores, anomaly) -> float:
    """ROC AUC with anomalies as the positive class (equal to GEOM's AUROC of the normality score with the
    nominal class positive)."""
    s = _array(scores, "scores").reshape(-1)
    return float(roc_auc_score(_labels(anomaly, s.size), s))


def aupr_in(scores, anomaly) -> float:
    """Average precision with the nominal class positive, ranked by normality (= -score)."""
    s = _array(scores, "scores").reshape(-1)
    return float(average_precision_score(1 - _labels(anomaly, s.size), -s))


def aupr_out(scores, anomaly) -> float:
    """Average precision with anomalies positive, ranked by the anomaly score."""
    s = _array(scores, "scores").reshape(-1)
    return float(average_precision_score(_labels(anomaly, s.size), s))


def aupr_trapezoid(scores, anomaly, positive: str = "anomaly") -> float:
    """Area under the precision-recall curve by the trapezoidal rule (``sklearn.metrics.auc(recall, precision)``),
    the definition in the GEOM authors' code behind its Tables 2-3; ``positive`` 'anomaly' (AUPR-Out, ranked by the
    score) or 'nominal' (AUPR-In, ranked by -score). Linear interpolation between PR points is optimistic where
    precision jumps, so it can differ from average precision (:func:`aupr_in`, :func:`aupr_out`)."""
    from sklearn.metrics import auc as area, precision_recall_curve

    if positive not in ("anomaly", "nominal"):
        raise ValueError(f"positive must be 'anomaly' or 'nominal', got {positive!r}")
    s = _array(scores, "scores").reshape(-1)
    y = _labels(anomaly, s.size)
    precision, recall, _ = (precision_recall_curve(y, s) if positive == "anomaly" else
                            precision_recall_curve(1 - y, -s))
    return float(area(recall, precision))


def detection(scores, anomaly) -> dict:
    """AUC, AUPR-In and AUPR-Out as average precision, and both AUPRs by the trapezoidal rule (``*_trapezoid``,
    the GEOM authors' definition)."""
    return {"auc": auc(scores, anomaly), "aupr_in": aupr_in(scores, anomaly), "aupr_out": aupr_out(scores, anomaly),
            "aupr_in_trapezoid": aupr_trapezoid(scores, anomaly, "nominal"),
            "aupr_out_trapezoid": aupr_trapezoid(scores, anomaly, "anomaly")}


def _maps_and_masks(maps, masks):
    # float32 maps and boolean masks: at MVTec-AD's resolution (up to 1024 px) a test set has ~10^8 pixels
    m = _array(maps, "maps", np.float32)
    g = np.asarray(masks.detach().cpu() if hasattr(masks, "detach") else masks)
    m = m.reshape(m.shape[0], -1) if m.ndim > 1 else m
    g = g.reshape(g.shape[0], -1) if g.ndim > 1 else g
    if m.shape != g.shape:
        raise ValueError(f"maps {np.shape(maps)} and masks {np.shape(masks)} differ in shape: upsample the maps to "
                         "the ground truth's resolution first")
    return m, g > 0


def pixel_auc_pooled(maps, masks) -> float:
    """One ROC over every pixel of every test image (nominal images included): what FCDD's code computes."""
    m, g = _maps_and_masks(maps, masks)
    if g.min() == g.max():
        raise ValueError("the masks hold only one class of pixels: pixel AUC is undefined")
    return _rank_auc(m.reshape(-1), g.reshape(-1))


def _rank_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic with tied scores sharing their mean rank: the same number as
    sklearn's roc_auc_score, in a fraction of its memory (one sort of float32 scores, no per-threshold arrays)."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], positive[order]
    del order
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])          # first index of each run of equal scores
    del s
    ends = np.r_[starts[1:], y.size]
    pos_in_run = np.add.reduceat(y.astype(np.int64), starts)
    mean_rank = (starts + ends + 1) / 2.0                            # 1-based ranks
    n_pos = int(pos_in_run.sum())
    n_neg = y.size - n_pos
    rank_sum = float(np.dot(pos_in_run, mean_rank))
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _sorted_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC from the sorted scores of the positives and of the negatives (ties count one half): the
    Mann-Whitney count by two ordered searches, exact and without a joint sort."""
    left, right = np.searchsorted(neg, pos, "left"), np.searchsorted(neg, pos, "right")
    return (float(left.sum()) + 0.5 * float((right - left).sum())) / (pos.size * neg.size)


def pixel_auc_per_image(maps, masks) -> float:
    """ROC AUC of each image's pixels, averaged over the images whose mask has both classes (the anomalous
    ones): the 'per-sample AUC averaged' that FCDD's text describes."""
    m, g = _maps_and_masks(maps, masks)
    per = [_rank_auc(mi, gi) for mi, gi in zip(m, g) if 0 < gi.sum() < gi.size]
    if not per:
        raise ValueError("no test image has a mask with both anomalous and nominal pixels")
    return float(np.mean(per))


def resize_maps(maps, size) -> np.ndarray:
    """Heatmaps (N, H, W) resized bilinearly to ``size`` = (h, w) or an int, e.g. to the ground truth's
    resolution before a pixel AUC (float32; antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    m = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    if m.ndim != 3:
        raise ValueError(f"expected heatmaps (N, H, W), got shape {tuple(m.shape)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(m.shape[1:]) == hw:
        return m.numpy()
    shrink = hw[0] < m.shape[1] or hw[1] < m.shape[2]
    return F.interpolate(m[:, None], size=hw, mode="bilinear", align_corners=False, antialias=shrink)[:, 0].numpy()


def heatmap_mass_fraction(maps, region) -> np.ndarray:
    """Per image, the share of the heatmap's total mass that lies inside ``region`` (a boolean (H, W) mask
    for all images, or (N, H, W)): sum over the region / sum over the image. Maps must be non-negative (FCDD's
    are); a map that is zero everywhere gets NaN. Compare with the region's share of the area (chance level)."""
    m = _array(maps, "maps")
    if m.ndim != 3:
        raise ValueError(f"expected heatmaps (N, H, W), got shape {m.shape}")
    if m.min() < 0:
        raise ValueError("heatmap mass needs non-negative maps; shift or rectify them first (e.g. np.maximum(m, 0))")
    r = np.asarray(region, dtype=bool)
    if r.shape not in (m.shape, m.shape[1:]):
        raise ValueError(f"region {r.shape} must have the maps' shape {m.shape} or one map's shape {m.shape[1:]}")
    inside = (m * r).sum(axis=(1, 2))
    total = m.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1), np.nan)


def explanation_accuracy(explanations, ground_truth) -> float:
    """Mean cosine similarity between each ground-truth map and the rectified explanation max(0, R)
    (Clever Hans paper). Images whose explanation or ground truth is all zero count as 0."""
    r = _array(explanations, "explanations")
    r = r.reshape(r.shape[0], -1) if r.ndim > 1 else r
    if r.shape[0] != np.shape(ground_truth)[0] or r.size != np.size(ground_truth):
        raise ValueError(f"explanations {np.shape(explanations)} and ground truth {np.shape(ground_truth)} differ "
                         "in shape: upsample the maps to the ground truth's resolution first")
    g = _array(ground_truth, "ground truth").reshape(r.shape[0], -1)
    r = np.maximum(r, 0)
    denom = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
    cos = np.divide((r * g).sum(axis=1), denom, out=np.zeros(len(r)), where=denom > 0)
    return float(cos.mean())


def clever_hans_score(auc_value: float, explanation_accuracy_value: float) -> float:
    """Clever Hans score = detection AUC - explanation accuracy (high: right for the wrong reasons)."""
    return float(auc_value) - float(explanation_accuracy_value)


def explanation_metrics(scores, anomaly, maps, ground_truth) -> dict:
    """AUC, explanation accuracy (over the anomalous images) and Clever Hans score = AUC - explanation accuracy.
    ``maps`` are resized (bilinear) to the ground truth's resolution when they differ."""
    anomaly = np.asarray(anomaly).astype(bool).reshape(-1)
    maps, gt = np.asarray(maps, dtype=np.float64), np.asarray(ground_truth, dtype=np.float64)
    if gt.ndim == 4:
        gt = gt[:, 0]
    if len(maps) != len(anomaly) or len(gt) != len(anomaly):
        raise ValueError(f"{len(maps)} maps, {len(gt)} ground-truth maps and {len(anomaly)} labels: pass one of each "
                         "per test image")
    maps = _resize_like(maps, gt)
    detection = auc(scores, anomaly)
    acc = explanation_accuracy(maps[anomaly], gt[anomaly])
    return {"auc": detection, "explanation_accuracy": acc, "clever_hans": clever_hans_score(detection, acc)}


def _resize_like(maps, gt):
    """``maps`` resized (bilinear) to the ground truth's resolution when they differ."""
    if maps.shape[1:] == gt.shape[1:]:
        return maps
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(np.ascontiguousarray(maps))[:, None], size=gt.shape[1:], mode="bilinear",
                         align_corners=False)[:, 0].numpy()


# ------------------------------------------------------------ localisation at each image's own resolution

AUPRO_LIMIT = 0.3


def _float_keys(x: np.ndarray) -> np.ndarray:
    """float32 -> uint32 keys that sort like the floats (so a histogram of the keys' bits can select ranks)."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return np.where(b >> 31, ~b, b | np.uint32(0x80000000))


def _key_float(key: int) -> np.float32:
    b = np.uint32(key)
    b = b & np.uint32(0x7FFFFFFF) if b >> 31 else ~b
    return np.array([b], dtype=np.uint32).view(np.float32)[0]


def _map_at_mask(map_, mask) -> tuple[np.ndarray, np.ndarray]:
    """One heatmap resized (bilinear) to its own mask's resolution, and the mask as bool."""
    g = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    g = g.reshape(g.shape[-2:]) > 0
    m = _array(map_, "maps", np.float32)
    m = m.reshape(m.shape[-2:])
    return (m if m.shape == g.shape else resize_maps(m[None], g.shape)[0]), g


def pixel_metrics(maps, masks, aupro_limit: float = AUPRO_LIMIT, connectivity: int = 8) -> dict:
    """Pixel AUC pooled, pixel AUC per anomalous image and AUPRO, each map compared with its own mask at the
    mask's resolution, so images and masks may all have different sizes.

    ``maps``: one heatmap per test image (a sequence of (h, w) arrays or an (N, h, w) array), any resolution;
    ``masks``: one 0/1 mask per image (a sequence; :func:`oneclass.data.mvtec_masks` reads each from disk on
    access), zeros for nominal images. Memory: one image at native resolution at a time plus the anomalous
    pixels' scores, never the whole test set at the largest size. Three passes over the images (each map is
    resized again in each, and its nominal pixels sorted, so every search walks its inputs in order): anomalous
    pixels and per-image AUCs; the negatives' score at the AUPRO limit (exact, by histograms of the floats' bits);
    the pooled AUC and the PRO integral. ``benchmarks/custom_data.py`` measures time and peak memory.

    * ``pixel_auc_pooled``: one ROC over every pixel of every image (ties count one half);
    * ``pixel_auc_per_image``: the mean of each anomalous image's own pixel AUC;
    * ``aupro``: the per-region overlap curve (for each threshold, the mean over all connected ground-truth
      regions of the fraction of the region above it, against the false-positive rate over all nominal pixels)
      integrated by trapezoids from FPR 0 to ``aupro_limit`` (linear interpolation at the limit) and divided by
      it: 1 is perfect. Regions are ``connectivity``-connected (8: diagonal neighbours join, as in the MVTec-AD
      evaluation code; 4: they do not)."""
    from scipy import ndimage

    n = len(maps)
    if len(masks) != n:
        raise ValueError(f"{n} maps but {len(masks)} masks: pass one mask per test image (zeros for nominal ones)")
    if not 0 < aupro_limit <= 1:
        raise ValueError(f"aupro_limit must lie in (0, 1], got {aupro_limit}")
    structure = {8: np.ones((3, 3), int), 4: None}[connectivity]
    pos, weights, per_image, n_neg, n_regions, shapes = [], [], [], 0, 0, []
    hist_hi = np.zeros(1 << 16, np.int64)
    for i in range(n):                                                           # pass 1
        m, g = _map_at_mask(maps[i], masks[i])
        labels, k = ndimage.label(g, structure=structure)
        shapes.append(g.shape)
        neg = np.sort(m[~g])            # sorted: the searches below walk it in order (about 10x faster)
        if k:
            sizes = np.bincount(labels.ravel())[1:]
            pos.append(m[g])
            weights.append(1.0 / sizes[labels[g] - 1])                           # each region weighs 1 in total
            n_regions += k
            if neg.size:
                per_image.append(_sorted_auc(np.sort(pos[-1]), neg))
        n_neg += neg.size
        hist_hi += np.bincount(_float_keys(neg) >> 16, minlength=1 << 16)
    if not n_regions or not n_neg:
        raise ValueError("the masks hold only one class of pixels (no anomalous region, or no nominal pixel): "
                         "pixel metrics are undefined; check that the anomalous images' masks were read")
    pos = np.concatenate(pos)
    order = np.argsort(pos, kind="stable")
    pos, weights = pos[order], np.concatenate(weights)[order] / n_regions
    cum = np.r_[0.0, np.cumsum(weights)]               # cum[j]: PRO mass of the j lowest-scored positives
    total = cum[-1]
    # the negatives' score at the limit: the k-th largest, k = ceil(limit * n_neg), found exactly in two bit passes
    k = int(np.ceil(aupro_limit * n_neg))
    above = np.cumsum(hist_hi[::-1])
    hi = (1 << 16) - 1 - int(np.searchsorted(above, k))
    before = int(above[(1 << 16) - 2 - hi]) if hi < (1 << 16) - 1 else 0      # negatives in higher bins
    hist_lo = np.zeros(1 << 16, np.int64)
    for i in range(n):                                                           # pass 2
        m, g = _map_at_mask(maps[i], masks[i])
        keys = _float_keys(m[~g])
        hist_lo += np.bincount(keys[(keys >> 16) == hi] & 0xFFFF, minlength=1 << 16)
    lo = (1 << 16) - 1 - int(np.searchsorted(np.cumsum(hist_lo[::-1]), k - before))
    t = _key_float((hi << 16) | lo)
    greater_sum = equal_sum = 0.0
    area = 0.0
    n_above = n_at = 0
    for i in range(n):                                                           # pass 3
        m, g = _map_at_mask(maps[i], masks[i])
        neg = np.sort(m[~g])
        left, right = np.searchsorted(pos, neg, "left"), np.searchsorted(pos, neg, "right")
        greater_sum += float((pos.size - right).sum())
        equal_sum += float((right - left).sum())
        at, over = np.searchsorted(neg, t, "left"), np.searchsorted(neg, t, "right")   # neg[over:] > t
        # PRO with the threshold just above / at each negative's score, summed over the negatives above t
        area += float((2 * total - cum[right[over:]] - cum[left[over:]]).sum()) / 2.0
        n_above += neg.size - over
        n_at += over - at
    # the tied group at t spans FPR from n_above / n_neg to (n_above + n_at) / n_neg; the curve is linear in
    # between, and the limit cuts it
    j = int(np.searchsorted(pos, t, "left")), int(np.searchsorted(pos, t, "right"))
    pro_a, pro_b = total - cum[j[1]], total - cum[j[0]]
    fpr_a, fpr_b = n_above / n_neg, (n_above + n_at) / n_neg
    area /= n_neg
    frac = (aupro_limit - fpr_a) / (fpr_b - fpr_a)
    pro_limit = pro_a + frac * (pro_b - pro_a)
    area += (aupro_limit - fpr_a) * (pro_a + pro_limit) / 2.0
    return {"pixel_auc_pooled": (greater_sum + 0.5 * equal_sum) / (pos.size * n_neg),
            "pixel_auc_per_image": float(np.mean(per_image)) if per_image else float("nan"),
            "aupro": area / aupro_limit, "anomalous_regions": n_regions,
            "gt_size": int(max(max(shape) for shape in shapes))}   # the largest mask side (uniform sets: the size)
