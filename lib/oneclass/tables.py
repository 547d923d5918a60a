"""Run folders -> tidy tables with the paper's number beside ours.

:func:`collect` reads finished run folders (never notebooks' printed output, never temporary or failed folders)
into one row per run. :func:`summarize` gives per-class mean +- std over seeds with run counts, the mean over
classes, the paper's reported value (from ``oneclass.reported``), the difference and a flag outside the
tolerance. :func:`write` saves CSV, Markdown and a seaborn figure.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import json

from . import metrics, reported
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


def collect(root: str | Path) -> pd.DataFrame:
    """One row per finished run below ``root``: coordinates, parameters of note, every metric, wall seconds."""
    rows = []
    for path in finished_runs(root):
        r = read_run(path)
        p, params = r["params"], r["params"].get("parameters", {})
        rep = _reported_meta(p)
        cls = p.get("normal_class", params.get("normal_class"))
        rows.append({
            "experiment": p.get("experiment"), "preset": p.get("preset"), "dataset": p.get("dataset"),
            "class": "+".join(map(str, cls)) if isinstance(cls, list) else str(cls), "seed": p.get("seed"),
            "method": _method(rep, params, p.get("notebook")), "paper": rep.get("paper"),
            # reported.table is one table, or {metric: table} when a paper splits metrics over tables
            "table": rep.get("table") if not isinstance(rep.get("table"), dict) else None,
            "tables": rep.get("table") if isinstance(rep.get("table"), dict) else None,
            "deviations": "\n".join(p.get("deviations") or []),   # one per line: a deviation may contain "; "
            "report_metrics": ",".join(rep.get("metrics") or [rep.get("metric", "auc")]),
            # reported.paper_metric: {our metric: the paper's metric name} when the paper's table has one number
            # that we compute in more than one way (FCDD's Table 2: pixel AUC pooled and per image)
            "paper_metrics": rep.get("paper_metric"),
            **{k: v for k, v in r["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "wall_seconds": r["env"].get("wall_seconds"), "path": str(path),
        })
    return pd.DataFrame(rows)


def _n_classes(row) -> int:
    """How many classes the paper's table has for this dataset (its per-class rows)."""
    try:
        f = reported.frame(row["paper"])
    except FileNotFoundError:
        return 0
    f = f[(f["table"] == row["table"]) & (f["dataset"] == row["dataset"]) & (f["method"] == row["method"])]
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

    def paper_value(row):
        if not row["paper"] or not row["table"]:
            return np.nan
        try:
            v = reported.value(row["paper"], row["table"], row["dataset"], row["method"], row["class"], paper_metric)
        except FileNotFoundError:
            return np.nan
        return np.nan if v is None else v

    out["paper_value"] = out.apply(paper_value, axis=1)
    out["classes"] = out.groupby(keys, sort=False)["class"].transform(lambda c: int((c != "mean").sum()))
    # A mean over some of the classes is compared with the paper's numbers for those same classes, never with its
    # all-class mean (which would mix in classes we did not run): where one of them has no paper number (a table
    # that gives only a mean), the mean row has none either.
    for _, group in out.groupby(keys, sort=False):
        classes, mean_row = group[group["class"] != "mean"], group.index[group["class"] == "mean"]
        if not len(mean_row) or len(classes) >= (_n_classes(group.iloc[0]) or _dataset_classes(group.iloc[0])):
            continue
        known = len(classes) and classes["paper_value"].notna().all()
        out.loc[mean_row, "paper_value"] = classes["paper_value"].mean() if known else np.nan
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
    cols = ["method", "class", "mean", "std", "runs", "classes", "paper_value", "diff", "flag", "seconds"]
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

    s = summary[summary["class"] != "mean"]
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


def build_experiment(exp, preset: str, outputs: str | Path | None = None) -> Path | None:
    """Tables (one per metric the runs share) and a gallery for one params file's runs of one preset, in
    ``outputs/<preset>/_tables/<experiment>/``."""
    from . import gallery

    base = outputs_root(outputs) / preset
    frame = collect(base)
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
                gallery.methods_figure(by_method, path=folder / f"methods_{cls}.png")
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
    """One row per finished run folder below ``root`` that has explanation maps and ground truth (any method:
    Clever Hans models, FCDD, HSC, AE, ...): experiment, dataset, class, method, seed, AUC, explanation accuracy,
    Clever Hans score. Runs without ground truth are listed with NaN explanation columns."""
    import pandas as pd

    rows = []
    for path in finished_runs(root):
        info = read_run(path)
        p = info["params"]
        par = p.get("parameters", {}) if isinstance(p.get("parameters"), dict) else {}
        row = {"experiment": p.get("experiment", path.parents[2].name), "dataset": p.get("dataset"),
               "class": str(p.get("normal_class", path.parent.name)), "seed": p.get("seed"),
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
    """The k classes with the highest Clever Hans score (%) per model (figure 3), ours next to the paper's."""
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
        for rank in range(k):
            out.append({"model": CH_PAPER_NAMES[m], "rank": rank + 1,
                        "ours": mine.index[rank] if rank < len(mine) else None,
                        "ours_score": round(float(mine.iloc[rank]), 1) if rank < len(mine) else None,
                        "paper": theirs["class"].iloc[rank] if rank < len(theirs) else None,
                        "paper_score": round(float(theirs["value"].iloc[rank]) * 100, 1) if rank < len(theirs)
                        else None})
    return pd.DataFrame(out)


def clever_hans_summary(frame, dataset: str = "mnist_c") -> "pd.DataFrame":
    """Mean AUC and mean Clever Hans score (%) per model over classes (figure 6, left)."""
    f = frame[frame["dataset"] == dataset]
    g = f.groupby("method")[["auc", "explanation_accuracy", "clever_hans"]].mean() * 100
    g["classes"] = f.groupby("method")["class"].nunique()
    return g.reindex([m for m in CH_MODELS if m in g.index]).round(1)
