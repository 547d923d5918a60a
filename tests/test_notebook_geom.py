"""GEOM notebooks at their smoke presets on tiny fake data (datagen writers): a complete run folder each."""
import numpy as np
import pandas as pd
import pytest

from nbrun import _rank_auc

pytestmark = pytest.mark.notebook


def test_one_vs_rest_smoke_fmnist_padded(tmp_path):
    import datagen
    from nbrun import run_smoke

    root = tmp_path / "data"
    datagen.write_fmnist_like(root, n_train=40, n_test=30)
    (r,) = run_smoke("params/geom/fmnist.yaml", tmp_path, data_root=root)
    m = r["metrics"]      # auc and auprs: recomputed from scores.parquet by nbrun.check_run_folder
    assert m["n_train"] == 4 and m["train_steps"] == 1
    # the notebook tells the reader what metrics.json records (4 training images may leave Minka unconverged)
    assert f"Dirichlet fits converged: {m['dirichlet_converged']} " in (r["path"] / "run.ipynb").read_text()
    # 28-px grey images: a turn moves the block grid (not measured) and there are no colour planes: None, said so
    assert m["cue_transpose"] is None and m["cue_shift"] is None
    assert "luminance lattice None (off the grid, content alone: None)" in (r["path"] / "run.ipynb").read_text()
    scores = pd.read_parquet(r["path"] / "scores.parquet")
    assert len(scores) == m["n_test"] and set(scores["anomaly"]) == {0, 1}
    np.testing.assert_allclose(scores["score"], -scores["normality_dirichlet"], rtol=1e-6)
    # the simplified score's AUROC, recomputed from its own column (anomalies positive, so -normality)
    assert m["auc_simplified"] == pytest.approx(_rank_auc(-scores["normality_simplified"], scores["anomaly"]),
                                                abs=1e-9)
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
    assert m["anomaly_class"] == 3       # auc: recomputed from scores.parquet by nbrun.check_run_folder
    assert np.isfinite(m["ascent_simplified_after_mean"])
    scores = pd.read_parquet(r["path"] / "scores.parquet")
    assert set(scores["label"]) == {3, 8} and (scores["anomaly"] == (scores["label"] == 3)).all()
