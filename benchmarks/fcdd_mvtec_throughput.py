"""FCDD on MVTec-AD: where a training step's time goes, and end to end against the bare model step.

    python benchmarks/fcdd_mvtec_throughput.py [--device cuda] [--threads N] [--batch B] [--repeats R]
                                               [--precision auto|fp32|bf16]

Per batch of B random uint8 240px images (content does not change the cost), medians of R rounds after one
warm-up round:
  * confetti: outlier mixing with confetti noise (half the batch corrupted), and the Gaussian blur alone
    (two matrix products) against the same blur as a depthwise 25x25 convolution;
  * pipeline: crop 224, jitter, noise, contrast normalisation and min-max;
  * step (native): forward, eq. 2 on the 28x28 map, backward, SGD step;
  * step (upsampled): the same with the loss on Algorithm 1's 224x224 map (the MVTec setting);
  * end to end: one epoch of fit() (one pass, i.e. passes=1) in images/s, against the bare upsampled step.
"""
from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F

import common
from oneclass.methods import fcdd
from oneclass.methods.fcdd import pipeline as augment


def main():
    ap = common.parser(__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    a = ap.parse_args()
    if a.smoke:
        a.batch, a.repeats = 2, 1
    dev = common.setup(a)
    g = torch.Generator().manual_seed(0)
    x = common.images(a.batch, 3, 240, 0, dev)
    conf = augment.Outliers.confetti().to(dev)
    field = torch.randn(a.batch // 2, 3, 240, 240, generator=g).to(dev)
    ax = torch.arange(25.0, device=dev) - 12
    k1 = torch.exp(-ax ** 2 / 50)
    k2 = (k1[:, None] * k1[None] / k1.sum() ** 2)[None, None]

    def make(seed):
        return fcdd.make("fcdd", "mvtec", outliers=conf, seed=seed, passes=1, batch_size=a.batch, device=dev,
                         precision=a.precision)

    det = make(0).fit(x, epochs=0, progress=False)
    batch = det.pipeline_.train(x, g)
    y = (torch.rand(a.batch, generator=g) < 0.5).long().to(dev)
    opt = torch.optim.SGD(det.net_.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    det.net_.train()

    def step(loss_on):
        det.loss_on = loss_on
        opt.zero_grad()
        det._forward_loss(batch, y).backward()
        opt.step()

    rows = {
        "confetti mixing (OE p=0.5)": common.seconds(lambda: augment.mix_outliers(x, conf, 0.5, g), dev, a.repeats),
        "  blur as two matrix products": common.seconds(lambda: augment.gaussian_blur(field, 25, 5.0), dev, a.repeats),
        "  blur as a 25x25 convolution": common.seconds(
            lambda: F.conv2d(field.reshape(-1, 1, 240, 240), k2, padding=12), dev, a.repeats),
        "pipeline (crop, jitter, noise, LCN, min-max)": common.seconds(lambda: det.pipeline_.train(x, g), dev,
                                                                       a.repeats),
        "step, loss on the 28x28 map": common.seconds(lambda: step("native"), dev, a.repeats),
        "step, loss on the upsampled 224x224 map": common.seconds(lambda: step("upsampled"), dev, a.repeats),
    }
    n = a.batch * 4
    train = common.images(n, 3, 240, 1)
    e2e = []
    for r in range(a.repeats + 1):
        run = make(r).fit(train, epochs=1, progress=False)
        if r:
            e2e.append(n / run.epoch_seconds_[0])
    bare = a.batch / rows["step, loss on the upsampled 224x224 map"]
    print(f"FCDD MVTec-AD, paper network fcdd_224, batch {a.batch}, {det.device_}, precision {det.precision_}, "
          f"medians of {a.repeats}")
    for name, s in rows.items():
        print(f"  {name:48s} {s * 1000:8.1f} ms/batch  ({a.batch / s:7.1f} img/s)")
    rate = statistics.median(e2e)
    print(f"  end to end (fit, one pass of {n} images)       {rate:8.1f} img/s = {rate / bare:.2f} of the bare step")
    conv, mm = rows["  blur as a 25x25 convolution"], rows["  blur as two matrix products"]
    print(f"  blur speed-up of the matrix form: {conv / mm:.1f}x")


if __name__ == "__main__":
    main()
