"""Per-run overhead of papermill (kernel start to the first cell finishing) and the speedup of -j 2 over -j 1.

    .venv/bin/python benchmarks/batch_overhead.py [--repeats 5]

Runs the toy experiment of the tests (synthetic scores, no training), so what it measures is the runner itself. It
is the one benchmark that needs the Jupyter stack (papermill, nbformat) and takes no ``--device``: nothing in it
runs on an accelerator.
"""
import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from oneclass import batch, params  # noqa: E402

TOY = REPO / "tests" / "assets" / "toy.yaml"


def first_cell_latency(run_notebook: Path, started: float) -> float:
    nb = nbformat.read(run_notebook, as_version=4)
    end = nb.cells[1].metadata["papermill"]["end_time"]   # the parameters cell, the first to run
    return datetime.fromisoformat(end.replace("Z", "+00:00")).timestamp() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    exp = params.load(TOY)
    with tempfile.TemporaryDirectory() as tmp:
        latencies, totals = [], []
        for k in range(args.repeats):
            spec = params.expand(exp, "smoke", classes=[0], seeds=[100 + k])[0]
            t0 = time.time()
            res = batch.execute(spec, tmp)
            totals.append(time.time() - t0)
            latencies.append(first_cell_latency(Path(res.path) / "run.ipynb", t0))
        print(f"papermill overhead, kernel start -> first cell done: median {statistics.median(latencies):.2f} s "
              f"(min {min(latencies):.2f}, max {max(latencies):.2f}, n={len(latencies)})")
        print(f"whole toy run (start, imports, save, finalise): median {statistics.median(totals):.2f} s")
        walls = {}
        for jobs in (1, 2):
            specs = params.expand(exp, "smoke", seeds=[10 * jobs, 10 * jobs + 1])   # 3 classes x 2 seeds
            t0 = time.time()
            results = batch.run_batch(specs, tmp, jobs=jobs, progress=False)
            walls[jobs] = time.time() - t0
            assert all(r.status == "done" for r in results), results
            print(f"-j {jobs}: {len(specs)} runs in {walls[jobs]:.1f} s ({walls[jobs] / len(specs):.2f} s per run)")
        print(f"speedup of -j 2 over -j 1: {walls[1] / walls[2]:.2f}x")


if __name__ == "__main__":
    main()
