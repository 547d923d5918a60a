"""What every benchmark shares: ``--device`` / ``--threads`` / ``--smoke`` options, a header line that says where
the figures were taken (device, threads, load), random images on the device, and median timings that wait for
the device to finish.

The benchmarks need only torch, torchvision, numpy, pandas, scipy and scikit-learn (no Jupyter stack, no zennit,
no tqdm), and find the library without installing it, so that they run as they are on a bare GPU machine:

    python benchmarks/precision.py --device cuda
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"
if str(LIB) not in sys.path:
    sys.path.insert(0, str(LIB))

import torch  # noqa: E402

from oneclass import runs  # noqa: E402
from oneclass.methods import base  # noqa: E402


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--smoke", action="store_true",
                    help="the smallest sizes that exercise every code path (the test suite's check; figures are "
                         "not meaningful)")
    return ap


def setup(args) -> torch.device:
    """Apply ``--threads``, resolve ``--device``, print the header line; returns the device."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = base.resolve_device(args.device)
    print(describe(device))
    return device


def describe(device: torch.device) -> str:
    """torch version, the device (GPU name, or CPU model, thread count and native bf16), the load average. The CPU's
    model matters: the same option can win on one CPU and lose on another of the same machine kind."""
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (bf16 supported: {torch.cuda.is_bf16_supported()})"
    else:
        where = f"CPU {runs.cpu_model()}, {torch.get_num_threads()} thread(s), native bf16: {base.cpu_has_native_bf16()}"
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    auto = base.resolve_precision("auto", device)
    return f"torch {torch.__version__}, device {device} = {where}{load}; precision='auto' chooses {auto}"


def images(n: int, channels: int, size: int, seed: int = 0, device="cpu") -> torch.Tensor:
    """Random uint8 images (the methods' cost does not depend on the pixels), drawn on the CPU so that a seed gives
    the same images on every device."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8).to(device)


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that a timing covers it (CUDA runs asynchronously)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn, device, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)
