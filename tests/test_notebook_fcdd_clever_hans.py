"""fcdd_clever_hans.ipynb at its smoke presets: section 4.3 on generated PASCAL VOC / ImageNet-1k-val layouts,
and the watermark probe on generated CIFAR-10 / Tiny-ImageNet."""
import numpy as np
import pytest

import datagen
from nbrun import run_smoke

pytestmark = pytest.mark.notebook


def _masses_recomputed(run, root, monkeypatch, side, width):
    """The heatmap mass in the lower-left box (``width`` of the side wide, a third of that high) on described
    and other test images, recomputed from the run's saved model: test set loaded again, scored, the box built
    here by hand and the mass taken as sum inside / sum over the map."""
    from oneclass.methods import base, fcdd

    monkeypatch.setenv("ONECLASS_DATA", str(root))
    p = run["params"]["parameters"]
    setup = fcdd.clever_hans.horse_setup(p["dataset"], p["normal_class"], p["seed"], p["train_limit"],
                                         p["test_limit"], p["watermark_fraction"], p["watermark_width"])
    w = round(side * width)
    box = np.zeros((side, side), bool)
    box[side - round(w / 3):, :w] = True
    assert (setup.region == box).all(), "the watermark region is not the lower-left box"
    maps = np.asarray(base.Detector.load(run["path"] / "model.pt").score(setup.test).maps, dtype=np.float64)
    mass = (maps * box).sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    described = setup.test.anomaly.numpy() == 0
    return mass[described].mean(), mass[~described].mean()


def test_voc_horses_against_imagenet(tmp_path, monkeypatch):
    root = tmp_path / "data"
    datagen.write_voc_like(root, n=12, horse=(0, 1, 2, 3, 4, 5))
    datagen.write_imagenet1k_val_like(root, n=3)
    (run,) = run_smoke("params/fcdd/voc.yaml", tmp_path, data_root=root)
    m = run["metrics"]
    assert m["watermarked_training_images"] == 0 and m["positive"] == "described"   # auc: nbrun.check_run_folder
    # the lower-left region is 40% of the side wide and a third of that high
    assert m["area_share"] == pytest.approx(round(224 * 0.4) * round(round(224 * 0.4) / 3) / 224 ** 2)
    described, other = _masses_recomputed(run, root, monkeypatch, 224, 0.4)
    assert m["mass_described"] == pytest.approx(described, abs=1e-6)
    assert m["mass_other"] == pytest.approx(other, abs=1e-6)
    assert "auc_watermarked_others" not in m
    z = np.load(run["path"] / "maps.npz")
    assert z["upsampled"].shape[1:] == (224, 224) and z["native"].shape == (6, 28, 28)
    assert run["params"]["parameters"]["swap_labels"] is True


def test_watermark_probe_on_cifar_like_data(tmp_path, monkeypatch):
    root = tmp_path / "data"
    datagen.write_cifar10_like(root, n_per_batch=20, n_test=40)
    datagen.write_tiny_imagenet_like(root, n_train=4)
    (run,) = run_smoke("params/fcdd/watermark.yaml", tmp_path, data_root=root)
    m = run["metrics"]
    assert m["watermarked_training_images"] == 5          # half of the 10 horse training images
    described, other = _masses_recomputed(run, root, monkeypatch, 32, 0.6)
    assert m["mass_described"] == pytest.approx(described, abs=1e-6)
    assert m["mass_other"] == pytest.approx(other, abs=1e-6)
    assert 0 < m["mass_described_watermarked"] < 1 and 0 <= m["auc_watermarked_others"] <= 1
    assert m["area_share"] == pytest.approx(19 * 6 / 32 ** 2)       # 60% of the side wide, a third as high
    assert np.isfinite(m["score_shift_described"]) and np.isfinite(m["score_shift_other"])
