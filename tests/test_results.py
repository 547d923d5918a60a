"""Results as data: results/ tables published from run folders with their provenance, READMEs generated from
them, no result number typed into a notebook or README, the HTML report's links and tables, figure 4's layout."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from oneclass import data, gallery, report, reported, tables

REPO = Path(__file__).resolve().parents[1]
FMNIST = REPO / "params" / "fcdd" / "fmnist.yaml"
COMMIT = "a" * 40


def fake_run(root: Path, cls: str, auc: float, seed: int = 0, commit: str = COMMIT, experiment="fcdd_fmnist",
             params_file: Path = FMNIST, dataset="fmnist", maps: bool = False) -> Path:
    """A finished run folder as a batch writes it (params.yaml, metrics.json, env.json, scores, run.ipynb)."""
    path = root / experiment / dataset / cls.lower().replace("/", "-") / f"seed_{seed}"
    path.mkdir(parents=True)
    raw = yaml.safe_load(params_file.read_text())
    (path / "params.yaml").write_text(yaml.safe_dump({
        "experiment": experiment, "preset": root.name, "dataset": dataset, "normal_class": cls, "seed": seed,
        "params_file": str(params_file), "reported": raw.get("reported"), "deviations": ["budget cut"],
        "parameters": {"method": "fcdd", "normal_class": cls, "seed": seed}}))
    (path / "metrics.json").write_text(json.dumps({"auc": auc}))
    (path / "env.json").write_text(json.dumps({
        "git_commit": commit, "finished_at": "2026-12-05T10:00:00+0000", "cpu_model": "Test CPU", "device": "cpu",
        "precision": "fp32", "torch_threads": 1, "load_average": 1.2, "wall_seconds": 10.0 + seed}))
    rng = np.random.default_rng(seed)
    anomaly = np.r_[np.zeros(6, int), np.ones(6, int)]
    scores = rng.normal(size=12) + anomaly
    pd.DataFrame({"index": np.arange(12), "score": scores, "anomaly": anomaly}).to_parquet(path / "scores.parquet")
    if maps:
        idx = np.arange(12)
        images = np.stack([np.full((1, 8, 8), i / 12, np.float32) for i in idx])
        np.savez(path / "maps.npz", index=idx, upsampled=images[:, 0], images=images)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# run {cls}")])
    nbformat.write(nb, path / "run.ipynb")
    return path


FMNIST_CLASSES = list(data.DATASETS["fmnist"].classes)


# ------------------------------------------------------------------------------------------------ publish

def test_publish_writes_each_experiment_with_its_provenance_and_an_index(tmp_path):
    outputs = tmp_path / "outputs" / "quick"
    aucs = {c: 0.80 + 0.01 * i for i, c in enumerate(FMNIST_CLASSES)}
    for c, a in aucs.items():
        fake_run(outputs, c, a)
    written = tables.publish(outputs, tmp_path / "results" / "quick")
    assert {p.name for p in written} == {"fcdd_fmnist.csv", "fcdd_fmnist.md", "index.csv"}
    table = pd.read_csv(tmp_path / "results" / "quick" / "fcdd_fmnist.csv")
    row = table.set_index("class").loc["Coat"]
    assert row["mean"] == pytest.approx(aucs["Coat"]) and row["paper_value"] == pytest.approx(0.86)  # Table 3
    assert (table["commit"] == COMMIT).all() and (table["cpu_model"] == "Test CPU").all()
    assert (table["date"] == "2026-12-05").all() and (table["budget"] == "20 of 400 epochs, 1 of 5 seeds").all()
    mean = table.set_index("class").loc["mean"]
    assert mean["mean"] == pytest.approx(np.mean(list(aucs.values()))) and mean["paper_value"] == pytest.approx(0.88)
    md = (tmp_path / "results" / "quick" / "fcdd_fmnist.md").read_text()
    assert COMMIT in md and "Test CPU" in md and "- budget cut" in md
    # the generated sentence holds the table's own numbers, nothing else
    sentence = next(s for s in tables.verdict(table) if "mean over 10 classes" in s)
    assert f"{mean['mean']:.3f}" in sentence and "0.880" in sentence and f"{mean['diff']:+.3f}" in sentence
    index = pd.read_csv(tmp_path / "results" / "quick" / "index.csv")
    assert len(index) == 1 and index["mean"].iloc[0] == pytest.approx(mean["mean"])


def test_publish_flags_with_the_tolerance_the_params_file_states(tmp_path):
    """A params file's ``reported.tolerance`` decides the flag in the published table, not the default 0.03."""
    raw = yaml.safe_load(FMNIST.read_text())
    raw["reported"]["tolerance"] = 0.05
    loose = tmp_path / "fmnist_loose.yaml"
    loose.write_text(yaml.safe_dump(raw))
    for params_file, name in ((FMNIST, "default"), (loose, "loose")):
        fake_run(tmp_path / name / "quick", "Coat", 0.82, params_file=params_file)   # paper 0.86: diff -0.04
        tables.publish(tmp_path / name / "quick", tmp_path / name / "results")
    flag = {name: pd.read_csv(tmp_path / name / "results" / "fcdd_fmnist.csv").set_index("class").loc["Coat", "flag"]
            for name in ("default", "loose")}
    assert flag["default"] == "outside ±0.03" and (pd.isna(flag["loose"]) or flag["loose"] == "")


