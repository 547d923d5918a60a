"""Clever Hans models in features / distance / pooling form: hand-checked scores, LRP conservation, metrics."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from oneclass import metrics, tables
from oneclass.methods import cleverhans as ch
from oneclass.methods.base import Scores


def u8(a):
    return torch.tensor(np.asarray(a), dtype=torch.uint8)


# ------------------------------------------------------------------------------------------------ KDE

def test_smin_lies_between_min_and_mean_and_hardens_to_min():
    d = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    for g in (0.1, 1.0, 10.0):
        v = float(ch.smin(d, g))
        assert 1.0 <= v <= 7 / 3
    assert float(ch.smin(d, 200.0)) == pytest.approx(1.0 + math.log(3) / 200, abs=1e-6)


def test_kde_score_and_relevance_by_hand():
    # two training points (0, 0) and (1, 0), test point (1, 1): d = (2, 1)
    train = u8([[[[0, 0]]], [[[255, 0]]]])
    kde = ch.KDE(gamma=1.0).fit(train)
    out = kde.score(u8([[[[255, 255]]]]))
    o = -math.log((math.exp(-2) + math.exp(-1)) / 2)
    assert out.scores[0] == pytest.approx(o)
    p1, p2 = math.exp(-2) / (math.exp(-2) + math.exp(-1)), math.exp(-1) / (math.exp(-2) + math.exp(-1))
    # R_i = o * sum_j p_j (x_i - x_ji)^2 / d_j
    r0 = o * (p1 * 1 / 2 + p2 * 0 / 1)
    r1 = o * (p1 * 1 / 2 + p2 * 1 / 1)
    assert out.maps[0, 0].tolist() == pytest.approx([r0, r1], rel=1e-5)
    assert out.maps.sum() == pytest.approx(o, rel=1e-5)   # the soft-min and distance rules conserve


def test_kde_bandwidth_maximises_validation_likelihood():
    rng = np.random.default_rng(0)
    train = u8(rng.integers(100, 156, size=(60, 1, 2, 2)))
    val = u8(rng.integers(100, 156, size=(30, 1, 2, 2)))
    grid = np.logspace(0, 4, 9)
    kde = ch.KDE(gammas=grid).fit(train, val=val)
    ll = kde.validation_["log_likelihood"]
    assert kde.gamma_ == grid[int(np.argmax(ll))] and 0 < np.argmax(ll) < len(grid) - 1
    with pytest.raises(ValueError, match="validation"):
        ch.KDE().fit(train)


def test_unnormalised_bandwidth_is_the_broadest_and_ranks_by_distance_to_the_mean():
    rng = np.random.default_rng(1)
    train = u8(rng.integers(0, 256, size=(80, 1, 4, 4)))
    val = u8(rng.integers(0, 256, size=(30, 1, 4, 4)))
    test = u8(rng.integers(0, 256, size=(50, 1, 4, 4)))
    grid = np.logspace(-6, 2, 9)
    broad = ch.KDE(gammas=grid, bandwidth="unnormalised").fit(train, val=val)
    # eq. 1 without its constant falls as the kernel stiffens: the grid's broadest bandwidth wins
    assert broad.gamma_ == grid[0] and np.all(np.diff(broad.validation_["unnormalised"]) < 0)
    stiff = ch.KDE(gammas=grid).fit(train, val=val)
    assert stiff.gamma_ > grid[0]
    mean = train.double().div(255).flatten(1).mean(0)
    to_mean = ((test.double().div(255).flatten(1) - mean) ** 2).sum(1).numpy()
    s = np.asarray(broad.score(test, maps=False).scores)
    assert np.array_equal(np.argsort(s), np.argsort(to_mean))        # the limit: distance to the mean
    assert not np.array_equal(np.argsort(np.asarray(stiff.score(test, maps=False).scores)), np.argsort(to_mean))
    with pytest.raises(ValueError, match="likelihood"):
        ch.KDE(bandwidth="broad")


def test_mixed_tuning_puts_every_corruption_in_the_validation_outliers(tmp_path):
    from oneclass import mnist_c
    from test_mnist_c import fake_mnist

    root = fake_mnist(tmp_path, n_train=200, n_test=10)
    same = ch.mnist_c_protocol("stripe", root=root, n_val=30, n_test=5)
    mixed = ch.mnist_c_protocol("stripe", root=root, n_val=30, n_test=5, tuning="mixed")
    assert torch.equal(same.train, mixed.train) and torch.equal(same.test, mixed.test)
    assert torch.equal(same.val[:30], mixed.val[:30])                 # the same held-out clean digits
    clean = mixed.val[:30, 0].numpy()
    assert np.array_equal(same.val[30:, 0].numpy(), mnist_c.corrupt(clean, "stripe")[0])
    for k, c in enumerate(mnist_c.CORRUPTIONS):                      # block k: two of those digits, corruption k
        block = mixed.val[30 + 2 * k:32 + 2 * k, 0].numpy()
        assert not np.array_equal(block, clean[2 * k:2 * k + 2]), c
        if c in ("brightness", "scale", "stripe", "canny_edges"):      # the corruptions without randomness
            assert np.array_equal(block, mnist_c.corrupt(clean[2 * k:2 * k + 2], c)[0]), c
    with pytest.raises(ValueError, match="per_corruption"):
        ch.mnist_c_protocol("stripe", root=root, tuning="same")
    assert ch.check_parameters({"dataset": "mvtec", "deep_tuning": "mixed"})


def test_change_ground_truth_is_the_pixel_change_and_drops_what_was_drawn_over_ink(tmp_path):
    """'change' keeps |corrupted - clean| only: on dotted_line it is smaller than 'change_or_drawn' exactly where the
    line crosses ink it cannot brighten, and on brightness it is no longer the whole image."""
    from test_mnist_c import fake_mnist

    root = fake_mnist(tmp_path, n_train=200, n_test=20)
    for corruption in ("dotted_line", "brightness"):
        drawn = ch.mnist_c_protocol(corruption, root=root, n_val=30, n_test=20)
        change = ch.mnist_c_protocol(corruption, root=root, n_val=30, n_test=20, ground_truth="change")
        assert torch.equal(drawn.test, change.test)
        n = len(change.test) // 2
        diff = (change.test[n:, 0].float() - change.test[:n, 0].float()).abs() / 255
        assert torch.allclose(change.ground_truth[n:], diff) and not change.ground_truth[:n].any()
        assert (change.ground_truth <= drawn.ground_truth + 1e-3).all()    # the cache stores the truth quantised
        assert (change.ground_truth[n:] < drawn.ground_truth[n:] - 0.5).any(), corruption   # drawn over ink
    with pytest.raises(ValueError, match="change_or_drawn"):
        ch.mnist_c_protocol("stripe", root=root, ground_truth="mask")
    assert ch.check_parameters({"dataset": "mvtec", "ground_truth": "change"})


# ------------------------------------------------------------------------------------------------ autoencoder

def test_autoencoder_relevance_is_the_squared_error_and_sums_to_the_score():
    ae = ch.Autoencoder()
    ae._setup()                                                              # device, precision, seed: as fit
    ae._fitted = True
    ae.net_ = nn.Sequential(nn.Flatten(0), nn.Unflatten(0, (1, 1, 1, 2)))   # r(x) = x ...
    ae.net_ = _Const(0.5)                                                    # ... replaced by r(x) = 0.5
    x = u8([[[[0, 255]]], [[[51, 102]]]])
    out = ae.score(x)
    xf = x.float().numpy() / 255
    assert np.allclose(out.maps, ((xf - 0.5) ** 2)[:, 0], atol=1e-6)
    assert np.allclose(out.scores, ((xf - 0.5) ** 2).reshape(2, -1).sum(1), atol=1e-6)


class _Const(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = v

    def forward(self, x):
        return torch.full_like(x, self.v)


def test_autoencoder_keeps_the_best_validation_epoch():
    rng = np.random.default_rng(0)
    x = u8(rng.integers(0, 256, size=(24, 1, 28, 28)) * (rng.random((24, 1, 28, 28)) < 0.2))
    ae = ch.Autoencoder(epochs=3, batch_size=8, lr=3e-2, seed=0).fit(x[:16], val=x[16:])
    errs = [h["val_error"] for h in ae.history_]
    assert ae.best_epoch_ == int(np.argmin(errs)) + 1
    assert float(ae._errors(x[16:]).mean()) == pytest.approx(min(errs), rel=1e-4)


# ------------------------------------------------------------------------------------------------ deep / LRP

def test_lrp_through_a_linear_whitening_by_hand():
    # h = W x, o = ||h||^2, LRP-0 at W: R_i = x_i sum_k W_ki h_k, which sums to o
    w = torch.tensor([[1.0, -2.0], [0.5, 1.0]])
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    net[1].weight.data = w
    x = torch.tensor([[[[0.3, 0.8]]]])
    h = w @ x.flatten()
    r = ch.lrp_squared_norm(net, x)
    expect = x.flatten() * (w.T @ h)
    assert r[0, 0].tolist() == pytest.approx(expect.tolist(), rel=1e-5)
    assert r.sum() == pytest.approx(float((h ** 2).sum()), rel=1e-5)


def test_l2_pool_hands_out_the_quadratic_share():
    net = nn.Sequential(ch.L2Pool(output_size=1), nn.Flatten(), nn.Linear(1, 1, bias=False))
    net[2].weight.data.fill_(1.0)
    # the first layer rule (z^B) is for convolutions only, so the pool is the first hooked layer here
    x = torch.tensor([[[[1.0, 2.0], [0.0, 2.0]]]])
    y = math.sqrt((1 + 4 + 0 + 4) / 4)
    r = ch.lrp_squared_norm(net, x)
    assert r[0].ravel().tolist() == pytest.approx((np.array([1, 4, 0, 4]) / 9 * y ** 2).tolist(), rel=1e-5)


def test_lrp_conserves_the_deep_score_through_the_feature_cnn():
    torch.manual_seed(0)
    feat = ch.FeatureCNN(1, widths=(4, 6, 8))
    lin = nn.Linear(feat.dim, feat.dim, bias=False)
    net = nn.Sequential(feat.features, lin).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        score = (net(x) ** 2).sum(1)
    r = ch.lrp_squared_norm(net, x, gamma=0.25)
    assert r.shape == (3, 28, 28)
    assert r.reshape(3, -1).sum(1) == pytest.approx(score.numpy(), rel=1e-3)


def _fake_labelled(tmp_path):
    from test_mnist_c import fake_mnist
    return fake_mnist(tmp_path, "FashionMNIST", n_train=64, n_test=8)


def test_deep_one_class_whitening_tuned_on_validation_and_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("ONECLASS_DATA", str(_fake_labelled(tmp_path)))
    rng = np.random.default_rng(0)
    x = u8((rng.random((40, 1, 28, 28)) < 0.1) * 255)
    bright = u8(np.full((10, 1, 28, 28), 200))
    val = torch.cat([x[30:], bright])
    deep = ch.DeepOneClass(epochs=1, lams=[1e-6, 1e-2, 1.0], cache_dir=str(tmp_path / "cache")).fit(
        x[:30], val=val, val_anomaly=torch.tensor([0] * 10 + [1] * 10))
    best = max(deep.validation_, key=lambda r: r["auc"])
    assert deep.lam_ == best["lam"]
    out = deep.score(torch.cat([x[:4], bright[:4]]))
    assert out.maps.shape == (8, 28, 28)
    assert out.maps.reshape(8, -1).sum(1) == pytest.approx(out.scores, rel=1e-3)   # conservation end to end
    assert list((tmp_path / "cache").glob("featurecnn-*.pt"))                       # feature CNN cached
    with pytest.raises(ValueError, match="outliers"):
        ch.DeepOneClass(epochs=1, cache_dir=str(tmp_path / "cache")).fit(x[:30], val=x[30:])


# ------------------------------------------------------------------------------------------------ bagging

class _Fixed:
    def __init__(self, scores, maps):
        self.s, self.m = np.asarray(scores, float), np.asarray(maps, float)

    def score(self, images, maps=True):
        n = len(images)
        return Scores(self.s[:n], self.m[:n] if maps else None)


def test_bag_averages_standardised_scores_and_weights_maps():
    a = _Fixed([1.0, 3.0, 5.0], np.ones((3, 2, 2)))
    b = _Fixed([10.0, 10.0, 40.0], np.full((3, 2, 2), 2.0))
    bag = ch.Bag({"a": a, "b": b}).fit(val=torch.zeros(3, 1, 2, 2, dtype=torch.uint8))
    sa, sb = np.std([1, 3, 5]), np.std([10, 10, 40])
    out = bag.score(torch.zeros(3, 1, 2, 2, dtype=torch.uint8))
    expect = ((np.array([1, 3, 5]) - 3) / sa + (np.array([10, 10, 40]) - 20) / sb) / 2
    assert out.scores == pytest.approx(expect)
    assert out.maps[0, 0, 0] == pytest.approx(1 / (2 * sa) + 2 / (2 * sb))


# ------------------------------------------------------------------------------------------------ metrics

def test_clever_hans_score_on_a_hand_made_case():
    anomaly = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])            # perfect detection: AUC 1
    gt = np.zeros((4, 2, 2))
    gt[2, 0, 0] = gt[3, 1, 1] = 1.0
    right = gt.copy()                                   # explanation on the anomaly: accuracy 1, Clever Hans 0
    m = metrics.explanation_metrics(scores, anomaly, right, gt)
    assert m == pytest.approx({"auc": 1.0, "explanation_accuracy": 1.0, "clever_hans": 0.0})
    wrong = np.zeros((4, 2, 2))
    wrong[2, 1, 0] = wrong[3, 0, 1] = 1.0               # right for the wrong reasons: Clever Hans 1
    wrong[2, 0, 0] = wrong[3, 1, 1] = -5.0              # negative relevance on the anomaly is rectified away
    assert metrics.explanation_metrics(scores, anomaly, wrong, gt)["clever_hans"] == pytest.approx(1.0)
    half = right + np.where(wrong > 0, 1.0, 0.0)        # cos 45 degrees
    assert metrics.explanation_metrics(scores, anomaly, half, gt)["explanation_accuracy"] == pytest.approx(2 ** -0.5)


def _run_folder(path, maps_arrays, anomaly, scores):
    path.mkdir(parents=True)
    pd.DataFrame({"index": np.arange(len(scores)), "score": scores, "anomaly": anomaly}).to_parquet(
        path / "scores.parquet")
    np.savez_compressed(path / "maps.npz", **maps_arrays)
    (path / "metrics.json").write_text(json.dumps({"auc": 1.0}))
    return path


def test_run_explanation_metrics_on_gallery_masks_at_another_resolution(tmp_path):
    # an FCDD-like run: native 2x2 maps for all images, 0/1 masks at 4x4 for the gallery rows only
    anomaly = np.array([0, 1, 1, 0])
    native = np.zeros((4, 2, 2), np.float16)
    native[1, 0, 0] = 1.0                     # lands on the mask's top-left quadrant
    native[2, 1, 1] = 1.0                     # bottom-right, but the mask is top-left: accuracy near 0
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, :2, :2] = 1
    run = _run_folder(tmp_path / "run", {"native": native, "masks": masks, "index": np.array([1, 2])},
                      anomaly, np.array([0.0, 1.0, 2.0, 0.5]))
    m = tables.run_explanation_metrics(run, write=True)
    assert m["auc"] == 1.0 and m["explained_images"] == 2
    assert 0.3 < m["explanation_accuracy"] < 0.6 and m["clever_hans"] == pytest.approx(1 - m["explanation_accuracy"])
    assert json.loads((run / "metrics.json").read_text())["clever_hans"] == pytest.approx(m["clever_hans"])


def test_run_without_ground_truth_says_why(tmp_path):
    run = _run_folder(tmp_path / "run", {"native": np.zeros((2, 2, 2), np.float16)}, np.array([0, 1]),
                      np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="ground truth"):
        tables.run_explanation_metrics(run)


def test_bad_images_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="uint8"):
        ch.KDE(gamma=1.0).fit(torch.rand(3, 1, 2, 2))
    with pytest.raises(ValueError, match="choose one of"):
        ch.build("svm")


def test_paper_figures_put_our_means_beside_the_papers_numbers():
    """Figure 2 (AUC per corruption), figure 3 (top-3 Clever Hans scores) and the per-model summary from a
    frame of runs: seeds averaged, percent, and the paper's numbers as printed in its text (KDE glass blur 8.0,
    Deep glass blur 31.1; top-1 Clever Hans: KDE dotted line 31.9, Deep stripe 59.7)."""
    rows = []
    for method, cls, seed, auc, acc in [("kde", "glass_blur", 0, 0.60, 0.50), ("kde", "glass_blur", 1, 0.70, 0.40),
                                        ("kde", "scale", 0, 0.90, 0.20), ("deep", "glass_blur", 0, 0.80, 0.70),
                                        ("deep", "scale", 0, 0.50, 0.45)]:
        rows.append({"experiment": "ch", "dataset": "mnist_c", "class": cls, "method": method, "seed": seed,
                     "auc": auc, "explanation_accuracy": acc, "clever_hans": auc - acc})
    rows.append({**rows[0], "dataset": "mvtec", "class": "wood", "auc": 0.1})     # another dataset: left out
    frame = pd.DataFrame(rows)

    fig2 = tables.clever_hans_figure2(frame)
    assert fig2.loc["glass_blur", ("KDE", "ours")] == pytest.approx(65.0)
    assert fig2.loc["scale", ("KDE", "ours")] == pytest.approx(90.0)
    assert fig2.loc["glass_blur", ("KDE", "paper")] == pytest.approx(8.0)
    assert fig2.loc["glass_blur", ("Deep", "paper")] == pytest.approx(31.1)
    assert ("Auto", "ours") not in fig2 and fig2.loc["glass_blur", ("Auto", "paper")] == pytest.approx(99.4)

    top = tables.clever_hans_top3(frame).set_index(["model", "rank"])
    # KDE: scale 0.70 > glass blur mean(0.10, 0.30) = 0.20; Deep: glass blur 0.10 > scale 0.05
    assert top.loc[("KDE", 1), "ours"] == "scale" and top.loc[("KDE", 1), "ours_score"] == pytest.approx(70.0)
    assert top.loc[("KDE", 2), "ours"] == "glass_blur" and top.loc[("KDE", 2), "ours_score"] == pytest.approx(20.0)
    assert pd.isna(top.loc[("KDE", 3), "ours"])
    assert top.loc[("KDE", 1), "paper"] == "dotted_line" and top.loc[("KDE", 1), "paper_score"] == pytest.approx(31.9)
    assert top.loc[("Deep", 1), "paper"] == "stripe" and top.loc[("Deep", 1), "paper_score"] == pytest.approx(59.7)
    assert pd.isna(top.loc[("Auto", 1), "ours"])

    summary = tables.clever_hans_summary(frame)
    assert list(summary.index) == ["kde", "deep"]
    assert summary.loc["kde", "auc"] == pytest.approx(round((0.6 + 0.7 + 0.9) / 3 * 100, 1))
    assert summary.loc["deep", "clever_hans"] == pytest.approx(7.5) and summary.loc["kde", "classes"] == 2


def test_top3_counts_the_corruptions_shared_with_figure_3():
    # figure 3's KDE top 3: dotted_line, zigzag, spatter; Deep's: stripe, dotted_line, impulse_noise
    rows = [("kde", "zigzag", 0.9), ("kde", "scale", 0.5), ("kde", "spatter", 0.4), ("kde", "fog", 0.1),
            ("deep", "fog", 0.6), ("deep", "scale", 0.5), ("deep", "rotate", 0.4)]
    frame = pd.DataFrame([{"experiment": "ch", "dataset": "mnist_c", "class": c, "method": m, "seed": 0,
                           "auc": 0.9, "explanation_accuracy": 0.9 - s, "clever_hans": s} for m, c, s in rows])
    top = tables.clever_hans_top3(frame).set_index(["model", "rank"])
    assert top.loc[("KDE", 1), "shared"] == 2 and top.loc[("KDE", 3), "shared"] == 2
    assert top.loc[("Deep", 1), "shared"] == 0
