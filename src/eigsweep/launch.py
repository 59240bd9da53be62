"""Run a train job where the workflow says: in this process (the embedded default) or on Slurm.

The backend is the config key ``executor`` (``local`` unless set; the ``slurm`` profile sets it to
``slurm``). With ``slurm`` the Snakemake job becomes a *waiter*: it submits one Slurm job through
submitit, waits for it and fails with the Slurm job id and the tail of the job's log if the job fails.
The waiter never imports torch; only the Slurm job (``TrainJob.__call__``) does.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
from pathlib import Path

from eigsweep.config import RunSpec

log = logging.getLogger("eigsweep.launch")

EXECUTORS = ("local", "slurm")
# Used for keys missing from config `slurm:` and the sweep's `slurm:`.
DEFAULT_SLURM = dict(partition=None, gpus=0, cpus=2, mem_gb=8, time_min=60, account=None, qos=None,
                     constraint=None, extra={}, max_requeues=3)
SLURM_POLL_S = 60   # longest pause between two `sacct` calls of one waiter (the result file is checked every second)
TAIL_LINES = 40


@functools.lru_cache(maxsize=None)
def _check(task_params_json: str) -> None:
    from eigsweep import registry

    params = json.loads(task_params_json)
    task = registry.task_class(params["name"])(**{k: v for k, v in params.items() if k != "name"})
    task.check_available()


def check_task_data(task_params: dict) -> None:
    """Raise (FileNotFoundError naming the expected path) if a task's data is missing. Cached per preset."""
    _check(json.dumps(task_params, sort_keys=True))


def _setup_logging(log_file: str | Path | None) -> None:
    handlers = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers, force=True)


def run_local(spec: RunSpec, out: str | Path, checkpoint: str | Path | None, log_file: str | Path | None = None):
    _setup_logging(log_file)
    from eigsweep.train import train_run

    train_run(spec, out, checkpoint)


def write_jobs_file(spec_json: dict[str, dict[str, str]], config: dict, path: str | Path) -> str:
    """Write what the train jobs of this invocation need, resolved from its config (--config overrides
    included): the executor, each sweep's Slurm resources and every run's spec, as JSON
    {"executor": …, "slurm": {sweep: resources}, "specs": {sweep: {run_id: spec}}}. Atomic, and only when
    it changed. ``spec_json``: {sweep: {run_id: RunSpec.to_json()}}, already serialised. Returns the path."""
    path = Path(path)
    specs = "{" + ",".join(f'{json.dumps(s)}:{{' + ",".join(f'{json.dumps(r)}:{j}' for r, j in runs.items())
                           + "}" for s, runs in spec_json.items()) + "}"
    head = json.dumps(dict(executor=config.get("executor", "local"),
                           slurm={s: slurm_resources(config, s) for s in spec_json}))
    text = head[:-1] + f', "specs": {specs}}}'

    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return str(path)


def run_job_from_file(jobs_file: str | Path, sweep: str, run: str, out, checkpoint, log_file) -> None:
    """The `train` rule's command (`eigsweep job --jobs-file …`): one run as the workflow resolved it."""
    jobs = json.loads(Path(jobs_file).read_text())
    spec = json.dumps(jobs["specs"][sweep][run], sort_keys=True)
    run_job(spec, out, checkpoint, log_file, jobs["executor"], jobs["slurm"][sweep])


def run_job(spec_json: str, out: str | Path, checkpoint: str | Path | None, log_file: str | Path | None,
            executor: str = "local", slurm: dict | None = None) -> None:
    """The `train` rule's entry point (`eigsweep job`): one run, here or on Slurm with resources ``slurm``
    (see slurm_resources)."""
    if executor == "local":
        run_local(RunSpec.from_json(spec_json), out, checkpoint, log_file)
    elif executor == "slurm":
        run_slurm(spec_json, out, checkpoint, log_file, slurm)
    else:
        raise ValueError(f"config key executor: {executor!r} is not one of {list(EXECUTORS)}")


# ---------------------------------------------------------------------------------------------
# Slurm

