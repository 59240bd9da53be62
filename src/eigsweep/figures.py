"""Figures built from a sweep's summary.nc alone (no training).

One builder per figure family (see figures_index.FAMILIES). Conventions shared by every figure: one fixed
colour per model (``arch_colors``), init drawn light and trained dark, the paper's bin edges as tick labels,
and a footnote naming the runs whose result files are missing (figures built from existing results).

Which runs a figure shows: the spectrum figures use, for each (task, model, modification), the learning
rate with the best mean accuracy over seeds (Zoology's protocol) and pool its seeds; the correlation figure
uses every run.
"""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from eigsweep import registry, stats  # noqa: E402
from eigsweep.figures_index import FAMILIES, FIGURES  # noqa: E402

STAGES = ("init", "trained")
MAX_GROUPED_MODELS = 5   # spectrum bars: beyond this many models, one panel per model
MOD_HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "--", "++")


# -- shared helpers ------------------------------------------------------------------------------

def arch_colors() -> dict[str, tuple]:
    """One fixed colour per registered model, the same in every figure (and every sweep)."""
    names = list(registry.MIXERS)
    # distinct hues: tab10 without its grey (grey marks neutral legend entries), then Dark2, then husl
    base = [c for i, c in enumerate(sns.color_palette("tab10", 10)) if i != 7] + sns.color_palette("Dark2", 8)
    extra = sns.color_palette("husl", max(0, len(names) - len(base)))
    return dict(zip(names, base + extra))


def color_of(arch: str) -> tuple:
    return arch_colors().get(arch, (0.4, 0.4, 0.4))


def _lighten(color, amount=0.55):
    return tuple(1 - (1 - c) * (1 - amount) for c in color[:3])


def _unique(values) -> list:
    """Distinct values in a stable, meaningful order: models in registry order, the baseline modification
    ``none`` first, everything else in order of appearance."""
    vals = list(dict.fromkeys(np.asarray(values).tolist()))
    order = {a: i for i, a in enumerate(registry.MIXERS)}
    if vals and all(isinstance(v, str) and v in order for v in vals):
        return sorted(vals, key=order.get)
    if "none" in vals:
        return ["none"] + [v for v in vals if v != "none"]
    return vals


def _runs(ds: xr.Dataset, **sel) -> xr.Dataset:
    keep = np.ones(ds.sizes["run"], dtype=bool)
    for k, v in sel.items():
        keep &= ds[k].values == v
    return ds.isel(run=np.flatnonzero(keep))


def ok_runs(ds: xr.Dataset) -> xr.Dataset:
    return ds.isel(run=np.flatnonzero(ds.status.values == "ok"))


def best_lr_runs(ds: xr.Dataset) -> xr.Dataset:
    """For each (task, arch, modification), the runs of the learning rate with the best mean accuracy."""
    keep = []
    for key in {(t, a, m) for t, a, m in zip(ds.task.values, ds.arch.values, ds.modification.values)}:
        idx = np.flatnonzero((ds.task.values == key[0]) & (ds.arch.values == key[1]) & (ds.modification.values == key[2]))
        lrs = ds.lr.values[idx]
        means = {lr: np.nanmean(np.nan_to_num(ds.best_acc.values[idx][lrs == lr], nan=0.0)) for lr in set(lrs.tolist())}
        best = max(means, key=lambda lr: (means[lr], -lr))
        keep.extend(idx[lrs == best].tolist())
    return ds.isel(run=sorted(keep))


def baseline_modification(ds: xr.Dataset) -> str:
    mods = _unique(ds.modification.values)
    return "none" if "none" in mods else mods[0]


def spectrum_runs(ds: xr.Dataset) -> xr.Dataset:
    """The runs the spectrum figures show: trained fine (status ok), best learning rate per group."""
    ok = ok_runs(ds)
    return best_lr_runs(ok) if ok.sizes["run"] else ok


def _layers_of(ds: xr.Dataset) -> list:
    """Layers in which some run has data (the union over runs of different depths)."""
    has = ds.bin_fraction.sel(stage="init").notnull().any([d for d in ds.bin_fraction.dims if d not in ("layer", "stage")])
    return [l for l, h in zip(ds.layer.values.tolist(), has.values.tolist()) if h]


def missing_note(fig, missing: list[str], y: float = 0.0) -> None:
    """Name the missing runs under the figure (figures built from existing results only)."""
    if not missing:
        return
    shown = ", ".join(missing[:6]) + (f", … (+{len(missing) - 6} more)" if len(missing) > 6 else "")
    text = f"Missing runs (no result file, not shown): {shown}"
    fig.text(0.01, y, "\n".join(textwrap.wrap(text, 150)), fontsize=7, color="firebrick", ha="left", va="top")


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".png"), dpi=150, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)


def _empty(path: Path, message: str, missing: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(message, 80)), ha="center", va="center", fontsize=10)
    missing_note(fig, missing)
    _save(fig, path)


