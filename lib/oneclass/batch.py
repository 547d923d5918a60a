"""Batch runner: a params file's grid through papermill, N runs at a time, resumable, never losing a result.

    python -m oneclass.batch params/fcdd/fmnist.yaml --preset quick -j 2
    python -m oneclass.batch params/fcdd/fmnist.yaml --classes 0 3 --seeds 0 1 --redo
    python -m oneclass.batch params/fcdd/fmnist.yaml --executor dask --scheduler tcp://host:8786

Each run executes in its own kernel (separate process; kernels talk over ipc sockets in private folders, so
parallel runs never race for TCP ports), writes into a temporary folder and is renamed to
``outputs/<preset>/<experiment>/<dataset>/<class>/seed_<k>`` when complete. A per-run file lock lets several
runners share one outputs folder. A finished run is skipped on a rerun (``--redo`` replaces it); a finished run
with different parameters is reported as stale and left alone. A failed run keeps its traceback in
``seed_<k>.failed/error.txt`` and the others go on; the exit code is 1 when any run failed.

Ctrl-C or SIGTERM (``kill PID``, a scheduler's time limit) stops the batch: the runs in progress are abandoned (their
kernels shut down, their temporary folders removed), no queued run starts, finished runs are kept, and the exit code
is 130; the same command resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import params as P
from .runs import (MANAGED_MARKER, environment, finalize, is_finished, outputs_root, run_path, temporary_path,
                   write_yaml)

STATUSES = ("done", "skipped", "stale", "busy", "failed", "interrupted")
INTERRUPTED_EXIT = 130


@dataclass
class Result:
    label: str
    status: str
    seconds: float = 0.0
    path: str = ""
    message: str = ""


def record(spec: P.RunSpec) -> dict:
    """What params.yaml holds: the resolved notebook parameters plus where they came from."""
    return {"experiment": spec.experiment, "preset": spec.preset, "dataset": spec.dataset,
            "normal_class": spec.normal_class, "seed": spec.seed, "notebook": str(spec.notebook),
            **spec.meta, "parameters": dict(spec.parameters)}


def _stored_parameters(final: Path) -> dict | None:
    f = final / "params.yaml"
    return (yaml.safe_load(f.read_text()) or {}).get("parameters") if f.exists() else None


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    """``text`` without terminal colour codes (IPython colours its tracebacks)."""
    return ANSI.sub("", text)


def _error_text(err: BaseException) -> str:
    """error.txt: for a failed cell, its source and the kernel's traceback (plain text), then the runner's side."""
    kernel_tb = getattr(err, "traceback", None)
    parts = []
    if kernel_tb:
        cell = getattr(err, "exec_count", None)
        parts += [f"{summary(err)}\n", f"--- the failing cell (execution count {cell}) ---",
                  plain(getattr(err, "source", "") or "").rstrip(), "", "--- kernel traceback ---",
                  plain("\n".join(kernel_tb)).rstrip(), ""]
    parts += ["--- runner traceback ---", plain("".join(traceback.format_exception(err))).rstrip()]
    return "\n".join(parts) + "\n"


def summary(err: BaseException) -> str:
    """One line for the batch's report: the exception's type and the first line of its message (for a notebook
    cell, the kernel's exception, not papermill's wrapper), colour codes removed."""
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename:
        lines = plain(str(evalue or "")).strip().splitlines()
        return f"{ename}: {lines[0]}" if lines else ename
    lines = plain(str(err)).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _fail(tmp: Path, final: Path, text: str) -> Path:
    (tmp / "error.txt").write_text(text)
    failed = final.parent / f"{final.name}.failed"
    shutil.rmtree(failed, ignore_errors=True)
    os.rename(tmp, failed)
    return failed


class _KnownParameters(logging.Filter):
    """papermill cannot parse annotated parameters (``x: int | None = None``) and warns about them as unknown;
    our own validation has read them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "Passed unknown parameter" not in message and "Unable to parse line" not in message


# once per process, not once per run; a logger's filters do not apply to its children's records, so the
# translators' logger (which reports the unparsable lines) needs its own
for _name in ("papermill", "papermill.translators"):
    logging.getLogger(_name).addFilter(_KnownParameters())


def _execute_notebook(spec: P.RunSpec, tmp: Path, threads: int | None) -> None:
    import papermill
    from jupyter_client.manager import KernelManager

    if threads:  # parallel runs each get their share of the cores instead of all fighting for all of them
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    sockets = Path(tempfile.mkdtemp(prefix="oc-kernel-"))   # short path: unix sockets allow ~100 characters
    km = KernelManager(kernel_name="python3", transport="ipc")
    km.ip = str(sockets / "k")
    try:
        papermill.execute_notebook(str(spec.notebook), str(tmp / "run.ipynb"),
                                   parameters=dict(spec.parameters) | {"run_dir": str(tmp)},
                                   kernel_name="python3", language="python", progress_bar=False, km=km,
                                   cwd=str(spec.notebook.parent))
    finally:
        # nbclient leaves a kernel manager it was handed to its owner: without this, every run's kernel lives on
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        shutil.rmtree(sockets, ignore_errors=True)


