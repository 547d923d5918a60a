"""Run a params file's smoke preset through the real batch runner (papermill, run folders) for notebook tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from oneclass import batch, params, runs


def run_smoke(params_file, tmp_path, data_root=None, classes=None, seeds=None, jobs: int = 1, **overrides) -> list[dict]:
    """Execute the smoke preset into ``tmp_path/outputs``; fail the test with the run's traceback if a run failed.

    Returns one ``runs.read_run`` dict per run (keys path, params, metrics, env)."""
    repo = Path(__file__).resolve().parents[1]
    params_file = Path(params_file)
    if not params_file.is_absolute():
        params_file = repo / params_file
    exp = params.load(params_file)
    out = Path(tmp_path) / "outputs"
    previous = os.environ.get("ONECLASS_DATA")
    if data_root is not None:   # for this batch's validation and kernels only, not for the tests that follow
        os.environ["ONECLASS_DATA"] = str(data_root)
    try:
        specs = params.expand(exp, "smoke", classes, seeds, overrides or None)
        results = batch.run_batch(specs, out, jobs=jobs, progress=False)
    finally:
        if previous is None:
            os.environ.pop("ONECLASS_DATA", None)
        else:
            os.environ["ONECLASS_DATA"] = previous
    failed = [r for r in results if r.status == "failed"]
    if failed:
        errors = "\n\n".join(Path(r.path, "error.txt").read_text()[-4000:] if Path(r.path, "error.txt").exists()
                             else r.message for r in failed)
        raise AssertionError(f"{len(failed)} smoke run(s) failed:\n{errors}")
    found = [runs.read_run(p) for p in runs.finished_runs(out / "smoke")]
    for run in found:
        spec = next((s for s in specs if runs.run_path(out, s.preset, s.experiment, s.dataset, s.normal_class,
                                                        s.seed) == Path(run["path"])), None)
        assert spec is not None, f"{run['path']} was not in the batch's grid"
        check_run_folder(run, spec)
    return found


def _rank_auc(scores, anomaly) -> float:
    """ROC AUC as the Mann-Whitney statistic, ties counted half: a reference independent of oneclass.metrics."""
    s, y = np.asarray(scores, float), np.asarray(anomaly).astype(bool)
    pos, neg = s[y], s[~y]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (len(pos) * len(neg))


def check_run_folder(run: dict, spec=None) -> None:
    """A finished run folder checked against itself: metrics.json's detection metrics recomputed from
    scores.parquet (AUC by a rank reference, AUPRs by scikit-learn) within 1e-9; scores finite and both classes
    present; maps finite, gallery indices inside the test set and gallery arrays aligned; params.yaml equal to what
    the batch resolved; env.json naming the commit, versions, device and threads."""
    import json

    import pandas as pd
    from sklearn.metrics import average_precision_score

    path = Path(run["path"])
    metrics, stored = run["metrics"], run["params"]["parameters"]      # runs.read_run read them from the folder
    n = None
    if (path / "scores.parquet").exists():
        table = pd.read_parquet(path / "scores.parquet")
        n = len(table)
        if {"score", "anomaly"} <= set(table.columns):
            score, anomaly = table["score"].to_numpy(float), table["anomaly"].to_numpy()
            assert np.isfinite(score).all(), f"{path}: non-finite scores"
            assert set(np.unique(anomaly)) == {0, 1}, f"{path}: the test set must hold both classes"
            if metrics.get("positive") == "described":     # FCDD's Clever Hans runs: the described class positive
                anomaly = 1 - anomaly
            if "auc" in metrics:
                assert abs(metrics["auc"] - _rank_auc(score, anomaly)) < 1e-9, f"{path}: auc differs from its scores"
            if "aupr_out" in metrics:
                assert abs(metrics["aupr_out"] - average_precision_score(anomaly, score)) < 1e-9, path
            if "aupr_in" in metrics:
                assert abs(metrics["aupr_in"] - average_precision_score(1 - anomaly, -score)) < 1e-9, path
    if (path / "maps.npz").exists():
        with np.load(path / "maps.npz") as z:
            arrays = {k: z[k] for k in z.files}
        for k, a in arrays.items():
            if np.issubdtype(a.dtype, np.floating):
                assert np.isfinite(a).all(), f"{path}: map {k!r} is not finite"
        if "index" in arrays and n is not None:
            idx = arrays["index"]
            assert ((idx >= 0) & (idx < n)).all(), f"{path}: gallery indices outside the test set"
            for k in ("upsampled", "images", "masks"):
                if k in arrays:
                    assert len(arrays[k]) == len(idx), f"{path}: {k!r} not aligned with the gallery index"
        if "native" in arrays and n is not None and arrays["native"].ndim == 3:
            assert len(arrays["native"]) == n, f"{path}: one native map per scored test image"
    if (path / "curve.parquet").exists():
        curve = pd.read_parquet(path / "curve.parquet")
        assert (np.diff(curve["step"]) > 0).all() and curve["final"].iloc[-1] and not curve["final"].iloc[:-1].any()
        assert np.isfinite(curve[[c for c in curve if c.startswith("auc")]].to_numpy()).all(), f"{path}: curve"
        if stored.get("monitor_size", 0) is None and "auc" in metrics:   # the whole test set: ends on the run's AUC
            assert abs(curve["auc"].iloc[-1] - metrics["auc"]) < 1e-9, f"{path}: curve does not end on the auc"
    if spec is not None:
        assert stored == dict(spec.parameters), f"{path}: params.yaml differs from what the batch resolved"
    if (path / "run.ipynb").exists():
        check_published_output(path / "run.ipynb")
    env = json.loads((path / "env.json").read_text())
    assert env["git_commit"] and env["packages"]["torch"] and env["torch_threads"] >= 1, f"{path}: env.json"
    assert env["cpu_model"] and env["load_average"] >= 0, f"{path}: env.json lacks the machine"
    assert env["device"] in ("cpu", "cuda") or str(env["device"]).startswith("cuda"), env["device"]


def run_interactive(params_file, tmp_path, data_root=None, **overrides) -> dict:
    """Execute the first run of the smoke preset as a user in JupyterLab would: no ``run_dir``, so the notebook
    itself must finish its run (``run.finish()``) into ``outputs/interactive/``. Returns the finished run's
    ``runs.read_run`` dict; fails when the notebook left no finished folder, or left a temporary one behind."""
    import papermill

    repo = Path(__file__).resolve().parents[1]
    params_file = Path(params_file) if Path(params_file).is_absolute() else repo / params_file
    spec = params.expand(params.load(params_file), "smoke", overrides=overrides or None)[0]
    out = Path(tmp_path) / "interactive-outputs"
    saved = {k: os.environ.get(k) for k in ("ONECLASS_DATA", "ONECLASS_OUTPUTS")}
    os.environ["ONECLASS_OUTPUTS"] = str(out)
    if data_root is not None:
        os.environ["ONECLASS_DATA"] = str(data_root)
    try:
        papermill.execute_notebook(str(spec.notebook), str(Path(tmp_path) / "interactive.ipynb"),
                                   parameters=dict(spec.parameters) | {"run_dir": None}, kernel_name="python3",
                                   progress_bar=False, cwd=str(spec.notebook.parent))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    finished = runs.finished_runs(out / "interactive")
    leftovers = [p for p in (out / "interactive").rglob(".*") if p.is_dir()]
    assert len(finished) == 1 and not leftovers, (finished, leftovers)
    run = runs.read_run(finished[0])
    # runs.start recorded every parameter of the notebook with the value the run used
    expected = {k: v for k, v in spec.parameters.items() if k != "run_dir"}
    missing = sorted(set(params.notebook_parameters(spec.notebook)) - {"run_dir"} - set(run["params"]))
    assert not missing, f"runs.start does not record {missing}"
    assert {k: run["params"][k] for k in expected} == expected
    assert run["env"]["wall_seconds"] > 0 and run["env"]["device"], run["env"]
    return run


def printed(nb) -> str:
    """Everything an executed notebook (a NotebookNode or its path) printed to its streams, all cells together."""
    import nbformat

    nb = nb if isinstance(nb, nbformat.NotebookNode) else nbformat.read(nb, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def check_published_output(executed) -> None:
    """The closing note's ``tables.published([...])`` cell shows, for every experiment it lists, the committed
    table when ``results/<preset>/<experiment>.md`` exists (its heading and its commit) and names the experiment as
    not published otherwise."""
    import ast
    import re

    import nbformat

    from oneclass import tables

    for cell in nbformat.read(executed, as_version=4).cells:
        if cell.cell_type != "code" or "tables.published(" not in cell.source:
            continue
        call = next(n for n in ast.walk(ast.parse(cell.source)) if isinstance(n, ast.Call)
                    and getattr(n.func, "attr", "") == "published")
        experiments = ast.literal_eval(call.args[0])
        shown = "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in cell.get("outputs", []))
        assert shown, f"{executed}: the published-results cell shows nothing"
        for exp in experiments:
            for preset in ("quick", "paper"):
                md = tables.results_root() / preset / f"{exp}.md"
                if md.exists():
                    commit = re.search(r"commit `([0-9a-f]+)", md.read_text()).group(1)
                    assert f"### {exp} ({preset} preset)" in shown and commit in shown, f"{executed}: {exp}"
            if not any((tables.results_root() / p / f"{exp}.md").exists() for p in ("quick", "paper")):
                assert exp in shown.split("Not published", 1)[-1], f"{executed}: {exp} neither shown nor missing"
