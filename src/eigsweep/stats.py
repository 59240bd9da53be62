"""Statistics the paper lacked: per-run spectral statistics, their rank correlation with accuracy in ways that
respect model identity, intervals over seeds. Pure numpy/scipy/xarray (no torch, no plotting); the
``statistics`` rule writes their tables (``write_tables``; with them each run's accuracies, ``accuracy_table``),
the figures read them.

Per-run spectral statistics (from the trained spectrum of a result file, pooled over layers and heads):

- ``mass_near_0``   share of |λ| in [0, 0.1]             (paper bin 1)
- ``mass_near_1``   share of |λ| in (0.9, 1]             (paper bin 4)
- ``mass_above_1``  share of |λ| > 1                     (paper bins 5–7)
- ``median_horizon`` median memory horizon −1/ln|λ| in tokens, from the fine |λ| histogram
  (|λ| ≥ 1 counts as an infinite horizon, so the median is ∞ when half the eigenvalues have |λ| ≥ 1).

Shares are means over layers and heads of the per-(layer, head) shares (each already a mean over evaluation
samples); the median horizon pools the eigenvalue counts of all layers and heads. Models with structural
eigenvalues (DeltaNet family) contribute their informative eigenvalue where the result files have it.

Correlation with accuracy, per task and statistic (``correlations``), after duplicate runs are collapsed:

- pooled: Spearman's ρ over every run, with a cluster bootstrap interval that resamples architectures
  (each with all its runs), since runs of one architecture are not independent;
- within architecture: Spearman's ρ over the runs of each architecture (lr, seed, modification), with a
  bootstrap interval over its runs and an exact/Monte-Carlo permutation p-value; their mean weighted by runs,
  tested by a stratified permutation test (accuracy permuted within each architecture), with a cluster
  bootstrap interval. A pooled ρ over architectures with one run each compares architectures, not spectra.
"""
from __future__ import annotations

import itertools
import math
import os
import tempfile
import warnings
from pathlib import Path

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
MIN_RUNS = 3        # Spearman's ρ needs three runs
MIN_CLUSTERS = 3    # a bootstrap over architectures needs three of them
CI_LEVEL = 0.95


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

