"""The Slurm backend (eigsweep.slurm) without a cluster: sbatch options, the batch shell's USR2 forwarding,
the pending-reason explanation, retries with back-off (fake clock), finding and watching Snakemake, and the
job side: deferred preemption signal, resume = uninterrupted run, no requeue without progress."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import xarray as xr

import eigsweep.train as train_mod
from eigsweep import slurm
from eigsweep.slurm import (SlurmUnavailable, TrainJob, forward_usr2, parse_scontrol, retry, slurm_parameters,
                            snakemake_stopping, what_is_lacking)
from eigsweep.train import train_run

from test_training import tiny_spec

ROOT = Path(__file__).resolve().parents[1]
RES = dict(partition=None, gpus=0, cpus=2, mem_gb=8, time_min=60, account=None, qos=None, constraint=None,
           extra={}, max_requeues=3)

# captured on the integration suite's cluster (tests/slurm/start_cluster.sh): `scontrol show … -o`
JOB = ("JobId=4 JobName=wrap UserId=root(0) JobState=PENDING Reason=PartitionConfig Dependency=(null) Requeue=1 "
       "TimeLimit=UNLIMITED Partition=gpu ReqNodeList=(null) ExcNodeList=(null) NodeList= NumNodes=1 NumCPUs=8 "
       "NumTasks=1 CPUs/Task=8 TRES=cpu=8,mem=32G,node=1,billing=8,gres/gpu=1 MinCPUsNode=8 MinMemoryNode=32G "
       "MinTmpDiskNode=0 Features=(null) TresPerNode=gres:gpu:1")
PARTITION = ("PartitionName=gpu AllowGroups=ALL Default=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED Nodes=localhost "
             "State=UP TotalCPUs=2 TotalNodes=1 TRES=cpu=2,mem=8000M,node=1,billing=2,gres/gpu=2")
NODE = ("NodeName=localhost Arch=x86_64 CoresPerSocket=1  CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=0.50 "
        "AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:2 NodeAddr=127.0.0.1 RealMemory=8000 AllocMem=0")


def test_slurm_parameters_map_every_resource_to_sbatch_options():
    res = dict(RES, partition="gpu", gpus=2, cpus=8, mem_gb=1.5, time_min=90, account="lab", qos="high",
               constraint="a100", extra={"exclude": "n1"})
    p = slurm_parameters(res, "eigsweep-x")
    assert p["partition"] == "gpu" and p["gpus_per_node"] == 2 and p["cpus_per_task"] == 8
    assert p["mem"] == "1536M" and p["time"] == 90 and p["account"] == "lab" and p["qos"] == "high"
    assert p["constraint"] == "a100" and p["additional_parameters"] == {"exclude": "n1"}
    assert any(str(ROOT / "src") in line for line in p["setup"])
    none = slurm_parameters(RES, "eigsweep-x")   # no GPUs, no partition: let Slurm decide
    assert "gpus_per_node" not in none and "partition" not in none and "account" not in none
    from submitit.slurm.slurm import _make_sbatch_string
    script = forward_usr2(_make_sbatch_string(command="true", folder="/tmp/x", **p))
    for opt in ("--partition=gpu", "--gpus-per-node=2", "--cpus-per-task=8", "--mem=1536M", "--time=90",
                "--account=lab", "--qos=high", "--constraint=a100", "--exclude=n1", "--signal=USR2@90"):
        assert f"#SBATCH {opt}" in script, script


def test_batch_shell_forwards_usr2_to_the_step_and_keeps_its_exit_status(tmp_path):
    """`scancel --signal=USR2 --batch` signals only the batch shell: it must reach the task (via srun)."""
    from submitit.slurm.slurm import _make_sbatch_string
    (tmp_path / "srun").write_text(   # a stand-in srun: runs until USR2, records it, exits 7
        "#!/bin/bash\ntrap 'echo got-usr2 > \"$MARK\"; exit 7' USR2\necho started > \"$MARK\"\n"
        "for i in $(seq 300); do sleep 0.1; done\nexit 3\n")
    (tmp_path / "srun").chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(forward_usr2(_make_sbatch_string(command="python -c pass", folder=tmp_path, **slurm_parameters(RES, "x"))))
    mark = tmp_path / "mark"
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", MARK=str(mark))
    proc = subprocess.Popen(["bash", str(script)], env=env)
    deadline = time.time() + 20
    while not mark.exists():
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR2)   # to the batch shell only, as scancel --batch does
    assert proc.wait(timeout=20) == 7   # the shell survived the signal, srun got it, its status is the job's
    assert mark.read_text().strip() == "got-usr2"


def test_what_the_partition_lacks_names_each_resource_in_config_words():
    (job,), (part,), nodes = parse_scontrol(JOB), parse_scontrol(PARTITION), parse_scontrol(NODE)
    assert job["MinMemoryNode"] == "32G" and nodes[0]["CPUTot"] == "2"
    lacking = what_is_lacking(job, part, nodes)
    assert lacking == ["cpus 8 (its largest node has 2)", "mem_gb 32 (its largest node has 7.81 GB)"]
    three_gpus = dict(job, MinCPUsNode="1", NumCPUs="1", MinMemoryNode="1000M", TresPerNode="gres/gpu:3")
    assert what_is_lacking(three_gpus, part, nodes) == ["gpus 3 (its nodes have 2)"]
    fits = dict(job, MinCPUsNode="2", MinMemoryNode="8000M", TresPerNode="gres:gpu:2")
    assert what_is_lacking(fits, part, nodes) == []
    feat = dict(fits, Features="a100")
    assert what_is_lacking(feat, part, nodes) == ["constraint a100 (its nodes have none)"]
    long = dict(fits, TimeLimit="2-00:00:00")
    assert what_is_lacking(long, dict(part, MaxTime="1-00:00:00"), nodes) == ["time_min 2880 (its MaxTime is 1-00:00:00)"]
    assert what_is_lacking(fits, part, []) == ["partition gpu has no nodes"]
    assert slurm._gpus("gpu:a100:4(S:0-1),shard:8") == 4 and slurm._gpus("(null)") == 0
    assert slurm._minutes("1-02:03:04") == 1440 + 123 + 1 and slurm._minutes("30") == 30


def test_explain_pending_asks_slurm_only_for_reasons_that_never_clear(monkeypatch):
    calls = []

    def fake(*args):
        calls.append(args)
        return {"job": JOB, "partition": PARTITION, "node": NODE}[args[2]]
    monkeypatch.setattr(slurm, "slurm_command", fake)
    for transient in ("Resources", "Priority", "BeginTime", "QOSGrpCpuLimit"):
        assert slurm.explain_pending("4", transient, 10) is None
    assert calls == []
    line = slurm.explain_pending("4", "PartitionConfig", 10)
    assert line.startswith("Slurm job 4 can never start in partition gpu (pending, reason PartitionConfig): it asks "
                           "cpus 8 (its largest node has 2); mem_gb 32") and "\n" not in line
    # ReqNodeNotAvail: hopeless for a node that does not exist, not for one that is merely down
    ok = JOB.replace("MinCPUsNode=8", "MinCPUsNode=1").replace("MinMemoryNode=32G", "MinMemoryNode=1G")
    monkeypatch.setattr(slurm, "slurm_command", lambda *a: {"job": ok.replace("ReqNodeList=(null)", "ReqNodeList=localhost"),
                                                            "partition": PARTITION, "node": NODE}[a[2]])
    assert slurm.explain_pending("4", "ReqNodeNotAvail, UnavailableNodes:localhost", 10) is None
    monkeypatch.setattr(slurm, "slurm_command", lambda *a: {"job": ok.replace("ReqNodeList=(null)", "ReqNodeList=gpu9"),
                                                            "partition": PARTITION, "node": NODE}[a[2]])
    assert "it asks node(s) gpu9" in slurm.explain_pending("4", "ReqNodeNotAvail, UnavailableNodes:", 10)


def test_a_job_sbatch_refuses_is_explained_in_config_words(monkeypatch):
    debug = PARTITION.replace("PartitionName=gpu", "PartitionName=debug").replace("Default=NO", "Default=YES")
    monkeypatch.setattr(slurm, "slurm_command", lambda *a: {"partition": PARTITION + "\n" + debug,
                                                            "node": NODE}[a[2]])
    line = slurm.explain_rejected(dict(RES, mem_gb=32), 10)   # no partition: the default one
    assert line == ("the job can never start in partition debug (refused by sbatch): it asks mem_gb 32 (its largest "
                    "node has 7.81 GB). Lower the Slurm resources in config.yaml (`slurm:` or the sweep's `slurm:`)")


class FakeClock:
    def __init__(self):
        self.t, self.sleeps = 0.0, []

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s


def unreachable(times: int, then="ok"):
    n = {"calls": 0}

    def fn():
        n["calls"] += 1
        if n["calls"] <= times:
            raise subprocess.CalledProcessError(1, ["sbatch"], "", "sbatch: error: Batch job submission failed: "
                                                "Unable to contact slurm controller (connect failure)")
        return then
    return fn, n


def test_retry_backs_off_while_the_controller_is_unreachable():
    clock = FakeClock()
    fn, n = unreachable(6)
    assert retry(fn, "sbatch", 300, clock=clock, sleep=clock.sleep) == "ok"
    assert n["calls"] == 7 and clock.sleeps == [2, 4, 8, 16, 30, 30]   # doubling, capped at 30 s


def test_retry_gives_up_after_retry_s_with_one_line_naming_the_key():
    clock = FakeClock()
    fn, n = unreachable(10 ** 6)
    with pytest.raises(SlurmUnavailable) as e:
        retry(fn, "run x: sbatch", 60, clock=clock, sleep=clock.sleep)
    assert clock.t == 60 and sum(clock.sleeps) == 60 and clock.sleeps[-1] == 60 - (2 + 4 + 8 + 16)
    msg = str(e.value)
    assert "\n" not in msg and "retry_s=60" in msg and "Unable to contact slurm controller" in msg


def test_retry_does_not_retry_real_errors():
    clock = FakeClock()

    def bad():
        raise subprocess.CalledProcessError(1, ["sbatch"], "", "sbatch: error: Invalid partition name specified")
    with pytest.raises(subprocess.CalledProcessError):
        retry(bad, "sbatch", 300, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_snakemake_is_found_among_the_ancestors(tmp_path):
    """The waiter runs under `bash -c '… .snakemake/ …'` under Snakemake: the shell is skipped."""
    fake = tmp_path / "snakemake"   # stands in for Snakemake: starts a shell that starts the waiter
    fake.write_text(f"#!{sys.executable}\nimport subprocess, os\nprint(os.getpid(), flush=True)\n"
                    f"subprocess.run(['bash', '-c', 'cd .snakemake/x 2>/dev/null; {sys.executable} -c \""
                    f"from eigsweep.slurm import snakemake_process as s; print(s().pid)\"; true'])\n")
    fake.chmod(0o755)
    out = subprocess.run([str(fake)], capture_output=True, text=True, check=True, env=os.environ).stdout.split()
    assert out[0] == out[1], out
    assert slurm.snakemake_process() is None   # pytest is no Snakemake


def test_watchdog_sees_snakemake_told_to_stop_and_gone(tmp_path):
    log = tmp_path / "2026.snakemake.log"
    proc = subprocess.Popen([sys.executable, "-c", f"import time; f = open({str(log)!r}, 'a'); time.sleep(60)"])
    try:
        p, state = psutil.Process(proc.pid), {}
        deadline = time.time() + 20
        while not any(f.path == str(log) for f in p.open_files()):
            assert time.time() < deadline
            time.sleep(0.05)
        assert snakemake_stopping(p, state) is None and state["log"] == str(log)
        with open(log, "a") as f:
            f.write("[Sun Nov 29] Job 3 ...\n")
        assert snakemake_stopping(p, state) is None
        with open(log, "a") as f:
            f.write("Will exit after finishing currently running jobs (scheduler).\n")
        assert "is stopping ('Will exit after finishing" in snakemake_stopping(p, state)
    finally:
        proc.kill()
        proc.wait()
    assert snakemake_stopping(p, state) == f"Snakemake (PID {proc.pid}) is gone"


# ---------------------------------------------------------------------------------------------
# The job side

class FakeTrainer:
    def __init__(self, step):
        self.step = step


def test_no_requeue_without_progress_names_time_min(tmp_path, caplog):
    spec = tiny_spec()
    job = TrainJob(spec.to_json(), "o.nc", "c.pt", None, time_min=3)
    job._trainer = FakeTrainer(40)
    first = job.checkpoint().function   # first signal: requeue, remembering the step
    assert isinstance(first, TrainJob) and first.stopped_at == 40 and first.time_min == 3
    import pickle
    assert pickle.loads(pickle.dumps(job))._trainer is None   # the live trainer is never pickled
    first._trainer = FakeTrainer(55)
    assert first.checkpoint().function.stopped_at == 55   # progress: requeue again
    stuck = TrainJob(spec.to_json(), "o.nc", "c.pt", None, time_min=3, stopped_at=55)
    stuck._trainer = FakeTrainer(55)
    with caplog.at_level("WARNING"):
        assert stuck.checkpoint() is None   # submitit then ends the job: "not requeued"
    (rec,) = [r for r in caplog.records if "time_min" in r.getMessage()]
    assert "slurm time_min=3 min is too short" in rec.getMessage() and "\n" not in rec.getMessage()
    assert "(still at step 55 after resuming)" in rec.getMessage()
    # signalled before training started (data generation longer than the time limit)
    assert TrainJob(spec.to_json(), "o.nc", None).checkpoint().function.stopped_at == -1
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert TrainJob(spec.to_json(), "o.nc", None, time_min=3, stopped_at=-1).checkpoint() is None
    (rec,) = [r for r in caplog.records if "time_min" in r.getMessage()]
    assert ": no progress since the last requeue (training not started): slurm time_min=3 min" in rec.getMessage()


def test_failure_message_leads_with_the_no_progress_warning(tmp_path, caplog):
    """The waiter's message for a job that refused to requeue names time_min in its first line, whatever the
    length of submitit's traceback after it (the tail keeps the last 40 lines), and says it once."""
    stuck = TrainJob(tiny_spec().to_json(), "o.nc", None, time_min=3, stopped_at=-1)
    with caplog.at_level("WARNING"):
        stuck.checkpoint()
    (rec,) = caplog.records
    err = tmp_path / "7_0_log.err"
    err.write_text("\n".join([f"2026-01-01 00:00:00,000 eigsweep.slurm {rec.getMessage()}",
                              *[f"  traceback line {i}" for i in range(60)], "srun: error: task 0: Exited"]) + "\n")
    run = stuck.label()
    msg = slurm.failure_message("7", run, "FAILED", err, "")
    first, second, *tail = msg.splitlines()
    assert first == f"Slurm job 7 for run {run} failed (state FAILED): {rec.getMessage().removeprefix(run + ': ')}"
    assert first.endswith(": no progress since the last requeue (training not started): slurm time_min=3 min is too "
                          "short for this run (the job is signalled 90 s before its limit); not requeueing - raise "
                          "time_min")
    assert second == f"Last lines of its log {err}:" and len(tail) == 40 and tail[-1] == "srun: error: task 0: Exited"
    assert msg.count("raise time_min") == 1
    err.write_text(f"2026-01-01 00:00:00,000 eigsweep.slurm {rec.getMessage()}\nsrun: error\n")   # in the tail
    assert slurm.failure_message("7", "r", "FAILED", err, "").count("raise time_min") == 1
    err.write_text("RuntimeError: boom\n")   # any other failure: the state, then the tail
    assert slurm.failure_message("7", "r", "FAILED", err, "") == (f"Slurm job 7 for run r failed (state FAILED).\n"
                                                                  f"Last lines of its log {err}:\nRuntimeError: boom")
    assert slurm.failure_message("7", "r", "FAILED", tmp_path / "none.err", "from stdout").endswith(":\nfrom stdout")


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
    sigterm = signal.getsignal(signal.SIGTERM)
    spec = tiny_spec(steps=10, checkpoint_every=100)   # no periodic checkpoint before the signal
    ref = train_run(spec, tmp_path / "ref.nc")
    out, ckpt = tmp_path / "run.nc", tmp_path / "ckpt.pt"
    job = handler.job = TrainJob(spec.to_json(), str(out), str(ckpt), str(tmp_path / "run.log"))
    signal_mid_step(monkeypatch, at_call=6)   # during step 6 (index 5)
    with pytest.raises(SystemExit):
        job()
    assert len(calls) == 1 and calls[0]["frame"] is None   # called by us at the boundary, not mid-step
    assert calls[0]["sigterm"] is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) == sigterm   # as before
    assert torch.load(ckpt, weights_only=False)["step"] == 6 and not out.exists()
    monkeypatch.undo()
    delayed = calls[0]["delayed"]   # what submitit pickles for the requeued job
    assert isinstance(delayed.function, TrainJob) and delayed.function.out == str(out)
    assert delayed.function.stopped_at == 6
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


