"""GEOM notebooks at their smoke presets on tiny fake data (datagen writers): a complete run folder each."""
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.notebook


def test_one_vs_rest_smoke_fmnist_padded(tmp_path):
    import datagen
    from nbrun import run_smoke

    root = tmp_path / "data"
    datagen.write_fmnist_like(root, n_train=40, n_test=30)
    (r,) = run_smoke("params/geom/fmnist.yaml", tmp_path, data_root=root)
    m = r["metrics"]
    for key in ("auc", "aupr_in", "aupr_out", "auc_simplified"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["n_train"] == 4 and m["train_steps"] == 1 and m["dirichlet_converged"] in (True, False)
    scores = pd.read_parquet(r["path"] / "scores.parquet")
    assert len(scores) == m["n_test"] and set(scores["anomaly"]) == {0, 1}
    np.testing.assert_allclose(scores["score"], -scores["normality_dirichlet"], rtol=1e-6)
    with np.load(r["path"] / "maps.npz") as z:
        assert z["native"].shape == (m["n_test"], 28, 28)        # padded to 32 for the net, cropped back
        assert z["upsampled"].shape == (len(z["index"]), 28, 28)
        assert z["images"].shape[1:] == (1, 28, 28)


def test_intuition_smoke_mnist(tmp_path):
    import datagen
    from nbrun import run_smoke

    root = tmp_path / "data"
    datagen.write_mnist_like(root, n_train=40, n_test=30)
    (r,) = run_smoke("params/geom/intuition.yaml", tmp_path, data_root=root)
    m = r["metrics"]
    assert 0.0 <= m["auc"] <= 1.0 and m["anomaly_class"] == 3
    assert np.isfinite(m["ascent_simplified_after_mean"])
    scores = pd.read_parquet(r["path"] / "scores.parquet")
    assert set(scores["label"]) == {3, 8} and (scores["anomaly"] == (scores["label"] == 3)).all()