def run_statistics(ds: xr.Dataset, stage: str = "trained", acc: str = "final_acc") -> xr.Dataset:
    """The spectral statistics of every run of a summary (dims: run), plus its accuracy (``acc``) and axes.

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
    res["accuracy"] = ds[acc].astype(float)
    res["accuracy"].attrs.update(long_name=f"test accuracy ({acc.split('_')[0]} model)", source=acc)
    res["status"] = ds.status
    for a in ("task", "arch", "modification", "seed", "lr", "spectrum_view"):
        if a in ds.coords:
            res = res.assign_coords({a: ("run", ds[a].values)})
    # a diverged run has no trained spectrum, an unstable one (loss rose far above its start) no meaningful one:
    # their statistics are undefined, not zero
    bad = ds.status != "ok"
    for name in STATISTICS:
        res[name] = res[name].where(~bad)
    for name, unit in (("mass_near_0", "%"), ("mass_near_1", "%"), ("mass_above_1", "%"),
                       ("median_horizon", "tokens")):
        res[name].attrs.update(long_name=STAT_LABELS[name], units=unit)
    return res


def negative_share(ds: xr.Dataset) -> xr.DataArray:
    """Share (%) of λ < 0 per run and stage, mean over layers and heads: ``negative_fraction`` when the
    result files carry it, else the last phase bin (90°, 180°], which holds exactly the negative λ of a real
    spectrum (for a complex one it also holds complex λ with |arg λ| > 90°)."""
    frac = ds["negative_fraction"] if "negative_fraction" in ds else ds.phase_fraction.isel(phase_bin=-1, drop=True)
    return 100 * frac.mean([d for d in frac.dims if d not in ("run", "stage")])


# -- Spearman ----------------------------------------------------------------------------------------

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


# -- correlation respecting model identity ------------------------------------------------------

def _unit_ranks(v: np.ndarray) -> np.ndarray | None:
    """Centred ranks scaled to unit norm (so a dot product of two is Spearman's ρ); None if constant."""
    r = sps.rankdata(v)
    r = r - r.mean()
    norm = np.sqrt((r ** 2).sum())
    return r / norm if norm > 0 else None


def _strata(x, y, strata) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """[(stratum, x, y)] over the pairs where both are defined (±∞ kept), in order of first appearance."""
    x, y, g = np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(strata)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y, g = x[keep], y[keep], g[keep]
    return [(s, x[g == s], y[g == s]) for s in dict.fromkeys(g.tolist())]


def _contributing(groups):
    """The strata with a defined within-stratum ρ (≥ MIN_RUNS runs, neither side constant): [(name, n, rx, ry)]."""
    out = []
    for name, x, y in groups:
        if len(x) >= MIN_RUNS:
            rx, ry = _unit_ranks(x), _unit_ranks(y)
            if rx is not None and ry is not None:
                out.append((name, len(x), rx, ry))
    return out


def within_rho(x, y, strata) -> tuple[float, int]:
    """Mean of the within-stratum Spearman ρ, weighted by the stratum's runs, and how many strata have one
    (NaN, 0 when none)."""
    parts = _contributing(_strata(x, y, strata))
    if not parts:
        return float("nan"), 0
    w = np.array([n for _, n, _, _ in parts], dtype=float)
    rho = np.array([rx @ ry for _, _, rx, ry in parts])
    return float((w * rho).sum() / w.sum()), len(parts)


def stratified_permutation_test(x, y, strata, n_perm: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Within-stratum ρ (``within_rho``) and its two-sided p-value under the null of no association within
    any stratum: y is permuted within each stratum (so between-stratum differences never count). Exact
    (every permutation) when there are at most ``n_perm`` of them, else Monte Carlo with p = (1 + k)/(1 + n).
    (NaN, NaN) when no stratum has a defined ρ."""
    parts = _contributing(_strata(x, y, strata))
    if not parts:
        return float("nan"), float("nan")
    w = np.array([n for _, n, _, _ in parts], dtype=float)
    w = w / w.sum()
    observed = float(sum(wi * (rx @ ry) for wi, (_, _, rx, ry) in zip(w, parts)))
    exact = math.prod(math.factorial(n) for _, n, _, _ in parts) <= n_perm
    if exact:
        null = np.zeros(1)
        for wi, (_, n, rx, ry) in zip(w, parts):
            perms = np.array(list(itertools.permutations(range(n))))
            null = np.add.outer(null, wi * (ry[perms] @ rx)).ravel()
        return observed, float(np.mean(np.abs(null) >= abs(observed) - 1e-12))
    rng = np.random.default_rng(seed)
    null = sum(wi * (rng.permuted(np.tile(ry, (n_perm, 1)), axis=1) @ rx) for wi, (_, _, rx, ry) in zip(w, parts))
    return observed, float((1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (1 + n_perm))


def cluster_bootstrap(x, y, strata, n_boot: int = 4000, seed: int = 0, level: float = CI_LEVEL) -> dict:
    """Percentile intervals of the pooled ρ and of the within-stratum ρ, resampling strata (architectures)
    with replacement, each with all its runs. Resamples where a ρ is undefined are dropped. NaN intervals
    with fewer than MIN_CLUSTERS strata (for the within-stratum ρ: strata that have one)."""
    groups = _strata(x, y, strata)
    nan = (float("nan"), float("nan"))
    if len(groups) < MIN_CLUSTERS:
        return {"pooled": nan, "within": nan}
    contrib = {name: (n, rx @ ry) for name, n, rx, ry in _contributing(groups)}
    rng = np.random.default_rng(seed)
    pooled, within = [], []
    for _ in range(n_boot):
        pick = [groups[i] for i in rng.integers(0, len(groups), len(groups))]
        xs, ys = np.concatenate([g[1] for g in pick]), np.concatenate([g[2] for g in pick])
        pooled.append(_rank_corr_rows(sps.rankdata(xs)[None], sps.rankdata(ys)[None])[0])
        parts = [contrib[g[0]] for g in pick if g[0] in contrib]
        within.append(sum(n * r for n, r in parts) / sum(n for n, _ in parts) if parts else np.nan)
    a = (1 - level) / 2
    out = {"within": nan}
    for key, vals in (("pooled", np.asarray(pooled)), ("within", np.asarray(within))):
        if key == "within" and len(contrib) < MIN_CLUSTERS:
            continue
        vals = vals[np.isfinite(vals)]
        out[key] = tuple(float(q) for q in np.quantile(vals, [a, 1 - a])) if len(vals) else nan
    return out


def permutation_p(x, y, n_perm: int = 4000, seed: int = 0) -> float:
    """Two-sided permutation p-value of Spearman's ρ (scipy, permuting the pairing; exact when there are at
    most ``n_perm`` orders)."""
    x, y = _finite_pairs(x, y)
    if len(x) < MIN_RUNS or _unit_ranks(x) is None or _unit_ranks(y) is None:
        return float("nan")
    ry = sps.rankdata(y)

    def rho(xp, axis=-1):   # vectorised over resamples: ranks of each permuted x against y's ranks
        return _rank_corr_rows(sps.rankdata(np.moveaxis(xp, axis, -1), axis=-1), ry)

    res = sps.permutation_test((x,), rho, permutation_type="pairings", vectorized=True, n_resamples=n_perm,
                               random_state=seed)
    return float(res.pvalue)


def _one_cluster_share(k: int) -> float:
    """The share of resamples (k draws with replacement from k architectures) that draw one architecture k
    times: k · k^-k. Where it exceeds a tail of the interval, the interval's end is one architecture's ρ."""
    return float(k) ** (1 - k) if k > 0 else 0.0


def _note(n_runs, n_arch, n_within, constant) -> str:
    notes = []
    if constant:
        notes.append("constant statistic or accuracy: ρ undefined")
    elif n_runs < MIN_RUNS:
        notes.append(f"{n_runs} run(s): ρ undefined")
    if n_arch < 2:
        notes.append("one architecture: pooled tests n/a")
    elif n_arch < MIN_CLUSTERS:
        notes.append(f"{n_arch} architectures: no bootstrap over architectures")
    elif _one_cluster_share(n_arch) > (1 - CI_LEVEL) / 2:
        notes.append(f"{n_arch} architectures: {_one_cluster_share(n_arch):.0%} of the bootstrap resamples hold one "
                     "architecture only, so the intervals' ends are single architectures' ρ (coarse)")
    if 0 < n_within < MIN_CLUSTERS:
        notes.append(f"within-architecture ρ rests on {n_within} architecture(s): no bootstrap interval")
    elif n_within != n_arch and _one_cluster_share(n_within) > (1 - CI_LEVEL) / 2:
        notes.append(f"within-architecture ρ rests on {n_within} architectures: its interval is coarse likewise")
    if n_within == 0 and not constant and n_runs >= MIN_RUNS:
        notes.append(f"no architecture with ≥ {MIN_RUNS} runs varying in both: within-architecture ρ n/a"
                     + ("; the pooled ρ compares architectures, not spectra" if n_arch > 1 else ""))
    return "; ".join(notes)


def correlations(runstats: xr.Dataset, n_boot: int = 4000, n_perm: int = 4000, seed: int = 0):
    """Two tidy tables of Spearman correlations between each statistic and accuracy over the runs of each task
    (runs with both defined):

    - ``table``: one row per (task, statistic): n_runs, n_architectures, pooled ρ with its naive p-value and
      its cluster-bootstrap interval, within-architecture ρ with its cluster-bootstrap interval and its
      stratified permutation p-value, the number of architectures it rests on, and a note saying what is n/a;
    - ``by_arch``: one row per (task, statistic, architecture): n_runs, ρ, bootstrap interval over its runs,
      permutation p-value."""
    import pandas as pd

    rows, arch_rows = [], []
    for task in dict.fromkeys(runstats.task.values.tolist()):
        sub = runstats.isel(run=np.flatnonzero(runstats.task.values == task))
        acc, arch = sub.accuracy.values.astype(float), sub.arch.values
        for name in STATISTICS:
            x = sub[name].values.astype(float)
            keep = ~(np.isnan(x) | np.isnan(acc))
            xs, ys, gs = x[keep], acc[keep], arch[keep]
            n_runs, n_arch = len(xs), len(set(gs.tolist()))
            rho, p_naive = spearman(xs, ys)
            rho_w, p_strat = stratified_permutation_test(xs, ys, gs, n_perm=n_perm, seed=seed)
            n_within = within_rho(xs, ys, gs)[1]
            boot = cluster_bootstrap(xs, ys, gs, n_boot=n_boot, seed=seed)
            if n_arch < 2:            # one architecture: nothing pooled to test
                p_strat = float("nan")
            constant = n_runs >= MIN_RUNS and not np.isfinite(rho)
            rows.append(dict(task=task, statistic=name, n_runs=n_runs, n_architectures=n_arch,
                             rho_pooled=rho, p_naive=p_naive, ci_pooled_low=boot["pooled"][0],
                             ci_pooled_high=boot["pooled"][1], rho_within=rho_w, ci_within_low=boot["within"][0],
                             ci_within_high=boot["within"][1], p_stratified=p_strat, n_arch_within=n_within,
                             note=_note(n_runs, n_arch, n_within, constant), ci_level=CI_LEVEL, n_boot=n_boot,
                             n_perm=n_perm))
            for a, xa, ya in _strata(xs, ys, gs):
                lo, hi = bootstrap_spearman_ci(xa, ya, n_boot=n_boot, seed=seed)
                arch_rows.append(dict(task=task, statistic=name, arch=a, n_runs=len(xa), rho=spearman(xa, ya)[0],
                                      ci_low=lo, ci_high=hi, p_permutation=permutation_p(xa, ya, n_perm, seed)))
    by_arch = pd.DataFrame(arch_rows, columns=["task", "statistic", "arch", "n_runs", "rho", "ci_low", "ci_high",
                                               "p_permutation"])
    columns = ["task", "statistic", "n_runs", "n_architectures", "rho_pooled", "p_naive", "ci_pooled_low",
               "ci_pooled_high", "rho_within", "ci_within_low", "ci_within_high", "p_stratified", "n_arch_within",
               "note", "ci_level", "n_boot", "n_perm"]
    return pd.DataFrame(rows, columns=columns), by_arch      # the columns also when no task has runs


def correlations_dataset(table, by_arch, runstats: xr.Dataset) -> xr.Dataset:
    """Both tables and the per-run statistics as one netCDF-ready Dataset: pooled variables on
    (task, statistic), per-architecture ones (prefix ``arch_``) on (task, statistic, arch), per-run ones
    (prefix ``run_``) on run."""
    cols = ["n_runs", "n_architectures", "rho_pooled", "p_naive", "ci_pooled_low", "ci_pooled_high", "rho_within",
            "ci_within_low", "ci_within_high", "p_stratified", "n_arch_within", "note"]
    corr = table.set_index(["task", "statistic"])[cols].to_xarray()
    per_run = [v for v in runstats.variables if v != "run"]     # statistics and axes (task, arch, …) per run
    parts = [corr, runstats.reset_coords().rename({v: f"run_{v}" for v in per_run})]
    if len(by_arch):
        arch = by_arch.set_index(["task", "statistic", "arch"]).to_xarray()
        parts.append(arch.rename({v: f"arch_{v}" for v in arch.data_vars}))
    out = xr.merge(parts, compat="override", join="outer")
    out.attrs.update(method="Spearman rank correlation with test accuracy across the runs of a task, duplicates "
                     "collapsed: pooled (cluster bootstrap over architectures) and within architecture (stratified "
                     "permutation test, accuracy permuted within architecture)", ci_level=CI_LEVEL,
                     n_boot=int(table.n_boot.iloc[0]) if len(table) else 0,
                     n_perm=int(table.n_perm.iloc[0]) if len(table) else 0,
                     accuracy=str(runstats.accuracy.attrs.get("source", "")))
    return out


def _resamples(options: dict) -> dict:
    """The bootstrap and permutation counts ``options`` asks for (``n_boot``, ``n_perm``; 4000 each)."""
    return dict(n_boot=int(options.get("n_boot", 4000)), n_perm=int(options.get("n_perm", 4000)))


def statistics_tables(ds: xr.Dataset, options: dict | None = None):
    """From a summary: (per-run statistics, pooled table, per-architecture table), duplicates collapsed, the
    informative view for models with structural eigenvalues, the accuracy chosen by ``options``
    (``accuracy: final|best``, default final), ``n_boot`` and ``n_perm`` resamples."""
    from eigsweep.figures import selection

    options = dict(options or {})
    acc = selection.accuracy_var(options)
    kept = selection.informative_view(selection.collapse_duplicates(ds))
    runstats = run_statistics(kept, acc=acc)
    table, by_arch = correlations(runstats, **_resamples(options))
    dropped = {r for rest in selection.duplicates(ds).values() for r in rest}
    per_task = {t: sum(1 for r, tt in zip(ds.run.values.tolist(), ds.task.values.tolist()) if tt == t and r in dropped)
                for t in set(ds.task.values.tolist())}
    table.insert(4, "n_duplicates_dropped", [per_task.get(t, 0) for t in table.task])
    table.insert(5, "accuracy", acc.split("_")[0])
    return runstats, table, by_arch


def learned_correlations(runstats: xr.Dataset, ds: xr.Dataset, options: dict | None = None):
    """The correlations (table, by_arch) over the runs that learned something (selection.learned: accuracy at
    least 1% of the way from the task's chance level to 1): does a correlation rest on runs at chance? The
    table says how many runs at chance it left out (``n_at_chance_dropped``)."""
    from eigsweep.figures import selection

    keep = np.zeros(runstats.sizes["run"], dtype=bool)
    for task in dict.fromkeys(runstats.task.values.tolist()):
        at = runstats.task.values == task
        keep[at] = selection.learned(runstats.accuracy.values[at], selection.task_chance(ds, task))
    table, by_arch = correlations(runstats.isel(run=np.flatnonzero(keep)), **_resamples(dict(options or {})))
    dropped = {t: int((~keep & (runstats.task.values == t)).sum()) for t in set(runstats.task.values.tolist())}
    table.insert(4, "n_at_chance_dropped", [dropped.get(t, 0) for t in table.task])
    return table, by_arch


# -- runs that learned against runs at chance -----------------------------------------------------

def outcome_split(runstats: xr.Dataset, chance: float | None, n_perm: int = 100_000, seed: int = 0):
    """For each spectral statistic, the runs that learned (selection.learned) against those at chance: their
    count and range, the Mann–Whitney U of learned over at chance (U = n_learned · n_chance: every learned run
    above every run at chance; 0: below) and its two-sided p from a permutation test (exact over all splits
    when there are at most ``n_perm``; ties, as many runs at 0% or 100%, handled; none with a single run in
    a group). One row per statistic.

    Which runs go in is the caller's choice (``split_summaries``): pooling architectures is a statement about
    a family, to be said as such."""
    import pandas as pd

    from eigsweep.figures import selection

    won = selection.learned(runstats.accuracy.values, chance)
    rows = []
    for name in STATISTICS:
        v = runstats[name].values.astype(float)
        a, b = v[won & ~np.isnan(v)], v[~won & ~np.isnan(v)]          # an infinite horizon is a value, NaN not
        row = dict(statistic=name, n_learned=len(a), n_chance=len(b),
                   learned_min=a.min() if len(a) else np.nan, learned_max=a.max() if len(a) else np.nan,
                   chance_min=b.min() if len(b) else np.nan, chance_max=b.max() if len(b) else np.nan,
                   U=np.nan, p_permutation=np.nan)
        varies = len(np.unique(np.r_[a, b])) > 1
        if len(a) and len(b) and varies:
            row["U"] = float(sps.mannwhitneyu(a, b).statistic)
        if len(a) > 1 and len(b) > 1 and varies:                        # one run alone: no permutation test
            u = lambda x, y, axis=-1: sps.mannwhitneyu(x, y, axis=axis).statistic   # noqa: E731
            row["p_permutation"] = float(sps.permutation_test(
                (a, b), u, permutation_type="independent", vectorized=True, n_resamples=n_perm,
                alternative="two-sided", random_state=seed).pvalue)
        rows.append(row)
    return pd.DataFrame(rows)


def outcome_split_by_arch(runstats: xr.Dataset, ds: xr.Dataset, options: dict | None = None):
    """outcome_split per task and architecture (never pooled across architectures): within each architecture,
    do its runs that learned differ in spectrum from its runs at chance? Rows for every statistic of every
    (task, arch); the test is empty (NaN) where one side has fewer than two runs."""
    import pandas as pd

    from eigsweep.figures import selection

    n_perm = _resamples(dict(options or {}))["n_perm"]
    parts = []
    for task in dict.fromkeys(runstats.task.values.tolist()):
        for arch in dict.fromkeys(runstats.arch.values[runstats.task.values == task].tolist()):
            idx = np.flatnonzero((runstats.task.values == task) & (runstats.arch.values == arch))
            part = outcome_split(runstats.isel(run=idx), selection.task_chance(ds, task), n_perm=n_perm)
            part.insert(0, "arch", arch)
            part.insert(0, "task", task)
            parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["task", "arch", *outcome_split(runstats.isel(run=[]), None).columns])


def split_summaries(paths, archs=None, lrs=None, acc: str = "final_acc"):
    """The per-run statistics of the runs of several summaries (sweeps), each run once (a run copied into
    another sweep has the same run id), kept to ``archs`` and ``lrs`` where given; and the task's chance level
    (one task: a split across tasks compares tasks)."""
    from eigsweep.figures import selection

    parts, seen, chance, tasks = [], set(), None, set()
    for path in paths:
        with xr.open_dataset(path) as ds:
            ds = selection.informative_view(ds.load())
        keep = [i for i, r in enumerate(ds.run_id.values.tolist()) if r not in seen
                and (not archs or ds.arch.values[i] in archs)
                and (not lrs or any(math.isclose(float(ds.lr.values[i]), lr, rel_tol=1e-6) for lr in lrs))]
        if not keep:
            continue
        ds = ds.isel(run=keep)
        seen.update(ds.run_id.values.tolist())
        tasks.update(ds.task.values.tolist())
        chance = selection.task_chance(ds, str(ds.task.values[0]))
        parts.append(run_statistics(ds, acc=acc).drop_vars("status"))
    if len(tasks) > 1:
        raise ValueError(f"runs of several tasks ({', '.join(sorted(tasks))}): split one task at a time")
    if not parts:
        raise ValueError("no run matches the architectures and learning rates asked for")
    return xr.concat(parts, "run", coords="minimal", compat="override"), chance


def main(argv=None) -> None:
    """python -m eigsweep.stats split SUMMARY... [--arch A ...] [--lr LR ...]: the runs that learned against the
    runs at chance, per spectral statistic (outcome_split), over the runs of those summaries."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m eigsweep.stats", description=main.__doc__.splitlines()[0])
    p.add_argument("command", choices=["split"])
    p.add_argument("summaries", nargs="+", help="summary.nc files (results/<sweep>/summary.nc)")
    p.add_argument("--arch", nargs="*", help="architectures to keep (several: a family, pooled)")
    p.add_argument("--lr", nargs="*", type=float, help="learning rates to keep")
    p.add_argument("--accuracy", choices=["final", "best"], default="final")
    args = p.parse_args(argv)
    runstats, chance = split_summaries(args.summaries, args.arch, args.lr, f"{args.accuracy}_acc")
    archs = sorted(set(runstats.arch.values.tolist()))
    print(f"{runstats.sizes['run']} runs ({', '.join(archs)}{': pooled, a family' if len(archs) > 1 else ''}); "
          f"learned: {args.accuracy} test accuracy at least 1% of the way from chance ({chance:.6f}) to 1")
    for r, a in zip(runstats.run.values.tolist(), runstats.accuracy.values):
        print(f"  {r}  {a:.4f}")
    print(outcome_split(runstats, chance).to_string(index=False, float_format=lambda x: f"{x:.4g}"))


ACCURACY_COLUMNS = ("status", "steps_done", "final_val_acc", "final_acc", "best_val_acc", "best_acc")


def accuracy_table(ds: xr.Dataset, options: dict | None = None):
    """One row per run of a summary, in its order: run id, task, arch, modification, lr, seed; then (where the
    summary has them) status, steps trained, the validation and test accuracy of the final model and the best
    during training (``*_val_acc``: the validation split; ``final_acc``/``best_acc``: test); and ``lr_chosen``:
    whether the run's lr is the one the figures use for its model (the best mean validation accuracy over seeds,
    selection.best_lr_runs, on the accuracy ``options`` names). Duplicates are kept: these are per-run facts."""
    import pandas as pd

    from eigsweep.figures import selection

    chosen = set(selection.best_lr_runs(ds, selection.accuracy_var(options)).run.values.tolist())
    cols = {k: ds[k].values for k in ("run_id", "task", "arch", "modification", "lr", "seed")}
    cols.update({k: ds[k].values for k in ACCURACY_COLUMNS if k in ds})
    cols["lr_chosen"] = [r in chosen for r in ds.run.values.tolist()]
    return pd.DataFrame(cols)


def _write_csv_atomic(frame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False, float_format="%.6g")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tables(ds: xr.Dataset, outdir: str | Path, options: dict | None = None) -> list[Path]:
    """results/<sweep>/correlations.csv, correlations_by_arch.csv, correlations.nc, accuracy.csv (accuracy_table),
    the correlations over the runs that learned (learned_correlations: correlations_learned.csv,
    correlations_by_arch_learned.csv) and, per architecture, the runs that learned against those at chance
    (outcome_split_by_arch.csv), written atomically."""
    from eigsweep.figures.catalog import STATISTICS_TABLES     # the names, declared once (the Snakefile's outputs)
    from eigsweep.results import write_atomic

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    runstats, table, by_arch = statistics_tables(ds, options)
    learned_table, learned_by_arch = learned_correlations(runstats, ds, options)
    csvs = {"correlations.csv": table, "correlations_by_arch.csv": by_arch, "accuracy.csv": accuracy_table(ds, options),
            "correlations_learned.csv": learned_table, "correlations_by_arch_learned.csv": learned_by_arch,
            "outcome_split_by_arch.csv": outcome_split_by_arch(runstats, ds, options)}
    for name in STATISTICS_TABLES:
        if name == "correlations.nc":
            write_atomic(correlations_dataset(table, by_arch, runstats), outdir / name)
        else:
            _write_csv_atomic(csvs[name], outdir / name)
    return [outdir / name for name in STATISTICS_TABLES]


# -- intervals over seeds ------------------------------------------------------------------------

# what each interval is, in the words every figure uses
INTERVAL_NAMES = {"std": "mean ± 1 s.d. over seeds and samples", "ci95": "mean ± 95% CI over seeds (t)"}


def mean_interval(values, axis=0, kind: str = "std"):
    """Mean along ``axis`` and the half-width of an interval: ``std`` (one standard deviation, ddof 0)
    or ``ci95`` (Student-t 95% CI of the mean; NaN, not 0, for a single value: one seed has no CI). NaNs
    are ignored."""
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
            half = np.where(n > 1, t * np.nan_to_num(sd) / np.sqrt(np.maximum(n, 1)), np.nan)
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


if __name__ == "__main__":
    main()
