"""The heatmap explorer: pick a finished run, move eta, switch the normalisation scope, colormap, blur and order.

Every setting goes through :func:`oneclass.gallery.run_figure` (and so through FCDD's appendix A normalisation),
so what the widgets show is what a static gallery with the same settings shows.
"""
from __future__ import annotations

from pathlib import Path

from . import gallery
from .runs import finished_runs, outputs_root

CMAPS = ("jet", "viridis", "inferno", "gray", "RdBu_r")


def runs_with_maps(outputs: str | Path | None = None) -> list[Path]:
    """Finished runs below ``outputs`` whose maps.npz has a gallery (newest first)."""
    import numpy as np

    found = []
    for run in finished_runs(outputs_root(outputs)):
        if (run / "maps.npz").exists():
            with np.load(run / "maps.npz") as z:
                if "upsampled" in z.files:
                    found.append(run)
    return sorted(found, key=lambda p: (p / "metrics.json").stat().st_mtime, reverse=True)


def explorer(outputs: str | Path | None = None, run: str | Path | None = None):
    """An ipywidgets panel over the finished runs; returns the widget (display it in a live notebook)."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    root = outputs_root(outputs)
    choices = runs_with_maps(root)
    if not choices:
        raise FileNotFoundError(f"no finished run with heatmaps under {root}; run a batch first "
                                "(python -m oneclass.batch params/fcdd/fmnist.yaml --preset smoke)")
    labels = [(str(p.relative_to(root)), p) for p in choices]
    pick = w.Dropdown(options=labels, value=Path(run) if run else choices[0], description="run",
                      layout=w.Layout(width="60%"))
    eta = w.FloatSlider(value=0.97, min=0.5, max=1.0, step=0.01, description="eta")
    scope = w.ToggleButtons(options=gallery.SCOPES, value="figure", description="scope")
    cmap = w.Dropdown(options=CMAPS, value="jet", description="colormap")
    sigma = w.FloatSlider(value=0.0, min=0.0, max=4.0, step=0.25, description="blur sigma")
    group = w.ToggleButtons(options=("anomalous", "nominal"), value="anomalous", description="images")
    order = w.ToggleButtons(options=(("most anomalous first", True), ("most nominal first", False)), value=True,
                            description="sort")
    count = w.IntSlider(value=8, min=2, max=16, description="images")
    out = w.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            fig = gallery.run_figure(pick.value, group.value, count.value, eta.value, scope.value, sigma.value,
                                     cmap.value, order.value)
            display(fig)
            plt.close(fig)

    for control in (pick, eta, scope, cmap, sigma, group, order, count):
        control.observe(redraw, names="value")
    redraw()
    panel = w.VBox([pick, w.HBox([eta, sigma, count]), w.HBox([scope, cmap]), w.HBox([group, order]), out])
    return panel
