"""The GEOM paper's competitors (oneclass.baselines): known inputs -> known outputs, the paper's rules, and the
difference between the oracle (hindsight) and the honest (held-out) OC-SVM selection."""

import numpy as np
import pytest
import torch

from oneclass.methods import baselines as B
from oneclass import metrics


class Images:
    """The part of an ImageSet the detectors read."""

    def __init__(self, images, anomaly=None):
        self.images, self.anomaly = images, anomaly

    def __len__(self):
        return len(self.images)


def blobs(n, bright, size=28, channels=1, seed=0):
    """Dark images with a small bright square (nominal) or a large one (anomalous) at one of four places: an easy
    one-class task whose nominal images differ by more than noise but, like real classes, have near neighbours
    (a held-out image with no near neighbour in the training set is rejected by every RBF kernel)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 10, (n, channels, size, size), generator=g).to(torch.uint8)
    side = 14 if bright else 6
    for i, (r, c) in enumerate((4 + 8 * torch.randint(0, 2, (n, 2), generator=g)).tolist()):
        x[i, :, r:r + side, c:c + side] = 220
    return x


@pytest.fixture(scope="module")
def easy():
    train = Images(blobs(24, False))
    test_x = torch.cat([blobs(10, False, seed=1), blobs(10, True, seed=2)])
    return train, Images(test_x, torch.tensor([0] * 10 + [1] * 10))


def test_prepare_scales_to_minus_one_one_and_pads_black():
    x = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 0, 0] = 255
    out = B.prepare(x, 32)
    assert out.shape == (2, 1, 32, 32)
    assert out[0, 0, 2, 2] == 1.0 and out[0, 0, 0, 0] == -1.0 and out.min() == -1.0
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        B.prepare(torch.full((1, 1, 32, 32), 2.0))
    with pytest.raises(ValueError, match="larger than the network input"):
        B.prepare(torch.zeros(1, 1, 40, 40, dtype=torch.uint8), 32)


def test_svdd_center_pushes_small_coordinates_to_plus_minus_eps():
    outputs = torch.tensor([[0.02, -0.10, 0.5, -0.3, 0.0, 0.09],
                            [0.06, 0.02, 0.3, -0.1, 0.0, -0.29]])
    # means: 0.04, -0.04, 0.4, -0.2, 0.0, -0.1
    c = B.svdd_center(outputs, eps=0.1)
    np.testing.assert_allclose(c.numpy(), [0.1, -0.1, 0.4, -0.2, 0.1, -0.1], atol=1e-7)
    with pytest.raises(ValueError, match="network outputs"):
        B.svdd_center(torch.zeros(0, 3))


def test_gcn_l1_zero_mean_unit_l1_and_invariant_to_affine_pixel_scaling():
    x = torch.rand(3, 1, 8, 8) * 0.5 + 0.2
    y = B.gcn_l1(x)
    np.testing.assert_allclose(y.flatten(1).mean(1).numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(y.flatten(1).abs().mean(1).numpy(), 1, atol=1e-5)
    np.testing.assert_allclose(B.gcn_l1(2 * x - 1).numpy(), y.numpy(), atol=1e-5)


def test_deep_svdd_centre_score_and_gradient_maps(easy):
    train, test = easy
    det = B.DeepSVDD(size=32, seed=0).fit(train, epochs=0, ae_epochs=0)
    assert det.net_.fc.out_features == 32 and [m.out_channels for m in det.net_.modules()
                                               if isinstance(m, torch.nn.Conv2d)] == [8, 4]
    x = det._input(train)
    assert float(x.min()) == pytest.approx(0.0, abs=1e-6) and float(x.max()) == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        z = det.net_(x)
    np.testing.assert_allclose(det.c_.numpy(), B.svdd_center(z).numpy(), atol=1e-6)
    assert (det.c_.abs() >= 0.1 - 1e-7).all()
    out = det.score(test, maps=True)
    with torch.no_grad():
        expected = ((det.net_(det._input(test)) - det.c_) ** 2).sum(1).numpy()
    np.testing.assert_allclose(out.scores, expected, rtol=1e-5)
    assert out.maps.shape == (20, 28, 28) and (out.maps >= 0).all()


def test_deep_svdd_training_lowers_the_objective_and_is_deterministic(easy):
    train, test = easy
    a = B.DeepSVDD(size=32, batch_size=8, seed=3).fit(train, epochs=3, ae_epochs=1)
    b = B.DeepSVDD(size=32, batch_size=8, seed=3).fit(train, epochs=3, ae_epochs=1)
    assert a.history_[-1] < a.history_[0]
    np.testing.assert_array_equal(a.score(test).scores, b.score(test).scores)


def test_decoders_mirror_encoders_at_32_and_64px():
    for c, size in [(1, 32), (3, 32), (3, 64)]:
        x = torch.zeros(2, c, size, size)
        enc, dec = B.ConvEncoder(c, size, 7, "linear"), B.ConvDecoder(c, size, 7)
        assert dec(enc(x)).shape == x.shape
        arch = B.SVDD_NETS[c]
        net, ldec = B.LeNet(c, size, **arch), B.LeNetDecoder(c, size, **arch)
        assert ldec(net(x)).shape == x.shape
    with pytest.raises(ValueError, match="power of two"):
        B.ConvEncoder(1, 28)


def test_consistency_criterion():
    assert B.consistent(0.1, 0.1, 100)
    assert B.consistent(0.16, 0.1, 100)          # nu + 2 * sqrt(0.1 * 0.9 / 100) = 0.16
    assert not B.consistent(0.17, 0.1, 100)
    assert not B.consistent(1.0, 0.9, 5)         # the bound (1.17) would allow rejecting everything


def test_ocsvm_hindsight_and_heldout_look_at_different_data(easy, monkeypatch):
    train, test = easy
    seen = []
    real = B.OCSVM._features

    def spy(self, images):
        seen.append(id(images))
        return real(self, images)

    monkeypatch.setattr(B.OCSVM, "_features", spy)
    hind = B.OCSVM("raw", "hindsight", size=32, seed=0).fit(train, hindsight_test=test)
    assert id(test) in seen                                    # the oracle scores the labelled test set
    assert hind.selected_on_["data"] == "test" and hind.selected_on_["labels_used"]
    seen.clear()
    held = B.OCSVM("raw", "heldout", size=32, seed=0).fit(train)
    assert id(test) not in seen                                # the honest choice never touches it
    info = held.selected_on_
    assert info["data"] == "heldout_nominal" and not info["labels_used"]
    assert len(np.intersect1d(info["heldout_index"], info["fit_index"])) == 0
    assert len(info["heldout_index"]) == round(0.2 * len(train))
    assert all("test_auc" not in r for r in held.grid_) and all("test_auc" in r for r in hind.grid_)
    # the oracle's pick follows the labels: inverted labels make it pick the grid's worst point instead
    best = max(hind.grid_, key=lambda r: r["test_auc"])
    assert (hind.nu_, hind.gamma_) == (best["nu"], best["gamma"])
    assert metrics.auc(hind.score(test).scores, test.anomaly) == pytest.approx(best["test_auc"])
    flipped = B.OCSVM("raw", "hindsight", size=32).fit(train, hindsight_test=Images(test.images, 1 - test.anomaly))
    worst = min(hind.grid_, key=lambda r: r["test_auc"])
    if worst["test_auc"] < best["test_auc"]:
        assert flipped.grid_ != hind.grid_
        assert max(r["test_auc"] for r in flipped.grid_) == pytest.approx(1 - worst["test_auc"])
    with pytest.raises(ValueError, match="hindsight_test"):
        B.OCSVM("raw", "hindsight").fit(train)
    with pytest.raises(ValueError, match="must not"):
        B.OCSVM("raw", "heldout").fit(train, hindsight_test=test)


def test_raw_ocsvm_precomputed_grid_matches_sklearn_rbf(easy):
    from sklearn.svm import OneClassSVM

    train, test = easy
    det = B.OCSVM("raw", "hindsight", nus=(0.3,), gammas=(2.0 ** -7,), size=32).fit(train, hindsight_test=test)
    xtr = B.prepare(train, 32).flatten(1).double().numpy()
    xte = B.prepare(test, 32).flatten(1).double().numpy()
    ref = OneClassSVM(nu=0.3, gamma=2.0 ** -7).fit(xtr).decision_function(xte)
    assert det.grid_[0]["test_auc"] == pytest.approx(metrics.auc(-ref, test.anomaly))
    np.testing.assert_allclose(det.score(test).scores, -ref, rtol=1e-6)


def test_gmm_energy_matches_scipy_mixture():
    from scipy.stats import multivariate_normal

    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 3, generator=g, dtype=torch.float64)
    gamma = torch.softmax(torch.randn(50, 2, generator=g, dtype=torch.float64), 1)
    phi, mu, sigma = B.gmm_parameters(z, gamma)
    np.testing.assert_allclose(phi.sum().item(), 1.0)
    dens = sum(phi[k].item() * multivariate_normal(mu[k].numpy(), sigma[k].numpy()).pdf(z.numpy()) for k in range(2))
    np.testing.assert_allclose(B.gmm_energy(z, phi, mu, sigma).numpy(), -np.log(dens), rtol=1e-8)


def test_batched_adam_step_equals_torch_adam():
    # Keras adds eps to sqrt(v) before the bias correction, torch after: equal when eps is negligible
    p = torch.randn(4, 3)
    q = p.clone().requires_grad_(True)
    opt = torch.optim.Adam([q], lr=0.25, betas=(0.5, 0.999), eps=1e-12)
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    for t in range(1, 4):
        grad = torch.sin(p * t)
        p = B.adgan._adam_step(p, grad, m, v, t, 0.25, 0.5, eps=1e-12)
        q.grad = grad.clone()
        opt.step()
    np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_dsebm_score_is_the_energy_and_map_its_gradient(easy):
    train, test = easy
    det = B.DSEBM(size=32, batch_size=8, seed=0).fit(train, epochs=1)
    out = det.score(test, maps=True)
    x = B.prepare(test, 32).requires_grad_(True)
    e = 0.5 * ((x - det.energy_.b) ** 2).flatten(1).sum(1) - det.energy_.encoder(x).sum(1)
    np.testing.assert_allclose(out.scores, e.detach().numpy(), rtol=1e-5)
    (g,) = torch.autograd.grad(e.sum(), x)
    np.testing.assert_allclose(out.maps, g.abs().sum(1)[:, 2:30, 2:30].numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", B.METHODS)
def test_each_method_fits_and_scores_tiny_data(easy, method):
    train, test = easy
    hyper = {"size": 32, "seed": 0}
    fit = {"epochs": 1}
    if method == "adgan":
        hyper.update(batches_per_epoch=1, n_seeds=2, steps=1, batch_size=8)
        test = Images(test.images[8:12], test.anomaly[8:12])
    if method.endswith("ocsvm"):
        fit["hindsight_test"] = test
    if method == "deep_svdd":
        fit["ae_epochs"] = 1
    det = B.build(method, **hyper).fit(train, **fit)
    out = det.score(test)
    assert out.scores.shape == (len(test),) and np.isfinite(out.scores).all()
    # the distance- and support-based competitors separate the easy task's large squares from the small ones
    # after one epoch; the energy and generative ones are untrained at this budget (DSEBM's energy is still
    # ~0.5||x||^2, which ranks the bright squares as *more* normal)
    if method in ("deep_svdd", "raw_ocsvm", "cae_ocsvm"):
        assert metrics.auc(out.scores, test.anomaly) > 0.5, method
    assert (out.maps is not None) == (method in ("deep_svdd", "dsebm"))
    with pytest.raises(ValueError, match="unknown method"):
        B.build("svdd")


def test_easy_task_is_detected(easy):
    train, test = easy
    for sel in ("hindsight", "heldout"):
        det = B.OCSVM("raw", sel, size=32)
        det.fit(train, **({"hindsight_test": test} if sel == "hindsight" else {}))
        assert metrics.auc(det.score(test).scores, test.anomaly) > 0.9, sel


def test_dagmm_fits_its_mixture_to_the_training_codes_and_scores_their_energy(easy):
    """After training, phi / mu / Sigma are the membership-weighted moments of the training codes (DAGMM eq. 5,
    computed here in numpy) and the score is -log sum_k phi_k N(z | mu_k, Sigma_k) (scipy)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    train, test = easy
    det = B.build("dagmm", size=32, seed=0).fit(train, epochs=2)
    assert len(det.history_) == 2 and np.isfinite(det.history_).all()
    with torch.no_grad():
        z = det._z(B.prepare(train, 32))[0].double()
        g = det.model_["estimation"](z.float()).double().numpy()
        zt = det._z(B.prepare(test, 32))[0].double().numpy()
    z = z.numpy()
    nk = g.sum(0)
    np.testing.assert_allclose(det.phi_.numpy(), nk / len(z), rtol=1e-6)
    mu = g.T @ z / nk[:, None]
    np.testing.assert_allclose(det.mu_.numpy(), mu, rtol=1e-5, atol=1e-8)
    for k in range(len(nk)):
        d = z - mu[k]
        sigma = (g[:, k, None] * d).T @ d / nk[k] + 1e-3 * np.eye(z.shape[1])
        np.testing.assert_allclose(det.sigma_[k].numpy(), sigma, rtol=1e-5, atol=1e-8)
    logp = np.stack([np.log(det.phi_[k].item()) + multivariate_normal(det.mu_[k].numpy(), det.sigma_[k].numpy())
                     .logpdf(zt) for k in range(len(nk))], 1)
    np.testing.assert_allclose(det.score(test).scores, -logsumexp(logp, axis=1), rtol=1e-6)


