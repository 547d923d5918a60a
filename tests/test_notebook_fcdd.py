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


def _write_tree(root, split: bool):
    """A class-folder tree of one's own: RGB and grey PNG/JPEG images of several sizes, nested subfolders; with
    ``split`` a train/test layout whose class 'Birds' is test-only."""
    from PIL import Image

    rng = np.random.default_rng(0)
    counts = {"cats": 12, "dogs": 10, "Birds": 5}
    for cls, n in counts.items():
        for i in range(n):
            part = ("test" if cls == "Birds" or i % 3 == 0 else "train") if split else ""
            folder = root / part / cls / ("deeper" if i % 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            h, w = int(rng.integers(20, 70)), int(rng.integers(20, 70))
            mode = "L" if i % 4 == 0 else "RGB"
            pixels = rng.integers(0, 255, (h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels, mode).save(folder / f"{i}.{'jpg' if i % 5 == 0 else 'png'}")
    return counts


def test_a_class_folder_tree_of_ones_own(tmp_path):
    """params/custom/classes.yaml with --set dataset=PATH: one run per class that has training images (the
    test-only class is anomalies only), run folders named after the tree; each run's test set is exactly the tree's
    test files with anomaly = 1 outside the nominal class, and the saved model rescores them identically."""
    from nbrun import run_smoke

    from oneclass import data, predict

    tree = tmp_path / "somewhere" / "My Pets"
    counts = _write_tree(tree, split=True)
    runs = run_smoke("params/custom/classes.yaml", tmp_path, dataset=str(tree), test_limit=None)
    assert sorted(r["path"].parent.name for r in runs) == ["cats", "dogs"]
    assert {r["path"].parents[1].name for r in runs} == {"my-pets"}
    test_files = sorted(str(p) for p in (tree / "test").rglob("*.*"))
    n_test = {c: sum(1 for p in test_files if f"/test/{c}/" in p) for c in counts}
    assert n_test == {"cats": 4, "dogs": 4, "Birds": 5}
    for r in runs:
        cls = r["path"].parent.name
        scores = pd.read_parquet(r["path"] / "scores.parquet").sort_values("index")
        assert len(scores) == len(test_files) and int(scores["anomaly"].sum()) == len(test_files) - n_test[cls]
        assert r["metrics"]["network"] == "fcdd_32"              # like: cifar10 -> the 32 px set-up
    run = next(r for r in runs if r["path"].parent.name == "cats")
    test = data.one_vs_rest(str(tree), "cats", size=32, channels=3).test
    table, _ = predict.predict(run["path"], test.paths, tmp_path / "predicted", progress=False)
    stored = pd.read_parquet(run["path"] / "scores.parquet").sort_values("index")
    assert np.allclose(table["score"], stored["score"], rtol=1e-6, atol=0)
    # in batches of 3 (images decoded once), with one contrast over all images: the same scores, every overlay
    again, _ = predict.predict(run["path"], test.paths, tmp_path / "figure", batch_size=3, progress=False,
                               scope="figure")
    assert np.allclose(again["score"], table["score"], rtol=1e-6, atol=0)
    assert sorted(p.name for p in (tmp_path / "figure").glob("*_heatmap.png")) == sorted(again["overlay"])
    assert len(again) == len(test)


def test_a_tree_without_split_folders_and_bad_trees(tmp_path):
    """Without train/ and test/, every 5th file per class (natural filename order) is a test image; a missing
    tree, a tree without class folders and a path dataset without `like` are refused before any run."""
    from oneclass import data, params

    tree = tmp_path / "flat"
    _write_tree(tree, split=False)
    split = data.one_vs_rest(str(tree), "dogs", size=28, channels=1)
    assert data.classes(str(tree)) == ["Birds", "cats", "dogs"]
    assert len(split.train) == 8 and split.train.images.shape[1:] == (1, 28, 28)   # 10 dogs, 2 of them test
    assert len(split.test) == 1 + 2 + 2 and int(split.test.anomaly.sum()) == 3
    assert [p.rsplit("/", 1)[1] for p in split.test.paths if "/dogs/" in p] == ["4.png", "9.png"]   # natural order across subfolders
    exp = params.load("params/custom/classes.yaml")
    with pytest.raises(params.ParamsError, match="class-folder tree .* has no images"):
        params.expand(exp, "smoke", overrides={"dataset": str(tmp_path / "nothing")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(params.ParamsError, match="<class>"):
        params.expand(exp, "smoke", overrides={"dataset": str(tmp_path / "empty")})
    with pytest.raises(params.ParamsError, match="set like to the paper set-up"):
        params.expand(exp, "smoke", overrides={"dataset": str(tree), "like": None})
    with pytest.raises(params.ParamsError, match="give its path"):
        params.expand(exp, "smoke", overrides={"dataset": "my_tree"})


def test_fmnist_normalisations_reach_the_saved_model(tmp_path, data_root):
    """params/fcdd/fmnist_normalize.yaml: each run trains with the normalisation it names, and its saved model
    normalises that way (the authors' l1 contrast + min-max maps the nominal training images into [0, 1])."""
    from nbrun import run_smoke

    from oneclass.methods import fcdd

    results = run_smoke("params/fcdd/fmnist_normalize.yaml", tmp_path, data_root=data_root)
    models = {r["params"]["parameters"]["normalize"]: fcdd.FCDD.load(r["path"] / "model.pt") for r in results}
    assert set(models) == {"meanstd", "lcn_minmax"}
    assert models["lcn_minmax"].pipeline_.lcn and not models["meanstd"].pipeline_.lcn
    assert models["lcn_minmax"].normalize == "lcn_minmax"
    aucs = {r["params"]["parameters"]["normalize"]: r["metrics"]["auc"] for r in results}
    assert aucs["meanstd"] != aucs["lcn_minmax"]