def test_publishing_outside_results_writes_the_tables_and_leaves_the_readmes_alone(tmp_path, monkeypatch, capsys):
    """A table published to a scratch folder must not regenerate the READMEs from that folder's few files."""
    outputs = tmp_path / "outputs" / "quick"
    fake_run(outputs, FMNIST_CLASSES[0], 0.8)
    calls = []
    monkeypatch.setattr(tables, "update_readmes", lambda *a, **k: calls.append((a, k)) or [])
    assert tables.main(["--publish", str(outputs), str(tmp_path / "scratch" / "quick")]) == 0
    assert (tmp_path / "scratch" / "quick" / "fcdd_fmnist.md").is_file() and calls == []
    assert "READMEs left as they are" in capsys.readouterr().out
    monkeypatch.setenv(tables.RESULTS_ENV, str(tmp_path / "scratch"))       # the checkout's results folder
    assert tables.main(["--publish", str(outputs), str(tmp_path / "scratch" / "quick")]) == 0
    assert len(calls) == 1


def test_publish_refuses_runs_of_several_commits_or_uncommitted_code(tmp_path):
    outputs = tmp_path / "quick"
    fake_run(outputs, "Coat", 0.8, commit=COMMIT)
    fake_run(outputs, "Bag", 0.8, commit="b" * 40)
    with pytest.raises(ValueError, match=r"fcdd_fmnist: runs from 2 commits \(aaaaaaaaaa, bbbbbbbbbb\).*--redo"):
        tables.publish(outputs, tmp_path / "results")
    assert not (tmp_path / "results").exists(), "nothing may be written when a table would mix commits"
    dirty = tmp_path / "dirty"
    fake_run(dirty, "Coat", 0.8, commit=COMMIT + "-dirty")
    with pytest.raises(ValueError, match="uncommitted code"):
        tables.publish(dirty, tmp_path / "results")
    tables.publish(dirty, tmp_path / "results", allow_dirty=True)
    assert pd.read_csv(tmp_path / "results" / "fcdd_fmnist.csv")["commit"].str.endswith("-dirty").all()
    with pytest.raises(ValueError, match="no finished runs under"):
        tables.publish(tmp_path / "empty", tmp_path / "results")