def _bin_labels(ds) -> list[str]:
    return [str(b) for b in ds.bin.values.tolist()]


def _stage_legend(archs: list[str], init=True) -> list:
    handles = [Patch(facecolor=color_of(a), label=a) for a in archs]
    if init:
        handles += [Patch(facecolor="0.8", edgecolor="0.5", lw=0.5, label="light: at initialisation"),
                    Patch(facecolor="0.25", label="dark: trained")]
    return handles


# -- 1. spectrum bars ----------------------------------------------------------------------------

def _grouped_bars(ax, sub: xr.Dataset, archs, bins, interval, head=None):
    n = 2 * len(archs)
    width = 0.84 / n
    for a, arch in enumerate(archs):
        runs = _runs(sub, arch=arch)
        if runs.sizes["run"] == 0:
            continue
        if head is not None:
            runs = runs.sel(head=[head])
        mean, err = stats.pooled_share(runs, kind=interval)
        for s, stage in enumerate(STAGES):
            x = np.arange(len(bins)) - 0.42 + width * (2 * a + s + 0.5)
            color = color_of(arch) if stage == "trained" else _lighten(color_of(arch))
            ax.bar(x, 100 * mean.sel(stage=stage).values, width, yerr=100 * err.sel(stage=stage).values,
                   color=color, edgecolor="none", error_kw=dict(lw=0.6, capsize=1.0, ecolor="0.2"))
    ax.set_xticks(np.arange(len(bins)), bins, rotation=35, fontsize=8)
    ax.set_xlim(-0.5, len(bins) - 0.5)
    ax.set_ylim(0, 105)
    ax.grid(False, axis="x")


