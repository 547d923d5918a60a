"""Throughput of the GEOM paper's competitors (oneclass.baselines) on one CPU thread: training images per second
per method, scoring images per second, the OC-SVM grid's seconds, and ADGAN's inversion (the expensive part).

    OMP_NUM_THREADS=1 PYTHONPATH=lib python benchmarks/baselines_throughput.py [--n 512] [--channels 1] [--repeat 3]

Random uint8 images at 32px (the methods' cost does not depend on the pixels). Prints medians over ``--repeat``
runs; compare figures from the same machine and load only.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from oneclass import baselines as B


class Images:
    def __init__(self, images, anomaly=None):
        self.images, self.anomaly = images, anomaly

    def __len__(self):
        return len(self.images)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="training images")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    train = Images(torch.randint(0, 256, (args.n, args.channels, 32, 32), dtype=torch.uint8, generator=g))
    test = Images(torch.randint(0, 256, (args.n, args.channels, 32, 32), dtype=torch.uint8, generator=g),
                  torch.arange(args.n) % 2)
    cases = {
        "deep_svdd (1 AE + 1 SVDD epoch)": (lambda: B.DeepSVDD(size=32), {"epochs": 1, "ae_epochs": 1}, 2),
        "raw_ocsvm (90-point grid)": (lambda: B.OCSVM("raw", size=32), {"hindsight_test": test}, 0),
        "cae_ocsvm (1 CAE epoch + grid)": (lambda: B.OCSVM("cae", size=32), {"epochs": 1, "hindsight_test": test}, 1),
        "dsebm (1 epoch)": (lambda: B.DSEBM(size=32), {"epochs": 1}, 1),
        "dagmm (1 epoch)": (lambda: B.DAGMM(size=32), {"epochs": 1}, 1),
        "adgan (1 epoch of 5 generator updates)": (lambda: B.ADGAN(size=32, batches_per_epoch=5), {"epochs": 1}, 0),
    }
    print(f"{args.n} training / test images, {args.channels} channel(s), 32px, 1 thread, median of {args.repeat}")
    for name, (make, kw, passes) in cases.items():
        fit_s, score_s = [], []
        for r in range(args.repeat):
            det = make()
            t = time.perf_counter()
            det.fit(train, seed=r, **kw)
            fit_s.append(time.perf_counter() - t)
            if name.startswith("adgan"):
                continue
            t = time.perf_counter()
            det.score(test)
            score_s.append(time.perf_counter() - t)
        f = statistics.median(fit_s)
        rate = f"  {passes * args.n / f:7.1f} train img/s" if passes else ""
        sc = f"  score {args.n / statistics.median(score_s):7.1f} img/s" if score_s else ""
        print(f"{name:42s} fit {f:7.2f} s{rate}{sc}")
    det = B.ADGAN(size=32, batches_per_epoch=1).fit(train, epochs=1, seed=0)
    few = Images(test.images[:8], test.anomaly[:8])
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        det.score(few)
        times.append(time.perf_counter() - t)
    m = statistics.median(times)
    print(f"{'adgan inversion (8 seeds x 5 steps)':42s} {m / len(few):7.2f} s per test image")


if __name__ == "__main__":
    main()
