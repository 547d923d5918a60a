"""Generic training plumbing shared by the methods: tensor batching, optimisers, schedules, progress.

Training data stays in memory as one tensor; a batch is an index tensor into it, so there is no DataLoader
and no worker process (on a 2-core CPU, workers compete with the model for the same cores).
"""
from __future__ import annotations

import math
import sys
from typing import Iterator, Sequence

import torch

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "exponential", "multistep")


def device(name: str | None = None) -> torch.device:
    """The device to compute on: ``name`` when given, else CUDA when available, else the CPU."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (or from torch's global RNG when None, which runs.start seeds)."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator().manual_seed(int(seed))


def batches(n: int, batch_size: int, gen: torch.Generator | None = None, shuffle: bool = True,
            drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index tensors covering ``range(n)`` once (one epoch), shuffled with ``gen`` when ``shuffle``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]


def n_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)


def optimizer(params, name: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9,
              nesterov: bool = True) -> torch.optim.Optimizer:
    """``sgd`` (with momentum, Nesterov by default) or ``adam`` with L2 weight decay (not AdamW)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: every parameter is frozen; unfreeze at least the head")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def schedule(opt: torch.optim.Optimizer, kind: str = "none", gamma: float = 0.1,
             milestones: Sequence[int] = ()) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate schedule: ``exponential`` (lr x gamma every epoch), ``multistep`` (lr x gamma
    at each milestone epoch) or ``none``. Call ``.step()`` once per epoch."""
    if kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    if kind == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=gamma)
    if kind == "none":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)
    raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")


def check_loss(value: float, epoch: int, who: str) -> float:
    """``value``, or a FloatingPointError naming ``who``, the epoch (1-based) and the fix when it is NaN or
    infinite: a diverged run stops at once instead of training on and writing NaN scores."""
    value = float(value)
    if not math.isfinite(value):
        raise FloatingPointError(f"{who}: the training loss became {value} in epoch {epoch}; lower the learning "
                                 "rate (or check the inputs' scaling) and rerun")
    return value


def progress(iterable=None, enabled: bool | None = None, **kwargs):
    """A tqdm bar when ``enabled`` (None: only when stderr is a terminal or a notebook), else the iterable."""
    if enabled is None:
        enabled = sys.stderr.isatty() or "ipykernel" in sys.modules
    if not enabled:
        return _Silent(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


class _Silent:
    """The part of tqdm's interface the training loops use, doing nothing."""

    def __init__(self, iterable=None):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, *args, **kwargs):
        pass

    def update(self, n=1):
        pass

    def close(self):
        pass