def spectrum_bars(ds: xr.Dataset, path: Path, missing=(), interval="std", per_head=False) -> None:
    """Per task (and modification) and layer: share of |λ| in the 7 bins per model, init vs trained."""
    sub_all = spectrum_runs(ds)
    if sub_all.sizes["run"] == 0:
        return _empty(path, "No successful run in this sweep yet: no spectrum to draw.", list(missing))
    bins = _bin_labels(ds)
    layers = _layers_of(sub_all)
    rows = [(t, m) for t in _unique(sub_all.task.values) for m in _unique(_runs(sub_all, task=t).modification.values)]
    if per_head:
        rows = [(t, m, h) for t, m in rows for h in sub_all["head"].values.tolist()
                if bool(_runs(sub_all, task=t, modification=m).bin_fraction.sel(head=h).notnull().any())]
    multi_mod = len(_unique(sub_all.modification.values)) > 1
    all_archs = _unique(sub_all.arch.values)
    # the paper's layout (models side by side in one panel per layer) while it stays readable; with many
    # models, small multiples: one panel per (model, layer), several models per figure row
    many = len(all_archs) > MAX_GROUPED_MODELS
    panels = []   # (row label, panel sub-dataset, models, layer, head)
    for row in rows:
        task, mod = row[:2]
        sub = _runs(sub_all, task=task, modification=mod)
        head = row[2] if per_head else None
        label = f"{task}" + (f" · {mod}" if multi_mod else "") + (f" · head {head}" if per_head else "")
        for arch in (_unique(sub.arch.values) if many else [None]):
            for layer in layers:
                panels.append((label, sub, [arch] if many else _unique(sub.arch.values), layer, head, arch))
    ncol = len(layers) * (max(1, 4 // len(layers)) if many else 1)
    nrow = int(np.ceil(len(panels) / ncol))
    width = (2.2 + 0.75 * len(all_archs)) * len(layers) if not many else 3.3 * ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(width, 0.6 + (2.9 if not many else 2.4) * nrow), squeeze=False,
                             sharey=True)
    for i, (label, sub, archs, layer, head, arch) in enumerate(panels):
        ax = axes[i // ncol, i % ncol]
        lsub = sub.sel(layer=layer)
        present = _runs(lsub, arch=arch) if arch else lsub
        if not bool(present.bin_fraction.notnull().any()):
            ax.text(0.5, 0.5, f"no layer {layer}", transform=ax.transAxes, ha="center", color="0.5")
        _grouped_bars(ax, lsub, archs, bins, interval, head=head)
        ax.set_title(f"{label} · " + (f"{arch} · " if arch else "") + f"layer {layer}", fontsize=9,
                     color=color_of(arch) if arch else "black")
        if i // ncol == nrow - 1 or i + ncol >= len(panels):
            ax.set_xlabel("|λ| bin (magnitude of DSF eigenvalue)", fontsize=8)
        if i % ncol == 0:
            ax.set_ylabel("share of eigenvalues (%)", fontsize=8)
    for j in range(len(panels), nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    err_name = "±1 s.d. over seeds and samples" if interval == "std" else "95% CI over seeds"
    fig.legend(handles=_stage_legend(all_archs), loc="lower center", bbox_to_anchor=(0.5, 1.0),
               ncol=min(len(all_archs) + 2, 10), fontsize=8, frameon=False, title=f"bars: mean; error bars: {err_name}",
               title_fontsize=8)
    fig.tight_layout()
    missing_note(fig, list(missing))
    _save(fig, path)


def spectrum_bars_per_head(ds, path, missing=(), interval="std", **_):
    spectrum_bars(ds, path, missing, interval, per_head=True)


# -- accuracy ------------------------------------------------------------------------------------

LR_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def accuracy(ds: xr.Dataset, path: Path, missing=(), **_) -> None:
    """Best test accuracy per model (one point per run; bar: mean over the best learning rate's seeds)."""
    tasks = _unique(ds.task.values)
    mods = _unique(ds.modification.values)
    base = baseline_modification(ds)
    sub_all = _runs(ds, modification=base) if len(mods) > 1 else ds
    n_arch = max(len(_unique(_runs(sub_all, task=t).arch.values)) for t in tasks)
    fig, axes = plt.subplots(1, len(tasks), figsize=(len(tasks) * (1.4 + 0.8 * n_arch), 3.4), squeeze=False)
    lrs_all = sorted(set(ds.lr.values.tolist()))
    for ax, task in zip(axes[0], tasks):
        sub = _runs(sub_all, task=task)
        best = best_lr_runs(sub)
        archs = _unique(sub.arch.values)
        for i, arch in enumerate(archs):
            runs = _runs(sub, arch=arch)
            b = _runs(best, arch=arch)
            accb = b.best_acc.values.astype(float)[b.status.values == "ok"]
            if len(accb):
                ax.bar(i, np.nanmean(accb), 0.7, color=_lighten(color_of(arch), 0.4), zorder=1)
            acc = runs.best_acc.values.astype(float)
            ok = runs.status.values == "ok"
            jitter = np.linspace(-0.2, 0.2, len(acc)) if len(acc) > 1 else np.zeros(1)
            for j in range(len(acc)):
                marker = LR_MARKERS[lrs_all.index(float(runs.lr.values[j])) % len(LR_MARKERS)] if ok[j] else "x"
                ax.scatter(i + jitter[j], acc[j] if ok[j] else 0.0, marker=marker, zorder=3, s=24,
                           color=color_of(arch) if ok[j] else "black", edgecolor="black" if ok[j] else None, lw=0.5)
        ax.set_xticks(range(len(archs)), archs, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(archs) - 0.4)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("test accuracy (best during training)")
        ax.set_title(task + (f" · {base}" if len(mods) > 1 else ""), fontsize=10)
    if len(lrs_all) > 1 or (ds.status.values != "ok").any():
        handles = [Line2D([], [], marker=LR_MARKERS[i % len(LR_MARKERS)], ls="", color="0.4", label=f"lr {lr:.2g}")
                   for i, lr in enumerate(lrs_all)]
        if (ds.status.values != "ok").any():
            handles.append(Line2D([], [], marker="x", ls="", color="black", label="diverged (drawn at 0)"))
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), fontsize=8,
                   frameon=False)
    fig.tight_layout()
    missing_note(fig, list(missing))
    _save(fig, path)


# -- 2. modification studies ---------------------------------------------------------------------

def modifications(ds: xr.Dataset, path: Path, missing=(), interval="std", **_) -> None:
    """Per task and model with more than one modification: trained spectrum bars per modification (pooled
    over layers) beside the accuracy of each variant."""
    ok = spectrum_runs(ds)
    panels = [(t, a) for t in _unique(ds.task.values) for a in _unique(_runs(ds, task=t).arch.values)
              if len(_unique(_runs(ds, task=t, arch=a).modification.values)) > 1]
    if not panels:
        return _empty(path, "No model in this sweep has more than one modification.", list(missing))
    bins = _bin_labels(ds)
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 0.8 + 2.8 * len(panels)), squeeze=False,
                             gridspec_kw=dict(width_ratios=(3.2, 1)))
    for r, (task, arch) in enumerate(panels):
        mods = _unique(_runs(ds, task=task, arch=arch).modification.values)
        all_mods = _unique(ds.modification.values)
        shades = {mod: _lighten(color_of(arch), a) for mod, a in zip(all_mods, np.linspace(0.0, 0.6, len(all_mods)))}
        ax, axa = axes[r]
        width = 0.84 / len(mods)
        for m, mod in enumerate(mods):
            g = all_mods.index(mod)
            runs = _runs(ok, task=task, arch=arch, modification=mod)
            x = np.arange(len(bins)) - 0.42 + width * (m + 0.5)
            if runs.sizes["run"]:
                pooled = runs.mean("layer", skipna=True).assign(
                    bin_fraction_std=np.sqrt((runs.bin_fraction_std ** 2).mean("layer", skipna=True)))
                mean, err = stats.pooled_share(pooled, kind=interval)
                ax.bar(x, 100 * mean.sel(stage="trained").values, width, yerr=100 * err.sel(stage="trained").values,
                       color=shades[mod], hatch=MOD_HATCHES[g % len(MOD_HATCHES)], edgecolor="0.15", lw=0.4,
                       error_kw=dict(lw=0.6, capsize=1.0, ecolor="0.2"), label=mod)
            allm = _runs(ds, task=task, arch=arch, modification=mod)
            acc = np.where(allm.status.values == "ok", allm.best_acc.values.astype(float), 0.0)
            best = _runs(best_lr_runs(allm), status="ok") if allm.sizes["run"] else allm
            if best.sizes["run"]:
                axa.bar(m, np.nanmean(best.best_acc.values.astype(float)), 0.7, color=shades[mod],
                        hatch=MOD_HATCHES[g % len(MOD_HATCHES)], edgecolor="0.15", lw=0.4)
            jitter = np.linspace(-0.18, 0.18, len(acc)) if len(acc) > 1 else np.zeros(1)
            axa.scatter(m + jitter, acc, s=16, color="black", zorder=3)
        ax.set_xticks(np.arange(len(bins)), bins, rotation=30, fontsize=8)
        ax.set_xlim(-0.5, len(bins) - 0.5)
        ax.set_ylim(0, 105)
        ax.grid(False, axis="x")
        axa.grid(False, axis="x")
        ax.set_ylabel("share of eigenvalues (%)", fontsize=8)
        ax.set_title(f"{task} · {arch}: trained spectrum (all layers)", fontsize=9)
        axa.set_xticks(range(len(mods)), mods, rotation=30, ha="right", fontsize=8)
        axa.set_ylim(0, 1.02)
        axa.set_ylabel("test accuracy (best)", fontsize=8)
        axa.set_title("accuracy", fontsize=9)
        if r == len(panels) - 1:
            ax.set_xlabel("|λ| bin (magnitude of DSF eigenvalue)", fontsize=8)
    all_mods = _unique(ds.modification.values)
    shades = [_lighten((0.3, 0.3, 0.3), a) for a in np.linspace(0.0, 0.6, len(all_mods))]
    fig.legend(handles=[Patch(facecolor=shades[m], hatch=MOD_HATCHES[m % len(MOD_HATCHES)], edgecolor="0.15", lw=0.4,
                              label=mod) for m, mod in enumerate(all_mods)],
               loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(all_mods), fontsize=8, frameon=False,
               title="modification (shade and hatching; colour: model); error bars ±1 s.d.", title_fontsize=8)
    fig.tight_layout()
    missing_note(fig, list(missing))
    _save(fig, path)