def test_cae_ocsvm_scores_with_an_svm_on_the_trained_encoders_codes(easy):
    """CAE-OC-SVM trains its autoencoder (the loss falls), then scores with -decision_function of scikit-learn's
    OneClassSVM fitted, here by hand, on the encoder's codes of the training images with the chosen (nu, gamma)."""
    from sklearn.svm import OneClassSVM

    train, test = easy
    det = B.build("cae_ocsvm", size=32, seed=0).fit(train, epochs=3, hindsight_test=test)
    assert det.history_[-1] < det.history_[0]
    codes = det._features(train)
    assert codes.shape[0] == 24 and codes.std(0).max() > 0
    svm = OneClassSVM(kernel="rbf", nu=det.nu_, gamma=det.gamma_).fit(codes)
    np.testing.assert_allclose(det.score(test).scores, -svm.decision_function(det._features(test)), rtol=1e-6)


def test_adgan_score_without_inversion_steps_is_the_mse_of_its_seeded_draws(easy):
    """With steps=0 the inversion keeps its starting points: the score is the mean over n_seeds of the MSE
    between G(z) and the image, z drawn from a generator seeded with seed + 1 (recomputed here)."""
    train, test = easy
    det = B.build("adgan", size=32, seed=3, batches_per_epoch=2, n_seeds=3, steps=0, batch_size=8,
                  chunk=2).fit(train, epochs=1)
    assert len(det.history_) == 1 and np.isfinite(det.history_[0])
    imgs = B.prepare(test, 32)[:4]
    gen = torch.Generator().manual_seed(4)
    want = []
    with torch.no_grad():
        for s in range(0, 4, 2):
            z = torch.randn(2 * 3, det.noise_dim, generator=gen)
            mse = ((det.generator_(z) - imgs[s:s + 2].repeat_interleave(3, 0)) ** 2).flatten(1).mean(1)
            want.append(mse.reshape(2, 3).mean(1))
    test4 = type(test)(test.images[:4], test.anomaly[:4])
    np.testing.assert_allclose(det.score(test4).scores, torch.cat(want).numpy(), rtol=1e-5)


