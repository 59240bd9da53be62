"""Figures built from a sweep's summary.nc alone (no training)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402

from eigsweep import registry  # noqa: E402
from eigsweep.figures_index import FIGURES  # noqa: E402


def arch_colors() -> dict[str, tuple]:
    """One fixed colour per registered model, the same in every figure."""
    names = list(registry.MIXERS)
    return dict(zip(names, sns.color_palette("husl", len(names))))


def _lighten(color, amount=0.55):
    return tuple(1 - (1 - c) * (1 - amount) for c in color)


def pooled_bins(ds: xr.Dataset, var: str = "bin_fraction") -> tuple[xr.DataArray, xr.DataArray]:
    """Mean over runs and heads, and the total std (within-run sample std and between-run spread)."""
    mean_runs = ds[var].mean("head")
    within = (ds[f"{var}_std"] ** 2).mean("head")
    mean = mean_runs.mean("run")
    total_var = within.mean("run") + mean_runs.var("run", ddof=0)
    return mean, np.sqrt(total_var)


def spectrum_bars(ds: xr.Dataset, path: Path) -> None:
    colors = arch_colors()
    ok = ds.where(ds.status == "ok", drop=True) if (ds.status == "ok").any() else ds
    tasks = list(dict.fromkeys(ok.task.values.tolist()))
    layers = ok.layer.values.tolist()
    fig, axes = plt.subplots(len(tasks), len(layers), figsize=(4.8 * len(layers), 3.4 * len(tasks)),
                             squeeze=False, sharey=True)
    bins = ok.bin.values.tolist()
    for r, task in enumerate(tasks):
        sub = ok.where(ok.task == task, drop=True)
        archs = list(dict.fromkeys(sub.arch.values.tolist()))
        width = 0.8 / (2 * len(archs))
        for c, layer in enumerate(layers):
            ax = axes[r, c]
            for a, arch in enumerate(archs):
                runs = sub.where(sub.arch == arch, drop=True)
                mean, std = pooled_bins(runs.sel(layer=layer))
                for s, stage in enumerate(("init", "trained")):
                    x = np.arange(len(bins)) - 0.4 + width * (2 * a + s + 0.5)
                    color = colors[arch] if stage == "trained" else _lighten(colors[arch])
                    ax.bar(x, 100 * mean.sel(stage=stage), width, yerr=100 * std.sel(stage=stage), color=color,
                           edgecolor="none", error_kw=dict(lw=0.6, capsize=1.2),
                           label=f"{arch} ({stage})" if (r, c) == (0, 0) else None)
            ax.set_xticks(np.arange(len(bins)), bins, rotation=35, fontsize=8)
            ax.set_title(f"{task} · layer {layer}", fontsize=10)
            ax.set_xlabel("|λ| bin")
            if c == 0:
                ax.set_ylabel("share of eigenvalues (%)")
            ax.set_ylim(0, 105)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(6, len(labels)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.06 * max(1, int(np.ceil(len(labels) / 6))) / len(tasks)))
    _save(fig, path)


def accuracy(ds: xr.Dataset, path: Path) -> None:
    colors = arch_colors()
    tasks = list(dict.fromkeys(ds.task.values.tolist()))
    fig, axes = plt.subplots(1, len(tasks), figsize=(1.2 + 1.1 * len(set(ds.arch.values.tolist())), 3.4) if len(tasks) == 1
                             else (4 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = ds.where(ds.task == task, drop=True)
        archs = list(dict.fromkeys(sub.arch.values.tolist()))
        for i, arch in enumerate(archs):
            runs = sub.where(sub.arch == arch, drop=True)
            acc = runs.best_acc.values.astype(float)
            ok = runs.status.values == "ok"
            if ok.any():
                ax.bar(i, np.nanmean(acc[ok]), 0.65, color=_lighten(colors[arch], 0.35))
            jitter = np.linspace(-0.15, 0.15, len(acc)) if len(acc) > 1 else np.zeros(1)
            ax.scatter(i + jitter[ok], acc[ok], color=colors[arch], edgecolor="black", lw=0.5, zorder=3, s=22)
            ax.scatter(i + jitter[~ok], np.zeros((~ok).sum()), marker="x", color="black", zorder=3, s=22)
        ax.set_xticks(range(len(archs)), archs, rotation=30)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("test accuracy (best)")
        ax.set_title(task, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".png"), dpi=150, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)


BUILDERS = {"spectrum_bars": spectrum_bars, "accuracy": accuracy}


def make_figures(summary: str | Path, outdir: str | Path) -> list[Path]:
    sns.set_theme(style="whitegrid", context="paper")
    with xr.open_dataset(summary) as ds:
        ds = ds.load()
    outdir = Path(outdir)
    made = []
    for name in FIGURES:
        BUILDERS[name](ds, outdir / name)
        made.append(outdir / f"{name}.png")
    return made
