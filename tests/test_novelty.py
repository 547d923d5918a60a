"""oneclass.methods.novelty: batch min-max normalisation (eq. 6) and its test-time statistics, the two L0 forms, the
paper's networks, and the method's contract (seeded, clear errors)."""
import math

import numpy as np
import pytest
import torch

from oneclass import metrics
from oneclass.methods.novelty import BatchMinMax, L0Linear, NoveltyNormalization
from oneclass.methods.novelty.nets import LeNetAutoencoder


def tiny_images(n=24, channels=1, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


# --- eq. 6 ------------------------------------------------------------------------------------------------------

def test_batch_minmax_known_values_and_gradients():
    s = torch.tensor([[1.0], [2.0], [3.0], [5.0]], requires_grad=True)
    norm = BatchMinMax(1, gradient=True, eps=0.0).train()
    out = norm(s)
    assert torch.allclose(out[:, 0], torch.tensor([0.0, 0.25, 0.5, 1.0]))
    out.mean().backward()
    # d/dS_i of mean_i (S_i - m) / (M - m): 1/(B (M-m)) = 1/16 inside; at the max -sum(S_i - m)/(B (M-m)^2) over
    # the inner samples = -3/64 (raising the max lowers the loss); at the min sum(S_i - M)/(B (M-m)^2) = -5/64.
    assert torch.allclose(s.grad[:, 0], torch.tensor([-5 / 64, 1 / 16, 1 / 16, -3 / 64]))

    s2 = s.detach().clone().requires_grad_(True)
    BatchMinMax(1, gradient=False, eps=0.0).train()(s2).mean().backward()
    # detached statistics: a plain rescaling, 1 / (B (M - m)) everywhere (0 at min and max would need the graph)
    assert torch.allclose(s2.grad[:, 0], torch.full((4,), 1 / 16))


def test_batch_minmax_averages_batch_statistics_and_applies_them_in_eval():
    norm = BatchMinMax(2, eps=0.0).train()
    norm(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
    norm(torch.tensor([[1.0, 20.0], [5.0, 50.0], [3.0, 40.0]]))
    assert torch.allclose(norm.running_min, torch.tensor([0.5, 15.0], dtype=torch.float64))
    assert torch.allclose(norm.running_max, torch.tensor([3.5, 40.0], dtype=torch.float64))
    norm.eval()
    out = norm(torch.tensor([[0.5, 40.0], [3.5, 15.0], [2.0, 27.5]]))
    assert out.dtype == torch.float64   # no float32 ties at test time
    assert torch.allclose(out, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], dtype=torch.float64))
    assert int(norm.count) == 2   # eval does not touch the statistics


def test_batch_minmax_refuses_a_single_sample_and_empty_statistics():
    with pytest.raises(ValueError, match="at least 2 samples"):
        BatchMinMax().train()(torch.ones(1, 1))
    with pytest.raises(RuntimeError, match="fit the model"):
        BatchMinMax().eval()(torch.ones(3, 1))


@pytest.mark.parametrize("norm_stats", ["last_epoch", "all"])
def test_fitted_model_scores_with_the_recorded_batch_statistics(monkeypatch, norm_stats):
    seen = []
    original = BatchMinMax.forward

    def recording(self, s):
        if self.training:
            seen.append((s.detach().min(0).values.clone(), s.detach().max(0).values.clone()))
        return original(self, s)

    monkeypatch.setattr(BatchMinMax, "forward", recording)
    x = tiny_images(20)
    det = NoveltyNormalization(batch_size=8, norm_stats=norm_stats, seed=3).fit(x, epochs=3)
    per_epoch = 3   # 20 images in batches of 8: 8, 8, 4
    assert len(seen) == 3 * per_epoch
    used = seen[-per_epoch:] if norm_stats == "last_epoch" else seen
    lo = torch.stack([u[0] for u in used]).double().mean(0)
    hi = torch.stack([u[1] for u in used]).double().mean(0)
    stats = det.normalisation_stats
    assert np.allclose(stats["min"], lo.numpy(), rtol=1e-6) and np.allclose(stats["max"], hi.numpy(), rtol=1e-6)

    test = tiny_images(10, seed=1)
    out = det.score(test)
    sub = out.subscores
    expected = (sub["combined"] - stats["min"][0]) / (stats["max"][0] - stats["min"][0] + 1e-12)
    assert np.allclose(out.scores, expected, rtol=1e-5, atol=1e-6)
    # the combined score is eq. 7 of the parts
    assert np.allclose(sub["combined"], 0.5 * sub["reconstruction"] + 0.5 * sub["novelty"], atol=1e-6)


