"""`eigsweep status <sweep>`: what a sweep has done and what remains, read from its result files alone.

Each run of the sweep (as config.yaml gives it now) is in one of the states of jobs.run_state, which its job
acts on: done (a valid result file written for this very spec), missing, unreadable (the workflow would move
it aside and retrain it) or stale (written for another spec: it would retrain, unless another sweep holds the
same run: its job then copies that result, as the report says). Done runs are listed with their status,
steps, accuracies, wall time and device; the runs to train are listed in the packs the workflow would give
them. The wall time of the training processes counts a pack once (its longest member: the members of a pack
train together). Read-only and torch-free: it trains, moves and writes nothing.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from eigsweep.config import RunSpec
from eigsweep.jobs import find_identical, run_state
from eigsweep.packs import group_packs

STATES = ("done", "missing", "unreadable", "stale")


def _why(spec: RunSpec, state: str, path: Path) -> str:
    """A run's state, and where its result would be copied from instead of trained (jobs.find_identical)."""
    found = find_identical(spec, path)
    return state if found is None else f"{state}; copied from {found[0]} when its job runs, not trained"


def _acc(ds, name: str) -> str:
    return f"{float(ds[name].values):.4f}" if name in ds else "-"


def sweep_status(sweep: str, runs: dict[str, RunSpec], results: Path, pack: int) -> str:
    """The report of `eigsweep status` for ``runs`` ({run id: spec}) under ``results/<sweep>/runs``."""
    states, done = {}, {}
    for run_id, spec in runs.items():
        states[run_id], ds = run_state(spec, results / sweep / "runs" / f"{run_id}.nc")
        if states[run_id] == "done":
            done[run_id] = ds
    counts = {s: sum(v == s for v in states.values()) for s in STATES}
    todo = len(runs) - counts["done"]
    lines = [f"sweep {sweep}: {len(runs)} runs, {counts['done']} done, {todo} to train ("
             + ", ".join(f"{counts[s]} {s}" for s in STATES[1:]) + ")"]
    if done:
        width = max(len(r) for r in done)
        lines.append(f"{'run':<{width}}  status    steps  best val  best test  final test  wall min  device  pack")
        trained = defaultdict(float)   # (device, pack or run) -> wall seconds
        for run_id, ds in done.items():
            wall = float(ds.attrs.get("wall_time_s", float("nan")))
            copied = ds.attrs.get("reused_from")
            if not copied:
                key = (ds.attrs.get("device", "?"), ds.attrs.get("pack") or run_id)
                trained[key] = max(trained[key], wall)
            lines.append(f"{run_id:<{width}}  {str(ds.status.values):<8}  {int(ds.steps_done.values):>5}  "
                         f"{_acc(ds, 'best_val_acc'):>8}  {_acc(ds, 'best_acc'):>9}  {_acc(ds, 'final_acc'):>10}  "
                         f"{wall / 60:>8.1f}  {ds.attrs.get('device', '?'):<6}  {ds.attrs.get('pack', '-')}"
                         + (f"  (copied from {copied})" if copied else ""))
        per_device = defaultdict(float)
        for (device, _), wall in trained.items():
            per_device[device] += wall
        lines.append("wall time of the processes that trained the done runs: "
                     + (", ".join(f"{device} {wall / 60:.1f} min" for device, wall in sorted(per_device.items()))
                        or "none") + " (a pack counted once, by its longest member; runs copied from another sweep "
                     "not counted; processes that shared a device overlap in time)")
    if todo:
        lines.append(f"to train, in packs of at most {pack} (config key `pack`):" if pack > 1 else "to train:")
        for pack_id, members in group_packs(list(runs.values()), pack).items():
            left = [f"{r.run_id} ({_why(r, states[r.run_id], results / sweep / 'runs' / f'{r.run_id}.nc')})"
                    for r in members if states[r.run_id] != "done"]
            if left:
                lines.append(f"  {pack_id}: " + ", ".join(left) if pack > 1 else "  " + left[0])
    return "\n".join(lines)
