"""The paper's claims read from published results.

:func:`table_readings`: every published reading of one of Tables 1-3 over all of its classes, its mean beside the
paper's and whether it is within a goal of it, best first, with its CPU time per run.

:func:`ablation_gains` (Table 4: does each module add what the paper says, under each reading?) takes the published frame (``oneclass.tables.published_frame()``) and one ablation
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


def table_readings(frame: pd.DataFrame, table: str = "Table 1", dataset: str = "mnist", classes: int = 10,
                   goal: float = 0.01, paper: str = "novelty") -> pd.DataFrame:
    """One row per published reading (experiment and method) of ``paper``'s ``table`` on ``dataset`` that covers
    all ``classes`` classes: its mean AUC over them, the paper's mean, ``gap`` (ours - paper), ``within_goal``
    (|gap| <= ``goal``), ``seeds``, ``minutes_per_run`` (the mean wall-clock minutes of one run, one class and seed,
    on ``torch_threads`` threads), the budget and the commit; best mean first. Readings over fewer classes are
    left out: their mean is not comparable with the paper's."""
    rows = frame[(frame["paper"] == paper) & (frame["table"] == table) & (frame["dataset"] == dataset)
                 & (frame["class"].astype(str) == "mean") & (frame["metric"] == "auc")
                 & (frame["classes"] == classes) & frame["paper_value"].notna()]
    if rows.empty:
        raise ValueError(f"no published {paper} {table} reading covers all {classes} classes of {dataset}: publish "
                         f"one (python -m oneclass.tables --publish outputs/<preset> results/<preset>)")
    out = pd.DataFrame({
        "experiment": rows["experiment"], "method": rows["method"], "preset": rows["preset"],
        "mean": rows["mean"], "paper": rows["paper_value"], "gap": rows["diff"],
        "within_goal": rows["diff"].abs() <= goal + 1e-12,
        "seeds": rows["runs"] // classes, "minutes_per_run": rows["seconds"] / 60.0,
        "torch_threads": rows["torch_threads"], "budget": rows["budget"], "commit": rows["commit"].str[:10]})
    return out.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


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
