"""FCDD, HSC and AE: losses (eqs. 1-3), Algorithm 1's upsampling, the training loop's contract."""
import math

import numpy as np
import pytest
import torch
from fake_device import fake_device

from oneclass import gallery, metrics
from oneclass.methods import fcdd
from oneclass.methods.fcdd import nets, pipeline


# ------------------------------------------------------------------------------------------ losses

def test_pseudo_huber_known_values():
    x = torch.tensor([0.0, math.sqrt(3.0), -math.sqrt(8.0)])
    assert torch.allclose(fcdd.pseudo_huber(x), torch.tensor([0.0, 1.0, 2.0]))


def test_hsc_loss_known_value():
    s = torch.tensor([1.0, 1.0])
    y = torch.tensor([0, 1])
    expected = (1.0 - math.log(1 - math.exp(-1.0))) / 2
    assert fcdd.hsc_loss(s, y).item() == pytest.approx(expected, rel=1e-6)


def test_hsc_loss_pushes_nominal_in_and_anomalies_out():
    s = torch.tensor([0.5, 0.5], requires_grad=True)
    fcdd.hsc_loss(s, torch.tensor([0, 1])).backward()
    assert s.grad[0] > 0 and s.grad[1] < 0     # descent lowers the nominal score, raises the anomalous one


