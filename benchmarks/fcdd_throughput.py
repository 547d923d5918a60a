"""FCDD training throughput: end to end (outlier exposure, batched augmentation, normalisation, step) against
the bare model step on tensors already in memory, and a whole one-class run with the official wide networks
set beside the official implementation's figures (REFERENCE_FACTS: Fashion-MNIST wide net 136 img/s end to end,
evaluation 49 s; CIFAR-10 LW3K 37.8 img/s, evaluation 141 s; batch 128 / 200; 400 / 600 epochs).

    python benchmarks/fcdd_throughput.py [--device cuda] [--threads N] [--precision auto|fp32|bf16] [--steps K]
                                         [--fraction F]

Images are random uint8 tensors of the datasets' shapes and sizes (throughput does not depend on content).
The whole-run figure times ``--fraction`` of one epoch and of the test set and extrapolates linearly: per epoch
x the paper's epochs + the full evaluation (say so wherever it is quoted). Medians of ``--repeats`` runs.
"""
from __future__ import annotations

import statistics
import time

import torch

import common
from oneclass.methods import fcdd
from oneclass.methods.fcdd import nets

SETUPS = {   # dataset: (train images per class, test images, OE pool, channels, size, official e2e img/s, eval s)
    "fmnist": (6000, 10000, 10000, 1, 28, 136.0, 49.0),
    "cifar10": (5000, 10000, 10000, 3, 32, 37.8, 141.0),
}


images = common.images


def bare_steps(det, x, y, opt, steps):
    """Forward, loss, backward, optimiser step on one prepared normalised batch: the model's own cost."""
    common.sync(x.device)
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        det._forward_loss(x, y).backward()
        opt.step()
    common.sync(x.device)
    return steps * len(x) / (time.perf_counter() - t)


def end_to_end(dataset, net, steps, repeats, device, precision):
    """Median images/s of a training epoch of `steps` batches through fit() (OE mixing, augmentation,
    normalisation, step; set-up excluded) and of the bare step, measured alternately so that a busy machine
    slows both alike. The first round is a warm-up and is dropped."""
    n_train, _, n_oe, c, s, _, _ = SETUPS[dataset]
    batch = fcdd.defaults(dataset)["batch_size"]
    train = images(steps * batch, c, s, 0)
    oe = images(n_oe, c, s, 1)
    kw = dict(outliers=oe, device=device, precision=precision)
    det = fcdd.make("fcdd", dataset, net=net, seed=0, **kw).fit(train[:batch], epochs=1, progress=False)
    x = det.pipeline_.train(train[:batch].to(device), torch.Generator().manual_seed(0))
    y = (torch.rand(batch, generator=torch.Generator().manual_seed(1)) < 0.5).long().to(device)
    if det.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    net_ = det.net_.train()
    opt = torch.optim.SGD(net_.parameters(), lr=1e-3, momentum=0.9)
    e2e, bare = [], []
    for r in range(repeats + 1):
        run = fcdd.make("fcdd", dataset, net=net, seed=r, **kw).fit(train, epochs=1, progress=False)
        e2e.append(len(train) / run.epoch_seconds_[0])
        bare.append(bare_steps(det, x, y, opt, steps))
    return statistics.median(e2e[1:]), statistics.median(bare[1:]), det


def whole_run(dataset, fraction, device, precision):
    """Official wide network: time `fraction` of an epoch and of the evaluation, extrapolate to the paper's run."""
    n_train, n_test, n_oe, c, s, official_rate, official_eval = SETUPS[dataset]
    epochs = fcdd.paper_epochs(dataset)
    det = fcdd.make("fcdd", dataset, net="official", outliers=images(n_oe, c, s, 1), seed=0, device=device,
                    precision=precision)
    k = max(fcdd.defaults(dataset)["batch_size"], int(n_train * fraction))
    t, cpu = time.perf_counter(), time.process_time()
    det.fit(images(k, c, s, 0), epochs=1, progress=False)
    epoch_s = (time.perf_counter() - t) * n_train / k
    cpu_epoch_s = (time.process_time() - cpu) * n_train / k
    kt = max(200, int(n_test * fraction))
    test = images(kt, c, s, 2)
    t, cpu = time.perf_counter(), time.process_time()
    det.score(test)
    common.sync(device)
    eval_s = (time.perf_counter() - t) * n_test / kt
    cpu_eval_s = (time.process_time() - cpu) * n_test / kt
    official_epoch = n_train / official_rate
    ours = epoch_s * epochs + eval_s
    theirs = official_epoch * epochs + official_eval
    # CPU seconds of this process: on a shared machine, the work done regardless of how much of the CPU we got;
    # compared with the official figures taken as if they had used both cores fully (2 x their wall time)
    cpu_total = cpu_epoch_s * epochs + cpu_eval_s
    return dict(net=det.net, params=nets.n_parameters(det.net_), epoch_s=epoch_s, rate=n_train / epoch_s,
                cpu_epoch_s=cpu_epoch_s, cpu_eval_s=cpu_eval_s, cpu_ratio=cpu_total / (2 * theirs),
                eval_s=eval_s, total_h=ours / 3600, official_epoch_s=official_epoch, official_eval_s=official_eval,
                official_total_h=theirs / 3600, ratio=ours / theirs, epochs=epochs)


def main():
    ap = common.parser(__doc__)
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=8, help="batches per timed repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fraction", type=float, default=0.1, help="fraction of an epoch / of the test set timed")
    ap.add_argument("--skip-official", action="store_true", help="skip the whole-run extrapolation")
    ap.add_argument("--only", nargs="*", default=None, help="setups to time, e.g. fmnist:paper cifar10:official")
    a = ap.parse_args()
    if a.smoke:
        a.steps, a.repeats, a.fraction = 1, 1, 0.0
    device = common.setup(a)
    print(f"precision {a.precision}; medians of {a.repeats} alternating repeats of {a.steps} batches (after one "
          "warm-up round)")
    print(f"{'setup':28s} {'e2e img/s':>10s} {'bare img/s':>11s} {'e2e/bare':>9s}")
    for dataset in SETUPS:
        for net in ("paper", "official"):
            if a.only is not None and f"{dataset}:{net}" not in a.only:
                continue
            e2e, bare, det = end_to_end(dataset, net, a.steps, a.repeats, device, a.precision)
            print(f"{dataset + ' ' + det.net:28s} {e2e:10.0f} {bare:11.0f} {e2e / bare:9.2f}")
    if a.skip_official:
        return
    print(f"\nwhole one-class run, official network, paper epochs; timed {a.fraction:.0%} of an epoch and of the "
          "test set, extrapolated")
    for dataset in SETUPS:
        r = whole_run(dataset, a.fraction, device, a.precision)
        print(f"{dataset} {r['net']} ({r['params']:,} parameters): {r['rate']:.0f} img/s end to end "
              f"(official {SETUPS[dataset][5]}), {r['epoch_s']:.1f} s/epoch x {r['epochs']} + evaluation "
              f"{r['eval_s']:.1f} s (official {r['official_eval_s']:.0f} s) = {r['total_h']:.2f} h; official "
              f"{r['official_total_h']:.2f} h; ratio {r['ratio']:.2f} (aim <= 0.5)")
        print(f"    CPU time: {r['cpu_epoch_s']:.1f} CPU-s/epoch, evaluation {r['cpu_eval_s']:.1f} CPU-s; whole run "
              f"{r['cpu_ratio']:.2f} x the official run's 2-core budget (2 x its wall time)")


if __name__ == "__main__":
    main()
