"""GEOM throughput: training (on-the-fly transformation of (image, transformation) pairs by one gather, then the
WRN step) and scoring (every image under all |T| transformations, Dirichlet score) against the bare WRN step and
the bare forward pass on tensors already in memory.

    python benchmarks/geom_throughput.py [--device cuda] [--threads N] [--steps K] [--repeats R]
                                         [--precision auto|fp32|bf16] [--dataset cifar10|fmnist|catsvsdogs]

Images are random uint8 tensors of the dataset's shape (throughput does not depend on content). Rates are
medians of ``--repeats`` timings of ``--steps`` steps. Training images/s counts transformed images (one
self-labelled sample = one image); scoring images/s counts test images (each one is |T| forward passes). The
paper preset's cost per class follows: 3 epochs x 72 x N training samples, plus 72 forward passes for every
training image (Dirichlet fit) and every test image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import common
from oneclass.methods import geom

SETUPS = {"cifar10": (5000, 10000, 3, 32, 32), "fmnist": (6000, 10000, 1, 28, 32), "catsvsdogs": (10000, 5000, 3, 64, 64)}




def main():
    ap = common.parser(__doc__)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--dataset", default="cifar10", choices=sorted(SETUPS))
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.repeats = 1, 1
    dev = common.setup(args)
    torch.manual_seed(0)
    n_train, n_test, c, s, size = SETUPS[args.dataset]
    bs = 128
    train = common.images(256, c, s)
    det = geom.GEOM("geom72", size=size, precision=args.precision, fit_limit=2, seed=0, device=dev).fit(
        train[:4], epochs=1 / 72)
    T = len(det.transforms_)
    net = det.net_
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=5e-4)
    x_ready = det._prepare(train[:bs]).to(dev)
    y = torch.randint(0, T, (bs,)).to(dev)

    def bare_step():
        for _ in range(args.steps):
            opt.zero_grad()
            F.cross_entropy(det._forward(x_ready), y).backward()
            opt.step()

    x_all = det._prepare(train).to(dev)
    g = torch.Generator().manual_seed(1)

    def geom_step():                       # what GEOM.fit does per batch: pairs -> gather -> step
        for _ in range(args.steps):
            pairs = torch.randint(0, len(train) * T, (bs,), generator=g).to(dev)
            xb = geom.apply(x_all[pairs // T], pairs % T, det.maps_)
            opt.zero_grad()
            F.cross_entropy(det._forward(xb), pairs % T).backward()
            opt.step()

    net.train()
    t_bare = common.seconds(bare_step, dev, args.repeats) / (args.steps * bs)
    t_geom = common.seconds(geom_step, dev, args.repeats) / (args.steps * bs)
    t_gather = common.seconds(lambda: geom.apply(x_all[:bs], torch.arange(bs, device=dev) % T, det.maps_), dev,
                              args.repeats) / bs

    net.eval()
    n_score = max(1, det._chunk()) * args.steps
    test = common.images(n_score, c, s, seed=2)
    x_test = det._prepare(test).to(dev)

    def bare_forward():
        with torch.no_grad():
            for i in range(0, n_score * T, det.eval_batch_size):
                det._forward(x_test[torch.arange(i, min(i + det.eval_batch_size, n_score * T), device=dev) % n_score])

    t_fwd = common.seconds(bare_forward, dev, args.repeats) / (n_score * T)
    t_score = common.seconds(lambda: det.normality(test), dev, args.repeats) / n_score
    t_explain = common.seconds(lambda: det.explain(test[:det._chunk()]), dev, max(1, args.repeats // 2)) / det._chunk()

    print(f"GEOM throughput, {args.dataset} ({c}x{s}px -> {size}px), WRN-{net.depth}-{net.widen}, |T| = {T}, "
          f"batch {bs}, {det.device_}, precision {args.precision} -> {det.precision_}, medians of {args.repeats}")
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
