"""Statistics the paper lacked: per-run spectral statistics, Spearman correlation with accuracy and its
bootstrap confidence interval, intervals over seeds. Pure numpy/scipy/xarray (no torch, no plotting).

Per-run spectral statistics (from the trained spectrum of a result file, pooled over layers and heads):

- ``mass_near_0``   share of |λ| in [0, 0.1]             (paper bin 1)
- ``mass_near_1``   share of |λ| in (0.9, 1]             (paper bin 4)
- ``mass_above_1``  share of |λ| > 1                     (paper bins 5–7)
- ``median_horizon`` median memory horizon −1/ln|λ| in tokens, from the fine |λ| histogram
  (|λ| ≥ 1 counts as an infinite horizon, so the median is ∞ when half the eigenvalues have |λ| ≥ 1).

Shares are means over layers and heads of the per-(layer, head) shares (each already a mean over evaluation
samples); the median horizon pools the eigenvalue counts of all layers and heads.
"""
from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from scipy import stats as sps

# the paper's magnitude bin edges (as eigsweep.spectrum.MAG_EDGES, kept here so plotting needs no torch)
PAPER_EDGES = (0.1, 0.5, 0.9, 1.0, 10.0, 100.0)
STATISTICS = ("mass_near_0", "mass_near_1", "mass_above_1", "median_horizon")
STAT_LABELS = {
    "mass_near_0": "share of |λ| in [0, 0.1] (%)",
    "mass_near_1": "share of |λ| in (0.9, 1] (%)",
    "mass_above_1": "share of |λ| > 1 (%)",
    "median_horizon": "median memory horizon −1/ln|λ| (tokens)",
}
STAT_SHORT = {"mass_near_0": "|λ| ≤ 0.1", "mass_near_1": "0.9 < |λ| ≤ 1", "mass_above_1": "|λ| > 1",
              "median_horizon": "median horizon"}
# which of the paper's 7 bins (by label) each share sums
BIN_GROUPS = {"mass_near_0": ("[0,0.1]",), "mass_near_1": ("(0.9,1]",),
              "mass_above_1": ("(1,10]", "(10,100]", ">100")}


# -- memory horizon ------------------------------------------------------------------------------

def horizon(mag) -> np.ndarray:
    """Memory horizon −1/ln|λ| in tokens (the e-folding time of λ^t); ∞ for |λ| ≥ 1, 0 for |λ| = 0."""
    mag = np.asarray(mag, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(mag >= 1, np.inf, -1.0 / np.log(np.clip(mag, 0, 1 - 1e-300)))


def histogram_median(counts, lower, upper) -> float:
    """Median of a quantity given its histogram (bins [lower, upper]); log-linear interpolation inside
    the bin where the cumulative count reaches half (linear when lower = 0; the lower edge when upper = ∞).
    NaN for an empty histogram."""
    counts = np.asarray(counts, dtype=float)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    counts = np.where(np.isfinite(counts), counts, 0.0)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    cum = np.cumsum(counts)
    i = int(np.searchsorted(cum, total / 2, side="left"))
    before = cum[i - 1] if i > 0 else 0.0
    frac = (total / 2 - before) / counts[i]
    lo, hi = lower[i], upper[i]
    if not np.isfinite(hi):
        return float(lo)
    if lo <= 0:
        return float(lo + frac * (hi - lo))
    return float(np.exp(np.log(lo) + frac * (np.log(hi) - np.log(lo))))


def median_horizon(counts, lower, upper) -> float:
    """Median memory horizon from a |λ| histogram: −1/ln|λ| is non-decreasing in |λ| (∞ for |λ| ≥ 1),
    so its median is the horizon of the median |λ|."""
    return float(horizon(histogram_median(counts, lower, upper)))


# -- per-run statistics --------------------------------------------------------------------------

def run_statistics(ds: xr.Dataset, stage: str = "trained") -> xr.Dataset:
    """The spectral statistics of every run of a summary (dims: run), plus its accuracy and axes.

    ``ds`` is a summary.nc (a ``run`` dim) or one result file (promoted to one run)."""
    if "run" not in ds.dims:
        ds = ds.expand_dims("run")
    bins = ds.bin_fraction.sel(stage=stage)
    out = {}
    for name, labels in BIN_GROUPS.items():
        share = bins.sel(bin=list(labels)).sum("bin", min_count=1)
        out[name] = 100 * share.mean(("layer", "head"))
    fine = ds.fine_count.sel(stage=stage).fillna(0).sum(("layer", "head"))
    lower, upper = ds.fine_lower.values, ds.fine_upper.values
    out["median_horizon"] = xr.DataArray([median_horizon(fine.sel(run=r).values, lower, upper)
                                          for r in fine.run.values], dims="run")
    res = xr.Dataset(out).assign_coords(run=ds.run.values)
    res["accuracy"] = ds.best_acc.astype(float)
    res["status"] = ds.status
    for a in ("task", "arch", "modification", "seed", "lr"):
        if a in ds.coords:
            res = res.assign_coords({a: ("run", ds[a].values)})
    # a diverged run has no trained spectrum: its statistics are undefined, not zero
    bad = ds.status != "ok"
    for name in STATISTICS:
        res[name] = res[name].where(~bad)
    for name, unit in (("mass_near_0", "%"), ("mass_near_1", "%"), ("mass_above_1", "%"),
                       ("median_horizon", "tokens")):
        res[name].attrs.update(long_name=STAT_LABELS[name], units=unit)
    return res


# -- correlation ---------------------------------------------------------------------------------

def _finite_pairs(x, y):
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))   # ±∞ is kept: a rank like any other
    return x[keep], y[keep]


