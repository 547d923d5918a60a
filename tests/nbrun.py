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
