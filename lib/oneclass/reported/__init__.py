"""Numbers the papers report, transcribed from their tables: data, not code.

One CSV per paper in this folder (``fcdd.csv``, ``geom.csv``, ``novelty.csv``, ``cleverhans.csv``) with the columns
``table, dataset, method, class, metric, value, note``. ``class`` is the class name as ``oneclass.data.classes``
spells it (or ``mean`` for a table's mean row); ``note`` marks numbers a paper quotes from the literature
(``quoted``), or anything else a reader must know. Values are on the 0-1 scale (percent tables divided by 100).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ["table", "dataset", "method", "class", "metric", "value", "note"]


@lru_cache(maxsize=None)
def _load(paper: str):
    import pandas as pd

    path = HERE / f"{paper}.csv"
    if not path.exists():
        papers = sorted(p.stem for p in HERE.glob("*.csv"))
        raise FileNotFoundError(f"no reported numbers for paper {paper!r}; known papers: {papers}")
    frame = pd.read_csv(path, dtype={"class": str}, keep_default_na=False)
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}; expected {COLUMNS}")
    frame["value"] = frame["value"].astype(float)
    return frame


def frame(paper: str):
    """All reported numbers of one paper as a DataFrame (a copy)."""
    return _load(paper).copy()


def value(paper: str, table: str, dataset: str, method: str, cls: str, metric: str = "auc") -> float | None:
    """The paper's number for one cell, or None when the paper has none."""
    from ..data import class_slug

    f = _load(paper)
    hit = f[(f["table"] == table) & (f["dataset"] == dataset) & (f["method"] == method) & (f["metric"] == metric)
            & (f["class"].map(class_slug) == class_slug(str(cls)))]
    return float(hit["value"].iloc[0]) if len(hit) else None


# ----------------------------------------------------------------- one run's paper numbers, per paper
# The paper's names of our methods and where each dataset's numbers are; the notebooks ask these functions
# instead of keeping their own maps (the params files' `reported:` sections say the same for the tables module).

FCDD_NAMES = {"fcdd": "FCDD", "hsc": "HSC", "ae": "AE"}
FCDD_TABLES = {"fmnist": "Table 3", "cifar10": "Table 4", "imagenet30": "Table 5", "mvtec": "Table 2",
               "mvtec_semi": "Table 2"}
GEOM_TABLES = {"auc": "Table 1", "aupr_in": "Table 2", "aupr_out": "Table 3"}
GEOM_SECTION6 = {"flip": "GEOM flip", "translate": "GEOM translate"}
GEOM_SECTION6_PAIRS = {8: 3, 3: 8}
GEOM_COMPETITORS = {"deep_svdd": "E2E-OC-SVM", "raw_ocsvm": "RAW-OC-SVM", "cae_ocsvm": "CAE-OC-SVM", "dsebm": "DSEBM",
                    "dagmm": "DAGMM", "adgan": "ADGAN"}              # GEOM's Table 1 columns
CLEVERHANS_NAMES = {"kde": "KDE", "ae": "Auto", "deep": "Deep", "bag": "Bag"}
NOVELTY_TABLES = {"mnist": "Table 1", "cifar10": "Table 2", "fmnist": "Table 3"}
NOVELTY_ROWS = {"ae": "Autoencoder only", "ae_norm": "+ Normalization", "full": "+ NS"}   # Table 4


def fcdd_number(method: str, dataset: str, cls, background: str = "none") -> tuple[str, float | None]:
    """(where, number) of the FCDD paper for ``method`` on ``dataset``'s class ``cls``: Tables 3-5 (AUC),
    Table 2 (MVTec-AD pixel AUC; dataset 'mvtec_semi' is its semi-supervised row) or, with a ``background``
    ablation, section 4.1's mean over classes. The number is None where the paper has none (a dataset given as
    a path: your own data)."""
    if method not in FCDD_NAMES:
        raise ValueError(f"unknown FCDD-paper method {method!r}; choose one of {sorted(FCDD_NAMES)}")
    from ..data import is_path_category

    if is_path_category(dataset):
        return "your own data", None
    if background != "none":
        name = f"FCDD ({background.replace('_', ' ')})"
        return f"Section 4.1, {name}, mean over classes", value("fcdd", "Section 4.1", dataset, name, "mean")
    if dataset not in FCDD_TABLES:
        raise ValueError(f"the FCDD paper has no table for {dataset!r}; it has {sorted(FCDD_TABLES)}")
    table, name = FCDD_TABLES[dataset], FCDD_NAMES[method]
    if dataset.startswith("mvtec"):
        name += " (semi-supervised)" if dataset == "mvtec_semi" else ""
        return f"{table}, {name}", value("fcdd", table, "mvtec", name, cls, "pixel_auc")
    return f"{table}, {name}", value("fcdd", table, dataset, name, cls)


