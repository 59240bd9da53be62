"""The per-run result file: one netCDF per run, written atomically.

Contract (checked by ``check_result``): spectra by stage (init/trained), a fine |λ| histogram, spectra at
checkpoint steps during training, the training curve, final/best accuracy, the run's axes as coordinates
and provenance. A half-written file never exists under the final name: we write a temporary file in the
same directory and rename it.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

import eigsweep

AXES = ("sweep", "run_id", "arch", "task", "task_name", "modification", "seed", "lr")
REQUIRED_VARS = ("bin_fraction", "bin_fraction_std", "phase_fraction", "phase_fraction_std", "fine_count",
                 "n_eigenvalues", "bin_fraction_during", "train_loss", "test_acc", "test_loss",
                 "final_acc", "best_acc", "status", "steps_done", "wall_time_s")
STATUSES = ("ok", "diverged")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_atomic(ds: xr.Dataset, path: str | Path) -> None:
    """Write netCDF to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        # compressed: histograms are mostly zeros and sweeps stack many runs
        encoding = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars if ds[v].dtype.kind in "fiu"}
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_result(spec, stages: dict[str, xr.Dataset], during: dict[int, xr.Dataset], curve: dict,
                 status: str, wall_time_s: float, device: str) -> xr.Dataset:
    """Assemble a run's Dataset from its spectra ({"init": ds, "trained": ds}), the spectra measured at
    checkpoint steps, the training curve and provenance."""
    spectra = xr.concat(list(stages.values()), dim="stage", coords="minimal", compat="override",
                        join="outer").assign_coords(stage=list(stages))
    steps = sorted(during)
    # during training: per-head bins, and the fine histogram pooled over heads (kept small)
    dyn = xr.concat([during[s][["bin_fraction", "bin_fraction_std"]].assign(fine_count=during[s].fine_count.sum("head"))
                     for s in steps],
                    dim="spectrum_step", coords="minimal", compat="override", join="outer")
    dyn = dyn.rename({v: f"{v}_during" for v in dyn.data_vars}).assign_coords(spectrum_step=steps)
    ds = xr.merge([spectra, dyn], compat="override", join="outer")
    accs = np.asarray(curve["test_acc"], dtype=float)
    ds["train_loss"] = ("train_step", np.asarray(curve["train_loss"], dtype=float))
    ds["test_acc"] = ("eval_step", accs)
    ds["test_loss"] = ("eval_step", np.asarray(curve["test_loss"], dtype=float))
    ds = ds.assign_coords(train_step=np.asarray(curve["train_step"], dtype=np.int64),
                          eval_step=np.asarray(curve["eval_step"], dtype=np.int64))
    finite = accs[np.isfinite(accs)]
    ds["final_acc"] = float(finite[-1]) if len(finite) else np.nan
    ds["best_acc"] = float(finite.max()) if len(finite) else np.nan
    if "test_ppl" in curve:
        ds["test_ppl"] = ("eval_step", np.asarray(curve["test_ppl"], dtype=float))
    ds["status"] = status
    ds["steps_done"] = int(curve["steps_done"])
    ds["wall_time_s"] = float(wall_time_s)
    ds["device"] = device
    ds["config_hash"] = spec.config_hash()
    axes = dict(sweep=spec.sweep, run_id=spec.run_id, arch=spec.arch, task=spec.task,
                task_name=spec.task_name, modification=spec.modification, seed=spec.seed, lr=spec.lr)
    ds = ds.assign_coords(axes)
    ds.attrs.update(eigsweep_version=eigsweep.__version__, git_commit=git_commit(),
                    config_hash=spec.config_hash(), device=device, wall_time_s=float(wall_time_s),
                    spec_json=spec.to_json(), status=status)
    return ds


def check_result(ds: xr.Dataset, source: str = "result") -> None:
    """Raise ValueError naming what is missing when ``ds`` does not satisfy the result contract."""
    missing = [v for v in REQUIRED_VARS if v not in ds.variables]
    missing += [a for a in AXES if a not in ds.coords]
    if missing:
        raise ValueError(f"{source}: not a complete eigsweep result, missing {missing}")
    if "stage" not in ds.dims or not {"init", "trained"} <= set(ds.stage.values.tolist()):
        raise ValueError(f"{source}: needs stages init and trained, has {ds.get('stage')}")
    if str(ds.status.values) not in STATUSES:
        raise ValueError(f"{source}: unknown status {ds.status.values!r}")


def read_result(path: str | Path) -> xr.Dataset:
    """Open a run's result file (loaded into memory, file closed) and check its contract."""
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    check_result(ds, str(path))
    return ds
