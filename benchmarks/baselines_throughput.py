"""Throughput of the GEOM paper's competitors (oneclass.methods.baselines): training images per second per method,
scoring images per second, the OC-SVM grid's seconds, and ADGAN's inversion (the expensive part).

    python benchmarks/baselines_throughput.py [--device cuda] [--threads 1] [--n 512] [--channels 1] [--repeat 3]

Random uint8 images at 32px (the methods' cost does not depend on the pixels). Prints medians over ``--repeat``
runs; compare figures from the same machine and load only. The OC-SVM grids run in scikit-learn on the CPU
whatever ``--device`` says (only the CAE trains on the device).
"""
from __future__ import annotations

import statistics
import time

import torch

import common
from oneclass.methods import baselines as B


class Images:
    """The part of an ImageSet the competitors read: images and, for the hindsight OC-SVM, test labels."""

    def __init__(self, images, anomaly=None):
        self.images, self.anomaly = images, anomaly

    def __len__(self):
        return len(self.images)


def main():
    ap = common.parser(__doc__)
    ap.add_argument("--n", type=int, default=512, help="training images")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.smoke:
        args.n, args.repeat = 32, 1
    dev = common.setup(args)
    train = Images(common.images(args.n, args.channels, 32, 0))
    test = Images(common.images(args.n, args.channels, 32, 1), (torch.arange(args.n) % 2).numpy())
    kw = dict(size=32, device=dev)
    grid = dict(nus=(0.1, 0.5), gammas=(2.0 ** -7, 2.0 ** -5)) if args.smoke else {}
    cases = {   # name: (detector for a seed, fit keywords, training passes over the images)
        "deep_svdd (1 AE + 1 SVDD epoch)": (lambda s: B.DeepSVDD(seed=s, **kw), {"epochs": 1, "ae_epochs": 1}, 2),
        f"raw_ocsvm ({'4' if grid else '90'}-point grid)": (
            lambda s: B.OCSVM("raw", seed=s, **grid, **kw), {"hindsight_test": test}, 0),
        "cae_ocsvm (1 CAE epoch + grid)": (
            lambda s: B.OCSVM("cae", seed=s, **grid, **kw), {"epochs": 1, "hindsight_test": test}, 1),
        "dsebm (1 epoch)": (lambda s: B.DSEBM(seed=s, **kw), {"epochs": 1}, 1),
        "dagmm (1 epoch)": (lambda s: B.DAGMM(seed=s, **kw), {"epochs": 1}, 1),
        "adgan (1 epoch of 5 generator updates)": (lambda s: B.ADGAN(batches_per_epoch=5, seed=s, **kw),
                                                   {"epochs": 1}, 0),
    }
    print(f"{args.n} training / test images, {args.channels} channel(s), 32px, median of {args.repeat}")
    for name, (make, fit_kw, passes) in cases.items():
        fit_s, score_s = [], []
        for r in range(args.repeat):
            t = time.perf_counter()
            det = make(r).fit(train, **fit_kw)
            common.sync(dev)
            fit_s.append(time.perf_counter() - t)
            if name.startswith("adgan"):
                continue
            score_s.append(common.seconds(lambda: det.score(test), dev, repeats=1, warmup=0))
        f = statistics.median(fit_s)
        rate = f"  {passes * args.n / f:7.1f} train img/s" if passes else ""
        sc = f"  score {args.n / statistics.median(score_s):7.1f} img/s" if score_s else ""
        print(f"{name:42s} fit {f:7.2f} s{rate}{sc}")
    det = B.ADGAN(batches_per_epoch=1, seed=0, **kw).fit(train, epochs=1)
    few = Images(test.images[:8], test.anomaly[:8])
    m = common.seconds(lambda: det.score(few), dev, repeats=args.repeat, warmup=0)
    print(f"{'adgan inversion (8 seeds x 5 steps)':42s} {m / len(few):7.2f} s per test image")


if __name__ == "__main__":
    main()