def test_a_job_requeued_after_its_run_finished_trains_nothing(tmp_path, monkeypatch):
    """`scontrol requeue` can land after the run wrote its result (its SIGTERM is ignored by submitit and the
    run ends within KillWait): the requeued job then returns the written result instead of training again;
    a result of another configuration is retrained."""
    spec = tiny_spec(steps=6)
    out = tmp_path / f"{spec.run_id}.nc"
    train_run(spec, out)
    written = out.stat().st_mtime_ns

    def no_training(*a, **kw):
        raise AssertionError("trained again")
    monkeypatch.setattr(train_mod, "train_run", no_training)
    assert TrainJob(spec.to_json(), str(out), None)() == dict(run=spec.run_id, status="ok", steps_done=6)
    assert out.stat().st_mtime_ns == written   # the file was left as it was
    other = tiny_spec(steps=8)   # same run id, another configuration: its file is stale
    with pytest.raises(AssertionError, match="trained again"):
        TrainJob(other.to_json(), str(out), None)()


def test_a_job_whose_step_could_not_reach_the_controller_is_told_apart(tmp_path):
    """srun failing to confirm the allocation during a controller outage: the job never started and is
    submitted again (run_slurm); a job that started (submitit's job environment logged) is never called that."""
    from types import SimpleNamespace

    def job(err: str, out: str = ""):
        (tmp_path / "e").write_text(err)
        (tmp_path / "o").write_text(out)
        return SimpleNamespace(paths=SimpleNamespace(stderr=tmp_path / "e", stdout=tmp_path / "o"))
    lost = ("srun: error: Unable to confirm allocation for job 31: Unable to contact slurm controller (connect "
            "failure)\nsrun: Check SLURM_JOB_ID environment variable. Expired or invalid job 31\n")
    assert "Unable to confirm allocation" in slurm.never_started_for_want_of_the_controller(job(lost))
    started = "submitit INFO (2026) - Starting with SlurmJobEnvironment(job_id=31, hostname=vm)\n" + lost
    assert slurm.never_started_for_want_of_the_controller(job(started)) is None
    assert slurm.never_started_for_want_of_the_controller(job("Traceback: ValueError: bad\n")) is None
    assert slurm.never_started_for_want_of_the_controller(job("", "")) is None