def _rank_corr_rows(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair (of ranks): Spearman's ρ per row; NaN for a constant row."""
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1), np.nan)


def spearman(x, y) -> tuple[float, float]:
    """Spearman's ρ and its two-sided p-value (scipy), over the pairs where both are defined; (NaN, NaN)
    when fewer than 3 pairs remain or either side is constant."""
    x, y = _finite_pairs(x, y)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan"), float("nan")
    res = sps.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def bootstrap_spearman_ci(x, y, n_boot: int = 4000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of Spearman's ρ, resampling (x, y) pairs with replacement. Resamples in which
    either side is constant (ρ undefined) are dropped; NaN when fewer than 3 pairs or no usable resample."""
    x, y = _finite_pairs(x, y)
    n = len(x)
    if n < 3:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    rho = _rank_corr_rows(sps.rankdata(x[idx], axis=-1), sps.rankdata(y[idx], axis=-1))
    rho = rho[np.isfinite(rho)]
    if len(rho) == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(rho, [a, 1 - a])
    return float(lo), float(hi)


def correlations(runstats: xr.Dataset, n_boot: int = 4000, seed: int = 0) -> "pandas.DataFrame":
    """Tidy table: one row per (task, statistic) with n, Spearman ρ, p-value and bootstrap 95% CI of ρ
    between the statistic and test accuracy, over every run of the task (models × modifications × seeds ×
    lr) with a defined statistic and accuracy."""
    import pandas as pd

    rows = []
    tasks = list(dict.fromkeys(runstats.task.values.tolist()))
    for task in tasks:
        sub = runstats.isel(run=np.flatnonzero(runstats.task.values == task))
        acc = sub.accuracy.values
        for name in STATISTICS:
            x, y = _finite_pairs(sub[name].values, acc)
            rho, p = spearman(x, y)
            lo, hi = bootstrap_spearman_ci(x, y, n_boot=n_boot, seed=seed)
            rows.append(dict(task=task, statistic=name, n_runs=len(x), n_models=len(set(sub.arch.values.tolist())),
                             spearman_rho=rho, p_value=p, ci_low=lo, ci_high=hi, ci_level=0.95, n_boot=n_boot))
    return pd.DataFrame(rows)


def correlations_dataset(table, runstats: xr.Dataset) -> xr.Dataset:
    """The correlation table as a (task, statistic) netCDF-ready Dataset, with the per-run statistics."""
    cols = ["n_runs", "spearman_rho", "p_value", "ci_low", "ci_high"]
    corr = table.set_index(["task", "statistic"])[cols].to_xarray()
    runs = runstats.rename({v: f"run_{v}" for v in runstats.data_vars})
    out = xr.merge([corr, runs], compat="override")
    out.attrs.update(method="Spearman rank correlation with test accuracy (best over training) across the runs "
                     "of a task; 95% percentile bootstrap CI over runs", ci_level=0.95,
                     n_boot=int(table.n_boot.iloc[0]) if len(table) else 0)
    return out


# -- intervals over seeds ------------------------------------------------------------------------

def mean_interval(values, axis=0, kind: str = "std"):
    """Mean along ``axis`` and the half-width of an interval: ``std`` (one standard deviation, ddof 0)
    or ``ci95`` (Student-t 95% CI of the mean; 0 for a single value). NaNs are ignored."""
    v = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN slices give NaN, quietly
        mean = np.nanmean(v, axis=axis)
        n = np.sum(~np.isnan(v), axis=axis)
        if kind == "std":
            return mean, np.nan_to_num(np.nanstd(v, axis=axis))
        if kind == "ci95":
            sd = np.nanstd(v, axis=axis, ddof=1) if v.shape[axis] > 1 else np.zeros_like(mean)
            t = sps.t.ppf(0.975, np.maximum(n - 1, 1))
            half = np.where(n > 1, t * np.nan_to_num(sd) / np.sqrt(np.maximum(n, 1)), 0.0)
            return mean, half
    raise ValueError(f"unknown interval {kind!r}; allowed: std, ci95")


def pooled_share(ds: xr.Dataset, var: str = "bin_fraction", kind: str = "std") -> tuple[xr.DataArray, xr.DataArray]:
    """Mean share over runs (seeds) and heads, and an interval half-width.

    ``std``: the total standard deviation, within-run (over evaluation samples, pooled over heads) and
    between runs; ``ci95``: Student-t 95% CI of the mean over runs (each run's mean over samples and heads)."""
    per_run = ds[var].mean("head")
    mean = per_run.mean("run")
    if kind == "std":
        within = (ds[f"{var}_std"] ** 2).mean("head").mean("run")
        return mean, np.sqrt(within + per_run.var("run", ddof=0))
    _, half = mean_interval(per_run.transpose("run", ...).values, axis=0, kind=kind)
    return mean, xr.DataArray(half, dims=[d for d in per_run.transpose("run", ...).dims if d != "run"],
                              coords={d: per_run[d] for d in per_run.dims if d != "run" and d in per_run.coords})
