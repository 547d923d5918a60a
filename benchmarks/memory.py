"""Peak resident memory (RSS) of each experiment notebook's smoke run, and of the FCDD MVTec-AD quick run: the
kernel's high-water mark as the operating system reports it (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a fresh
process that runs one notebook through the batch runner, so each figure is one kernel's peak).

    python benchmarks/memory.py --data DATA_ROOT [--only fcdd/fmnist geom/fmnist ...] [--no-mvtec-quick]
                                [--quick-epochs N]

``--quick-epochs`` shortens the MVTec quick run (its peak is reached in the first training batch; the preset's 5
epochs take about 10 minutes on 2 cores).

Needs the Jupyter stack (papermill), like ``batch_overhead.py``; runs whose data is not under DATA_ROOT are listed
as skipped. One run at a time: the figures are per kernel, not per machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# one params file per experiment notebook (its smoke preset), then the MVTec-AD quick run
RUNS = [("fcdd/fmnist", "smoke"), ("fcdd/mvtec", "smoke"), ("fcdd/watermark", "smoke"), ("geom/fmnist", "smoke"),
        ("geom/intuition", "smoke"), ("novelty/mnist", "smoke"), ("competitors/fmnist", "smoke"),
        ("cleverhans/mnist_c", "smoke"), ("fcdd/mvtec", "quick")]

CHILD = """
import json, resource, sys
sys.path.insert(0, {lib!r})
from oneclass import batch, params
spec = params.expand(params.load({params!r}), {preset!r}, overrides={overrides!r})[0]
res = batch.execute(spec, {outputs!r})
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({{"status": res.status, "label": res.label, "seconds": res.seconds, "peak_mib": peak_kib / 1024,
                   "message": res.message}}))
"""


def measure(name: str, preset: str, data: Path, outputs: Path, overrides: dict) -> dict:
    from oneclass import batch, data as D, params

    specs = params.expand(params.load(REPO / "params" / f"{name}.yaml"), preset)[:1]
    os.environ["ONECLASS_DATA"], os.environ["ONECLASS_DOWNLOAD"] = str(data), "0"
    try:
        batch.prepare_data(specs)
    except D.DatasetMissingError as err:
        return {"status": "skipped", "message": str(err).splitlines()[0]}
    code = CHILD.format(lib=str(REPO / "lib"), params=str(REPO / "params" / f"{name}.yaml"), preset=preset,
                        outputs=str(outputs), overrides=overrides)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        return {"status": "error", "message": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="data root with the datasets in their standard layouts")
    ap.add_argument("--only", nargs="*", help="params files (paper/name) to measure")
    ap.add_argument("--no-mvtec-quick", action="store_true")
    ap.add_argument("--quick-epochs", type=int, default=None, help="epochs of the MVTec quick run (default: 5)")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "lib"))
    runs = [(n, p) for n, p in RUNS if (not a.only or n in a.only) and not (a.no_mvtec_quick and p == "quick")]
    load = os.getloadavg()[0]
    print(f"peak RSS of one kernel per run (data {a.data}, load average {load:.2f} at the start)")
    print(f"{'params file [preset]':30s} {'peak MiB':>9s} {'wall s':>7s}  status")
    with tempfile.TemporaryDirectory() as tmp:
        for name, preset in runs:
            overrides = {"epochs": a.quick_epochs} if preset == "quick" and a.quick_epochs else {}
            r = measure(name, preset, Path(a.data).absolute(), Path(tmp), overrides)
            peak = f"{r['peak_mib']:9.0f}" if "peak_mib" in r else f"{'-':>9s}"
            wall = f"{r['seconds']:7.1f}" if "seconds" in r else f"{'-':>7s}"
            label = name + f" [{preset}{''.join(f', {k}={v}' for k, v in overrides.items())}]"
            print(f"{label:30s} {peak} {wall}  {r['status']}"
                  + (f": {r['message']}" if r.get("message") else ""))


if __name__ == "__main__":
    main()
