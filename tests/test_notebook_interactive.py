"""Every experiment notebook run as a user runs it in JupyterLab (no run_dir, first run of its smoke preset, tiny
generated data): it must leave exactly one finished run folder under outputs/interactive/ that records every
parameter (nbrun.run_interactive checks both), and its model.pt must score the gallery images to the scores the
run stored."""
import numpy as np
import pandas as pd
import pytest

import datagen
from nbrun import run_interactive
from test_mnist_c import fake_mnist

pytestmark = pytest.mark.notebook


def _fmnist_with_oe(root):
    datagen.write_fmnist_like(root, n_train=40, n_test=30)
    datagen.write_tiny_imagenet_like(root, n_train=4)


def _mvtec(root):
    datagen.write_mvtec_like(root, category="bottle", size=(64, 64), n_train=10, n_good_test=4,
                             defects={"broken_large": 4, "contamination": 4})


def _cifar_with_oe(root):
    datagen.write_cifar10_like(root, n_per_batch=20, n_test=40)
    datagen.write_tiny_imagenet_like(root, n_train=4)


def _mnist_and_fmnist(root):
    fake_mnist(root, n_train=300, n_test=40)
    fake_mnist(root, "FashionMNIST", n_train=200, n_test=10)


CASES = {   # params file -> (data writer, does the run store model.pt)
    "params/fcdd/fmnist.yaml": (_fmnist_with_oe, True),      # (outlier_limit: the fake corpus has 12 images)
    "params/fcdd/mvtec.yaml": (_mvtec, True),
    "params/fcdd/watermark.yaml": (_cifar_with_oe, True),
    "params/geom/fmnist.yaml": (lambda r: datagen.write_fmnist_like(r, n_train=40, n_test=30), True),
    "params/geom/intuition.yaml": (lambda r: datagen.write_mnist_like(r, n_train=40, n_test=30), True),
    "params/novelty/mnist.yaml": (lambda r: datagen.write_mnist_like(r, n_train=40, n_test=30), True),
    "params/competitors/fmnist.yaml": (lambda r: datagen.write_fmnist_like(r, n_train=40, n_test=30), True),
    "params/cleverhans/mnist_c.yaml": (_mnist_and_fmnist, True),
    "params/geom/ood.yaml": (_cifar_with_oe, True),
}


def test_every_experiment_notebook_has_an_interactive_case(repo):
    from oneclass import params

    covered = {params.load(repo / f).notebook.name for f in CASES}
    experiments = {p.name for p in (repo / "notebooks").glob("*.ipynb")} - {"tables.ipynb", "heatmap_explorer.ipynb"}
    assert covered == experiments


@pytest.mark.parametrize("params_file", sorted(CASES))
def test_interactive_run_finishes_its_folder_and_its_model_reloads(params_file, tmp_path):
    from oneclass.methods.base import Detector

    write, saves_model = CASES[params_file]
    root = tmp_path / "data"
    write(root)
    overrides = {"outlier_limit": 12} if params_file == "params/fcdd/fmnist.yaml" else {}
    run = run_interactive(params_file, tmp_path, data_root=root, **overrides)
    path = run["path"]
    assert "interactive" in path.parts and path.name == f"seed_{run['params']['seed']}"
    assert (path / "model.pt").exists() == saves_model
    if not saves_model:
        return
    det = Detector.load(path / "model.pt")
    assert run["env"]["precision"] == det.precision_ and run["env"]["device"] == str(det.device_)
    if not (path / "maps.npz").exists():     # no heatmaps (section 5.5): finite scores, a model that reloads fitted
        scores = pd.read_parquet(path / "scores.parquet")
        assert np.isfinite(scores["score"]).all() and det.is_fitted()
        return
    with np.load(path / "maps.npz") as z:
        images, index = (z["images"], z["index"]) if "images" in z.files else (None, None)
    if images is None:
        return
    stored = pd.read_parquet(path / "scores.parquet").set_index("index").loc[index, "score"].to_numpy()
    np.testing.assert_allclose(det.score(images, maps=False).scores, stored, rtol=1e-4, atol=1e-6)