# --- stopping ----------------------------------------------------------------------------------------------
# A worker process of a parallel batch stops on its first SIGINT or SIGTERM: the run in progress is abandoned (a
# KeyboardInterrupt inside papermill; _execute_notebook's finally shuts its kernel down) and every run handed to it
# afterwards returns "interrupted" without starting. A second signal does not interrupt the kernel's shutdown.
_stopping = False
_running = False


def _stop_worker(signum, frame) -> None:
    global _stopping
    first, _stopping = not _stopping, True
    if first and _running:
        raise KeyboardInterrupt(f"stopped by signal {signum}")


def _worker_init() -> None:
    signal.signal(signal.SIGINT, _stop_worker)
    signal.signal(signal.SIGTERM, _stop_worker)


def _stop_main(signum, frame) -> None:
    """The batch's own process (the command line): SIGINT and SIGTERM stop it; a kernel error that the same Ctrl-C
    caused is then an abandoned run, not a failed one."""
    global _stopping
    _stopping = True
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _abandon(spec: P.RunSpec, tmp: Path, start: float) -> Result:
    """A run stopped mid-way: its temporary folder goes, nothing is recorded."""
    shutil.rmtree(tmp, ignore_errors=True)
    return Result(spec.label, "interrupted", time.time() - start, message="stopped mid-run; not kept")


