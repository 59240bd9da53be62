"""`eigsweep status`: a sweep's done and remaining runs, read from its result files without changing them."""
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import xarray as xr

from eigsweep.config import load_config, pack_size, sweep_runs
from eigsweep.jobs import run_state
from eigsweep.status import sweep_status

ROOT = Path(__file__).resolve().parents[1]
SWEEP = "mqar_modifications"


def test_status_of_a_cached_sweep_lists_each_done_run_and_the_packs_left():
    """On the committed results: every run with a result file is done and listed with its file's accuracies,
    every other run is missing and listed in the pack the workflow would train it in; nothing is written."""
    config = load_config(ROOT / "config.yaml")
    runs = {r.run_id: r for r in sweep_runs(config, SWEEP)}
    files = {r: ROOT / "results" / SWEEP / "runs" / f"{r}.nc" for r in runs}
    present = {r for r, f in files.items() if f.exists()}
    assert present   # the cached results of issue 10
    before = {f: f.stat().st_mtime_ns for f in files.values() if f.exists()}
    out = sweep_status(SWEEP, runs, ROOT / "results", pack_size(config, SWEEP)).splitlines()
    assert out[0] == (f"sweep {SWEEP}: {len(runs)} runs, {len(present)} done, {len(runs) - len(present)} to train "
                      f"({len(runs) - len(present)} missing, 0 unreadable, 0 stale)")
    for r in present:
        (line,) = [x for x in out if x.startswith(r + " ")]
        with xr.open_dataset(files[r]) as ds:
            assert line.split()[1:6] == [str(ds.status.values), str(int(ds.steps_done.values)),
                                         f"{float(ds.best_val_acc.values):.4f}", f"{float(ds.best_acc.values):.4f}",
                                         f"{float(ds.final_acc.values):.4f}"]
    listed = " ".join(x for x in out if x.startswith("  "))
    assert all((f"{r} (missing)" in listed) == (r not in present) for r in runs)
    assert before == {f: f.stat().st_mtime_ns for f in before}


def test_a_run_file_is_done_missing_unreadable_or_stale(tmp_path):
    config = load_config(ROOT / "config.yaml")
    runs = {r.run_id: r for r in sweep_runs(config, SWEEP)}
    done, corrupt, other, absent = sorted(r for r in runs if (ROOT / "results" / SWEEP / "runs" / f"{r}.nc").exists())[:4]
    target = tmp_path / SWEEP / "runs"
    target.mkdir(parents=True)
    for r in (done, other):
        shutil.copy(ROOT / "results" / SWEEP / "runs" / f"{r}.nc", target)
    (target / f"{corrupt}.nc").write_bytes(b"not netCDF")
    runs[other] = dataclasses.replace(runs[other], train=dataclasses.replace(runs[other].train, steps=123))
    states = {r: run_state(runs[r], target / f"{r}.nc")[0] for r in (done, corrupt, other, absent)}
    assert states == {done: "done", corrupt: "unreadable", other: "stale", absent: "missing"}
    picked = {r: runs[r] for r in (done, corrupt, other, absent)}
    report = sweep_status(SWEEP, picked, tmp_path, 1)
    assert report.splitlines()[0] == f"sweep {SWEEP}: 4 runs, 1 done, 3 to train (1 missing, 1 unreadable, 1 stale)"
    assert f"  {corrupt} (unreadable)" in report and f"  {other} (stale)" in report and f"  {absent} (missing)" in report
    assert (target / f"{corrupt}.nc").read_bytes() == b"not netCDF"   # reported, not moved aside


def test_status_command_and_an_unknown_sweep():
    ok = subprocess.run([sys.executable, "-m", "eigsweep.cli", "status", SWEEP], cwd=ROOT, capture_output=True,
                        text=True)
    assert ok.returncode == 0 and ok.stdout.startswith(f"sweep {SWEEP}: ")
    bad = subprocess.run([sys.executable, "-m", "eigsweep.cli", "status", "no_such_sweep"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("eigsweep: unknown sweep 'no_such_sweep'")


def test_a_run_another_sweep_holds_is_reported_as_copied_not_trained(tmp_path):
    """A missing run whose spec another sweep has trained (all but the sweep's name) is copied by its job, not
    trained: the report says so, naming the source, and copies nothing itself."""
    config = load_config(ROOT / "config.yaml")
    runs = {r.run_id: r for r in sweep_runs(config, SWEEP)}
    shared = "softmax-mqar_paper-none-s0-lr2.15e-03"   # the modifications' baseline is a run of mqar_paper
    source = tmp_path / "mqar_paper" / "runs" / f"{shared}.nc"
    source.parent.mkdir(parents=True)
    shutil.copy(ROOT / "results" / "mqar_paper" / "runs" / f"{shared}.nc", source)
    other = "softmax-mqar_paper-gate-s0-lr2.15e-03"    # no other sweep has it
    report = sweep_status(SWEEP, {r: runs[r] for r in (shared, other)}, tmp_path, 1)
    assert f"  {shared} (missing; copied from {source} when its job runs, not trained)" in report.splitlines()
    assert f"  {other} (missing)" in report.splitlines()
    assert not (tmp_path / SWEEP).exists()
