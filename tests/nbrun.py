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
    if data_root is not None:
        os.environ["ONECLASS_DATA"] = str(data_root)
    exp = params.load(params_file)
    specs = params.expand(exp, "smoke", classes, seeds, overrides or None)
    out = Path(tmp_path) / "outputs"
    results = batch.run_batch(specs, out, jobs=jobs, progress=False)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        errors = "\n\n".join(Path(r.path, "error.txt").read_text()[-4000:] if Path(r.path, "error.txt").exists()
                             else r.message for r in failed)
        raise AssertionError(f"{len(failed)} smoke run(s) failed:\n{errors}")
    return [runs.read_run(p) for p in runs.finished_runs(out / "smoke")]
