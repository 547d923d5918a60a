"""Table 4's claims read from published results: does each module add what the paper says, under each reading?

:func:`ablation_gains` takes the published frame (``oneclass.tables.published_frame()``) and one ablation
experiment whose runs vary ``variant`` (ae / ae_norm / full) and, optionally, another axis (``configuration``); it
returns one row per reading with the three means over classes, each step's gain beside the paper's, and a verdict
that accounts for seed noise.
"""
from __future__ import annotations

import math

import pandas as pd

#: Table 4's rows in order, as ``reported`` names them; each claim is that a row beats the one before it.
STEPS = ("Autoencoder only", "+ Normalization", "+ NS")


def _reading(experiment: str) -> str:
    """The experiment folder's axes other than ``variant`` ('configuration=paper_as_written'), or 'default'."""
    from ...params import axes_of   # published tables only: keeps yaml out of the detector's imports

    return ".".join(f"{k}={v}" for k, v in axes_of(experiment).items() if k != "variant") or "default"


def ablation_gains(frame: pd.DataFrame, base: str, z: float = 2.0, paper=None) -> pd.DataFrame:
    """Per reading of ``base`` (an ablation experiment): the mean AUC over its classes of each Table 4 row, the
    gains '+ Normalization' - 'Autoencoder only' and '+ NS' - '+ Normalization' beside the paper's, and a verdict
    per gain: 'holds' (ours above zero by more than ``z`` standard errors), 'reversed' (below zero by as much) or
    'no clear gain'. The standard error of a gain comes from the seeds' standard deviation per class
    (``std`` / sqrt(``runs``) of each of the two rows, averaged over the classes); a single seed has none, and its
    verdict says so. ``paper``: the paper's Table 4 value per row (a mapping or Series, e.g. from
    ``oneclass.reported``); by default the published mean rows' ``paper_value``, which publish leaves empty when
    the experiment ran a subset of the classes (the paper's gains are over all of them)."""
    rows = frame[(frame["base"] == base) & (frame["class"].astype(str) != "mean")]
    if rows.empty:
        raise ValueError(f"no published per-class rows of {base!r}: publish it first "
                         f"(python -m oneclass.tables --publish outputs/<preset> results/<preset>)")
    unknown = sorted(set(rows["method"]) - set(STEPS))
    if unknown:
        raise ValueError(f"{base!r} has methods {unknown} that are not Table 4's rows {list(STEPS)}")
    if paper is None:
        paper = frame[(frame["base"] == base) & (frame["class"].astype(str) == "mean")].groupby("method")["paper_value"].first()
    paper = dict(paper)
    out = []
    for reading, part in rows.assign(reading=[_reading(e) for e in rows["experiment"]]).groupby("reading"):
        by = part.set_index(["method", "class"])
        classes = sorted(set(part["class"]))
        rec = {"reading": reading, "classes": len(classes), "seeds": int(part["runs"].min())}
        for step in STEPS:
            rec[step] = by.loc[step, "mean"].mean() if step in by.index.get_level_values(0) else math.nan
        for a, b in zip(STEPS, STEPS[1:]):
            label = f"{b} gain"
            rec[label] = rec[b] - rec[a]
            rec[f"paper {label}"] = paper.get(b, math.nan) - paper.get(a, math.nan)
            se = math.nan
            if a in by.index.get_level_values(0) and b in by.index.get_level_values(0):
                var = ((by.loc[a, "std"] ** 2 / by.loc[a, "runs"]) + (by.loc[b, "std"] ** 2 / by.loc[b, "runs"]))
                se = math.sqrt(var.mean() / len(classes)) if var.notna().all() else math.nan
            rec[f"{label} se"] = se
            rec[f"{label} verdict"] = _verdict(rec[label], se, z)
        out.append(rec)
    return pd.DataFrame(out).set_index("reading")


def _verdict(gain: float, se: float, z: float) -> str:
    if math.isnan(gain):
        return "not run"
    if math.isnan(se):
        return "holds (one seed: no error bar)" if gain > 0 else "does not hold (one seed: no error bar)"
    if gain > z * se:
        return "holds"
    if gain < -z * se:
        return "reversed"
    return "no clear gain"
