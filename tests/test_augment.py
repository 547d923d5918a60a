"""Batched pipelines of appendix C, outlier exposure mixing, noise anomalies and the background ablation."""
import pytest
import torch

from oneclass import augment


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    out = augment.random_crop(x, 6, pad=2, gen=gen(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(out[i], padded[i, :, dy:dy + 6, dx:dx + 6])]
        assert hits, "each crop must be one window of the zero-padded image"


def test_random_crop_covers_all_offsets():
    x = torch.zeros(400, 1, 4, 4)
    x[:, :, 0, 0] = 1
    out = augment.random_crop(x, 4, pad=1, gen=gen())
    where = {tuple(torch.nonzero(o[0]).flatten().tolist()) for o in out}
    # the marked pixel lands at every position the 3x3 offsets allow (or is cropped away)
    assert {(0, 0), (1, 1), (0, 1), (1, 0), ()} <= where


def test_hflip_flips_about_half():
    x = torch.arange(4.0).reshape(1, 1, 1, 4).repeat(1000, 1, 1, 1)
    out = augment.random_hflip(x, 0.5, gen())
    flipped = (out[:, 0, 0, 0] == 3).float().mean()
    assert 0.45 < flipped < 0.55
    assert torch.all((out[:, 0, 0, 0] == 0) | (out[:, 0, 0, 0] == 3))


def test_same_generator_same_batch():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    p = augment.pipeline("cifar10").fit(x)
    assert torch.equal(p.train(x, gen(5)), p.train(x, gen(5)))
    assert not torch.equal(p.train(x, gen(5)), p.train(x, gen(6)))


def test_pipeline_normalises_with_nominal_statistics():
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    p = augment.pipeline("fmnist").fit(x)
    t = p.test(x)
    assert t.mean().abs() < 1e-4 and (t.std() - 1).abs() < 1e-2


def test_color_jitter_small_and_identity_at_zero():
    x = torch.rand(8, 3, 8, 8)
    assert torch.allclose(augment.color_jitter(x, gen=gen()), x)
    y = augment.color_jitter(x, 0.01, 0.01, 0.01, 0.01, gen())
    assert 0 < (y - x).abs().max() < 0.1


def test_hue_rotation_keeps_gray_pixels():
    x = torch.full((2, 3, 4, 4), 0.5)
    assert torch.allclose(augment.color_jitter(x, hue=0.5, gen=gen()), x, atol=1e-5)


def test_black_center_and_border_geometry():
    x = torch.ones(1, 3, 32, 32)
    c = augment.black_out(x, "black_center")
    assert c[0, 0].sum() == 32 * 32 - 20 * 20 and c[0, 0, 6:26, 6:26].sum() == 0
    b = augment.black_out(x, "black_border")
    assert b[0, 0].sum() == 20 * 20 and b[0, 0, 6:26, 6:26].min() == 1
    assert torch.equal(augment.black_out(x, "none"), x)
    with pytest.raises(ValueError, match="black_center"):
        augment.black_out(x, "grey")


def test_background_ablation_only_in_training():
    x = torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)
    p = augment.Pipeline(name="t", background="black_center").fit(x)
    assert (p.train(x, gen()) != p.test(x)).any()
    raw = augment.Pipeline(name="t").fit(x)
    assert torch.equal(p.test(x), raw.test(x))


def test_mix_outliers_rate_and_labels():
    nominal = torch.zeros(4000, 1, 2, 2, dtype=torch.uint8)
    pool = augment.Outliers(torch.full((3, 1, 2, 2), 255, dtype=torch.uint8))
    x, y, masks = augment.mix_outliers(nominal, pool, 0.5, gen())
    assert masks is None
    assert 0.47 < y.float().mean() < 0.53
    assert torch.all(x[y == 1] == 255) and torch.all(x[y == 0] == 0)


def test_outlier_limit_is_respected_by_drawing_only_from_the_pool():
    pool = torch.arange(2, dtype=torch.uint8).reshape(2, 1, 1, 1).repeat(1, 1, 2, 2)
    drawn = augment.Outliers(pool).draw(100, gen())
    assert set(drawn[:, 0, 0, 0].tolist()) == {0, 1}


def test_noise_outliers_shape_and_range():
    o = augment.Outliers.noise_source("uniform", 3, 32)
    x = o.draw(10, gen())
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.uint8 and x.float().std() > 50
    assert augment.noise_images(2, 1, 28, gen(), "blobs").shape == (2, 1, 28, 28)


def test_outlier_shape_mismatch_is_explained():
    pool = augment.Outliers(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="nominal size and channels"):
        pool.check(1, 28)
    with pytest.raises(TypeError, match="uint8"):
        augment.Outliers(torch.zeros(2, 3, 32, 32))


def test_imagenet_pipeline_crops_to_224():
    x = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    p = augment.pipeline("imagenet").fit(x)
    assert p.train(x, gen()).shape == (2, 3, 224, 224) and p.test(x).shape == (2, 3, 224, 224)
