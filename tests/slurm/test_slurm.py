"""Integration tests on a real Slurm (`pytest -m slurm`; start one with tests/slurm/start_cluster.sh).

Every test writes a tiny config to a tmp dir, links the repository's `slurm` profile there and runs
`snakemake --profile slurm <target>` exactly as a user would. Sweep names carry a random token so that
`sacct` (which keeps earlier jobs) shows only this session's jobs.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
TOKEN = uuid.uuid4().hex[:6]
COMPARED = ("bin_fraction", "bin_fraction_std", "fine_count", "bin_fraction_during", "train_loss", "test_acc",
            "test_loss", "final_acc", "steps_done")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if shutil.which("sbatch") is None or subprocess.run(["scontrol", "ping"], capture_output=True).returncode:
        pytest.fail("no Slurm cluster answers; start one with tests/slurm/start_cluster.sh")


def env(**extra):
    e = dict(os.environ, **extra)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [e.get("PYTHONPATH")])])
    return e


def tiny_config(sweeps: dict, **top) -> dict:
    return dict(
        results_dir="results",
        defaults=dict(model=dict(d_model=16, n_layers=1, n_heads=1, d_state=4, head_dim=8, pos_embedding="learned"),
                      train=dict(steps=6, batch_size=8, warmup_steps=1, eval_every=3, device="cpu", threads=1,
                                 checkpoint_every=2),
                      eval=dict(n_samples=4, batch_size=16)),
        slurm=dict(partition="gpu", gpus=1, cpus=1, mem_gb=0.5, time_min=10),
        tasks=dict(tiny=dict(name="mqar", vocab_size=40, seq_len=16, num_kv_pairs=2, n_train=64, n_test=16)),
        sweeps={name: dict(dict(task=["tiny"], seed=[0], lr=[3e-3]), **s) for name, s in sweeps.items()},
        **top)


def workdir(path: Path, config: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "slurm").symlink_to(ROOT / "slurm")   # `--profile slurm` finds ./slurm, as from the repo root
    return path


def snakemake(cwd: Path, *args, profile=True, check=True, timeout=540):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
           *(["--profile", "slurm"] if profile else ["-c2"]), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env())
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def slurm_jobs(sweep: str) -> list[tuple[str, str, str]]:
    """(job id, name, state) of every Slurm job of a sweep, from sacct."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-S", "2000-01-01", "-o", "JobID,JobName%200,State"],
                         capture_output=True, text=True, check=True).stdout
    rows = [tuple(line.split("|")) for line in out.splitlines() if line]
    return [r for r in rows if r[1].startswith(f"eigsweep-{sweep}-")]


def listed_jobs(sweep: str, n: int, timeout: float = 60) -> list[tuple[str, str, str]]:
    """slurm_jobs once sacct lists n jobs of the sweep in any state (it learns of a job a little after the
    controller, more so on a loaded machine)."""
    deadline = time.time() + timeout
    while len(jobs := slurm_jobs(sweep)) < n:
        assert time.time() < deadline, f"sacct lists {len(jobs)} of {n} jobs of {sweep}"
        time.sleep(0.5)
    return jobs


def wait_for_jobs(sweep: str, n: int, timeout: float = 30) -> list[tuple[str, str, str]]:
    """slurm_jobs once sacct (which learns of jobs a little after the controller) lists n final ones (REQUEUED
    is not: the job is pending again)."""
    deadline = time.time() + timeout
    while True:
        jobs = slurm_jobs(sweep)
        if len(jobs) >= n and all(s.split()[0] not in ("PENDING", "RUNNING", "REQUEUED") for _, _, s in jobs) \
                or time.time() > deadline:
            return jobs
        time.sleep(1)


def queued(sweep: str) -> list[str]:
    """Names of the sweep's jobs still in the queue (squeue; finished ones are listed as such for MinJobAge)."""
    out = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED",
                          "-o", "%j"], capture_output=True, text=True, check=True).stdout
    return [n for n in out.split() if n.startswith(f"eigsweep-{sweep}-")]


