"""Run a params file's smoke preset through the real batch runner (papermill, run folders) for notebook tests."""
from __future__ import annotations

import os
from pathlib import Path

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
    return [runs.read_run(p) for p in runs.finished_runs(out / "smoke")]


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
