"""The train rules' jobs: one run (rule train), or one pack of runs (rules train_pack_*: config key `pack`),
trained exactly as the workflow resolved them, here or on Slurm. A pack job trains only its members whose
result file is missing or stale (stale_members) and leaves the others' files as they are.

The jobs file. Building the DAG resolves every run's spec (the train rule's ``params.spec``, its rerun
trigger) and where to run it (config ``executor``, each sweep's Slurm resources) once per invocation, and
writes them to ``.snakemake/eigsweep/jobs/<sha256 of the content>.json``; each job's command names that file
(passing specs on the command line or as params costs Snakemake seconds on a 10k-run dry run). The file is
content-addressed and never rewritten with other content, so another Snakemake call with another config (a
dry run, or one that then fails on the lock) writes another file and cannot change what the jobs of a
running sweep read. The job checks that the file still hashes to its name and that the spec names its run.

Nothing here imports torch at module level: the Snakefile imports this module.
"""
from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from eigsweep.config import RunSpec, slurm_resources

log = logging.getLogger("eigsweep.jobs")

EXECUTORS = ("local", "slurm")
JOBS_DIR = ".snakemake/eigsweep/jobs"
JOBS_FILE_MAX_AGE_S = 30 * 86400   # jobs files not read or written for this long are removed


class JobError(RuntimeError):
    """A job cannot start; the message is one line naming the file or key and what to do."""


# ---------------------------------------------------------------------------------------------
# The jobs file

def write_jobs_file(spec_json: dict[str, dict[str, str]], config: dict, directory: str | Path = JOBS_DIR,
                    packs: dict[str, dict[str, list[str]]] | None = None) -> str:
    """Write {"executor": …, "slurm": {sweep: resources}, "specs": {sweep: {run_id: spec JSON string}}} (and,
    given ``packs``, "packs": {sweep: {pack id: [run ids]}}) to ``directory/<sha256>.json`` unless that file
    exists; return its path. ``spec_json`` holds each run's ``RunSpec.to_json()``, the very strings of the
    train rules' params; they are stored as strings so the job trains the identical text. Jobs files unused
    for ``JOBS_FILE_MAX_AGE_S`` are removed, and temporary files of writes killed mid-way after an hour."""
    content = dict(executor=config.get("executor", "local"),
                   slurm={s: slurm_resources(config, s) for s in spec_json}, specs=spec_json)
    if packs:
        content["packs"] = packs
    text = json.dumps(content)
    data = text.encode()
    directory = Path(directory)
    path = directory / f"{hashlib.sha256(data).hexdigest()}.json"
    if path.exists():
        os.utime(path)   # in use: keep it from the clean-up below
    else:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    now = time.time()
    for old, max_age in [*((f, JOBS_FILE_MAX_AGE_S) for f in directory.glob("*.json")),
                         *((f, 3600) for f in directory.glob(".*.tmp"))]:   # writes killed mid-way
        try:
            if old != path and now - old.stat().st_mtime > max_age:
                old.unlink()
        except OSError:
            pass
    return str(path)


def read_jobs_file(jobs_file: str | Path) -> dict:
    """A jobs file's content, after checking the file is the one its name says. Raises JobError otherwise."""
    path = Path(jobs_file)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise JobError(f"jobs file {path} is unreadable ({e.strerror}); rerun snakemake to write it again") from None
    if hashlib.sha256(data).hexdigest() != path.stem:
        raise JobError(f"jobs file {path} does not match its hash (changed after it was written); "
                       "rerun snakemake to write it again")
    try:
        os.utime(path)   # in use: keep it from write_jobs_file's clean-up
    except OSError:
        pass
    return json.loads(data)


