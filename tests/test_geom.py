"""GEOM: transformations, Dirichlet fit and scores, the method's contract (paper 001, REFERENCE_FACTS GEOM)."""
import numpy as np
import pytest
import torch

from oneclass.methods import geom
from oneclass.methods.geom import GEOM, WRN, Transform, wrn_for


def ramp(size=32, channels=1):
    """An image whose pixel value is its flat index: a transformation's output shows where each pixel came from."""
    return torch.arange(channels * size * size, dtype=torch.float32).reshape(1, channels, size, size)


def apply_one(x, t: Transform, size=32):
    return geom.apply(x, [0], geom.index_maps([t], size))


# ------------------------------------------------------------------------------------------ transformations

def test_72_transformations_in_the_authors_index_order():
    ts = geom.transformations("geom72", 32)
    assert len(ts) == 72
    for flip in (0, 1):
        for i_tx, tx in enumerate((0, -8, 8)):
            for i_ty, ty in enumerate((0, -8, 8)):
                for k in range(4):
                    assert ts[36 * flip + 12 * i_tx + 4 * i_ty + k] == Transform(bool(flip), tx, ty, k)
    assert ts[0] == geom.IDENTITY
    # 64px CatsVsDogs: translations of 16
    assert {abs(t.tx) for t in geom.transformations("geom72", 64)} == {0, 16}


def test_72_transformations_are_distinct_on_an_image():
    x = torch.rand(1, 3, 32, 32)
    maps = geom.index_maps(geom.transformations("geom72", 32), 32)
    out = geom.apply(x.expand(72, -1, -1, -1), torch.arange(72), maps).reshape(72, -1)
    assert torch.cdist(out, out).add(torch.eye(72) * 1e9).min() > 1e-3


def test_flips_and_rotations_are_invertible_translations_are_not():
    x = ramp()
    for t in geom.transformations("geom8", 32):
        y = apply_one(x, t)
        assert torch.equal(y.flatten().sort().values, x.flatten())           # a permutation of the pixels
        back = torch.rot90(y, -t.k, dims=(-2, -1))
        back = back.flip(-1) if t.flip else back
        assert torch.equal(back, x)
    y = apply_one(x, Transform(False, 8, 0, 0))
    assert y.flatten().unique().numel() < x.numel()                           # 8 columns lost, some repeated


def test_rotation_is_counter_clockwise_and_flip_is_horizontal():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 3] = 1                                                         # top-right corner
    rot = geom.apply(x, [0], geom.index_maps([Transform(False, 0, 0, 1)], 4))
    assert rot[0, 0, 0, 0] == 1                                               # CCW: top-right -> top-left
    flip = geom.apply(x, [0], geom.index_maps([Transform(True, 0, 0, 0)], 4))
    assert flip[0, 0, 0, 0] == 1


def test_translation_pads_symmetrically_repeating_the_edge_pixel():
    x = ramp(8)
    y = apply_one(x, Transform(False, 2, 0, 0), size=8)[0, 0]                 # content moves right by 2
    row = x[0, 0, 3]
    assert torch.equal(y[3, 2:], row[:6])
    assert torch.equal(y[3, :2], torch.stack([row[1], row[0]]))               # numpy 'symmetric': x1 x0 | x0 x1
    np.testing.assert_array_equal(y.numpy(), np.pad(x[0, 0].numpy(), ((0, 0), (2, 0)), mode="symmetric")[:, :8])
    up = apply_one(x, Transform(False, 0, -3, 0), size=8)[0, 0]               # content moves up by 3
    np.testing.assert_array_equal(up[-3:].numpy(), x[0, 0].numpy()[[7, 6, 5]])


def test_composition_order_is_flip_then_translate_then_rotate():
    x = torch.rand(1, 2, 16, 16)
    t = Transform(True, 4, -4, 3)
    expect = x.flip(-1).numpy()
    expect = np.pad(expect, ((0, 0), (0, 0), (4, 4), (4, 4)), mode="symmetric")[:, :, 8:24, 0:16]
    expect = np.rot90(expect, 3, axes=(2, 3))
    np.testing.assert_array_equal(apply_one(x, t, 16).numpy(), expect)


def test_batched_apply_matches_per_image_and_keeps_gradients():
    ts = geom.transformations("geom72", 32)
    maps = geom.index_maps(ts, 32)
    x = torch.rand(5, 3, 32, 32, requires_grad=True)
    idx = torch.tensor([0, 71, 13, 40, 7])
    out = geom.apply(x, idx, maps)
    for i, t in enumerate(idx.tolist()):
        assert torch.equal(out[i:i + 1], apply_one(x[i:i + 1].detach(), ts[t]))
    out.sum().backward()
    assert x.grad.sum() == out.numel()                                       # every output pixel traced back


