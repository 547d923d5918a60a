"""The competitors notebook at its smoke presets on tiny fake data (datagen writers): a complete run folder for
every method, the OC-SVM runs marked as oracle (hindsight) or not (held-out)."""
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.notebook


def test_every_method_smoke_fmnist_padded(tmp_path):
    import datagen
    from nbrun import printed, run_smoke

    root = tmp_path / "data"
    datagen.write_fmnist_like(root, n_train=40, n_test=30)
    runs = {r["params"]["parameters"]["method"]: r for r in run_smoke("params/competitors/fmnist.yaml", tmp_path,
                                                                      data_root=root)}
    assert sorted(runs) == sorted(["deep_svdd", "raw_ocsvm", "cae_ocsvm", "dsebm", "dagmm", "adgan"])
    for method, r in runs.items():
        m = r["metrics"]       # auc and auprs: recomputed from scores.parquet by nbrun.check_run_folder
        assert {"auc", "aupr_in", "aupr_out"} <= set(m) and m["n_train"] == 4, method
        scores = pd.read_parquet(r["path"] / "scores.parquet")
        assert len(scores) == m["n_test"] and np.isfinite(scores["score"]).all(), method
        # both AUPR definitions printed beside each other, each the value the run saved
        shown = printed(r["path"] / "run.ipynb")
        for metric in ("aupr_in", "aupr_out"):
            assert f"{metric:9s} ours {m[metric]:.3f} / trapezoid {m[metric + '_trapezoid']:.3f}" in shown, method
    assert runs["adgan"]["metrics"]["n_test"] == 10 and runs["deep_svdd"]["metrics"]["n_test"] == 30
    for method in ("raw_ocsvm", "cae_ocsvm"):
        m = runs[method]["metrics"]
        assert m["oracle"] is True and m["nu"] in [round(0.1 * i, 1) for i in range(1, 10)]
    for method in ("deep_svdd", "dsebm"):                 # gradient maps, padded to 32 and cropped back to 28
        with np.load(runs[method]["path"] / "maps.npz") as z:
            assert z["native"].shape == (30, 28, 28) and z["upsampled"].shape == (len(z["index"]), 28, 28)


def test_heldout_ocsvm_smoke_cifar10(tmp_path):
    import datagen
    from nbrun import run_smoke

    root = tmp_path / "data"
    datagen.write_cifar10_like(root, n_per_batch=20, n_test=30)
    results = run_smoke("params/competitors/cifar10_heldout.yaml", tmp_path, data_root=root)
    assert sorted(r["params"]["parameters"]["method"] for r in results) == ["cae_ocsvm", "raw_ocsvm"]
    for r in results:
        assert r["metrics"]["oracle"] is False and "auc" in r["metrics"]
        assert r["params"]["parameters"]["selection"] == "heldout"
