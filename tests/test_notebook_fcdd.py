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
