"""fp32 against bf16 for FCDD at 32px and GEOM's WRN-10-4, training and scoring images/s on one device, and what
``precision="auto"`` chooses there (bf16 only where the hardware runs it natively: CUDA with bf16, or a CPU with
AVX512-BF16 / AMX).

    python benchmarks/precision.py [--device cuda] [--threads N] [--steps K] [--repeats R]

FCDD: the paper's CIFAR-10 network (fcdd_32) through ``FCDD.fit`` (outlier exposure, appendix C's augmentation,
Adam, batch 200) and ``score`` (maps included). GEOM: WRN-10-4 on 32px CIFAR-10-shaped images through
``GEOM.fit`` (72 transformations, Adam, batch 128; training images/s counts transformed images) and ``score``
(72 forward passes per test image). Medians of ``--repeats`` timings after one warm-up; the bf16/fp32 column is
the speed ratio (above 1: bf16 is faster).
"""
from __future__ import annotations

import common
from oneclass.methods import fcdd, geom


def fcdd_rates(device, precision, steps, repeats, n_test):
    batch = fcdd.defaults("cifar10")["batch_size"]
    train = common.images(steps * batch, 3, 32, 0)
    oe = common.images(1000, 3, 32, 1)
    test = common.images(n_test, 3, 32, 2)

    def make(seed):
        return fcdd.make("fcdd", "cifar10", outliers=oe, seed=seed, device=device, precision=precision)

    make(0).fit(train[:batch], epochs=1, progress=False)                     # warm-up
    fits = [make(r).fit(train, epochs=1, progress=False) for r in range(repeats)]
    train_rate = len(train) / sorted(d.epoch_seconds_[0] for d in fits)[repeats // 2]
    det = fits[0]
    score_s = common.seconds(lambda: det.score(test), device, repeats)
    return train_rate, n_test / score_s, det.precision_


def geom_rates(device, precision, steps, repeats, n_test):
    n = 64
    train = common.images(n, 3, 32, 0)
    test = common.images(n_test, 3, 32, 2)
    T = 72
    epochs = steps * 128 / (n * T)                 # `steps` Adam steps of batch 128

    def fit(epochs):
        # the Dirichlet fit is cut to 2 images and one fixed-point iteration (a non-converging fit on a barely
        # trained network runs 1,000 iterations, ~5 s of scipy), so that the timing is the training steps
        return geom.GEOM("geom72", size=32, fit_limit=2, dirichlet_max_iter=1, seed=0, device=device,
                         precision=precision).fit(train, epochs=epochs)

    det = fit(128 / (n * T))                                                    # warm-up
    fit_s = common.seconds(lambda: fit(epochs), device, repeats, warmup=0)
    score_s = common.seconds(lambda: det.score(test, maps=False), device, repeats)
    return steps * 128 / fit_s, n_test / score_s, det.precision_


def main():
    ap = common.parser(__doc__)
    ap.add_argument("--steps", type=int, default=3, help="optimiser steps per timed fit")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.repeats = 1, 1
    device = common.setup(args)
    print(f"medians of {args.repeats} after one warm-up; {args.steps} optimiser steps per timed fit")
    print(f"{'model':34s} {'fp32 img/s':>11s} {'bf16 img/s':>11s} {'bf16/fp32':>10s}")
    cases = {"FCDD fcdd_32 (CIFAR-10)": (fcdd_rates, 8 if args.smoke else 1000),
             "GEOM WRN-10-4, 72 transformations": (geom_rates, 2 if args.smoke else 8)}
    for name, (fn, n_test) in cases.items():
        rates = {p: fn(device, p, args.steps, args.repeats, n_test) for p in ("fp32", "bf16")}
        for i, what in enumerate(("train", "score")):
            fp32, bf16 = rates["fp32"][i], rates["bf16"][i]
            print(f"{name + ' ' + what:34s} {fp32:11.1f} {bf16:11.1f} {bf16 / fp32:10.2f}")
    auto = fcdd.make("fcdd", "cifar10", device=device, precision="auto").fit(
        common.images(200, 3, 32), epochs=0, progress=False).precision_
    print(f"precision='auto' on {device}: {auto} (a fitted detector's precision_)")


if __name__ == "__main__":
    main()
