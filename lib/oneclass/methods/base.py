"""The contract every detector of the library follows, and the helpers that make it cheap to follow.

In the scikit-learn habit::

    det = FCDD(net="fcdd_28", outliers=oe, seed=0, device=None, precision="fp32", lr=1e-2)   # stored as given
    det.fit(train, epochs=20, progress=True)       # returns self; what fit learns ends in '_' (net_, alpha_, ...)
    out = det.score(test, maps=True)               # Scores: out.scores (N,) higher = more anomalous
    det.save(run.path / "model.pt"); FCDD.load(path)   # the same scores on the same images

- ``device=None`` is CUDA when available, else the CPU (:func:`resolve_device`); ``fit`` records the device it
  used as ``device_`` and keeps every network, batch and buffer there.
- ``precision``: 'fp32' (the default: the papers' numbers are float32), 'bf16', or 'auto' = bf16 only where the
  hardware runs it natively (a CUDA device with bf16, a CPU that reports AVX512-BF16 or AMX), else fp32
  (:func:`resolve_precision`). bf16 is an autocast of the networks' forward passes; scores and statistics stay
  float32 / float64. It is a budget option: on an AMX Xeon it doubles WRN training speed, on an AVX2-only CPU
  (emulated bf16) it is about 10x slower, so 'auto' decides by the hardware, never by habit.
- ``seed``: the same seed gives the same scores on the same machine; None draws one from torch's global RNG
  (which ``runs.start`` seeds). Networks are initialised inside :func:`seeded` so that nothing that ran before
  changes them.
- Inputs are uint8 images (N, C, H, W) or an ImageSet (:func:`as_images`); each method scales them itself.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PRECISIONS = ("auto", "fp32", "bf16")


# --------------------------------------------------------------------------------------------- the result

@dataclass
class Scores:
    """What :meth:`Detector.score` returns.

    ``scores`` (N,) float64, higher = more anomalous; ``maps`` (N, H, W) float32 heatmaps / explanations at the
    input's size, or None; ``native`` (N, h, w) the model's own low-resolution maps (FCDD) or None;
    ``subscores`` named per-image scores (N,) that the method computes beside the main one."""

    scores: np.ndarray
    maps: np.ndarray | None = None
    native: np.ndarray | None = None
    subscores: dict = field(default_factory=dict)

    def __post_init__(self):
        self.scores = _numpy(self.scores, np.float64).reshape(-1)
        n = len(self.scores)
        bad = np.flatnonzero(~np.isfinite(self.scores))
        if bad.size:
            raise FloatingPointError(f"{bad.size} of {n} scores are NaN or infinite (test images {bad[:10].tolist()}"
                                     f"{' ...' if bad.size > 10 else ''}): the model diverged or a score "
                                     "overflowed; a run never averages them into a table")
        for name in ("maps", "native"):
            value = getattr(self, name)
            if value is not None:
                value = _numpy(value, np.float32)
                if value.ndim != 3 or len(value) != n:
                    raise ValueError(f"Scores.{name} must be (N, h, w) with N = {n} scores, got {value.shape}")
                setattr(self, name, value)
        self.subscores = {k: _numpy(v, np.float64).reshape(-1) for k, v in self.subscores.items()}
        for k, v in self.subscores.items():
            if len(v) != n:
                raise ValueError(f"sub-score {k!r} has {len(v)} values for {n} scores")

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def native_maps(self) -> np.ndarray | None:
        """The maps at the model's own resolution (what a run folder stores for every test image): ``native``
        where the method has a low-resolution map of its own (FCDD), else ``maps``."""
        return self.native if self.native is not None else self.maps


def _numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


# --------------------------------------------------------------------------------------------- inputs

def as_images(data, name: str = "images") -> torch.Tensor:
    """uint8 (N, C, H, W) from an ImageSet, a tensor or an array; anything else is refused with the fix."""
    x = getattr(data, "images", data)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be an ImageSet or a (N, C, H, W) uint8 tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be (N, C, H, W), got shape {tuple(x.shape)}; add the channel axis with "
                         "x[:, None] for grey images")
    if x.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8 pixels (as oneclass.data loads them), got {x.dtype}; pass "
                        "ImageSet.images, not a float copy")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    return x


# --------------------------------------------------------------------------------------------- device, precision

def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """True when the CPU reports AVX512-BF16 or AMX-BF16 (Linux /proc/cpuinfo); AVX2-only parts emulate bf16
    and run it about 10x slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'fp32' or 'bf16' for ``precision`` on ``device``: 'auto' picks bf16 only where it is native."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """The context a forward pass runs in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------------------------- seeding

def draw_seed(seed: int | None) -> int:
    """``seed``, or one drawn from torch's global RNG when None (runs.start seeds that)."""
    return int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, (1,)).item())


def generator(seed: int) -> torch.Generator:
    """A CPU generator: random draws are made on the CPU and moved to the data's device, so the same seed gives
    the same draws on every device."""
    return torch.Generator().manual_seed(int(seed))