def test_subsets_and_bad_transformation_input():
    pair = geom.transformations([geom.IDENTITY, (True, 0, 0, 0)], 28)
    assert pair == [geom.IDENTITY, Transform(True, 0, 0, 0)]
    assert len(geom.transformations("geom8")) == 8
    with pytest.raises(ValueError, match="unknown transformation set"):
        geom.transformations("geom73")
    with pytest.raises(ValueError, match="duplicate"):
        geom.transformations([geom.IDENTITY, (False, 0, 0, 4)])
    with pytest.raises(ValueError, match="at least 2"):
        geom.transformations([geom.IDENTITY])
    with pytest.raises(ValueError, match="square"):
        geom.apply(torch.rand(1, 1, 32, 30), [0], geom.index_maps([geom.IDENTITY], 32))


# ------------------------------------------------------------------------------------------------ Dirichlet

def test_inverse_digamma_inverts_digamma():
    from scipy.special import digamma
    x = np.array([1e-3, 0.05, 0.7, 1.0, 3.3, 50.0, 1e4])
    np.testing.assert_allclose(geom.inverse_digamma(digamma(x)), x, rtol=1e-8)


@pytest.mark.parametrize("alpha", [[0.5, 1.0, 2.0], [5.0, 0.2, 0.2, 12.0], [0.05] * 6 + [3.0]])
def test_dirichlet_fit_recovers_known_parameters(alpha):
    alpha = np.array(alpha)
    rng = np.random.default_rng(0)
    # Sample in log space (log-gamma via Marsaglia-Tsang is not needed: gamma(a) = gamma(a+1) * U^(1/a)) so
    # that small alphas do not underflow to p = 0.
    g = np.log(rng.gamma(alpha + 1, size=(20000, alpha.size))) + np.log(rng.uniform(size=(20000, alpha.size))) / alpha
    log_p = g - np.logaddexp.reduce(g, axis=1, keepdims=True)
    fit = geom.fit_dirichlet(log_p)
    assert fit.converged
    np.testing.assert_allclose(fit.alpha, alpha, rtol=0.05)


def test_dirichlet_fit_survives_underflowed_probabilities():
    log_p = np.full((50, 3), -1.0)
    log_p[:, 0] = -900.0                                                      # exp() underflows to exactly 0
    log_p -= np.logaddexp.reduce(log_p, axis=1, keepdims=True)
    log_p[::2, 0] -= 5                                                         # some spread, else alpha diverges
    fit = geom.fit_dirichlet(log_p, max_iter=200)
    assert np.all(np.isfinite(fit.alpha)) and np.all(fit.alpha > 0)
    with pytest.raises(ValueError, match="log_softmax"):
        geom.fit_dirichlet_stats(np.ones(3) / 3, np.array([-np.inf, -1.0, -1.0]))


def test_scores_are_finite_when_the_softmax_underflows():
    logits = torch.tensor([[[0.0, 2000.0], [3000.0, 0.0]]])                   # p = 0 exactly in float32
    assert torch.isinf(torch.log(torch.softmax(logits, -1))).any()            # what log(softmax) would give
    lp = torch.log_softmax(logits, -1)
    n = geom.dirichlet_normality(lp, torch.tensor([[2.0, 1.5], [1.2, 3.0]]))
    assert torch.isfinite(n).all()
    assert n.item() == pytest.approx(0.5 * ((2 - 1) * -2000.0 + (3 - 1) * -3000.0))
    assert torch.isfinite(geom.simplified_normality(lp)).all()


def test_dirichlet_normality_and_simplified_score_by_hand():
    p = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]])
    alpha = torch.tensor([[3.0, 1.0, 0.5], [1.0, 4.0, 1.0], [0.5, 0.5, 2.0]])
    want = ((alpha - 1) * p.log()).sum(-1).mean()
    assert geom.dirichlet_normality(p.log(), alpha).item() == pytest.approx(want.item(), rel=1e-6)
    assert geom.simplified_normality(p.log()).item() == pytest.approx((0.7 + 0.8 + 0.4) / 3, rel=1e-6)


# ------------------------------------------------------------------------------------------ network, method

