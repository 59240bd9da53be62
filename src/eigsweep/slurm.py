"""Train runs on Slurm: the job submitit runs (TrainJob) and the waiter that submits and watches it (run_slurm).

With ``executor: slurm`` each Snakemake train job (one run, or one pack of runs) is a *waiter*: it submits one
Slurm job through submitit, watches it and fails with the Slurm job id, its final state (from sacct) and the
tail of its log if it fails. The waiter never imports torch; only the Slurm job (``TrainJob.__call__``) does.
What it guards against:

- a job pending for a reason that can never clear (``PartitionConfig``, a resource no node of the partition
  has): one line naming what the partition lacks, and the job is cancelled;
- the controller being unreachable (``sbatch``/``squeue``/``sacct`` failing with a communication error):
  retried with back-off for ``retry_s`` seconds (Slurm resources key, default in eigsweep.config.Slurm); a job
  whose step could not start for the same reason (srun: "Unable to confirm allocation") is submitted again,
  within the same ``retry_s``;
- Snakemake stopping in any way (SIGINT/SIGTERM/SIGHUP to the waiter, Snakemake told to stop, Snakemake
  gone): the Slurm job is cancelled;
- ``scancel --signal=USR2 --batch``: the batch shell forwards the signal to the job step, which checkpoints
  and requeues (see TrainJob);
- a time limit too short to make progress: the job stops requeueing with one line naming ``time_min``;
- a job requeued after its run wrote its result (``scontrol requeue`` racing the end of the run): it trains
  nothing and returns the result.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil

from eigsweep.config import DEFAULT_SLURM, RunSpec
from eigsweep.jobs import setup_logging

log = logging.getLogger("eigsweep.slurm")

SLURM_POLL_S = 60       # longest pause between two status queries of one waiter (result file: every second)
TAIL_LINES = 40
NO_PROGRESS = "not requeueing - raise time_min"   # ends TrainJob.checkpoint's warning; the waiter looks for it
SHELLS = ("sh", "bash", "dash", "zsh")
# Pending reasons that never clear by waiting (an administrator would have to change the partition, or the
# job its request). ReqNodeNotAvail clears when nodes come back, so it counts only for nodes that do not exist
# or cannot hold the job.
HOPELESS = {"PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints", "InvalidAccount",
            "InvalidQOS", "QOSMaxCpuPerJobLimit", "QOSMaxGRESPerJob", "QOSMaxMemoryPerJob"}
# Errors of a Slurm command that mean "try again later" (controller or database unreachable or busy).
TRANSIENT = re.compile(r"Unable to contact slurm controller|Socket timed out|Connection refused|Zero Bytes were "
                       r"transmitted|temporarily unable|Communication connection failure|Transport endpoint|"
                       r"Connection timed out|Slurm backup controller in standby|Problem talking to the database|"
                       r"slurmdbd.*(not running|unavailable)", re.I)
# What Snakemake logs when told to stop (SIGTERM: finish running jobs; SIGINT: wait for them): a waiter
# cancels its job instead of letting Snakemake wait for it.
SNAKEMAKE_STOPPING = ("Will exit after finishing currently running jobs", "Terminating processes on user request")
# Job states after which nothing more happens (PREEMPTED only once squeue has forgotten the job: with
# PreemptMode=REQUEUE a preempted job is requeued)
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                "DEADLINE", "REVOKED", "SPECIAL_EXIT"}


# ---------------------------------------------------------------------------------------------
# sbatch options

def slurm_parameters(res: dict, job_name: str) -> dict:
    """submitit.SlurmExecutor parameters (sbatch options) for a sweep's resolved Slurm resources."""
    src = Path(__file__).resolve().parents[1]   # the job imports the same eigsweep as this process
    params = dict(job_name=job_name, time=int(res["time_min"]), cpus_per_task=int(res["cpus"]),
                  mem=f"{int(round(float(res['mem_gb']) * 1024))}M", ntasks_per_node=1,
                  setup=[f"export PYTHONPATH={src}${{PYTHONPATH:+:$PYTHONPATH}}"])
    if res.get("gpus"):
        params["gpus_per_node"] = int(res["gpus"])
    for key in ("partition", "account", "qos", "constraint"):
        if res.get(key):
            params[key] = str(res[key])
    if res.get("extra"):
        params["additional_parameters"] = {str(k): v for k, v in res["extra"].items()}
    return params


