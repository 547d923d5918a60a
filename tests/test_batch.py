"""The batch runner end to end on the toy experiment: parallel runs, resume after SIGKILL, concurrent runners,
failures, stale results, invalid params, the dask executor."""
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from oneclass import batch, params, runs, tables

TOY = Path(__file__).parent / "assets" / "toy.yaml"
EXPECTED = {f"{c}/seed_{s}" for c in "012" for s in (0, 1)}

# what a run with device=None records: CUDA where there is one (never assume a CPU-only host)
EXPECTED_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def cli(*args, outputs, **kw):
    env = dict(os.environ, ONECLASS_OUTPUTS=str(outputs), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "oneclass.batch", str(TOY), "--preset", "smoke", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finished(outputs):
    return {f"{p.parent.name}/{p.name}" for p in runs.finished_runs(outputs / "smoke")}


def test_smoke_batch_parallel_writes_complete_run_folders(outputs):
    proc = cli("-j", "2", outputs=outputs)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "6 done" in out
    assert finished(outputs) == EXPECTED
    run = outputs / "smoke" / "toy" / "mnist" / "1" / "seed_0"
    assert {p.name for p in run.iterdir()} == {"run.ipynb", "params.yaml", "env.json", "metrics.json",
                                               "scores.parquet", "maps.npz"}
    p = yaml.safe_load((run / "params.yaml").read_text())
    assert p["parameters"] == {"dataset": "mnist", "n": 200, "shift": 2.0, "normal_class": "1", "seed": 0,
                               "fail": False, "sleep": 0.0}   # notebook defaults included
    m = json.loads((run / "metrics.json").read_text())
    assert 0.85 < m["auc"] <= 1.0 and 0 < m["aupr_in"] <= 1 and 0 < m["aupr_out"] <= 1
    scores = pd.read_parquet(run / "scores.parquet")
    assert list(scores.columns) == ["index", "score", "anomaly"] and len(scores) == 200
    env = json.loads((run / "env.json").read_text())
    assert env["wall_seconds"] > 0 and env["packages"]["papermill"] and env["device"] == EXPECTED_DEVICE
    # the tables read the run folders, with the toy paper's missing numbers left empty
    summary = tables.summarize(tables.collect(outputs / "smoke"), "auc")
    assert list(summary["class"]) == ["0", "1", "2", "mean"]
    assert (summary["runs"].iloc[:3] == 2).all() and summary["runs"].iloc[3] == 6
    assert (outputs / "smoke" / "_tables" / "toy" / "auc.md").exists()
    assert (outputs / "smoke" / "_tables" / "toy" / "gallery.png").exists()


def test_same_seed_same_metrics(outputs):
    specs = params.expand(params.load(TOY), "smoke", classes=[0], seeds=[3])
    first = batch.run_batch(specs, outputs, progress=False)[0]
    a = json.loads(Path(first.path, "metrics.json").read_text())
    again = batch.run_batch(specs, outputs, redo=True, progress=False)[0]
    assert again.status == "done"
    assert json.loads(Path(again.path, "metrics.json").read_text()) == a
    # every run's kernel is shut down with its run (a leaked kernel holds ~600 MB)
    ps = subprocess.run(["ps", "-eo", "ppid,args"], capture_output=True, text=True).stdout
    assert not [line for line in ps.splitlines()
                if "ipykernel_launcher" in line and line.split()[0] == str(os.getpid())]


def test_sigkill_mid_batch_then_rerun_completes_only_missing_runs(outputs):
    proc = cli("-j", "2", "--set", "sleep=2.5", outputs=outputs, start_new_session=True)
    deadline = time.time() + 240
    while len(finished(outputs)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r: (outputs / "smoke" / "toy" / "mnist" / r / "metrics.json").stat().st_mtime_ns
              for r in finished(outputs)}
    assert 2 <= len(before) < 6, "the kill should land mid-batch"
    # half-written folders exist under temporary names but are never counted
    assert len(tables.collect(outputs / "smoke")) == len(before)
    proc = cli("-j", "2", "--set", "sleep=2.5", outputs=outputs)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"{6 - len(before)} done; {len(before)} skipped" in out
    assert finished(outputs) == EXPECTED
    for r, mtime in before.items():   # finished runs were not touched
        assert (outputs / "smoke" / "toy" / "mnist" / r / "metrics.json").stat().st_mtime_ns == mtime
    leftovers = [p for p in (outputs / "smoke").rglob(".seed_*.tmp-*")]
    assert leftovers == []


def processes_of(outputs) -> dict[int, bytes]:
    """Live processes whose environment names this outputs folder (the batch, its workers and their kernels), with
    their command lines."""
    mine = f"ONECLASS_OUTPUTS={outputs}".encode()
    found = {}
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mine in env.read_bytes().split(b"\0"):
                found[int(env.parent.name)] = (env.parent / "cmdline").read_bytes()
        except OSError:   # gone meanwhile, or not ours to read
            pass
    return found


def kernels_of(outputs) -> int:
    return sum(b"ipykernel_launcher" in cmdline for cmdline in processes_of(outputs).values())


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc to find the batch's processes")
@pytest.mark.parametrize("how", ["SIGTERM to the batch process", "Ctrl-C (SIGINT to its process group)"])
def test_a_stopped_batch_leaves_nothing_running_and_resumes(outputs, how):
    """Stopped while two runs sleep in their kernels, the batch exits with 130 and says how to resume; none of its
    workers or kernels lives on, no half-written folder and no queued run is left behind, no run is recorded as
    failed; the same command then runs all six."""
    proc = cli("-j", "2", "--set", "sleep=60", outputs=outputs, start_new_session=True)
    deadline = time.time() + 180
    while kernels_of(outputs) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert kernels_of(outputs) == 2, "two runs should be in progress"
    time.sleep(2.0)   # inside the notebook's sleep
    if how.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "rerun the same command to resume" in out and "failed" not in out
    deadline = time.time() + 30
    while processes_of(outputs) and time.time() < deadline:
        time.sleep(0.2)
    assert processes_of(outputs) == {}
    assert finished(outputs) == set()
    toy = outputs / "smoke" / "toy"
    assert [p for p in toy.rglob("*") if p.name.startswith(".seed_") and ".lock" not in p.name] == []
    assert list(toy.rglob("*.failed")) == []
    proc = cli("-j", "2", outputs=outputs)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "6 done" in out, out
    assert finished(outputs) == EXPECTED


def test_two_runners_on_one_outputs_folder_do_not_collide(outputs):
    a = cli("--set", "sleep=1.0", outputs=outputs)
    b = cli("--set", "sleep=1.0", outputs=outputs)
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    done = sum(int(n) for o in (out_a, out_b) for n in re.findall(r"^(\d+) done", o, re.M))
    assert done == 6, out_a + out_b
    assert finished(outputs) == EXPECTED
    for run in runs.finished_runs(outputs / "smoke"):
        assert json.loads((run / "metrics.json").read_text())["auc"] > 0.85


def test_a_run_another_runner_holds_is_reported_busy_and_left_alone(outputs):
    from filelock import FileLock

    specs = params.expand(params.load(TOY), "smoke", classes=[0, 1], seeds=[0])
    final = runs.run_path(outputs, "smoke", specs[0].experiment, specs[0].dataset, specs[0].normal_class, 0)
    final.parent.mkdir(parents=True)
    with FileLock(str(final.parent / f".{final.name}.lock")):       # another runner is executing this run
        results = {r.label: r for r in batch.run_batch(specs, outputs, progress=False)}
    assert results[specs[0].label].status == "busy" and not final.exists()
    assert results[specs[1].label].status == "done"


def test_failed_run_keeps_traceback_others_finish_and_exit_code_is_1(outputs, monkeypatch):
    specs = params.expand(params.load(TOY), "smoke", classes=[0, 1], seeds=[0])
    bad = params.RunSpec(**{**specs[1].__dict__, "parameters": {**specs[1].parameters, "fail": True}})
    results = {r.label: r for r in batch.run_batch([specs[0], bad], outputs, jobs=2, progress=False)}
    assert results[specs[0].label].status == "done"
    failed = results[bad.label]
    assert failed.status == "failed" and failed.path.endswith("seed_0.failed")
    text = Path(failed.path, "error.txt").read_text()
    assert "toy failure requested by the parameter fail=True" in text
    # the report's line is the kernel's exception; error.txt is plain text with the failing cell's source
    assert failed.message == "RuntimeError: toy failure requested by the parameter fail=True"
    assert "\x1b[" not in text and "--- the failing cell" in text and "if fail:" in text
    assert Path(failed.path, "run.ipynb").exists()
    assert finished(outputs) == {"0/seed_0"}
    # a rerun without the fault finishes it and clears the failed folder
    assert batch.run_batch([specs[1]], outputs, progress=False)[0].status == "done"
    assert not Path(failed.path).exists()
    monkeypatch.setenv("ONECLASS_OUTPUTS", str(outputs))
    proc = cli("--classes", "2", "--seeds", "0", "--set", "fail=true", outputs=outputs)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "1 failed" in out and "error.txt" not in out and "seed_0.failed" in out


def test_changed_parameters_are_stale_until_redo(outputs):
    specs = params.expand(params.load(TOY), "smoke", classes=[0], seeds=[0])
    assert batch.run_batch(specs, outputs, progress=False)[0].status == "done"
    changed = params.expand(params.load(TOY), "smoke", classes=[0], seeds=[0], overrides={"shift": 0.0})
    res = batch.run_batch(changed, outputs, progress=False)[0]
    assert res.status == "stale" and "shift" in res.message
    res = batch.run_batch(changed, outputs, redo=True, progress=False)[0]
    assert res.status == "done"
    assert yaml.safe_load(Path(res.path, "params.yaml").read_text())["parameters"]["shift"] == 0.0


@pytest.mark.parametrize("args, expected", [
    (["--set", "epochs=3"], "unknown parameter 'epochs'"),
    (["--set", "n=many"], "parameter 'n' = 'many' is str, expected int"),
    (["--classes", "eleven"], "eleven"),
    (["--classes", "12"], "12"),
    (["--set", "seed=1"], "'seed' is set by the grid"),
])
def test_invalid_params_are_refused_before_any_notebook_starts(outputs, args, expected):
    proc = cli(*args, outputs=outputs)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert expected in out
    if "unknown" in expected:
        assert "Valid parameters of toy.ipynb" in out
    assert not outputs.exists(), "nothing may run or be written"


def test_dask_executor_runs_the_same_batch(outputs):
    distributed = pytest.importorskip("distributed")
    specs = params.expand(params.load(TOY), "smoke", classes=[0, 1], seeds=[0])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        results = batch.run_batch(specs, outputs, executor="dask", scheduler=c.scheduler_address, progress=False)
    assert sorted(r.status for r in results) == ["done", "done"]
    assert finished(outputs) == {"0/seed_0", "1/seed_0"}


def test_dry_run_lists_the_grid_and_starts_nothing(outputs):
    proc = cli("--classes", "0", "2", "--seeds", "0", "1", "--dry-run", outputs=outputs)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert out.split() == [s.label for s in params.expand(params.load(TOY), "smoke", classes=[0, 2], seeds=[0, 1])]
    assert len(out.split()) == 4 and not (outputs / "smoke").exists()


def test_stale_run_exits_3_and_keeps_the_old_result(outputs):
    assert batch.run_batch(params.expand(params.load(TOY), "smoke", classes=[0], seeds=[0]), outputs,
                           progress=False)[0].status == "done"
    proc = cli("--classes", "0", "--seeds", "0", "--set", "shift=0.0", "--no-tables", outputs=outputs)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "1 stale" in out and "--redo replaces it" in out, out
    (run,) = runs.finished_runs(outputs / "smoke")
    assert yaml.safe_load((run / "params.yaml").read_text())["parameters"]["shift"] != 0.0


def test_redo_that_fails_leaves_the_finished_result_in_place(outputs):
    """--redo moves the old folder aside only once the new run is complete: a redo that fails keeps it."""
    specs = params.expand(params.load(TOY), "smoke", classes=[1], seeds=[0])
    done = batch.run_batch(specs, outputs, progress=False)[0]
    before = json.loads(Path(done.path, "metrics.json").read_text())
    bad = [params.RunSpec(**{**specs[0].__dict__, "parameters": {**specs[0].parameters, "fail": True}})]
    res = batch.run_batch(bad, outputs, redo=True, progress=False)[0]
    assert res.status == "failed"
    assert json.loads(Path(done.path, "metrics.json").read_text()) == before
    assert finished(outputs) == {"1/seed_0"}
    assert sorted(p.name for p in Path(done.path).parent.iterdir() if not p.name.startswith(".")) == [
        "seed_0", "seed_0.failed"]


@pytest.mark.parametrize("text, values", [
    ("0.1,0.3", [0.1, 0.3]),
    ("[[8, 4], [16, 8]]", [[8, 4], [16, 8]]),      # values holding commas: one YAML list
    ("[[8, 4]]", [[8, 4]]),                         # a single list value
    ("[0.1, none, gcn_minmax]", [0.1, "none", "gcn_minmax"]),
])
def test_vary_values_split_on_commas_or_read_one_yaml_list(text, values):
    assert batch.vary_values("k", text) == values


@pytest.mark.parametrize("text, expected", [("[[8, 4], [16, 8]", "not a YAML list"),
                                            ("[]", "one non-empty YAML list")])
def test_vary_bracketed_values_that_are_not_a_list_are_refused_with_the_form_to_use(text, expected):
    with pytest.raises(params.ParamsError, match=expected) as err:
        batch.vary_values("channels", text)
    assert "--vary 'channels=[[8, 4], [16, 8]]'" in str(err.value)


def test_dry_run_with_a_bracketed_vary_lists_one_experiment_per_value(outputs):
    proc = cli("--classes", "0", "--seeds", "0", "--vary", "shift=[1.5, 2.5]", "--dry-run", outputs=outputs)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert out.split() == ["toy.shift=1.5/mnist/0/seed_0", "toy.shift=2.5/mnist/0/seed_0"]
    bad = cli("--vary", "shift=[1.5, 2.5", "--dry-run", outputs=outputs)
    out, _ = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "not a YAML list" in out and not outputs.exists()
