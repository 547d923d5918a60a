"""The notebooks read like the papers because the code in them stays small: short cells, no function or class
definitions (those belong in the library), no branching on the method name (a method's differences live in its
detector, not in the notebook), every parameter recorded by runs.start, and the run finished by a cell after which nothing touches it. Each rule is checked on every notebook, and shown to catch a bad cell."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from oneclass import params

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
MAX_LINES = 15                       # a code cell (the parameters cell is a list, exempt)
METHOD_NAMES = {"method", "model", "variant"}   # the parameters that pick a method within a notebook


def code_cells(nb) -> list[tuple[int, str, bool]]:
    return [(i, c.source, "parameters" in c.metadata.get("tags", [])) for i, c in enumerate(nb.cells)
            if c.cell_type == "code"]


def problems(nb) -> list[str]:
    """Every broken rule of one notebook, as 'cell i: what'."""
    found = []
    cells = code_cells(nb)
    start_call = None
    for i, src, is_parameters in cells:
        tree = ast.parse(src)
        if not is_parameters and len(src.strip().splitlines()) > MAX_LINES:
            found.append(f"cell {i}: {len(src.strip().splitlines())} lines (at most {MAX_LINES}: move code to lib/)")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                found.append(f"cell {i}: defines a {type(node).__name__} (it belongs in lib/oneclass)")
            if isinstance(node, (ast.If, ast.IfExp)) and _names(node.test) & METHOD_NAMES:
                found.append(f"cell {i}: branches on {sorted(_names(node.test) & METHOD_NAMES)} (put the "
                             "difference into the detector or a library function)")
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict) and \
                    _names(node.slice) & METHOD_NAMES:
                found.append(f"cell {i}: a literal map indexed by the method (name maps belong in the library)")
            if isinstance(node, ast.Call) and _dotted(node.func) == "runs.start":
                start_call = node
    if start_call is not None:
        recorded = {k.arg for k in start_call.keywords}
        declared = set(params.notebook_parameters_from(nb)) - {"run_dir"}
        if declared - recorded:
            found.append(f"runs.start does not record the parameters {sorted(declared - recorded)}")
        # run.finish() ends the run: cells after it may only show things (the committed results), never
        # touch the run, whose folder is already final
        finish = [i for i, src, _ in cells if src.strip() == "run.finish()"]
        if not finish:
            last = cells[-1][1].strip() if cells else ""
            found.append(f"no cell is run.finish() (the last code cell is "
                         f"{last.splitlines()[-1] if last else 'empty'!r})")
        else:
            for i, src, _ in cells:
                if i > finish[-1] and "run" in _names(ast.parse(src)):
                    found.append(f"cell {i}: uses the run after run.finish() (finish it in the last cell "
                                 "that writes to it)")
    return found


def _names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _dotted(node) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_follows_the_style(path):
    assert problems(nbformat.read(path, as_version=4)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_experiment_notebooks_start_and_finish_a_run(path):
    nb = nbformat.read(path, as_version=4)
    starts = any("runs.start(" in src for _, src, _ in code_cells(nb))
    assert starts == (path.stem not in ("tables", "heatmap_explorer")), "an experiment notebook opens a run"


def _notebook(*sources, parameters="dataset = 'fmnist'\nnormal_class = 0\nseed = 0\nrun_dir = None\nmethod = 'fcdd'"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(parameters)] + [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    return nb


GOOD_START = "run = runs.start(run_dir, experiment='x', dataset=dataset, normal_class=0, seed=seed, method=method)"


def test_the_rules_catch_each_bad_cell():
    assert problems(_notebook(GOOD_START, "run.finish()")) == []
    cases = {
        "defines a FunctionDef": "def f(x):\n    return x",
        "defines a Lambda": "f = lambda x: x",
        "branches on ['method']": "if method == 'ae':\n    oe = None",
        "a literal map indexed by the method": "name = {'fcdd': 'FCDD'}[method]",
        "lines (at most": "\n".join(f"x{i} = {i}" for i in range(MAX_LINES + 1)),
    }
    for expected, bad in cases.items():
        found = problems(_notebook(GOOD_START, bad, "run.finish()"))
        assert any(expected in p for p in found), (expected, found)
    assert any("does not record the parameters ['method']" in p for p in problems(_notebook(
        GOOD_START.replace(", method=method", ""), "run.finish()")))
    assert any("no cell is run.finish()" in p for p in problems(_notebook(GOOD_START, "x = 1")))
    assert any("after run.finish()" in p for p in problems(_notebook(GOOD_START, "run.finish()", "run.save_metrics({})")))
    assert problems(_notebook(GOOD_START, "run.finish()", "tables.published('x')")) == []