def forward_usr2(script: str) -> str:
    """Make submitit's sbatch script forward USR2 from the batch shell to the job step.

    ``scancel --signal=USR2 --batch`` (and ``--signal=B:USR2``) signal only the batch shell, which dies of it
    (the job ends FAILED) or, trapping it, runs the trap only after the foreground ``srun`` returns. So
    ``srun`` runs in the background and the shell waits for it, forwarding USR2 (srun passes it on to the
    task, where submitit/TrainJob checkpoint and requeue). The script's exit status stays srun's. The trap is
    set before srun starts (set after, a signal in between killed the shell: seen in CI under load); a signal
    that comes before srun's process id is known is forwarded a second after it is."""
    lines = script.splitlines()
    (i,) = [i for i, line in enumerate(lines) if line.startswith("srun ")]
    lines[i:i + 1] = ["EIGSWEEP_STEP= EIGSWEEP_PENDING=",
                      "trap 'if [ -n \"$EIGSWEEP_STEP\" ]; then kill -USR2 \"$EIGSWEEP_STEP\" 2>/dev/null; "
                      "else EIGSWEEP_PENDING=1; fi' USR2",
                      lines[i] + " &", "EIGSWEEP_STEP=$!",
                      'if [ -n "$EIGSWEEP_PENDING" ]; then sleep 1; kill -USR2 "$EIGSWEEP_STEP" 2>/dev/null; fi',
                      'while kill -0 "$EIGSWEEP_STEP" 2>/dev/null; do wait "$EIGSWEEP_STEP"; done',
                      'wait "$EIGSWEEP_STEP"']
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Slurm commands, retried while the controller is unreachable

class SlurmUnavailable(RuntimeError):
    pass


def retry(fn, what: str, retry_s: float, clock=time.monotonic, sleep=time.sleep, first_s: float = 2.0,
          max_s: float = 30.0):
    """Call ``fn()``; while it raises an error whose text matches TRANSIENT, call it again after 2, 4, 8, …
    (at most ``max_s``) seconds, for at most ``retry_s`` seconds in all; then raise SlurmUnavailable (one
    line). Other errors propagate at once."""
    start, pause, tries = clock(), first_s, 0
    while True:
        try:
            return fn()
        except (subprocess.CalledProcessError, RuntimeError, OSError) as e:
            text = " ".join(str(x) for x in (e, getattr(e, "stderr", None), getattr(e, "output", None)) if x)
            if not TRANSIENT.search(text):
                raise
            tries += 1
            left = retry_s - (clock() - start)
            if left <= 0:
                raise SlurmUnavailable(f"{what}: Slurm unreachable for {clock() - start:.0f} s ({tries} tries, "
                                       f"resources key retry_s={retry_s:g}): {_first_error_line(text)}") from None
            log.warning("%s: Slurm unreachable (%s); retrying in %.0f s", what, _first_error_line(text),
                        min(pause, left))
            sleep(min(pause, left))
            pause = min(2 * pause, max_s)


def _first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if "error" in line.lower()] or text.strip().splitlines()
    return (lines[0] if lines else text)[:300]