def test_terms_normalisation_reweighs_the_two_scores_with_their_own_statistics():
    det = NoveltyNormalization(normalize="terms", batch_size=8, lambda1=0.3, seed=0).fit(tiny_images(16), epochs=1)
    stats = det.normalisation_stats
    assert len(stats["min"]) == 2
    out = det.score(tiny_images(8, seed=2))
    (lr_lo, ns_lo), (lr_hi, ns_hi) = stats["min"], stats["max"]
    sub = out.subscores
    expected = 0.7 * (sub["reconstruction"] - lr_lo) / (lr_hi - lr_lo + 1e-12) \
        + 0.3 * (sub["novelty"] - ns_lo) / (ns_hi - ns_lo + 1e-12)
    assert np.allclose(out.scores, expected, rtol=1e-4, atol=1e-5)


def test_combined_normalisation_cannot_change_the_auc():
    x, test = tiny_images(16), tiny_images(20, seed=5)
    anomaly = np.r_[np.zeros(10), np.ones(10)]
    out = NoveltyNormalization(batch_size=8).fit(x, epochs=1).score(test)
    combined = out.subscores["combined"]
    assert metrics.auc(out.scores, anomaly) == pytest.approx(metrics.auc(combined, anomaly), abs=1e-12)


# --- L0 ---------------------------------------------------------------------------------------------------------

def test_literal_l0_counts_nonzero_weights_and_has_no_gradient():
    layer = L0Linear(4, 3, "literal")
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[0.0, 1e-11, -2.0, 3.0], [1e-9, 0.0, 0.0, 0.0], [5.0] * 4]))
    count = layer.l0()
    assert count.item() == 7.0     # |w| > 1e-10: -2, 3, 1e-9 and four 5s
    assert not count.requires_grad
    # in a loss it changes the value, never the parameters' gradients
    x = torch.randn(5, 4)
    (layer(x).sum() - 1e-5 * layer.l0()).backward()
    g_with = layer.linear.weight.grad.clone()
    layer.linear.weight.grad = None
    layer(x).sum().backward()
    assert torch.equal(g_with, layer.linear.weight.grad)


def test_hard_concrete_gates_follow_louizos_et_al():
    torch.manual_seed(0)
    layer = L0Linear(4, 3, "hard_concrete", init_open=0.9)
    expected = 12 * 1 / (1 + math.exp(-(math.log(9) - (2 / 3) * math.log(0.1 / 1.1))))
    assert layer.l0().item() == pytest.approx(expected, rel=1e-6)
    layer.train()
    g = layer.gates()
    assert g.min() >= 0 and g.max() <= 1 and not torch.equal(g, layer.gates())   # sampled
    layer.eval()
    assert torch.equal(layer.gates(), layer.gates())                             # deterministic
    det_gate = (torch.sigmoid(torch.tensor(math.log(9))) * 1.2 - 0.1).clamp(0, 1)
    assert torch.allclose(layer.gates(), det_gate.expand(3, 4))


@pytest.mark.parametrize("sign,direction", [(1.0, 1), (-1.0, -1)])
def test_hard_concrete_l0_is_trainable_in_the_papers_sign_and_in_louizos_sign(sign, direction):
    """Eq. 4 subtracts lambda2 ||W||_0: minimising it opens gates; Louizos et al.'s penalty (negative lambda2
    here) closes them. The literal count leaves its layer unchanged."""
    torch.manual_seed(0)
    layer = L0Linear(6, 5, "hard_concrete", init_open=0.5)
    before = layer.l0().item()
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        (-sign * layer.l0()).backward()
        opt.step()
    assert (layer.l0().item() - before) * direction > 1.0