def test_hsc_loss_is_finite_at_zero_score():
    s = torch.zeros(2, requires_grad=True)
    loss = fcdd.hsc_loss(s, torch.tensor([1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_fcdd_loss_is_hsc_loss_of_the_mean_map():
    A = torch.rand(3, 1, 4, 4)
    y = torch.tensor([0, 1, 1])
    assert fcdd.fcdd_loss(A, y).item() == pytest.approx(fcdd.hsc_loss(A.mean((1, 2, 3)), y).item())


def test_pixel_loss_known_value():
    A = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])           # m = 4 pixels
    Y = torch.tensor([[[0, 1], [0, 0]]])
    nominal = (1.0 + 0 + 0) / 4
    anomalous = -math.log(1 - math.exp(-3.0 / 4))
    assert fcdd.pixel_loss(A, Y).item() == pytest.approx(nominal + anomalous, rel=1e-6)
    # an image without anomalous pixels contributes only its mean
    assert fcdd.pixel_loss(A, torch.zeros_like(Y)).item() == pytest.approx(1.0)


def test_pixel_loss_needs_same_size():
    with pytest.raises(ValueError, match="upsample"):
        fcdd.pixel_loss(torch.zeros(1, 7, 7), torch.zeros(1, 28, 28))


# ------------------------------------------------------------------------------------- Algorithm 1

@pytest.mark.parametrize("name", ["fcdd_28", "fcdd_32", "fcdd_32_lw3k", "fcdd_224"])
def test_upsampled_map_has_input_size(name):
    net = nets.build(name)
    g = nets.geometry(net, net.input_size)
    up = fcdd.receptive_upsample(torch.rand(2, g.out_size, g.out_size), net, net.input_size)
    assert up.shape == (2, net.input_size, net.input_size)


@pytest.mark.parametrize("name,i,j", [("fcdd_28", 3, 3), ("fcdd_32", 2, 5), ("fcdd_224", 10, 20)])
def test_single_pixel_upsamples_to_gaussian_at_receptive_field_centre(name, i, j):
    net = nets.build(name)
    g = nets.geometry(net, net.input_size)
    A = torch.zeros(1, g.out_size, g.out_size)
    A[0, i, j] = 1.0
    up = fcdd.receptive_upsample(A, net, net.input_size, sigma=2.0)[0].double()
    ys, xs = torch.meshgrid(torch.arange(net.input_size), torch.arange(net.input_size), indexing="ij")
    cy, cx = g.start + i * g.jump, g.start + j * g.jump
    # centre of mass at the receptive field's centre, isotropic spread ~ sigma, nonzero only inside the field
    assert (up * ys).sum() / up.sum() == pytest.approx(cy, abs=1e-4)
    assert (up * xs).sum() / up.sum() == pytest.approx(cx, abs=1e-4)
    var = (up * (ys - cy) ** 2).sum() / up.sum()
    assert 3.0 < var <= 4.0 + 1e-6                       # sigma^2 = 4, less where the field truncates it
    rows = torch.nonzero(up.sum(1) > 0).flatten()
    assert rows.max() - rows.min() + 1 == g.rf


def test_upsampling_equals_algorithm_1_loop():
    net = nets.build("fcdd_28")
    g = nets.geometry(net, 28)
    sigma = 1.7
    A = torch.rand(1, 7, 7)
    fast = fcdd.receptive_upsample(A, net, 28, sigma)[0].double()
    slow = torch.zeros(28, 28, dtype=torch.float64)
    half = (g.rf - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    for a in range(7):
        for b in range(7):
            cy, cx = g.start + a * g.jump, g.start + b * g.jump
            inside = ((ys - cy).abs() <= half) & ((xs - cx).abs() <= half)   # the kernel spans the field
            G = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2)
            slow += A[0, a, b].double() * G * inside
    assert torch.allclose(fast, slow, atol=1e-6)


def test_default_sigma_is_appendix_a():
    up = fcdd.ReceptiveUpsampler(nets.build("fcdd_28"), 28)
    assert up.sigma == pytest.approx(math.log(0.45 * 16 + 1) + 0.25)
    assert fcdd.ReceptiveUpsampler(nets.build("fcdd_28"), 28, sigma=1.2).sigma == 1.2


def test_coverage_upsampling_removes_the_border_fall_off():
    """A constant low-resolution map: Algorithm 1 gives a map that is lower in the border frame than inside (fewer
    Gaussians overlap there); the coverage-normalised option (ours) gives the constant back. On random maps (an
    untrained model), defects in the border frame get a pixel AUC far below 0.5 with Algorithm 1 and about 0.5
    with the normalisation."""
    net = nets.build("fcdd_224")
    paper, ours = fcdd.ReceptiveUpsampler(net, 224), fcdd.ReceptiveUpsampler(net, 224, coverage=True)
    ones = torch.ones(1, 28, 28)
    flat = paper(ones)[0]
    assert float(flat[0, :].mean()) < 0.6 * float(flat[112, :].mean())
    assert float(flat[112, 112]) == pytest.approx(float(flat[100, 100]), rel=0.05)   # inside: ripples only
    assert torch.allclose(ours(ones)[0], torch.ones(224, 224), atol=1e-4)
    A = torch.rand(20, 28, 28, generator=torch.Generator().manual_seed(0))
    border = np.zeros((20, 224, 224), np.uint8)
    border[:, :, :12] = 1                                      # a defect strip along the left edge
    auc_paper = metrics.pixel_metrics(paper(A).numpy(), border)["pixel_auc_pooled"]
    auc_ours = metrics.pixel_metrics(ours(A).numpy(), border)["pixel_auc_pooled"]
    assert auc_paper < 0.2 and abs(auc_ours - 0.5) < 0.05, (auc_paper, auc_ours)
    with pytest.raises(ValueError, match="upsample must be 'paper'"):
        fcdd.FCDD("fcdd_28", upsample="border")


# ---------------------------------------------------------------------------------------- methods

def toy(n=96, seed=0):
    """Nominal: dark images with a bright horizontal bar; anomalies: the bar is vertical."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 40, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    nominal, anomal = x.clone(), x.clone()
    rows = torch.randint(6, 22, (n,), generator=g)
    for k in range(n):
        nominal[k, 0, rows[k]:rows[k] + 3, 4:24] = 220
        anomal[k, 0, 4:24, rows[k]:rows[k] + 3] = 220
    return nominal, anomal


def fit_toy(method="fcdd", epochs=4, seed=0, **kw):
    nominal, _ = toy()
    oe = None if method == "ae" else torch.randint(0, 256, (50, 1, 28, 28), generator=torch.Generator().manual_seed(1),
                                                   dtype=torch.uint8)
    det = fcdd.make(method, "fmnist", outliers=oe, seed=seed, batch_size=32, **kw)
    return det.fit(nominal, epochs=epochs, progress=False)


def toy_test():
    nominal, anomal = toy(40, seed=7)
    return torch.cat([nominal, anomal]), np.r_[np.zeros(40), np.ones(40)]


def test_fcdd_learns_toy_task_and_maps_have_input_size():
    det = fit_toy("fcdd", epochs=6)
    x, y = toy_test()
    out = det.score(x)
    assert metrics.auc(out.scores, y) > 0.9
    assert out.maps.shape == (80, 28, 28) and out.native.shape == (80, 7, 7)
    assert np.allclose(out.scores, out.native.reshape(80, -1).mean(1), atol=1e-6)   # score = mean of A


def test_same_seed_same_scores_different_seed_different_scores():
    x, _ = toy_test()
    a = fit_toy(seed=3, epochs=1).score(x, maps=False).scores
    b = fit_toy(seed=3, epochs=1).score(x, maps=False).scores
    c = fit_toy(seed=4, epochs=1).score(x, maps=False).scores
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_online_outlier_exposure_epoch_is_one_pass_over_nominal_set():
    seen = []

    class Counting(fcdd.FCDD):
        def _forward_loss(self, x, y, masks=None):
            seen.append(y.clone())
            return super()._forward_loss(x, y)

    nominal, _ = toy(200)
    oe = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    Counting("fcdd_28", pipeline="fmnist", outliers=oe, batch_size=50, seed=0).fit(nominal, epochs=2, progress=False)
    labels = torch.cat(seen)
    assert len(labels) == 2 * 200                       # two epochs of 200 samples, anomalies included
    assert 0.4 < labels.float().mean() < 0.6            # each sample swapped with probability 0.5


def test_gradient_accumulation_splits_the_batch():
    sizes = []

    class Sizes(fcdd.FCDD):
        def _forward_loss(self, x, y, masks=None):
            sizes.append(len(x))
            return super()._forward_loss(x, y)

    nominal, _ = toy(40)
    Sizes("fcdd_28", batch_size=20, accumulate=4, seed=0).fit(nominal, epochs=1, progress=False)
    assert sizes == [5] * 8
    with pytest.raises(ValueError, match="divisible"):
        fcdd.FCDD("fcdd_28", batch_size=20, accumulate=3)


def test_hsc_gradient_maps_and_display_blur():
    det = fit_toy("hsc", epochs=2)
    x, y = toy_test()
    out = det.score(x)
    assert out.maps.shape == (80, 28, 28) and (out.maps >= 0).all() and out.native is None
    blurred = det.display_maps(out.maps[:4])
    assert isinstance(blurred, np.ndarray)
    assert blurred.shape == (4, 28, 28) and blurred.std() < out.maps[:4].std()
    assert np.allclose(blurred, det.upsampler.blur(torch.as_tensor(out.maps[:4])).numpy())


def test_hsc_maps_are_each_images_own_input_gradient():
    """The batched map of image i equals |d score_i / d x_i| (channels summed) computed for image i alone, and
    its sign-free value matches a central finite difference of the score at the strongest pixel."""
    det = fit_toy("hsc", epochs=1, precision="fp32")
    x, _ = toy_test()
    out = det.score(x[:6])
    for i in (0, 5):
        (b,) = list(det._test_batches(x[i:i + 1]))
        b = b.detach().double().requires_grad_(True)
        net = det.net_.double()
        s = torch.sqrt(net(b).pow(2).sum(1) + 1) - 1
        (g,) = torch.autograd.grad(s.sum(), b)
        np.testing.assert_allclose(out.maps[i], g.abs().sum(1)[0].numpy(), rtol=1e-3, atol=1e-6)
        r, c = np.unravel_index(np.argmax(out.maps[i]), out.maps[i].shape)
        h = torch.zeros_like(b)
        h[0, 0, r, c] = 1e-4
        with torch.no_grad():
            fd = ((torch.sqrt(net(b + h).pow(2).sum(1) + 1) - torch.sqrt(net(b - h).pow(2).sum(1) + 1)) / 2e-4).item()
        assert abs(fd) == pytest.approx(out.maps[i][r, c], rel=1e-2)
        det.net_.float()


def test_fcdd_displays_its_upsampled_maps_unchanged():
    det = fit_toy("fcdd", epochs=1)
    out = det.score(toy_test()[0][:4])
    assert np.array_equal(det.display_maps(out.maps), out.maps)


def test_ae_reconstruction_maps_and_no_outlier_exposure():
    det = fit_toy("ae", epochs=2)
    x, _ = toy_test()
    out = det.score(x)
    assert out.maps.shape == (80, 28, 28)
    assert np.allclose(out.scores, out.maps.reshape(80, -1).mean(1), rtol=1e-5)
    with pytest.raises(ValueError, match="outlier exposure"):
        fcdd.AE("ae_28", outliers=torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_defaults_follow_appendix_c():
    f = fcdd.defaults("fmnist")
    assert (f["net"], f["optimizer"], f["lr"], f["gamma"], f["batch_size"]) == ("fcdd_28", "sgd", 1e-2, 0.98, 128)
    c = fcdd.defaults("cifar10", official=True)
    assert (c["net"], c["optimizer"], c["milestones"], c["batch_size"], c["sigma"]) == \
        ("fcdd_32_lw3k", "adam", (400, 500), 200, 1.2)
    assert fcdd.defaults("cifar10", "hsc")["net"] == "hsc_32" and fcdd.defaults("imagenet30", "ae")["net"] == "ae_224"


@pytest.mark.parametrize("method", ["fcdd", "hsc", "ae"])
def test_channels_last_is_a_memory_layout_not_a_different_model(method):
    """The 28/32px networks train channels-last by default (the benchmark's choice); the layout changes only the
    kernels' summation order: after 2 epochs the scores agree with the contiguous run to float rounding, the
    weights come back in the layout asked for."""
    assert fcdd.defaults("fmnist", method)["channels_last"] and fcdd.defaults("cifar10", official=True)["channels_last"]
    assert not fcdd.defaults("mvtec")["channels_last"] and fcdd.defaults("mvtec", official=True)["channels_last"]
    x, _ = toy_test()
    a = fit_toy(method, epochs=2, channels_last=True)
    b = fit_toy(method, epochs=2, channels_last=False)
    # a convolution with several input channels: for one input channel both layouts are the same strides
    wa, wb = (next(m.weight for m in d.net_.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
              for d in (a, b))
    assert wa.is_contiguous(memory_format=torch.channels_last) and not wa.is_contiguous()
    assert wb.is_contiguous() and not wb.is_contiguous(memory_format=torch.channels_last)
    sa, sb = a.score(x, maps=False).scores, b.score(x, maps=False).scores
    assert np.allclose(sa, sb, rtol=1e-3, atol=1e-4 * np.abs(sb).max()), np.abs(sa - sb).max()


def test_clear_errors():
    with pytest.raises(RuntimeError, match="fit"):
        fcdd.FCDD("fcdd_28").score(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="channels=1"):
        fcdd.FCDD("fcdd_28").fit(torch.zeros(4, 3, 28, 28, dtype=torch.uint8), epochs=1, progress=False)
    with pytest.raises(TypeError, match="uint8"):
        fcdd.FCDD("fcdd_28").fit(torch.zeros(4, 1, 28, 28), epochs=1, progress=False)
    with pytest.raises(ValueError, match="does not fit method"):
        fcdd.make("fcdd", "fmnist", net="hsc_28")
    with pytest.raises(ValueError, match="unknown network"):
        fcdd.FCDD("fcdd_99")


def test_imagenet_setup_trains_on_256px_and_scores_224px_maps():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 256, 256), generator=g, dtype=torch.uint8)
    det = fcdd.make("fcdd", "imagenet30", outliers=torch.randint(0, 256, (4, 3, 256, 256), generator=g,
                                                                 dtype=torch.uint8), batch_size=4, seed=0)
    out = det.fit(x, epochs=1, progress=False).score(x[:2])
    assert out.native.shape == (2, 28, 28) and out.maps.shape == (2, 224, 224)
    assert np.isfinite(out.scores).all()


def test_sweep_figure_from_run_folders(tmp_path):
    import json

    rng = np.random.default_rng(0)
    runs = {}
    for name, native in (("fcdd_28", rng.random((5, 7, 7))), ("hsc_28", rng.random((5, 28, 28)))):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({"auc": 0.5, "network": name}))
        np.savez(d / "maps.npz", native=native.astype(np.float16))
        runs[name] = d
    shown = gallery.fcdd_run_maps(runs["fcdd_28"], [1, 3], 28)
    assert shown.shape == (2, 28, 28)
    expected = fcdd.receptive_upsample(torch.as_tensor(np.load(runs["fcdd_28"] / "maps.npz")["native"][[1, 3]]
                                                       .astype(np.float32)), nets.build("fcdd_28"), 28)
    assert np.allclose(shown, expected.numpy(), atol=1e-6)
    images = rng.integers(0, 255, (5, 1, 28, 28), dtype=np.uint8)
    fig = gallery.fcdd_sweep_figure(runs, images, [0, 2, 4])
    assert len(fig.axes) == 3 * 3                  # input row + one row per run, three columns


def test_wrong_image_size_is_explained():
    with pytest.raises(ValueError, match="size=28"):
        fcdd.FCDD("fcdd_28").fit(torch.zeros(4, 1, 32, 32, dtype=torch.uint8), epochs=1, progress=False)


# ------------------------------------------------------------------------------------------ devices

@pytest.mark.parametrize("method,outliers,extra", [
    ("fcdd", "noise", {}), ("fcdd", "masks", {}), ("fcdd", "noise", {"loss_on": "upsampled"}), ("hsc", "noise", {}),
    ("ae", None, {})])
def test_training_and_scoring_on_another_device_give_the_cpu_numbers(method, outliers, extra, tmp_path):
    """fit / score / display_maps on a second device (tests/fake_device.py: CUDA's device rules on CPU data):
    no operation mixes devices, and the losses, scores and maps are the CPU's (every random draw is made with
    the CPU generator, then moved)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (24, 1, 28, 28), generator=g, dtype=torch.uint8)
    if outliers == "noise":
        oe = pipeline.Outliers.noise_source("uniform", 1, 28)
    elif outliers == "masks":
        oe = pipeline.Outliers(torch.randint(0, 256, (7, 1, 28, 28), generator=g, dtype=torch.uint8),
                               masks=torch.randint(0, 2, (7, 1, 28, 28), generator=g, dtype=torch.uint8))
    else:
        oe = None

    def make(device, channels_last=False):   # exact equality needs one layout (channels-last rounds differently)
        return fcdd.make(method, "fmnist", outliers=oe, seed=1, batch_size=8, device=device,
                         channels_last=channels_last, **extra)

    cpu = make("cpu").fit(x, epochs=1, progress=False)
    expected = cpu.score(x[:5])
    with fake_device() as dev:
        det = make(dev).fit(x, epochs=1, progress=False)
        out = det.score(x[:5])
        shown = det.display_maps(out.maps)
        default = make(dev, channels_last=True).fit(x, epochs=1, progress=False).score(x[:5], maps=False)
    assert np.allclose(default.scores, expected.scores, rtol=1e-4, atol=1e-6), "the default layout on the device"
    assert det.device_ == dev and det.history_ == cpu.history_
    assert np.array_equal(out.scores, expected.scores) and np.array_equal(out.maps, expected.maps)
    assert np.array_equal(shown, cpu.display_maps(expected.maps))
    # a checkpoint written on the CPU scores on the other device (the pipeline's statistics stay on the CPU)
    cpu.save(tmp_path / "model.pt")
    with fake_device() as dev:
        loaded = type(cpu).load(tmp_path / "model.pt", device=dev)
        again = loaded.score(x[:5])
    assert loaded.device_ == dev and np.array_equal(again.scores, expected.scores)
