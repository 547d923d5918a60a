"""GEOM throughput: training (on-the-fly transformation of (image, transformation) pairs by one gather, then the
WRN step) and scoring (every image under all |T| transformations, Dirichlet score) against the bare WRN step and
the bare forward pass on tensors already in memory.

    python benchmarks/geom_throughput.py [--threads N] [--steps K] [--repeats R] [--precision fp32|bf16]
                                         [--dataset cifar10|fmnist|catsvsdogs]

Images are random uint8 tensors of the dataset's shape (throughput does not depend on content). Rates are
medians of ``--repeats`` timings of ``--steps`` steps. Training images/s counts transformed images (one
self-labelled sample = one image); scoring images/s counts test images (each one is |T| forward passes). The
paper preset's cost per class follows: 3 epochs x 72 x N training samples, plus 72 forward passes for every
training image (Dirichlet fit) and every test image.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from oneclass import geom

SETUPS = {"cifar10": (5000, 10000, 3, 32, 32), "fmnist": (6000, 10000, 1, 28, 32), "catsvsdogs": (10000, 5000, 3, 64, 64)}


def images(n, c, s, seed=0):
    return torch.randint(0, 256, (n, c, s, s), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def timed(fn, repeats):
    fn()                                   # warm-up (allocator, kernels)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--dataset", default="cifar10", choices=sorted(SETUPS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_train, n_test, c, s, size = SETUPS[args.dataset]
    bs = 128
    train = images(256, c, s)
    det = geom.GEOM("geom72", size=size, precision=args.precision).fit(train[:4], epochs=1 / 72, fit_limit=2)
    T = len(det.transforms)
    net = det.net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=5e-4)
    x_ready = det._prepare(train[:bs])
    y = torch.randint(0, T, (bs,))

    def bare_step():
        for _ in range(args.steps):
            opt.zero_grad()
            F.cross_entropy(det._forward(x_ready), y).backward()
            opt.step()

    x_all = det._prepare(train)
    g = torch.Generator().manual_seed(1)

    def geom_step():                       # what GEOM.fit does per batch: pairs -> gather -> step
        for _ in range(args.steps):
            pairs = torch.randint(0, len(train) * T, (bs,), generator=g)
            xb = geom.apply(x_all[pairs // T], pairs % T, det.maps_)
            opt.zero_grad()
            F.cross_entropy(det._forward(xb), pairs % T).backward()
            opt.step()

    net.train()
    t_bare = timed(bare_step, args.repeats) / (args.steps * bs)
    t_geom = timed(geom_step, args.repeats) / (args.steps * bs)
    t_gather = timed(lambda: geom.apply(x_all[:bs], torch.arange(bs) % T, det.maps_), args.repeats) / bs

    net.eval()
    n_score = max(1, det._chunk()) * args.steps
    test = images(n_score, c, s, seed=2)
    x_test = det._prepare(test)

    def bare_forward():
        with torch.no_grad():
            for i in range(0, n_score * T, det.eval_batch_size):
                det._forward(x_test[torch.arange(i, min(i + det.eval_batch_size, n_score * T)) % n_score])

    t_fwd = timed(bare_forward, args.repeats) / (n_score * T)
    t_score = timed(lambda: det.normality(test), args.repeats) / n_score
    t_explain = timed(lambda: det.explain(test[:det._chunk()]), max(1, args.repeats // 2)) / det._chunk()

    print(f"GEOM throughput, {args.dataset} ({c}x{s}px -> {size}px), WRN-{net.depth}-{net.widen}, |T| = {T}, "
          f"batch {bs}, {args.threads} thread(s), {args.precision}, medians of {args.repeats}")
    print(f"  train: bare WRN step        {1 / t_bare:8.1f} img/s")
    print(f"  train: GEOM (gather + step) {1 / t_geom:8.1f} img/s   ratio to bare {t_bare / t_geom:.2f}")
    print(f"         the gather alone     {1 / t_gather:8.0f} img/s")
    print(f"  score: bare forward         {1 / t_fwd:8.1f} transformed img/s = {1 / (t_fwd * T):.2f} test img/s")
    print(f"  score: GEOM normality       {1 / t_score:8.2f} test img/s        ratio to bare {t_fwd * T / t_score:.2f}")
    print(f"  explain (gradient maps)     {1 / t_explain:8.2f} test img/s")
    paper_train = 3 * T * n_train * t_geom
    paper_score = (n_train + n_test) * t_score
    print(f"  paper preset, one class (extrapolated): training {paper_train / 3600:.1f} h, Dirichlet fit + "
          f"scoring {paper_score / 3600:.1f} h")


if __name__ == "__main__":
    main()
