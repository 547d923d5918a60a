"""Batched pipelines of appendix C, outlier exposure mixing, noise anomalies and the background ablation."""
import pytest
import torch
from fake_device import data, fake_device, tensors

from oneclass.methods.fcdd import pipeline


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    out = pipeline.random_crop(x, 6, pad=2, gen=gen(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(out[i], padded[i, :, dy:dy + 6, dx:dx + 6])]
        assert hits, "each crop must be one window of the zero-padded image"


def test_random_crop_covers_all_offsets():
    x = torch.zeros(400, 1, 4, 4)
    x[:, :, 0, 0] = 1
    out = pipeline.random_crop(x, 4, pad=1, gen=gen())
    where = {tuple(torch.nonzero(o[0]).flatten().tolist()) for o in out}
    # the marked pixel lands at every position the 3x3 offsets allow (or is cropped away)
    assert {(0, 0), (1, 1), (0, 1), (1, 0), ()} <= where


def test_hflip_flips_about_half():
    x = torch.arange(4.0).reshape(1, 1, 1, 4).repeat(1000, 1, 1, 1)
    out = pipeline.random_hflip(x, 0.5, gen())
    flipped = (out[:, 0, 0, 0] == 3).float().mean()
    assert 0.45 < flipped < 0.55
    assert torch.all((out[:, 0, 0, 0] == 0) | (out[:, 0, 0, 0] == 3))


def test_same_generator_same_batch():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    p = pipeline.pipeline("cifar10").fit(x)
    assert torch.equal(p.train(x, gen(5)), p.train(x, gen(5)))
    assert not torch.equal(p.train(x, gen(5)), p.train(x, gen(6)))


def test_pipeline_normalises_with_nominal_statistics():
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    p = pipeline.pipeline("cifar10", size=28).fit(x)
    t = p.test(x)
    assert t.mean().abs() < 1e-4 and (t.std() - 1).abs() < 1e-2


def test_color_jitter_small_and_identity_at_zero():
    x = torch.rand(8, 3, 8, 8)
    assert torch.allclose(pipeline.color_jitter(x, gen=gen()), x)
    y = pipeline.color_jitter(x, 0.01, 0.01, 0.01, 0.01, gen())
    assert 0 < (y - x).abs().max() < 0.1


def test_hue_rotation_keeps_gray_pixels():
    x = torch.full((2, 3, 4, 4), 0.5)
    assert torch.allclose(pipeline.color_jitter(x, hue=0.5, gen=gen()), x, atol=1e-5)


def test_black_center_and_border_geometry():
    x = torch.ones(1, 3, 32, 32)
    c = pipeline.black_out(x, "black_center")
    assert c[0, 0].sum() == 32 * 32 - 20 * 20 and c[0, 0, 6:26, 6:26].sum() == 0
    b = pipeline.black_out(x, "black_border")
    assert b[0, 0].sum() == 20 * 20 and b[0, 0, 6:26, 6:26].min() == 1
    assert torch.equal(pipeline.black_out(x, "none"), x)
    with pytest.raises(ValueError, match="black_center"):
        pipeline.black_out(x, "grey")


def test_background_ablation_only_in_training():
    x = torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)
    p = pipeline.Pipeline(name="t", background="black_center").fit(x)
    assert (p.train(x, gen()) != p.test(x)).any()
    raw = pipeline.Pipeline(name="t").fit(x)
    assert torch.equal(p.test(x), raw.test(x))


def test_mix_outliers_rate_and_labels():
    nominal = torch.zeros(4000, 1, 2, 2, dtype=torch.uint8)
    pool = pipeline.Outliers(torch.full((3, 1, 2, 2), 255, dtype=torch.uint8))
    x, y, masks = pipeline.mix_outliers(nominal, pool, 0.5, gen())
    assert masks is None
    assert 0.47 < y.float().mean() < 0.53
    assert torch.all(x[y == 1] == 255) and torch.all(x[y == 0] == 0)


def test_outlier_limit_is_respected_by_drawing_only_from_the_pool():
    pool = torch.arange(2, dtype=torch.uint8).reshape(2, 1, 1, 1).repeat(1, 1, 2, 2)
    drawn = pipeline.Outliers(pool).draw(100, gen())
    assert set(drawn[:, 0, 0, 0].tolist()) == {0, 1}


def test_noise_outliers_shape_and_range():
    o = pipeline.Outliers.noise_source("uniform", 3, 32)
    x = o.draw(10, gen())
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.uint8 and x.float().std() > 50
    assert pipeline.noise_images(2, 1, 28, gen(), "blobs").shape == (2, 1, 28, 28)


def test_outlier_shape_mismatch_is_explained():
    pool = pipeline.Outliers(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="nominal size and channels"):
        pool.check(1, 28)
    with pytest.raises(TypeError, match="uint8"):
        pipeline.Outliers(torch.zeros(2, 3, 32, 32))


def test_imagenet_pipeline_crops_to_224():
    x = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    p = pipeline.pipeline("imagenet").fit(x)
    assert p.train(x, gen()).shape == (2, 3, 224, 224) and p.test(x).shape == (2, 3, 224, 224)


