"""Pixel metrics at each image's own resolution: pooled and per-image pixel AUC and AUPRO, checked by hand on a
small case and against slow references written here; masks of different sizes and modes read lazily."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import datagen
from oneclass import data, metrics


def aupro_reference(maps, masks, limit=0.3, connectivity=8):
    """The PRO curve at every distinct threshold, by brute force: FPR over all nominal pixels, PRO the mean over
    all connected regions of the fraction above the threshold; trapezoids from (0, 0), interpolated at limit."""
    from scipy import ndimage

    structure = np.ones((3, 3), int) if connectivity == 8 else None
    scores, negatives, regions = [], [], []
    for m, g in zip(maps, masks):
        g = g > 0
        lab, k = ndimage.label(g, structure=structure)
        regions += [m[lab == r] for r in range(1, k + 1)]
        negatives.append(m[~g])
        scores.append(m.ravel())
    negatives = np.concatenate(negatives)
    fpr, pro = [0.0], [0.0]
    for t in np.unique(np.concatenate(scores))[::-1]:
        fpr.append(float((negatives >= t).mean()))
        pro.append(float(np.mean([(r >= t).mean() for r in regions])))
    fpr, pro = np.array(fpr), np.array(pro)
    keep = fpr <= limit
    x, y = list(fpr[keep]), list(pro[keep])
    if x[-1] < limit:                               # the curve crosses the limit between two points
        j = int(np.argmax(fpr > limit))
        x.append(limit)
        y.append(pro[j - 1] + (pro[j] - pro[j - 1]) * (limit - fpr[j - 1]) / (fpr[j] - fpr[j - 1]))
    return np.trapezoid(y, x) / limit


def test_pixel_metrics_by_hand():
    """Image 1 (2x3) has one 2-pixel region scored 0.9 and 0.4 among negatives 0.8, 0.1, 0.2, 0.3; image 2 (1x3)
    is nominal with 0.5, 0.05, 0.6. Pooled: 0.9 beats all 7 negatives, 0.4 beats 4: 11/14. Per image: 7/8.
    PRO is 0.5 from the first threshold (0.9) on and reaches 1 only at FPR 3/7, past the limit 0.3: AUPRO 0.5.
    With the limit 1 and one region, AUPRO is the positives' AUC: (3/7 * 0.5 + 4/7 * 1) = 11/14."""
    maps = [np.array([[0.9, 0.4, 0.8], [0.1, 0.2, 0.3]]), np.array([[0.5, 0.05, 0.6]])]
    masks = [np.array([[1, 1, 0], [0, 0, 0]]), np.zeros((1, 3))]
    out = metrics.pixel_metrics(maps, masks)
    assert out["pixel_auc_pooled"] == pytest.approx(11 / 14)
    assert out["pixel_auc_per_image"] == pytest.approx(7 / 8)
    assert out["aupro"] == pytest.approx(0.5) and out["anomalous_regions"] == 1
    assert metrics.pixel_metrics(maps, masks, aupro_limit=1.0)["aupro"] == pytest.approx(11 / 14)


def test_regions_weigh_equally_whatever_their_size():
    """Two regions, 1 and 8 pixels: a map that finds only the small one (the large one scored below every
    nominal pixel) has PRO 0.5 up to FPR 1, not 1/9."""
    mask = np.zeros((6, 6))
    mask[0, 0] = 1
    mask[3:5, 2:6] = 1
    m = np.full((6, 6), -1.0)
    m[0, 0], m[3:5, 2:6] = 1.0, -2.0
    assert metrics.pixel_metrics([m], [mask], aupro_limit=0.3)["aupro"] == pytest.approx(0.5)
    assert metrics.pixel_metrics([m], [mask])["anomalous_regions"] == 2
    diagonal = np.eye(3)
    assert metrics.pixel_metrics([np.eye(3)], [diagonal], connectivity=8)["anomalous_regions"] == 1
    assert metrics.pixel_metrics([np.eye(3)], [diagonal], connectivity=4)["anomalous_regions"] == 3


@pytest.mark.parametrize("levels", [None, 5])      # continuous scores, and heavy ties
def test_pixel_metrics_match_slow_references_on_images_of_several_sizes(levels):
    rng = np.random.default_rng(0)
    maps, masks, big = [], [], []
    for i, (h, w) in enumerate([(12, 9), (7, 15), (10, 10), (5, 6), (16, 11)]):
        g = np.zeros((h, w), np.uint8)
        if i % 2 == 0:                                   # anomalous: two boxes, the second may touch the first
            g[1:4, 1:3] = 1
            g[h - 3:h - 1, w - 4:w - 1] = 1
        native = rng.normal(size=(4, 4)).astype(np.float32) + 0.0
        if levels:
            native = np.round(native * levels / 4) / levels
        maps.append(native)                              # each map at the model's resolution, resized per mask
        masks.append(g)
        big.append(metrics.resize_maps(native[None], (h, w))[0])
    out = metrics.pixel_metrics(maps, masks)
    flat_m = np.concatenate([b.ravel() for b in big])
    flat_g = np.concatenate([g.ravel() for g in masks])
    assert out["pixel_auc_pooled"] == pytest.approx(roc_auc_score(flat_g, flat_m), abs=1e-12)
    per = [roc_auc_score(g.ravel(), b.ravel()) for b, g in zip(big, masks) if g.any()]
    assert out["pixel_auc_per_image"] == pytest.approx(np.mean(per), abs=1e-12)
    for limit in (0.3, 0.05, 1.0):
        assert metrics.pixel_metrics(maps, masks, aupro_limit=limit)["aupro"] == \
            pytest.approx(aupro_reference(big, masks, limit), abs=1e-9)


