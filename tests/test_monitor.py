"""oneclass.monitor: learning curves that leave training as it was (same seed, same final weights and scores),
end on the run's own number, and stop a diverged fit with a clear error."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oneclass import metrics
from oneclass.monitor import Monitor, stratified_subset
from test_conformance import CASES, _images

# every method whose fit accepts a monitor (iterative training on the images)
MONITORED = ["FCDD", "HSC", "AE", "GEOM", "NoveltyNormalization", "DeepSVDD", "DSEBM", "DAGMM", "ADGAN", "Autoencoder"]


def _data(name):
    c, size = CASES[name][2]
    train = _images(48, c, size, 0)
    test = torch.cat([_images(12, c, size, 5), 255 - _images(8, c, size, 6)])
    return train, test, np.r_[np.zeros(12), np.ones(8)].astype(int)


def _state(det):
    """Every tensor of every module of the fitted detector, by name."""
    out = {}
    for key, m in vars(det).items():
        if isinstance(m, torch.nn.Module):
            out |= {f"{key}.{k}": v.detach().clone() for k, v in m.state_dict().items()}
    return out


@pytest.mark.parametrize("name", MONITORED)
def test_the_monitor_changes_nothing_and_ends_on_the_final_auc(name):
    factory, kwargs, (c, size) = CASES[name]
    kwargs = {**{k: (_images(16, c, size, 2) if v == "val" else v) for k, v in kwargs.items()}, "epochs": 2}
    train, test, anomaly = _data(name)
    plain = factory(0).fit(train, **kwargs)
    mon = Monitor((test, anomaly), every=0.5, size=None)
    watched = factory(0).fit(train, **kwargs, monitor=mon)
    a, b = _state(plain), _state(watched)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{name}: {k} differs with the monitor"
    final = plain.score(test, maps=False).scores
    np.testing.assert_array_equal(watched.score(test, maps=False).scores, final)

    curve = mon.frame()
    steps_per_epoch = mon._steps_per_epoch
    # a point before training, every half epoch, and the finished detector's at the end
    assert curve["step"].iloc[0] == 0 and np.isnan(curve["loss"].iloc[0])
    assert curve["final"].tolist() == [False] * (len(curve) - 1) + [True]
    assert curve["step"].iloc[-1] == 2 * steps_per_epoch and curve["epoch"].iloc[-1] == pytest.approx(2.0)
    assert len(curve) == 1 + 2 * steps_per_epoch // mon._every_steps
    assert curve["auc"].iloc[-1] == pytest.approx(metrics.auc(final, anomaly), abs=1e-12)
    assert (np.diff(curve["train_seconds"]) >= 0).all() and np.isfinite(curve["loss"].iloc[1:]).all()
    assert curve.attrs["subset"] == len(test) and mon.eval_seconds > 0


def test_the_curves_loss_is_the_mean_of_the_steps_since_the_last_point():
    factory, kwargs, _ = CASES["GEOM"]
    train, test, anomaly = _data("GEOM")
    mon = Monitor((test, anomaly), every=0.25, size=None)
    det = factory(0).fit(train, epochs=1, monitor=mon)
    every = mon._every_steps
    curve = mon.frame()
    for i, row in curve.iloc[1:-1].iterrows():
        want = np.mean(det.history_[int(row["step"]) - every:int(row["step"])])
        assert row["loss"] == pytest.approx(want, rel=1e-12)


def test_subset_is_stratified_fixed_and_the_whole_set_when_not_smaller():
    y = np.r_[np.zeros(900), np.ones(100)]
    idx = stratified_subset(y, 200, seed=3)
    assert len(idx) == 200 and y[idx].sum() == 20 and len(set(idx)) == 200
    np.testing.assert_array_equal(idx, stratified_subset(y, 200, seed=3))
    assert not np.array_equal(idx, stratified_subset(y, 200, seed=4))
    np.testing.assert_array_equal(stratified_subset(y, None), np.arange(1000))
    np.testing.assert_array_equal(stratified_subset(y, 5000), np.arange(1000))
    assert y[stratified_subset(np.r_[np.zeros(999), 1], 10)].sum() == 1       # a rare class keeps one image
    with pytest.raises(ValueError, match="at least 2"):
        stratified_subset(y, 1)


def test_probes_get_their_own_auc_column():
    factory, kwargs, _ = CASES["AE"]
    train, test, anomaly = _data("AE")
    probe = (torch.cat([train[:10], 255 - train[:10]]), np.r_[np.zeros(10), np.ones(10)])
    mon = Monitor((test, anomaly), every=1, size=None, probes={"inverted": probe})
    det = factory(0).fit(train, epochs=1, monitor=mon)
    curve = mon.frame()
    assert "auc_inverted" in curve
    want = metrics.auc(det.score(probe[0], maps=False).scores, probe[1])
    assert curve["auc_inverted"].iloc[-1] == pytest.approx(want, abs=1e-12)


def test_bad_monitor_input_is_refused_before_training():
    train, test, anomaly = _data("AE")
    with pytest.raises(ValueError, match="nominal \\(0\\) and anomalous \\(1\\)"):
        Monitor((test, np.zeros(len(test))))
    with pytest.raises(ValueError, match="20 images and 3 labels"):
        Monitor((test, [0, 1, 1]))
    with pytest.raises(ValueError, match="positive number of epochs"):
        Monitor((test, anomaly), every=0)


def test_a_diverging_fit_stops_naming_the_epoch_instead_of_writing_nan_points():
    from oneclass.methods import fcdd

    train, test, anomaly = _data("AE")
    det = fcdd.make("ae", "fmnist", seed=0, lr=1e30, batch_size=8, device="cpu")
    mon = Monitor((test, anomaly), every=0.25, size=None)
    with pytest.raises(FloatingPointError, match="AE: the training loss became (nan|inf) in epoch 1"):
        det.fit(train, epochs=3, monitor=mon)
    assert all(np.isfinite(r["auc"]) for r in mon.records)


def test_held_out_outliers_never_enter_the_training_pool(tmp_path):
    """outliers(..., holdout=k): k images of the source set aside (seeded), the pool keeps the rest; holdout=0
    gives the same pool as before; the probe pairs nominal training images with the held-out ones."""
    from PIL import Image

    from oneclass.methods import fcdd

    rng = np.random.default_rng(0)
    for i in range(30):
        (tmp_path / "oe" / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "oe" / f"c{i % 3}" / f"{i}.png")
    folder = str(tmp_path / "oe")
    everything = fcdd.outliers(folder, "cifar10", seed=1)
    oe = fcdd.outliers(folder, "cifar10", seed=1, holdout=8)
    assert len(everything) == 30 and everything.heldout is None and len(oe) == 22 and len(oe.heldout) == 8
    key = lambda t: t.numpy().tobytes()
    pool, held, full = {key(t) for t in oe.images}, {key(t) for t in oe.heldout}, {key(t) for t in everything.images}
    assert not pool & held and pool | held == full
    np.testing.assert_array_equal(fcdd.outliers(folder, "cifar10", seed=1, holdout=8).heldout, oe.heldout)
    with pytest.raises(ValueError, match="leaves no outlier-exposure images"):
        fcdd.outliers(folder, "cifar10", holdout=30)
    train = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    (images, anomaly), why = fcdd.training_task_probe(train, oe, "cifar10", n=5)
    assert why is None and anomaly.tolist() == [0] * 5 + [1] * 5
    assert {key(t) for t in images[5:]} <= held and {key(t) for t in images[:5]} <= {key(t) for t in train}
    probe, why = fcdd.training_task_probe(train, everything, "cifar10")
    assert probe is None and "outlier_holdout" in why