def start_requeued_now(sweep: str) -> None:
    """Slurm holds a requeued job ~2 min (reason BeginTime): start the sweep's requeued jobs at once."""
    out = subprocess.run(["squeue", "-h", "-t", "PENDING", "-o", "%i|%j|%r"], capture_output=True, text=True).stdout
    for jid, name, reason in (line.split("|") for line in out.splitlines() if line.count("|") == 2):
        if name.startswith(f"eigsweep-{sweep}-") and reason == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={jid}", "StartTime=now"], capture_output=True)


def finish_beside_local_reference(proc, wd: Path, local_dir: Path, sweep: str, config: dict) -> None:
    """Train the uninterrupted local reference while the Slurm run ``proc`` finishes (its requeued jobs started
    at once, not after Slurm's ~2 min hold); both succeed with the same results."""
    stop = threading.Event()

    def release():
        while not stop.wait(1):
            start_requeued_now(sweep)
    threading.Thread(target=release, daemon=True).start()
    local = workdir(local_dir, config)
    snakemake(local, f"results/{sweep}/summary.nc", profile=False)
    try:
        out, _ = proc.communicate(timeout=400)
    finally:
        stop.set()
    assert proc.returncode == 0, out[-4000:]
    assert_same_results(run_files(wd, sweep), run_files(local, sweep))


