"""notebooks/fcdd_one_vs_rest.ipynb at the smoke preset of params/fcdd/fmnist.yaml: FCDD, HSC and AE each write
a complete run folder (sliced real Fashion-MNIST and Tiny-ImageNet OE)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED = Path(os.environ.get("ONECLASS_SHARED_DATA", "/work/shared/data"))

pytestmark = [pytest.mark.notebook, pytest.mark.realdata]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    try:
        import datagen
    except ImportError:
        datagen = None
    if datagen is not None and hasattr(datagen, "materialized_root"):
        root = datagen.materialized_root()
        if root is None:
            pytest.skip("real data (../shared/data) not available")
        return root
    if not (SHARED / "materialize.py").exists():
        pytest.skip(f"real data not found at {SHARED}")
    root = tmp_path_factory.mktemp("ocdata")
    subprocess.run([sys.executable, str(SHARED / "materialize.py"), str(root), "fashion_mnist", "tiny_imagenet"],
                   check=True, capture_output=True)
    return root


def test_fmnist_smoke_all_three_methods(tmp_path, data_root):
    from nbrun import run_smoke

    results = run_smoke("params/fcdd/fmnist.yaml", tmp_path, data_root=data_root)
    by_method = {r["params"].get("parameters", r["params"]).get("method"): r for r in results}
    assert set(by_method) == {"fcdd", "hsc", "ae"}, [r["path"] for r in results]
    for method, r in by_method.items():
        m = r["metrics"]
        assert 0.0 <= m["auc"] <= 1.0 and m["train_seconds"] > 0
        scores = pd.read_parquet(r["path"] / "scores.parquet")
        assert len(scores) == 300 and set(scores["anomaly"]) == {0, 1}
        with np.load(r["path"] / "maps.npz") as z:
            assert z["upsampled"].shape[1:] == (28, 28)
            assert z["images"].shape[1:] == (1, 28, 28) and len(z["index"]) == len(z["upsampled"])
            native = z["native"]
        assert native.shape == ((300, 7, 7) if method == "fcdd" else (300, 28, 28))
    assert by_method["fcdd"]["metrics"]["receptive_field"] == 16 and by_method["fcdd"]["metrics"]["jump"] == 4
