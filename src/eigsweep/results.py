"""The per-run result file: one netCDF per run, written atomically.

Contract (checked by ``check_result``): spectra by stage (init/trained), a fine |λ| histogram, spectra at
checkpoint steps during training, the training curve, final/best accuracy, the run's axes as coordinates
and provenance. Tasks with a validation split add its curve and final/best accuracy (``val_acc``,
``final_val_acc``, ``best_val_acc``): the split that decided the early stop and decides the learning rate.
A half-written file never exists under the final name: we write a temporary file in the same directory and
rename it.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
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
STATUSES = ("ok", "diverged", "unstable")
# 'unstable': finite, but the training loss ended this many times above where it started (a blown-up run that
# did not reach NaN must not be called 'ok')
UNSTABLE_LOSS_RATIO = 1.5


SCHEMA_VERSION = 1            # attribute `schema_version`; files without it are version 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
PACKAGE_DIR = Path(__file__).resolve().parent


class ResultFileError(ValueError):
    """A result file that cannot be trusted; the message is one line naming the file and what to do."""

    TODO = "delete it (the workflow moves it aside) and rerun to retrain the run"

    def __init__(self, path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}; {self.TODO}")


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, cwd=PACKAGE_DIR, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def source_hash() -> str:
    """sha256 (first 16 hex digits) over the package's .py files, by relative path and content."""
    h = hashlib.sha256()
    for f in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(str(f.relative_to(PACKAGE_DIR)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def provenance() -> dict[str, str]:
    """Which code wrote a result: the git commit when the package is a git checkout (``-dirty`` when its
    sources differ from the commit), else eigsweep's version plus a hash of the package's source files;
    ``code_version_kind`` says which. ``source_hash`` is recorded either way."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit:
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".")
        commit += "-dirty" if dirty else ""
        return dict(git_commit=commit, code_version=commit, code_version_kind="git commit",
                    source_hash=source_hash())
    return dict(git_commit="unknown", code_version=f"{eigsweep.__version__}+src.{source_hash()}",
                code_version_kind="version + source hash", source_hash=source_hash())


def mixer_precision(arch: str, device: str) -> str:
    """How the run's mixer computed: under bf16 autocast on CUDA for the mixers in model.BF16_MIXERS (a set that
    has grown: DeltaNet joined it in the fifteenth session), else float32 (TF32 matmuls on CUDA)."""
    from eigsweep.model import BF16_MIXERS
    if not device.startswith("cuda"):
        return "float32"
    return "bf16 autocast" if arch in BF16_MIXERS else "float32 (TF32 matmuls)"


def fla_core_used(device: str) -> str:
    """fla-core's version where a run on ``device`` trained with its kernels available (CUDA, installed: the
    DeltaNets' delta rule, mixers/fla_ops), else "": those runs' scans had bf16 storage."""
    if not device.startswith("cuda"):
        return ""
    try:
        return importlib.metadata.version("fla-core")
    except importlib.metadata.PackageNotFoundError:
        return ""


def git_commit() -> str:
    return provenance()["git_commit"]


def clean_stale_temps(path: str | Path) -> list[Path]:
    """Remove temporary files that a write of ``path`` killed mid-way left beside it (``.<name>.*.tmp``).
    Only call it where no other process writes ``path`` now (one job per run file: Snakemake's lock)."""
    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.*.tmp"))
    for f in stale:
        f.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(ds: xr.Dataset, path: str | Path) -> None:
    """Write netCDF to a temporary file beside ``path`` and rename it into place (removing temporary files
    of an earlier write of ``path`` that was killed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp's 0600 would hide results from the group
        # compressed, coordinates too: histograms are mostly zeros, sweeps stack many runs, and a 40k-step run's
        # train_step coordinate alone is 320 kB raw (results are committed and travel to the GPU machine)
        encoding = {v: {"zlib": True, "complevel": 4} for v in ds.variables if ds[v].dtype.kind in "fiu"}
        # strings variable-length: a fixed width carried over from one run's file would truncate the others
        encoding.update({v: {"dtype": str} for v in ds.variables if ds[v].dtype.kind in "US"})
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def move_aside(path: str | Path) -> Path:
    """Rename a corrupt file to ``<name>.corrupt`` (replacing an older one) and return the new path."""
    path = Path(path)
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    return aside


def loss_rise(train_loss) -> float:
    """The mean of the last tenth of a run's training losses over its first loss (NaN without losses)."""
    loss = np.asarray(train_loss, dtype=float)
    if len(loss) == 0 or not np.isfinite(loss[0]) or loss[0] <= 0:
        return float("nan")
    return float(np.mean(loss[-max(1, len(loss) // 10):]) / loss[0])


def run_status(status: str, train_loss) -> str:
    """``status`` ('ok' or 'diverged'), or 'unstable' for an 'ok' run whose loss rose far above its start."""
    return "unstable" if status == "ok" and loss_rise(train_loss) > UNSTABLE_LOSS_RATIO else status


def final_and_best(accs: np.ndarray) -> tuple[float, float]:
    """The last and the largest finite accuracy of a curve (NaN, NaN without one)."""
    finite = accs[np.isfinite(accs)]
    return (float(finite[-1]), float(finite.max())) if len(finite) else (np.nan, np.nan)


def build_result(spec, stages: dict[str, xr.Dataset], during: dict[int, xr.Dataset], curve: dict,
                 status: str, wall_time_s: float, device: str) -> xr.Dataset:
    """Assemble a run's Dataset from its spectra ({"init": ds, "trained": ds}), the spectra measured at
    checkpoint steps, the training curve and provenance."""
    spectra = xr.concat(list(stages.values()), dim="stage", coords="minimal", compat="override",
                        join="outer").assign_coords(stage=list(stages))
    steps = sorted(during)
    # during training: per-head bins (and the informative eigenvalue's, for structural models), and the fine
    # histogram pooled over heads (kept small)
    kept = ["bin_fraction", "bin_fraction_std"] + [v for v in ("informative_bin_fraction",) if v in during[steps[0]]]
    dyn = xr.concat([during[s][kept].assign(fine_count=during[s].fine_count.sum("head")) for s in steps],
                    dim="spectrum_step", coords="minimal", compat="override", join="outer")
    dyn = dyn.rename({v: f"{v}_during" for v in dyn.data_vars}).assign_coords(spectrum_step=steps)
    ds = xr.merge([spectra, dyn], compat="override", join="outer")
    accs = np.asarray(curve["test_acc"], dtype=float)
    ds["train_loss"] = ("train_step", np.asarray(curve["train_loss"], dtype=float))
    ds["test_acc"] = ("eval_step", accs)
    ds["test_loss"] = ("eval_step", np.asarray(curve["test_loss"], dtype=float))
    ds = ds.assign_coords(train_step=np.asarray(curve["train_step"], dtype=np.int64),
                          eval_step=np.asarray(curve["eval_step"], dtype=np.int64))
    ds["final_acc"], ds["best_acc"] = final_and_best(accs)
    if "test_ppl" in curve:
        ds["test_ppl"] = ("eval_step", np.asarray(curve["test_ppl"], dtype=float))
    if curve.get("val_acc"):   # a task with a validation split: it decided the early stop
        val = np.asarray(curve["val_acc"], dtype=float)
        ds["val_acc"] = ("eval_step", val)
        ds["val_loss"] = ("eval_step", np.asarray(curve["val_loss"], dtype=float))
        ds["final_val_acc"], ds["best_val_acc"] = final_and_best(val)
    status = run_status(status, curve["train_loss"])
    ds["status"] = status
    ds["loss_rise"] = loss_rise(curve["train_loss"])
    ds["steps_done"] = int(curve["steps_done"])
    ds["wall_time_s"] = float(wall_time_s)
    ds["device"] = device
    ds["config_hash"] = spec.config_hash()
    axes = dict(sweep=spec.sweep, run_id=spec.run_id, arch=spec.arch, task=spec.task,
                task_name=spec.task_name, modification=spec.modification, seed=spec.seed, lr=spec.lr)
    ds = ds.assign_coords(axes)
    ds.attrs.update(schema_version=SCHEMA_VERSION, eigsweep_version=eigsweep.__version__, **provenance(),
                    config_hash=spec.config_hash(), device=device, mixer_precision=mixer_precision(spec.arch, device),
                    fla_core=fla_core_used(device),
                    wall_time_s=float(wall_time_s),
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


def read_result(path: str | Path, run_id: str | None = None) -> xr.Dataset:
    """Open a run's result file (loaded into memory, file closed) and check it: a readable netCDF, a
    supported ``schema_version`` (absent: 1), the run id (when ``run_id`` is given; read_run_file passes the
    file name's) and the result contract. Raises ResultFileError, one line naming the file and what to do."""
    path = Path(path)
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - netCDF4/HDF5 raise OSError, ValueError, RuntimeError, ...
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ResultFileError(path, f"not a readable netCDF result file ({reason})") from None
    version = int(ds.attrs.get("schema_version", 1))
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ResultFileError(path, f"result schema version {version} is not supported by this eigsweep "
                                    f"(supports {list(SUPPORTED_SCHEMA_VERSIONS)}; use the eigsweep that wrote it)")
    try:
        check_result(ds, str(path))
    except ValueError as e:
        raise ResultFileError(path, str(e).removeprefix(f"{path}: ")) from None
    if run_id is not None and str(ds.run_id.values) != run_id:
        raise ResultFileError(path, f"holds run {str(ds.run_id.values)!r}, not {run_id!r} (a file copied under "
                                    "another run's name?)")
    return ds


def read_run_file(path: str | Path) -> xr.Dataset:
    """read_result for a sweep's run file, ``runs/<run id>.nc``: its run id must be its name's."""
    return read_result(path, run_id=Path(path).stem)