def slurm_command(*args: str) -> str:
    """Run a Slurm client command; its stdout, or CalledProcessError carrying its stderr."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args, proc.stdout, proc.stderr)
    return proc.stdout


def parse_scontrol(text: str) -> list[dict[str, str]]:
    """`scontrol show … -o` output: one dict per line of Key=Value pairs."""
    return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in text.splitlines() if "=" in line]


# ---------------------------------------------------------------------------------------------
# Pending reasons that never clear

def _mb(text: str) -> float:
    """Slurm memory ('32G', '1000M', '8000') in MB."""
    m = re.fullmatch(r"([\d.]+)([KMGTP]?)", text or "0")
    if not m:
        return 0.0
    return float(m.group(1)) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2, "P": 1024 ** 3}[m.group(2)]


def _gpus(gres: str) -> int:
    """GPUs in a gres string: 'gres:gpu:1', 'gres/gpu=2', 'gpu:a100:4(S:0-1)', 'gpu:2,shard:4' -> count."""
    total = 0
    for item in (gres or "").split(","):
        m = re.match(r"(?:gres[:/])?gpu(?::[^:=(]+)?[:=](\d+)", item.strip())
        if m:
            total += int(m.group(1))
    return total


def what_is_lacking(job: dict, partition: dict, nodes: list[dict]) -> list[str]:
    """What the job asks that no node of its partition has (or the partition forbids), in config words.
    ``job``/``partition``/``nodes``: parsed `scontrol show job|partition|node -o`."""
    out = []
    nodes = [n for n in nodes if n.get("NodeName")]
    if not nodes:
        return [f"partition {partition.get('PartitionName', '?')} has no nodes"]
    cpus = int(job.get("MinCPUsNode") or job.get("NumCPUs") or 0)
    have = max(int(n.get("CPUTot") or 0) for n in nodes)
    if cpus > have:
        out.append(f"cpus {cpus} (its largest node has {have})")
    mem = _mb(job.get("MinMemoryNode", "0"))
    have_mem = max(_mb(n.get("RealMemory", "0")) for n in nodes)
    if mem > have_mem:
        out.append(f"mem_gb {mem / 1024:g} (its largest node has {have_mem / 1024:.3g} GB)")
    gpus = _gpus(job.get("TresPerNode", ""))
    have_gpus = max(_gpus(n.get("Gres", "")) for n in nodes)
    if gpus > have_gpus:
        out.append(f"gpus {gpus} (its nodes have {have_gpus})")
    feats = job.get("Features", "(null)")
    if feats not in ("(null)", ""):
        avail = [set((n.get("AvailableFeatures") or "").split(",")) for n in nodes]
        wanted = set(re.split(r"[&|,\[\]*\d]+", feats)) - {""}
        if not any(wanted <= a for a in avail):
            out.append(f"constraint {feats} (its nodes have {sorted(set().union(*avail) - {'(null)'}) or 'none'})")
    if (partition.get("MaxTime") not in (None, "UNLIMITED") and job.get("TimeLimit") not in (None, "UNLIMITED")
            and _minutes(job["TimeLimit"]) > _minutes(partition["MaxTime"])):
        out.append(f"time_min {_minutes(job['TimeLimit'])} (its MaxTime is {partition['MaxTime']})")
    return out


def _minutes(t: str) -> int:
    """Slurm time ('1-02:03:04', '02:03:04', '03:04', '5') in minutes."""
    days, _, rest = t.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    h, m, s = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def _scontrol(retry_s: float, *args: str) -> list[dict[str, str]]:
    return parse_scontrol(retry(lambda: slurm_command("scontrol", "show", *args), f"scontrol show {args[0]}", retry_s))


def _partition_and_nodes(name: str | None, retry_s: float) -> tuple[dict, list[dict]]:
    """A partition (the default one for None) and its nodes, from scontrol."""
    parts = _scontrol(retry_s, "partition", "-o", *([name] if name else []))
    part = next((p for p in parts if name or p.get("Default") == "YES"), None) or {"PartitionName": name or "?"}
    nodes = _scontrol(retry_s, "node", "-o", part["Nodes"]) if part.get("Nodes") not in (None, "", "(null)") else []
    return part, nodes


def _advice(part: dict, reason: str, lacking: list[str]) -> str:
    what = "; ".join(lacking) if lacking else f"what the job asks ({reason})"
    return (f"can never start in partition {part.get('PartitionName', '?')} ({reason}): it asks {what}. Lower the "
            f"Slurm resources in config.yaml (`slurm:` or the sweep's `slurm:`)")


def explain_pending(job_id: str, reason: str, retry_s: float) -> str | None:
    """None if the job may still start; else one line saying what its partition lacks."""
    base = reason.split(",")[0].strip()
    if base not in HOPELESS and base != "ReqNodeNotAvail":
        return None
    (job,) = _scontrol(retry_s, "job", "-o", job_id) or [{}]
    part, nodes = _partition_and_nodes(job.get("Partition"), retry_s)
    lacking = what_is_lacking(job, part, nodes)
    if base == "ReqNodeNotAvail" and not lacking:
        known = {n["NodeName"] for n in nodes}
        missing = [n for n in (job.get("ReqNodeList") or "(null)").split(",") if n != "(null)" and n not in known]
        if not missing:
            return None   # its nodes exist and fit: they are down or reserved, which clears
        lacking = [f"node(s) {','.join(missing)}"]
    return f"Slurm job {job_id} " + _advice(part, f"pending, reason {base}", lacking)


def explain_rejected(resources: dict, retry_s: float) -> str:
    """Why sbatch refused a job at once ("Requested node configuration is not available"), in config words."""
    job = dict(MinCPUsNode=str(int(resources["cpus"])), MinMemoryNode=f"{float(resources['mem_gb']) * 1024:.0f}M",
               TresPerNode=f"gres:gpu:{int(resources.get('gpus') or 0)}",
               Features=resources.get("constraint") or "(null)", TimeLimit=str(int(resources["time_min"])))
    part, nodes = _partition_and_nodes(resources.get("partition"), retry_s)
    return "the job " + _advice(part, "refused by sbatch", what_is_lacking(job, part, nodes))


# ---------------------------------------------------------------------------------------------
# The Slurm job

class TrainJob:
    """The picklable callable submitit runs inside the Slurm job; `checkpoint` makes it requeueable.

    Preemption and time limits. Slurm signals the job (submitit asks for SIGUSR2 90 s before the time
    limit; preemption and `scancel --signal=USR2 [--batch]` use the same signal) and submitit's handler, on
    the main thread, interrupts whatever bytecode is running - possibly mid optimiser step, where the model,
    optimiser and step counter disagree. Saving the live Trainer from there could write a torn state. So:

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

    No progress: a requeued job that is signalled again at the step it resumed from (or before training
    starts) is not requeued again: its time limit (``time_min``) is too short to make progress.
    ``stopped_at`` is the step the previous job of this run stopped at (None for the first).
    """

    GRACE_S = 60

    def __init__(self, spec_json: str | list[str], out: str | list[str], checkpoint: str | None,
                 log_file: str | None = None, time_min: int | None = None, stopped_at: int | None = None,
                 name: str | None = None):
        """One run (``spec_json`` and ``out`` strings) or a pack (lists, trained by eigsweep.pack.train_pack,
        which checkpoints and resumes the whole pack; ``name``: the pack's id, for the logs)."""
        self.spec_json, self.out, self.checkpoint_path, self.log_file = spec_json, out, checkpoint, log_file
        self.time_min, self.stopped_at, self.name = time_min, stopped_at, name
        self._trainer = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_trainer"}

    def __setstate__(self, state):
        self.__dict__.update(dict(name=None), **state, _trainer=None)

    @property
    def is_pack(self) -> bool:
        return isinstance(self.spec_json, list)

    def label(self) -> str:
        if self.name or self.is_pack:
            return self.name or f"pack of {len(self.spec_json)}"
        return RunSpec.from_json(self.spec_json).run_id

    def __call__(self) -> dict:
        state = self._guard_signal()   # first: importing torch and checking the result files take seconds
        setup_logging(self.log_file)
        from eigsweep.train import Preempted, train_run

        job_id = os.environ.get("SLURM_JOB_ID", "?")
        log.info("%s: Slurm job %s (restart %s) on %s", self.label(), job_id,
                 os.environ.get("SLURM_RESTART_COUNT", "0"), os.uname().nodename)
        from eigsweep.jobs import stale_members
        from eigsweep.results import read_run_file

        specs = [RunSpec.from_json(s) for s in (self.spec_json if self.is_pack else [self.spec_json])]
        outs = self.out if self.is_pack else [self.out]
        if not stale_members(specs, outs):   # Slurm requeued the job after it had written every result
            log.info("%s: every result file is already written for this spec: nothing to train", self.label())
            return self.summary([read_run_file(o) for o in outs])
        on_start = lambda trainer: self._defer_signal(trainer, state)   # noqa: E731
        try:
            if self.is_pack:
                from eigsweep.pack import train_pack

                results = train_pack([RunSpec.from_json(s) for s in self.spec_json], self.out, self.checkpoint_path,
                                     on_start=on_start)
            else:
                results = [train_run(RunSpec.from_json(self.spec_json), self.out, self.checkpoint_path,
                                     on_start=on_start)]
        except Preempted as e:
            if "handler" not in state:
                raise
            log.info("%s; requeueing", e)
            signal.alarm(0)
            requeue(state["handler"], state["signum"], None)   # submitit: checkpoint(), requeue, exit
            raise   # not reached: submitit exits, or raises if it refuses to requeue
        return self.summary(results)

    def summary(self, results) -> dict:
        """What the job returns to the waiter: each run's id, status and steps."""
        summary = [dict(run=str(ds.run_id.values), status=str(ds.status.values), steps_done=int(ds.steps_done.values))
                   for ds in results]
        return dict(pack=self.name, runs=summary) if self.is_pack else summary[0]

    @staticmethod
    def _guard_signal() -> dict:
        """submitit's handler of the preemption signal, answering it through ``requeue`` until training starts
        (then _defer_signal takes over): {"handler", "signum"}, or {} when not under submitit."""
        from submitit.slurm.slurm import SlurmJobEnvironment

        signum = getattr(signal, f"SIG{SlurmJobEnvironment.USR_SIG}")
        handler = signal.getsignal(signum)
        if not callable(handler):   # not under submitit (e.g. called directly): nothing to guard or defer
            return {}
        signal.signal(signum, functools.partial(requeue, handler))
        return dict(handler=handler, signum=signum)

    def _defer_signal(self, trainer, state: dict) -> None:
        """From ``trainer``'s start (a pack of unpackable runs trains them one after another and calls this again):
        the signal sets its stop flag, and the loop checkpoints at the next step boundary."""
        self._trainer = trainer
        if not state:
            return
        handler, signum = state["handler"], state["signum"]

        def too_late(_, frame):
            if not trainer.done:
                log.warning("no step boundary within %d s of the signal: requeueing from the last periodic "
                            "checkpoint", TrainJob.GRACE_S)
                requeue(handler, signum, frame)

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
        """Called by submitit on the signal: the job to requeue, or None (no requeue) without progress."""
        import submitit

        step = self._trainer.step if self._trainer is not None else None
        if self.stopped_at is not None and (step is None or step <= self.stopped_at):
            where = "training not started" if step is None else f"still at step {step} after resuming"
            log.warning("%s: no progress since the last requeue (%s): slurm time_min=%s min is too short for this "
                        "run (the job is signalled 90 s before its limit); %s", self.label(), where, self.time_min,
                        NO_PROGRESS)
            return None
        return submitit.helpers.DelayedSubmission(TrainJob(
            self.spec_json, self.out, self.checkpoint_path, self.log_file, self.time_min,
            stopped_at=step if step is not None else -1, name=self.name))


def requeue(handler, signum: int, frame) -> None:
    """Call submitit's signal handler (checkpoint, ``scontrol requeue`` of this job, exit) with SIGTERM ignored
    meanwhile: requeueing the job makes Slurm send SIGTERM to each of its processes, the ``scontrol`` child among
    them, which could die before it returned and so fail a job that was requeued (seen in CI). A child inherits
    an ignored signal across exec (not a handler)."""
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        handler(signum, frame)
    finally:   # submitit exits (SystemExit) or raises when it does not requeue
        signal.signal(signal.SIGTERM, before)


# ---------------------------------------------------------------------------------------------
# The waiter

class SlurmJobFailed(SystemExit):
    """A run's Slurm job failed, could not start or was cancelled. Already logged (once): uncaught, the
    process exits with status 1 and prints nothing more."""

    def __init__(self, message: str):
        super().__init__(1)
        self.message = message

    def __str__(self):
        return self.message


def _read(path: Path) -> str:
    """A job log's text, "" when it is missing or unreadable."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, n: int = TAIL_LINES) -> str:
    return "\n".join(_read(path).splitlines()[-n:])


def failure_message(job_id: str, run: str, state: str, log_path: Path, fallback: str) -> str:
    """What the waiter says when the job failed: its final state and the last lines of its log (``fallback`` if
    the log is empty). A job that refused to requeue for want of progress (TrainJob.checkpoint) says so in the
    first line, as the tail may have lost that line behind submitit's traceback."""
    tail = _tail(log_path) or fallback
    why = [line for line in _read(log_path).splitlines() if NO_PROGRESS in line]
    if why:
        tail = "\n".join(line for line in tail.splitlines() if NO_PROGRESS not in line)
    first = f": {why[-1].split(' eigsweep.slurm ', 1)[-1].removeprefix(f'{run}: ')}" if why else "."
    return f"Slurm job {job_id} for run {run} failed (state {state}){first}\nLast lines of its log {log_path}:\n{tail}"


def snakemake_process() -> psutil.Process | None:
    """The nearest ancestor that is Snakemake (the job runs under a shell under it), or None."""
    for proc in psutil.Process().parents():
        try:
            argv = proc.cmdline()
        except psutil.Error:
            continue
        # a shell's -c string names .snakemake/ paths; Snakemake itself is `snakemake …` or `python -m snakemake …`
        if argv and Path(argv[0]).name not in SHELLS and any(Path(a).name == "snakemake" for a in argv[:3]):
            return proc
    return None


def snakemake_stopping(proc: psutil.Process, state: dict) -> str | None:
    """Why the Snakemake process ``proc`` is stopping (gone, or told to stop: it logs so), else None.
    ``state`` keeps the position reached in its log file between calls."""
    try:
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            return f"Snakemake (PID {proc.pid}) is gone"
        if "log" not in state:
            logs = [f.path for f in proc.open_files() if f.path.endswith(".snakemake.log")]
            state["log"], state["pos"] = (logs[0], 0) if logs else (None, 0)
    except psutil.NoSuchProcess:
        return f"Snakemake (PID {proc.pid}) is gone"
    except psutil.Error:
        state.setdefault("log", None)
    if state.get("log"):
        try:
            with open(state["log"], errors="replace") as f:
                f.seek(state["pos"])
                text = f.read()
                state["pos"] = f.tell()
        except OSError:
            return None
        for line in text.splitlines():
            if any(s in line for s in SNAKEMAKE_STOPPING):
                return f"Snakemake (PID {proc.pid}) is stopping ({line.strip()!r})"
    return None


def query_state(job_id: str, retry_s: float) -> tuple[str, str]:
    """(state, pending reason) from squeue; from sacct once squeue has forgotten the job."""
    try:
        out = retry(lambda: slurm_command("squeue", "-h", "-j", job_id, "-o", "%T|%r"), f"squeue -j {job_id}",
                    retry_s)
    except subprocess.CalledProcessError as e:
        if "Invalid job id" not in (e.stderr or ""):
            raise
        out = ""
    if out.strip():
        state, _, reason = out.strip().splitlines()[0].partition("|")
        return state, reason
    state = final_state(job_id, retry_s)
    return ("FAILED" if state == "PREEMPTED" else state), ""   # out of the queue: nothing more will happen


def final_state(job_id: str, retry_s: float, wait_s: float = 30) -> str:
    """The job's state in the accounting database (sacct), e.g. 'FAILED', 'CANCELLED' (without 'by …').
    The database learns a job's end a little after the controller: wait up to ``wait_s`` for a final state."""
    deadline = time.monotonic() + wait_s
    while True:
        out = retry(lambda: slurm_command("sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"),
                    f"sacct -j {job_id}", retry_s)
        states = [line.split()[0] for line in out.splitlines() if line.strip()]
        state = states[-1] if states else "UNKNOWN"
        if state in FINAL_STATES or state == "PREEMPTED" or time.monotonic() > deadline:
            return state
        time.sleep(1)


def wait_for(job, run: str, retry_s: float, cancel, fail):
    """Wait for a submitted job's result: the result file every second, the queue every 2, 4, … SLURM_POLL_S
    seconds; a job pending for a reason that can never clear is cancelled and fails (``fail``). Raises
    submitit's FailedJobError/UncompletedJobError when the job ends without a result."""
    from submitit.core.utils import UncompletedJobError

    pause, next_query, state, reported = 2.0, time.monotonic() + 2.0, "PENDING", None
    while not job.paths.result_pickle.exists():
        time.sleep(1)
        if time.monotonic() < next_query:
            continue
        state, reason = query_state(job.job_id, retry_s)
        if state in FINAL_STATES:
            for _ in range(10):   # the result file may show up late on a shared file system
                if job.paths.result_pickle.exists():
                    break
                time.sleep(1)
            break
        if state == "PENDING" and reason and reason != reported:
            reported = reason
            why = explain_pending(job.job_id, reason, retry_s)
            if why:
                cancel(None)
                fail(f"{run}: {why}; cancelled")
            if reason not in ("None", "Priority", "Resources", "BeginTime"):
                log.info("%s: Slurm job %s pending (reason %s)", run, job.job_id, reason)
        pause = min(2 * pause, SLURM_POLL_S)
        next_query = time.monotonic() + pause
    if job.paths.result_pickle.exists():
        return job.result()
    raise UncompletedJobError(f"the job ended in state {state} without writing a result")


def never_started_for_want_of_the_controller(job) -> str | None:
    """The controller error (one line) of a job whose step could not start because slurmctld was unreachable
    (srun: "Unable to confirm allocation … Unable to contact slurm controller"), None otherwise: a job that
    got as far as submitit's Python (which logs its job environment) is never called that."""
    err, out = _read(job.paths.stderr), _read(job.paths.stdout)
    if "JobEnvironment" in err + out or "(restart " in err + out:
        return None
    return _first_error_line(err) if TRANSIENT.search(err) else None


def run_slurm(spec_json: str | list[str], out: str | Path | list, checkpoint: str | Path | None,
              log_file: str | Path | None, resources: dict, folder: str | Path | None = None,
              name: str | None = None) -> dict:
    """Submit one run, or one pack (lists of specs and result files, ``name`` its id), to Slurm through
    submitit as ONE job and wait for it (the waiter side; no torch here).

    ``resources``: a sweep's resolved Slurm resources (partition, gpus, cpus, mem_gb, time_min, account, qos,
    constraint, extra, max_requeues, and ``retry_s``; defaults in eigsweep.config.Slurm). Interrupting the waiter
    (SIGINT/SIGTERM/SIGHUP), Snakemake stopping or disappearing cancels the Slurm job. Raises SlurmJobFailed
    (one message, logged once) if the job fails or can never start."""
    import submitit
    from submitit.core.utils import FailedJobError, UncompletedJobError

    pack = not isinstance(spec_json, str)
    spec = RunSpec.from_json(spec_json[0] if pack else spec_json)
    run = name or (f"pack-{spec.run_id}" if pack else spec.run_id)
    retry_s = float(resources.get("retry_s", DEFAULT_SLURM["retry_s"]))
    outs = [Path(o).resolve() for o in (out if pack else [out])]
    log_file = Path(log_file).resolve() if log_file else None
    if not folder:
        folder = (log_file.parent if log_file else outs[0].parent.parent / "logs") / "slurm" / run
    folder = Path(folder).resolve()
    setup_logging(log_file)

    class Executor(submitit.SlurmExecutor):
        def _make_submission_file_text(self, command, uid):
            return forward_usr2(super()._make_submission_file_text(command, uid))

    executor = Executor(folder=folder, max_num_timeout=int(resources["max_requeues"]))
    executor.update_parameters(**slurm_parameters(resources, f"eigsweep-{spec.sweep}-{run}"))
    job_fn = TrainJob(list(spec_json) if pack else spec_json, [str(o) for o in outs] if pack else str(outs[0]),
                      str(Path(checkpoint).resolve()) if checkpoint else None, str(log_file) if log_file else None,
                      time_min=int(resources["time_min"]), name=name if pack else None)

    holder: dict = {}
    done = threading.Event()

    def cancel(reason: str | None):
        job = holder.get("job")
        if job is not None and not done.is_set():
            done.set()
            if reason:
                log.warning("%s: %s; cancelling Slurm job %s", run, reason, job.job_id)
            try:
                retry(lambda: slurm_command("scancel", job.job_id), f"scancel {job.job_id}", min(retry_s, 60))
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log.warning("scancel %s failed: %s", job.job_id, e)

    def on_signal(signum, frame):
        holder["signal"] = signum
        if "job" in holder:
            cancel(f"got {signal.Signals(signum).name}")
            raise SystemExit(128 + signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    def fail(msg: str):
        log.error(msg)
        raise SlurmJobFailed(msg)

    snakemake = snakemake_process()
    if snakemake is None:
        log.info("%s: no Snakemake process above this one: not watching it", run)

    def watchdog():
        seen: dict = {}
        while not done.wait(2):
            why = snakemake_stopping(snakemake, seen)
            if why:
                cancel(why)
                os._exit(1)

    if snakemake is not None:
        threading.Thread(target=watchdog, daemon=True).start()

    first_lost = None   # when a job first failed to start for want of the controller
    while True:
        try:
            job = retry(lambda: executor.submit(job_fn), f"{run}: sbatch", retry_s)
        except (SlurmUnavailable, FailedJobError, subprocess.CalledProcessError) as e:
            why = _first_error_line(str(e))
            if re.search(r"node configuration is not available|can not be satisfied", str(e)):
                try:
                    why = explain_rejected(resources, retry_s)
                except Exception:  # noqa: BLE001 - keep sbatch's own words
                    pass
            fail(f"{run}: submitting to Slurm failed: {why}")
        holder["job"] = job
        log.info("%s: submitted Slurm job %s (%s); logs in %s", run, job.job_id,
                 ", ".join(f"{k}={v}" for k, v in resources.items() if v not in (None, {}, "")), folder)
        if "signal" in holder:   # interrupted while submitting
            on_signal(holder["signal"], None)
        try:
            result = wait_for(job, run, retry_s, cancel, fail)
            break
        except (FailedJobError, UncompletedJobError) as e:
            state = final_state(job.job_id, retry_s)   # never a stale state: ask the accounting database
            lost = never_started_for_want_of_the_controller(job)
            first_lost = first_lost or (time.monotonic() if lost else None)
            if lost and time.monotonic() - first_lost < retry_s:
                log.warning("%s: Slurm job %s failed before it started (%s); submitting it again", run, job.job_id,
                            lost)
                continue
            done.set()
            fail(failure_message(job.job_id, run, state, job.paths.stderr, _tail(job.paths.stdout) or str(e)[-4000:]))
        except SlurmUnavailable as e:
            done.set()
            fail(f"{run}: lost track of Slurm job {job.job_id} (left in the queue): {e}")
    done.set()
    log.info("%s: Slurm job %s finished: %s", run, job.job_id, result)
    return result