def popen_snakemake(cwd: Path, *args, **kw):
    """Snakemake as a terminal starts it: SIGINT at its default (a suite launched in the background by a
    non-interactive shell, `.ci/run &`, passes SIGINT on ignored, and Python then installs no KeyboardInterrupt
    handler, so `kill -INT` of Snakemake would do nothing)."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--profile", "slurm", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=kw.pop("env", None) or env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def run_files(cwd: Path, sweep: str) -> dict[str, xr.Dataset]:
    files = sorted((cwd / "results" / sweep / "runs").glob("*.nc"))
    return {f.stem: xr.load_dataset(f) for f in files}


def assert_same_results(a: dict, b: dict):
    assert a.keys() == b.keys() and a
    for run in a:
        for v in COMPARED:
            np.testing.assert_array_equal(a[run][v].values, b[run][v].values, err_msg=f"{run}: {v}")


def test_sweep_on_slurm_matches_local_and_rerun_submits_nothing(tmp_path):
    sweep = f"grid_{TOKEN}"
    config = tiny_config({sweep: dict(arch=["softmax", "linear", "mamba2"])})
    wd = workdir(tmp_path / "slurm_run", config)
    out = snakemake(wd, sweep)
    jobs = wait_for_jobs(sweep, 3)
    assert len(jobs) == 3 and {s for _, _, s in jobs} == {"COMPLETED"}, jobs   # one Slurm job per run
    assert (wd / f"results/{sweep}/summary.nc").exists()
    assert "submitted Slurm job" in (wd / f"results/{sweep}/logs/softmax-tiny-none-s0-lr3.00e-03.log").read_text()

    local = workdir(tmp_path / "local_run", config)
    snakemake(local, f"results/{sweep}/summary.nc", profile=False)
    assert_same_results(run_files(wd, sweep), run_files(local, sweep))
    # the cluster's fake GPU was allocated (gres) but the runs are CPU runs: same device, same numbers
    assert {str(d.device.values) for d in run_files(wd, sweep).values()} == {"cpu"}

    again = snakemake(wd, sweep)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert len(slurm_jobs(sweep)) == 3, out.stdout[-2000:]   # nothing submitted


def test_failing_run_names_its_slurm_job_and_others_finish(tmp_path):
    good, bad = f"good_{TOKEN}", f"bad_{TOKEN}"
    config = tiny_config({good: dict(arch=["softmax", "linear"]),
                          bad: dict(arch=["softmax"], train=dict(device="cuda"))},   # no CUDA in the job
                         all=[good, bad])
    wd = workdir(tmp_path, config)
    proc = snakemake(wd, f"results/{good}/summary.nc", f"results/{bad}/summary.nc", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    (bad_job,) = wait_for_jobs(bad, 1)
    assert bad_job[2] == "COMPLETED" or bad_job[2] == "FAILED", bad_job   # submitit reports the error itself
    failed = f"Slurm job {bad_job[0]} for run softmax-tiny-none-s0-lr3.00e-03 failed (state {bad_job[2]})"
    assert out.count(failed) == 1, out[-4000:]   # the final state from sacct, printed once
    assert "no CUDA device is available" in out, out[-4000:]   # the tail of the job's log
    assert (wd / f"results/{good}/summary.nc").exists()   # keep-going: the other runs finished
    assert not (wd / f"results/{bad}/runs").exists() or not list((wd / f"results/{bad}/runs").glob("*.nc"))


def test_requeued_and_preempted_runs_resume_from_checkpoint(tmp_path):
    """One run requeued by `scontrol requeue` (killed, resumes from its last periodic checkpoint), one sent
    the preemption/timeout signal to its batch shell only (`scancel --signal=USR2 --batch`: forwarded to the
    step, checkpoint at the next step boundary, requeue); both match an uninterrupted local run."""
    sweep = f"requeue_{TOKEN}"
    config = tiny_config({sweep: dict(arch=["softmax", "linear"],
                                      # long enough that `scontrol requeue`'s SIGKILL (KillWait 5 s after its
                                      # SIGTERM, which submitit ignores) always comes before the run ends
                                      train=dict(steps=16000, eval_every=4000, checkpoint_every=100))})
    wd = workdir(tmp_path / "slurm_run", config)
    proc = popen_snakemake(wd, f"results/{sweep}/summary.nc")
    ckpts = {arch: wd / f"results/{sweep}/checkpoints/{arch}-tiny-none-s0-lr3.00e-03.pt"
             for arch in ("softmax", "linear")}
    deadline = time.time() + 180
    while not all(c.exists() for c in ckpts.values()):
        assert time.time() < deadline and proc.poll() is None, "training did not start"
        time.sleep(0.2)
    jobs = {name.split("-")[2]: jid for jid, name, _ in listed_jobs(sweep, 2)}
    subprocess.run(["scontrol", "requeue", jobs["softmax"]], check=True)
    subprocess.run(["scancel", "--signal=USR2", "--batch", jobs["linear"]], check=True)

    finish_beside_local_reference(proc, wd, tmp_path / "local_run", sweep, config)
    assert len(slurm_jobs(sweep)) == 2   # requeued in place: still one Slurm job per run
    assert {s for _, _, s in wait_for_jobs(sweep, 2)} == {"COMPLETED"}   # not FAILED
    for arch in ("softmax", "linear"):
        log = (wd / f"results/{sweep}/logs/{arch}-tiny-none-s0-lr3.00e-03.log").read_text()
        resumed = [line for line in log.splitlines() if "resumed" in line]
        assert resumed and " from step 0" not in resumed[0], log[-3000:]
        assert not ckpts[arch].exists()   # removed once the result is written
        assert sum("finished" in line and "Slurm job" in line for line in log.splitlines()) == 1, log[-3000:]
    log = (wd / f"results/{sweep}/logs/linear-tiny-none-s0-lr3.00e-03.log").read_text()
    assert "checkpointing at the next step boundary" in log and "stopped at step" in log, log[-3000:]


# Put on the jobs' PYTHONPATH as sitecustomize.py by the test below: holds a REQUEUED job (SLURM_RESTART_COUNT
# >= 1) where the test signals it, and logs one line when it is there. softmax: before training starts (the
# signal meets submitit's handler); linear: at the step it resumed from, the preemption signal deferred to the
# next step boundary. A first job (restart 0) and every other process are left alone.
HOLD_REQUEUED = """
import os
if os.environ.get("EIGSWEEP_TEST_HOLD") and int(os.environ.get("SLURM_RESTART_COUNT") or 0) >= 1:
    import logging
    import time

    from eigsweep.slurm import TrainJob

    defer = TrainJob._defer_signal

    def wait_until(done):
        deadline = time.monotonic() + 300   # the test signals within seconds; never hang a job for good
        while not done() and time.monotonic() < deadline:
            time.sleep(0.1)

    def held(self, trainer, state):
        log = logging.getLogger("eigsweep.test_hold")
        if trainer.spec.arch == "softmax":
            log.info("test hold: training not started")
            wait_until(lambda: False)
            defer(self, trainer, state)
        else:
            defer(self, trainer, state)
            log.info("test hold: at step %d", trainer.step)
            wait_until(lambda: trainer.stop_requested)

    TrainJob._defer_signal = held
