"""Every params file expands at every preset (validation only, no kernels): a broken params file, or a preset
value outside what its notebook allows, fails CI instead of the first user who runs it."""
from pathlib import Path

import nbformat
import pytest

from oneclass import params

REPO = Path(__file__).resolve().parents[1]
FILES = sorted((REPO / "params").rglob("*.yaml"))
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_params_folder_is_found():
    assert len(FILES) >= 29


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO / "params")))
def test_every_params_file_expands_at_every_preset(path, tmp_path):
    from oneclass import data

    exp = params.load(path)
    overrides = None
    if data.is_path_category(exp.dataset):     # a tree of one's own (params/custom): a two-class tree here
        from PIL import Image

        for cls in ("a", "b"):
            (tmp_path / "tree" / cls).mkdir(parents=True)
            for i in range(5):
                Image.new("RGB", (8, 8)).save(tmp_path / "tree" / cls / f"{i}.png")
        overrides = {"dataset": str(tmp_path / "tree")}
    for preset in exp.raw["presets"]:
        specs = params.expand(exp, preset, overrides=overrides)
        assert specs and all(s.preset == preset for s in specs)
        labels = [s.label for s in specs]
        assert len(labels) == len(set(labels)), f"{path.name} [{preset}]: two runs share a run folder"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_alternatives_in_a_parameter_comment_are_a_checked_constraint(notebook):
    """A string parameter whose comment lists alternatives ('a | b | c') declares them as a constraint '[a | b]'
    that the batch enforces, unless the alternatives are open (a dataset, a network name, a folder)."""
    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if not cells:
        pytest.skip("no parameters cell")
    try:
        declared = params.notebook_parameters_from(nb, notebook)
    except params.ParamsError:
        pytest.skip("not an experiment notebook (the tables and the explorer take no params file)")
    comments = params._comments(cells[0].source)
    open_sets = ("a network name", "dataset", "folder")
    for line_no, comment in comments.items():
        line = cells[0].source.splitlines()[line_no - 1]
        name = line.split("=")[0].split(":")[0].strip()
        if name in declared and isinstance(declared[name]["default"], str) and " | " in comment \
                and not any(s in comment for s in open_sets):
            assert declared[name]["constraint"] is not None, f"{notebook.name}: {name!r} lists values unchecked"