@contextlib.contextmanager
def seeded(seed: int):
    """torch's global RNG forked and seeded for the block (network initialisation, dropout)."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


# --------------------------------------------------------------------------------------------- the protocol

class Detector:
    """Base class of every detector. Subclasses store each ``__init__`` argument under its own name, implement
    ``fit`` (returning self, fitted attributes ending in ``_``) and ``score`` (returning :class:`Scores`)."""

    #: constructor arguments that hold data (outlier corpora) rather than settings; not written by save()
    data_params: tuple = ()
    #: whether ``score(..., maps=True)`` returns heatmaps (False: ``maps`` is always None, e.g. an OC-SVM)
    gives_maps: bool = True

    # -- hyperparameters
    @classmethod
    def _param_names(cls) -> list[str]:
        """Names of the constructor's arguments; a subclass that passes ``**kwargs`` on to its parent's
        ``__init__`` (HSC, AE) has the parent's as well."""
        names = []
        for klass in cls.__mro__:
            if "__init__" not in vars(klass) or klass is object:
                continue
            params = inspect.signature(vars(klass)["__init__"]).parameters.values()
            names += [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                      and p.name not in names]
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
        return names

    def get_params(self) -> dict:
        """The constructor arguments as stored (what ``type(self)(**get_params())`` rebuilds)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.get_params().items() if k not in self.data_params}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    # -- what fit sets up
    def _setup(self) -> None:
        """Resolve device, precision and seed for a fit (``device_``, ``precision_``, ``seed_``)."""
        self.device_ = resolve_device(self.device)
        self.precision_ = resolve_precision(self.precision, self.device_)
        self.seed_ = draw_seed(self.seed)

    def _autocast(self):
        return autocast(self.device_, self.precision_)

    def is_fitted(self) -> bool:
        return hasattr(self, "device_") and hasattr(self, "seed_") and getattr(self, "_fitted", False)

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(train, ...) first")

    def fit(self, train, epochs=None, progress=None):   # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def score(self, test, maps: bool = True) -> Scores:   # pragma: no cover
        raise NotImplementedError

    def display_maps(self, maps) -> np.ndarray:
        """The heatmaps as the paper displays them (identity unless the method blurs or upsamples)."""
        return np.asarray(maps)

    def runtime(self) -> dict:
        """Device, precision and threads a fit actually used (env.json records them)."""
        self._check_fitted()
        return {"device": str(self.device_), "precision": self.precision_, "torch_threads": torch.get_num_threads(),
                "seed": self.seed_}

    # -- checkpoints
    def _fitted_state(self) -> dict:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted detector (hyperparameters, weights, fitted statistics) to ``path`` (model.pt)."""
        self._check_fitted()
        state = {}
        for k, v in self._fitted_state().items():
            state[k] = ("__generator__", v.get_state()) if isinstance(v, torch.Generator) else v
        params = {k: (None if k in self.data_params else v) for k, v in self.get_params().items()}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"class": f"{type(self).__module__}.{type(self).__qualname__}", "format": 1,
                    "params": params, "state": state}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> "Detector":
        """A detector written by :meth:`save`, on ``device`` (None: where it was fitted, if that exists here,
        else the default device). Data-valued hyperparameters (outlier corpora) come back as None."""
        blob = torch.load(path, map_location="cpu", weights_only=False)
        name = blob.get("class", "")
        module, _, qual = name.rpartition(".")
        import importlib

        klass = getattr(importlib.import_module(module), qual)
        if not issubclass(klass, cls):
            raise TypeError(f"{path} holds a {qual}, not a {cls.__name__}: load it with {qual}.load")
        det = klass(**blob["params"])
        state = blob["state"]
        saved = state.get("device_", torch.device("cpu"))
        target = torch.device(device) if device is not None else (
            saved if saved.type != "cuda" or torch.cuda.is_available() else resolve_device(None))
        for k, v in state.items():
            if isinstance(v, tuple) and len(v) == 2 and v[0] == "__generator__":
                v = torch.Generator().set_state(v[1])
            setattr(det, k, v)
        det.device_ = target
        det._to_device(target)
        det._fitted = True
        det._loaded()
        return det

    def _to_device(self, device: torch.device) -> None:
        """Move every fitted module and tensor to ``device`` (after load)."""
        for k, v in self._fitted_state().items():
            if isinstance(v, (torch.nn.Module, torch.Tensor)) and k != "device_":
                setattr(self, k, v.to(device))

    def _loaded(self) -> None:
        """Hook: rebuild caches that are not saved."""


def check_epochs(epochs, allow_zero: bool = False, fractional: bool = False):
    """A clear error for an epoch count that cannot train."""
    if epochs is None:
        return epochs
    if not fractional and int(epochs) != epochs:
        raise ValueError(f"epochs must be a whole number, got {epochs}")
    if epochs < 0 or (epochs == 0 and not allow_zero):
        raise ValueError(f"epochs must be {'>= 0' if allow_zero else '> 0'}, got {epochs}")
    return epochs
