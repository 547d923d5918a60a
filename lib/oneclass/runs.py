"""Run folders: the unit of every result, written atomically.

A run folder ``<outputs>/<preset>/<experiment>/<dataset>/<class>/seed_<k>/`` holds ``params.yaml``,
``env.json``, ``metrics.json``, ``scores.parquet``, ``maps.npz`` and (batch runs) the executed ``run.ipynb``.
It is written under a temporary name and renamed when complete, so a folder named ``seed_<k>`` is finished.

A notebook calls :func:`start` right after its parameters cell::

    run = runs.start(run_dir, experiment="fcdd_one_vs_rest", dataset=dataset, normal_class=normal_class, seed=seed)
    ...
    run.save_metrics({"auc": auc}); run.save_scores(scores, anomaly=test.anomaly); run.save_maps(native=maps)
    run.finish()

Under the batch runner ``run_dir`` is the temporary folder the runner made (it finalises the folder after it
has saved the executed notebook); in an interactive session ``run_dir`` is None and :meth:`Run.finish`
finalises the folder itself under ``outputs/interactive/``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

MANAGED_MARKER = ".managed-by-batch"
RUNTIME = "runtime.json"     # what the run's detector actually used: device, precision, threads
PACKAGES = ("oneclass", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "scikit-image", "pandas",
            "papermill", "zennit")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; the same seed gives the same numbers on the same machine."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # Deterministic kernels where torch has them; warn (not fail) for ops that have none on this device.
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def outputs_root(outputs: str | os.PathLike | None = None) -> Path:
    """``outputs`` if given, else ``$ONECLASS_OUTPUTS``, else ``./outputs``."""
    return Path(outputs or os.environ.get("ONECLASS_OUTPUTS") or "outputs").absolute()


def class_folder(normal_class: Any) -> str:
    """Folder name of a nominal class: a slug of its name (of a category given as a path: of the folder's name);
    a multi-class nominal set joins them with '+'."""
    from .data import class_slug, is_path_category

    if isinstance(normal_class, (list, tuple)):
        return "+".join(class_folder(c) for c in normal_class)
    return class_slug(Path(str(normal_class)).name if is_path_category(normal_class) else str(normal_class))


def dataset_folder(dataset: Any) -> str:
    """Folder name of a dataset: its name, or for a class-folder tree given as a path, a slug of the tree's name."""
    from .data import class_slug, is_path_category

    return class_slug(Path(str(dataset)).name) if is_path_category(dataset) else str(dataset)


def run_path(outputs: str | os.PathLike | None, preset: str, experiment: str, dataset: str, normal_class: Any,
             seed: int) -> Path:
    return (outputs_root(outputs) / preset / experiment / dataset_folder(dataset) / class_folder(normal_class)
            / f"seed_{seed}")


def is_finished(path: Path) -> bool:
    """A finished run folder carries its final name and a metrics file; temporary ones start with '.'."""
    path = Path(path)
    return path.is_dir() and not path.name.startswith(".") and (path / "metrics.json").is_file()


def temporary_path(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"


def finalize(tmp: Path, final: Path) -> bool:
    """Rename a completed temporary folder to its final name; False when another writer got there first."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
        return True
    except OSError:
        if is_finished(final):   # a concurrent runner finished the same run: keep the first, drop ours
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        if final.exists():       # an unfinished leftover under the final name (should not happen): replace it
            shutil.rmtree(final)
            os.rename(tmp, final)
            return True
        raise


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=here,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(wall_seconds: float | None = None, run_dir: str | os.PathLike | None = None) -> dict:
    """What env.json records: code version, package versions, device and wall time. When the run saved a
    model (:meth:`Run.save_model`), ``device``, ``precision`` and ``torch_threads`` are the ones its detector
    actually used (``runtime.json``), not this process's defaults."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_commit": git_commit(),
        "packages": versions,
        "python": platform.python_version(),
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        # the 1-minute load average when the run finished: its seconds are comparable only on a quiet machine
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "host": socket.gethostname(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": None if wall_seconds is None else round(float(wall_seconds), 3),
    } | _runtime(run_dir)


def _runtime(run_dir) -> dict:
    f = Path(run_dir) / RUNTIME if run_dir is not None else None
    if f is None or not f.is_file():
        return {}
    rt = json.loads(f.read_text())
    return {"device": rt.get("device"), "precision": rt.get("precision"), "torch_threads": rt.get("torch_threads"),
            "detector": rt.get("detector")}


def _plain(value: Any) -> Any:
    """numpy / torch scalars and arrays -> plain python for JSON and YAML."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_yaml(path: Path, data: Mapping) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(_plain(dict(data)), sort_keys=False))


def _check_finite(name: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        where = [i[0] if len(i) == 1 else tuple(i) for i in np.argwhere(bad)[:5].tolist()]
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf) out of {values.size}, "
                         f"first at index {', '.join(map(str, where))}: "
                         "the model diverged or a score underflowed; lower the learning rate, check the inputs' "
                         "normalisation, or compute the score in log space")


@dataclass
class Run:
    """An open run folder. ``path`` is temporary until :meth:`finish` (or the batch runner) renames it."""

    path: Path
    final: Path
    managed: bool
    info: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def save_metrics(self, metrics: Mapping[str, Any]) -> dict:
        """Write metrics.json (merged with what was saved before). A NaN metric is an error, not a number."""
        merged = self.metrics() | _plain(dict(metrics))
        for key, value in merged.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"metric {key!r} is {value}: the scores it was computed from are not finite; "
                                 "see the scores' check in save_scores")
        (self.path / "metrics.json").write_text(json.dumps(merged, indent=2))
        return merged

    def metrics(self) -> dict:
        f = self.path / "metrics.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def save_curve(self, curve) -> None:
        """curve.parquet: a learning curve (:meth:`oneclass.monitor.Monitor.frame`), one row per point, with the
        monitor's cost kept as columns ``eval_seconds`` and ``subset`` (parquet drops DataFrame attrs)."""
        frame = curve.copy()
        frame["eval_seconds"] = curve.attrs.get("eval_seconds", np.nan)
        frame["subset"] = curve.attrs.get("subset", -1)
        for col in frame.columns:
            if col.startswith("auc") or col == "loss":
                values = frame[col].to_numpy(dtype=np.float64)
                if col != "loss" and not np.isfinite(values).all():
                    raise ValueError(f"learning curve column {col!r} has non-finite values")
        frame.to_parquet(self.path / "curve.parquet", index=False)

    def save_scores(self, scores, **columns) -> "Any":
        """scores.parquet: one row per test image (index, score and any aligned columns: label, anomaly, ...)."""
        import pandas as pd

        scores = np.asarray(_plain(scores), dtype=np.float64).reshape(-1)
        _check_finite("scores", scores)
        frame = {"index": np.arange(len(scores)), "score": scores}
        for name, col in columns.items():
            col = np.asarray(_plain(col))
            if col.shape[:1] != scores.shape:
                raise ValueError(f"column {name!r} has {col.shape[0] if col.ndim else 1} rows, scores have "
                                 f"{len(scores)}: pass one value per test image")
            frame[name] = col.reshape(len(scores), -1)[:, 0] if col.ndim > 1 and col.shape[1] == 1 else col
        df = pd.DataFrame(frame)
        df.to_parquet(self.path / "scores.parquet", index=False)
        return df

    def save_maps(self, **arrays) -> None:
        """maps.npz: float maps stored as float16 (finite, clipped to its range); integer arrays kept as they are.

        Conventional keys: ``native`` (N, h, w) for every test image at the model's resolution; ``upsampled``,
        ``images`` (uint8, K, C, H, W), ``index`` (K,) for the gallery subset; ``masks`` (K, H, W) ground truth.
        """
        out = {}
        for name, arr in arrays.items():
            if arr is None:
                continue
            arr = np.asarray(arr.detach().cpu() if hasattr(arr, "detach") else arr)
            if np.issubdtype(arr.dtype, np.floating):
                _check_finite(f"map {name!r}", arr)
                fmax = np.finfo(np.float16).max
                arr = np.clip(arr, -fmax, fmax).astype(np.float16)
            out[name] = arr
        np.savez_compressed(self.path / "maps.npz", **out)

    def save_model(self, detector, name: str = "model.pt", inputs=None) -> Path:
        """Write the fitted detector to ``model.pt`` (``Method.load(path)`` scores new images as this run did)
        and record the device, precision and threads it used (env.json reports them). ``inputs``: the test set
        the run scored; how its images were decoded (size, channels, crop) is recorded for
        ``python -m oneclass.predict``."""
        path = detector.save(self.path / name)
        runtime = detector.runtime() | {"detector": f"{type(detector).__module__}.{type(detector).__qualname__}"}
        if inputs is not None:
            h, w = inputs.images.shape[-2:]
            dec, c = inputs.meta.get("decode") or {}, int(inputs.images.shape[1])
            # the shape the model saw; 'exact': the files were decoded straight to it (predict decodes alike),
            # not resized afterwards (a tensor dataset, or a resize after decoding)
            runtime["inputs"] = {"size": int(h) if h == w else [int(h), int(w)], "channels": c,
                                 "crop": bool(dec.get("crop")),
                                 "exact": dec.get("size") == h and dec.get("channels") == c}
        (self.path / RUNTIME).write_text(json.dumps(runtime, indent=2))
        return path

    def finish(self) -> Path:
        """Close the run. Interactive runs are finalised here; batch runs are finalised by the runner."""
        if not (self.path / "metrics.json").exists():
            raise RuntimeError(f"run {self.path} has no metrics.json: call run.save_metrics(...) before finish()")
        if self.managed:
            return self.path
        write_yaml(self.path / "params.yaml", self.info)
        (self.path / "env.json").write_text(json.dumps(environment(time.time() - self.started, self.path), indent=2))
        if self.final.exists():   # an interactive rerun replaces the previous interactive result
            shutil.rmtree(self.final)
        finalize(self.path, self.final)
        self.path = self.final
        return self.final


_UNSET = object()


def start(run_dir: str | os.PathLike | None, *, experiment: str, dataset: str, seed: int, normal_class: Any = _UNSET,
          anomaly_class: Any = _UNSET, outputs: str | os.PathLike | None = None, threads: int | None = None,
          **params) -> Run:
    """Seed everything and open the run folder a notebook writes into.

    ``run_dir`` is injected by the batch runner (a temporary folder it created and will finalise); None in an
    interactive session, where the run goes to ``outputs/interactive/<experiment>/...`` on :meth:`Run.finish`.
    Every notebook parameter is passed on (the notebook lint test checks that none is left out) and recorded in
    the run's ``params.yaml``. The run's class is ``normal_class`` (one-vs-rest), or ``anomaly_class`` in a
    notebook without ``normal_class`` (each run one anomaly class, as in the Clever Hans paper's MNIST-C); a
    notebook with both (GEOM's intuition) passes both and its run is named after ``normal_class``. ``threads``
    sets torch's thread count for the run (None keeps the default: the batch runner's share of the cores).
    """
    if normal_class is _UNSET and anomaly_class is _UNSET:
        raise TypeError("runs.start needs the run's class: normal_class= (or anomaly_class=)")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    seed_everything(int(seed))
    cls = anomaly_class if normal_class is _UNSET else normal_class
    info = {"experiment": experiment, "dataset": dataset, "seed": int(seed), "threads": threads, **params}
    info |= {k: v for k, v in (("normal_class", normal_class), ("anomaly_class", anomaly_class)) if v is not _UNSET}
    if run_dir:
        path = Path(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        return Run(path=path, final=path, managed=(path / MANAGED_MARKER).exists(), info=info)
    final = run_path(outputs, "interactive", experiment, dataset, cls, int(seed))
    tmp = temporary_path(final)
    tmp.mkdir(parents=True)
    return Run(path=tmp, final=final, managed=False, info=info)


def gallery_index(scores, anomaly, per_group: int = 4, seed: int = 0) -> np.ndarray:
    """Test images a gallery shows: for nominal and anomalous images alike, ``per_group`` random ones drawn
    independently of the scores (so runs of different methods on the same test set share them and can be shown
    side by side), plus the ``per_group`` most anomalous and most nominal (the papers' figures show both ends)."""
    scores = np.asarray(_plain(scores), dtype=np.float64)
    anomaly = np.asarray(_plain(anomaly)).astype(bool)
    if scores.shape != anomaly.shape:
        raise ValueError(f"{scores.size} scores but {anomaly.size} anomaly labels")
    rng = np.random.default_rng(seed)
    chosen = []
    for group in (~anomaly, anomaly):
        idx = np.flatnonzero(group)
        if idx.size == 0:
            continue
        order = idx[np.argsort(scores[idx], kind="stable")]
        chosen += [rng.choice(idx, size=min(per_group, idx.size), replace=False), order[:per_group],
                   order[-per_group:]]
    return np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def read_run(path: str | os.PathLike) -> dict:
    """params, metrics and env of a finished run folder."""
    import yaml

    path = Path(path)
    if not is_finished(path):
        raise FileNotFoundError(f"{path} is not a finished run folder (no metrics.json, or a temporary name)")
    env = path / "env.json"
    return {
        "path": path,
        "params": yaml.safe_load((path / "params.yaml").read_text()) if (path / "params.yaml").exists() else {},
        "metrics": json.loads((path / "metrics.json").read_text()),
        "env": json.loads(env.read_text()) if env.exists() else {},
    }


def finished_runs(root: str | os.PathLike) -> list[Path]:
    """Every finished run folder below ``root`` (temporary and failed folders are never listed)."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(p.parent for p in root.rglob("metrics.json")
                  if is_finished(p.parent) and not any(part.startswith(".") or part.endswith(".failed")
                                                       for part in p.parent.relative_to(root).parts))