def test_mean_row_compares_only_classes_that_have_paper_values():
    """Fifteen MVTec categories plus one of one's own: the mean over all sixteen has no paper counterpart; a second
    row compares the mean over the fifteen with the paper's numbers for them."""
    cats = reported.frame("fcdd")
    cats = cats[(cats["table"] == "Table 2") & (cats["dataset"] == "mvtec") & (cats["class"] != "mean")]
    names = sorted(set(cats["class"])) + ["my_widgets"]
    frame = pd.DataFrame([{"experiment": "fcdd_mvtec", "dataset": "mvtec", "class": c, "seed": 0, "method": "FCDD",
                           "paper": "fcdd", "table": "Table 2", "tables": None, "pixel_auc": 0.9,
                           "wall_seconds": 1.0, "path": f"/x/{c}"} for c in names])
    s = tables.summarize(frame, "pixel_auc").set_index("class")
    assert s.loc["mean", "classes"] == 16 and s.loc["mean", "paper_classes"] == 15
    assert np.isnan(s.loc["mean", "paper_value"]) and s.loc["mean", "flag"] == ""
    sub = s.loc["mean of 15 with paper values"]
    per_class = s.drop(index=["mean", "mean of 15 with paper values", "my_widgets"])["paper_value"]
    assert sub["classes"] == 15 and sub["paper_value"] == pytest.approx(per_class.mean())
    assert sub["diff"] == pytest.approx(0.9 - per_class.mean())
    assert s.loc["my_widgets", "paper_classes"] == 0 and s.loc[names[0], "paper_classes"] == 1


# ------------------------------------------------------------------------------------- generated READMEs

def test_readme_results_sections_are_generated_from_results():
    stale = tables.update_readmes(REPO, check=True)
    assert stale == [], f"stale results sections in {stale}: run python -m oneclass.tables --readme"
    with pytest.raises(ValueError, match="no results markers"):
        tables.render_readme("# a README without markers\n", "x")


def test_results_section_links_each_experiment_to_its_table(tmp_path):
    outputs = tmp_path / "outputs" / "quick"
    for c in FMNIST_CLASSES[:2]:
        fake_run(outputs, c, 0.9)
    tables.publish(outputs, tmp_path / "results" / "quick")
    section = tables.results_section(results=tmp_path / "results")
    assert "[fcdd_fmnist](results/quick/fcdd_fmnist.md)" in section and "0.900 (2)" in section
    text = tables.render_readme(f"a\n{tables.README_BEGIN}\nold\n{tables.README_END}\nb", section, "../../")
    assert "](../../results/quick/fcdd_fmnist.md)" in text and "old" not in text and text.endswith("b")


# ------------------------------------------------------------------------- no typed result numbers

RESULT_NUMBER = re.compile(r"(?<![\w.])(0\.\d{2,4}|[1-9]\d\.\d{1,2})(?!\w|\.\d)")


