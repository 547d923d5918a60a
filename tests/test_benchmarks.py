"""Every benchmark runs at its --smoke sizes on a machine that has only torch, torchvision, numpy, pandas, scipy
and scikit-learn (tests/bare_python.py blocks the rest) and prints the figures it promises, each a positive
finite rate. batch_overhead.py and memory.py are the exceptions: they run notebooks, so they need the Jupyter
stack."""
import functools
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from oneclass import runs

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
# benchmark: labels of the lines whose img/s figures must be there
EXPECTED = {
    "precision.py": ["FCDD fcdd_32 (CIFAR-10) train", "FCDD fcdd_32 (CIFAR-10) score",
                     "GEOM WRN-10-4, 72 transformations train", "GEOM WRN-10-4, 72 transformations score"],
    "fcdd_throughput.py": ["fmnist fcdd_28 ", "fmnist fcdd_28_wide", "cifar10 fcdd_32 ", "cifar10 fcdd_32_lw3k"],
    "geom_throughput.py": ["train: bare WRN step", "train: GEOM (gather + step)", "score: GEOM normality"],
    "novelty_throughput.py": ["lenet28: end to end", "lenet32: end to end"],
    "baselines_throughput.py": ["deep_svdd", "raw_ocsvm", "cae_ocsvm", "dsebm", "dagmm", "adgan (1 epoch"],
    "fcdd_mvtec_throughput.py": ["step, loss on the 28x28 map", "end to end (fit"],
    "fcdd_step_options.py": ['fcdd_28          contiguous', 'fcdd_28          channels_last', 'fcdd_28          no_onednn', 'fcdd_32          contiguous', 'fcdd_32          channels_last', 'fcdd_32          no_onednn', 'fcdd_28_wide     contiguous', 'fcdd_28_wide     channels_last', 'fcdd_28_wide     no_onednn', 'fcdd_32_lw3k     contiguous', 'fcdd_32_lw3k     channels_last', 'fcdd_32_lw3k     no_onednn', 'hsc_32           channels_last', 'ae_32            channels_last'],
    "custom_data.py": ["pixel metrics, 4 images of 64 px: peak", "predict (scores, median of"],
}
NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def bare(script, *args):
    """Run ``script`` under tests/bare_python.py, without PYTHONPATH (the benchmarks find lib/ themselves)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, str(REPO / "tests" / "bare_python.py"), str(script), *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


@functools.lru_cache(maxsize=None)
def smoke(script):
    proc = bare(BENCH / script, "--smoke", "--device", "cpu")
    assert proc.returncode == 0, f"{script} failed on a bare machine:\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_benchmark_is_covered():
    scripts = {p.name for p in BENCH.glob("*.py")} - {"common.py", "batch_overhead.py", "memory.py"}   # papermill
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("module", ["tqdm", "zennit", "nbformat", "yaml"])
def test_the_blocker_blocks(tmp_path, module):
    script = tmp_path / "imports.py"
    script.write_text(f"import {module}\n")
    proc = bare(script)
    assert proc.returncode != 0 and "not on a bare GPU machine" in proc.stderr
    script.write_text("import torch, torchvision, numpy, pandas, scipy, sklearn\nprint('ok')\n")
    assert bare(script).stdout == "ok\n"


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_benchmark_runs_bare_and_prints_its_figures(script):
    out = smoke(script)
    assert out.startswith("torch ") and "device cpu" in out.splitlines()[0]
    assert f"CPU {runs.cpu_model()}," in out.splitlines()[0], "the header must name the CPU model"
    for label in EXPECTED[script]:
        lines = [line for line in out.splitlines() if label in line]
        assert lines, f"{script} printed no line for {label!r}:\n{out}"
        rest = lines[0].split(label.strip(), 1)[1]
        figures = [float(x) for x in NUMBER.findall(rest)]
        assert figures and all(math.isfinite(f) and f > 0 for f in figures[:1]), lines[0]


def test_precision_benchmark_says_what_auto_chose():
    out = smoke("precision.py")
    header_choice = re.search(r"precision='auto' chooses (\w+)", out.splitlines()[0]).group(1)
    fitted_choice = re.search(r"precision='auto' on cpu: (\w+)", out).group(1)
    assert header_choice == fitted_choice and fitted_choice in ("fp32", "bf16")
    rows = [line for line in out.splitlines() if line.startswith(("FCDD", "GEOM"))]
    for row in rows:   # fp32 img/s, bf16 img/s, their ratio, the ratio consistent with the two rates
        fp32, bf16, ratio = (float(x) for x in row.split()[-3:])
        assert fp32 > 0 and bf16 > 0 and ratio == pytest.approx(bf16 / fp32, rel=0.05, abs=0.01)   # printed rounded
