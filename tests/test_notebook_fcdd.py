"""notebooks/fcdd_one_vs_rest.ipynb at the smoke preset of params/fcdd/fmnist.yaml: FCDD, HSC and AE each write
a complete run folder (sliced real Fashion-MNIST and Tiny-ImageNet OE)."""

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.notebook]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Real data where ../shared/data exists, else generated data in the same layouts (clean checkout)."""
    import datagen

    return datagen.real_or_generated_root(tmp_path_factory)[0]


def test_fmnist_smoke_all_three_methods(tmp_path, data_root):
    from nbrun import run_smoke

    results = run_smoke("params/fcdd/fmnist.yaml", tmp_path, data_root=data_root)
    by_method = {r["params"].get("parameters", r["params"]).get("method"): r for r in results}
    assert set(by_method) == {"fcdd", "hsc", "ae"}, [r["path"] for r in results]
    for method, r in by_method.items():
        m = r["metrics"]
        assert m["train_seconds"] > 0      # auc, aupr: recomputed from scores.parquet by nbrun.check_run_folder
        scores = pd.read_parquet(r["path"] / "scores.parquet")
        assert len(scores) == 300 and set(scores["anomaly"]) == {0, 1}
        with np.load(r["path"] / "maps.npz") as z:
            assert z["upsampled"].shape[1:] == (28, 28)
            assert z["images"].shape[1:] == (1, 28, 28) and len(z["index"]) == len(z["upsampled"])
            native = z["native"]
        assert native.shape == ((300, 7, 7) if method == "fcdd" else (300, 28, 28))
    assert by_method["fcdd"]["metrics"]["receptive_field"] == 16 and by_method["fcdd"]["metrics"]["jump"] == 4


def test_learning_curve_with_the_training_task_probe(tmp_path, data_root):
    """monitor_every on: curve.parquet with a point before training, every half epoch and at the end (the
    finished model's, equal to the run's AUC over the whole test set: nbrun.check_run_folder), the training-task
    probe's AUC beside it (nominal training images against 16 Tiny-ImageNet images held out of the OE pool), the
    monitor's seconds in metrics.json, and a curves figure in the batch's tables."""
    from nbrun import run_smoke

    (r,) = run_smoke("params/fcdd/fmnist.yaml", tmp_path, data_root=data_root, method="fcdd", epochs=2,
                     monitor_every=0.5, monitor_size=None, outlier_limit=32, outlier_holdout=16)
    curve = pd.read_parquet(r["path"] / "curve.parquet")
    steps = -(-256 // 128)                                # 256 training images, batch 128
    assert curve["step"].tolist() == [0, 1, 2, 3, 4] and steps == 2
    assert curve["epoch"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert curve["subset"].iloc[0] == 300 and curve["eval_seconds"].iloc[0] > 0
    assert np.isfinite(curve["auc_train_vs_heldout_oe"]).all()
    assert "OE source: Outliers(32 images" in (r["path"] / "run.ipynb").read_text()
    assert r["metrics"]["monitor_seconds"] > 0
    assert "learning curve: 5 points on 300 test images" in (r["path"] / "run.ipynb").read_text()
    from oneclass import params, tables
    folder = tables.build_experiment(params.load("params/fcdd/fmnist.yaml"), "smoke", tmp_path / "outputs")
    assert (folder / "curves.png").exists() and len(pd.read_csv(folder / "curves.csv")) == 5