# ------------------------------------------------------------------------------------------ devices

def test_fake_device_refuses_what_cuda_refuses():
    # the harness below is only worth something if it fails on the bugs it is meant to catch
    with fake_device() as dev:
        x = torch.zeros(2, 3).to(dev)
        assert x.device == dev and torch.equal(data(x * 2 + 1), torch.ones(2, 3))
        with pytest.raises(AssertionError, match="mixes devices"):
            x + torch.ones(2, 3)
        with pytest.raises(AssertionError, match="mixes devices"):
            torch.ones(3, 3) @ x.T
        with pytest.raises(AssertionError, match="mixes devices"):
            torch.where(torch.ones(2, 1, dtype=torch.bool), x, torch.zeros(2, 3))
        with pytest.raises(AssertionError, match="generator"):
            torch.rand(3, generator=gen(), device=dev)
        assert (x * torch.tensor(2.0)).device == dev          # CPU scalars mix, as on CUDA
        assert torch.zeros(2, device=dev).device == dev and x.cpu().device.type == "cpu"


U8 = torch.randint(0, 256, (6, 3, 40, 40), generator=gen(123), dtype=torch.uint8)
F32 = U8.float() / 255
MASKS = torch.randint(0, 2, (6, 1, 40, 40), generator=gen(124), dtype=torch.uint8)
STRENGTHS = torch.tensor([0.04, 0.0005, 0.04, 0.04, 0.0005, 0.1])
POOL = pipeline.Outliers(torch.randint(0, 256, (5, 3, 40, 40), generator=gen(125), dtype=torch.uint8), masks=MASKS[:5])

# every public function of the pipeline module: (move, device) -> result, where move(t) puts an input on the device
FUNCTIONS = {
    "random_crop": lambda to, dev: pipeline.random_crop(to(F32), 32, 4, gen(1)),
    "center_crop": lambda to, dev: pipeline.center_crop(to(F32), 32),
    "random_hflip": lambda to, dev: pipeline.random_hflip(to(F32), 0.5, gen(2)),
    "color_jitter": lambda to, dev: pipeline.color_jitter(to(F32), 0.1, 0.2, 0.3, 0.4, gen(3)),
    "color_jitter_per_image": lambda to, dev: pipeline.color_jitter(to(F32), STRENGTHS, to(STRENGTHS), STRENGTHS,
                                                                   to(STRENGTHS), gen(4)),
    "gaussian_noise": lambda to, dev: pipeline.gaussian_noise(to(F32), 0.1, gen(5)),
    "black_out": lambda to, dev: pipeline.black_out(to(F32), "black_border"),
    "gaussian_blur": lambda to, dev: pipeline.gaussian_blur(to(F32), 25, 5.0),
    "confetti_noise": lambda to, dev: pipeline.confetti_noise(to(U8), gen(6), colored_density=2e-3,
                                                             dark_density=1e-3, sides=(3, 9)),
    "local_contrast_normalization": lambda to, dev: pipeline.local_contrast_normalization(to(F32)),
    "paste_watermark": lambda to, dev: pipeline.paste_watermark(to(U8), 0.4),
    "noise_images": lambda to, dev: pipeline.noise_images(3, 3, 16, gen(7), "blobs", device=dev),
    "outlier_pool": lambda to, dev: POOL.to(dev).draw_with_masks(4, gen(8)),
    "outlier_noise": lambda to, dev: pipeline.Outliers.noise_source("uniform", 3, 40).to(dev).draw(4, gen(9)),
    "mix_pool": lambda to, dev: pipeline.mix_outliers(to(U8), POOL.to(dev), 0.5, gen(10)),
    "mix_pool_left_on_cpu": lambda to, dev: pipeline.mix_outliers(to(U8), POOL, 0.5, gen(10)),
    "mix_noise": lambda to, dev: pipeline.mix_outliers(
        to(U8), pipeline.Outliers.noise_source("blobs", 3, 40).to(dev), 0.5, gen(11)),
    "mix_confetti": lambda to, dev: pipeline.mix_outliers(
        to(U8), pipeline.Outliers.confetti(colored_density=1e-3).to(dev), 0.7, gen(12)),
    "mix_none": lambda to, dev: pipeline.mix_outliers(to(U8), None, 0.5, gen(12)),
}

BIG = torch.randint(0, 256, (4, 3, 240, 240), generator=gen(126), dtype=torch.uint8)
BIG_MASKS = torch.randint(0, 2, (4, 1, 240, 240), generator=gen(127), dtype=torch.uint8)


def _preset(name, size, channels, background="none"):
    def run(to, dev):
        x, m = BIG[:, :channels, :size, :size].contiguous(), BIG_MASKS[..., :size, :size].contiguous()
        p = pipeline.pipeline(name, background).fit(to(x))
        return p.shift, p.scale, p.train(to(x), gen(13)), p.train(to(x), gen(14), to(m)), p.test(to(x)), \
            p.test(to(x), to(m))
    return run