# -- 3. correlation ------------------------------------------------------------------------------

def correlation_tables(ds: xr.Dataset, outdir: Path, n_boot: int = 4000):
    """Per-run statistics and the (task, statistic) Spearman table; written to correlations.{csv,nc}."""
    runstats = stats.run_statistics(ds)
    table = stats.correlations(runstats, n_boot=n_boot)
    outdir.mkdir(parents=True, exist_ok=True)
    table.to_csv(outdir / "correlations.csv", index=False, float_format="%.6g")
    from eigsweep.results import write_atomic

    write_atomic(stats.correlations_dataset(table, runstats), outdir / "correlations.nc")
    return runstats, table


def _rho_text(row) -> str:
    if not np.isfinite(row.spearman_rho):
        return f"ρ undefined (n = {row.n_runs})"
    return (f"Spearman ρ = {row.spearman_rho:+.2f} (n = {row.n_runs})\n"
            f"95% bootstrap CI [{row.ci_low:+.2f}, {row.ci_high:+.2f}]")


def correlation(ds: xr.Dataset, path: Path, missing=(), table=None, runstats=None, **_) -> None:
    """Per task: each spectral statistic against test accuracy over all runs, Spearman ρ and bootstrap CI."""
    if table is None:
        runstats, table = correlation_tables(ds, path.parent.parent)
    tasks = _unique(runstats.task.values)
    mods = _unique(runstats.modification.values)
    lrs = sorted(set(runstats.lr.values.tolist()))
    fig, axes = plt.subplots(len(tasks), len(stats.STATISTICS), figsize=(3.3 * len(stats.STATISTICS), 0.9 + 3.0 * len(tasks)),
                             squeeze=False, sharey="row")
    for r, task in enumerate(tasks):
        sub = runstats.isel(run=np.flatnonzero(runstats.task.values == task))
        for c, name in enumerate(stats.STATISTICS):
            ax = axes[r, c]
            x = sub[name].values.astype(float)
            y = sub.accuracy.values.astype(float)
            finite = x[np.isfinite(x)]
            if name == "median_horizon":
                cap = (np.nanmax(finite) * 3 if len(finite) else 1e3)
                inf = np.isinf(x)
                x = np.where(inf, cap, x)
                ax.set_xscale("log")
                # plain numbers at 1-2-5 steps: readable over the one or two decades horizons span here
                ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
                ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                if inf.any():
                    ax.axvline(cap, color="0.6", ls=":", lw=0.8)
                    ax.text(cap, 0.02, " ∞ (|λ|≥1)", fontsize=7, color="0.4", rotation=90, va="bottom", ha="right")
            for j in range(len(x)):
                if not np.isfinite(x[j]):
                    continue
                arch, mod, lr = str(sub.arch.values[j]), str(sub.modification.values[j]), float(sub.lr.values[j])
                ax.scatter(x[j], y[j], color=color_of(arch), s=30, edgecolor="black", lw=0.4, zorder=3,
                           marker=LR_MARKERS[(mods.index(mod) * len(lrs) + lrs.index(lr)) % len(LR_MARKERS)])
            row = table[(table.task == task) & (table.statistic == name)].iloc[0]
            ax.text(0.5, 0.985, _rho_text(row), transform=ax.transAxes, va="top", ha="center", fontsize=7.5,
                    bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9))
            ax.set_xlabel(stats.STAT_LABELS[name], fontsize=8)
            ax.set_ylim(-0.03, 1.3)
            ax.set_yticks(np.linspace(0, 1, 6))
            ax.margins(x=0.08)
            if c == 0:
                ax.set_ylabel(f"{task}\ntest accuracy (best)", fontsize=8)
    archs = _unique(runstats.arch.values)
    handles = [Line2D([], [], marker="o", ls="", color=color_of(a), markeredgecolor="black", label=a) for a in archs]
    if len(mods) * len(lrs) > 1:
        pairs = _unique([f"{m}|{float(lr)!r}" for m, lr in zip(runstats.modification.values, runstats.lr.values)])
        for p in pairs:
            m, lr = p.split("|")
            lr = float(lr)
            handles.append(Line2D([], [], marker=LR_MARKERS[(mods.index(m) * len(lrs) + lrs.index(lr)) % len(LR_MARKERS)],
                                  ls="", color="0.5", label=(f"{m}, " if len(mods) > 1 else "") + f"lr {lr:.2g}"))
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(8, len(handles)), fontsize=8,
               frameon=False, title="trained spectrum (all layers, heads) vs accuracy; one point per run",
               title_fontsize=8)
    fig.tight_layout()
    missing_note(fig, list(missing))
    _save(fig, path)