def _known_strings() -> set[str]:
    """Every number a text may state: results/ tables (ours and the paper's), the papers' reported values, and
    the parameters of params files and notebooks (hyperparameters, not results), at 1-4 decimals and as %."""
    values = []
    for f in (REPO / "results").rglob("*.csv"):
        t = pd.read_csv(f)
        values += t.select_dtypes("number").to_numpy().ravel().tolist()
    for f in (REPO / "lib" / "oneclass" / "reported").glob("*.csv"):
        values += pd.read_csv(f).select_dtypes("number").to_numpy().ravel().tolist()
    # hyperparameters: params files, notebooks' parameters cells and the library's defaults
    texts = [f.read_text() for f in (REPO / "params").rglob("*.yaml")]
    texts += [f.read_text() for f in (REPO / "lib" / "oneclass").rglob("*.py")]
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        texts += [c.source for c in nbformat.read(nb, as_version=4).cells
                  if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    values += [float(x) for t in texts for x in re.findall(r"(?<![\w.])\d+\.\d+", t)]
    out = set()
    for v in values:
        if isinstance(v, float) and np.isfinite(v):
            for d in range(1, 5):
                out |= {f"{abs(v):.{d}f}", f"{abs(v) * 100:.{d}f}"}   # a signed difference shows its sign apart
    return out


def typed_numbers(text: str, known: set[str]) -> list[str]:
    """The result-looking numbers of a text (0.xx to 0.xxxx, 10.0 to 99.99) that no table or parameter holds."""
    return [m for m in RESULT_NUMBER.findall(text) if m not in known]


def _prose() -> dict[str, str]:
    out = {str(f.relative_to(REPO)): f.read_text() for f in
           [REPO / "README.md", *sorted((REPO / "lib" / "oneclass" / "methods").glob("*/README.md"))]}
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(nb, as_version=4).cells
        out[str(nb.relative_to(REPO))] = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    return out


def test_no_notebook_or_readme_states_a_result_number_that_results_does_not_hold():
    known = _known_strings()
    found = {name: typed_numbers(text, known) for name, text in _prose().items()}
    found = {k: v for k, v in found.items() if v}
    assert not found, f"typed result numbers (not in results/, the papers' tables or the parameters): {found}"
    # the check catches one: a plausible AUC that is nobody's number
    assert typed_numbers("FCDD reaches a mean AUC of 0.8613 here (paper 0.88).", known) == ["0.8613"]


# ----------------------------------------------------------------------------------------- the report

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.tables, self._table, self._row, self._cell = [], [], None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("a", "img") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        if tag == "table" and "data-csv" in a:
            self._table = {"csv": a["data-csv"], "rows": []}
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_data(self, d):
        if self._cell is not None:
            self._cell += d

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self._table["rows"].append(self._row)
            self._row = None
        elif tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table = None


def test_report_links_every_number_to_a_page_that_exists_and_shows_its_csvs(tmp_path):
    outputs = tmp_path / "outputs" / "quick"
    for i, c in enumerate(["Coat", "Bag", "Trouser"]):
        for seed in (0, 1):
            fake_run(outputs, c, 0.7 + 0.05 * i + 0.01 * seed, seed=seed, maps=True)
    index = report.build(outputs)
    parser = _Links()
    parser.feed(index.read_text())
    local = [h for h in parser.links if not h.startswith("#")]
    missing = [h for h in local if not (index.parent / h).exists()]
    assert local and not missing, missing
    pages = [h for h in local if h.startswith("runs/")]
    assert len(pages) == 6, "every run (3 classes x 2 seeds) gets its rendered notebook"
    assert "run Coat" in (index.parent / next(p for p in pages if "coat" in p)).read_text()
    assert any(h.endswith("gallery.png") for h in local)
    assert parser.tables, "the report shows the experiment's table"
    for t in parser.tables:
        csv = pd.read_csv(index.parent / t["csv"])
        assert [r[1] for r in t["rows"]] == csv["class"].astype(str).tolist()
        assert [r[2].split("seed")[0].strip() for r in t["rows"]] == [f"{v:.3f}" for v in csv["mean"]]
        assert [r[5] for r in t["rows"]] == ["" if np.isnan(v) else f"{v:.3f}" for v in csv["paper_value"]]
    with pytest.raises(ValueError, match="no finished runs"):
        report.build(tmp_path / "nothing")


# ---------------------------------------------------------------------------------------- figure 4 layout

def test_gallery_is_one_block_per_class_nominal_left_anomalous_right(tmp_path):
    runs = [fake_run(tmp_path / "quick", c, 0.9, maps=True) for c in FMNIST_CLASSES[:3]]
    fig = gallery.experiment_figure(runs, n=4)
    axes = np.array(fig.axes).reshape(6, 9)                     # 3 classes x (image, heatmap); 4 | spacer | 4
    scores = pd.read_parquet(runs[0] / "scores.parquet")
    for half, want in ((slice(0, 4), 0), (slice(5, 9), 1)):
        shown = [ax.images[0].get_array()[0, 0] for ax in axes[0, half]]
        part = scores[scores["anomaly"] == want].sort_values("score", ascending=False)
        assert shown == pytest.approx(part["index"].to_numpy()[:4] / 12), "most anomalous first, per half"
    assert not axes[0, 4].images, "the spacer column stays empty"
    assert axes[0, 0].get_ylabel() == runs[0].parent.name and axes[0, 0].yaxis.label.get_fontsize() >= 9
    w, h = fig.get_size_inches()
    assert w < 10 and h < 2.2 * 3 + 1, "about an inch per image: legible at 100% zoom, not a 40-row column"


def fake_kde_run(outputs: Path, experiment: str, cls: str, overlap: float) -> Path:
    """A finished KDE run on MNIST-C corruption ``cls`` with AUC 0.9 whose explanations put ``overlap`` of their mass
    on the ground truth (one pixel per anomalous image) and the rest elsewhere (Clever Hans score = AUC - explanation
    accuracy, set through the maps)."""
    path = fake_run(outputs, cls, 0.9, experiment=experiment, dataset="mnist_c",
                    params_file=REPO / "params" / "cleverhans" / "mnist_c.yaml")
    p = yaml.safe_load((path / "params.yaml").read_text())
    p["parameters"] = {"model": "kde", "anomaly_class": cls, "seed": 0}
    (path / "params.yaml").write_text(yaml.safe_dump(p))
    truth = np.zeros((12, 4, 4), np.float32)
    truth[6:, 0, 0] = 1                                     # anomalous images: the truth is one pixel
    native = truth * overlap
    native[6:, 3, 3] = 1 - overlap                          # ... the explanation puts 1 - overlap elsewhere
    np.savez(path / "maps.npz", native=native, ground_truth=truth)
    return path


def test_publish_puts_figure_3s_top3_beside_a_clever_hans_experiment(tmp_path):
    # KDE runs on four corruptions: Clever Hans score = AUC - explanation accuracy, set through the maps
    outputs = tmp_path / "outputs" / "quick"
    for cls, overlap in (("zigzag", 0.0), ("dotted_line", 0.1), ("fog", 0.9), ("stripe", 1.0)):
        fake_kde_run(outputs, "cleverhans_mnist_c.model=kde", cls, overlap)
    tables.publish(outputs, tmp_path / "results" / "quick")
    md = (tmp_path / "results" / "quick" / "cleverhans_mnist_c.md").read_text()
    assert "Figure 3: the three highest Clever Hans scores per model (mnist_c, %)" in md
    # the highest Clever Hans scores: zigzag and dotted_line (explanations off the truth), then fog
    assert "- KDE: 2 of its top 3 corruptions among figure 3's (dotted_line, zigzag, spatter)." in md


def test_publish_ranks_figure_3s_top3_within_each_variant_not_over_their_mean(tmp_path):
    # two readings of one KDE experiment: under 'a' zigzag / dotted_line / fog have the highest Clever Hans scores,
    # under 'b' stripe / spatter / zigzag; their mean would put zigzag first and mix the two rankings
    outputs = tmp_path / "outputs" / "quick"
    overlaps = {"a": {"zigzag": 0.0, "dotted_line": 0.1, "fog": 0.2, "stripe": 0.9, "spatter": 0.95},
                "b": {"zigzag": 0.2, "dotted_line": 0.9, "fog": 0.95, "stripe": 0.0, "spatter": 0.1}}
    for variant, by_class in overlaps.items():
        for cls, overlap in by_class.items():
            fake_kde_run(outputs, f"cleverhans_mnist_c.model=kde.reading={variant}", cls, overlap)
    tables.publish(outputs, tmp_path / "results" / "quick")
    md = (tmp_path / "results" / "quick" / "cleverhans_mnist_c.md").read_text()
    assert "(mnist_c, reading=a, %)" in md and "(mnist_c, reading=b, %)" in md
    # figure 3's KDE corruptions are dotted_line, zigzag, spatter
    assert "- KDE (reading=a): 2 of its top 3 corruptions among figure 3's" in md    # zigzag, dotted_line, fog
    assert "- KDE (reading=b): 2 of its top 3 corruptions among figure 3's" in md    # stripe, spatter, zigzag
    block_b = md.split("(mnist_c, reading=b, %)")[1]
    ranked = [line.split("|")[3].strip() for line in block_b.splitlines() if line.startswith("| KDE")]
    assert ranked == ["stripe", "spatter", "zigzag"]


def test_publish_shows_a_short_learning_curve_and_names_a_long_one(tmp_path):
    outputs = tmp_path / "outputs" / "quick"
    path = fake_run(outputs, FMNIST_CLASSES[0], 0.8)
    pd.DataFrame({"step": [0, 282, 564], "epoch": [0.0, 0.1, 0.2], "train_seconds": [0.0, 800.0, 1600.0],
                  "loss": [np.nan, 3.4, 2.9], "auc": [0.63, 0.67, 0.70], "final": [False, False, True],
                  "subset": [400] * 3}).to_parquet(path / "curve.parquet")
    tables.publish(outputs, tmp_path / "results" / "quick")
    md = (tmp_path / "results" / "quick" / "fcdd_fmnist.md").read_text()
    assert "## Learning curve (test AUC on 400 test images during training" in md
    assert re.search(r"\|\s*564\s*\|", md) and re.search(r"\|\s*0\.67\s*\|", md)
    for i in range(1, 15):
        path = fake_run(outputs, FMNIST_CLASSES[i % 10], 0.8, seed=i)
        pd.DataFrame({"step": [0, 1, 2], "epoch": [0, 1, 2], "auc": [0.5, 0.6, 0.7]}).to_parquet(path / "curve.parquet")
    path = fake_run(outputs, FMNIST_CLASSES[0], 0.8, seed=20)    # a long curve that peaks early
    epochs = np.arange(0, 101, 5)
    pd.DataFrame({"step": epochs * 10, "epoch": epochs, "auc": np.r_[0.5, 0.9, np.full(19, 0.8)],
                  "auc_probe": np.linspace(0.5, 0.99, 21)}).to_parquet(path / "curve.parquet")
    tables.publish(outputs, tmp_path / "results" / "quick")
    md = (tmp_path / "results" / "quick" / "fcdd_fmnist.md").read_text()
    assert "## Learning curves (test AUC; 66 points in the run folders' curve.parquet" in md
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines()
            if line.startswith("| fcdd_fmnist")]
    cells = next(r for r in rows if r[2] == "20")
    assert cells[3:9] == ["21", "0.5", "0.9", "5", "0.8", "100"], "points, first, peak, its epoch, final, its epoch"
    assert cells[9] == "0.99", "the probe's final value"
    shown = cells[10].split(", ")
    assert len(shown) == 11 and shown[0] == "0: 0.500" and shown[-1] == "100: 0.800" and "50: 0.800" in shown


