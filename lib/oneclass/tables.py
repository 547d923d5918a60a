"""Run folders -> tidy tables with the paper's number beside ours.

:func:`collect` reads finished run folders (never notebooks' printed output, never temporary or failed folders)
into one row per run. :func:`summarize` gives per-class mean +- std over seeds with run counts, the mean over
classes, the paper's reported value (from ``oneclass.reported``), the difference and a flag outside the
tolerance. :func:`write` saves CSV, Markdown and a seaborn figure.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

import json

from . import metrics, reported
from .params import CLASS_PARAMETERS, axes_of
from .runs import finished_runs, outputs_root, read_run

DEFAULT_TOLERANCE = 0.03


def _method(meta: dict, parameters: dict, notebook: str | None = None) -> str | None:
    """The paper's method column a run belongs to: reported.method is a name or a mapping from the run's
    ``method`` parameter (its notebook default when the run did not record it) to names."""
    spec = (meta or {}).get("method")
    name = (meta or {}).get("method_param", "method")
    key = parameters.get(name)
    if key is None and notebook and Path(notebook).is_file():
        from .params import ParamsError, notebook_parameters
        try:
            key = notebook_parameters(notebook).get(name, {}).get("default")
        except ParamsError:
            key = None
    if isinstance(spec, dict):
        return spec.get(key, key)
    return spec or key


def _reported_meta(p: dict) -> dict:
    """Which paper cells a run compares with: the params file's current ``reported`` section when the file is
    still there (a corrected mapping applies to old runs too; it is not a result), else what the run recorded."""
    import yaml

    path = Path(p.get("params_file") or "")
    if path.is_file():
        try:
            current = (yaml.safe_load(path.read_text()) or {}).get("reported")
        except yaml.YAMLError:
            current = None
        if current:
            return current
    return p.get("reported") or {}


def _class_name(cls) -> str:
    """A class as tables show it: its name; a category given as a folder (an MVTec layout of one's own): the
    folder's name."""
    from .data import is_path_category

    return Path(str(cls)).name if is_path_category(cls) else str(cls)


def _run_class(p: dict, default=None):
    """A run's class from its params.yaml: the batch's record, else the notebook's class parameter."""
    params = p.get("parameters") if isinstance(p.get("parameters"), dict) else {}
    for source in (p, params):
        for key in CLASS_PARAMETERS:
            if source.get(key) is not None:
                return source[key]
    return default


def collect(root: str | Path) -> pd.DataFrame:
    """One row per finished run below ``root``: coordinates, parameters of note, every metric, wall seconds."""
    rows = []
    for path in finished_runs(root):
        r = read_run(path)
        p, params = r["params"], r["params"].get("parameters", {})
        rep = _reported_meta(p)
        cls = _run_class(p)
        rows.append({
            "experiment": p.get("experiment"), "preset": p.get("preset"), "dataset": p.get("dataset"),
            "class": "+".join(map(str, cls)) if isinstance(cls, list) else _class_name(cls), "seed": p.get("seed"),
            "method": _method(rep, params, p.get("notebook")), "paper": rep.get("paper"),
            # reported.table is one table, or {metric: table} when a paper splits metrics over tables
            "table": rep.get("table") if not isinstance(rep.get("table"), dict) else None,
            "tables": rep.get("table") if isinstance(rep.get("table"), dict) else None,
            "deviations": "\n".join(p.get("deviations") or []),   # one per line: a deviation may contain "; "
            "report_metrics": ",".join(rep.get("metrics") or [rep.get("metric", "auc")]),
            "tolerance": rep.get("tolerance"),   # |ours - paper| beyond it is flagged (None: the default)
            # reported.paper_metric: {our metric: the paper's metric name} when the paper's table has one number
            # that we compute in more than one way (FCDD's Table 2: pixel AUC pooled and per image)
            "paper_metrics": rep.get("paper_metric"),
            # reported.paper_method: {our method label: the paper's method name} when several of our readings of one
            # method (labelled apart) are each compared with the paper's single column
            "paper_methods": rep.get("paper_method"),
            **{k: v for k, v in r["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "wall_seconds": r["env"].get("wall_seconds"), "path": str(path),
            # provenance: which code, on which machine, when (results/ tables carry it)
            "params_file": p.get("params_file"), "commit": r["env"].get("git_commit"),
            "finished_at": r["env"].get("finished_at"), "cpu_model": r["env"].get("cpu_model"),
            "device": r["env"].get("device"), "precision": r["env"].get("precision"),
            "torch_threads": r["env"].get("torch_threads"), "load_average": r["env"].get("load_average"),
        })
    return pd.DataFrame(rows)


def _n_classes(row, methods: dict | None = None) -> int:
    """How many classes the paper's table has for this dataset (its per-class rows); ``methods`` maps our method
    labels to the paper's (reported.paper_method)."""
    try:
        f = reported.frame(row["paper"])
    except FileNotFoundError:
        return 0
    method = (methods or {}).get(row["method"], row["method"])
    f = f[(f["table"] == row["table"]) & (f["dataset"] == row["dataset"]) & (f["method"] == method)]
    return int((f["class"] != "mean").sum())


def _dataset_classes(row) -> int:
    """How many classes the row's dataset has (0 when it is not in the catalogue): the class count of a paper
    table that gives only a mean."""
    from . import data

    try:
        return len(data.DATASETS[data.canonical(row["dataset"])].classes)
    except (KeyError, ValueError, TypeError):
        return 0


def summarize(frame: pd.DataFrame, metric: str = "auc", tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """Per (experiment, method, class): mean, std over seeds, runs; then a 'mean' row per (experiment, method)
    averaging the class means (``classes`` says over how many). Paper values are looked up per row; a mean over
    fewer classes than the paper's table is compared with the paper's mean over the same classes. ``flag``
    marks |ours - paper| > tolerance."""
    if frame.empty or metric not in frame:
        return pd.DataFrame()
    keys = ["experiment", "dataset", "method", "paper", "table"]
    f = frame.dropna(subset=[metric]).copy()
    if "tables" in f:
        f["table"] = [m.get(metric) if isinstance(m, dict) else t for t, m in zip(f["table"], f["tables"])]
    f = f.fillna({"method": "", "paper": "", "table": ""})
    per = (f.groupby(keys + ["class"], sort=False)[metric]
           .agg(mean="mean", std="std", runs="count").reset_index())
    per["seconds"] = f.groupby(keys + ["class"], sort=False)["wall_seconds"].mean().to_numpy()
    means = (per.groupby(keys, sort=False).agg(mean=("mean", "mean"), runs=("runs", "sum"),
                                                seconds=("seconds", "mean")).reset_index())
    means["std"] = np.nan
    means["class"] = "mean"
    out = pd.concat([per, means[per.columns]], ignore_index=True)

    aliases = next((m for m in f.get("paper_metrics", []) if isinstance(m, dict)), {})
    paper_metric = aliases.get(metric, metric)
    methods = next((m for m in f.get("paper_methods", []) if isinstance(m, dict)), {})

    def paper_value(row):
        if not row["paper"] or not row["table"]:
            return np.nan
        try:
            v = reported.value(row["paper"], row["table"], row["dataset"], methods.get(row["method"], row["method"]),
                               row["class"], paper_metric)
        except FileNotFoundError:
            return np.nan
        return np.nan if v is None else v

    out["paper_value"] = out.apply(paper_value, axis=1)
    out["classes"] = out.groupby(keys, sort=False)["class"].transform(lambda c: int((c != "mean").sum()))
    out["paper_classes"] = out["paper_value"].notna().astype(int)   # per class: 1 when the paper has it
    # A mean row is compared like with like: with the paper's mean only when we ran exactly the paper's classes (or
    # all of a dataset's classes, for a table that gives only a mean); with the mean of the paper's numbers when
    # every class we ran has one; otherwise not at all, and then a second row compares the mean over the classes
    # that do have paper numbers (a batch that adds a category of one's own to MVTec's fifteen).
    extra = []
    for _, group in out.groupby(keys, sort=False):
        classes, mean_row = group[group["class"] != "mean"], group.index[group["class"] == "mean"]
        if not len(mean_row):
            continue
        known = classes["paper_value"].notna()
        out.loc[mean_row, "paper_classes"] = int(known.sum())
        n_paper = _n_classes(group.iloc[0], methods)
        if n_paper and known.all() and len(classes) == n_paper:
            if out.loc[mean_row, "paper_value"].isna().all():     # the paper prints no mean: ours of its numbers
                out.loc[mean_row, "paper_value"] = classes["paper_value"].mean()
            continue                                   # the paper's own mean row (as printed) when it has one
        if not n_paper and not known.any() and len(classes) == _dataset_classes(group.iloc[0]):
            continue                                   # a table that gives only a mean, every class run
        if known.all() and len(classes):
            out.loc[mean_row, "paper_value"] = classes["paper_value"].mean()
            continue
        out.loc[mean_row, "paper_value"] = np.nan
        if known.any():
            row = out.loc[mean_row[0]].copy()
            sub = classes[known]
            row["class"], row["mean"], row["runs"] = f"mean of {int(known.sum())} with paper values", \
                sub["mean"].mean(), sub["runs"].sum()
            row["seconds"], row["paper_value"], row["classes"] = sub["seconds"].mean(), sub["paper_value"].mean(), \
                int(known.sum())
            row["paper_classes"] = int(known.sum())
            extra.append(row)
    if extra:
        out = pd.concat([out, pd.DataFrame(extra)], ignore_index=True)
    out["diff"] = out["mean"] - out["paper_value"]
    out["flag"] = np.where(out["diff"].abs() > tolerance, "outside ±%.2f" % tolerance, "")
    out.insert(len(keys) + 1, "metric", metric)
    return out


def wide(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout: classes as rows, one column per method holding 'ours ± std (paper)'."""
    def cell(r):
        ours = f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if pd.notna(r["std"]) else "")
        return ours + (f" ({r['paper_value']:.3f})" if pd.notna(r["paper_value"]) else " (-)")

    s = summary.assign(cell=summary.apply(cell, axis=1))
    order = list(dict.fromkeys(s["class"]))
    return s.pivot_table(index="class", columns="method", values="cell", aggfunc="first").reindex(order)


def by_paper_table(frame: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """{(paper, table, metric): summary} for every paper table the finished runs can fill."""
    out = {}
    if frame.empty:
        return out
    f = frame.fillna({"paper": ""})
    for paper, group in f.groupby("paper", sort=True):
        for metric in sorted({m for ms in group["report_metrics"] for m in ms.split(",") if m in group}):
            summary = summarize(group, metric, tolerance)
            for table, part in summary.groupby("table", sort=True):
                out[(paper, table, metric)] = part.reset_index(drop=True)
    return out


def deviations(frame: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """The deviations from the paper recorded by the runs behind a summary."""
    rows = frame[frame["experiment"].isin(set(summary["experiment"]))]
    return sorted({d for ds in rows["deviations"] for d in ds.split("\n") if d})


def to_markdown(summary: pd.DataFrame, deviations: list[str] | None = None) -> str:
    cols = ["method", "class", "mean", "std", "runs", "classes", "paper_classes", "paper_value", "diff", "flag",
            "seconds"]
    table = summary.copy()
    # a params file's `vary` axis lives in the experiment name ('fcdd_watermark.watermark_fraction=0.2'); show it
    # when it is not already told apart by the method column
    variant = table["experiment"].astype(str).str.partition(".")[2] if "experiment" in table else None
    if variant is not None and (variant.groupby(table["method"]).nunique() > 1).any():
        table.insert(0, "variant", variant)
        cols = ["variant"] + cols
    body = table[cols].to_markdown(index=False, floatfmt=".3f")
    notes = "".join(f"\n- {d}" for d in (deviations or []))
    return body + ("\n\nDeviations from the paper:" + notes if notes else "") + "\n"


def plot(summary: pd.DataFrame, path: str | Path | None = None):
    """Ours (mean +- std over seeds) beside the paper's value, per class and method."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    s = summary[~summary["class"].astype(str).str.startswith("mean")]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * s["class"].nunique() * max(1, s["method"].nunique())), 3.2))
    sns.barplot(data=s, x="class", y="mean", hue="method", ax=ax, alpha=0.8)
    paper = s.dropna(subset=["paper_value"])
    if len(paper):
        sns.stripplot(data=paper, x="class", y="paper_value", hue="method", dodge=True, marker="D", size=6,
                      palette="dark:black", legend=False, ax=ax)
    ax.set_ylabel(f"{summary['metric'].iloc[0]} (bars: ours; diamonds: paper)")
    ax.set_ylim(max(0.0, float(np.nanmin(s[["mean", "paper_value"]].to_numpy())) - 0.1), 1.0)
    ax.tick_params(axis="x", rotation=45, labelsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def write(summary: pd.DataFrame, folder: str | Path, name: str, deviations: list[str] | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary.to_csv(folder / f"{name}.csv", index=False)
    (folder / f"{name}.md").write_text(to_markdown(summary, deviations))
    plot(summary, folder / f"{name}.png")
    return folder


def build_experiment(exp, preset: str, outputs: str | Path | None = None,
                     frame: pd.DataFrame | None = None) -> Path | None:
    """Tables (one per metric the runs share) and a gallery for one params file's runs of one preset, in
    ``outputs/<preset>/_tables/<experiment>/``. ``frame``: the preset's runs as :func:`collect` read them, when
    the caller has them already (the report builds every experiment from one read)."""
    from . import gallery
    from .data import class_slug

    base = outputs_root(outputs) / preset
    frame = collect(base) if frame is None else frame
    if frame.empty:
        return None
    frame = frame[frame["experiment"].str.split(".").str[0] == exp.name]
    if frame.empty:
        return None
    rep = exp.raw.get("reported") or {}
    folder = base / "_tables" / exp.name
    folder.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in (rep.get("metrics") or [rep.get("metric", "auc")]) if m in frame]
    devs = deviations(frame, frame)
    for m in metrics:
        write(summarize(frame, m, rep.get("tolerance", DEFAULT_TOLERANCE)), folder, m, devs)
    frame.to_csv(folder / "runs.csv", index=False)
    first_seed = frame.sort_values("seed").drop_duplicates(["experiment", "class"])
    gallery.experiment_figure([Path(p) for p in first_seed["path"]], path=folder / "gallery.png")
    # FCDD figures 6 / 16: when the runs compare methods, one figure per class with a heatmap row per method
    for cls, runs_of_class in first_seed.groupby("class", sort=True):
        by_method = {m: Path(p) for m, p in zip(runs_of_class["method"], runs_of_class["path"]) if m}
        if len(by_method) > 1:
            try:
                gallery.methods_figure(by_method, path=folder / f"methods_{class_slug(cls)}.png")
            except ValueError:   # no shared gallery images (different test sets): nothing to compare
                pass
    found = curves(frame)
    if not found.empty:
        found.to_csv(folder / "curves.csv", index=False)
        fig = plot_curves(found, summarize(frame, "auc") if "auc" in frame else None)
        fig.savefig(folder / "curves.png", dpi=110)
        import matplotlib.pyplot as plt
        plt.close(fig)
    return folder


# ------------------------------------------------------------------------------------------- learning curves

def curves(frame: pd.DataFrame) -> pd.DataFrame:
    """The learning curves (curve.parquet) of the runs in ``frame`` (from :func:`collect`), one row per point
    with the run's experiment, method, class and seed; empty when no run recorded one."""
    parts = []
    for _, run in frame.iterrows():
        f = Path(run["path"]) / "curve.parquet"
        if f.exists():
            c = pd.read_parquet(f)
            for key in ("experiment", "method", "class", "seed"):
                c.insert(0, key, run.get(key))
            parts.append(c)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def plot_curves(found: pd.DataFrame, summary: pd.DataFrame | None = None):
    """One panel per (experiment, method): test AUC against epoch, one line per class (mean over seeds), and the
    paper's final number of each class as a short horizontal mark in the line's colour at the last epoch."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    found = found.assign(method=found["method"].fillna(""), **{"class": found["class"].astype(str)})
    panels = list(found.groupby(["experiment", "method"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 3.6), squeeze=False)
    for ax, ((exp, method), part) in zip(axes[0], panels):
        order = list(dict.fromkeys(part["class"]))
        palette = dict(zip(order, sns.color_palette("tab10", len(order))))
        sns.lineplot(data=part, x="epoch", y="auc", hue="class", hue_order=order, palette=palette, marker="o",
                     errorbar=None, ax=ax)
        if summary is not None and not summary.empty:
            s = summary[(summary["experiment"] == exp) & (summary["method"].fillna("") == method)]
            end = part["epoch"].max()
            for cls, value in zip(s["class"].astype(str), s["paper_value"]):
                if cls in palette and pd.notna(value):
                    ax.hlines(value, end * 0.9, end * 1.04, color=palette[cls], lw=3, alpha=0.8)
        ax.set_title(f"{exp} {method}".strip() + " (bars: the paper's final AUC)", fontsize=9)
        ax.set_ylabel("test AUC (monitor subset)")
        ax.legend(fontsize=7, title="class", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- the Clever Hans paper (003)

CH_MODELS = ("kde", "ae", "deep", "bag")
CH_PAPER_NAMES = reported.CLEVERHANS_NAMES


def run_explanation_metrics(run_dir, write: bool = False) -> dict:
    """Explanation accuracy and Clever Hans score of a finished run folder that saved maps and ground truth.

    Reads ``scores.parquet`` (score, anomaly) and ``maps.npz``: the explanation is ``native`` (or
    ``explanations``), for every test image or for the gallery rows listed in ``index``; the ground truth is
    ``ground_truth`` (continuous) or ``masks`` (0/1), for every test image or for the rows in ``index``. Only
    rows that have both are used (the AUC is always over all test images). ``write`` merges the result into
    metrics.json as ``explanation_accuracy`` / ``clever_hans`` (plus ``explained_images``)."""
    import pandas as pd

    run_dir = Path(run_dir)
    frame = pd.read_parquet(run_dir / "scores.parquet")
    if "anomaly" not in frame:
        raise ValueError(f"{run_dir}/scores.parquet has no 'anomaly' column: save_scores(..., anomaly=...)")
    if not (run_dir / "maps.npz").exists():
        raise FileNotFoundError(f"{run_dir} has no maps.npz: the method saved no maps, so there is nothing to explain")
    z = np.load(run_dir / "maps.npz")
    n = len(frame)
    index = z["index"].astype(int) if "index" in z else None
    exp_key = next((k for k in ("explanations", "native") if k in z), None)
    gt_key = next((k for k in ("ground_truth", "masks") if k in z), None)
    if exp_key is None or gt_key is None:
        raise ValueError(f"{run_dir}/maps.npz has keys {sorted(z.files)}: explanation metrics need an explanation "
                         "map ('native' or 'explanations') and ground truth ('ground_truth' or 'masks'); a dataset "
                         "without pixel ground truth (e.g. the MVTec bottle copy here) cannot have them")

    def rows(arr):
        if len(arr) == n:
            return np.arange(n)
        if index is not None and len(arr) == len(index):
            return index
        raise ValueError(f"{run_dir}: a map array has {len(arr)} rows, neither the {n} test images nor the "
                         f"{0 if index is None else len(index)} gallery rows of 'index'")

    ex, gt = z[exp_key].astype(np.float32), z[gt_key].astype(np.float32)
    if ex.ndim == 4:
        ex = ex.sum(1)
    ex_rows, gt_rows = rows(ex), rows(gt)
    common = np.intersect1d(ex_rows, gt_rows)
    ex = ex[_positions(ex_rows, common)]
    gt = gt[_positions(gt_rows, common)]
    anomaly = frame["anomaly"].to_numpy().astype(bool)
    auc = metrics.auc(frame["score"].to_numpy(), anomaly)
    sel = anomaly[common]
    if not sel.any():
        raise ValueError(f"{run_dir}: no anomalous test image has both an explanation and ground truth")
    acc = metrics.explanation_accuracy(metrics._resize_like(ex[sel], gt[sel]), gt[sel])
    out = {"auc": auc, "explanation_accuracy": acc, "clever_hans": metrics.clever_hans_score(auc, acc),
           "explained_images": int(anomaly[common].sum())}
    if write:
        m = json.loads((run_dir / "metrics.json").read_text())
        m.update({k: out[k] for k in ("explanation_accuracy", "clever_hans", "explained_images")})
        (run_dir / "metrics.json").write_text(json.dumps(m, indent=2))
    return out


def _positions(rows, wanted) -> np.ndarray:
    where = {int(r): i for i, r in enumerate(rows)}
    return np.array([where[int(r)] for r in wanted], dtype=np.int64)


def clever_hans_runs(root) -> "pd.DataFrame":
    """One row per finished run folder below ``root`` (or per run folder in ``root`` when it is a list of them)
    that has explanation maps and ground truth (any method: Clever Hans models, FCDD, HSC, AE, ...): experiment,
    dataset, class, method, seed, AUC, explanation accuracy, Clever Hans score. Runs without ground truth are
    listed with NaN explanation columns."""
    import pandas as pd

    rows = []
    paths = finished_runs(root) if isinstance(root, (str, os.PathLike)) else [Path(r) for r in root]
    for path in paths:
        info = read_run(path)
        p = info["params"]
        par = p.get("parameters", {}) if isinstance(p.get("parameters"), dict) else {}
        row = {"experiment": p.get("experiment", path.parents[2].name), "dataset": p.get("dataset"),
               "class": str(_run_class(p, path.parent.name)), "seed": p.get("seed"),
               "method": par.get("model") or par.get("method") or p.get("model") or p.get("method"),
               "path": str(path)}
        try:
            row |= run_explanation_metrics(path)
        except (FileNotFoundError, ValueError):
            row |= {"auc": info["metrics"].get("auc"), "explanation_accuracy": np.nan, "clever_hans": np.nan}
        rows.append(row)
    return pd.DataFrame(rows, columns=["experiment", "dataset", "class", "method", "seed", "auc",
                                       "explanation_accuracy", "clever_hans", "explained_images", "path"])


# ----------------------------------------------------------------------- the Clever Hans paper's figures

def clever_hans_figure2(frame, dataset: str = "mnist_c") -> "pd.DataFrame":
    """Detection AUC (%) per class and model, mean over seeds, next to figure 2's numbers."""
    import pandas as pd

    f = frame[frame["dataset"] == dataset]
    ours = f.groupby(["class", "method"])["auc"].mean().unstack("method") * 100
    paper = reported.frame("cleverhans")
    paper = paper[(paper["table"] == "Figure 2") & (paper["dataset"] == dataset)]
    pap = paper.pivot_table(index="class", columns="method", values="value") * 100
    cols = {}
    for m in CH_MODELS:
        if m in ours:
            cols[(CH_PAPER_NAMES[m], "ours")] = ours[m]
        if CH_PAPER_NAMES[m] in pap:
            cols[(CH_PAPER_NAMES[m], "paper")] = pap[CH_PAPER_NAMES[m]]
    return pd.DataFrame(cols).round(1)


def clever_hans_top3(frame, dataset: str = "mnist_c", k: int = 3) -> "pd.DataFrame":
    """The k classes with the highest Clever Hans score (%) per model (figure 3), ours next to the paper's;
    ``shared``: how many of the model's k classes are also among the paper's k."""
    import pandas as pd

    f = frame[(frame["dataset"] == dataset) & frame["clever_hans"].notna()]
    ours = f.groupby(["method", "class"])["clever_hans"].mean() * 100
    paper = reported.frame("cleverhans")
    paper = paper[(paper["table"] == "Figure 3") & (paper["dataset"] == dataset)]
    out = []
    for m in CH_MODELS:
        mine = ours.get(m, pd.Series(dtype=float)).sort_values(ascending=False).head(k) if m in ours.index.levels[0] \
            else pd.Series(dtype=float)
        theirs = paper[paper["method"] == CH_PAPER_NAMES[m]].sort_values("value", ascending=False).head(k)
        shared = len(set(mine.index) & set(theirs["class"])) if len(theirs) else None
        for rank in range(k):
            out.append({"model": CH_PAPER_NAMES[m], "rank": rank + 1,
                        "ours": mine.index[rank] if rank < len(mine) else None,
                        "ours_score": round(float(mine.iloc[rank]), 1) if rank < len(mine) else None,
                        "paper": theirs["class"].iloc[rank] if rank < len(theirs) else None,
                        "paper_score": round(float(theirs["value"].iloc[rank]) * 100, 1) if rank < len(theirs)
                        else None, "shared": shared})
    return pd.DataFrame(out)


def _curve_block(part: pd.DataFrame, max_points: int = 40) -> str:
    """The learning curves of a published experiment's runs as a table (at most ``max_points`` points: optimiser
    step, epoch, training seconds so far without the monitor's own time, the test AUC on the monitor's subset);
    longer ones one row per run (:func:`_curve_summary`), and ``notebooks/tables.ipynb`` plots them all."""
    found = curves(part)
    if found.empty:
        return ""
    if len(found) > max_points:
        return _curve_summary(found)
    cols = [c for c in ["experiment", "class", "seed", "step", "epoch", "train_seconds", "loss", "auc", "subset",
                        "final"] if c in found] + [c for c in found if c.startswith("auc_")]
    subset = _subset_text(found)
    return (f"## Learning curve (test AUC{subset} during training; train_seconds without the monitor's own time)"
            "\n\n" + found[cols].to_markdown(index=False, floatfmt=".4g") + "\n")


def _subset_text(found: pd.DataFrame) -> str:
    """' on N test images' when every run's monitor scored the same number of test images, else ''."""
    sizes = found["subset"].dropna().unique() if "subset" in found else []
    return f" on {int(sizes[0]):,} test images" if len(sizes) == 1 and found["subset"].notna().all() else ""


def _curve_summary(found: pd.DataFrame, shown: int = 11) -> str:
    """Long learning curves in one row per run: the first, the peak and the final test AUC with their epochs, the
    final value of each probe the monitor recorded (``auc_*``), and up to ``shown`` points spread evenly over the
    run (always its last) as 'epoch: AUC'."""
    keys = [k for k in ("experiment", "class", "seed") if k in found]
    rows = []
    for key, run in found.sort_values("step").groupby(keys, sort=True):
        run = run[run["auc"].notna()]
        if run.empty:
            continue
        pick = sorted(set(np.linspace(0, len(run) - 1, min(shown, len(run))).round().astype(int)))
        peak = run.loc[run["auc"].idxmax()]
        rows.append(dict(zip(keys, key if isinstance(key, tuple) else (key,))) | {
            "points": len(run), "first": run["auc"].iloc[0], "peak": peak["auc"], "peak epoch": peak["epoch"],
            "final": run["auc"].iloc[-1], "final epoch": run["epoch"].iloc[-1],
            **{f"final {c}": run[c].iloc[-1] for c in run if c.startswith("auc_")},   # probes (FCDD: train vs OE)
            "curve (epoch: AUC)": ", ".join(f"{e:g}: {a:.3f}" for e, a in
                                            zip(run["epoch"].iloc[pick], run["auc"].iloc[pick]))})
    subset = _subset_text(found)
    return (f"## Learning curves (test AUC{subset}; {len(found)} points in the run folders' curve.parquet, plotted by "
            "`notebooks/tables.ipynb`)\n\n" + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g") + "\n")


def _clever_hans_block(part: pd.DataFrame) -> str:
    """Figure 3's comparison for a published Clever Hans experiment (its runs, from :func:`collect`): each model's
    three corruptions with the highest Clever Hans score beside the paper's, and how many they share."""
    runs = clever_hans_runs(part["path"])
    if runs.empty or runs["clever_hans"].isna().all():
        return ""
    # one table per variant other than the model (e.g. ae_epochs=100.ground_truth=change): a model's top three
    # is ranked within one reading, never over the mean of several
    runs = runs.assign(_variant=runs["experiment"].map(_variant_without_model))
    lines = []
    for (dataset, variant), group in runs.groupby(["dataset", "_variant"], sort=True):
        top = clever_hans_top3(group, dataset)
        top = top[top["ours"].notna()]
        if top.empty or top["paper"].isna().all():
            continue
        label = f"{dataset}, {variant}" if variant else dataset
        lines.append(f"## cleverhans Figure 3: the three highest Clever Hans scores per model ({label}, %)\n\n"
                     + top.to_markdown(index=False) + "\n")
        lines.append("".join(f"- {model}{f' ({variant})' if variant else ''}: {int(g['shared'].iloc[0])} of its "
                             f"top 3 corruptions among figure 3's ({', '.join(g['paper'].dropna())}).\n"
                             for model, g in top.groupby("model", sort=False) if g["shared"].notna().all()))
    return "\n".join(lines)


def _variant_without_model(experiment: str) -> str:
    """'cleverhans_mnist_c_auto_budget.ae_epochs=100.ground_truth=change' -> 'ae_epochs=100.ground_truth=change';
    the ``model=`` part is dropped, since the table already has a row block per model."""
    return ".".join(p for p in str(experiment).split(".")[1:] if not p.startswith("model="))


def clever_hans_summary(frame, dataset: str = "mnist_c") -> "pd.DataFrame":
    """Mean AUC and mean Clever Hans score (%) per model over classes (figure 6, left)."""
    f = frame[frame["dataset"] == dataset]
    g = f.groupby("method")[["auc", "explanation_accuracy", "clever_hans"]].mean() * 100
    g["classes"] = f.groupby("method")["class"].nunique()
    return g.reindex([m for m in CH_MODELS if m in g.index]).round(1)


# ------------------------------------------------------------------- published results: results/<preset>/

RESULTS_ENV = "ONECLASS_RESULTS"
PROVENANCE = ["preset", "commit", "date", "cpu_model", "torch_threads", "device", "precision", "load_average"]
README_BEGIN, README_END = "<!-- results:begin (generated by python -m oneclass.tables --readme) -->", \
    "<!-- results:end -->"
# which experiments a method folder's README shows (by experiment-name prefix)
METHOD_READMES = {"fcdd": ("fcdd_",), "geom": ("geom_",), "novelty": ("novelty_",),
                  "cleverhans": ("cleverhans_",), "baselines": ("competitors_",)}


def results_root(results: str | Path | None = None) -> Path:
    """The committed ``results/`` folder of this checkout (``$ONECLASS_RESULTS`` or ``results`` overrides)."""
    return Path(results or os.environ.get(RESULTS_ENV) or Path(__file__).resolve().parents[2] / "results")


def _budget(params_file, preset: str) -> str:
    """The preset's deviations from the paper's budget, as its params file states them."""
    import yaml

    path = Path(params_file or "")
    if not path.is_file():
        return ""
    raw = yaml.safe_load(path.read_text()) or {}
    spec = raw.get("presets", {}).get(preset) or {}
    # a preset that states no budget deviation: its description says what it runs
    return "; ".join(spec.get("deviations") or []) or str(spec.get("description") or "")


def experiment_summary(frame: pd.DataFrame, tolerance: float | None = None) -> pd.DataFrame:
    """Every reported metric of one experiment's runs in one long table (one ``metric`` per block). ``tolerance``:
    None takes the one the runs' ``reported`` section states (:func:`collect`), else the default."""
    metrics = [m for m in dict.fromkeys(m for ms in frame["report_metrics"] for m in ms.split(",")) if m in frame]
    if tolerance is None:
        stated = frame["tolerance"].dropna() if "tolerance" in frame else []
        tolerance = float(stated.iloc[0]) if len(stated) else DEFAULT_TOLERANCE
    parts = [summarize(frame, m, tolerance) for m in metrics]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def verdict(summary: pd.DataFrame) -> list[str]:
    """One sentence per (experiment, method, metric): our mean against the paper's and the classes outside the
    tolerance, every number taken from ``summary`` (so the sentence cannot drift from the table)."""
    out = []
    for (exp, method, metric), part in summary.groupby(["experiment", "method", "metric"], sort=False):
        means = part[part["class"].astype(str).str.startswith("mean")]
        classes = part[~part["class"].astype(str).str.startswith("mean")]
        who = f"{exp}" + (f" {method}" if method else "") + f", {metric}"
        for _, m in means.iterrows():
            what = f"{who}: {m['class']} over {int(m['classes'])} class{'es' * (int(m['classes']) != 1)} " \
                   f"{m['mean']:.3f}"
            if pd.notna(m["paper_value"]):
                what += f" against the paper's {m['paper_value']:.3f} ({m['diff']:+.3f}, " + \
                        (f"{m['flag']})" if m["flag"] else "within the tolerance)")
            else:
                what += " (no paper number for these classes)"
            out.append(what + ".")
        off = classes[classes["flag"] != ""]
        if len(off):
            out.append(f"{who}: {len(off)} of {len(classes)} classes outside the tolerance: " +
                       ", ".join(f"{c} {d:+.3f}" for c, d in zip(off["class"], off["diff"])) + ".")
    return out


def publish(source: str | Path, target: str | Path, allow_dirty: bool = False,
            experiments: list[str] | None = None) -> list[Path]:
    """Write ``target/<experiment>.csv`` and ``.md`` for every experiment with finished runs under ``source``
    (``outputs/<preset>``), plus ``target/index.csv`` (one row per experiment, method and metric: the mean rows).

    Each file carries its provenance (commit, date, CPU model, threads, device, precision, load average). An
    experiment whose runs come from more than one commit, or from uncommitted code (unless ``allow_dirty``), is
    refused: a published table is one batch at one commit."""
    source, target = Path(source), Path(target)
    frame = collect(source)
    if frame.empty:
        raise ValueError(f"no finished runs under {source}: run a batch first "
                         f"(python -m oneclass.batch params/... --preset {source.name})")
    frame["base"] = frame["experiment"].astype(str).str.split(".").str[0]
    if experiments:
        unknown = sorted(set(experiments) - set(frame["base"]))
        if unknown:
            raise ValueError(f"no finished runs of {unknown} under {source}; there are {sorted(set(frame['base']))}")
        frame = frame[frame["base"].isin(experiments)]
    problems = []
    for exp, part in frame.groupby("base"):
        commits = sorted(set(part["commit"].fillna("unknown")))
        if len(commits) > 1:
            problems.append(f"{exp}: runs from {len(commits)} commits ({', '.join(c[:10] for c in commits)})")
        elif commits[0] == "unknown" or (commits[0].endswith("-dirty") and not allow_dirty):
            problems.append(f"{exp}: runs from {'uncommitted' if commits[0] != 'unknown' else 'unknown'} code")
    if problems:
        raise ValueError("cannot publish: " + "; ".join(problems) + ". Rerun those experiments with --redo at "
                         "one clean commit (or pass experiments=/--experiments to publish the others; "
                         "allow_dirty=True / --allow-dirty labels uncommitted code as such)")
    target.mkdir(parents=True, exist_ok=True)
    written, index = [], []
    for exp, part in frame.groupby("base", sort=True):
        summary = experiment_summary(part)
        if summary.empty:
            continue
        preset = str(part["preset"].iloc[0])
        prov = {"preset": preset, "commit": part["commit"].iloc[0],
                "date": str(part["finished_at"].dropna().max() or "")[:10],
                "cpu_model": part["cpu_model"].dropna().iloc[0] if part["cpu_model"].notna().any() else None,
                "torch_threads": part["torch_threads"].max(), "device": part["device"].iloc[0],
                "precision": part["precision"].dropna().iloc[0] if part["precision"].notna().any() else None,
                "load_average": part["load_average"].max()}
        budget = _budget(part["params_file"].iloc[0], preset)
        summary = summary.assign(**prov, budget=budget)
        summary.to_csv(target / f"{exp}.csv", index=False)
        devs = deviations(part, part)
        header = (f"# {exp} ({preset} preset)\n\nBatch of {len(part)} runs at commit `{prov['commit']}`, "
                  f"finished {prov['date']}, on {prov['cpu_model']} ({prov['device']}, {prov['torch_threads']} "
                  f"torch threads per run, precision {prov['precision']}, load average up to "
                  f"{prov['load_average']}). Budget: {budget or 'as in the paper'}. Regenerate with "
                  f"`python -m oneclass.tables --publish outputs/{preset} results/{preset}`.\n\n")
        blocks = [header]
        for metric, block in summary.groupby("metric", sort=False):
            blocks.append(f"## {block['paper'].iloc[0]} {block['table'].iloc[0]}: {metric}\n\n"
                          + to_markdown(block) + "\n")
        blocks.append("".join(f"- {v}\n" for v in verdict(summary)))
        extras = [_clever_hans_block(part)] if str(summary["paper"].iloc[0]) == "cleverhans" else []
        blocks += [b for b in extras + [_curve_block(part)] if b]   # an experiment without them: no blank lines
        if devs:
            blocks.append("\nDeviations from the paper:\n" + "".join(f"- {d}\n" for d in devs))
        (target / f"{exp}.md").write_text("\n".join(blocks))
        written += [target / f"{exp}.csv", target / f"{exp}.md"]
        means = summary[summary["class"] == "mean"]
        index.append(means.assign(base=exp))
    if index:
        new = pd.concat(index, ignore_index=True)
        old = pd.read_csv(target / "index.csv") if (target / "index.csv").exists() else pd.DataFrame()
        if not old.empty:
            old = old[~old["base"].isin(set(new["base"]))]
        pd.concat([old, new], ignore_index=True).sort_values(["base", "experiment"], kind="stable") \
            .to_csv(target / "index.csv", index=False)
        written.append(target / "index.csv")
    return written


def published_frame(presets=("quick", "paper"), results: str | Path | None = None) -> pd.DataFrame:
    """Every published table (``results/<preset>/<experiment>.csv``) in one frame with a ``base`` column."""
    root = results_root(results)
    parts = [pd.read_csv(f).assign(base=f.stem) for preset in presets
             for f in sorted((root / preset).glob("*.csv")) if f.name != "index.csv"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def vary_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (rows of published tables, with ``experiment``) with one string column per vary axis of its
    experiment names ('fcdd_cifar10_causes.outlier_exclude=[].outlier_blur=0.6.epochs=5' -> outlier_exclude '[]',
    outlier_blur '0.6', epochs '5'); values may hold dots, axis names may not. Rows without an axis get ''. An
    axis named like a column the frame has (``method``, ``dataset``) is left to that column, which already holds
    its value in the table's own spelling."""
    parsed = [axes_of(str(e)) for e in frame["experiment"]]
    keys = [k for k in dict.fromkeys(k for d in parsed for k in d) if k not in frame.columns]
    return frame.assign(**{k: [d.get(k, "") for d in parsed] for k in keys})


def vary_grid(frame: pd.DataFrame, base: str, index, columns, metric: str = "auc", value: str = "mean"):
    """One published experiment's ``value`` of ``metric`` as a grid: its vary axes (and table columns such as
    ``class``) on ``index`` and ``columns``. An axis whose values are all numbers sorts as numbers (epochs 5 before
    40); other values ('None', '[]') stay as written. None when ``frame`` has no such rows."""
    rows = frame[(frame["base"] == base) & (frame["metric"] == metric)] if len(frame) else frame
    if not len(rows):
        return None
    rows = vary_columns(rows)
    for col in [c for c in [*np.atleast_1d(index), *np.atleast_1d(columns)] if c in rows]:
        as_number = pd.to_numeric(rows[col], errors="coerce")
        if as_number.notna().all():
            rows = rows.assign(**{col: as_number})
    return rows.pivot_table(index=index, columns=columns, values=value)


def published(experiments, presets=("quick", "paper"), results: str | Path | None = None):
    """The committed results of ``experiments`` (names of params files' experiments), as Markdown for a notebook's
    closing note: each ``results/<preset>/<experiment>.md`` that exists, or a line saying how to make it."""
    from IPython.display import Markdown

    root = results_root(results)
    experiments = [experiments] if isinstance(experiments, str) else list(experiments)
    parts, missing = [], []
    for exp in experiments:
        found = [root / p / f"{exp}.md" for p in presets if (root / p / f"{exp}.md").exists()]
        # one heading level down: the notebook's closing note is the section these tables sit in
        parts += ["\n".join("#" * 2 + line if line.startswith("#") else line for line in f.read_text().splitlines())
                  for f in found]
        missing += [exp] if not found else []
    if missing:
        parts.append(f"*Not published in {root} for the {' / '.join(presets)} preset(s): {', '.join(missing)}. "
                     "Run `python -m oneclass.batch params/<paper>/<file>.yaml --preset quick`, then "
                     "`python -m oneclass.tables --publish outputs/quick results/quick`.*")
    return Markdown("\n\n".join(parts))


def results_section(prefixes: tuple[str, ...] = (), results: str | Path | None = None,
                    primary_only: bool = False) -> str:
    """The README's results table: one row per experiment, method and metric (the mean rows of index.csv);
    ``primary_only``: only each experiment's first metric (the one its paper table is about)."""
    root = results_root(results)
    rows = []
    for preset in ("quick", "paper"):
        f = root / preset / "index.csv"
        if f.exists():
            rows.append(pd.read_csv(f))
    if not rows:
        return "*No published results yet.*\n"
    idx = pd.concat(rows, ignore_index=True)
    if prefixes:
        idx = idx[idx["base"].astype(str).str.startswith(prefixes)]
    if primary_only and not idx.empty:
        first = idx.groupby(["preset", "base"], sort=False)["metric"].transform("first")
        idx = idx[(idx["metric"] == first) & (idx["class"] == "mean")]
    if idx.empty:
        return "*No published results for these experiments yet.*\n"

    def num(v, fmt="{:.3f}"):
        return fmt.format(v) if pd.notna(v) else "-"

    lines = ["| preset | experiment | method | paper table | metric | ours (classes) | paper | diff | "
             "budget | s per class | commit |", "|" + "---|" * 11]
    for _, r in idx.iterrows():
        link = f"[{r['experiment']}](results/{r['preset']}/{r['base']}.md)"
        lines.append(f"| {r['preset']} | {link} | {r['method'] if pd.notna(r['method']) else ''} | "
                     f"{r['paper']} {r['table']} | {r['metric']} | {num(r['mean'])} ({int(r['classes'])}) | "
                     f"{num(r['paper_value'])} | {num(r['diff'], '{:+.3f}')} | "
                     f"{r['budget'] if pd.notna(r['budget']) else ''} | "
                     f"{num(r['seconds'], '{:.0f}')} | `{str(r['commit'])[:10]}` |")
    return "\n".join(lines) + "\n"


def readme_files(repo: str | Path | None = None) -> dict[Path, tuple[str, ...]]:
    """The READMEs whose results section is generated, with the experiment prefixes each shows."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    out = {repo / "README.md": ()}
    for folder, prefixes in METHOD_READMES.items():
        out[repo / "lib" / "oneclass" / "methods" / folder / "README.md"] = prefixes
    return out


def render_readme(text: str, section: str, relative_to: str = "") -> str:
    """``text`` with the part between the results markers replaced by ``section`` (links made relative)."""
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"no results markers in the README: add a line {README_BEGIN!r} and a line "
                         f"{README_END!r} where the table goes")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    return head + README_BEGIN + "\n" + section.replace("](results/", f"]({relative_to}results/") + README_END + tail


def update_readmes(repo: str | Path | None = None, results: str | Path | None = None, check: bool = False) -> list:
    """Regenerate every README's results section from results/; ``check``: only list the stale ones."""
    import os.path

    repo_root = Path(repo) if repo else Path(__file__).resolve().parents[2]
    stale = []
    for path, prefixes in readme_files(repo_root).items():
        rel = os.path.relpath(repo_root, path.parent)
        rel = "" if rel == "." else rel + "/"
        text = path.read_text()
        new = render_readme(text, results_section(prefixes, results, primary_only=not prefixes), rel)
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new)
    return stale


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m oneclass.tables",
                                 description="Publish a batch's tables to results/ and regenerate the READMEs' "
                                             "results sections from them.")
    ap.add_argument("--publish", nargs=2, metavar=("OUTPUTS_PRESET", "RESULTS_PRESET"),
                    help="e.g. outputs/quick results/quick")
    ap.add_argument("--experiments", nargs="+", help="publish only these experiments")
    ap.add_argument("--allow-dirty", action="store_true", help="publish runs of uncommitted code (labelled)")
    ap.add_argument("--readme", action="store_true", help="regenerate the READMEs' results sections")
    ap.add_argument("--check", action="store_true", help="exit 1 when a README's results section is stale")
    args = ap.parse_args(argv)
    if args.publish:
        try:
            for f in publish(*args.publish, allow_dirty=args.allow_dirty, experiments=args.experiments):
                print(f)
        except ValueError as e:
            print(f"error: {e}")
            return 2
    if args.publish and Path(args.publish[1]).resolve().parent != results_root().resolve():
        # the READMEs show this checkout's results/: a table published elsewhere (a scratch folder) must not
        # rewrite them from that folder's few files
        print(f"READMEs left as they are: {Path(args.publish[1]).parent} is not this checkout's results folder "
              f"({results_root()})")
        return 0
    if args.publish or args.readme or args.check:
        stale = update_readmes(check=args.check)
        for f in stale:
            print(("stale: " if args.check else "updated: ") + str(f))
        return 1 if args.check and stale else 0
    ap.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
