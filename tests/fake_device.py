"""A second device for tests on a CPU-only machine: tensors that say they live on the ``meta`` device but hold
real CPU data, and a dispatch mode that refuses, as CUDA does, every operation that mixes them with CPU tensors.

Inside ``with fake_device() as dev:`` every torch operation is checked: all tensor arguments must be on one
device (CPU 0-dim scalars and CPU index tensors excepted, as on CUDA; copies across devices allowed), and no
random draw may use a CPU generator on the fake device (CUDA refuses that as well). Factory calls with
``device=dev`` and ``.to(dev)`` make fake-device tensors; ``.cpu()`` brings them back. The arithmetic runs on the
CPU, so results on the fake device must equal the CPU results bit for bit when the code draws its random
numbers on the CPU and only moves them (see :func:`data`).

Built on torch's Python dispatch (``TorchDispatchMode``, wrapper subclasses), a private but long-stable API.
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

FAKE = torch.device("meta")


class OnFake(torch.Tensor):
    """A CPU tensor (``.data_``) that reports the fake device."""

    @staticmethod
    def __new__(cls, data):
        return torch.Tensor._make_wrapper_subclass(cls, data.shape, strides=data.stride(), dtype=data.dtype,
                                                   device=FAKE, storage_offset=data.storage_offset(),
                                                   requires_grad=False)

    def __init__(self, data):
        self.data_ = data

    def __repr__(self):
        return f"OnFake({self.data_!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise AssertionError(f"{func} on a fake-device tensor outside fake_device()")


def _is_fake(device) -> bool:
    return device is not None and torch.device(device).type == FAKE.type


_CROSS = {torch.ops.aten.copy_.default, torch.ops.aten._to_copy.default}
_INDEX = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put_.default, torch.ops.aten.index_put.default,
          torch.ops.aten._index_put_impl_.default}


def _unwrap(t):
    return t.data_ if isinstance(t, OnFake) else t


class _DeviceCheck(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        flat = tree_flatten((args, kwargs))[0]
        fake_in = any(isinstance(t, OnFake) for t in flat)
        if func not in _CROSS:
            checked = flat if func not in _INDEX else tree_flatten([args[0], *args[2:]])[0]
            devices = {t.device for t in checked if isinstance(t, torch.Tensor)
                       and not (t.device.type == "cpu" and t.dim() == 0)}
            if len(devices) > 1:
                raise AssertionError(f"{func} mixes devices {sorted(map(str, devices))}")
        target = kwargs.get("device")
        to_fake = _is_fake(target) or (target is None and fake_in)
        gen = kwargs.get("generator")
        if gen is not None and to_fake and gen.device.type != FAKE.type:
            raise AssertionError(f"{func} draws with a {gen.device} generator on the fake device")
        if _is_fake(target):
            kwargs["device"] = torch.device("cpu")
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        if func._schema.name.endswith("_") and args and isinstance(args[0], OnFake):
            return args[0]                              # in place: the caller's tensor, changed
        if not to_fake:
            return out
        return tree_map(lambda t: OnFake(t) if isinstance(t, torch.Tensor) else t, out)


@contextlib.contextmanager
def fake_device():
    """``with fake_device() as dev:`` -- code under test runs with ``dev`` as its device."""
    with _DeviceCheck():
        yield FAKE


def data(t: torch.Tensor) -> torch.Tensor:
    """The CPU data of a fake-device tensor (a CPU tensor as it is)."""
    return _unwrap(t)


def tensors(out) -> list:
    """Every tensor in a (nested) tuple / list result."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for part in out for t in tensors(part)]
    return []
