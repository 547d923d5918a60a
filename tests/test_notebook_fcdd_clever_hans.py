"""fcdd_clever_hans.ipynb at its smoke presets: section 4.3 on generated PASCAL VOC / ImageNet-1k-val layouts,
and the watermark probe on generated CIFAR-10 / Tiny-ImageNet."""
import numpy as np
import pytest

import datagen
from nbrun import run_smoke

pytestmark = pytest.mark.notebook


def test_voc_horses_against_imagenet(tmp_path):
    root = tmp_path / "data"
    datagen.write_voc_like(root, n=12, horse=(0, 1, 2, 3, 4, 5))
    datagen.write_imagenet1k_val_like(root, n=3)
    (run,) = run_smoke("params/fcdd/voc.yaml", tmp_path, data_root=root)
    m = run["metrics"]
    assert 0 <= m["auc"] <= 1 and m["watermarked_training_images"] == 0
    # the lower-left region is 40% of the side wide and a third of that high
    assert m["area_share"] == pytest.approx(round(224 * 0.4) * round(round(224 * 0.4) / 3) / 224 ** 2)
    assert 0 < m["mass_described"] < 1 and 0 < m["mass_other"] < 1
    assert "auc_watermarked_others" not in m
    z = np.load(run["path"] / "maps.npz")
    assert z["upsampled"].shape[1:] == (224, 224) and z["native"].shape == (6, 28, 28)
    assert run["params"]["parameters"]["swap_labels"] is True


def test_watermark_probe_on_cifar_like_data(tmp_path):
    root = tmp_path / "data"
    datagen.write_cifar10_like(root, n_per_batch=20, n_test=40)
    datagen.write_tiny_imagenet_like(root, n_train=4)
    (run,) = run_smoke("params/fcdd/watermark.yaml", tmp_path, data_root=root)
    m = run["metrics"]
    assert m["watermarked_training_images"] == 5          # half of the 10 horse training images
    for k in ("auc", "auc_watermarked_others"):
        assert 0 <= m[k] <= 1
    for k in ("mass_described", "mass_described_watermarked", "mass_other"):
        assert 0 < m[k] < 1
    assert m["area_share"] == pytest.approx(19 * 6 / 32 ** 2)       # 60% of the side wide, a third as high
    assert np.isfinite(m["score_shift_described"]) and np.isfinite(m["score_shift_other"])