"""


def wait_for_line(path: Path, text: str, proc, timeout: float = 180) -> str:
    """The first line of the file ``path`` containing ``text``, once it is there."""
    deadline = time.time() + timeout
    while True:
        lines = [line for line in (path.read_text().splitlines() if path.exists() else []) if text in line]
        if lines:
            return lines[0]
        assert time.time() < deadline and proc.poll() is None, f"no {text!r} in {path}"
        time.sleep(0.2)


def test_requeued_run_signalled_again_without_progress_is_not_requeued_and_names_time_min(tmp_path):
    """A time limit too short to make progress, as the cluster shows it: each run is sent the preemption signal
    while training (checkpoint, requeue: restart 1) and again once requeued, before it advanced a step
    (softmax: before training starts; linear: at the step it resumed from). Neither is requeued a second time:
    each Slurm job ends FAILED after exactly one requeue, Snakemake fails for both runs, the job logs one line
    `slurm time_min=10 min is too short … raise time_min` to the run's log, and Snakemake's output says it once,
    in the line saying that the run failed; the checkpoints stay."""
    sweep = f"noprogress_{TOKEN}"
    config = tiny_config({sweep: dict(arch=["softmax", "linear"],
                                      train=dict(steps=100000, eval_every=10000, checkpoint_every=100))})
    wd = workdir(tmp_path / "wd", config)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD_REQUEUED)
    proc = popen_snakemake(wd, f"results/{sweep}/summary.nc", env=env(PYTHONPATH=str(hook), EIGSWEEP_TEST_HOLD="1"))
    runs = {arch: f"{arch}-tiny-none-s0-lr3.00e-03" for arch in ("softmax", "linear")}
    logs = {arch: wd / f"results/{sweep}/logs/{run}.log" for arch, run in runs.items()}
    ckpts = {arch: wd / f"results/{sweep}/checkpoints/{run}.pt" for arch, run in runs.items()}
    stop = threading.Event()
    try:
        deadline = time.time() + 180
        while not all(c.exists() for c in ckpts.values()):   # both training (a periodic checkpoint written)
            assert time.time() < deadline and proc.poll() is None, "training did not start"
            time.sleep(0.2)
        jobs = {name.split("-")[2]: jid for jid, name, _ in listed_jobs(sweep, 2)}
        for jid in jobs.values():
            subprocess.run(["scancel", "--signal=USR2", "--batch", jid], check=True)
        stopped = {arch: int(re.search(r"stopped at step (\d+),", wait_for_line(logs[arch], "stopped at step",
                                                                                   proc))[1]) for arch in runs}

        def release():   # the requeued jobs start at once, not after Slurm's ~2 min hold
            while not stop.wait(1):
                start_requeued_now(sweep)
        threading.Thread(target=release, daemon=True).start()
        for arch, held in (("softmax", "test hold: training not started"),
                           ("linear", f"test hold: at step {stopped['linear']}")):
            wait_for_line(logs[arch], held, proc)
            assert f"Slurm job {jobs[arch]} (restart 1)" in logs[arch].read_text()
            subprocess.run(["scancel", "--signal=USR2", "--batch", jobs[arch]], check=True)
        out, _ = proc.communicate(timeout=180)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
        ids = [jid for jid, _, _ in slurm_jobs(sweep)]
        if ids and queued(sweep):
            subprocess.run(["scancel", *ids])

    assert proc.returncode != 0, out[-4000:]
    final = {name.split("-")[2]: state for _, name, state in wait_for_jobs(sweep, 2)}
    assert final == {"softmax": "FAILED", "linear": "FAILED"} and not queued(sweep), final
    for arch, jid in jobs.items():   # one requeue each (sacct -D lists every start of a requeued job)
        starts = subprocess.run(["sacct", "-X", "-D", "-n", "-P", "-j", jid, "-o", "State"], capture_output=True,
                                text=True, check=True).stdout.split()
        assert starts == ["REQUEUED", "FAILED"], (arch, starts)
        log = logs[arch].read_text()
        failed = f"Slurm job {jid} for run {runs[arch]} failed (state FAILED)"
        assert log.count(failed) == 1 and out.count(failed) == 1, out[-4000:]   # Snakemake fails for the run
        job_log = log.split(failed)[0]   # what the job logged (the waiter's message then quotes its last lines)
        assert "(restart 1)" in job_log and "(restart 2)" not in log, log[-3000:]
        where = "training not started" if arch == "softmax" else f"still at step {stopped[arch]} after resuming"
        (warned,) = [line for line in job_log.splitlines() if "slurm time_min=" in line]   # one line
        assert f" eigsweep.slurm {runs[arch]}: no progress since the last requeue ({where}): slurm time_min=10 min " \
            "is too short for this run" in warned and warned.endswith("not requeueing - raise time_min"), warned
        said = warned.split(f" eigsweep.slurm {runs[arch]}: ")[1]
        assert f"{failed}: {said}\n" in out and out.count("raise time_min") == 2, \
            out[-4000:]   # Snakemake's output says it once for each run, in the line saying that the run failed
        assert ckpts[arch].exists()   # nothing lost: a run with a longer time_min resumes from it


def test_any_way_snakemake_stops_cancels_its_jobs(tmp_path):
    """Ctrl-C in a terminal (SIGINT to the process group), `kill` and `kill -INT` of the Snakemake process
    alone (Snakemake would wait for its running jobs), and Snakemake killed outright (-9: the waiters'
    watchdog): each Snakemake's Slurm jobs, running or pending, leave the queue, cancelled."""
    ways = {"group_int": (True, signal.SIGINT), "term": (False, signal.SIGTERM), "int": (False, signal.SIGINT),
            "kill": (False, signal.SIGKILL)}
    procs = {}
    for way in ways:
        sweep = f"stop_{way}_{TOKEN}"
        config = tiny_config({sweep: dict(arch=["softmax"], train=dict(steps=100000, eval_every=10000))})
        procs[way] = (sweep, popen_snakemake(workdir(tmp_path / way, config), f"results/{sweep}/summary.nc",
                                             start_new_session=True))
    deadline = time.time() + 180
    while not all(queued(sweep) for sweep, _ in procs.values()):   # every job submitted (2 run, 2 pend)
        assert time.time() < deadline and all(p.poll() is None for _, p in procs.values()), "not submitted"
        time.sleep(1)
    time.sleep(3)   # the waiters are watching
    for way, (group, sig) in ways.items():
        pid = procs[way][1].pid
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    deadline = time.time() + 90
    while any(queued(sweep) for sweep, _ in procs.values()):
        assert time.time() < deadline, {w: queued(s) for w, (s, _) in procs.items()}
        time.sleep(1)
    took = 90 - (deadline - time.time())
    for way, (sweep, proc) in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0, (way, out[-2000:])
        jobs = wait_for_jobs(sweep, 1)
        assert {s.split()[0] for _, _, s in jobs} == {"CANCELLED"}, (way, jobs)
    print(f"all jobs left the queue {took:.0f} s after the signals")