def test_dagmm_last_batch_scores_with_exactly_the_last_batchs_mixture_and_the_authors_epsilons(easy, monkeypatch):
    """gmm_fit='last_batch' (the GEOM authors' code): the fitted phi / mu / Sigma are the ones the last training
    batch estimated, and the energy is -log sum_k (phi_k exp(-maha/2) / sqrt(det(2 pi Sigma_k) + 1e-7) + 1e-7)."""
    from oneclass.methods.baselines import dagmm as D

    seen = []
    original = D.gmm_parameters

    def recording(z, gamma, jitter=1e-3):
        out = original(z, gamma, jitter)
        seen.append(tuple(t.detach().clone() for t in out))
        return out

    monkeypatch.setattr(D, "gmm_parameters", recording)
    train, test = easy
    det = B.build("dagmm", size=32, seed=0, gmm_fit="last_batch").fit(train, epochs=2)
    last = seen[-1]
    assert all(torch.equal(a, b) for a, b in zip((det.phi_, det.mu_, det.sigma_), last))
    full = B.build("dagmm", size=32, seed=0).fit(train, epochs=2)
    assert not torch.allclose(full.phi_, det.phi_)
    # the authors' energy, by hand, for one component at the origin with unit covariance in one dimension
    z = torch.tensor([[0.0], [3.0], [100.0]], dtype=torch.float64)
    e = D.gmm_energy(z, torch.ones(1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64),
                     torch.eye(1, dtype=torch.float64)[None], eps=1e-7)
    expected = [-np.log(np.exp(-0.5 * v * v) / np.sqrt(2 * np.pi + 1e-7) + 1e-7) for v in (0.0, 3.0, 100.0)]
    np.testing.assert_allclose(e.numpy(), expected, rtol=1e-12)
    assert e[2].item() == pytest.approx(-np.log(1e-7))       # far away: saturated at -log(K eps)
    with pytest.raises(ValueError, match="gmm_fit must be"):
        B.DAGMM(gmm_fit="batch")


