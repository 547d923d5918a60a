"""Learning curves: how a fit's metrics move with training, so that a reduced budget says how far it is from
the paper's (still climbing, plateaued, or drifting towards a shortcut).

A :class:`Monitor` is handed to an iterative method's ``fit(..., monitor=m)``. Every ``every`` epochs (a
fraction means every that share of an epoch, for presets that train less than one) it scores a fixed, stratified
subset of the test set and records the optimiser step, the epoch, the training seconds so far (without the
monitor's own time), the mean training loss since the last point, the subset's AUC and any probes (further
labelled sets, e.g. FCDD's nominal training images against held-out outlier-exposure images). A last point is
taken on the finished detector, so with ``size=None`` (the whole test set) it equals the run's final AUC.

The monitor does not change training: it scores in eval mode without gradients, on a forked global RNG, with
the subset drawn by a generator of its own, and puts every module back in the mode it found it in. The same
seed gives the same final weights with and without it (``tests/test_monitor.py``).

    mon = Monitor(test, every=1, size=1000)
    det.fit(train, epochs=5, monitor=mon)
    run.save_curve(mon.frame())
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from . import metrics
from .methods import training


def stratified_subset(anomaly, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``size`` items, nominal and anomalous in their proportions (each at least one
    where it exists), drawn with a generator of their own; all indices when ``size`` is None or not smaller."""
    y = np.asarray(anomaly).astype(int).reshape(-1)
    if size is None or size >= len(y):
        return np.arange(len(y))
    if size < 2:
        raise ValueError(f"monitor_size must be at least 2 (one nominal, one anomalous image), got {size}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == cls) for cls in (0, 1)]
    groups = [g for g in groups if len(g)]
    # each class at least one image, the rest in proportion; the largest class takes what rounding leaves
    counts = [max(1, int(round(size * len(g) / len(y)))) for g in groups]
    big = int(np.argmax([len(g) for g in groups]))
    counts[big] = size - (sum(counts) - counts[big])
    picked = [rng.choice(g, size=min(k, len(g)), replace=False) for g, k in zip(groups, counts)]
    return np.sort(np.concatenate(picked))


def _labelled(data, what: str):
    """(images, anomaly) from an ImageSet-like object with ``.images`` / ``.anomaly`` or a pair."""
    if isinstance(data, tuple) and len(data) == 2:
        images, anomaly = data
    else:
        images, anomaly = getattr(data, "images", None), getattr(data, "anomaly", None)
    if images is None or anomaly is None:
        raise ValueError(f"the monitor's {what} needs images and 0/1 anomaly labels: pass an ImageSet with "
                         "anomaly labels or a pair (images, anomaly)")
    anomaly = np.asarray(anomaly.cpu() if hasattr(anomaly, "cpu") else anomaly).astype(int).reshape(-1)
    if len(anomaly) != len(images):
        raise ValueError(f"the monitor's {what} has {len(images)} images and {len(anomaly)} labels")
    if set(np.unique(anomaly)) != {0, 1}:
        raise ValueError(f"the monitor's {what} must hold nominal (0) and anomalous (1) images, got labels "
                         f"{sorted(set(np.unique(anomaly).tolist()))}")
    return images, anomaly


@contextlib.contextmanager
def evaluating(det):
    """The detector as its ``score`` expects it mid-training: every module in eval mode, no gradients, the global
    RNG forked (nothing drawn here moves the training's draws), the fitted flag set; all restored after."""
    modules = [m for m in vars(det).values() if isinstance(m, torch.nn.Module)]
    modes = [[(sub, sub.training) for sub in m.modules()] for m in modules]
    device = getattr(det, "device_", torch.device("cpu"))
    cuda = [device] if getattr(device, "type", "cpu") == "cuda" else []
    fitted = getattr(det, "_fitted", False)
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            for m in modules:
                m.eval()
            det._fitted = True
            yield det
    finally:
        det._fitted = fitted
        for pairs in modes:
            for sub, mode in pairs:
                sub.training = mode


class Monitor:
    """A learning curve of one fit (see the module docstring).

    ``test``: an ImageSet with ``anomaly`` labels (or a pair (images, anomaly)); ``every``: epochs between points
    (0.25: four points per epoch); ``size``: test images in the stratified subset (None: all); ``probes``: name ->
    labelled set, each giving an extra AUC column ``auc_<name>``; ``seed`` draws the subset.
    """

    def __init__(self, test, every: float = 1.0, size: int | None = 1000, probes: dict | None = None, seed: int = 0):
        if not every or every <= 0:
            raise ValueError(f"monitor_every must be a positive number of epochs, got {every}")
        images, anomaly = _labelled(test, "test set")
        self.index = stratified_subset(anomaly, size, seed)
        self.images, self.anomaly = images[torch.as_tensor(self.index)], anomaly[self.index]
        self.probes = {}
        for name, data in (probes or {}).items():
            self.probes[name] = _labelled(data, f"probe {name!r}")
        self.every = float(every)
        self.records: list[dict] = []
        self.eval_seconds = 0.0
        self._steps_per_epoch = None

    # -- called by the training loops
    def start(self, det, steps_per_epoch: int) -> None:
        """Begin a fit of ``steps_per_epoch`` optimiser steps per epoch: points every ``round(every * that)``
        steps (at least one), and a first point before any step."""
        self._steps_per_epoch = max(1, int(steps_per_epoch))
        self._every_steps = max(1, int(round(self.every * self._steps_per_epoch)))
        self.records, self.eval_seconds = [], 0.0
        self._step, self._losses = 0, []
        self._train_seconds, self._since = 0.0, time.perf_counter()
        self._record(det, final=False)

    def step(self, det, loss: float) -> None:
        """One optimiser step done with training loss ``loss``; scores the subset when a point is due."""
        if self._steps_per_epoch is None:
            raise RuntimeError("Monitor.step before Monitor.start: the fit must call start(det, steps_per_epoch)")
        self._step += 1
        # a diverged step stops the fit here, naming the epoch, instead of scoring a network of NaNs
        self._losses.append(training.check_loss(loss, (self._step - 1) // self._steps_per_epoch + 1,
                                                type(det).__name__))
        if self._step % self._every_steps == 0:
            self._record(det, final=False)

    def finish(self, det) -> None:
        """The fit is complete (the detector is fitted): the last point, scored as the run scores."""
        if self._steps_per_epoch is None:
            return
        loss = None
        if self.records and self.records[-1]["step"] == self._step:
            loss = self.records.pop()["loss"]     # replaced by the finished detector's point at the same step
        self._record(det, final=True, loss=loss)

    # -- the curve
    @staticmethod
    def _scores(det, images, final: bool) -> np.ndarray:
        """The finished detector's own scores; mid-training its ``monitor_scores`` where it has one."""
        if not final and hasattr(det, "monitor_scores"):
            return np.asarray(det.monitor_scores(images), dtype=np.float64)
        return np.asarray(det.score(images, maps=False).scores, dtype=np.float64)

    def _record(self, det, final: bool, loss: float | None = None) -> None:
        now = time.perf_counter()
        self._train_seconds += now - self._since
        with torch.no_grad() if final else evaluating(det):
            scores = self._scores(det, self.images, final)
            probes = {k: self._scores(det, x, final) for k, (x, _) in self.probes.items()}
        rec = {"step": self._step, "epoch": self._step / self._steps_per_epoch,
               "train_seconds": self._train_seconds,
               "loss": loss if loss is not None else float(np.mean(self._losses)) if self._losses else np.nan,
               "auc": metrics.auc(scores, self.anomaly), "final": final}
        for k, s in probes.items():
            rec[f"auc_{k}"] = metrics.auc(s, self.probes[k][1])
        self._losses = []
        self.records.append(rec)
        self._since = time.perf_counter()
        self.eval_seconds += self._since - now

    def frame(self):
        """The curve as a DataFrame (one row per point), with the monitor's cost in ``attrs``."""
        import pandas as pd

        f = pd.DataFrame(self.records)
        f.attrs["eval_seconds"] = self.eval_seconds
        f.attrs["subset"] = len(self.index)
        return f

    @property
    def cost(self) -> float:
        """The monitor's seconds as a share of the training seconds."""
        train = self.records[-1]["train_seconds"] if self.records else 0.0
        return self.eval_seconds / train if train > 0 else float("nan")


def plot(curve, paper: float | None = None, title: str | None = None):
    """One run's learning curve: every AUC column (test subset, probes) against the epoch, the training loss on a
    second axis, the paper's final number as a dashed line. Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    aucs = [c for c in curve.columns if c.startswith("auc")]
    long = curve.melt(id_vars=["epoch"], value_vars=aucs, var_name="metric", value_name="AUC")
    long["metric"] = long["metric"].map(lambda c: "test AUC (subset)" if c == "auc" else c.replace("auc_", "AUC: "))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    sns.lineplot(data=long, x="epoch", y="AUC", hue="metric", marker="o", ax=ax)
    if paper is not None and np.isfinite(paper):
        ax.axhline(paper, ls="--", color="k", lw=1, label=f"paper (final): {paper:.3f}")
    loss_ax = ax.twinx()
    loss_ax.plot(curve["epoch"], curve["loss"], color="grey", lw=1, alpha=0.6, label="training loss")
    loss_ax.set_ylabel("training loss", color="grey")
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = loss_ax.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, fontsize=8, loc="lower right")
    ax.set_title(title or "learning curve")
    fig.tight_layout()
    return fig


def for_run(test, every: float | None, size: int | None = 1000, probes: dict | None = None, seed: int = 0,
            missing: dict | None = None):
    """The notebooks' monitor: a :class:`Monitor` when ``every`` (the ``monitor_every`` parameter) is set, else
    None (fit then records nothing). Probes that are None (no held-out set for them) are left out, with the
    reason from ``missing`` (name -> why) printed."""
    if not every:
        return None
    for name, why in (missing or {}).items():
        if (probes or {}).get(name) is None and why:
            print(f"no {name} probe on the learning curve: {why}")
    return Monitor(test, every=every, size=size, probes={k: v for k, v in (probes or {}).items() if v is not None},
                   seed=seed)


def report(run, monitor, paper: float | None = None, title: str | None = None):
    """After a monitored fit: curve.parquet into the run folder, the points as a table, the monitor's cost, and
    the figure (returns (curve, figure); (None, None) without a monitor)."""
    if monitor is None:
        return None, None
    curve = monitor.frame()
    run.save_curve(curve)
    train = curve["train_seconds"].iloc[-1]
    print(f"learning curve: {len(curve)} points on {curve.attrs['subset']} test images; the monitor took "
          f"{monitor.eval_seconds:.1f} s = {monitor.cost:.1%} of the {train:.1f} s of training")
    shown = curve.drop(columns=["final"]).round({"epoch": 2, "train_seconds": 1, "loss": 4})
    try:
        from IPython.display import display
        display(shown.round(4))
    except ImportError:     # pragma: no cover - outside Jupyter
        print(shown.round(4).to_string(index=False))
    return curve, plot(curve, paper, title)
