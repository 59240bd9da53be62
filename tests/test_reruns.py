"""Partial re-runs: one sweep at a time, `all` retrains nothing done, editing one sweep retrains that sweep
only (Snakemake's params trigger), run ids and done runs survive unrelated config edits; a deleted or corrupt
run file is retrained; another invocation's config cannot change what a running one trains; Snakemake
respects `eigsweep sweep`'s lock."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import xarray as xr
import yaml

from eigsweep.jobs import snakemake_lock
from eigsweep.results import read_run_file

ROOT = Path(__file__).resolve().parents[1]


def env(**extra):
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"), **extra)


def snakemake(cwd, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600, env=env())
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr
    return proc


def planned_trains(out: str) -> list[str]:
    """Run ids of the train jobs a dry run lists (--quiet rules... is not enough: we need the ids)."""
    return sorted(re.findall(r"output: \S+/runs/(\S+)\.nc", out))


def train_reasons(out: str) -> dict[str, str]:
    """{run id: reason} of each train job a dry run lists."""
    jobs = re.findall(r"rule train:\n\s+output: \S+/runs/(\S+)\.nc\n(?:\s+\w+: .*\n)*?\s+reason: (.*)\n", out)
    return dict(jobs)


def config(**edits):
    c = dict(
        results_dir="results",
        defaults=dict(model=dict(d_model=16, n_layers=1, n_heads=1, d_state=4, head_dim=8, pos_embedding="learned"),
                      train=dict(steps=4, batch_size=8, warmup_steps=1, eval_every=2, device="cpu", threads=1),
                      eval=dict(n_samples=4, batch_size=16)),
        slurm=dict(partition="gpu", gpus=1),
        tasks=dict(tiny=dict(name="mqar", vocab_size=40, seq_len=16, num_kv_pairs=2, n_train=64, n_test=16)),
        all=["one", "two"],
        sweeps=dict(one=dict(arch=["softmax", "linear"], task=["tiny"], seed=[0], lr=[3e-3]),
                    two=dict(arch=["softmax"], task=["tiny"], seed=[0, 1], lr=[3e-3])))
    for edit in edits.values():
        edit(c)
    return c


def write(path: Path, c: dict):
    (path / "config.yaml").write_text(yaml.safe_dump(c))


def run_ids(path: Path, sweep: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "eigsweep.cli", "list", sweep], cwd=path, capture_output=True,
                         text=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src"))).stdout
    return out.split()


def test_partial_reruns(tmp_path):
    write(tmp_path, config())
    ids = {s: run_ids(tmp_path, s) for s in ("one", "two")}
    # `snakemake one` runs that sweep only
    snakemake(tmp_path, "-c2", "results/one/summary.nc")
    assert sorted(p.stem for p in (tmp_path / "results/one/runs").glob("*.nc")) == sorted(ids["one"])
    assert not (tmp_path / "results/two").exists()
    # `all` after it trains the other sweep only
    assert planned_trains(snakemake(tmp_path, "-n", "all")) == sorted(ids["two"])
    snakemake(tmp_path, "-c2", "results/two/summary.nc")

    # unrelated edits: resources, descriptions, another task preset, a new sweep outside `all`,
    # the executor, `all` itself - nothing to retrain, same run ids
    def unrelated(c):
        c["slurm"].update(time_min=999, mem_gb=64)
        c["sweeps"]["one"].update(description="edited", slurm=dict(qos="long"))
        c["tasks"]["other"] = dict(name="mqar", vocab_size=64, seq_len=32, num_kv_pairs=4)
        c["sweeps"]["three"] = dict(arch=["mamba2"], task=["other"])
        c["executor"] = "slurm"
    write(tmp_path, config(u=unrelated))
    assert planned_trains(snakemake(tmp_path, "-n", "results/one/summary.nc", "results/two/summary.nc")) == []
    assert {s: run_ids(tmp_path, s) for s in ("one", "two")} == ids

    # editing one sweep's settings retrains exactly that sweep's runs, for the changed parameters
    def edit_two(c):
        c["sweeps"]["two"]["train"] = dict(steps=5)
    write(tmp_path, config(u=unrelated, e=edit_two))
    out = snakemake(tmp_path, "-n", "all")
    assert planned_trains(out) == sorted(ids["two"])
    reasons = train_reasons(out)
    assert sorted(reasons) == sorted(ids["two"])
    for reason in reasons.values():   # the params trigger, with the old and the new spec
        assert reason.startswith("Params have changed since last execution"), reason
        before, now = reason.split(" now: ")
        assert '"steps": 4' in before and '"steps": 5' in now, reason
    assert {s: run_ids(tmp_path, s) for s in ("one", "two")} == ids


def test_a_deleted_or_corrupt_run_file_is_retrained(tmp_path):
    write(tmp_path, config())
    summary = tmp_path / "results/one/summary.nc"
    runs = tmp_path / "results/one/runs"
    ids = run_ids(tmp_path, "one")
    # while `eigsweep sweep` holds its lock on these files, Snakemake refuses to start
    with snakemake_lock([runs / f"{r}.nc" for r in ids] + [summary], tmp_path):
        proc = snakemake(tmp_path, "-c1", "results/one/summary.nc", check=False)
    assert proc.returncode != 0 and "cannot be locked" in proc.stdout + proc.stderr
    assert not runs.exists() or not list(runs.glob("*.nc"))

    snakemake(tmp_path, "-c2", "results/one/summary.nc")
    mtime = {r: (runs / f"{r}.nc").stat().st_mtime_ns for r in ids}
    # delete one run file: the sweep target trains exactly that run again and re-aggregates
    (runs / f"{ids[1]}.nc").unlink()
    out = snakemake(tmp_path, "-n", "one")
    assert planned_trains(out) == [ids[1]] and "rule aggregate:" in out
    assert planned_trains(snakemake(tmp_path, "-n", "figures_one")) == []   # figures-only never trains
    out = snakemake(tmp_path, "-c2", "results/one/summary.nc")
    assert out.count("rule train:") == 1 and "rule aggregate:" in out
    assert (runs / f"{ids[0]}.nc").stat().st_mtime_ns == mtime[ids[0]]
    assert read_run_file(runs / f"{ids[1]}.nc").status.item() == "ok"
    assert sorted(xr.load_dataset(summary).run.values.tolist()) == sorted(ids)
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "results/one/summary.nc")

    # a corrupt run file: the aggregation moves it aside and fails with one line; the next call retrains it
    (runs / f"{ids[0]}.nc").write_bytes(b"garbage")
    proc = snakemake(tmp_path, "-c2", "results/one/summary.nc", check=False)
    out = proc.stdout + proc.stderr
    line = next(l for l in out.splitlines() if l.startswith("eigsweep: "))
    assert proc.returncode != 0 and f"{ids[0]}.nc: not a readable netCDF" in line, out
    assert f"moved it to {ids[0]}.nc.corrupt" in line and "rerun to retrain" in line
    assert (runs / f"{ids[0]}.nc.corrupt").read_bytes() == b"garbage"
    out = snakemake(tmp_path, "-c2", "results/one/summary.nc")
    assert out.count("rule train:") == 1
    assert read_run_file(runs / f"{ids[0]}.nc").status.item() == "ok"
    assert sorted(xr.load_dataset(summary).run.values.tolist()) == sorted(ids)


def test_a_dry_run_of_another_config_cannot_change_what_a_running_sweep_trains(tmp_path):
    """Issue 12.1: a sweep with steps 150 is running; a dry run of a config with steps 30 happens beside it
    before its job reads its spec; the job trains 150 steps. The job is held at its start by a `python`
    wrapper first on PATH until the dry run is over."""
    def sweep(steps):
        def edit(c):
            c["all"] = ["one"]
            c["sweeps"] = dict(one=dict(arch=["softmax"], task=["tiny"], seed=[0], lr=[3e-3],
                                        train=dict(steps=steps, eval_every=50)))
        return config(e=edit)
    write(tmp_path, sweep(150))
    (tmp_path / "c30.yaml").write_text(yaml.safe_dump(sweep(30)))
    gate = tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin/python"
    wrapper.write_text("#!/bin/sh\n"
                       f'case "$*" in *"eigsweep.cli job"*) touch {gate}/started;'
                       f" while [ ! -e {gate}/open ]; do sleep 0.1; done;; esac\n"
                       f'exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    running = subprocess.Popen([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-c1",
                                "results/one/summary.nc"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env=env(PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"))
    try:
        deadline = time.time() + 300
        while not (gate / "started").exists():
            assert running.poll() is None and time.time() < deadline, running.stdout.read()[-3000:]
            time.sleep(0.2)
        dry = snakemake(tmp_path, "-n", "results/one/summary.nc", "--configfile", "c30.yaml", check=False)
        assert '\\"steps\\": 30' in (tmp_path / ".snakemake/eigsweep/jobs").joinpath(
            max(os.listdir(tmp_path / ".snakemake/eigsweep/jobs"),
                key=lambda f: os.path.getmtime(tmp_path / ".snakemake/eigsweep/jobs" / f))).read_text(), dry.stdout
        (gate / "open").touch()
        out, _ = running.communicate(timeout=300)
    finally:
        (gate / "open").touch()
        if running.poll() is None:
            running.kill()
    assert running.returncode == 0, out[-3000:]
    (run_file,) = (tmp_path / "results/one/runs").glob("*.nc")
    ds = read_run_file(run_file)
    assert json.loads(ds.attrs["spec_json"])["train"]["steps"] == 150
    assert ds.steps_done.item() > 30 or ds.final_acc.item() >= 0.99   # 150 steps unless it met its target
    assert "Nothing to be done" in snakemake(tmp_path, "-n", "results/one/summary.nc")