def test_the_waiter_never_imports_torch():
    """What the Snakemake job runs in slurm mode (slurm, config, submitit, pickling the job) is torch-free."""
    code = ("import sys, cloudpickle, submitit\n"
            "from eigsweep.config import load_config, sweep_runs\n"
            "from eigsweep.slurm import TrainJob, run_slurm, slurm_parameters, forward_usr2, snakemake_process\n"
            "r = sweep_runs(load_config('config.yaml'), 'demo')[0]\n"
            "slurm_parameters(dict(partition=None, gpus=1, cpus=1, mem_gb=1, time_min=5), 'x')\n"
            "cloudpickle.dumps(TrainJob(r.to_json(), 'o.nc', 'c.pt', 'l.log'))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))


def test_requeue_survives_the_sigterm_its_own_scontrol_requeue_brings():
    """`scontrol requeue` of the job itself makes Slurm send SIGTERM to each process of the job, the scontrol
    child included; eigsweep.slurm.requeue calls submitit's handler with SIGTERM ignored, so that child (here a
    shell that signals itself as Slurm would, then answers) survives and the handler sees it succeed (CI saw
    `Command '['scontrol', 'requeue', '8']' died with SIGTERM`, failing a job that had been requeued)."""
    child = ("import signal, subprocess, sys\n"
             "from eigsweep.slurm import requeue\n"
             "def handler(signum, frame):\n"
             "    subprocess.check_call(['sh', '-c', 'kill -TERM $$; echo answered'])\n"
             "signal.signal(signal.SIGTERM, lambda *a: None)   # as submitit: a Python handler, reset by exec\n"
             "requeue(handler, signal.SIGUSR2, None) if sys.argv[1] == 'requeue' else handler(signal.SIGUSR2, None)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    fixed = subprocess.run([sys.executable, "-c", child, "requeue"], capture_output=True, text=True, env=env)
    assert fixed.returncode == 0 and fixed.stdout == "answered\n", fixed.stderr
    plain = subprocess.run([sys.executable, "-c", child, "plain"], capture_output=True, text=True, env=env)
    assert plain.returncode == 1 and "died with <Signals.SIGTERM: 15>" in plain.stderr, plain.stderr


def test_a_signal_before_training_starts_reaches_submitit_with_sigterm_ignored(tmp_path, fake_submitit_handler):
    """From the job's start (before the run's trainer exists: data, model, compile) the preemption signal goes to
    submitit's handler through requeue: checkpoint() is asked (no trainer yet: requeue the same job, to resume
    from the last periodic checkpoint), SIGTERM is ignored while it requeues, and its disposition is back after."""
    handler, calls = fake_submitit_handler
    sigterm = signal.getsignal(signal.SIGTERM)
    job = handler.job = TrainJob(tiny_spec(steps=10).to_json(), str(tmp_path / "run.nc"), None)
    state = job._guard_signal()
    assert state == dict(handler=handler, signum=signal.SIGUSR2)
    with pytest.raises(SystemExit):
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(1)   # the handler runs at the next bytecode boundary
    (call,) = calls
    assert call["sigterm"] is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) == sigterm
    assert call["delayed"].function.stopped_at == -1 and call["delayed"].function.out == job.out
