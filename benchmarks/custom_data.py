"""Your own images at MVTec-AD's resolution: the memory and time of the pixel metrics, and predict's images/s.

    python benchmarks/custom_data.py [--device cuda] [--threads N] [--images 500] [--size 1024] [--predict 32]

* pixel metrics (``metrics.pixel_metrics``: pooled and per-image pixel AUC and AUPRO, each map against its own
  mask at the mask's size): N heatmaps at FCDD's native 28x28 against N masks of S x S px made on access (every
  other image anomalous, one box each, as a lazy mask sequence reads files). Printed: the peak resident memory
  above the process's baseline (``getrusage`` high-water mark), seconds, and for comparison the size of the stacked
  float32 maps + uint8 masks of the same test set at S px;
* predict (``oneclass.predict.predict``, scores only): a FCDD in the MVTec-AD setting (0 epochs: the cost does not
  depend on the weights) saved as a run folder scores P random PNG files of S px, decoded as that run decoded its
  test images (resized to 240): images/s, decode included, scores only and with the overlay PNGs written.
"""
from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import common
from oneclass import metrics
from oneclass.methods import fcdd
from oneclass.methods.fcdd import pipeline as augment


class Masks:
    """N masks of size x size made on access: odd images have a box of a tenth of the side, even ones none."""

    def __init__(self, n: int, size: int):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        m = np.zeros((self.size, self.size), np.uint8)
        if i % 2:
            a = (i * 37) % (self.size * 8 // 10)
            m[a:a + self.size // 10, a:a + self.size // 10] = 1
        return m


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main():
    ap = common.parser(__doc__)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--predict", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5, help="predict timings: the median of this many")
    a = ap.parse_args()
    if a.smoke:
        a.images, a.size, a.predict, a.repeats = 4, 64, 2, 1
    dev = common.setup(a)

    maps = torch.rand(a.images, 28, 28, generator=torch.Generator().manual_seed(0)).numpy()
    base = rss_mib()
    t = time.perf_counter()
    out = metrics.pixel_metrics(maps, Masks(a.images, a.size))
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stacked = a.images * a.size ** 2 * (4 + 1) / 2**20
    print(f"pixel metrics, {a.images} images of {a.size} px: peak {max(peak - base, 0.01):.1f} MiB above the "
          f"baseline, {seconds:.1f} s (stacked maps + masks would take {stacked:.0f} MiB); "
          f"AUPRO {out['aupro']:.3f}, pooled AUC {out['pixel_auc_pooled']:.3f} (random maps: about 0.5)")

    from PIL import Image

    from oneclass import predict
    from oneclass.runs import RUNTIME

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x = common.images(2, 3, 240, 0, dev)
        det = fcdd.make("fcdd", "mvtec", outliers=augment.Outliers.confetti(), seed=0, passes=1,
                        batch_size=2, device=dev).fit(x, epochs=0, progress=False)
        (tmp / "run").mkdir()
        det.save(tmp / "run" / "model.pt")
        (tmp / "run" / RUNTIME).write_text(json.dumps({"inputs": {"size": 240, "channels": 3, "crop": False}}))
        g = np.random.default_rng(0)
        (tmp / "new").mkdir()
        for i in range(a.predict):
            Image.fromarray(g.integers(0, 256, (a.size, a.size, 3), dtype=np.uint8)).save(tmp / "new" / f"{i}.png")
        predict.predict(tmp / "run", tmp / "new", progress=False)            # warm-up
        rates = {}
        try:
            import matplotlib  # noqa: F401  (the overlays are matplotlib figures)
            overlays = [("scores + overlays", tmp / "out")]
        except ImportError:     # a bare GPU machine: scores only
            overlays = []
        rates["scores + overlays"] = float("nan")
        for what, out in [("scores", None)] + overlays:
            times = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                table, _ = predict.predict(tmp / "run", tmp / "new", out, progress=False)
                common.sync(dev)
                times.append(time.perf_counter() - t)
            rates[what] = len(table) / float(np.median(times))
    print(f"predict (scores, median of {a.repeats}): {rates['scores']:.2f} img/s, with the heatmap overlay PNGs written "
          f"{rates['scores + overlays']:.2f} img/s ({a.predict} PNG files of {a.size} px, decode and resize to 240 "
          f"included, each image decoded once, eval batches of {det.eval_batch_size})")


if __name__ == "__main__":
    main()
