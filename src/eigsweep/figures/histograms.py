"""The distribution behind the seven bins: per task and model, the fine |λ| histogram (every layer, head,
sample and seed at the best learning rate), initialisation (filled grey) against trained (line), on a log
axis with the paper's bin edges; beside it a zoom on (0.9, 1] against 1 − |λ|, with the memory horizon."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from eigsweep import stats
from eigsweep.figures import selection, style
from eigsweep.figures.selection import where


def log_grid_counts(fine: np.ndarray, lower: np.ndarray, upper: np.ndarray, per_decade: int = 16):
    """Re-bin fine counts onto a uniform log10 grid (the fine edges contain it, so this is exact for the
    log-spaced part); returns (grid edges, counts, count below the grid, count above)."""
    lo_exp, hi_exp = np.log10(upper[0]), np.log10(lower[-1])
    grid = 10.0 ** np.linspace(lo_exp, hi_exp, int(round((hi_exp - lo_exp) * per_decade)) + 1)
    idx = np.searchsorted(grid, upper, side="left")           # grid cell whose upper edge holds the fine bin
    counts = np.zeros(len(grid) + 1)
    np.add.at(counts, np.clip(idx, 0, len(grid)), fine)
    return grid, counts[1:len(grid)], counts[0], counts[len(grid)]


def near_one_counts(fine, lower, upper):
    """Counts of the fine bins inside (0.9, 1] as a function of 1 − |λ| (8 bins per decade down to 1e-6)."""
    sel = (lower >= 0.9 - 1e-12) & (upper <= 1.0 + 1e-12)
    return 1 - upper[sel], 1 - lower[sel], fine[sel]


def fine_histograms(ds, options=None, **_):
    options = options or {}
    sub_all = selection.spectrum_runs(ds, selection.accuracy_var(options))
    if sub_all.sizes["run"] == 0:
        return style.message_figure("no successful run in this sweep yet: no spectrum to draw")
    rows = [(t, a, m) for t in selection.unique(sub_all.task.values)
            for a in style.order_models(where(sub_all, task=t).arch.values)
            for m in selection.unique(where(sub_all, task=t, arch=a).modification.values)]
    multi_mod = len(selection.unique(sub_all.modification.values)) > 1
    lower, upper = ds.fine_lower.values, ds.fine_upper.values
    any_count = sub_all.fine_count.fillna(0).sum([d for d in sub_all.fine_count.dims if d != "fine_bin"]).values > 0
    lo_x = max(1e-8, 10 ** np.floor(np.log10(max(upper[any_count].min(), 1e-8)))) if any_count.any() else 1e-8
    hi_x = min(1e4, 10 ** np.ceil(np.log10(max(lower[any_count].max(), 1e-8)))) if any_count.any() else 1e4
    lo_x, hi_x = min(lo_x, 1e-2), max(hi_x, 1e2)
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 0.9 + 1.6 * len(rows)), squeeze=False,
                             gridspec_kw=dict(width_ratios=(2.2, 1)), sharex="col")
    for r, (task, arch, mod) in enumerate(rows):
        runs = where(sub_all, task=task, arch=arch, modification=mod)
        ax, axz = axes[r]
        color = style.color_of(arch)
        top = 0
        for stage in ("init", "trained"):
            fine = runs.fine_count.sel(stage=stage).fillna(0).sum([d for d in runs.fine_count.dims
                                                                    if d not in ("fine_bin", "stage")]).values
            total = fine.sum()
            if total <= 0:
                continue
            grid, counts, below, above = log_grid_counts(fine, lower, upper)
            share = 100 * counts / total
            zlo, zhi, zc = near_one_counts(fine, lower, upper)
            order = np.argsort(zlo)
            zedges = np.append(np.maximum(zlo[order], 1e-7), zhi[order][-1])
            zs = 100 * zc[order] / total
            if stage == "init":
                ax.stairs(share, grid, fill=True, color="0.78")
                axz.stairs(zs, zedges, fill=True, color="0.78")
            else:
                ax.stairs(share, grid, color=color, lw=1.5)
                axz.stairs(zs, zedges, color=color, lw=1.5)
                if below + above > 0:
                    ax.text(0.99, 0.95, f"outside axis: {100 * below / total:.1f}% < 1e-8, "
                                        f"{100 * above / total:.1f}% > 1e4",
                            transform=ax.transAxes, ha="right", va="top", fontsize=6.5, color="0.35")
            top = max(top, share.max())
        ax.set_xscale("log")
        ax.set_xlim(lo_x, hi_x)
        style.log_axis(ax.xaxis, numticks=8)
        ax.set_ylim(0, max(top * 1.3, 1))
        for e in stats.PAPER_EDGES:
            ax.axvline(e, color="0.55", lw=0.6, ls=":")
        ax.set_ylabel("% per 1/16 decade", fontsize=7)
        label = f"{task} · {arch}" + (f" · {mod}" if multi_mod else "")
        view = selection.view_note(runs)
        ax.text(0.005, 0.95, label + f"  ({style.n_text(runs)})", transform=ax.transAxes, fontsize=7.5, va="top",
                ha="left", color=color, fontweight="bold")
        if view:
            ax.text(0.005, 0.72, view, transform=ax.transAxes, fontsize=7, va="top", ha="left",
                    color="firebrick" if selection.VIEW_ABSENT in runs.spectrum_view.values else "0.3")
        axz.set_xscale("log")
        axz.set_xlim(1e-7, 0.1)
        axz.invert_xaxis()
        style.log_axis(axz.xaxis)
        axz.set_ylabel("% per 1/8 decade", fontsize=7)
        if r == 0:
            secz = axz.secondary_xaxis("top", functions=(lambda d: 1 / np.maximum(d, 1e-12),
                                                         lambda t: 1 / np.maximum(t, 1e-12)))
            style.log_axis(secz.xaxis)
            secz.set_xlabel("memory horizon ≈ 1/(1 − |λ|) (tokens)", fontsize=7)
            secz.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("|λ| (log scale; dotted: the paper's bin edges 0.1, 0.5, 0.9, 1, 10, 100)", fontsize=8)
    axes[-1, 1].set_xlabel("1 − |λ| for |λ| in (0.9, 1]", fontsize=8)
    fig.legend(handles=[Patch(color="0.78", label="at initialisation"),
                        Line2D([], [], color="0.2", lw=1.5, label="trained (colour: model)")],
               loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False,
               title="share of all eigenvalues (every layer, head, sample and seed at the best lr)",
               title_fontsize=8)
    fig.tight_layout(h_pad=0.3)
    return fig