def test_job_that_can_never_start_fails_at_once_naming_what_the_partition_lacks(tmp_path):
    """More CPUs than any node of the partition has: one line, the job cancelled, no endless wait. Then the
    repository's own config.yaml (cpus 8, mem_gb 32, one GPU) under `--profile slurm mqar_paper` on this cluster."""
    sweep = f"toobig_{TOKEN}"
    nproc = int(subprocess.run(["scontrol", "show", "node", "-o", "localhost"], capture_output=True, text=True,
                               check=True).stdout.split("CPUTot=")[1].split()[0])
    mem = f"mem_{TOKEN}"   # sbatch refuses this one outright ("Requested node configuration is not available")
    config = tiny_config({sweep: dict(arch=["softmax"], slurm=dict(cpus=nproc + 2)),
                          mem: dict(arch=["softmax"], slurm=dict(mem_gb=32))})
    wd = workdir(tmp_path / "toobig", config)
    t0 = time.time()
    proc = snakemake(wd, f"results/{sweep}/summary.nc", f"results/{mem}/summary.nc", check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and time.time() - t0 < 100, out[-3000:]
    (job,) = wait_for_jobs(sweep, 1)
    line = (f"Slurm job {job[0]} can never start in partition gpu (pending, reason PartitionConfig): it asks "
            f"cpus {nproc + 2} (its largest node has {nproc})")
    assert out.count(line) == 1, out[-3000:]
    assert job[2].split()[0] == "CANCELLED" and not queued(sweep)
    line = ("submitting to Slurm failed: the job can never start in partition gpu (refused by sbatch): it asks "
            "mem_gb 32 (its largest node has 7.81 GB)")
    assert out.count(line) == 1, out[-3000:]

    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "slurm").symlink_to(ROOT / "slurm")
    (demo / "c.yaml").write_text(f"results_dir: {demo}/results\n")
    shutil.copy(ROOT / "config.yaml", demo / "config.yaml")
    t0 = time.time()
    # the repository's paper sweep asks what this cluster lacks (the demo asks little and runs: next test)
    proc = snakemake(demo, "mqar_paper", "--configfile", str(demo / "c.yaml"), check=False, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and time.time() - t0 < 200, out[-3000:]
    from eigsweep.config import load_config, pack_size, sweep_runs
    from eigsweep.packs import group_packs
    paper = load_config(ROOT / "config.yaml")
    jobs = len(group_packs(sweep_runs(paper, "mqar_paper"), pack_size(paper, "mqar_paper")))
    assert out.count("can never start in partition gpu") == jobs, out[-3000:]   # each pack's job, once
    assert f"it asks cpus 8 (its largest node has {nproc}); mem_gb 32 (its largest node has 7.81 GB)" in out


def restart_slurmctld(down_s: float) -> None:
    """Stop slurmctld by the PID start_cluster.sh recorded, wait, start it again the same way (recorded)."""
    import psutil

    d = Path(os.environ.get("EIGSWEEP_SLURM_DIR", "/tmp/eigsweep-slurm"))
    pids = (d / "pids").read_text().split()
    (old,) = [p for p in pids if psutil.pid_exists(int(p)) and psutil.Process(int(p)).name() == "slurmctld"]
    os.kill(int(old), signal.SIGTERM)
    psutil.Process(int(old)).wait(30)
    time.sleep(down_s)
    with open(d / "log/slurmctld.out", "a") as log:
        new = subprocess.Popen(["/usr/sbin/slurmctld", "-D", "-i"], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True).pid
    (d / "pids").write_text("\n".join(str(new) if p == old else p for p in pids) + "\n")
    deadline = time.time() + 60
    while subprocess.run(["scontrol", "ping"], capture_output=True).returncode:
        assert time.time() < deadline, "slurmctld did not come back"
        time.sleep(0.5)


def test_flaky_sbatch_and_a_controller_outage_mid_sweep_are_retried(tmp_path):
    """A `sbatch` first on PATH that fails twice ("Unable to contact slurm controller") before delegating to
    the real one, and slurmctld stopped for 30 s while the sweep runs: every run is submitted and completes."""
    sweep = f"outage_{TOKEN}"
    fake = tmp_path / "bin/sbatch"
    fake.parent.mkdir()
    real = shutil.which("sbatch")
    fake.write_text(f"""#!/bin/bash
if [ "$(cat "{tmp_path}/failed" 2>/dev/null | wc -l)" -lt 2 ]; then
    echo x >> "{tmp_path}/failed"
    echo "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)" >&2
    exit 1
fi
echo x >> "{tmp_path}/delegated"
exec {real} "$@"
""")
    fake.chmod(0o755)
    config = tiny_config({sweep: dict(arch=["softmax", "linear", "mamba2"])})
    wd = workdir(tmp_path / "wd", config)
    proc = popen_snakemake(wd, f"results/{sweep}/summary.nc", "-j", "2",
                           env=env(PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}"))
    deadline = time.time() + 180
    while not slurm_jobs(sweep):   # the first run is in (after two failed sbatch calls)
        assert time.time() < deadline and proc.poll() is None, "nothing submitted"
        time.sleep(0.5)
    restart_slurmctld(down_s=30)   # the other runs' sbatch and every waiter's squeue meet the outage
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-4000:]
    lines = lambda name: len((tmp_path / name).read_text().split())   # noqa: E731
    assert lines("failed") >= 2 and lines("delegated") >= 3   # (two waiters may fail at once)
    logs = "".join(f.read_text() for f in (wd / f"results/{sweep}/logs").glob("*.log"))
    # a job whose step met the outage as it started fails at once and is submitted again (said in its log)
    again = logs.count("failed before it started")
    jobs = wait_for_jobs(sweep, 3 + again)
    states = sorted(s.split()[0] for _, _, s in jobs)
    assert len(jobs) == 3 + again and states.count("COMPLETED") == 3, (jobs, again)
    assert "Slurm unreachable (sbatch: error: Batch job submission failed: Unable to contact slurm controller" in logs
    assert len(run_files(wd, sweep)) == 3


def test_demo_runs_under_the_profile_on_the_test_cluster(tmp_path):
    """`snakemake --profile slurm demo` with the repository's config.yaml, given Slurm resources this 2-CPU,
    8 GB cluster has (a second --configfile, merged over config.yaml), and fewer steps to keep the suite lean."""
    (tmp_path / "slurm").symlink_to(ROOT / "slurm")
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(dict(
        results_dir=str(tmp_path / "results"),
        slurm=dict(partition="debug", gpus=0, cpus=1, mem_gb=1.5, time_min=30),
        sweeps=dict(demo=dict(train=dict(steps=40, eval_every=20, warmup_steps=5, spectrum_steps=[20]))))))
    snakemake(tmp_path, "demo", "--configfile", str(tmp_path / "small.yaml"), timeout=500)
    summary = xr.load_dataset(tmp_path / "results/demo/summary.nc")
    assert summary.sizes["run"] == 6 and set(summary.status.values.astype(str)) <= {"ok", "diverged"}
    assert (tmp_path / "results/demo/figures").is_dir() and any((tmp_path / "results/demo/figures").iterdir())


