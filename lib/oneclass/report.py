"""A static HTML report of one preset's outputs: every table, its deviations, galleries and learning curves, and
for every number a link to the run that made it.

``python -m oneclass.report outputs/quick`` writes ``outputs/quick/report/index.html``. It opens from disk: plain
HTML and CSS, no server, no JavaScript. Each run's executed notebook is rendered once with nbconvert to
``report/runs/<experiment>/<dataset>/<class>/seed_<k>.html`` (rerendered only when the run is newer); a per-class
number links to its run's page (one link per seed), a mean row to the experiment's ``runs.csv``. The tables are
those of :func:`oneclass.tables.build_experiment` (``_tables/<experiment>/<metric>.csv``), and every HTML table
names the CSV it shows (``data-csv``), so a test can check one against the other.
"""
from __future__ import annotations

import argparse
import html
import os
from pathlib import Path

import pandas as pd

from . import params, tables

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 80em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
tr.mean td { font-weight: bold; background: #fafafa; } td.flag { color: #b00; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
.prov { color: #555; font-size: 0.9em; } a.seed { font-size: 0.8em; margin-left: 0.3em; }
"""


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def _fmt(v, spec: str = ".3f") -> str:
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else format(v, spec)


def render_run(run_dir: Path, page: Path) -> Path:
    """The run's executed notebook as HTML (``page``), rendered again only when ``run.ipynb`` is newer."""
    import nbformat
    from nbconvert import HTMLExporter

    source = run_dir / "run.ipynb"
    page.parent.mkdir(parents=True, exist_ok=True)
    if page.exists() and source.exists() and page.stat().st_mtime >= source.stat().st_mtime:
        return page
    if not source.exists():     # an interactive run (no executed notebook kept): link its metrics instead
        page.write_text(f"<html><body><p>{html.escape(str(run_dir))} has no run.ipynb.</p><pre>"
                        f"{html.escape((run_dir / 'metrics.json').read_text())}</pre></body></html>")
        return page
    body, _ = HTMLExporter(template_name="classic").from_notebook_node(nbformat.read(source, as_version=4))
    page.write_text(body)
    return page


def _table(summary: pd.DataFrame, csv: Path, pages: dict, runs_csv: Path, here: Path) -> str:
    """One summary table; each per-class number links to the pages of its runs (one per seed)."""
    cols = ["method", "class", "ours", "std", "runs", "paper", "diff", "flag", "seconds"]
    head = "".join(f"<th class='text'>{c}</th>" if c in ("method", "class", "flag") else f"<th>{c}</th>"
                   for c in cols)
    rows = []
    for _, r in summary.iterrows():
        is_mean = str(r["class"]).startswith("mean")
        if is_mean:
            ours = f"<a href='{_rel(runs_csv, here)}'>{_fmt(r['mean'])}</a>"
        else:
            links = pages.get((str(r["experiment"]), str(r["method"] if pd.notna(r["method"]) else ""),
                               str(r["class"])), [])
            first, rest = (links[0], links[1:]) if links else ((None, None), [])
            ours = f"<a href='{_rel(first[1], here)}'>{_fmt(r['mean'])}</a>" if first[1] else _fmt(r["mean"])
            ours += "".join(f"<a class='seed' href='{_rel(p, here)}'>seed {s}</a>" for s, p in rest)
        cells = [html.escape(str(r["method"]) if pd.notna(r["method"]) else ""), html.escape(str(r["class"])),
                 ours, _fmt(r["std"]), _fmt(r["runs"], "d") if pd.notna(r["runs"]) else "",
                 _fmt(r["paper_value"]), _fmt(r["diff"], "+.3f"), html.escape(str(r["flag"] or "")),
                 _fmt(r["seconds"], ".0f")]
        tds = "".join(f"<td class='{'text' if c in ('method', 'class') else 'flag' if c == 'flag' else ''}'>"
                      f"{v}</td>" for c, v in zip(cols, cells))
        rows.append(f"<tr class='{'mean' if is_mean else ''}'>{tds}</tr>")
    return (f"<table data-csv='{_rel(csv, here)}'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>")


def build(root: str | Path, out: str | Path | None = None) -> Path:
    """Write ``<root>/report/index.html`` (``out`` overrides the folder) for every experiment under ``root``
    (an ``outputs/<preset>`` folder) and return its path."""
    root = Path(root).absolute()
    out = Path(out).absolute() if out else root / "report"
    frame = tables.collect(root)
    if frame.empty:
        raise ValueError(f"no finished runs under {root}: run a batch first (python -m oneclass.batch ...)")
    frame["base"] = frame["experiment"].astype(str).str.split(".").str[0]
    out.mkdir(parents=True, exist_ok=True)
    preset = root.name
    index_rows, sections = [], []
    for base, part in frame.groupby("base", sort=True):
        params_file = part["params_file"].dropna().iloc[0] if part["params_file"].notna().any() else None
        if not params_file or not Path(params_file).is_file():
            continue
        folder = tables.build_experiment(params.load(params_file), preset, root.parent,
                                         frame=part.drop(columns="base"))
        pages = {}
        for _, run in part.sort_values("seed").iterrows():
            rel = Path(run["path"]).relative_to(root)
            page = render_run(Path(run["path"]), out / "runs" / rel.parent / f"{rel.name}.html")
            key = (str(run["experiment"]), str(run["method"] if pd.notna(run["method"]) else ""), str(run["class"]))
            pages.setdefault(key, []).append((run["seed"], page))
        commits = sorted(set(part["commit"].fillna("unknown")))
        codes = ", ".join(f"<code>{c[:10]}</code>" for c in commits)
        cpu = str(part["cpu_model"].dropna().iloc[0]) if part["cpu_model"].notna().any() else "cpu unknown"
        prov = (f"{len(part)} runs; commit{'s' * (len(commits) > 1)} {codes}; "
                f"finished {html.escape(str(part['finished_at'].dropna().max())[:16])}; {html.escape(cpu)}, "
                f"device {html.escape(str(part['device'].iloc[0]))}, load average up to {part['load_average'].max()}")
        body = [f"<h2 id='{base}'>{html.escape(base)}</h2>", f"<p class='prov'>{prov}</p>"]
        budget = tables._budget(params_file, preset)
        if budget:
            body.append(f"<p>Budget: {html.escape(budget)}</p>")
        for csv in sorted(folder.glob("*.csv")):
            if csv.name in ("runs.csv", "curves.csv"):
                continue
            summary = pd.read_csv(csv)
            if summary.empty:
                continue
            metric = summary["metric"].iloc[0]
            title = f"{summary['paper'].iloc[0]} {summary['table'].iloc[0]}: {metric}"
            body.append(f"<h3>{html.escape(title)}</h3>")
            body.append(_table(summary, csv, pages, folder / "runs.csv", out))
            body.append("<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in tables.verdict(summary)) + "</ul>")
            for _, m in summary[summary["class"] == "mean"].iterrows():
                index_rows.append((base, m, f"#{base}"))
        devs = tables.deviations(part, part)
        if devs:
            body.append("<h4>Deviations from the paper</h4><ul>" +
                        "".join(f"<li>{html.escape(d)}</li>" for d in devs) + "</ul>")
        for png in ["gallery.png", "curves.png"] + sorted(p.name for p in folder.glob("methods_*.png")):
            if (folder / png).exists():
                body.append(f"<h4>{png[:-4].replace('_', ' ')}</h4><img src='{_rel(folder / png, out)}' "
                            f"alt='{base} {png}'>")
        sections.append("\n".join(body))
    overview = ["<table><thead><tr><th class='text'>experiment</th><th class='text'>method</th>"
                "<th class='text'>metric</th><th>ours (mean)</th><th>classes</th><th>paper</th><th>diff</th>"
                "<th>seconds per run</th></tr></thead><tbody>"]
    for base, m, anchor in index_rows:
        overview.append(f"<tr><td class='text'><a href='{anchor}'>{html.escape(str(m['experiment']))}</a></td>"
                        f"<td class='text'>{html.escape(str(m['method']) if pd.notna(m['method']) else '')}</td>"
                        f"<td class='text'>{html.escape(str(m['metric']))}</td>"
                        f"<td><a href='{anchor}'>{_fmt(m['mean'])}</a></td>"
                        f"<td>{int(m['classes'])}</td><td>{_fmt(m['paper_value'])}</td>"
                        f"<td>{_fmt(m['diff'], '+.3f')}</td><td>{_fmt(m['seconds'], '.0f')}</td></tr>")
    overview.append("</tbody></table>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>oneclass: {html.escape(preset)} preset"
            f"</title><style>{STYLE}</style></head><body><h1>oneclass results: the {html.escape(preset)} preset</h1>"
            f"<p>Every table below is read from the run folders under <code>{html.escape(str(root))}</code>; a "
            "per-class number links to the executed notebook of its run (one link per seed), a mean to the "
            "experiment's runs.csv. Paper values come from <code>lib/oneclass/reported/</code>.</p>"
            + "".join(overview) + "\n" + "\n".join(sections) + "</body></html>")
    (out / "index.html").write_text(page)
    return out / "index.html"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oneclass.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="an outputs/<preset> folder")
    ap.add_argument("--out", help="report folder (default <root>/report)")
    args = ap.parse_args(argv)
    try:
        print(build(args.root, args.out))
    except ValueError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