def geom_ood_number(method: str, dataset: str, classes, metric: str = "auc") -> tuple[str, float | None]:
    """(where, number) of the GEOM paper's section 5.5 (out-of-distribution detection) for ``method`` 'geom' or
    'odin' (ODIN's numbers are quoted there from its paper), the in-distribution ``classes`` a list of names."""
    from ..methods.geom.ood import PAPER_NAMES

    if method not in PAPER_NAMES:
        raise ValueError(f"unknown section 5.5 method {method!r}; choose one of {sorted(PAPER_NAMES)}")
    cls = "+".join(classes)
    return "Section 5.5", value("geom", "Section 5.5", dataset, PAPER_NAMES[method], cls, metric)


def geom_number(dataset: str, cls, transforms="geom72", metric: str = "auc",
                anomaly=None) -> tuple[str, float | None]:
    """(where, number) of the GEOM paper: Tables 1-3 (AUROC, AUPR-in, AUPR-out) for the 72 transformations;
    section 6 for MNIST's 'flip' / 'translate' pairs, which exist for the digit pairs 8 / 3 only (``anomaly``:
    the other digit)."""
    if transforms == "translate_right":
        return "Section 6's shift is the authors' vertical one ('translate'); this axis is ours", None
    if transforms in GEOM_SECTION6:
        if anomaly is not None and GEOM_SECTION6_PAIRS.get(int(cls)) != int(anomaly):
            return "Section 6 (not this digit pair)", None
        return "Section 6", value("geom", "Section 6", dataset, GEOM_SECTION6[transforms], str(cls), metric)
    if transforms != "geom72":
        return "no paper number for this transformation set", None
    table = GEOM_TABLES[metric]
    return table, value("geom", table, dataset, "GEOM", cls, metric)


def novelty_numbers(dataset: str, normal_names: list, variant: str = "full") -> dict:
    """The novelty-normalization paper's AUCs for a run: its class cell (Tables 1-3, or Table 5 for a
    multi-class nominal set), the table's mean, and the Table 4 row of ``variant`` ('ae', 'ae_norm', 'full')."""
    ours = "Novelty normalization"
    if variant not in NOVELTY_ROWS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(NOVELTY_ROWS)}")
    if len(normal_names) > 1:
        cls = "+".join(normal_names)
        return {"table": "Table 5", "class": value("novelty", "Table 5", dataset, NOVELTY_ROWS[variant], cls),
                "mean": None, "ablation": None}
    table = NOVELTY_TABLES[dataset]
    full = variant == "full"
    return {"table": table, "class": value("novelty", table, dataset, ours, normal_names[0]) if full else None,
            "mean": value("novelty", table, dataset, ours, "mean") if full else None,
            "ablation": value("novelty", "Table 4", dataset, NOVELTY_ROWS[variant], "mean")}


def competitor_number(method: str, dataset: str, cls, metric: str = "auc") -> tuple[str, float | None]:
    """(where, number) of the GEOM paper for one of its competitors (Tables 1-3 by ``metric``)."""
    if method not in GEOM_COMPETITORS:
        raise ValueError(f"unknown competitor {method!r}; choose one of {sorted(GEOM_COMPETITORS)}")
    table = GEOM_TABLES[metric]
    return f"{table}, {GEOM_COMPETITORS[method]}", value("geom", table, dataset, GEOM_COMPETITORS[method], cls, metric)


def cleverhans_number(model: str, dataset: str, cls, metric: str = "auc") -> float | None:
    """The Clever Hans paper's number for ``model`` on corruption / category ``cls``: figure 2 (``auc``) or
    figure 3 (``clever_hans``; given for each model's top three corruptions only)."""
    if model not in CLEVERHANS_NAMES:
        raise ValueError(f"unknown Clever Hans model {model!r}; choose one of {sorted(CLEVERHANS_NAMES)}")
    figure = {"auc": "Figure 2", "clever_hans": "Figure 3"}[metric]
    return value("cleverhans", figure, dataset, CLEVERHANS_NAMES[model], cls, metric)
