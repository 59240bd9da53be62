"""The Slurm backend without a cluster: resources, sbatch options, the profile, the waiter's imports, and the
deferred preemption signal (checkpoint at a step boundary, requeue, resume = uninterrupted run)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

import eigsweep.train as train_mod
from eigsweep.config import ConfigError, validate_config
from eigsweep.launch import DEFAULT_SLURM, TrainJob, slurm_parameters, slurm_resources
from eigsweep.train import train_run

from test_training import tiny_spec

ROOT = Path(__file__).resolve().parents[1]


def test_slurm_resources_defaults_config_and_sweep_overrides():
    config = dict(slurm=dict(partition="gpu", gpus=1, mem_gb=32, extra={"exclude": "n1", "nice": 5}),
                  sweeps=dict(a=dict(slurm=dict(time_min=720, qos="long", extra={"nice": 9})), b={}))
    a = slurm_resources(config, "a")
    assert a["partition"] == "gpu" and a["gpus"] == 1 and a["mem_gb"] == 32 and a["time_min"] == 720
    assert a["qos"] == "long" and a["cpus"] == DEFAULT_SLURM["cpus"]
    assert a["extra"] == {"exclude": "n1", "nice": 9}
    b = slurm_resources(config, "b")
    assert b["time_min"] == DEFAULT_SLURM["time_min"] and b["extra"] == {"exclude": "n1", "nice": 5}
    assert slurm_resources(dict(sweeps=dict(c={})), "c") == DEFAULT_SLURM


def test_slurm_parameters_map_every_resource_to_sbatch_options():
    res = dict(DEFAULT_SLURM, partition="gpu", gpus=2, cpus=8, mem_gb=1.5, time_min=90, account="lab",
               qos="high", constraint="a100", extra={"exclude": "n1"})
    p = slurm_parameters(res, "eigsweep-x")
    assert p["partition"] == "gpu" and p["gpus_per_node"] == 2 and p["cpus_per_task"] == 8
    assert p["mem"] == "1536M" and p["time"] == 90 and p["account"] == "lab" and p["qos"] == "high"
    assert p["constraint"] == "a100" and p["additional_parameters"] == {"exclude": "n1"}
    assert any(str(ROOT / "src") in line for line in p["setup"])
    none = slurm_parameters(DEFAULT_SLURM, "eigsweep-x")   # no GPUs, no partition: let Slurm decide
    assert "gpus_per_node" not in none and "partition" not in none and "account" not in none
    # the sbatch script submitit writes from them
    from submitit.slurm.slurm import _make_sbatch_string
    script = _make_sbatch_string(command="true", folder="/tmp/x", **{k: v for k, v in p.items()})
    for opt in ("--partition=gpu", "--gpus-per-node=2", "--cpus-per-task=8", "--mem=1536M", "--time=90",
                "--account=lab", "--qos=high", "--constraint=a100", "--exclude=n1", "--signal=USR2@90"):
        assert f"#SBATCH {opt}" in script, script


def test_executor_key_is_validated():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    validate_config(dict(config, executor="slurm"))
    validate_config(dict(config, executor="local"))
    with pytest.raises(ConfigError, match="executor"):
        validate_config(dict(config, executor="pbs"))


def test_profile_is_found_by_name_from_the_repo_root(tmp_path):
    profile = yaml.safe_load((ROOT / "slurm/config.yaml").read_text())
    assert "executor=slurm" in profile["config"] and profile["jobs"] >= 1
    (tmp_path / "c.yaml").write_text(f"results_dir: {tmp_path}/results\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "demo", "--configfile",
                           str(tmp_path / "c.yaml")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Using profile slurm" in out and "train" in out


def test_the_waiter_never_imports_torch():
    """What the Snakemake job runs in slurm mode (launch, config, submitit, pickling the job) is torch-free."""
    code = ("import sys, cloudpickle, submitit\n"
            "from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob\n"
            "from eigsweep.config import load_config, sweep_runs\n"
            "from eigsweep.launch import TrainJob, run_job, run_slurm, slurm_parameters, slurm_resources\n"
            "c = load_config('config.yaml'); r = sweep_runs(c, 'demo')[0]\n"
            "slurm_parameters(slurm_resources(c, 'demo'), 'x')\n"
            "cloudpickle.dumps(TrainJob(r.to_json(), 'o.nc', 'c.pt', 'l.log'))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))


@pytest.fixture
def fake_submitit_handler():
    """Stands in for submitit's SIGUSR2 handler in a Slurm job: call checkpoint(), 'requeue', exit."""
    calls = []

    def handler(signum, frame):
        calls.append(dict(frame=frame, delayed=handler.job.checkpoint()))
        raise SystemExit(-1)
    old = signal.signal(signal.SIGUSR2, handler)
    yield handler, calls
    signal.signal(signal.SIGUSR2, old)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(0)


def signal_mid_step(monkeypatch, at_call: int, then=None):
    """Deliver SIGUSR2 in the middle of a training step (inside the loss computation of call ``at_call``)."""
    real, calls = train_mod.loss_fn, {"n": 0}

    def loss(logits, y):
        calls["n"] += 1
        if calls["n"] == at_call:
            os.kill(os.getpid(), signal.SIGUSR2)
            if then:
                then()
        return real(logits, y)
    monkeypatch.setattr(train_mod, "loss_fn", loss)


def test_preemption_signal_checkpoints_at_the_next_step_boundary_and_resumes_exactly(
        tmp_path, monkeypatch, fake_submitit_handler):
    handler, calls = fake_submitit_handler
    spec = tiny_spec(steps=10, checkpoint_every=100)   # no periodic checkpoint before the signal
    ref = train_run(spec, tmp_path / "ref.nc")
    out, ckpt = tmp_path / "run.nc", tmp_path / "ckpt.pt"
    job = handler.job = TrainJob(spec.to_json(), str(out), str(ckpt), str(tmp_path / "run.log"))
    signal_mid_step(monkeypatch, at_call=6)   # during step 6 (index 5)
    with pytest.raises(SystemExit):
        job()
    assert len(calls) == 1 and calls[0]["frame"] is None   # called by us at the boundary, not mid-step
    assert torch.load(ckpt, weights_only=False)["step"] == 6 and not out.exists()
    monkeypatch.undo()
    delayed = calls[0]["delayed"]   # what submitit pickles for the requeued job
    assert isinstance(delayed.function, TrainJob) and delayed.function.out == str(out)
    assert delayed.result()["steps_done"] == 10
    res = xr.load_dataset(out)
    for v in ("train_loss", "bin_fraction", "test_acc", "fine_count"):
        np.testing.assert_array_equal(res[v].values, ref[v].values)
    assert not ckpt.exists()
    assert "resumed" in (tmp_path / "run.log").read_text()


def test_no_step_boundary_in_time_requeues_from_the_last_periodic_checkpoint(
        tmp_path, monkeypatch, fake_submitit_handler):
    handler, calls = fake_submitit_handler
    monkeypatch.setattr(TrainJob, "GRACE_S", 1)
    spec = tiny_spec(steps=10, checkpoint_every=4)
    out, ckpt = tmp_path / "run.nc", tmp_path / "ckpt.pt"
    job = handler.job = TrainJob(spec.to_json(), str(out), str(ckpt))
    signal_mid_step(monkeypatch, at_call=7, then=lambda: time.sleep(3))   # a step longer than the grace
    with pytest.raises(SystemExit):
        job()
    assert len(calls) == 1 and calls[0]["frame"] is not None   # the alarm, mid-step
    assert torch.load(ckpt, weights_only=False)["step"] == 4 and not out.exists()   # untouched periodic one