def test_pixel_metrics_refuse_what_is_undefined():
    with pytest.raises(ValueError, match="2 maps but 1 masks"):
        metrics.pixel_metrics([np.zeros((2, 2))] * 2, [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="only one class of pixels"):
        metrics.pixel_metrics([np.ones((2, 2))], [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="NaN"):
        metrics.pixel_metrics([np.full((2, 2), np.nan)], [np.eye(2)])
    with pytest.raises(ValueError, match="aupro_limit"):
        metrics.pixel_metrics([np.ones((2, 2))], [np.eye(2)], aupro_limit=0)


def test_masks_of_several_sizes_and_modes_are_read_one_at_a_time(tmp_path):
    sizes = [(32, 24), (40, 30), (28, 36)]
    info = datagen.write_mvtec_like(tmp_path, sizes=sizes, defects={"crack": 3, "hole": 2}, n_good_test=2)
    test = data.load_mvtec("widget", "test", root=tmp_path, size=16)
    masks = data.mvtec_masks(test)
    shapes = masks.shapes()
    assert len(set(shapes)) == 3 and len(masks) == len(test)
    for i, (path, label, box) in enumerate(info["test"]):
        j = [str(p) for p in test.paths].index(str(path))
        assert masks[j].shape == shapes[j]
        if box is None:
            assert not masks[j].any()
        else:
            assert masks[j][box[0]:box[1], box[2]:box[3]].all() and masks[j].sum() == \
                (box[1] - box[0]) * (box[3] - box[2])
    with pytest.raises(ValueError, match=r"3 different sizes among 7 masks, from 24x32 to 30x40 \(height x width\)"
                                         r".*mvtec_masks"):
        data.load_mvtec_masks(test)
    assert data.load_mvtec_masks(test, 20).shape == (7, 20, 20)
    # the model's maps at 16 px against the masks at their own sizes: equal to stacking each pair by hand
    rng = np.random.default_rng(1)
    maps = rng.random((len(test), 16, 16)).astype(np.float32)
    out = metrics.pixel_metrics(maps, masks)
    big = [metrics.resize_maps(maps[i:i + 1], masks[i].shape)[0] for i in range(len(test))]
    flat_g = np.concatenate([masks[i].ravel() for i in range(len(test))])
    assert out["pixel_auc_pooled"] == pytest.approx(roc_auc_score(flat_g, np.concatenate([b.ravel() for b in big])))


def test_mvtec_split_refuses_before_training_what_evaluation_would_miss(tmp_path):
    import shutil

    from oneclass.methods import fcdd

    datagen.write_mvtec_like(tmp_path, category="nomasks", masks=False)
    with pytest.raises(ValueError, match=r"semi-supervised FCDD trains on the ground-truth masks.*mode='unsupervised'"):
        fcdd.mvtec_split("nomasks", "semi", root=tmp_path, size=16)
    assert fcdd.mvtec_split("nomasks", "unsupervised", root=tmp_path, size=16)[2].masks is None
    info = datagen.write_mvtec_like(tmp_path, category="allgood")
    for d in ("crack", "hole"):
        shutil.rmtree(info["folder"] / "test" / d)
    with pytest.raises(ValueError, match=r"allgood/test holds 0 defective and 2 good images.*before training"):
        fcdd.mvtec_split("allgood", "unsupervised", root=tmp_path, size=16)


def test_a_category_given_as_a_path_is_a_folder_and_a_name_with_a_slash_is_not(tmp_path):
    from oneclass import params, runs

    assert data.is_path_category("/data/widgets") and data.is_path_category("~/widgets")
    assert data.is_path_category("./widgets") and not data.is_path_category("T-shirt/top")
    assert runs.class_folder("T-shirt/top") == "t-shirt-top" and runs.class_folder("/data/My Widgets") == "my-widgets"
    folder = tmp_path / "widgets"
    assert params._resolve_classes("mvtec", [str(folder), "bottle"]) == [str(folder), "bottle"]
    with pytest.raises(data.DatasetMissingError, match="widgets"):
        data.require("mvtec", root=tmp_path / "root", normal=str(folder))
