"""Stack a sweep's per-run result files into one ``summary.nc`` along a ``run`` dimension."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from eigsweep.results import AXES, read_result, write_atomic

# per-run provenance kept as attributes of each file; in the summary they become run-indexed variables
PER_RUN_ATTRS = ("git_commit", "eigsweep_version", "spec_json")


def stack_runs(datasets: list[xr.Dataset]) -> xr.Dataset:
    """Concatenate run datasets along ``run`` (outer join: runs may differ in layers, heads, steps)."""
    prepared = []
    for ds in datasets:
        ds = ds.copy()
        for a in PER_RUN_ATTRS:
            ds[a] = ds.attrs.get(a, "")
        ds.attrs = {}
        ds = ds.expand_dims("run")
        prepared.append(ds.assign_coords({a: ("run", ds[a].values.reshape(1)) for a in AXES}))
    out = xr.concat(prepared, dim="run", data_vars="all", coords="different", compat="equals", join="outer",
                    fill_value={"fine_count": 0.0})
    out = out.assign_coords(run=[str(r) for r in out.run_id.values])
    out.attrs["n_runs"] = len(prepared)
    out.attrs["axes"] = " ".join(AXES)
    return out


def aggregate(paths: list[str | Path], out_path: str | Path) -> xr.Dataset:
    if not paths:
        raise ValueError("aggregate: no result files given")
    ds = stack_runs([read_result(p) for p in paths])
    write_atomic(ds, out_path)
    return ds