def read_job(jobs_file: str | Path, sweep: str, run: str) -> tuple[str, str, dict]:
    """(spec JSON, executor, Slurm resources) of one run from a jobs file, after checking the file is the
    one its name says and the spec is that run's. Raises JobError (one line) otherwise."""
    path = Path(jobs_file)
    jobs = read_jobs_file(path)
    try:
        spec_json = jobs["specs"][sweep][run]
    except KeyError:
        raise JobError(f"jobs file {path} has no run {run!r} in sweep {sweep!r}") from None
    spec = RunSpec.from_json(spec_json)
    if (spec.sweep, spec.run_id) != (sweep, run):
        raise JobError(f"jobs file {path}: the spec under {sweep}/{run} is run {spec.sweep}/{spec.run_id}")
    return spec_json, jobs["executor"], jobs["slurm"][sweep]


def read_pack(jobs_file: str | Path, sweep: str, pack: str) -> tuple[list[str], str, dict]:
    """([spec JSON of each member], executor, Slurm resources) of one pack of a jobs file (see read_job)."""
    path = Path(jobs_file)
    jobs = read_jobs_file(path)
    try:
        runs = jobs.get("packs", {})[sweep][pack]
    except KeyError:
        raise JobError(f"jobs file {path} has no pack {pack!r} in sweep {sweep!r}") from None
    return [read_job(path, sweep, run)[0] for run in runs], jobs["executor"], jobs["slurm"][sweep]


# ---------------------------------------------------------------------------------------------
# Before training: files the run will write, and its checkpoint

