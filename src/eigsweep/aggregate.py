"""Stack a sweep's per-run result files into one ``summary.nc`` along a ``run`` dimension."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from eigsweep.results import AXES, ResultFileError, clean_stale_temps, move_aside, read_run_file, write_atomic

# per-run provenance kept as attributes of each file; in the summary they become run-indexed variables
PER_RUN_ATTRS = ("git_commit", "code_version", "code_version_kind", "source_hash", "eigsweep_version", "spec_json")


class CorruptRunFiles(ValueError):
    """Run files that failed their check and were moved aside; one line naming each and what to do."""


def stack_runs(datasets: list[xr.Dataset]) -> xr.Dataset:
    """Concatenate run datasets along ``run`` (outer join: runs may differ in layers, heads, steps)."""
    prepared = []
    for ds in datasets:
        ds = ds.copy()
        for a in PER_RUN_ATTRS:
            ds[a] = str(ds.attrs.get(a, ""))
        ds.attrs = {}
        ds = ds.expand_dims("run")
        prepared.append(ds.assign_coords({a: ("run", ds[a].values.reshape(1)) for a in AXES}))
    out = xr.concat(prepared, dim="run", data_vars="all", coords="different", compat="equals", join="outer",
                    fill_value={"fine_count": 0.0})
    out = out.assign_coords(run=[str(r) for r in out.run_id.values])
    out.attrs["n_runs"] = len(prepared)
    out.attrs["axes"] = " ".join(AXES)
    return out


def aggregate(paths: list[str | Path], out_path: str | Path, move_corrupt: bool = False) -> xr.Dataset:
    """Check and stack the run files ``paths`` (``runs/<run id>.nc``) into ``out_path``; remove temporary
    files that killed writes of these runs left. A run file that fails its check (read_run_file) raises
    ResultFileError; with ``move_corrupt`` (the workflow) every such file is first renamed to
    ``<name>.corrupt``, so that the next invocation retrains its run, and the error names them all."""
    if not paths:
        raise ValueError("aggregate: no result files given")
    datasets, moved = [], []
    for p in paths:
        clean_stale_temps(p)
        try:
            datasets.append(read_run_file(p))
        except ResultFileError as e:
            if not move_corrupt:
                raise
            moved.append(f"{e.path}: {e.problem}; moved it to {move_aside(p).name}")
    if moved:
        raise CorruptRunFiles(f"{len(moved)} corrupt run file(s), rerun to retrain: " + " | ".join(moved))
    ds = stack_runs(datasets)
    write_atomic(ds, out_path)
    return ds