def test_adgan_batch_of_one_generator_step_is_training_mode_batch_norm_on_one_image(easy):
    """inversion_bn='batch_of_one' (the GEOM authors' code): the generator step sees batch norm normalised by the
    one image's own statistics, so the first (1-d) batch norm outputs its bias whatever z is; on a batch of
    several it equals PyTorch's training mode; the running statistics are left alone; the scores then differ
    from inference mode after a few steps, and are identical without steps."""
    import copy

    from oneclass.methods.baselines import adgan, common

    G = common.ConvDecoder(1, 32)
    torch.nn.init.normal_(G.fc[1].bias)
    one = adgan.batch_stat_copy(G)
    assert [n for n, _ in one.named_parameters()] == [n for n, _ in G.named_parameters()]
    h = one.fc(torch.randn(1, 256))
    assert torch.allclose(h, torch.relu(G.fc[1].bias.detach())[None])
    z = torch.randn(4, 256)
    reference = copy.deepcopy(G).train()
    before = G.fc[1].running_mean.clone()
    assert torch.allclose(one(z), reference(z), atol=1e-5)
    assert torch.equal(G.fc[1].running_mean, before)
    train, test = easy
    test4 = type(test)(test.images[:4], test.anomaly[:4])
    kw = dict(size=32, seed=3, batches_per_epoch=2, n_seeds=2, batch_size=8, chunk=2)
    det = B.build("adgan", steps=3, **kw).fit(train, epochs=1)
    ours = det.score(test4).scores
    det.inversion_bn = "batch_of_one"
    authors = det.score(test4).scores
    assert np.isfinite(authors).all() and not np.allclose(ours, authors)
    det.steps = 0
    det.inversion_bn = "inference"
    a = det.score(test4).scores
    det.inversion_bn = "batch_of_one"
    np.testing.assert_allclose(det.score(test4).scores, a, rtol=1e-6)
    with pytest.raises(ValueError, match="inversion_bn must be one of"):
        B.build("adgan", inversion_bn="train")
