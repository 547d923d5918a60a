"""Metrics, heatmap normalisation, run folders and params validation on hand-computable cases."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from oneclass import gallery, metrics, params, runs

TOY_NB = Path(__file__).parent / "assets" / "toy.ipynb"


# --- metrics ---

def test_detection_metrics_known_values():
    scores, anomaly = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert metrics.auc(scores, anomaly) == pytest.approx(0.75)
    # anomalies ranked 0.8 (hit), 0.4 (miss), 0.35 (hit): AP = (1/1 + 2/3) / 2
    assert metrics.aupr_out(scores, anomaly) == pytest.approx((1 + 2 / 3) / 2)
    # nominal positive, ranked by -score: 0.1 (hit), 0.35 (miss), 0.4 (hit): AP = (1 + 2/3) / 2
    assert metrics.aupr_in(scores, anomaly) == pytest.approx((1 + 2 / 3) / 2)


def test_metrics_refuse_nan_and_single_class():
    with pytest.raises(ValueError, match="NaN/inf"):
        metrics.auc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="only one class"):
        metrics.auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="3 labels for 2 scores"):
        metrics.auc([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match=r"must be 0 \(nominal\) or 1 \(anomalous\), got values \[0 2\]"):
        metrics.auc([0.1, 0.2, 0.3], [0, 2, 2])          # class indices passed where anomaly labels belong
    with pytest.raises(ValueError, match="masks hold only one class of pixels"):
        metrics.pixel_auc_pooled(np.random.rand(2, 4, 4), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="no test image has a mask with both anomalous and nominal pixels"):
        metrics.pixel_auc_per_image(np.random.rand(2, 4, 4), np.stack([np.zeros((4, 4)), np.ones((4, 4))]))
    with pytest.raises(ValueError, match="differ in shape: upsample"):
        metrics.pixel_auc_pooled(np.random.rand(2, 4, 4), np.zeros((2, 8, 8)))


def test_pixel_auc_pooled_and_per_image_differ_as_computed_by_hand():
    # image 0 is nominal (all-zero mask), image 1 has one anomalous pixel
    maps = np.array([[[0.9, 0.0], [0.0, 0.0]], [[0.5, 0.1], [0.2, 0.3]]])
    masks = np.array([[[0, 0], [0, 0]], [[1, 0], [0, 0]]])
    # per image: only image 1 counts, its anomalous pixel (0.5) tops its 3 nominal ones -> 1.0
    assert metrics.pixel_auc_per_image(maps, masks) == pytest.approx(1.0)
    # pooled: the positive 0.5 beats 6 of the 7 negatives (not the 0.9 of image 0) -> 6/7
    assert metrics.pixel_auc_pooled(maps, masks) == pytest.approx(6 / 7)
    with pytest.raises(ValueError, match="upsample"):
        metrics.pixel_auc_pooled(maps[:, :1], masks)


def test_explanation_accuracy_and_clever_hans_score():
    gt = np.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    r = np.array([[[2.0, -5.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    # image 0: rectified explanation (2, 0, 0, 0) is parallel to gt -> 1; image 1: orthogonal -> 0
    acc = metrics.explanation_accuracy(r, gt)
    assert acc == pytest.approx(0.5)
    assert metrics.clever_hans_score(0.9, acc) == pytest.approx(0.4)


# --- heatmap normalisation (FCDD appendix A) ---

def test_normalize_scopes():
    a = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    b = np.array([[[10.0, 11.0], [12.0, 14.0]]])
    both = np.concatenate([a, b])
    # eta = 1: plain min-max over the set
    fig = gallery.normalize(both, eta=1.0, scope="figure")
    assert fig[1, 1, 1] == pytest.approx(1.0) and fig[0, 0, 1] == pytest.approx(1 / 14)
    local = gallery.normalize(both, eta=1.0, scope="local")
    assert local[0, 1, 1] == pytest.approx(1.0) and local[1, 0, 1] == pytest.approx(0.25)
    # the quantile leaves larger values clamped at 1
    q = gallery.normalize(a, eta=0.5, scope="local")
    assert q.max() == 1.0 and q[0, 0, 1] == pytest.approx(1 / np.quantile([0, 1, 2, 3], 0.5))
    split = gallery.normalize(a, eta=1.0, scope="split", reference=np.array([[[-1.0, 7.0]]]))
    assert split[0, 1, 1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="reference"):
        gallery.normalize(a, scope="split")


# --- run folders ---

def test_interactive_run_is_written_atomically(outputs):
    run = runs.start(None, experiment="unit", dataset="mnist", normal_class="3", seed=1)
    assert run.path.name.startswith(".seed_1.tmp-")
    assert runs.finished_runs(outputs) == []
    with pytest.raises(RuntimeError, match="save_metrics"):
        run.finish()
    run.save_metrics({"auc": 0.5})
    with pytest.raises(ValueError, match="non-finite"):
        run.save_scores([0.1, float("nan")])
    with pytest.raises(ValueError, match="one value per test image"):
        run.save_scores([0.1, 0.2], anomaly=[0, 1, 1])
    run.save_scores([0.1, 0.2], anomaly=[0, 1])
    with pytest.raises(ValueError, match="map 'native'.*non-finite|map 'native'.*not finite"):
        run.save_maps(native=np.array([[[0.0, np.inf]]] * 2))
    assert not (run.path / "maps.npz").exists()
    run.save_maps(native=np.ones((2, 3, 3), np.float64), index=np.array([1]))
    final = run.finish()
    assert final == outputs / "interactive" / "unit" / "mnist" / "3" / "seed_1"
    assert runs.finished_runs(outputs) == [final]
    with np.load(final / "maps.npz") as z:
        assert z["native"].dtype == np.float16 and z["index"].dtype.kind == "i"
    assert json.loads((final / "env.json").read_text())["wall_seconds"] >= 0


def test_nan_metric_is_an_error(outputs):
    run = runs.start(None, experiment="unit", dataset="mnist", normal_class=0, seed=0)
    with pytest.raises(ValueError, match="not finite"):
        run.save_metrics({"auc": float("nan")})


def test_seed_everything_repeats_torch_and_numpy():
    runs.seed_everything(7)
    a = torch.randn(3), np.random.rand(3)
    runs.seed_everything(7)
    b = torch.randn(3), np.random.rand(3)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_gallery_index_takes_both_ends_of_both_groups_and_shares_random_picks():
    scores = np.arange(20.0)
    anomaly = np.array([0] * 10 + [1] * 10)
    idx = runs.gallery_index(scores, anomaly, per_group=2, seed=0)
    assert {0, 1, 8, 9, 10, 11, 18, 19} <= set(idx) and 8 <= len(idx) <= 12
    other = runs.gallery_index(scores[::-1].copy(), anomaly, per_group=2, seed=0)
    random_part = set(idx) - {0, 1, 8, 9, 10, 11, 18, 19}
    assert random_part <= set(other), "runs of other methods must store the same random images"
    with pytest.raises(ValueError, match="20 scores but 3"):
        runs.gallery_index(scores, [0, 1, 0])


# --- params validation ---

def test_notebook_parameters_are_read_with_types():
    p = params.notebook_parameters(TOY_NB)
    assert p["n"] == {"default": 200, "types": (int,), "constraint": None}
    assert p["normal_class"]["types"] == (int, str, list)
    assert params.notebook_parameters(TOY_NB)["seed"]["types"] == (int,)
    assert p["run_dir"]["types"] == ()
    params.check_parameters(TOY_NB, {"shift": 3, "normal_class": "4", "run_dir": "/x"})   # int ok for float
    with pytest.raises(params.ParamsError, match=r"(?s)unknown parameter .lr..*Valid parameters of toy.ipynb: dataset"):
        params.check_parameters(TOY_NB, {"lr": 0.1})
    with pytest.raises(params.ParamsError, match="'fail' = 1 is int, expected bool"):
        params.check_parameters(TOY_NB, {"fail": 1})


# --- tables ---

def test_summary_uses_the_table_of_each_metric_and_the_papers_number():
    from oneclass import tables

    rows = [{"experiment": "geom_fmnist", "dataset": "fmnist", "class": "Trouser", "seed": s, "method": "GEOM",
             "paper": "geom", "table": None, "tables": {"auc": "Table 1", "aupr_in": "Table 2"},
             "deviations": "budget", "report_metrics": "auc,aupr_in", "auc": a, "aupr_in": 0.5,
             "wall_seconds": 10.0, "path": f"/x/{s}"} for s, a in ((0, 0.90), (1, 0.94))]
    frame = __import__("pandas").DataFrame(rows)
    auc = tables.summarize(frame, "auc", tolerance=0.05)
    row = auc[auc["class"] == "Trouser"].iloc[0]
    assert row["table"] == "Table 1" and row["runs"] == 2 and row["mean"] == pytest.approx(0.92)
    assert row["paper_value"] == pytest.approx(0.992)          # GEOM, Table 1, Fashion-MNIST trouser (row 9 of the legend)
    assert row["diff"] == pytest.approx(0.92 - 0.992) and row["flag"] == "outside ±0.05"
    # one class of ten: the mean row compares with the paper's number for that class, not its all-class mean
    mean = auc[auc["class"] == "mean"].iloc[0]
    assert mean["classes"] == 1 and mean["paper_value"] == pytest.approx(0.992)
    both = tables.by_paper_table(frame)
    assert set(both) == {("geom", "Table 1", "auc"), ("geom", "Table 2", "aupr_in")}
    assert tables.deviations(frame, auc) == ["budget"]


def test_mean_row_compares_like_with_like():
    """Table 3 of the novelty paper gives Fashion-MNIST only a mean (94.7): ten classes are compared with it;
    two classes are not (their paper numbers are unknown), instead of falling back to the all-class mean."""
    import pandas as pd

    from oneclass import data, tables

    def frame(classes):
        return pd.DataFrame([{"experiment": "novelty_fmnist", "dataset": "fmnist", "class": c, "seed": 0,
                              "method": "Novelty normalization", "paper": "novelty", "table": "Table 3",
                              "tables": None, "auc": 0.9, "wall_seconds": 1.0, "path": f"/x/{c}"} for c in classes])

    names = list(data.DATASETS["fmnist"].classes)
    full = tables.summarize(frame(names), "auc").set_index("class")
    assert full.loc["mean", "classes"] == 10 and full.loc["mean", "paper_value"] == pytest.approx(0.947)
    assert full.loc["T-shirt/top"].isna()["paper_value"]
    part = tables.summarize(frame(names[:2]), "auc").set_index("class")
    assert part.loc["mean", "classes"] == 2 and np.isnan(part.loc["mean", "paper_value"])
    assert part.loc["mean", "flag"] == ""


def test_table_names_the_vary_axis_and_maps_our_metric_to_the_papers():
    from oneclass import tables

    def row(exp, method, value, cls="bottle"):
        return {"experiment": exp, "dataset": "mvtec", "class": cls, "seed": 0, "method": method, "paper": "fcdd",
                "table": "Table 2", "tables": None, "paper_metrics": {"pixel_auc_pooled": "pixel_auc"},
                "deviations": "a; b\nc", "report_metrics": "pixel_auc_pooled", "pixel_auc_pooled": value,
                "wall_seconds": 1.0, "path": f"/x/{exp}"}

    frame = __import__("pandas").DataFrame([row("x.fraction=0.0", "FCDD", 0.9), row("x.fraction=0.5", "FCDD", 0.5)])
    summary = tables.summarize(frame, "pixel_auc_pooled")
    assert summary["paper_value"].iloc[0] == pytest.approx(0.80)     # Table 2, unsupervised FCDD, bottle
    md = tables.to_markdown(summary, tables.deviations(frame, summary))
    assert "fraction=0.0" in md and "fraction=0.5" in md and md.splitlines()[0].startswith("| variant")
    assert "- a; b" in md and "- c" in md                             # deviations are kept whole
    one = tables.to_markdown(tables.summarize(frame.iloc[:1], "pixel_auc_pooled"))
    assert "variant" not in one


def test_trapezoidal_aupr_by_hand_differs_from_average_precision():
    """Anomalies at 0.8 and 0.35, nominal at 0.4 and 0.1. PR points (recall, precision): (1, 2/3), (0.5, 0.5),
    (0.5, 1), (0, 1): trapezoids 0.5 * (2/3 + 1/2) / 2 + 0.5 = 19/24; average precision 0.5 + 0.5 * 2/3 = 5/6."""
    from oneclass import metrics

    s, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert metrics.aupr_trapezoid(s, y) == pytest.approx(19 / 24)
    assert metrics.aupr_out(s, y) == pytest.approx(5 / 6)
    # nominal positive, ranked by -score: nominal at -0.1 and -0.4, anomalies at -0.35 and -0.8
    # points (1, 2/3), (0.5, 1/2), (0.5, 1), (0, 1) again by symmetry of this case
    assert metrics.aupr_trapezoid(s, y, "nominal") == pytest.approx(19 / 24)
    d = metrics.detection(s, y)
    assert d["aupr_out_trapezoid"] == pytest.approx(19 / 24) and d["aupr_out"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="positive must be"):
        metrics.aupr_trapezoid(s, y, "normal")
