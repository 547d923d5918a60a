"""The tables and heatmap-explorer notebooks execute through papermill on finished runs; notebooks in git are clean."""
from pathlib import Path

import nbformat
import papermill
import pytest

from nbrun import printed

from oneclass import batch, nbclean, params, tables

REPO = Path(__file__).resolve().parents[1]
TOY = Path(__file__).parent / "assets" / "toy.yaml"


@pytest.fixture(scope="module")
def toy_outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("tool-notebooks") / "outputs"
    specs = params.expand(params.load(TOY), "smoke", classes=[0, 1], seeds=[0])
    assert {r.status for r in batch.run_batch(specs, out, progress=False)} == {"done"}
    return out


def execute(name, tmp_path, **parameters):
    out = tmp_path / name
    papermill.execute_notebook(str(REPO / "notebooks" / name), str(out), parameters=parameters,
                               kernel_name="python3", progress_bar=False, cwd=str(REPO / "notebooks"))
    return nbformat.read(out, as_version=4)


def outputs_of(nb, kind):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


def test_tables_notebook_shows_every_fillable_table(toy_outputs, tmp_path):
    nb = execute("tables.ipynb", tmp_path, outputs=str(toy_outputs), preset="smoke")
    text = "\n".join(o["data"]["text/markdown"] for o in outputs_of(nb, "text/markdown"))
    assert "toy Table 1: auc" in text and "synthetic scores, not a trained model" in text
    html = "\n".join(o["data"]["text/html"] for o in outputs_of(nb, "text/html"))
    assert "Toy" in html and "mean" in html
    streams = printed(nb)
    assert "2 finished runs" in streams


def test_heatmap_explorer_renders_a_static_gallery_in_batch(toy_outputs, tmp_path):
    nb = execute("heatmap_explorer.ipynb", tmp_path, outputs=str(toy_outputs), interactive=False, eta=0.9,
                 scope="local")
    assert len(outputs_of(nb, "image/png")) == 2      # nominal and anomalous galleries
    streams = printed(nb)
    assert "2 runs with heatmaps" in streams


def test_explorer_widget_builds_over_runs(toy_outputs):
    from oneclass import widgets

    panel = widgets.explorer(toy_outputs)
    pick = panel.children[0]
    assert len(pick.options) == 2
    eta = panel.children[1].children[0]
    eta.value = 0.8          # redraws without error through the same normalisation
    with pytest.raises(FileNotFoundError, match="no finished run with heatmaps"):
        widgets.explorer(toy_outputs / "nowhere")


def test_wide_table_puts_paper_value_beside_ours(toy_outputs):
    summary = tables.summarize(tables.collect(toy_outputs / "smoke"), "auc")
    wide = tables.wide(summary)
    assert list(wide.index) == ["0", "1", "mean"] and list(wide.columns) == ["Toy"]
    assert wide.loc["0", "Toy"].endswith("(-)")      # the toy paper reports nothing


def test_notebooks_in_git_have_no_outputs():
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert notebooks
    dirty = [p.name for p in notebooks if not nbclean.is_clean(nbformat.read(p, as_version=4))]
    assert dirty == [], f"strip them: python -m oneclass.nbclean {' '.join(dirty)}"


def test_methods_figure_shows_the_same_images_for_every_method(toy_outputs):
    from oneclass import gallery

    a, b = sorted((toy_outputs / "smoke" / "toy" / "mnist").glob("*/seed_0"))
    fig = gallery.methods_figure({"A": a, "B": b}, n=2)
    assert len(fig.axes) == 3 * 2           # rows: input, A, B; the two random images both runs stored
    assert [ax.get_ylabel() for ax in fig.axes[::2]] == ["input", "A", "B"]
