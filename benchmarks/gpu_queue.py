"""Train a sweep's packs on one lent GPU, a few at a time, across short command slices.

A lent GPU machine runs commands of at most 10 minutes but keeps detached processes and ignored files while it
is held. So `launch` starts a detached scheduler (setsid) that trains the sweep's packs with missing runs,
``--workers`` at a time, each in its own process (checkpointing every ``train.checkpoint_every`` steps and on
SIGTERM); `wait` watches them for one slice and copies the finished result files and the logs out; the next
slice's `launch` finds the scheduler still running (or resumes the packs from their checkpoints). Result
files are the workflow's: ``runs.tar.gz`` holds ``<sweep>/runs/<run>.nc``, so ``tar -xzf runs.tar.gz -C results``
puts them where Snakemake accepts them.

    python benchmarks/gpu_queue.py launch mqar_paper --workers 1 --archs mamba2 [--pack 2] [--only ID ...]
    python benchmarks/gpu_queue.py wait --seconds 540 --out $OUT
    python benchmarks/gpu_queue.py drain     # the running packs finish, no new one starts
    python benchmarks/gpu_queue.py launch … --start-within 600   # no pack starts after 10 min from now
    python benchmarks/gpu_queue.py stop      # the running packs checkpoint and stop
    python benchmarks/gpu_queue.py stop --only PACK   # that pack checkpoints and stops, the others go on

On a machine with several GPUs, ``--devices 0 1`` gives each pack process one of them (CUDA_VISIBLE_DEVICES, the
least busy; ``--workers`` defaults to one per device), and two sweeps train side by side with a state folder
each, one `wait` watching both: ``launch A --state S1 --devices 0``, ``launch B --state S2 --devices 1``,
``wait --state S1 S2`` (drain and stop take several too). Packs of schedulers whose state folders share a
parent (``/tmp/gq/a``, ``/tmp/gq/b``) count as busy for each other's choice of device.

The state folder (``--state``, default /tmp/eigsweep-gpu-state) must lie outside the repository: each command
copies the working tree afresh and removes what it does not know. ``--pack N`` regroups the runs in packs of
at most N (a pack's members write the same result files as their solo runs, so the grouping is free to choose;
the sweep's ``pack`` is the default). The machine is given back after 30 s without a command, and the detached
trainers with it: issue the next `wait` at once.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve()


def alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def packs_to_train(config_path: str, sweep: str, state: Path, archs: list[str] | None,
                   size: int | None = None, only: list[str] | None = None) -> dict[str, list]:
    """The packs with runs whose result file is missing or stale both in ``state``/runs and in the workflow's
    results folder (a run committed by an earlier session is done), {pack id: those runs}; ``archs``/``only``
    (pack ids): just these, in this order."""
    from eigsweep.config import load_config, pack_size, sweep_runs
    from eigsweep.jobs import stale_members
    from eigsweep.packs import group_packs

    config = load_config(config_path)
    runs = [r for r in sweep_runs(config, sweep) if not archs or r.arch in archs]
    packs = group_packs(runs, size or pack_size(config, sweep))
    if archs:   # in the order asked for
        packs = dict(sorted(packs.items(), key=lambda kv: archs.index(kv[1][0].arch)))
    if only:
        unknown = sorted(set(only) - set(packs))
        if unknown:
            raise SystemExit(f"gpu_queue: no pack {', '.join(unknown)} in sweep {sweep}; packs: {', '.join(packs)}")
        packs = {pid: packs[pid] for pid in only}
    results = Path(config_path).resolve().parent / config.get("results_dir", "results") / sweep / "runs"
    out = {}
    for pid, members in packs.items():
        left = [members[i] for i in stale_members(members, [state / "runs" / f"{m.run_id}.nc" for m in members])]
        left = [left[i] for i in stale_members(left, [results / f"{m.run_id}.nc" for m in left])]
        if left:
            out[pid] = left
    return out


def common(args) -> list[str]:
    """The options a scheduler passes on to its packs."""
    return ["--state", str(args.state[0]), "--config", args.config,
            *(["--archs", *args.archs] if args.archs else []),
            *(["--eager"] if args.eager else []), *(["--pack", str(args.pack_size)] if args.pack_size else []),
            *(["--only", *args.only] if args.only else [])]


def launch(args) -> None:
    state = Path(args.state[0])
    (state / "logs").mkdir(parents=True, exist_ok=True)
    if alive(state / "scheduler.pid"):
        print("scheduler already running")
        return
    (state / "drain").unlink(missing_ok=True)
    (state / "sweep").write_text(args.sweep)
    devices = ["--devices", *args.devices] if args.devices else []
    start_by = ["--start-by", str(time.time() + args.start_within)] if args.start_within is not None else []
    cmd = [sys.executable, str(HERE), "schedule", args.sweep, "--workers", str(workers(args)), *devices, *start_by,
           *common(args)]
    log = open(state / "logs" / "scheduler.log", "a")
    (state / "placed").unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (state / "scheduler.pid").write_text(str(proc.pid))
    # return once its first packs have their devices, so that a scheduler launched next counts them as busy
    for _ in range(600):
        if (state / "placed").exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    print(f"scheduler started (pid {proc.pid})")


def workers(args) -> int:
    return args.workers or len(args.devices or []) or 3


def least_busy(devices: list[str], busy: list[str]) -> str:
    """The device of ``devices`` that the fewest running packs (``busy``: their devices) use, the first on ties."""
    return min(devices, key=busy.count)


def busy_elsewhere(state: Path) -> list[str]:
    """The devices of the packs that other schedulers run now: those whose state folders lie beside ``state``
    (``--state /tmp/gq/a`` and ``/tmp/gq/b``), each running pack recorded as ``pids/<pack>.device``. Without
    this, two sweeps launched side by side each balanced only its own packs and could stack on one GPU."""
    if not state.parent.is_dir():
        return []
    return [f.read_text().strip() for other in state.parent.iterdir() if other.is_dir() and other != state
            for f in sorted((other / "pids").glob("*.device")) if alive(f.with_suffix(".pid"))]


def schedule(args) -> None:
    """Run the packs with missing runs, ``workers`` at a time, until none is left (or SIGTERM)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout, force=True)
    state = Path(args.state[0])
    queue = list(packs_to_train(args.config, args.sweep, state, args.archs, args.pack_size, args.only))
    (state / "pids").mkdir(exist_ok=True)
    logging.info("queue: %s", " ".join(queue))
    running: dict[str, subprocess.Popen] = {}
    on: dict[str, str] = {}                 # pack id -> its device
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    while (queue or running) and not stopping:
        for pid, proc in list(running.items()):
            if proc.poll() is not None:
                logging.info("pack %s ended with status %s", pid, proc.returncode)
                (state / "pids" / f"{pid}.pid").unlink(missing_ok=True)
                (state / "pids" / f"{pid}.device").unlink(missing_ok=True)
                del running[pid]
                on.pop(pid, None)
        if (state / "drain").exists():      # `drain`: start nothing more
            logging.info("drain: not starting %s", " ".join(queue) or "-")
            queue.clear()
            (state / "drain").unlink()
        if queue and args.start_by is not None and time.time() > args.start_by:   # `launch --start-within`
            logging.info("past the start deadline: not starting %s", " ".join(queue))
            queue.clear()
        while queue and len(running) < workers(args):
            pid = queue.pop(0)
            log = open(state / "logs" / f"{pid}.log", "a")
            env = dict(os.environ)
            if args.devices:
                busy = [*on.values(), *busy_elsewhere(state)]
                on[pid] = env["CUDA_VISIBLE_DEVICES"] = least_busy(args.devices, busy)
            running[pid] = subprocess.Popen([sys.executable, str(HERE), "pack", args.sweep, pid, *common(args)],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
            (state / "pids" / f"{pid}.pid").write_text(str(running[pid].pid))   # for `stop --only`
            if pid in on:
                (state / "pids" / f"{pid}.device").write_text(on[pid])      # for other schedulers' choice
            logging.info("pack %s started%s", pid, f" on device {on[pid]}" if pid in on else "")
        (state / "placed").touch()          # `launch` waits for the first placement
        time.sleep(2)
    for proc in running.values():   # stop: each pack checkpoints at its next step
        proc.terminate()
    for proc in running.values():
        proc.wait()


def pack(args) -> None:
    """Train one pack (its members with missing results), resuming from its checkpoint; SIGTERM checkpoints."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout,
                        force=True)
    from eigsweep.pack import train_pack
    from eigsweep.train import Preempted

    state = Path(args.state[0])
    members = packs_to_train(args.config, args.sweep, state, args.archs, args.pack_size, args.only).get(args.pack)
    if not members:
        return
    outs = [state / "runs" / f"{m.run_id}.nc" for m in members]
    ckpt = state / "checkpoints" / f"{args.pack}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)

    def on_start(p):
        signal.signal(signal.SIGTERM, lambda *_: setattr(p, "stop_requested", True))

    t0 = time.perf_counter()
    try:
        try:
            train_pack(members, outs, ckpt, on_start, compile=not args.eager)
        except (Preempted, KeyboardInterrupt):
            raise
        except Exception:   # noqa: BLE001 - a mixer torch.compile cannot trace: train it eagerly
            if args.eager:
                raise
            logging.exception("compiled pack failed; training it eagerly (from its checkpoint, if any)")
            left = packs_to_train(args.config, args.sweep, state, args.archs, args.pack_size, args.only)
            members = left.get(args.pack) or []
            outs = [state / "runs" / f"{m.run_id}.nc" for m in members]
            if members:
                train_pack(members, outs, ckpt, on_start, compile=False)
    except Preempted as e:
        logging.info("%s", e)
    logging.info("pack %s: %.0f s in this process", args.pack, time.perf_counter() - t0)


def pace(log_lines: list[str]) -> str:
    """From a pack log's evaluation lines ("<date> <time> … step N/T: …"), the steps per second since the
    process's first evaluation and the minutes left to step T ("" before two evaluations)."""
    points = []
    for ln in log_lines:
        m = re.match(r"(\S+ \S+) .* step (\d+)/(\d+):", ln)
        if m:
            t, step, total = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f"), int(m[2]), int(m[3])
            if points and step <= points[-1][1]:   # a new process resumed from a checkpoint: start again
                points = []
            points.append((t, step, total))
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return ""
    (t0, s0, _), (t1, s1, total) = points[0], points[-1]
    rate = (s1 - s0) / (t1 - t0).total_seconds()
    return f"{rate:.1f} steps/s, {(total - s1) / rate / 60:.1f} min to step {total}"


def wait(args) -> None:
    """Watch the schedulers of ``--state`` (one or more) for ``seconds`` or until all have ended (progress every
    minute), then copy the finished runs (``<sweep>/runs/<run>.nc``) and the logs to ``out``."""
    states, out = [Path(s) for s in args.state], Path(args.out)
    end, shown = time.time() + args.seconds, 0.0
    while True:
        over = time.time() >= end or not any(alive(s / "scheduler.pid") for s in states)
        if over or time.time() - shown >= 60:
            shown = time.time()
            print(time.strftime("%H:%M:%S"), flush=True)
            for state in states:
                print(*progress(state), sep="\n", flush=True)
        if over:
            break
        time.sleep(2)
    out.mkdir(parents=True, exist_ok=True)
    done = {}
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar, tarfile.open(out / "logs.tar.gz", "w:gz") as logs:
        for state in states:
            sweep = sweep_of(state)
            files = sorted((state / "runs").glob("*.nc"))
            for f in files:
                tar.add(f, arcname=f"{sweep}/runs/{f.name}")
            logs.add(state / "logs", arcname=f"{sweep}/logs")
            done[sweep] = [f.stem for f in files]
    (out / "done.json").write_text(json.dumps(done, indent=1, sort_keys=True))


def sweep_of(state: Path) -> str:
    return (state / "sweep").read_text().strip() if (state / "sweep").exists() else state.name


def progress(state: Path) -> list[str]:
    """One state folder's lines: runs done, the scheduler, each pack's last evaluation and its pace."""
    lines = [f"{sweep_of(state)}: {len(list((state / 'runs').glob('*.nc')))} runs done; scheduler",
             "running" if alive(state / "scheduler.pid") else "stopped"]
    for f in sorted((state / "logs").glob("*.log")):
        text = f.read_text(errors="replace").splitlines()
        last = [ln for ln in text if any(w in ln for w in (" acc ", "ended", "Error", "stopped", "reached"))]
        if last:
            lines.append(f"  {f.stem}: {last[-1][:300]}")
        rate = pace(text)
        if rate and "step" in (last or [""])[-1]:
            lines.append(f"    {rate}")
    return lines


def drain(args) -> None:
    """Let the running packs finish and start no new one; the scheduler then ends (and `wait` returns)."""
    for state in map(Path, args.state):
        if alive(state / "scheduler.pid"):
            (state / "drain").touch()
    print("draining")


def stop(args) -> None:
    """Stop the schedulers (their running packs checkpoint and stop) or, with ``--only``, just those packs (each
    checkpoints and ends; the scheduler goes on with its queue: `drain` first to start nothing new). Never kill
    a pack by matching command lines: the scheduler's own lists every pack id of ``--only``."""
    files = [state / "pids" / f"{p}.pid" for state in map(Path, args.state) for p in args.only] if args.only \
        else [state / "scheduler.pid" for state in map(Path, args.state)]
    for f in files:
        if alive(f):
            os.kill(int(f.read_text()), signal.SIGTERM)
            while alive(f):
                time.sleep(1)
    print("stopped" + (f" {' '.join(args.only)}" if args.only else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["launch", "schedule", "pack", "wait", "drain", "stop"],
                   help="launch, wait, drain, stop; `schedule` and `pack` are the detached processes `launch` starts "
                        "(run by hand, `schedule` trains in the foreground until every pack is done)")
    p.add_argument("sweep", nargs="?")
    p.add_argument("pack", nargs="?")
    p.add_argument("--state", nargs="+", default=["/tmp/eigsweep-gpu-state"],
                   help="outside the repository (see above); wait, drain and stop take several")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--workers", type=int, default=None, help="packs at a time (default: one per device, else 3)")
    p.add_argument("--devices", nargs="*", help="GPU indices; each pack process gets the least busy one")
    p.add_argument("--archs", nargs="*")
    p.add_argument("--only", nargs="*", help="pack ids (`snakemake -n` or the scheduler log lists them), in order")
    p.add_argument("--eager", action="store_true", help="no torch.compile")
    p.add_argument("--pack", dest="pack_size", type=int, default=None, help="runs per pack (default: the sweep's)")
    p.add_argument("--seconds", type=float, default=540)
    p.add_argument("--start-within", type=float, default=None,
                   help="launch: start no pack later than this many seconds from now (one that could not finish "
                        "in the session's remaining device time), then end as after `drain`")
    p.add_argument("--start-by", type=float, default=None, help=argparse.SUPPRESS)   # schedule: the same, as a time
    p.add_argument("--out", default="out")
    args = p.parse_args()
    dict(launch=launch, schedule=schedule, pack=pack, wait=wait, drain=drain, stop=stop)[args.command](args)


if __name__ == "__main__":
    main()