def execute(spec: P.RunSpec, outputs: str, redo: bool = False, threads: int | None = None) -> Result:
    """Run one spec into its run folder (in this process's kernel child); safe to call from many processes.
    Interrupted (KeyboardInterrupt, or a stopping worker), the run leaves no folder behind and returns
    "interrupted"."""
    global _running
    from filelock import FileLock, Timeout

    if _stopping:
        return Result(spec.label, "interrupted", message="the batch was stopped before this run started")

    final = run_path(outputs, spec.preset, spec.experiment, spec.dataset, spec.normal_class, spec.seed)
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(final.parent / f".{final.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return Result(spec.label, "busy", path=str(final), message="another runner is executing this run")
    try:
        if is_finished(final) and not redo:
            stored = _stored_parameters(final)
            if stored is not None and stored != dict(spec.parameters):
                changed = sorted(k for k in set(stored) | set(spec.parameters)
                                 if stored.get(k) != spec.parameters.get(k))
                return Result(spec.label, "stale", path=str(final),
                              message=f"finished with other parameters ({', '.join(changed)}); --redo replaces it")
            return Result(spec.label, "skipped", path=str(final))
        for orphan in final.parent.glob(f".{final.name}.tmp-*"):   # left by a killed runner; we hold the lock
            shutil.rmtree(orphan, ignore_errors=True)
        tmp = temporary_path(final)
        tmp.mkdir()
        (tmp / MANAGED_MARKER).touch()
        write_yaml(tmp / "params.yaml", record(spec))
        start = time.time()
        try:
            _running = True
            _execute_notebook(spec, tmp, threads)
            if not (tmp / "metrics.json").exists():
                raise RuntimeError("the notebook finished without writing metrics.json: it must call "
                                   "run.save_metrics(...) (see CONTRIBUTING.md)")
        except KeyboardInterrupt:
            return _abandon(spec, tmp, start)
        except Exception as err:  # noqa: BLE001 - any failure of one run is recorded, the batch goes on
            if _stopping:   # the kernel was interrupted by the same signal: an abandoned run, not a failed one
                return _abandon(spec, tmp, start)
            failed = _fail(tmp, final, _error_text(err))
            return Result(spec.label, "failed", time.time() - start, str(failed), summary(err)[:300])
        finally:
            _running = False
        seconds = time.time() - start
        (tmp / "env.json").write_text(json.dumps(environment(seconds, tmp), indent=2))
        (tmp / MANAGED_MARKER).unlink()
        shutil.rmtree(final.parent / f"{final.name}.failed", ignore_errors=True)
        old = None
        if final.exists():   # --redo: move the old result aside only once the new one is complete
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
        finalize(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return Result(spec.label, "done", seconds, str(final))
    finally:
        lock.release()


# --- data before kernels -----------------------------------------------------------------------------------

def datasets_needed(specs: list[P.RunSpec]) -> list[tuple[str, object]]:
    """(dataset, class) pairs the grid reads: each run's dataset with its class where the class picks files (an
    MVTec-AD category, an MNIST-C corruption), and every parameter whose value names a known dataset (an
    outlier-exposure corpus, a pretraining set); or, where the params file has a ``data:`` list, those datasets
    (``data: []`` for a notebook that reads none)."""
    from . import data
    from .data import canonical

    def name(value):
        try:
            return canonical(value) if isinstance(value, str) and value else None
        except ValueError:
            return None

    needed = []
    for spec in specs:
        if spec.meta.get("data") is not None:      # the params file lists what its notebook reads
            needed += [p for p in ((name(d) or d, None) for d in spec.meta["data"]) if p not in needed]
            continue
        ds = str(spec.dataset) if data.is_path_category(spec.dataset) else name(spec.dataset)   # a tree of one's own
        pairs = [(ds, spec.normal_class if ds in ("mvtec", "mnist_c") else None)] if ds else []
        # every other value naming a dataset is read, except `like`: a set-up borrowed for a tree of one's own
        pairs += [(n, None) for key, v in spec.parameters.items() if key not in ("dataset", "like") and (n := name(v))]
        needed += [p for p in pairs if p not in needed]
    return needed


def prepare_data(specs: list[P.RunSpec], download=None) -> None:
    """Every dataset the grid needs, on disk before any kernel starts: downloaded here, once, where missing and
    allowed; else DatasetMissingError (files expected, where to get them)."""
    from . import data

    for dataset, normal in datasets_needed(specs):
        data.require(dataset, download=download, normal=normal)


# --- executors ----------------------------------------------------------------------------------------------

def _local(specs, outputs, redo, jobs, threads):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if jobs == 1:
        for spec in specs:
            res = execute(spec, outputs, redo, threads)
            yield res
            if res.status == "interrupted":
                raise KeyboardInterrupt("the run was interrupted")
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
        futures = {pool.submit(execute, s, outputs, redo, threads): s for s in specs}
        try:
            for fut in as_completed(futures):
                try:
                    yield fut.result()
                except Exception as err:  # noqa: BLE001 - a dead worker process fails its run, not the batch
                    yield Result(futures[fut].label, "failed", message=f"worker died: {err}")
        except (KeyboardInterrupt, GeneratorExit):
            _stop_pool(pool)
            raise


def _stop_pool(pool, grace: float = 60.0) -> None:
    """Cancel the queued runs and stop the workers' runs in progress, waiting (up to ``grace`` seconds) for their
    kernels to shut down, so that nothing of the batch keeps running after it returns."""
    workers = list((getattr(pool, "_processes", None) or {}).values())   # no public handle on the workers
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        if proc.is_alive():
            proc.terminate()        # SIGTERM: _stop_worker abandons the run and shuts its kernel down
    deadline = time.time() + grace
    for proc in workers:
        proc.join(max(0.0, deadline - time.time()))
        if proc.is_alive():
            proc.kill()


def _dask(specs, outputs, redo, scheduler, threads):
    from distributed import Client, as_completed

    with Client(scheduler) as client:
        futures = [client.submit(execute, s, outputs, redo, threads, pure=False, key=f"oneclass-{uuid.uuid4().hex}")
                   for s in specs]
        labels = {f.key: s.label for f, s in zip(futures, specs)}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as err:  # noqa: BLE001
                yield Result(labels[fut.key], "failed", message=f"dask task failed: {err}")


def run_batch(specs: list[P.RunSpec], outputs: str | None = None, jobs: int = 1, redo: bool = False,
              executor: str = "local", scheduler: str | None = None, progress: bool = True) -> list[Result]:
    """Execute specs, showing progress; returns one Result per spec (in completion order)."""
    from tqdm.auto import tqdm

    outputs = str(outputs_root(outputs))
    # each of N parallel runs gets its share of the cores, unless the user set the thread count themselves
    threads = None
    if executor == "local" and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    if executor == "dask":
        if not scheduler:
            raise P.ParamsError("--executor dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
        stream = _dask(specs, outputs, redo, scheduler, 1)
    elif executor == "local":
        stream = _local(specs, outputs, redo, jobs, threads)
    else:
        raise P.ParamsError(f"unknown executor {executor!r}; choose local or dask")
    results, counts = [], Counter()
    bar = tqdm(total=len(specs), unit="run", disable=not progress, dynamic_ncols=True)
    for res in stream:
        results.append(res)
        counts[res.status] += 1
        bar.update(1)
        bar.set_postfix({k: counts[k] for k in STATUSES if counts[k]})
        if progress or res.status == "failed":
            extra = f"  {res.message}" if res.message else ""
            bar.write(f"{res.status:>7} {res.seconds:7.1f}s  {res.label}{extra}")
    bar.close()
    return results


def vary_values(key: str, text: str) -> list:
    """The values of one ``--vary KEY=...``: comma-separated YAML values ('0.1,0.3' -> [0.1, 0.3]), or, when the
    text starts with '[', one YAML list whose items are the values, so that values may hold commas
    ('[[8, 4], [16, 8]]' -> [[8, 4], [16, 8]]; '[[8, 4]]' is the single value [8, 4])."""
    if not text.lstrip().startswith("["):
        return [yaml.safe_load(v) for v in text.split(",")]
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise P.ParamsError(f"--vary {key}={text}: not a YAML list ({str(err).splitlines()[0]}); write the values as "
                            f"one list, e.g. --vary '{key}=[[8, 4], [16, 8]]'") from None
    if not isinstance(values, list) or not values:
        raise P.ParamsError(f"--vary {key}={text}: the bracketed form is one non-empty YAML list of the values, "
                            f"e.g. --vary '{key}=[[8, 4], [16, 8]]'")
    return values


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oneclass.batch", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("params", nargs="+", help="params file(s): params/<paper>/<experiment>.yaml")
    ap.add_argument("--preset", default="quick", choices=P.PRESETS)
    ap.add_argument("--classes", nargs="+", help="narrow the grid to these classes (names or indices)")
    ap.add_argument("--seeds", nargs="+", type=int, help="narrow the grid to these seeds")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="runs at a time (separate processes)")
    ap.add_argument("--redo", action="store_true", help="rerun finished runs and replace them")
    ap.add_argument("--outputs", help="outputs root (default $ONECLASS_OUTPUTS or ./outputs)")
    ap.add_argument("--data", help="data root (sets ONECLASS_DATA for the notebooks)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a notebook parameter (a YAML value), e.g. --set epochs=3; repeat for more; on a "
                         "key the preset varies, narrows that axis to the value")
    ap.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                    help="run every value of a parameter (YAML values, comma-separated, or one YAML list such as "
                         "'channels=[[8, 4], [16, 8]]' when the values hold commas), replacing the preset's axis "
                         "for that key or adding one")
    ap.add_argument("--executor", default="local", choices=("local", "dask"))
    ap.add_argument("--scheduler", help="dask scheduler address for --executor dask")
    ap.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    ap.add_argument("--no-tables", action="store_true", help="skip the tables and galleries at the end")
    args = ap.parse_args(argv)
    if args.data:
        os.environ["ONECLASS_DATA"] = str(Path(args.data).absolute())
    try:
        overrides = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise P.ParamsError(f"--set takes KEY=VALUE, got {item!r}")
            overrides[key] = yaml.safe_load(value)
        vary = {}
        for item in args.vary:
            key, sep, values = item.partition("=")
            if not sep or not values:
                raise P.ParamsError(f"--vary takes KEY=V1,V2,..., got {item!r}")
            vary[key] = vary_values(key, values)
        classes = [int(c) if c.isdigit() else c for c in args.classes] if args.classes else None
        experiments = [P.load(p) for p in args.params]
        specs = [s for e in experiments for s in P.expand(e, args.preset, classes, args.seeds, overrides, vary)]
    except P.ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        for s in specs:
            print(s.label)
        return 0
    from .data import DatasetMissingError

    try:
        prepare_data(specs)
    except DatasetMissingError as err:
        print(f"error: {err}\n(no run was started)", file=sys.stderr)
        return 2
    print(f"{len(specs)} runs, preset {args.preset}, -j {args.jobs}, outputs {outputs_root(args.outputs)}")
    global _stopping
    _stopping = False
    previous = {sig: signal.signal(sig, _stop_main) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        results = run_batch(specs, args.outputs, args.jobs, args.redo, args.executor, args.scheduler)
    except KeyboardInterrupt:
        print(f"interrupted: finished runs are kept in {outputs_root(args.outputs)}, the runs in progress were "
              f"abandoned; rerun the same command to resume (finished runs are skipped)", file=sys.stderr)
        return INTERRUPTED_EXIT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = Counter(r.status for r in results)
    print("; ".join(f"{counts[k]} {k}" for k in STATUSES if counts[k]))
    for r in results:
        if r.status in ("failed", "stale"):
            print(f"{r.status}: {r.label}: {r.message}\n    see {r.path}")
    if not args.no_tables:
        from . import tables
        for e in experiments:
            where = tables.build_experiment(e, args.preset, args.outputs)
            if where:
                print(f"tables and gallery of {e.name}: {where}")
    return 1 if counts["failed"] else (3 if counts["stale"] else 0)


if __name__ == "__main__":
    sys.exit(main())