def check_writable(*paths: str | Path | None) -> None:
    """Create the parent directory of each path and check a file can be created there, so a read-only
    results directory stops a job before it trains, not after. Raises JobError naming the directory."""
    for d in dict.fromkeys(Path(p).parent for p in paths if p):
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=d)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise JobError(f"cannot write to {d} ({e.strerror}): make it writable, then rerun") from None


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write a training checkpoint (a dict with its run's or pack's ``config_hash``) atomically."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint_or_none(path: str | Path, map_location=None, config_hash: str | None = None):
    """A training checkpoint's state dict, or None to start from scratch: when the file is missing, when it
    is corrupt (truncated, garbage: it is moved aside to ``<name>.corrupt`` with a warning, so it cannot block
    its run for good) or when it was written for another configuration (``config_hash`` differs)."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
        if not isinstance(state, dict) or "config_hash" not in state:
            raise ValueError("not an eigsweep checkpoint")
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, KeyError,
            AttributeError, ImportError, IndexError, TypeError) as e:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        log.warning("checkpoint %s is corrupt (%s: %s); moved it to %s and starting the run from scratch",
                    path, type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "", aside)
        return None
    if config_hash is not None and state["config_hash"] != config_hash:
        log.warning("ignoring checkpoint %s: written for another configuration", path)
        return None
    return state


def run_state(spec: RunSpec, out: str | Path):
    """(state, what was read) of a run's result file: ("done", its Dataset) when it is a valid result of this
    very spec, ("stale", its Dataset) when of another spec, ("unreadable", the ResultFileError) or ("missing",
    None). Reads only."""
    from eigsweep.results import ResultFileError, read_run_file

    try:
        ds = read_run_file(out)
    except FileNotFoundError:
        return "missing", None
    except ResultFileError as e:
        return "unreadable", e
    return ("done" if ds.attrs.get("config_hash") == spec.config_hash() else "stale"), ds


def stale_members(specs: list[RunSpec], outs: list[str | Path]) -> list[int]:
    """Indices of the runs to train: those whose result file is missing, unreadable (moved aside to
    ``<name>.corrupt``) or written for another configuration (its stored config_hash is not the spec's), and
    that no other sweep has trained with the same spec (reuse_identical copies those instead)."""
    from eigsweep.results import move_aside

    stale = []
    for i, (spec, out) in enumerate(zip(specs, outs)):
        state, read = run_state(spec, out)
        if state == "done":
            continue
        if state == "unreadable":
            log.warning("%s; moved it to %s, retraining", read, move_aside(out))
        if reuse_identical(spec, out) is None:
            stale.append(i)
    return stale


def _without_sweep(spec_json: str) -> dict:
    d = json.loads(spec_json)
    d.pop("sweep", None)
    return d


def find_identical(spec: RunSpec, out: str | Path):
    """(path, Dataset) of a valid result in another sweep of the same results directory
    (``<results>/<other sweep>/runs/<run id>.nc`` beside ``out`` = ``<results>/<sweep>/runs/<run id>.nc``) of a
    run whose spec is this one's in all but the sweep's name (the same model, task, data, seed, lr and
    training), or None. Reads only."""
    from eigsweep.results import ResultFileError, read_run_file

    out = Path(out)
    want = _without_sweep(spec.to_json())
    for other in sorted(out.parent.parent.parent.glob(f"*/runs/{out.name}")):
        if other.parent == out.parent:
            continue
        try:
            ds = read_run_file(other)
        except (ResultFileError, OSError):
            continue
        try:   # the source must be what it says it is: its stored hash is its own spec's
            consistent = ds.attrs["config_hash"] == RunSpec.from_json(ds.attrs["spec_json"]).config_hash()
        except (KeyError, TypeError, ValueError):
            continue
        if consistent and _without_sweep(ds.attrs["spec_json"]) == want:
            return other, ds
    return None


def reuse_identical(spec: RunSpec, out: str | Path) -> Path | None:
    """Where another sweep holds the same run (find_identical), write that result to ``out`` under this sweep
    (its sweep coordinate, spec and config_hash; ``reused_from`` names the source, whose provenance attributes
    it keeps) and return the source's path; else None. A sweep's baseline that another sweep has trained is so
    never trained twice."""
    from eigsweep.results import write_atomic

    found = find_identical(spec, out)
    if found is None:
        return None
    other, ds = found
    ds = ds.assign_coords(sweep=spec.sweep)
    ds["config_hash"] = spec.config_hash()
    ds.attrs.update(config_hash=spec.config_hash(), spec_json=spec.to_json(), reused_from=str(other))
    write_atomic(ds, out)
    log.info("%s: the same run (all but the sweep's name) is trained in %s: reused, not trained", spec.run_id, other)
    return other


# ---------------------------------------------------------------------------------------------
# Locks: `eigsweep sweep` against Snakemake and against itself

LOCK_NAME = ".lock"   # in a sweep's runs/ directory


@contextmanager
def runs_lock(runs_dir: str | Path, exclusive: bool):
    """flock on ``runs_dir/.lock``: shared for each training job (Snakemake's train jobs, `eigsweep train`),
    exclusive for `eigsweep sweep`, non-blocking; released when the process ends, even by kill -9. Raises
    JobError when the other kind holds it."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / LOCK_NAME, "a") as f:
        try:
            fcntl.flock(f, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            who = "a training job (Snakemake or eigsweep train)" if exclusive else "`eigsweep sweep`"
            raise JobError(f"{runs_dir} is in use by {who}; wait for it to finish or stop it, then rerun") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def snakemake_lock(outputs: list[str | Path], workdir: str | Path = "."):
    """Lock ``outputs`` the way Snakemake does (an ``N.output.lock`` file listing them in
    ``workdir/.snakemake/locks``), after checking that no Snakemake lock there names one of them: a
    Snakemake started meanwhile in ``workdir`` on these files refuses to run, and this refuses while one
    runs. Like Snakemake's, the lock outlives a kill -9 (remove it with `snakemake --unlock`)."""
    lockdir = Path(workdir) / ".snakemake" / "locks"
    mine = {os.path.abspath(p) for p in outputs}
    for f in sorted(lockdir.glob("*.lock")) if lockdir.is_dir() else []:
        try:
            keys = [k.strip() for k in f.read_text().splitlines()]
        except OSError:
            continue
        hit = next((k for k in keys if k and os.path.abspath(Path(workdir, k)) in mine), None)
        if hit:
            raise JobError(f"{hit} is locked by a running Snakemake or eigsweep sweep ({f}); if none is "
                           "running, remove stale locks with `snakemake --unlock`")
    lockdir.mkdir(parents=True, exist_ok=True)
    keys = sorted(mine | {os.path.relpath(p, workdir) for p in mine})   # Snakemake writes the paths as given
    for i in itertools.count():
        lockfile = lockdir / f"{i}.output.lock"
        try:
            fd = os.open(lockfile, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            continue
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(keys) + "\n")
    try:
        yield
    finally:
        Path(lockfile).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Running

def setup_logging(log_file: str | Path | None) -> None:
    handlers = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers, force=True)


def run_local(spec: RunSpec, out: str | Path, checkpoint: str | Path | None, log_file: str | Path | None = None):
    setup_logging(log_file)
    from eigsweep.train import train_run

    return train_run(spec, out, checkpoint)


def run_job(spec_json: str, out: str | Path, checkpoint: str | Path | None, log_file: str | Path | None,
            executor: str = "local", slurm: dict | None = None):
    """One run, here or on Slurm with resources ``slurm`` (see slurm_resources), after checking that its
    result, checkpoint and log directories are writable, holding a shared lock on its runs directory."""
    if executor not in EXECUTORS:
        raise JobError(f"config key executor: {executor!r} is not one of {list(EXECUTORS)}")
    check_writable(out, checkpoint, log_file)
    spec = RunSpec.from_json(spec_json)
    with runs_lock(Path(out).parent, exclusive=False):
        if not stale_members([spec], [out]):   # current, or reused from another sweep
            from eigsweep.results import read_run_file

            return read_run_file(out)
        if executor == "local":
            return run_local(spec, out, checkpoint, log_file)
        from eigsweep.slurm import run_slurm

        return run_slurm(spec_json, out, checkpoint, log_file, slurm)


def run_job_from_file(jobs_file: str | Path, sweep: str, run: str, out, checkpoint, log_file):
    """The `train` rule's command (`eigsweep job --jobs-file …`): one run as this invocation resolved it."""
    spec_json, executor, resources = read_job(jobs_file, sweep, run)
    return run_job(spec_json, out, checkpoint, log_file, executor, resources)


def run_pack_job(spec_jsons: list[str], outs: list, checkpoint: str | Path | None, log_file: str | Path | None,
                 executor: str = "local", slurm: dict | None = None, name: str | None = None) -> list:
    """One pack (eigsweep.pack.train_pack), here or as one Slurm job: only its members whose result file is
    missing or stale (stale_members); the others are left as they are. Returns the trained members' results
    (Datasets locally, the Slurm job's summary on Slurm)."""
    if executor not in EXECUTORS:
        raise JobError(f"config key executor: {executor!r} is not one of {list(EXECUTORS)}")
    if len(spec_jsons) != len(outs):
        raise JobError(f"pack {name}: {len(spec_jsons)} runs but {len(outs)} output files")
    check_writable(*outs, checkpoint, log_file)
    setup_logging(log_file)
    with runs_lock(Path(outs[0]).parent, exclusive=False):
        todo = stale_members([RunSpec.from_json(s) for s in spec_jsons], outs)
        kept = [RunSpec.from_json(spec_jsons[i]).run_id for i in range(len(outs)) if i not in todo]
        log.info("pack %s: training %d of %d runs%s", name, len(todo), len(outs),
                 f" (up to date: {' '.join(kept)})" if kept else "")
        if not todo:
            return []
        specs, outs = [spec_jsons[i] for i in todo], [str(outs[i]) for i in todo]
        if executor == "local":
            from eigsweep.pack import train_pack

            return train_pack([RunSpec.from_json(s) for s in specs], outs, checkpoint)
        from eigsweep.slurm import run_slurm

        return run_slurm(specs, outs, checkpoint, log_file, slurm, name=name)


def run_pack_from_file(jobs_file: str | Path, sweep: str, pack: str, outs: list, checkpoint, log_file):
    """A pack rule's command (`eigsweep job --jobs-file … --pack ID --out A.nc B.nc …`)."""
    spec_jsons, executor, resources = read_pack(jobs_file, sweep, pack)
    runs = [RunSpec.from_json(s).run_id for s in spec_jsons]
    if [Path(o).stem for o in outs] != runs:
        raise JobError(f"pack {pack} of jobs file {jobs_file}: --out must be its runs' files, in order: "
                       f"{', '.join(f'{r}.nc' for r in runs)}")
    return run_pack_job(spec_jsons, outs, checkpoint, log_file, executor, resources, name=pack)