def test_wrn_shapes_and_sizes():
    net = WRN(10, 4, 72, 3)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 72)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(1.21e6, rel=0.02)
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    big = wrn_for(64, 72, 3)
    assert (big.depth, big.widen) == (16, 8)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WRN(12, 4)
    with pytest.raises(ValueError, match="expects"):
        net(torch.rand(2, 1, 32, 32))


def _toy_digits(n=24, size=12, seed=0):
    """Nominal: a bright bar in the top-left quadrant (not flip/rotation invariant). Anomalies: a centred cross
    (invariant, so the transformation is unguessable)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    x[:, :, 1:5, 1:3] = 255
    x = (x.float() + torch.rand(x.shape, generator=g) * 30).clamp(0, 255).to(torch.uint8)
    a = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    a[:, :, size // 2 - 1: size // 2 + 1, 2:-2] = 255
    a[:, :, 2:-2, size // 2 - 1: size // 2 + 1] = 255
    return x, a


def test_geom_learns_a_toy_problem_and_keeps_the_contract():
    from oneclass import metrics
    torch.manual_seed(0)
    train, anomalies = _toy_digits()
    det = GEOM("geom8", depth=10, widen=1, batch_size=32, eval_batch_size=64, seed=0).fit(train, epochs=6)
    assert det.alpha_.shape == (8, 8) and torch.isfinite(det.alpha_).all()
    assert det.history_[-1] < det.history_[0]
    test, _ = _toy_digits(8, seed=1)
    imgs = torch.cat([test, anomalies[:8]])
    out = det.score(imgs, maps=True)
    assert out.scores.shape == (16,) and np.isfinite(out.scores).all()
    np.testing.assert_allclose(out.scores, -out.subscores["normality_dirichlet"])  # higher = more anomalous
    assert metrics.auc(out.scores, [0] * 8 + [1] * 8) > 0.9
    assert out.maps.shape == (16, 12, 12) and (out.maps >= 0).all()
    # bfloat16 autocast (the quick presets' speed option) keeps the ranking
    assert det.precision_ == "fp32"
    det.precision_ = "bf16"
    from scipy.stats import spearmanr
    assert spearmanr(det.score(imgs).scores, out.scores)[0] > 0.9
    det.precision_ = "fp32"
    # the same seed gives the same numbers, whatever the global torch state
    torch.manual_seed(31337)
    again = GEOM("geom8", depth=10, widen=1, batch_size=32, eval_batch_size=64, seed=0).fit(train, epochs=6)
    np.testing.assert_allclose(again.score(imgs).scores, out.scores, rtol=1e-5)


def test_simplified_score_kind_and_fit_limit(monkeypatch):
    """score_kind='simplified' trains the same network (same seed) and scores with the mean probability of the
    right transformation, computed here by hand from the classifier's softmax; fit_limit fits the Dirichlets on
    that many distinct training images and leaves the network alone."""
    train, anomalies = _toy_digits()
    kw = dict(depth=10, widen=1, batch_size=32, eval_batch_size=64, seed=0, precision="fp32")
    base = GEOM("geom8", **kw).fit(train, epochs=1)
    simple = GEOM("geom8", score_kind="simplified", **kw).fit(train, epochs=1)
    imgs = torch.cat([train[:4], anomalies[:4]])
    out = base.score(imgs, maps=False)
    with torch.no_grad():
        x = base._prepare(imgs)
        logits = torch.stack([base._forward(geom.apply(x[[i] * 8], torch.arange(8), base.maps_))
                              for i in range(len(x))])                               # (B, T, T)
    hand = torch.softmax(logits.double(), -1).diagonal(dim1=1, dim2=2).mean(1).numpy()
    np.testing.assert_allclose(out.subscores["normality_simplified"], hand, rtol=1e-5)
    np.testing.assert_allclose(simple.score(imgs, maps=False).scores, -hand, rtol=1e-5)
    assert not np.allclose(out.scores, -hand)                 # the default is the Dirichlet score

    seen = []
    real = GEOM._softmax_stats
    monkeypatch.setattr(GEOM, "_softmax_stats", lambda self, x, progress: (seen.append(x.clone()), real(self, x,
                                                                                                 progress))[1])
    limited = GEOM("geom8", fit_limit=5, **kw).fit(train, epochs=1)
    (fit_x,) = seen
    assert fit_x.shape[0] == 5 and len({tuple(r.flatten().tolist()) for r in fit_x}) == 5
    for a, b in zip(limited.net_.state_dict().values(), base.net_.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.allclose(limited.alpha_, base.alpha_)


def test_geom_pads_small_images_and_crops_maps_back():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (6, 1, 10, 10), dtype=torch.uint8)
    det = GEOM([geom.IDENTITY, (True, 0, 0, 0)], size=12, depth=10, widen=1, batch_size=4).fit(x, epochs=1)
    assert det.maps_.shape == (2, 144)
    padded = det._prepare(x)
    assert padded.shape == (6, 1, 12, 12) and (padded[:, :, 0] == -1).all()  # black (0 -> -1) border
    assert det.explain(x[:2]).shape == (2, 10, 10)


def test_geom_bad_input_errors():
    with pytest.raises(ValueError, match="score_kind must be"):
        GEOM(score_kind="likelihood")
    with pytest.raises(ValueError, match="precision must be"):
        GEOM(precision="fp16")
    with pytest.raises(RuntimeError, match="not fitted"):
        GEOM().score(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="scaled to \\[-1, 1\\]"):
        GEOM().fit(torch.rand(4, 1, 32, 32) * 255)
    with pytest.raises(ValueError, match="larger than the network input"):
        GEOM(size=28).fit(torch.zeros(4, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="at least 2 training images"):
        GEOM().fit(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))


def test_dirichlet_fits_of_many_transformations_at_once_equal_one_by_one():
    rng = np.random.default_rng(1)
    p = rng.dirichlet([2.0, 0.5, 1.0, 4.0], size=(3, 500))                   # 3 transformations x 500 images
    mean_p, mean_lp = p.mean(1), np.log(p).mean(1)
    both = geom.fit_dirichlet_stats(mean_p, mean_lp)
    for t in range(3):
        one = geom.fit_dirichlet_stats(mean_p[t], mean_lp[t])
        np.testing.assert_allclose(both.alpha[t], one.alpha, rtol=1e-12)
    assert both.converged and both.alpha.shape == (3, 4)


# ---- section 6 and Figure 1 as the authors' code runs them


def test_intuition_network_layer_shapes_and_keras_defaults():
    import math

    from oneclass.methods.geom import IntuitionNet

    net = IntuitionNet(1, 32, 2)
    assert net.conv.weight.shape == (32, 1, 3, 3) and net.conv.padding == (1, 1)
    assert net.fc1.weight.shape == (10, 32 * 16 * 16) and net.head.weight.shape == (2, 10)
    assert (net.bn1.eps, net.bn1.momentum, net.bn2.eps, net.bn2.momentum) == (1e-3, 0.01, 1e-3, 0.01)
    bound = math.sqrt(6 / (32 * 16 * 16 + 10))                 # Glorot uniform: |w| <= sqrt(6 / (fan_in + fan_out))
    assert net.fc1.weight.abs().max() <= bound and net.fc1.weight.abs().max() > 0.9 * bound
    assert float(net.fc1.bias.detach().abs().sum()) == 0.0
    assert net(torch.zeros(5, 1, 32, 32)).shape == (5, 2)


def test_section6_translation_moves_content_up_as_the_authors_and_right_as_ours():
    img = torch.zeros(1, 1, 28, 28)
    img[0, 0, 14, 10] = 1.0
    for kind, where in (("translate", (7, 10)), ("translate_right", (14, 17))):
        ts = geom.transformations(kind, 28)
        out = geom.apply(img, [1], geom.index_maps(ts, 28))
        assert tuple(torch.nonzero(out[0, 0] == 1)[0].tolist()) == where, kind


def test_ascent_step_masks_weak_gradient_entries_then_blurs_like_scipy():
    from scipy.ndimage import gaussian_filter

    from oneclass.methods.geom import intuition

    g = np.random.default_rng(0)
    x, grad = g.random((2, 1, 8, 8)), g.normal(size=(2, 1, 8, 8))
    out = intuition.ascent_step(torch.from_numpy(x), torch.from_numpy(grad), eta=5.0, keep_quantile=0.8,
                                blur_sigma=0.28).numpy()
    for i in range(2):       # the authors' step, one image at a time, in numpy
        strength = np.abs(grad[i] * x[i])
        kept = np.where(strength < np.percentile(strength, 80), 0.0, grad[i])
        assert (kept != 0).sum() == 13              # 64 entries, the top 20% (ties aside) survive
        want = gaussian_filter(x[i, 0] + 5.0 * kept[0], 0.28)
        assert np.allclose(out[i, 0], want, atol=1e-12)
    done = intuition.finish(torch.from_numpy(out)).numpy()
    for i in range(2):
        c = np.clip(out[i], 0, 1)
        c[c < np.percentile(np.abs(c), 80)] = 0
        assert np.array_equal(done[i], c)


def test_the_authors_ascent_needs_unit_pixels_and_keeps_a_fifth_of_the_pixels():
    from oneclass.methods.geom import intuition

    x = (torch.rand(24, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    det = geom.GEOM("geom8", **intuition.AUTHORS, seed=0).fit(x, epochs=2)
    start = x[:3]
    end = det.maximize_normality(start, steps=20, rule="authors")
    assert end.shape == (3, 1, 28, 28) and end.min() >= 0 and end.max() <= 1
    assert ((end > 0).reshape(3, -1).sum(1) <= 0.2 * 32 * 32 + 1).all()   # zeroed below the 80th percentile (32 px)
    with pytest.raises(ValueError, match="pixel_range='unit'"):
        geom.GEOM("flip", size=28, seed=0).fit(x, epochs=0.1).maximize_normality(start, steps=1, rule="authors")


# ------------------------------------------------------------------------ compression cues (ours)

def _textured(n=300, seed=0):
    """Smooth random colour fields with pixel noise: exact pixels, no JPEG grid in them."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 255
    x = torch.nn.functional.interpolate(low, size=32, mode="bicubic", align_corners=False)
    return (x + torch.randn(n, 3, 32, 32, generator=g) * 12).clamp(0, 255).round().to(torch.uint8)


