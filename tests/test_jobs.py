"""The job layer without Snakemake: the content-addressed jobs file, checks before a job trains (writable
directories, locks), corrupt checkpoints, and each CLI subcommand's happy path and bad input."""
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import xarray as xr
import yaml

import eigsweep.train as train_mod
from eigsweep import cli
from eigsweep.config import ConfigError, validate_config
from eigsweep.jobs import (JOBS_FILE_MAX_AGE_S, JobError, load_checkpoint_or_none, read_job, run_job, runs_lock,
                           snakemake_lock, write_jobs_file)
from eigsweep.results import read_run_file
from eigsweep.train import train_run

from test_training import tiny_spec

ROOT = Path(__file__).resolve().parents[1]


def test_executor_key_is_validated():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate_config(dict(config, executor="slurm"))
    with pytest.raises(ConfigError, match="executor"):
        validate_config(dict(config, executor="pbs"))


def test_the_job_layer_never_imports_torch(tmp_path):
    """What the Snakefile imports and what a job runs before training (jobs file, checks, locks) is torch-free."""
    code = ("import sys\n"
            "from eigsweep.config import load_config, all_runs\n"
            "from eigsweep.jobs import write_jobs_file, read_job, check_writable, runs_lock\n"
            "c = load_config('config.yaml'); specs = {s: {r.run_id: r.to_json() for r in rs} "
            "for s, rs in all_runs(c).items()}\n"
            f"f = write_jobs_file(specs, c, {str(tmp_path)!r})\n"
            "r = next(iter(specs['demo'])); read_job(f, 'demo', r)\n"
            f"check_writable({str(tmp_path / 'runs/x.nc')!r})\n"
            f"with runs_lock({str(tmp_path / 'runs')!r}, exclusive=False): pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))


# ---------------------------------------------------------------------------------------------
# The jobs file

def specs(steps: int) -> dict:
    spec = tiny_spec(steps=steps)
    return {spec.sweep: {spec.run_id: spec.to_json()}}, spec


def test_jobs_file_is_content_addressed_and_never_rewritten(tmp_path):
    config = dict(executor="local", slurm=dict(cpus=4), sweeps=dict(t={}))
    (s150, spec150), (s30, _) = specs(150), specs(30)
    a = write_jobs_file(s150, config, tmp_path)
    inode, mtime_ns = os.stat(a).st_ino, os.stat(a).st_mtime_ns
    b = write_jobs_file(s30, config, tmp_path)          # another config: another file, `a` untouched
    assert a != b and Path(a).exists() and os.stat(a).st_ino == inode
    assert write_jobs_file(s150, config, tmp_path) == a and os.stat(a).st_ino == inode   # same content
    spec_json, executor, resources = read_job(a, spec150.sweep, spec150.run_id)
    assert spec_json == s150[spec150.sweep][spec150.run_id]   # the very string of the rule's params.spec
    assert json.loads(spec_json)["train"]["steps"] == 150
    assert executor == "local" and resources["cpus"] == 4
    assert os.stat(a).st_mtime_ns >= mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([Path(a).name, Path(b).name])   # no temp files


def test_old_jobs_files_are_removed(tmp_path):
    config = dict(sweeps=dict(t={}))
    old = Path(write_jobs_file(specs(30)[0], config, tmp_path))
    t = time.time() - JOBS_FILE_MAX_AGE_S - 10
    os.utime(old, (t, t))
    killed = tmp_path / ".abc.tmp"   # a write killed mid-way
    killed.write_text("{")
    os.utime(killed, (time.time() - 7200,) * 2)
    new = write_jobs_file(specs(150)[0], config, tmp_path)
    assert not old.exists() and not killed.exists() and Path(new).exists()


def test_read_job_rejects_a_changed_file_and_an_unknown_run(tmp_path):
    s, spec = specs(150)
    path = Path(write_jobs_file(s, dict(sweeps=dict(t={})), tmp_path))
    with pytest.raises(JobError, match="no run 'nope'"):
        read_job(path, spec.sweep, "nope")
    path.write_text(path.read_text().replace('\\"steps\\": 150', '\\"steps\\": 30'))
    with pytest.raises(JobError, match="does not match its hash"):
        read_job(path, spec.sweep, spec.run_id)
    with pytest.raises(JobError, match="unreadable"):
        read_job(tmp_path / "gone.json", spec.sweep, spec.run_id)


# ---------------------------------------------------------------------------------------------
# Before training

@contextmanager
def read_only(d: Path):
    """``d`` read-only: by its mode, or for root (who ignores modes) by a read-only bind mount."""
    if os.geteuid() != 0:
        d.chmod(0o555)
        try:
            yield
        finally:
            d.chmod(0o755)
        return
    if subprocess.run(["mount", "--bind", "-o", "ro", str(d), str(d)], capture_output=True).returncode:
        pytest.skip("running as root without permission to mount: cannot make a read-only directory")
    try:
        yield
    finally:
        subprocess.run(["umount", str(d)], check=True)


def no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("training started")
    monkeypatch.setattr(train_mod, "train_run", fail)


def test_read_only_runs_directory_stops_the_job_before_training(tmp_path, monkeypatch):
    no_training(monkeypatch)
    runs = tmp_path / "results/t/runs"
    runs.mkdir(parents=True)
    spec = tiny_spec()
    with read_only(runs), pytest.raises(JobError, match=f"cannot write to {runs}"):
        run_job(spec.to_json(), runs / f"{spec.run_id}.nc", tmp_path / "results/t/checkpoints/c.pt", None)
    with pytest.raises(JobError, match="executor"):
        run_job(spec.to_json(), runs / "x.nc", None, None, executor="pbs")


def test_a_job_refuses_while_eigsweep_sweep_holds_the_runs_directory(tmp_path, monkeypatch):
    no_training(monkeypatch)
    runs = tmp_path / "runs"
    spec = tiny_spec()
    with runs_lock(runs, exclusive=True), pytest.raises(JobError, match="in use by `eigsweep sweep`"):
        run_job(spec.to_json(), runs / f"{spec.run_id}.nc", None, None)
    with runs_lock(runs, exclusive=False), pytest.raises(JobError, match="in use by a training job"):
        with runs_lock(runs, exclusive=True):
            pass
    with runs_lock(runs, exclusive=False), runs_lock(runs, exclusive=False):   # jobs share it
        pass


def test_snakemake_lock_both_ways(tmp_path):
    out = tmp_path / "results/t/runs/a.nc"
    (tmp_path / ".snakemake/locks").mkdir(parents=True)
    (tmp_path / ".snakemake/locks/0.output.lock").write_text("results/t/runs/a.nc\n")   # a running Snakemake
    with pytest.raises(JobError, match="locked by a running Snakemake.*snakemake --unlock"):
        with snakemake_lock([out], tmp_path):
            pass
    (tmp_path / ".snakemake/locks/0.output.lock").unlink()
    with snakemake_lock([out], tmp_path):
        mine = list((tmp_path / ".snakemake/locks").glob("*.lock"))
        assert len(mine) == 1 and "results/t/runs/a.nc" in mine[0].read_text().splitlines()
    assert not list((tmp_path / ".snakemake/locks").glob("*.lock"))


# ---------------------------------------------------------------------------------------------
# Corrupt checkpoints

@pytest.mark.parametrize("corrupt", ["garbage", "truncated", "empty"])
def test_corrupt_checkpoint_is_moved_aside_and_the_run_starts_from_scratch(tmp_path, corrupt, caplog):
    spec = tiny_spec(steps=8, checkpoint_every=4)
    ckpt = tmp_path / "c.pt"
    torch.save(dict(config_hash=spec.config_hash(), step=4), ckpt)
    data = ckpt.read_bytes()
    ckpt.write_bytes({"garbage": b"\x80\x04garbage" * 50, "truncated": data[: len(data) // 2], "empty": b""}[corrupt])
    assert load_checkpoint_or_none(ckpt, "cpu", spec.config_hash()) is None
    assert not ckpt.exists() and (tmp_path / "c.pt.corrupt").exists()
    assert "is corrupt" in caplog.text and "from scratch" in caplog.text
    ckpt.write_bytes((tmp_path / "c.pt.corrupt").read_bytes())
    ds = train_run(spec, tmp_path / "r.nc", ckpt)   # the run is not blocked: it trains from step 0
    assert ds.steps_done.item() == 8 and len(ds.train_loss) == 8


def test_checkpoint_of_another_configuration_is_ignored(tmp_path):
    ckpt = tmp_path / "c.pt"
    torch.save(dict(config_hash="other", step=4), ckpt)
    assert load_checkpoint_or_none(ckpt, "cpu", "mine") is None and ckpt.exists()
    assert load_checkpoint_or_none(ckpt, "cpu", "other")["step"] == 4
    assert load_checkpoint_or_none(tmp_path / "none.pt") is None


# ---------------------------------------------------------------------------------------------
# The CLI

def tiny_config(path: Path) -> Path:
    c = dict(results_dir=str(path / "results"),
             defaults=dict(model=dict(d_model=16, n_layers=1, n_heads=1, d_state=4, head_dim=8,
                                      pos_embedding="learned"),
                           train=dict(steps=3, batch_size=8, warmup_steps=1, eval_every=3, device="cpu", threads=1),
                           eval=dict(n_samples=4, batch_size=16)),
             tasks=dict(tiny=dict(name="mqar", vocab_size=40, seq_len=16, num_kv_pairs=2, n_train=32, n_test=8)),
             sweeps=dict(one=dict(arch=["softmax", "linear"], task=["tiny"], seed=[0], lr=[3e-3])))
    (path / "config.yaml").write_text(yaml.safe_dump(c))
    return path / "config.yaml"


RUNS = ["softmax-tiny-none-s0-lr3.00e-03", "linear-tiny-none-s0-lr3.00e-03"]


def test_cli_help_names_only_commands_that_exist(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "{list,status,train,sweep,job}" in out
    assert "eigsweep aggregate" not in out and "eigsweep figures" not in out
    with pytest.raises(SystemExit):
        cli.main(["job", "--spec", "{}", "--out", "x.nc"])   # the removed branch


def test_cli_list(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    assert cli.main(["list", "--config", str(cfg), "one"]) == 0
    assert capsys.readouterr().out.split() == RUNS
    assert cli.main(["list", "--config", str(cfg), "nope"]) == 2
    assert "unknown sweep 'nope'; known: one" in capsys.readouterr().err
    assert cli.main(["list", "--config", str(tmp_path / "missing.yaml"), "one"]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_train(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    out = tmp_path / f"results/one/runs/{RUNS[0]}.nc"
    assert cli.main(["train", "--config", str(cfg), "--sweep", "one", "--run", RUNS[0], "--out", str(out)]) == 0
    assert read_run_file(out).steps_done.item() == 3
    assert cli.main(["train", "--config", str(cfg), "--sweep", "one", "--run", "nope", "--out", str(out)]) == 2
    assert "has no run 'nope'" in capsys.readouterr().err


def test_cli_job(tmp_path, capsys):
    s, spec = specs(5)
    jobs = write_jobs_file(s, dict(sweeps=dict(t={})), tmp_path / "jobs")
    out = tmp_path / f"runs/{spec.run_id}.nc"
    args = ["job", "--jobs-file", jobs, "--sweep", "t", "--out", str(out), "--log", str(tmp_path / "logs/j.log")]
    assert cli.main([*args, "--run", spec.run_id]) == 0
    assert read_run_file(out).steps_done.item() == 5
    assert (tmp_path / "logs/j.log").exists()
    assert cli.main([*args, "--run", "nope"]) == 1
    assert "has no run 'nope'" in capsys.readouterr().err


def test_cli_sweep_trains_missing_retrains_corrupt_and_respects_locks(tmp_path, monkeypatch, capsys):
    cfg = tiny_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "results/one/runs"
    assert cli.main(["sweep", "--config", str(cfg), "one"]) == 0
    summary = xr.load_dataset(tmp_path / "results/one/summary.nc")
    assert sorted(summary.run.values.tolist()) == sorted(RUNS)
    mtimes = {r: (runs / f"{r}.nc").stat().st_mtime_ns for r in RUNS}
    (runs / f"{RUNS[1]}.nc").write_bytes(b"garbage")                       # corrupt: moved aside, retrained
    (runs / f".{RUNS[1]}.nc.abc123.tmp").write_bytes(b"half written")      # a write killed mid-way
    assert cli.main(["sweep", "--config", str(cfg), "one"]) == 0
    assert (runs / f"{RUNS[0]}.nc").stat().st_mtime_ns == mtimes[RUNS[0]]   # done run not retrained
    assert read_run_file(runs / f"{RUNS[1]}.nc").steps_done.item() == 3
    assert (runs / f"{RUNS[1]}.nc.corrupt").read_bytes() == b"garbage"
    assert not list(runs.glob(".*.tmp"))
    assert not list((tmp_path / ".snakemake/locks").glob("*.lock"))       # lock released
    # a running Snakemake on these files, then a running training job: refused with one line, nothing trained
    (tmp_path / ".snakemake/locks/0.output.lock").write_text("results/one/summary.nc\n")
    assert cli.main(["sweep", "--config", str(cfg), "one"]) == 1
    assert "locked by a running Snakemake" in capsys.readouterr().err
    (tmp_path / ".snakemake/locks/0.output.lock").unlink()
    with runs_lock(runs, exclusive=False):
        assert cli.main(["sweep", "--config", str(cfg), "one"]) == 1
    assert "in use by a training job" in capsys.readouterr().err
    assert cli.main(["sweep", "--config", str(cfg), "nope"]) == 2


def test_a_run_another_sweep_trained_with_the_same_spec_is_reused_not_trained(tmp_path, monkeypatch, caplog):
    """Sweep b's baseline run is sweep a's run in all but the sweep's name: b's job copies a's result under b
    (sweep coordinate, spec, config_hash; reused_from names the source) and trains nothing; a run that differs
    in one setting, or a source whose stored hash is not its spec's, is trained."""
    import dataclasses

    from eigsweep.jobs import run_pack_job, stale_members

    a = dataclasses.replace(tiny_spec(), sweep="a")
    src = tmp_path / "results/a/runs" / f"{a.run_id}.nc"
    train_run(a, src)
    b = dataclasses.replace(a, sweep="b")
    out = tmp_path / "results/b/runs" / f"{b.run_id}.nc"
    no_training(monkeypatch)
    with caplog.at_level("INFO", logger="eigsweep.jobs"):
        assert run_job(b.to_json(), out, None, None) is not None
    assert "reused, not trained" in caplog.text
    got, orig = read_run_file(out), read_run_file(src)
    assert str(got.sweep.values) == "b" and got.attrs["config_hash"] == b.config_hash() != a.config_hash()
    assert str(got.config_hash.values) == b.config_hash() and got.attrs["reused_from"] == str(src)
    assert json.loads(got.attrs["spec_json"])["sweep"] == "b"
    xr.testing.assert_identical(got.bin_fraction, orig.bin_fraction.assign_coords(sweep="b"))
    xr.testing.assert_identical(got.train_loss, orig.train_loss.assign_coords(sweep="b"))
    assert stale_members([b], [out]) == []                                 # and it is now b's current file
    # one setting differs (the lr): no reuse, the pack trains it
    c = dataclasses.replace(b, lr=1e-2)
    out_c = tmp_path / "results/b/runs" / f"{c.run_id}.nc"
    assert stale_members([c], [out_c]) == [0] and not out_c.exists()
    # a source whose stored hash is not its spec's (edited by hand) is not trusted
    out.unlink()
    ds = read_run_file(src)
    ds.attrs["config_hash"] = "0" * 16
    ds.to_netcdf(src)
    monkeypatch.undo()   # training allowed again: this one must train
    run_pack_job([b.to_json()], [out], None, None, name="p")
    assert "reused_from" not in read_run_file(out).attrs and str(read_run_file(out).sweep.values) == "b"