for _name, _size, _c, _bg in [("fmnist", 28, 1, "none"), ("cifar10", 32, 3, "black_center"),
                              ("imagenet", 256, 3, "none"), ("voc", 224, 3, "black_border"), ("mvtec", 240, 3, "none")]:
    FUNCTIONS[f"pipeline_{_name}"] = _preset(_name, _size, _c, _bg)
# a pipeline fitted on the CPU (as a checkpoint loads it) normalises images on another device
FUNCTIONS["pipeline_fitted_elsewhere"] = lambda to, dev: pipeline.pipeline("mvtec").fit(BIG[:2]).test(to(BIG[2:]))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_results_on_the_inputs_device_with_the_cpu_numbers(name):
    """Every public function on a second device: no operation mixes devices, every tensor returned is on the
    inputs' device, and the numbers are the CPU's (random draws made with the CPU generator, then moved)."""
    run = FUNCTIONS[name]
    expected = tensors(run(lambda t: t, torch.device("cpu")))
    with fake_device() as dev:
        got = tensors(run(lambda t: t.to(dev), dev))
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert a.device == dev, f"{name} returned a tensor on {a.device}"
        assert a.dtype == b.dtype and torch.equal(data(a), b), f"{name} gives other numbers on another device"


def test_outliers_to_a_device():
    assert POOL.to("cpu") is POOL                       # already there
    noise = pipeline.Outliers.noise_source("uniform", 3, 8)
    assert noise.to("cpu") is noise
    confetti = pipeline.Outliers.confetti()
    with fake_device() as dev:
        moved = POOL.to(dev)
        assert moved is not POOL and moved.images.device == dev and moved.masks.device == dev
        assert POOL.images.device.type == "cpu"          # the original is left where it was
        assert moved.to(dev) is moved and len(moved) == len(POOL)
        assert noise.to(dev).draw(2, gen()).device == dev and noise.draw(2, gen()).device.type == "cpu"
        assert confetti.to(dev) is confetti
        assert moved.device == dev and noise.to(dev).device == dev
    assert POOL.device.type == "cpu" and noise.device.type == "cpu" and confetti.device is None


def test_background_box_lands_on_the_same_pixels_whatever_the_crop():
    """black_center / black_border are applied after crop, flip and noise (the authors' order): in the final
    training tensor the box holds exactly the normalised black on every image, and nothing outside it does."""
    x = torch.randint(1, 256, (64, 3, 32, 32), generator=gen(), dtype=torch.uint8)
    for mode in ("black_center", "black_border"):
        p = pipeline.pipeline("cifar10", background=mode).fit(x)
        out = p.train(x, gen())
        black = p.normalize(torch.zeros(1, 3, 32, 32))[0]
        box = pipeline.black_out(torch.ones(1, 1, 32, 32), mode)[0, 0] == 0
        assert torch.equal(out[:, :, box], black[:, box].expand(64, -1, -1))
        # outside the box only the crop's zero padding can be black
        assert torch.isclose(out[:, :, ~box], black[:, ~box].expand(64, -1, -1)).all(dim=1).float().mean() < 0.05


def test_lcn_minmax_normalisation_maps_the_nominal_range_to_unit_interval():
    """normalize='lcn_minmax' (the authors' Fashion-MNIST): each image minus its mean, over its mean absolute
    deviation, then the nominal images' min-max range -> exactly [0, 1] on them; contrast-invariant per image."""
    x = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8, generator=gen(1))
    p = pipeline.pipeline("fmnist", normalize="lcn_minmax").fit(x)
    out = p.test(x)
    assert out.min().item() == pytest.approx(0.0, abs=1e-6) and out.max().item() == pytest.approx(1.0, abs=1e-6)
    flat = x[:1].float() / 255
    centred = flat - flat.mean()
    manual = (centred / centred.abs().mean() - p.shift) / p.scale
    torch.testing.assert_close(out[:1], manual, rtol=1e-5, atol=1e-5)
    # a brighter, lower-contrast copy of an image normalises to the same values
    dim = (x[:1].float() * 0.5 + 60).round().to(torch.uint8)
    torch.testing.assert_close(p.test(dim), p.test((dim.float() - 60).mul(2).round().clamp(0, 255).to(torch.uint8)),
                               rtol=0, atol=0.02)
    meanstd = pipeline.pipeline("fmnist", normalize="meanstd").fit(x).test(x)
    assert abs(meanstd.mean().item()) < 1e-4 and meanstd.std().item() == pytest.approx(1.0, abs=1e-2)
    # the authors' code normalises Fashion-MNIST (and MVTec-AD) this way; CIFAR-10 by mean and deviation
    assert pipeline.pipeline("fmnist").lcn and pipeline.pipeline("mvtec").lcn and not pipeline.pipeline("cifar10").lcn
    assert not pipeline.pipeline("mvtec", normalize="meanstd").lcn
    with pytest.raises(ValueError, match="meanstd | lcn_minmax"):
        pipeline.pipeline("fmnist", normalize="l2")
