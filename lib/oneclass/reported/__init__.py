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