def test_luma_table_is_libjpegs_scaling_of_the_standard_table():
    from oneclass.methods.geom.cues import LUMA_Q50, luma_table
    assert (luma_table(50) == LUMA_Q50).all()
    assert luma_table(75)[0].tolist() == [8, 6, 5, 8, 12, 20, 26, 31]        # what PIL writes at quality 75
    assert luma_table(100).max() == 1 and luma_table(25)[0, 0] == 32
    assert luma_table(30)[7, 7] == 164          # libjpeg scales by 5000 // quality (integer), not 5000 / quality
    for bad in (0, 101, 75.5, True):
        with pytest.raises(ValueError, match="quality must be an integer in 1..100"):
            luma_table(bad)


def test_compression_cues_read_geoms_rotation_and_shift_off_jpeg_and_not_off_exact_pixels():
    from oneclass.data.core import jpeg_images
    from oneclass.methods.geom.cues import compression_cues
    x = _textured()
    exact = compression_cues(x)
    assert abs(exact["transpose"] - 0.5) < 0.1 and abs(exact["shift"] - 0.5) < 0.1, exact
    upright = compression_cues(jpeg_images(x, 75))
    assert upright["transpose"] > 0.95 and upright["shift"] > 0.95, upright
    # read 4 px off the JPEG grid the same rule sees only content: the control stays at chance
    assert abs(upright["transpose_off_grid"] - 0.5) < 0.1, upright
    # encoded in random orientations the luminance lattice no longer says which way up; the colour block edges stay
    # at multiples of 16 px whatever the orientation, so an 8-px shift is still read
    turned = compression_cues(jpeg_images(x, 75, "random"))
    assert abs(turned["transpose"] - 0.5) < 0.1 and turned["shift"] > 0.95, turned
    # one channel: no colour planes, no shift cue; the luminance lattice is there
    grey = compression_cues(jpeg_images(x[:, :1].contiguous(), 75))
    assert grey["shift"] is None and grey["transpose"] > 0.95


def test_compression_cues_refuses_float_or_non_square_images():
    from oneclass.methods.geom.cues import compression_cues
    with pytest.raises(ValueError, match="uint8 images"):
        compression_cues(torch.rand(4, 3, 32, 32))
    with pytest.raises(ValueError, match="square images"):
        compression_cues(torch.zeros(4, 3, 32, 24, dtype=torch.uint8))


def test_compression_cues_say_none_where_there_is_nothing_to_read():
    from oneclass.methods.geom.cues import compression_cues
    # Fashion-MNIST's side: a turn also moves the 8-px grid by 4 px, a cue this rule does not measure
    out = compression_cues(torch.zeros(4, 1, 28, 28, dtype=torch.uint8))
    assert out == {"transpose": None, "transpose_off_grid": None, "shift": None, "images": 4}
    # quality 100 quantises every frequency by 1: a symmetric table, no turn to read
    assert compression_cues(_textured(8), quality=100)["transpose"] is None
    # at 64 px GEOM shifts by 16, onto the colour block grid again: the grid cannot tell the shift
    assert compression_cues(_textured(8).repeat_interleave(2, 2).repeat_interleave(2, 3))["shift"] is None