def test_vary_columns_split_experiment_names_into_axes_even_when_values_hold_dots():
    frame = pd.DataFrame({"experiment": ["x.method=fcdd.outlier_exclude=[].outlier_blur=0.6.epochs=5",
                                         "x.method=hsc.outlier_exclude=[a,b].outlier_blur=0.0.epochs=40", "x"],
                          "method": ["FCDD", "HSC", "FCDD"]})
    out = tables.vary_columns(frame)
    assert out["outlier_exclude"].tolist() == ["[]", "[a,b]", ""]
    assert out["outlier_blur"].tolist() == ["0.6", "0.0", ""] and out["epochs"].tolist() == ["5", "40", ""]
    assert list(out.columns) == ["experiment", "method", "outlier_exclude", "outlier_blur", "epochs"]
    assert out["method"].tolist() == ["FCDD", "HSC", "FCDD"], "an axis named like a column keeps the column"


def test_vary_grid_pivots_one_experiment_and_sorts_numeric_axes_as_numbers():
    exp = "x.jpeg_quality={q}.epochs={e}"
    rows = [(exp.format(q=q, e=e), c, m, 0.5 + 0.01 * i)
            for i, (q, e, c, m) in enumerate([("None", 5, "cat", "auc"), ("None", 40, "cat", "auc"),
                                             ("25", 5, "cat", "auc"), ("25", 40, "cat", "auc"),
                                             ("25", 40, "cat", "aupr_in")])]
    frame = pd.DataFrame(rows, columns=["experiment", "class", "metric", "mean"]).assign(base="x")
    other = frame.assign(base="y", mean=0.0)
    grid = tables.vary_grid(pd.concat([frame, other]), "x", "jpeg_quality", ["epochs", "class"])
    assert list(grid.columns) == [(5, "cat"), (40, "cat")], "epochs as numbers: 5 before 40"
    assert list(grid.index) == ["25", "None"], "a mixed axis stays as written"
    assert grid.loc["None", (40, "cat")] == pytest.approx(0.51) and grid.loc["25", (5, "cat")] == pytest.approx(0.52)
    assert tables.vary_grid(frame, "z", "jpeg_quality", "class") is None
    assert tables.vary_grid(pd.DataFrame(), "x", "jpeg_quality", "class") is None