def test_l0_none_and_bad_mode():
    assert L0Linear(3, 2, "none").l0().item() == 0.0
    with pytest.raises(ValueError, match="hard_concrete"):
        L0Linear(3, 2, "l1")


# --- networks -----------------------------------------------------------------------------------------------------

def test_paper_networks_have_the_stated_depths_and_codes():
    det = NoveltyNormalization(batch_size=8).fit(tiny_images(8), epochs=1)
    ae, ns = det.model_["ae"], det.model_["ns"]
    assert sum(isinstance(m, torch.nn.Conv2d) for m in ae.encoder) == 2 and ae.encoder[-1].out_features == 32
    assert len(ns.layers) == 2
    det3 = NoveltyNormalization(batch_size=4).fit(tiny_images(4, channels=3, size=32), epochs=1)
    ae3, ns3 = det3.model_["ae"], det3.model_["ns"]
    assert sum(isinstance(m, torch.nn.Conv2d) for m in ae3.encoder) == 3 and ae3.encoder[-1].out_features == 64
    assert len(ns3.layers) == 3
    for m in ae3.encoder:
        if isinstance(m, torch.nn.Conv2d):
            assert m.kernel_size == (5, 5) and m.padding == (2, 2)
    out = det3.score(tiny_images(3, channels=3, size=32))
    assert out.maps.shape == (3, 32, 32) and (out.maps >= 0).all()
    # the wider 28px readings (ours): same depth and code, the channels asked for
    wide = NoveltyNormalization(net="lenet28_32_64", batch_size=8).fit(tiny_images(8), epochs=1)
    convs = [m for m in wide.model_["ae"].encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64] and wide.model_["ae"].encoder[-1].out_features == 32
    assert wide.model_["ae"].encoder[-1].in_features == 64 * 7 * 7 and wide.config_["name"] == "lenet28_32_64"
    # the stride-2 decoder (ours): no fixed interpolation, each transposed conv doubles the resolution itself
    tconv = NoveltyNormalization(net="lenet28_32_64_tconv", batch_size=8).fit(tiny_images(8), epochs=1)
    dec = tconv.model_["ae"].decoder
    assert not any(isinstance(m, torch.nn.Upsample) for m in dec)
    assert [m.stride for m in dec if isinstance(m, torch.nn.ConvTranspose2d)] == [(2, 2), (2, 2)]
    assert tconv.score(tiny_images(3)).maps.shape == (3, 28, 28)
    with pytest.raises(ValueError, match="upsample"):
        LeNetAutoencoder(1, 28, upsample="bilinear")


def test_ablation_variants_switch_the_modules():
    ae = NoveltyNormalization.ablation("ae")
    assert (ae.novelty_scoring, ae.normalize) == (False, "none")
    assert NoveltyNormalization.ablation("ae_norm").normalize == "combined"
    out = NoveltyNormalization.ablation("ae", batch_size=8).fit(tiny_images(8), epochs=1).score(tiny_images(4))
    assert "novelty" not in out.subscores and np.allclose(out.scores, out.subscores["reconstruction"])
    with pytest.raises(ValueError, match="ae_norm"):
        NoveltyNormalization.ablation("ns_only")