def correlation_heatmap(ds: xr.Dataset, path: Path, missing=(), table=None, **_) -> None:
    """Spearman ρ per (task, statistic), annotated with its bootstrap 95% CI."""
    if table is None:
        _, table = correlation_tables(ds, path.parent.parent)
    tasks = _unique(table.task.values)
    rho = table.pivot(index="task", columns="statistic", values="spearman_rho").reindex(index=tasks, columns=list(stats.STATISTICS))
    annot = table.assign(txt=[f"{r.spearman_rho:+.2f}\n[{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if np.isfinite(r.spearman_rho)
                              else "n/a" for r in table.itertuples()]) \
        .pivot(index="task", columns="statistic", values="txt").reindex(index=tasks, columns=list(stats.STATISTICS))
    fig, ax = plt.subplots(figsize=(2.0 + 1.9 * len(stats.STATISTICS), 1.3 + 0.75 * len(tasks)))
    sns.heatmap(rho.astype(float), ax=ax, vmin=-1, vmax=1, cmap="vlag", annot=annot.values, fmt="",
                annot_kws=dict(fontsize=8), linewidths=0.5, linecolor="white",
                cbar_kws=dict(label="Spearman ρ with test accuracy"))
    ax.set_xticklabels([stats.STAT_SHORT[s] for s in stats.STATISTICS], rotation=0, fontsize=8)
    ax.set_yticklabels(tasks, rotation=0, fontsize=8)
    ax.set_xlabel("spectral statistic (trained)")
    ax.set_ylabel("task")
    fig.tight_layout()
    missing_note(fig, list(missing))
    _save(fig, path)


# -- 4. distributions ----------------------------------------------------------------------------

def _log_grid_counts(fine: np.ndarray, lower: np.ndarray, upper: np.ndarray, per_decade: int = 16):
    """Re-bin fine counts onto a uniform log10 grid (the fine edges contain it, so this is exact for the
    log-spaced part); returns (grid edges, counts, count below the grid, count above)."""
    lo_exp, hi_exp = np.log10(upper[0]), np.log10(lower[-1])
    grid = 10.0 ** np.linspace(lo_exp, hi_exp, int(round((hi_exp - lo_exp) * per_decade)) + 1)
    idx = np.searchsorted(grid, upper, side="left")           # grid cell whose upper edge holds the fine bin
    counts = np.zeros(len(grid) + 1)
    np.add.at(counts, np.clip(idx, 0, len(grid)), fine)
    return grid, counts[1:len(grid)], counts[0], counts[len(grid)]