def slurm_resources(config: dict, sweep: str) -> dict:
    """Defaults, overridden by config `slurm:`, overridden by the sweep's `slurm:` (`extra` merged by key)."""
    top = config.get("slurm") or {}
    own = (config.get("sweeps", {}).get(sweep) or {}).get("slurm") or {}
    res = {**DEFAULT_SLURM, **top, **own}
    res["extra"] = {**DEFAULT_SLURM["extra"], **(top.get("extra") or {}), **(own.get("extra") or {})}
    return res


def slurm_parameters(res: dict, job_name: str) -> dict:
    """submitit.SlurmExecutor parameters (sbatch options) for the resources of `slurm_resources`."""
    src = Path(__file__).resolve().parents[1]   # the job imports the same eigsweep as this process
    params = dict(job_name=job_name, time=int(res["time_min"]), cpus_per_task=int(res["cpus"]),
                  mem=f"{int(round(float(res['mem_gb']) * 1024))}M", ntasks_per_node=1,
                  setup=[f"export PYTHONPATH={src}${{PYTHONPATH:+:$PYTHONPATH}}"])
    if res.get("gpus"):
        params["gpus_per_node"] = int(res["gpus"])
    for key, name in (("partition", "partition"), ("account", "account"), ("qos", "qos"),
                      ("constraint", "constraint")):
        if res.get(key):
            params[name] = str(res[key])
    if res.get("extra"):
        params["additional_parameters"] = {str(k): v for k, v in res["extra"].items()}
    return params


class TrainJob:
    """The picklable callable submitit runs inside the Slurm job; `checkpoint` makes it requeueable.

    Preemption and time limits. Slurm signals the job (submitit asks for SIGUSR2 90 s before the time
    limit; preemption uses the same signal) and submitit's handler, on the main thread, interrupts
    whatever bytecode is running - possibly mid optimiser step, where the model, optimiser and step
    counter disagree. Saving the live Trainer from there could write a torn state. So:

    1. our own handler replaces submitit's for that signal and only sets ``trainer.stop_requested``;
    2. the training loop sees the flag at the next step boundary, saves a checkpoint there (atomically:
       temporary file + rename) and raises ``Preempted``;
    3. we then call submitit's handler ourselves, now at a safe point: it calls ``checkpoint`` below
       (which saves nothing, the state is already on disk, and resubmits the same job), requeues the
       Slurm job and exits. The requeued job builds a Trainer that loads the checkpoint and continues
       with the same batches (the batch order is a function of (seed, step)), so the result equals an
       uninterrupted run's and is written once, atomically, by the run that finishes.

    If no step boundary comes within ``GRACE_S`` (a very long step), an alarm calls submitit's handler
    anyway; the live state is then not saved and the job resumes from the last periodic checkpoint
    (``train.checkpoint_every``), never from a torn one. A signal that arrives after the last step is
    ignored: finishing is quicker than requeueing. A job killed without a signal (``scontrol requeue``,
    node failure) also resumes from the last periodic checkpoint.
    """

    GRACE_S = 60

    def __init__(self, spec_json: str, out: str, checkpoint: str | None, log_file: str | None = None):
        self.spec_json, self.out, self.checkpoint_path, self.log_file = spec_json, out, checkpoint, log_file

    def __call__(self) -> dict:
        _setup_logging(self.log_file)
        from eigsweep.train import Preempted, train_run

        spec = RunSpec.from_json(self.spec_json)
        job_id = os.environ.get("SLURM_JOB_ID", "?")
        log.info("%s: Slurm job %s (restart %s) on %s", spec.run_id, job_id,
                 os.environ.get("SLURM_RESTART_COUNT", "0"), os.uname().nodename)
        state = {}
        try:
            ds = train_run(spec, self.out, self.checkpoint_path,
                           on_start=lambda trainer: self._defer_signal(trainer, state))
        except Preempted as e:
            if "handler" not in state:
                raise
            log.info("%s; requeueing", e)
            signal.alarm(0)
            state["handler"](state["signum"], None)   # submitit: checkpoint(), requeue, exit
            raise   # not reached: submitit exits, or raises if it refuses to requeue
        return dict(run=spec.run_id, status=str(ds.status.values), steps_done=int(ds.steps_done.values))

    @staticmethod
    def _defer_signal(trainer, state: dict) -> None:
        from submitit.slurm.slurm import SlurmJobEnvironment

        signum = getattr(signal, f"SIG{SlurmJobEnvironment.USR_SIG}")
        handler = signal.getsignal(signum)
        if not callable(handler):   # not under submitit (e.g. called directly): nothing to defer
            return
        state.update(handler=handler, signum=signum)

        def too_late(_, frame):
            if not trainer.done:
                log.warning("no step boundary within %d s of the signal: requeueing from the last periodic "
                            "checkpoint", TrainJob.GRACE_S)
                handler(signum, frame)

        def deferred(sig, frame):
            if trainer.done:
                log.info("signal %s after the last step: finishing instead of requeueing", sig)
                return
            log.info("signal %s: checkpointing at the next step boundary", sig)
            trainer.stop_requested = True
            signal.signal(signal.SIGALRM, too_late)
            signal.alarm(TrainJob.GRACE_S)

        signal.signal(signum, deferred)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.spec_json, self.out, self.checkpoint_path,
                                                           self.log_file))


