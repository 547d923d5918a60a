"""FCDD on MVTec-AD (paper 000, section 4.2, appendix C) and the watermark probe of section 4.3: confetti
noise, the MVTec pipeline, the semi-supervised split and pixel loss, heatmap mass."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from oneclass import data, metrics
from oneclass.methods import fcdd
from oneclass.methods.fcdd import nets, pipeline

from datagen import write_mvtec_like


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ confetti noise

def test_confetti_blob_count_sizes_and_angles_follow_the_reference():
    images = torch.full((400, 3, 240, 240), 128, dtype=torch.uint8)
    out, blobs = pipeline.confetti_noise(images, gen(), return_blobs=True)
    assert out.shape == images.shape and out.dtype == torch.uint8
    sides = np.array([b.side for b in blobs])
    angles = np.array([b.angle for b in blobs])
    assert sides.min() >= 8 and sides.max() <= 54 and sides.max() - sides.min() > 30
    assert np.abs(angles).max() <= 45 and angles.min() < -30 and angles.max() > 30
    colored = [b for b in blobs if b.kind == "colored"]
    dark = [b for b in blobs if b.kind == "dark"]
    assert all(b.value == (-255.0,) * 3 for b in dark)
    # at least one blob of each kind in every image
    assert {b.image for b in colored} == set(range(400)) == {b.image for b in dark}
    # blob count ~ Poisson(lambda), lambda = density x 240^2, an empty field drawn again: conditioned on >= 1,
    # mean lambda / (1 - exp(-lambda))  (1.61 coloured, 1.38 dark)
    for found, density in ((colored, 1.8e-5), (dark, 1.2e-5)):
        lam = density * 240 * 240
        assert len(found) / 400 == pytest.approx(lam / (1 - math.exp(-lam)), rel=0.1)
    # one random shade per channel for coloured blobs, in the authors' range [-256, -1]
    values = np.array([b.value for b in colored])
    assert values.min() >= -256 and values.max() <= -1 and values.std() > 50
    assert (values[:, 0] != values[:, 1]).mean() > 0.9
    # added to a mid-grey image, the noise only darkens
    assert (out.int() <= 128).all() and (out.int() < 128).any()


def test_confetti_changes_pixels_only_around_its_blobs_and_is_seeded():
    images = torch.full((6, 3, 240, 240), 100, dtype=torch.uint8)
    out, blobs = pipeline.confetti_noise(images, gen(3), return_blobs=True)
    again = pipeline.confetti_noise(images, gen(3))
    assert torch.equal(out, again)
    assert not torch.equal(out, pipeline.confetti_noise(images, gen(4)))
    # every changed pixel lies within half a diagonal plus the blur radius (12 taps) of some blob centre
    rows, cols = torch.meshgrid(torch.arange(240), torch.arange(240), indexing="ij")
    for i in range(6):
        near = torch.zeros(240, 240, dtype=torch.bool)
        for b in (b for b in blobs if b.image == i):
            reach = b.side * math.sqrt(0.5) + 13
            near |= ((rows - b.row) ** 2 + (cols - b.col) ** 2).float().sqrt() <= reach
        changed = (out[i] != images[i]).any(0)
        assert changed.any() and not (changed & ~near).any()


def test_confetti_on_a_black_image_is_inverted_into_bright_blobs():
    black = torch.zeros(3, 3, 120, 120, dtype=torch.uint8)
    out = pipeline.confetti_noise(black, gen(2))
    assert (out.flatten(1).float().mean(1) > 0.5).all()        # the darkening noise could not change them
    grey = torch.full((3, 3, 120, 120), 128, dtype=torch.uint8)
    assert (pipeline.confetti_noise(grey, gen(2)).int() <= 128).all()


def test_confetti_refuses_float_images_and_bad_options():
    with pytest.raises(TypeError, match="uint8"):
        pipeline.confetti_noise(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="sides"):
        pipeline.confetti_noise(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), sides=(10, 5))
    with pytest.raises(ValueError, match="probability"):
        pipeline.confetti_noise(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), colored_density=2.0)


def test_gaussian_blur_matches_a_2d_convolution_with_reflect_padding():
    x = torch.rand(2, 3, 30, 40)
    ax = torch.arange(25.0) - 12
    k = torch.exp(-ax ** 2 / 50)
    k = k / k.sum()
    padded = torch.nn.functional.pad(x.reshape(-1, 1, 30, 40), (12, 12, 12, 12), mode="reflect")
    ref = torch.nn.functional.conv2d(padded, (k[:, None] * k[None])[None, None])
    assert torch.allclose(pipeline.gaussian_blur(x, 25, 5.0), ref.reshape(x.shape), atol=1e-5)
    # a constant field stays constant up to the border (nothing fades with reflect padding)
    assert torch.allclose(pipeline.gaussian_blur(torch.ones(1, 1, 30, 40), 25, 5.0), torch.ones(1, 1, 30, 40))


def test_confetti_outliers_replace_nominal_images_by_their_corrupted_selves():
    nominal = torch.full((64, 3, 60, 60), 90, dtype=torch.uint8)
    x, y, masks = pipeline.mix_outliers(nominal, pipeline.Outliers.confetti(colored_density=1e-3), 0.5, gen())
    assert masks is None and 0 < int(y.sum()) < 64
    assert torch.all(x[y == 0] == 90)
    assert all((x[i] != 90).any() for i in torch.nonzero(y)[:, 0])


# ------------------------------------------------------------------------------------------ MVTec pipeline

def test_local_contrast_normalization_zero_mean_unit_l1():
    x = torch.rand(4, 3, 20, 20) * torch.tensor([0.2, 1.0, 3.0, 0.5])[:, None, None, None]
    y = pipeline.local_contrast_normalization(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.abs().mean(dim=(1, 2, 3)), torch.ones(4), atol=1e-4)
    # invariant to brightness and contrast changes of the whole image
    assert torch.allclose(pipeline.local_contrast_normalization(2 * x + 0.1), y, atol=1e-4)


def test_mvtec_pipeline_min_max_and_test_resize():
    imgs = torch.randint(0, 256, (10, 3, 240, 240), generator=gen(), dtype=torch.uint8)
    p = pipeline.pipeline("mvtec").fit(imgs)
    t = p.test(imgs)
    assert t.shape == (10, 3, 224, 224)
    # min-max fitted on the training images' test transform: exactly [0, 1] per channel
    assert torch.allclose(t.amin(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(t.amax(dim=(0, 2, 3)), torch.ones(3), atol=1e-5)
    tr = p.train(imgs, gen())
    assert tr.shape == (10, 3, 224, 224) and torch.isfinite(tr).all()
    # test masks are resized with their images (nearest neighbour: still 0/1)
    masks = torch.zeros(10, 1, 240, 240, dtype=torch.uint8)
    masks[:, :, 120:, :] = 1
    _, m = p.test(imgs, masks)
    assert m.shape == (10, 1, 224, 224) and m.dtype == torch.uint8 and set(m.unique().tolist()) == {0, 1}
    assert m[:, 0, :, 0].sum(1).eq(112).all()                    # the lower half stays the lower half


def test_training_crop_moves_masks_with_their_images():
    imgs = torch.zeros(8, 3, 240, 240, dtype=torch.uint8)
    masks = torch.zeros(8, 1, 240, 240, dtype=torch.uint8)
    imgs[:, :, 100:120, 50:90] = 255
    masks[:, :, 100:120, 50:90] = 1
    p = pipeline.Pipeline(name="t", size=224, crop_pad=0, flip=True).fit(imgs)
    x, m = p.train(imgs, gen(), masks)
    assert m.shape == (8, 1, 224, 224) and m.dtype == torch.uint8
    assert (m.sum(dim=(1, 2, 3)) == 20 * 40).all()
    bright = x[:, 0] > x[:, 0].mean()
    assert torch.equal(bright, m[:, 0].bool())
    t, tm = p.test(imgs, masks)
    assert tm.shape == (8, 1, 224, 224) and torch.equal(t[:, 0] > t[:, 0].mean(), tm[:, 0].bool())


def test_mvtec_training_resizes_instead_of_cropping_for_some_images():
    """Bright bands on the top and bottom 8 rows of a 240px image: a 224px crop (offset 0..16) keeps at most one
    of them, a resize keeps both. So 'both bands' counts the resized images: none without resizing, all with
    resize_prob=1, some at 0.5."""
    imgs = torch.zeros(64, 3, 240, 240, dtype=torch.uint8)
    imgs[:, :, :8, :] = 255
    imgs[:, :, -8:, :] = 255

    def both_bands(prob):
        x = pipeline.Pipeline(name="t", size=224, crop_pad=0, resize_prob=prob).fit(imgs).train(imgs, gen())
        bright = x[:, 0].mean(2) > x[:, 0].mean()              # (N, rows): rows brighter than the image mean
        return int((bright[:, 0] & bright[:, -1]).sum())

    assert both_bands(0.0) == 0
    assert both_bands(1.0) == 64
    assert 10 < both_bands(0.5) < 54

def test_jitter_takes_one_strength_per_image():
    x = torch.full((200, 3, 8, 8), 0.5)
    strengths = torch.tensor([0.0, 0.4]).repeat(100)
    y = pipeline.color_jitter(x, strengths, 0.0, 0.0, 0.0, gen())
    assert torch.equal(y[strengths == 0], x[strengths == 0])
    assert (y[strengths > 0] != 0.5).any()


# -------------------------------------------------------------------------------- semi-supervised split

def test_semi_supervised_split_moves_one_image_per_defect_out_of_the_test_set(tmp_path):
    write_mvtec_like(tmp_path, defects={"crack": 3, "hole": 2, "scratch": 4}, n_good_test=3)
    test = data.load_mvtec("widget", "test", root=tmp_path)
    moved, rest = data.semi_supervised_split(test, per_defect=1, seed=0)
    assert sorted(moved.labels.tolist()) == [1, 2, 3] and moved.anomaly.all() and moved.masks.sum() > 0
    assert len(moved) + len(rest) == len(test)
    assert not set(moved.paths) & set(rest.paths)
    assert rest.class_counts() == [3, 2, 1, 3]
    other, _ = data.semi_supervised_split(test, per_defect=1, seed=1)
    assert data.semi_supervised_split(test, per_defect=1, seed=0)[0].paths == moved.paths
    assert len(other) == 3
    with pytest.raises(ValueError, match="'hole' has only 2"):
        data.semi_supervised_split(test, per_defect=2)


# ----------------------------------------------------------------------------------- FCDD on MVTec-AD

def test_mvtec_defaults_are_section_4_2():
    d = fcdd.defaults("mvtec")
    assert (d["net"], d["optimizer"], d["lr"], d["weight_decay"], d["gamma"]) == ("fcdd_224", "sgd", 1e-3, 1e-5,
                                                                                   0.985)
    assert d["passes"] == 10 and d["sigma"] == 12.0 and d["loss_on"] == "upsampled"
    assert fcdd.paper_epochs("mvtec") == 200
    assert fcdd.defaults("mvtec", official=True)["net"] == "fcdd_vgg_mvtec"
    assert fcdd.defaults("mvtec", "hsc", official=True)["net"] == "hsc_vgg"
    assert nets.receptive_field(nets.build("fcdd_224"), 224) == (52, 8)


def test_an_epoch_is_passes_times_the_training_set():
    seen = []

    class Counting(fcdd.FCDD):
        def _forward_loss(self, x, y, masks=None):
            # pipeline 'none' only normalises: each image's constant value tells which one it is
            seen.extend((x[:, 0, 0, 0] * self.pipeline_.scale[0] + self.pipeline_.shift[0]).tolist())
            return super()._forward_loss(x, y, masks)

    x = (torch.arange(5, dtype=torch.uint8) * 40)[:, None, None, None].expand(5, 1, 28, 28).contiguous()
    Counting(net="fcdd_28", pipeline="none", passes=3, batch_size=4, seed=0).fit(x, epochs=2)
    values = sorted(round(v * 255) for v in seen)
    assert values == sorted([40 * i for i in range(5)] * 6)      # every image 3 times per epoch, 2 epochs


def test_official_kernel_halves_even_sizes():
    odd = fcdd.official_kernel(5, 1.0)
    assert odd[2, 2] == 1 and odd[0, 2] == pytest.approx(math.exp(-2))
    even = fcdd.official_kernel(4, 1.0)
    g = torch.tensor([math.exp(-0.5), 1, 1, math.exp(-0.5)]) / 2     # 3 taps, centre repeated, halved
    assert torch.allclose(even, torch.outer(g, g))
    assert fcdd.official_kernel(52, 12.0).sum() == pytest.approx(226.06, abs=0.01)


def test_loss_on_the_upsampled_map_goes_through_the_authors_kernel():
    det = fcdd.FCDD(net="fcdd_224", pipeline="mvtec", loss_on="upsampled", sigma=12.0, seed=0)
    det.fit(torch.zeros(2, 3, 240, 240, dtype=torch.uint8), epochs=0)
    assert torch.equal(det._train_upsampler.kernel[0, 0], fcdd.official_kernel(52, 12.0))
    x = torch.randn(2, 3, 224, 224)
    A = fcdd.pseudo_huber(det.net_(x))
    expected = fcdd.fcdd_loss(det._train_upsampler(A), torch.tensor([0, 1]))
    with torch.no_grad():
        assert float(det._forward_loss(x, torch.tensor([0, 1]))) == pytest.approx(float(expected), rel=1e-5)
        det.loss_on = "native"
        assert float(det._forward_loss(x, torch.tensor([0, 1]))) == pytest.approx(
            float(fcdd.fcdd_loss(A, torch.tensor([0, 1]))), rel=1e-5)
    with pytest.raises(ValueError, match="loss_on"):
        fcdd.FCDD(net="fcdd_28", loss_on="both")


@pytest.fixture(scope="module")
def widget(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvtec")
    write_mvtec_like(root, size=(60, 60), n_train=6, n_good_test=4, defects={"crack": 4, "hole": 4})
    return root


def test_semi_supervised_pixel_loss_learns_where_the_defects_are(widget):
    train = data.load_mvtec("widget", "train", root=widget, size=240, channels=3)
    test = data.load_mvtec("widget", "test", root=widget, size=240, channels=3)
    moved, test = data.semi_supervised_split(test, seed=0)
    det = fcdd.make("fcdd", "mvtec", outliers=pipeline.Outliers(moved), seed=0, passes=4, batch_size=12,
                    lr=1e-2)
    det.fit(train, epochs=3, progress=False)
    out = det.score(test)
    assert out.maps.shape == (len(test), 224, 224)
    gt = data.load_mvtec("widget", "test", root=widget, size=120, channels=3)
    gt = gt.subset([gt.paths.index(p) for p in test.paths])
    maps = metrics.resize_maps(out.maps, 120)
    assert metrics.pixel_auc_pooled(maps, gt.masks[:, 0]) > 0.9
    assert metrics.auc(out.scores, test.anomaly) > 0.9


def test_unsupervised_confetti_training_runs_on_240px_images(widget):
    train = data.load_mvtec("widget", "train", root=widget, size=240, channels=3)
    det = fcdd.make("fcdd", "mvtec", outliers=fcdd.outliers("confetti", "mvtec"), seed=0, passes=1, batch_size=6)
    det.fit(train, epochs=1, progress=False)
    assert len(det.history_) == 1 and math.isfinite(det.history_[0])
    with pytest.raises(ValueError, match="240, cropped to 224"):
        det.fit(data.load_mvtec("widget", "train", root=widget, size=200, channels=3), epochs=1)


# ------------------------------------------------------------------------------------- watermark probe

def test_watermark_box_and_paste_touch_only_the_corner():
    rows, cols = pipeline.watermark_box(32, 0.4)
    assert (rows, cols) == (slice(28, 32), slice(0, 13))
    x = torch.full((2, 3, 32, 32), 40, dtype=torch.uint8)
    y = pipeline.paste_watermark(x, 0.4)
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[rows, cols] = True
    assert torch.equal(y[..., ~inside], x[..., ~inside])
    assert (y[..., inside] > 40).any() and torch.equal(y[0], y[1])
    assert pipeline.watermark_box(100, 0.3, "upper_right") == (slice(0, 10), slice(70, 100))
    with pytest.raises(ValueError, match="corner"):
        pipeline.watermark_box(32, 0.3, "middle")


def test_heatmap_mass_fraction_known_values():
    maps = np.zeros((2, 4, 4))
    maps[0, 3, 0] = 3.0
    maps[0, 0, 3] = 1.0
    maps[1] = 1.0
    region = np.zeros((4, 4), bool)
    region[3, :2] = True
    assert metrics.heatmap_mass_fraction(maps, region) == pytest.approx([0.75, 2 / 16])
    assert np.isnan(metrics.heatmap_mass_fraction(np.zeros((1, 4, 4)), region)[0])
    with pytest.raises(ValueError, match="non-negative"):
        metrics.heatmap_mass_fraction(-maps, region)


def test_pixel_auc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    maps = rng.integers(0, 6, size=(4, 9, 9)).astype(np.float32)
    masks = rng.random((4, 9, 9)) < 0.3
    assert metrics.pixel_auc_pooled(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    assert metrics.pixel_auc_per_image(maps, masks) == pytest.approx(
        np.mean([roc_auc_score(g.ravel(), m.ravel()) for m, g in zip(maps, masks)]))


def test_masks_are_read_at_their_stored_resolution_without_decoding_images(widget):
    test = data.load_mvtec("widget", "test", root=widget, size=240, channels=3)
    native = data.load_mvtec_masks(test)
    assert native.shape == (len(test), 60, 60) and native.dtype == np.uint8
    assert (native[test.anomaly.numpy() == 0] == 0).all()
    assert native[test.anomaly.numpy() == 1].sum(axis=(1, 2)).min() > 0
    resized = data.load_mvtec_masks(test, 240)
    assert np.array_equal(resized, test.masks[:, 0].numpy())
    subset = test.subset([0, len(test) - 1])
    assert np.array_equal(data.load_mvtec_masks(subset), native[[0, -1]])
    bottle = data.load_mvtec_folder(widget / "mvtec_anomaly_detection" / "widget", "train")
    with pytest.raises(ValueError, match="ground-truth"):
        data.load_mvtec_masks(dataclasses.replace(bottle, meta={"masks_missing": "no ground_truth folder"}))


def test_swapped_labels_and_heatmap_mass_find_a_watermark():
    """A known answer: the described class's training images all carry a corner watermark and the other class
    never does; with swapped labels the heatmap must mark the watermark and the score must rise with it."""
    g = gen(1)
    clean = torch.randint(0, 120, (300, 1, 28, 28), generator=g, dtype=torch.uint8)
    marked = pipeline.paste_watermark(clean[:150], 0.5, opacity=1.0)
    det = fcdd.FCDD(net="fcdd_28", pipeline="none", outliers=pipeline.Outliers(clean[150:]), swap_labels=True,
                    optimizer="adam", lr=1e-3, schedule="none", batch_size=32, seed=0)
    det.fit(marked, epochs=20, progress=False)
    test_clean = torch.randint(0, 120, (40, 1, 28, 28), generator=g, dtype=torch.uint8)
    with_mark = det.score(pipeline.paste_watermark(test_clean, 0.5, opacity=1.0))
    without = det.score(test_clean)
    rows, cols = pipeline.watermark_box(28, 0.5)
    region = np.zeros((28, 28), bool)
    region[rows, cols] = True
    assert metrics.auc(np.r_[without.scores, with_mark.scores], np.r_[np.zeros(40), np.ones(40)]) > 0.9
    assert np.mean(metrics.heatmap_mass_fraction(with_mark.maps, region)) > 2 * region.mean()


def test_resize_maps_keeps_constant_maps_constant():
    maps = np.full((2, 224, 224), 0.3, dtype=np.float32)
    out = metrics.resize_maps(maps, 900)
    assert out.shape == (2, 900, 900) and np.allclose(out, 0.3)
    small = metrics.resize_maps(np.arange(16, dtype=np.float32).reshape(1, 4, 4), (2, 2))
    assert small.shape == (1, 2, 2) and small[0, 0, 0] < small[0, 1, 1]