def _near_one_counts(fine, lower, upper):
    """Counts of the fine bins inside (0.9, 1] as a function of 1 − |λ| (8 bins per decade down to 1e-6)."""
    sel = (lower >= 0.9 - 1e-12) & (upper <= 1.0 + 1e-12)
    return 1 - upper[sel], 1 - lower[sel], fine[sel]


def fine_histograms(ds: xr.Dataset, path: Path, missing=(), **_) -> None:
    """Per task and model: the fine |λ| histogram (all layers, heads, samples and seeds), init vs trained,
    on a log axis with the paper's bin edges; and a zoom on (0.9, 1] against 1 − |λ| (memory horizon)."""
    sub_all = spectrum_runs(ds)
    if sub_all.sizes["run"] == 0:
        return _empty(path, "No successful run in this sweep yet: no spectrum to draw.", list(missing))
    base = baseline_modification(sub_all)
    sub_all = _runs(sub_all, modification=base)
    rows = [(t, a) for t in _unique(sub_all.task.values) for a in _unique(_runs(sub_all, task=t).arch.values)]
    lower, upper = ds.fine_lower.values, ds.fine_upper.values
    any_count = sub_all.fine_count.fillna(0).sum([d for d in sub_all.fine_count.dims if d != "fine_bin"]).values > 0
    lo_x = max(1e-8, 10 ** np.floor(np.log10(max(upper[any_count].min(), 1e-8)))) if any_count.any() else 1e-8
    hi_x = min(1e4, 10 ** np.ceil(np.log10(max(lower[any_count].max(), 1e-8)))) if any_count.any() else 1e4
    lo_x, hi_x = min(lo_x, 1e-2), max(hi_x, 1e2)
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 0.7 + 1.55 * len(rows)), squeeze=False,
                             gridspec_kw=dict(width_ratios=(2.2, 1)), sharex="col")
    for r, (task, arch) in enumerate(rows):
        runs = _runs(sub_all, task=task, arch=arch)
        ax, axz = axes[r]
        top = 0
        for stage in STAGES:
            fine = runs.fine_count.sel(stage=stage).fillna(0).sum([d for d in runs.fine_count.dims
                                                                    if d not in ("fine_bin", "stage")]).values
            total = fine.sum()
            if total <= 0:
                continue
            grid, counts, below, above = _log_grid_counts(fine, lower, upper)
            share = 100 * counts / total
            color = color_of(arch) if stage == "trained" else _lighten(color_of(arch), 0.5)
            if stage == "init":
                ax.stairs(share, grid, fill=True, color=color, alpha=0.8, label="init")
            else:
                ax.stairs(share, grid, color=color, lw=1.4, label="trained")
            top = max(top, share.max())
            zlo, zhi, zc = _near_one_counts(fine, lower, upper)
            order = np.argsort(zlo)
            zedges = np.append(np.maximum(zlo[order], 1e-7), zhi[order][-1])
            zs = 100 * zc[order] / total
            if stage == "init":
                axz.stairs(zs, zedges, fill=True, color=color, alpha=0.8)
            else:
                axz.stairs(zs, zedges, color=color, lw=1.4)
            if below + above > 0 and stage == "trained":
                ax.text(0.99, 0.95, f"outside axis: {100 * below / total:.1f}% < 1e-8, {100 * above / total:.1f}% > 1e4",
                        transform=ax.transAxes, ha="right", va="top", fontsize=6.5, color="0.35")
        ax.set_xscale("log")
        ax.set_xlim(lo_x, hi_x)
        ax.set_ylim(0, max(top * 1.25, 1))
        for e in stats.PAPER_EDGES:
            ax.axvline(e, color="0.55", lw=0.6, ls=":")
        ax.set_ylabel("% per 1/16 decade", fontsize=8)
        ax.text(0.005, 0.95, f"{task} · {arch}", transform=ax.transAxes, fontsize=8, va="top", ha="left",
                color=color_of(arch), fontweight="bold")
        axz.set_xscale("log")
        axz.set_xlim(1e-7, 0.1)
        axz.invert_xaxis()
        axz.set_ylabel("% per 1/8 decade", fontsize=8)
        if r == 0:
            ax.legend(handles=[Patch(color="0.75", label="at initialisation"),
                               Line2D([], [], color="0.2", lw=1.4, label="trained")], fontsize=7, loc="upper center",
                      ncol=2, frameon=False)
            secz = axz.secondary_xaxis("top", functions=(lambda d: 1 / np.maximum(d, 1e-12), lambda t: 1 / np.maximum(t, 1e-12)))
            secz.set_xlabel("memory horizon ≈ 1/(1−|λ|) (tokens)", fontsize=7)
            secz.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("|λ| (log scale; dotted: the paper's bin edges 0.1, 0.5, 0.9, 1, 10, 100)", fontsize=8)
    axes[-1, 1].set_xlabel("1 − |λ| for |λ| in (0.9, 1] (log scale)", fontsize=8)
    fig.tight_layout(h_pad=0.4)
    missing_note(fig, list(missing))
    _save(fig, path)