class SlurmJobFailed(RuntimeError):
    pass


def _tail(path: Path, n: int = TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _snakemake_pid() -> int:
    """The nearest ancestor that is Snakemake (the script runs under a shell under it); else the parent."""
    pid = os.getppid()
    for _ in range(4):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            shell = Path(argv[0].decode(errors="replace")).name in ("sh", "bash", "dash", "zsh")
            if not shell and any(b"snakemake" in a for a in argv):   # a shell's -c string names .snakemake/
                return pid
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if pid <= 1:
            break
    return os.getppid()


def run_slurm(spec_json: str, out: str | Path, checkpoint: str | Path | None, log_file: str | Path | None,
              resources: dict, folder: str | Path | None = None) -> dict:
    """Submit one run to Slurm through submitit and wait for it (the waiter side; no torch here).

    Interrupting the waiter (SIGINT/SIGTERM/SIGHUP) or Snakemake disappearing cancels the Slurm job.
    """
    import submitit
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

    spec = json.loads(spec_json)
    run = RunSpec.from_json(spec_json).run_id
    out = Path(out).resolve()
    log_file = Path(log_file).resolve() if log_file else None
    folder = Path(folder) if folder else (log_file.parent if log_file else out.parent.parent / "logs") / "slurm" / run
    folder = folder.resolve()
    _setup_logging(log_file)
    SlurmJob.watcher = SlurmInfoWatcher(delay_s=SLURM_POLL_S)

    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(resources["max_requeues"]))
    executor.update_parameters(**slurm_parameters(resources, f"eigsweep-{spec['sweep']}-{run}"))
    job_fn = TrainJob(spec_json, str(out), str(Path(checkpoint).resolve()) if checkpoint else None,
                      str(log_file) if log_file else None)

    holder: dict = {}
    done = threading.Event()

    def cancel(reason: str):
        job = holder.get("job")
        if job is not None and not done.is_set():
            log.warning("%s: %s; cancelling Slurm job %s", run, reason, job.job_id)
            try:
                job.cancel(check=False)
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log.warning("scancel %s failed: %s", job.job_id, e)

    def on_signal(signum, frame):
        holder["signal"] = signum
        if "job" in holder:
            cancel(f"got {signal.Signals(signum).name}")
            raise SystemExit(128 + signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    job = executor.submit(job_fn)
    holder["job"] = job
    log.info("%s: submitted Slurm job %s (%s); logs in %s", run, job.job_id,
             ", ".join(f"{k}={v}" for k, v in resources.items() if v not in (None, {}, "")), folder)
    if "signal" in holder:   # interrupted while submitting
        on_signal(holder["signal"], None)

    parent = _snakemake_pid()

    def watchdog():
        while not done.wait(5):
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                cancel("Snakemake (PID %d) is gone" % parent)
                os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        result = job.result()
    except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as e:
        done.set()
        tail = _tail(job.paths.stderr) or _tail(job.paths.stdout) or str(e)[-4000:]
        msg = (f"Slurm job {job.job_id} for run {run} failed (state {job.state}).\n"
               f"Last lines of its log {job.paths.stderr}:\n{tail}")
        log.error(msg)
        raise SlurmJobFailed(msg) from None
    done.set()
    log.info("%s: Slurm job %s finished: %s", run, job.job_id, result)
    return result
