"""fcdd_mvtec.ipynb at its smoke presets through the batch runner, on a generated MVTec-layout category with
masks (the real bottle category here has none)."""
from pathlib import Path

import numpy as np
import pytest

from datagen import write_mvtec_like
from nbrun import run_smoke

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mvtec_like(root, category="bottle", size=(64, 64), n_train=10, n_good_test=4,
                     defects={"broken_large": 4, "contamination": 4})
    return root


def _pixel_aucs_recomputed(run, root, monkeypatch):
    """Both pixel AUCs of a finished run recomputed from its saved model: the test split loaded again, scored,
    the maps resized to the masks' 64 px by torch, and the AUCs taken by scikit-learn over all pixels (pooled)
    and per anomalous image (mean)."""
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score

    from oneclass import data
    from oneclass.methods import base, fcdd

    monkeypatch.setenv("ONECLASS_DATA", str(root))
    p = run["params"]["parameters"]
    _, _, test, _ = fcdd.mvtec_split(p["normal_class"], p["mode"], p["per_defect"], p["seed"], size=p["load_size"])
    test = data.subsample(test, p["test_limit"], p["seed"])
    det = base.Detector.load(run["path"] / "model.pt")
    maps = torch.as_tensor(det.score(test).maps, dtype=torch.float32)
    full = F.interpolate(maps[:, None], size=(64, 64), mode="bilinear", align_corners=False,
                         antialias=True)[:, 0].numpy()
    masks = data.load_mvtec_masks(test, 64)
    anomalous = [i for i in range(len(masks)) if masks[i].any()]
    return (roc_auc_score(masks.ravel().astype(int), full.ravel()),
            np.mean([roc_auc_score(masks[i].ravel().astype(int), full[i].ravel()) for i in anomalous]))


def _predict_reproduces_the_run(run, root, monkeypatch, tmp_path):
    """python -m oneclass.predict on the run's own test images (as files) gives the run's own scores, and writes
    one overlay per image; a folder of images works the same way."""
    import pandas as pd

    from oneclass import data, predict
    from oneclass.methods import fcdd

    monkeypatch.setenv("ONECLASS_DATA", str(root))
    p = run["params"]["parameters"]
    _, _, test, _ = fcdd.mvtec_split(p["normal_class"], p["mode"], p["per_defect"], p["seed"], size=p["load_size"])
    test = data.subsample(test, p["test_limit"], p["seed"])
    table, maps = predict.predict(run["path"], test.paths, tmp_path / "predicted", progress=False)
    stored = pd.read_parquet(run["path"] / "scores.parquet").sort_values("index")
    assert np.allclose(table["score"], stored["score"], rtol=1e-6, atol=0), "predict must reproduce the run's scores"
    assert maps.shape == (len(test), 224, 224)          # the detector's maps at its input size (crop of 240)
    written = pd.read_csv(tmp_path / "predicted" / "scores.csv")
    assert written["path"].tolist() == [str(x) for x in test.paths]
    assert sorted(p.name for p in (tmp_path / "predicted").glob("*_heatmap.png")) == sorted(written["overlay"])
    assert len(written) == len(test)
    assert predict.main([str(run["path"]), str(Path(test.paths[0]).parent), "--out", str(tmp_path / "cli")]) == 0
    assert len(pd.read_csv(tmp_path / "cli" / "scores.csv")) == len(list(Path(test.paths[0]).parent.glob("*.png")))
    with pytest.raises(FileNotFoundError, match="no model.pt"):
        predict.predict(tmp_path, test.paths)


def test_unsupervised_fcdd_hsc_ae(root, tmp_path, monkeypatch):
    runs = run_smoke("params/fcdd/mvtec.yaml", tmp_path, data_root=root)
    assert sorted(r["params"]["parameters"]["method"] for r in runs) == ["ae", "fcdd", "hsc"]
    for r in runs:
        m = r["metrics"]
        pooled, per_image = _pixel_aucs_recomputed(r, root, monkeypatch)
        assert m["pixel_auc_pooled"] == pytest.approx(pooled, abs=1e-6), r["path"]
        assert m["pixel_auc_per_image"] == pytest.approx(per_image, abs=1e-6), r["path"]
        assert m["gt_size"] == 64 and m["labelled_anomalies"] == 0 and m["sigma"] == 12.0
        z = np.load(r["path"] / "maps.npz")
        assert z["upsampled"].shape[1:] == (240, 240) and z["masks"].shape == z["upsampled"].shape
        assert z["masks"].max() == 1 and z["images"].shape[1:] == (3, 240, 240)
        if r["params"]["parameters"]["method"] == "fcdd":
            assert m["receptive_field"] == 52 and m["jump"] == 8 and z["native"].shape[1:] == (28, 28)
    _predict_reproduces_the_run(next(r for r in runs if r["params"]["parameters"]["method"] == "fcdd"), root,
                                monkeypatch, tmp_path)
    from oneclass import params, tables as tables_mod
    tables = tables_mod.build_experiment(params.load("params/fcdd/mvtec.yaml"), "smoke", tmp_path / "outputs")
    assert (tables / "pixel_auc_pooled.csv").exists() and (tables / "auc.csv").exists()
    assert (tables / "methods_bottle.png").exists()          # figure 16: a heatmap row per method + ground truth
    import pandas as pd
    t = pd.read_csv(tables / "pixel_auc_pooled.csv")
    fcdd_row = t[(t["method"] == "FCDD") & (t["class"] == "bottle")]
    assert fcdd_row["paper_value"].iloc[0] == pytest.approx(0.80)    # Table 2, unsupervised FCDD, bottle


def test_semi_supervised_moves_one_anomaly_per_defect(root, tmp_path, monkeypatch):
    (run,) = run_smoke("params/fcdd/mvtec_semi.yaml", tmp_path, data_root=root)
    m = run["metrics"]
    assert m["labelled_anomalies"] == 2
    assert m["pixel_auc_pooled"] == pytest.approx(_pixel_aucs_recomputed(run, root, monkeypatch)[0], abs=1e-6)
    assert m["sigma"] == 10.0      # no confetti: appendix A's default for the receptive field 52, not 12
    import pandas as pd
    scores = pd.read_parquet(run["path"] / "scores.parquet")
    assert len(scores) == 4 + 8 - 2 and int(scores["anomaly"].sum()) == 6


def test_a_category_folder_of_ones_own_with_images_and_masks_of_several_sizes(tmp_path):
    """params/custom/example.yaml on a folder outside any data root: grayscale and RGB images of three sizes with
    masks of the matching sizes; the pixel metrics compare each map with its own mask at the mask's size, and the
    saved model scores a folder of new images."""
    import pandas as pd

    from oneclass import predict

    folder = tmp_path / "elsewhere" / "widgets"
    write_mvtec_like(tmp_path, folder=folder, sizes=[(64, 48), (80, 60), (56, 72)], n_train=8, n_good_test=4,
                     defects={"scratch": 3, "dent": 2})
    (run,) = run_smoke("params/custom/example.yaml", tmp_path, classes=[str(folder)], gt_size=None)
    m = run["metrics"]
    assert run["path"].parent.name == "widgets" and m["gt_size"] == 80        # the largest mask, not one size
    assert 0 <= m["pixel_auc_pooled"] <= 1 and 0 <= m["aupro"] <= 1 and m["anomalous_regions"] == 5
    table, _ = predict.predict(run["path"], folder / "test" / "dent", tmp_path / "new", progress=False)
    assert len(table) == 2 and len(pd.read_csv(tmp_path / "new" / "scores.csv")) == 2
