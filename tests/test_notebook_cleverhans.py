"""The Clever Hans notebook at its smoke preset, through the batch runner, on tiny generated data."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oneclass import tables
from nbrun import run_smoke
from test_mnist_c import fake_mnist

pytestmark = pytest.mark.notebook


def _check(run, n_test):
    m = run["metrics"]          # auc: recomputed from scores.parquet by nbrun.check_run_folder
    z = np.load(run["path"] / "maps.npz")
    scores = pd.read_parquet(run["path"] / "scores.parquet")
    # explanation accuracy by hand: cosine of max(0, R) with the ground truth, averaged over anomalous images
    r = np.maximum(z["native"].astype(np.float64), 0).reshape(n_test, -1)
    g = z["ground_truth"].astype(np.float64).reshape(n_test, -1)
    cos = [(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)) if a.any() and b.any() else 0.0
           for a, b, y in zip(r, g, scores["anomaly"]) if y == 1]
    assert m["explanation_accuracy"] == pytest.approx(np.mean(cos), abs=2e-3)        # maps stored as float16
    assert m["clever_hans"] == pytest.approx(m["auc"] - m["explanation_accuracy"])
    for name in ("kde", "ae", "deep"):
        assert f"{name}_fit_seconds" in m
    if run["params"]["parameters"].get("bandwidth") == "likelihood":
        assert m["kde_gamma_index"] > 0
    assert z["native"].shape[0] == n_test and z["ground_truth"].shape == z["native"].shape
    # figure 4 draws from the saved gallery: the most anomalous anomalous images are all in it
    top = scores.index[scores["anomaly"] == 1][np.argsort(-scores["score"][scores["anomaly"] == 1].to_numpy())]
    shown = min(run["params"]["parameters"]["gallery_size"], len(top))
    assert set(top[:shown]) <= set(z["index"].tolist())
    again = tables.run_explanation_metrics(run["path"])
    assert again["explanation_accuracy"] == pytest.approx(m["explanation_accuracy"], abs=2e-3)  # float16 maps


def test_mnist_c_smoke(tmp_path):
    root = fake_mnist(tmp_path / "data", n_train=300, n_test=40)
    fake_mnist(root, "FashionMNIST", n_train=200, n_test=10)
    runs = run_smoke("params/cleverhans/mnist_c.yaml", tmp_path, data_root=root)
    assert len(runs) == 1
    assert runs[0]["params"]["parameters"]["model"] == "bag"
    _check(runs[0], 40)   # 20 digits, clean and corrupted


def test_mnist_c_readings_smoke(tmp_path):
    # the unnormalised bandwidth picks the grid's broadest kernel; the deep model tunes on all corruptions mixed
    root = fake_mnist(tmp_path / "data", n_train=300, n_test=40)
    fake_mnist(root, "FashionMNIST", n_train=200, n_test=10)
    runs = run_smoke("params/cleverhans/mnist_c_readings.yaml", tmp_path, data_root=root)
    assert len(runs) == 1
    p = runs[0]["params"]["parameters"]
    assert (p["bandwidth"], p["deep_tuning"], p["anomaly_class"]) == ("unnormalised", "mixed", "zigzag")
    assert runs[0]["metrics"]["kde_gamma_index"] == 0                        # the broadest bandwidth on the grid
    _check(runs[0], 40)
    assert len(list((root / "mnist_c").glob("*/train_images.npy"))) == 15   # every corruption in the validation


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def fake_mvtec(root, category="bottle", size=32, seed=0):
    """A category in MVTec-AD layout with masks: grey discs; defects are bright squares."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2)
    base = lambda: (disc[..., None] * rng.integers(90, 110, size=3) + rng.integers(0, 8, (size, size, 3))).astype(np.uint8)
    folder = root / "mvtec_anomaly_detection" / category
    for i in range(16):
        _png(folder / "train" / "good" / f"{i:03d}.png", base())
    for i in range(6):
        _png(folder / "test" / "good" / f"{i:03d}.png", base())
        img, mask = base(), np.zeros((size, size), np.uint8)
        r, c = rng.integers(4, size - 10, size=2)
        img[r:r + 6, c:c + 6] = 250
        mask[r:r + 6, c:c + 6] = 255
        _png(folder / "test" / "spot" / f"{i:03d}.png", img)
        _png(folder / "ground_truth" / "spot" / f"{i:03d}_mask.png", mask)
    return root


def test_mvtec_smoke_with_masks(tmp_path):
    root = fake_mvtec(tmp_path / "data")
    fake_mnist(root, "FashionMNIST", n_train=100, n_test=10)
    runs = run_smoke("params/cleverhans/mvtec.yaml", tmp_path, data_root=root)
    assert len(runs) == 1
    _check(runs[0], 11)   # 12 test images minus round(20% of 6) defects held out for validation