def test_a_pack_is_one_slurm_job_that_checkpoints_and_resumes_as_a_whole(tmp_path):
    """`pack: 2`: the sweep's two runs are one Snakemake job and ONE Slurm job; the preemption signal to its
    batch shell checkpoints the whole pack at the next step boundary and requeues it; the resumed pack's
    files equal an uninterrupted local pack's."""
    sweep = f"pack_{TOKEN}"
    config = tiny_config({sweep: dict(arch=["softmax"], seed=[0, 1], pack=2,
                                      train=dict(steps=2000, eval_every=500, checkpoint_every=100))})
    wd = workdir(tmp_path / "slurm_run", config)
    proc = popen_snakemake(wd, f"results/{sweep}/summary.nc")
    ckpt = wd / f"results/{sweep}/checkpoints/softmax-tiny-pack0.pt"
    deadline = time.time() + 180
    while not ckpt.exists():
        assert time.time() < deadline and proc.poll() is None, "training did not start"
        time.sleep(0.2)
    ((jid, name, _),) = listed_jobs(sweep, 1)
    assert name == f"eigsweep-{sweep}-softmax-tiny-pack0"
    subprocess.run(["scancel", "--signal=USR2", "--batch", jid], check=True)

    finish_beside_local_reference(proc, wd, tmp_path / "local_run", sweep, config)
    assert [s for _, _, s in wait_for_jobs(sweep, 1)] == ["COMPLETED"]   # requeued in place: one job
    log = (wd / f"results/{sweep}/logs/softmax-tiny-pack0.log").read_text()
    assert "checkpointing at the next step boundary" in log and "resumed pack" in log, log[-3000:]
    assert not ckpt.exists()