def test_same_seed_same_scores_and_other_seed_differs():
    x, test = tiny_images(16), tiny_images(6, seed=9)
    a = NoveltyNormalization(batch_size=8, seed=1).fit(x, epochs=2).score(test).scores
    b = NoveltyNormalization(batch_size=8, seed=1).fit(x, epochs=2).score(test).scores
    c = NoveltyNormalization(batch_size=8, seed=2).fit(x, epochs=2).score(test).scores
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_step_decay_counts_epochs_by_default_and_optimiser_steps_when_asked():
    """Section 4.2's 'decays ... 0.1 for every 30 steps': x lr_gamma every lr_step epochs, or every lr_step optimiser
    steps. 21 images in batches of 4: 5 steps an epoch (the last batch of one is skipped)."""
    x = tiny_images(21)
    by_epoch = NoveltyNormalization(batch_size=4, lr=1.0, lr_step=1, seed=0).fit(x, epochs=3)
    assert [h["lr"] for h in by_epoch.history_] == pytest.approx([1.0, 0.1, 0.01])
    by_step = NoveltyNormalization(batch_size=4, lr=1.0, lr_step=2, lr_step_unit="step", seed=0).fit(x, epochs=2)
    # after 5 steps the milestones 2 and 4 have passed; after 10, also 6 and 8
    assert [h["lr"] for h in by_step.history_] == pytest.approx([1e-2, 1e-4])
    with pytest.raises(ValueError, match="lr_step_unit.*epoch"):
        NoveltyNormalization(lr_step_unit="batch")