def complex_plane(ds: xr.Dataset, path: Path, missing=(), **_) -> None:
    """LTI models: their eigenvalues in the complex plane (unit circle drawn), init vs trained."""
    if "lti_eigenvalue_real" not in ds:
        return _empty(path, "No stored LTI eigenvalues in these result files (no LTI model, or files written "
                            "before eigsweep stored them).", list(missing))
    sub_all = spectrum_runs(ds)
    sub_all = _runs(sub_all, modification=baseline_modification(sub_all)) if sub_all.sizes["run"] else sub_all
    has = sub_all.lti_eigenvalue_real.notnull().any([d for d in sub_all.lti_eigenvalue_real.dims if d != "run"]).values
    sub_all = sub_all.isel(run=np.flatnonzero(has))
    if sub_all.sizes["run"] == 0:
        return _empty(path, "No successful LTI run in this sweep yet.", list(missing))
    rows = [(t, a) for t in _unique(sub_all.task.values) for a in _unique(_runs(sub_all, task=t).arch.values)]
    fig, axes = plt.subplots(len(rows), 3, figsize=(10.5, 0.4 + 3.4 * len(rows)), squeeze=False)
    theta = np.linspace(0, 2 * np.pi, 400)
    markers = ("o", "s", "^", "D", "v", "P")
    for r, (task, arch) in enumerate(rows):
        run = _runs(sub_all, task=task, arch=arch).isel(run=0)      # one seed: the eigenvalues of one model
        layers = [l for l in run.layer.values.tolist() if bool(run.lti_eigenvalue_real.sel(layer=l).notnull().any())]
        for c, stage in enumerate(STAGES):
            ax = axes[r, c]
            ax.plot(np.cos(theta), np.sin(theta), color="0.3", lw=0.8)
            ax.axhline(0, color="0.8", lw=0.5)
            ax.axvline(0, color="0.8", lw=0.5)
            color = color_of(arch)
            n_points = int(run.lti_eigenvalue_real.sel(stage=stage).notnull().sum())
            size = 22 if n_points <= 200 else 8
            style = dict(facecolors="none", edgecolors=color, lw=0.8) if stage == "init" else \
                dict(color=color, lw=0, alpha=0.75)
            for k, l in enumerate(layers):
                re = run.lti_eigenvalue_real.sel(stage=stage, layer=l).values
                im = run.lti_eigenvalue_imag.sel(stage=stage, layer=l).values
                ax.scatter(re, im, s=size, marker=markers[k % len(markers)], label=f"layer {l}", **style)
                mag = np.hypot(re, im)
                axes[r, 2].scatter(np.degrees(np.abs(np.arctan2(im, re))), np.clip(1 - mag, 1e-9, None), s=size,
                                   marker=markers[k % len(markers)], **style)
            ax.set_xlim(-1.15, 1.15)
            ax.set_ylim(-1.15, 1.15)
            ax.set_aspect("equal")
            ax.set_xlabel("Re λ", fontsize=8)
            ax.set_ylabel("Im λ", fontsize=8)
            ax.set_title(f"{task} · {arch} · {'at initialisation' if stage == 'init' else 'trained'}", fontsize=9)
            if len(layers) > 1 and c == 0:
                ax.legend(fontsize=6.5, loc="lower left", frameon=False)
        axz = axes[r, 2]
        axz.set_yscale("log")
        axz.invert_yaxis()
        axz.set_xlim(-5, 185)
        axz.set_xlabel("|arg λ| (degrees)", fontsize=8)
        axz.set_ylabel("1 − |λ| (log scale)", fontsize=8)
        axz.set_title("distance to the unit circle (up: closer)", fontsize=9)
        axz.legend(handles=[Line2D([], [], marker="o", ls="", markerfacecolor="none", color=color_of(arch), label="init"),
                            Line2D([], [], marker="o", ls="", color=color_of(arch), label="trained")],
                   fontsize=7, loc="lower right")
    fig.tight_layout()
    missing_note(fig, list(missing))
    _save(fig, path)


# -- 5. training dynamics ------------------------------------------------------------------------

def _bin_title(label: str) -> str:
    return f"|λ| {label.replace('>', '> ')}" if label.startswith(">") else f"|λ| in {label}"


