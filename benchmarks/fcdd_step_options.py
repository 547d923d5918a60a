"""FCDD's training step, and its baselines', under the CPU speed options of issue 22: memory format (contiguous /
channels_last), oneDNN on or off (``torch.backends.mkldnn.enabled``) and ``torch.compile`` (inductor), for the
paper networks and the authors' wider ones, and for the HSC and AE baselines on the 32px paper convolutions.

    python benchmarks/fcdd_step_options.py [--device cpu] [--threads N] [--steps K] [--repeats R] [--no-compile]

Each figure is the bare step (forward, the method's loss, backward, Adam step) on one prepared normalised batch of the
dataset's paper batch size, in images/s: the median of ``--repeats`` rounds, the options measured in turn within
each round (so that a busy machine slows all alike), after one warm-up round (which also compiles). The ratio is
to the contiguous, oneDNN-on, eager step of the same network in the same run. ``--smoke`` skips ``torch.compile``
(its compile alone takes tens of seconds).
"""
from __future__ import annotations

import statistics
import time

import torch

import common
from oneclass.methods import fcdd

SETUPS = [("fmnist", "paper", "fcdd"), ("cifar10", "paper", "fcdd"), ("fmnist", "official", "fcdd"),
          ("cifar10", "official", "fcdd"), ("cifar10", "paper", "hsc"), ("cifar10", "paper", "ae")]
OPTIONS = ("contiguous", "channels_last", "no_onednn", "compile", "compile_channels_last")


def prepared(dataset, net, method, device, batch):
    """A detector (FCDD, HSC or AE) of ``dataset``'s paper set-up with one normalised training batch and its
    labels."""
    size, c = fcdd.input_shape(dataset)
    train = common.images(batch, c, size, 0, device)
    oe = common.images(64, c, size, 1) if method != "ae" else None
    det = fcdd.make(method, dataset, net=net, seed=0, channels_last=False, outliers=oe,
                    device=device).fit(train, epochs=1, progress=False)
    x = det.pipeline_.train(train, torch.Generator().manual_seed(0))
    y = (torch.rand(batch, generator=torch.Generator().manual_seed(1)) < 0.5).long().to(device)
    return det, x, y


class Step:
    """One option's step: its own copy of the network (same initial weights) and optimiser."""

    def __init__(self, det, x, y, option):
        self.det, self.option = det, option
        net = fcdd.nets.build(det.net).to(x.device)
        net.load_state_dict(det.net_.state_dict())
        if "channels_last" in option:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.net, self.x, self.y = net.train(), x, y
        self.call = torch.compile(net) if option.startswith("compile") else net
        self.opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def run(self, steps):
        det, onednn = self.det, torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = self.option != "no_onednn"
        saved, det.net_ = det.net_, self.call
        try:
            common.sync(self.x.device)
            t = time.perf_counter()
            for _ in range(steps):
                self.opt.zero_grad()
                det._forward_loss(self.x, self.y).backward()
                self.opt.step()
            common.sync(self.x.device)
            return steps * len(self.x) / (time.perf_counter() - t)
        finally:
            det.net_ = saved
            torch.backends.mkldnn.enabled = onednn


def main():
    ap = common.parser(__doc__)
    ap.add_argument("--steps", type=int, default=6, help="batches per timed round")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile options")
    a = ap.parse_args()
    options = [o for o in OPTIONS if not ((a.no_compile or a.smoke) and o.startswith("compile"))]
    if a.smoke:
        a.steps, a.repeats = 1, 1
    device = common.setup(a)
    if device.type == "cuda":
        options = [o for o in options if o != "no_onednn"]
    print(f"bare FCDD step, images/s: medians of {a.repeats} rounds of {a.steps} batches, options in turn within a "
          "round, after one warm-up round; ratio to the contiguous eager step of the same network")
    print(f"{'network':16s} {'option':24s} {'img/s':>8s} {'ratio':>6s}")
    for dataset, net, method in SETUPS:
        batch = 16 if a.smoke else fcdd.defaults(dataset)["batch_size"]
        det, x, y = prepared(dataset, net, method, device, batch)
        steps = {o: Step(det, x, y, o) for o in options}
        rates = {o: [] for o in options}
        for r in range(a.repeats + 1):
            for o in options:
                rate = steps[o].run(a.steps)
                if r:
                    rates[o].append(rate)
        base = statistics.median(rates["contiguous"])
        for o in options:
            m = statistics.median(rates[o])
            print(f"{det.net:16s} {o:24s} {m:8.0f} {m / base:6.2f}")
    print(f"(load average at the end: {__import__('os').getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