def test_bad_input_errors_name_the_fix():
    det = NoveltyNormalization(batch_size=4)
    with pytest.raises(RuntimeError, match="fit"):
        det.score(tiny_images(2))
    with pytest.raises(ValueError, match="x\\[:, None\\]"):
        det.fit(torch.zeros(4, 28, 28, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8 pixels"):       # every detector takes uint8 images (as_images)
        det.fit(torch.full((4, 1, 28, 28), 200.0))
    with pytest.raises(ValueError, match="multiple of 4"):
        det.fit(tiny_images(4, size=30))
    with pytest.raises(ValueError, match="combined"):
        NoveltyNormalization(normalize="batch")
    with pytest.raises(ValueError, match="batch_size"):
        NoveltyNormalization(batch_size=1)


def test_reported_tables_are_consistent_with_their_mean_rows():
    """Transcription check: each method's class values average to its printed mean (Tables 1 and 2)."""
    from oneclass import reported

    f = reported.frame("novelty")
    for table in ("Table 1", "Table 2"):
        t = f[f.table == table]
        for method, rows in t.groupby("method"):
            classes = rows[rows["class"] != "mean"]["value"]
            mean = rows[rows["class"] == "mean"]["value"].item()
            assert len(classes) == 10
            if (table, method) == ("Table 1", "OCSVM"):
                # printed as 95.54 (the same number as Table 4's 'autoencoder only'); its classes average 95.13
                assert mean == 0.9554 and classes.mean() == pytest.approx(0.9513)
                continue
            assert classes.mean() == pytest.approx(mean, abs=0.0015), (table, method)
    assert reported.value("novelty", "Table 4", "cifar10", "+ NS", "mean") == pytest.approx(0.7148)
    assert reported.value("novelty", "Table 5", "cifar10", "+ NS", "bird+cat+dog") == pytest.approx(0.6277)


# ---- issue 16: the paper as written, eq. 5's L2 norm, and the labelled extension


def _fitted_batch(det, n=16, seed=0):
    """``det`` fitted one epoch on random images, in training mode; one batch of them as floats."""
    x = (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)
    det.fit(x, epochs=1)
    det.model_.train()
    return x.float().div(255).to(det.device_)


def test_the_gradient_flows_through_the_batch_min_max_only_when_asked():
    s = torch.tensor([[0.2], [0.9], [0.5], [0.1]], requires_grad=True)
    for gradient in (True, False):
        norm = BatchMinMax(1, gradient=gradient).train()
        out = norm(s)[:, 0]
        (g,) = torch.autograd.grad(out[2], s)       # image 2 is neither the min (3) nor the max (1)
        # detached: only its own entry; through the min / max: the extremes move it too
        assert (g[[1, 3], 0].abs() > 0).all() == gradient and g[2, 0] > 0
        assert g[0, 0] == 0


def test_l2_and_mse_rank_alike_alone_but_not_once_ns_is_added():
    from oneclass.methods.novelty import NoveltyNormalization

    mse = torch.tensor([0.010, 0.020, 0.040])
    l2 = (mse * 784).sqrt()                                    # ||x - x~||_2 of 28 x 28 images with those MSEs
    assert torch.equal(mse.argsort(), l2.argsort())           # alone: a monotone map, the same ranking
    ns = torch.tensor([0.9, 0.5, 0.0])
    det = NoveltyNormalization(lambda1=0.5)
    ranked = [det._combine(r, ns).argsort().tolist() for r in (mse, l2)]
    assert ranked[0] != ranked[1]                              # with NS: the scale of L_r decides the weights


def test_reconstruction_l2_is_the_per_image_norm():
    from oneclass.methods.novelty import NoveltyNormalization

    det = NoveltyNormalization.ablation("ae", reconstruction="l2", batch_size=8, seed=0)
    x = (torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    det.fit(x, epochs=1)
    v = x.float() / 255
    rec, lr_, _ = det._terms(v)
    assert torch.allclose(lr_, (v - rec).flatten(1).norm(dim=1), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown reconstruction"):
        NoveltyNormalization(reconstruction="l1")


def test_the_extension_trains_the_autoencoder_on_raw_reconstruction_only():
    from oneclass.methods.novelty import CONFIGURATIONS, NoveltyNormalization

    det = NoveltyNormalization.ablation("full", "ae_on_raw_reconstruction", batch_size=8, seed=0)
    assert det.ae_loss == "raw_reconstruction" and det.norm_gradient
    v = _fitted_batch(det)
    _, lr_, ns = det._terms(v)
    ae, head = list(det.model_["ae"].parameters()), list(det.model_["ns"].parameters())
    normalised = det._normalised(lr_.detach(), ns).mean()              # the term the NS head learns from
    grads = torch.autograd.grad(normalised, ae + head, allow_unused=True)
    assert all(g is None or not g.any() for g in grads[:len(ae)])     # no gradient reaches the autoencoder
    assert any(g is not None and g.abs().sum() > 0 for g in grads[len(ae):])
    # and the whole loss gives the autoencoder exactly the gradient of the mean raw L_r
    _, lr_, ns = det._terms(v)
    g_loss = torch.autograd.grad(det.loss(lr_, ns), ae, retain_graph=True)
    g_raw = torch.autograd.grad(lr_.mean(), ae)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(g_loss, g_raw))
    paper = NoveltyNormalization.ablation("full", "paper_as_written")
    assert (paper.norm_gradient, paper.l0, paper.reconstruction) == (True, "literal", "l2")
    assert set(CONFIGURATIONS) == {"library_default", "paper_as_written", "ae_on_raw_reconstruction"}
    with pytest.raises(ValueError, match="unknown configuration"):
        NoveltyNormalization.ablation("full", "as_in_the_paper")


def test_gcn_minmax_scales_by_the_training_sets_extremes_and_is_refused_by_name():
    from oneclass.methods.baselines import gcn_l1

    train, test = tiny_images(16, channels=3, size=32), tiny_images(8, channels=3, size=32, seed=1)
    det = NoveltyNormalization(preprocessing="gcn_minmax", batch_size=8).fit(train, epochs=1)
    g = gcn_l1(train.float() / 255)
    assert det.minmax_ == (pytest.approx(float(g.min())), pytest.approx(float(g.max())))
    x = det._input(train.float() / 255)
    assert float(x.min()) == pytest.approx(0, abs=1e-6) and float(x.max()) == pytest.approx(1, abs=1e-6)
    # a test image's contrast is normalised on its own: scaling its pixels' spread leaves the input unchanged
    half = (test.float() / 255 - 0.5) * 0.5 + 0.5
    assert torch.allclose(det._input(half), det._input(test.float() / 255), atol=1e-5)
    plain = NoveltyNormalization(batch_size=8).fit(train, epochs=1)
    assert plain.minmax_ is None and torch.equal(plain._input(train.float() / 255), train.float() / 255)
    assert not np.allclose(det.score(test, maps=False).scores, plain.score(test, maps=False).scores)
    with pytest.raises(ValueError, match="gcn_minmax"):
        NoveltyNormalization(preprocessing="gcn")


def test_ablation_gains_verdicts_on_a_known_table():
    """Two readings x three Table 4 rows x two classes, 3 seeds each: the gains are the differences of the class
    means, the standard error is sqrt(mean over classes of (std_a^2 + std_b^2) / runs / classes), and each gain's
    verdict follows it."""
    import math

    import pandas as pd

    from oneclass.methods import novelty

    base = "novelty_ablation_configurations_mnist"
    rows = []
    # reading A: + Normalization clearly up (+0.05, se 0.0058), + NS down by less than 2 se (-0.005)
    # reading B: + Normalization clearly down (-0.05), + NS clearly up
    means = {"configuration=a": {"Autoencoder only": 0.90, "+ Normalization": 0.95, "+ NS": 0.945},
             "configuration=b": {"Autoencoder only": 0.90, "+ Normalization": 0.85, "+ NS": 0.95}}
    variant = {"Autoencoder only": "ae", "+ Normalization": "ae_norm", "+ NS": "full"}
    paper = {"Autoencoder only": 0.9554, "+ Normalization": 0.9667, "+ NS": 0.9765}
    for reading, per in means.items():
        for method, m in per.items():
            exp = f"{base}.{reading}.variant={variant[method]}"
            for cls in ("3", "8"):
                rows.append(dict(base=base, experiment=exp, method=method, **{"class": cls}, mean=m, std=0.01,
                                 runs=3, paper_value=math.nan))
            rows.append(dict(base=base, experiment=exp, method=method, **{"class": "mean"}, mean=m, std=math.nan,
                             runs=6, paper_value=paper[method]))
    rows.append(dict(base="other", experiment="other", method="+ NS", **{"class": "3"}, mean=0.1, std=0.0, runs=1,
                     paper_value=math.nan))
    out = novelty.ablation_gains(pd.DataFrame(rows), base)
    assert list(out.index) == ["configuration=a", "configuration=b"]
    se = math.sqrt((2 * 0.01 ** 2 / 3) / 2)
    a, b = out.loc["configuration=a"], out.loc["configuration=b"]
    assert a["+ Normalization gain"] == pytest.approx(0.05) and a["+ Normalization gain se"] == pytest.approx(se)
    assert a["paper + Normalization gain"] == pytest.approx(0.0113) and a["paper + NS gain"] == pytest.approx(0.0098)
    assert a["+ Normalization gain verdict"] == "holds" and a["+ NS gain verdict"] == "no clear gain"
    assert b["+ Normalization gain verdict"] == "reversed" and b["+ NS gain verdict"] == "holds"
    assert (a["classes"], a["seeds"]) == (2, 3)
    with pytest.raises(ValueError, match="publish it first"):
        novelty.ablation_gains(pd.DataFrame(rows), "novelty_missing")
    # a subset of classes publishes no paper value on its mean rows: the paper's means are passed in
    subset = pd.DataFrame(rows).assign(paper_value=math.nan)
    assert math.isnan(novelty.ablation_gains(subset, base).loc["configuration=a", "paper + NS gain"])
    given = novelty.ablation_gains(subset, base, paper=pd.Series(paper))
    assert given.loc["configuration=b", "paper + Normalization gain"] == pytest.approx(0.0113)


def test_table_readings_keep_complete_readings_best_first_against_the_goal():
    """Three published Table 1 readings: two over all ten digits (means 0.9700 and 0.9600 against 0.9765) and one
    over four digits, which is left out; 0.9700 is within the goal of 0.01, 0.9600 is not; two seeds of one
    reading count as seeds=2; minutes per run come from the mean seconds."""
    import math

    import pandas as pd

    from oneclass.methods import novelty

    def mean_row(exp, mean, classes, runs, seconds, paper_value=0.9765, **kw):
        return {"paper": "novelty", "table": "Table 1", "dataset": "mnist", "metric": "auc", "experiment": exp,
                "method": exp, "preset": "quick", "mean": mean, "classes": classes, "runs": runs, "seconds": seconds,
                "paper_value": paper_value, "diff": mean - paper_value, "torch_threads": 1, "budget": "30 epochs",
                "commit": "c" * 40, "class": "mean"} | kw

    rows = [mean_row("b", 0.9600, 10, 10, 120.0), mean_row("a", 0.9700, 10, 20, 600.0),
            mean_row("subset", 0.9900, 4, 4, 60.0, paper_value=0.968),
            mean_row("cifar", 0.9900, 10, 10, 60.0, dataset="cifar10"),
            dict(mean_row("a", 0.9910, 10, 2, 600.0), **{"class": "3"})]
    out = novelty.table_readings(pd.DataFrame(rows))
    assert list(out["experiment"]) == ["a", "b"]
    assert list(out["within_goal"]) == [True, False]
    assert out["gap"].tolist() == pytest.approx([-0.0065, -0.0165])
    assert list(out["seeds"]) == [2, 1] and out["minutes_per_run"].tolist() == pytest.approx([10.0, 2.0])
    assert novelty.table_readings(pd.DataFrame(rows), goal=0.02)["within_goal"].all()
    assert not math.isnan(out.loc[0, "paper"])
    with pytest.raises(ValueError, match="all 10 classes of fmnist"):
        novelty.table_readings(pd.DataFrame(rows), dataset="fmnist")


# --- section 4.2's layout as printed ----------------------------------------------------------------------------

def test_autoencoder_without_batch_norm_has_biases_and_no_mode_dependence():
    from torch import nn
    from oneclass.methods.novelty.nets import LeNetAutoencoder

    x = tiny_images(6).float() / 255
    layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    for batch_norm in (True, False):
        torch.manual_seed(0)
        ae = LeNetAutoencoder(1, 28, (8, 4), 32, batch_norm=batch_norm)
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in ae.modules())
        biased = [m.bias is not None for m in ae.modules() if isinstance(m, layers)]
        ae.train()
        train_out = ae(x)[0]
        ae.eval()
        eval_out = ae(x)[0]
        assert train_out.shape == eval_out.shape == x.shape
        if batch_norm:   # Deep SVDD's layout: BN in place of biases, only the output layer has one
            assert has_bn and biased == [False] * (len(biased) - 1) + [True]
            assert not torch.allclose(train_out, eval_out)   # batch statistics vs running averages
        else:            # every layer biased, nothing that behaves differently in training
            assert not has_bn and all(biased)
            assert torch.equal(train_out, eval_out)


def test_an_autoencoder_that_returns_one_image_for_every_input_is_reported():
    import warnings
    x = tiny_images(16)
    with warnings.catch_warnings():               # a trained autoencoder that varies with its input: no warning
        warnings.filterwarnings("error", message="NoveltyNormalization: the autoencoder has collapsed")
        det = NoveltyNormalization(batch_size=8, seed=0).fit(x, epochs=1)
    assert det.output_spread_ > det.COLLAPSE_RATIO * det.input_spread_ > 0
    last = [m for m in det.model_["ae"].modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    with torch.no_grad():
        last.weight.zero_()                         # the output is now sigmoid(bias): one image for all inputs
    with pytest.warns(RuntimeWarning, match=r"collapsed to one output image .*try a lower learning rate than 0.001 or "
                                            r"another seed") as caught:
        det._check_collapse(det._input(x.float() / 255))
    assert det.output_spread_ == 0.0
    # batch norm and raw pixels are already in use: the advice does not suggest them
    assert "ae_batch_norm" not in str(caught[0].message) and "preprocessing" not in str(caught[0].message)
    det.ae_batch_norm, det.preprocessing, det.minmax_ = False, "gcn_minmax", (0.0, 1.0)
    with pytest.warns(RuntimeWarning, match=r"try batch norm \(ae_batch_norm=True\), pixels without GCN"):
        det._check_collapse(det._input(x.float() / 255))


def test_ae_batch_norm_is_passed_to_the_network_and_checked():
    det = NoveltyNormalization(ae_batch_norm=False, batch_size=8, seed=0).fit(tiny_images(16), epochs=1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in det.model_["ae"].modules())
    assert det.get_params()["ae_batch_norm"] is False
    with pytest.raises(ValueError, match="ae_batch_norm must be True"):
        NoveltyNormalization(ae_batch_norm="none")