def training_dynamics(ds: xr.Dataset, path: Path, missing=(), **_) -> None:
    """Per task: the share of each |λ| bin over training steps (mean over layers and heads), one line per
    run (runs that stop early at the target accuracy end early); last panel: the test accuracy curves."""
    sub_all = spectrum_runs(ds)
    if sub_all.sizes["run"] == 0 or "bin_fraction_during" not in ds:
        return _empty(path, "No successful run with spectra during training yet.", list(missing))
    sub_all = _runs(sub_all, modification=baseline_modification(sub_all))
    tasks = _unique(sub_all.task.values)
    bins = _bin_labels(ds)
    ncol = 4
    nrow_task = int(np.ceil((len(bins) + 1) / ncol))
    fig, axes = plt.subplots(nrow_task * len(tasks), ncol, figsize=(11, 0.6 + 2.3 * nrow_task * len(tasks)),
                             squeeze=False)
    styles = ("-", "--", ":", "-.")
    for t, task in enumerate(tasks):
        sub = _runs(sub_all, task=task)
        archs = _unique(sub.arch.values)
        steps = sub.spectrum_step.values
        panels = [axes[t * nrow_task + i // ncol, i % ncol] for i in range(nrow_task * ncol)]
        for c, b in enumerate(bins):
            ax = panels[c]
            for arch in archs:
                runs = _runs(sub, arch=arch)
                share = 100 * runs.bin_fraction_during.sel(bin=b).mean(("layer", "head"))
                for k in range(runs.sizes["run"]):
                    v = share.isel(run=k).values
                    ok = np.isfinite(v)
                    ax.plot(steps[ok], v[ok], color=color_of(arch), lw=1.2, ls=styles[k % len(styles)], marker="o",
                            ms=2.5, alpha=0.9)
            ax.set_title(_bin_title(b), fontsize=9)
            ax.set_ylim(-3, 103)
            ax.set_ylabel("share of eigenvalues (%)" if c % ncol == 0 else "", fontsize=8)
        ax = panels[len(bins)]
        for arch in archs:
            runs = _runs(sub, arch=arch)
            for k in range(runs.sizes["run"]):
                acc = runs.test_acc.isel(run=k).values
                ok = np.isfinite(acc)
                ax.plot(runs.eval_step.values[ok], acc[ok], color=color_of(arch), lw=1.2, ls=styles[k % len(styles)])
        ax.set_title("test accuracy", fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy", fontsize=8)
        for ax in panels[len(bins) + 1:]:
            ax.axis("off")
        for ax in panels[: len(bins) + 1]:
            ax.set_xlabel("training step", fontsize=8)
            ax.tick_params(labelsize=7)
        if len(tasks) > 1:
            panels[0].annotate(task, (0, 1.18), xycoords="axes fraction", fontsize=10, fontweight="bold")
    archs = _unique(sub_all.arch.values)
    seeds = sorted(set(sub_all.seed.values.tolist()))
    handles = [Line2D([], [], color=color_of(a), lw=1.6, label=a) for a in archs]
    if len(seeds) > 1:
        handles += [Line2D([], [], color="0.4", lw=1.2, ls=styles[k % len(styles)], label=f"run {k + 1} (seed)")
                    for k in range(min(len(seeds), len(styles)))]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), fontsize=8,
               frameon=False, title="spectrum at checkpoint steps (init = step 0), mean over layers and heads",
               title_fontsize=8)
    fig.tight_layout()
    missing_note(fig, list(missing))
    _save(fig, path)


# -- entry points --------------------------------------------------------------------------------

BUILDERS = {
    "spectrum_bars": spectrum_bars, "spectrum_bars_per_head": spectrum_bars_per_head, "accuracy": accuracy,
    "modifications": modifications, "correlation": correlation, "correlation_heatmap": correlation_heatmap,
    "fine_histograms": fine_histograms, "complex_plane": complex_plane, "training_dynamics": training_dynamics,
}
assert set(BUILDERS) == set(FIGURES)


def load_summary(summary: str | Path) -> xr.Dataset:
    with xr.open_dataset(summary) as ds:
        return ds.load()


def make_family(family: str, summary: str | Path, outdir: str | Path, expected: list[str] | None = None,
                options: dict | None = None) -> list[Path]:
    """Draw every figure of one family from ``summary`` into ``outdir`` (results/<sweep>/figures); runs in
    ``expected`` without a result in the summary are named on each figure as missing."""
    sns.set_theme(style="whitegrid", context="paper")
    options = dict(options or {})
    ds = load_summary(summary)
    outdir = Path(outdir)
    present = set(ds.run.values.tolist())
    missing = [r for r in (expected or []) if r not in present]
    if missing:
        logging.getLogger("eigsweep.figures").warning("missing runs (not shown): %s", ", ".join(missing))
    kw = dict(missing=missing, interval=options.get("interval", "std"))
    if family == "correlation":
        runstats, table = correlation_tables(ds, outdir.parent, n_boot=int(options.get("n_boot", 4000)))
        kw.update(table=table, runstats=runstats)
    made = []
    for name in FAMILIES[family]:
        BUILDERS[name](ds, outdir / name, **kw)
        made.append(outdir / f"{name}.png")
    return made


def make_figures(summary: str | Path, outdir: str | Path, names=None, expected=None, options=None) -> list[Path]:
    """Every applicable figure family (default: all families whose figures are in ``names``)."""
    names = set(names or FIGURES)
    made = []
    for family, figs in FAMILIES.items():
        if names & set(figs):
            made += make_family(family, summary, outdir, expected, options)
    return made
