"""Modification studies: for each task and model trained under more than one modification (duplicates
collapsed: a modification the model does not read is not a variant), the trained spectrum of every variant
(pooled over layers) beside its accuracy."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from eigsweep import stats
from eigsweep.figures import selection, style
from eigsweep.figures.selection import where


def modifications(ds, options=None, **_):
    options = options or {}
    interval = options.get("interval", "std")
    acc = selection.accuracy_var(options)
    kept = selection.collapse_duplicates(ds)
    spec = selection.spectrum_runs(ds, acc)
    panels = [(t, a) for t in selection.unique(kept.task.values) for a in style.order_models(where(kept, task=t).arch.values)
              if len(selection.unique(where(kept, task=t, arch=a).modification.values)) > 1]
    if not panels:
        return style.message_figure("no model in this sweep has more than one modification it reads "
                                    "(duplicates collapsed)")
    bins = [str(b) for b in ds.bin.values.tolist()]
    all_mods = selection.unique(kept.modification.values)
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 0.8 + 2.8 * len(panels)), squeeze=False,
                             gridspec_kw=dict(width_ratios=(3.2, 1)))
    one_seed = False
    for r, (task, arch) in enumerate(panels):
        mods = selection.unique(where(kept, task=task, arch=arch).modification.values)
        base = style.color_of(arch)
        shades = {m: style.lighten(base, a) for m, a in zip(all_mods, np.linspace(0.0, 0.6, len(all_mods)))}
        ax, axa = axes[r]
        width = 0.84 / len(mods)
        for m, mod in enumerate(mods):
            hatch = style.HATCHES[all_mods.index(mod) % len(style.HATCHES)]
            runs = where(spec, task=task, arch=arch, modification=mod)
            x = np.arange(len(bins)) - 0.42 + width * (m + 0.5)
            if runs.sizes["run"]:
                pooled = runs.mean("layer", skipna=True).assign(
                    bin_fraction_std=np.sqrt((runs.bin_fraction_std ** 2).mean("layer", skipna=True)))
                mean, err = stats.pooled_share(pooled, kind=interval)
                e = 100 * err.sel(stage="trained").values
                one_seed |= bool(np.isnan(e).any())
                ax.bar(x, 100 * mean.sel(stage="trained").values, width, yerr=np.nan_to_num(e), color=shades[mod],
                       hatch=hatch, edgecolor="0.15", lw=0.4, error_kw=dict(lw=0.6, capsize=1.0, ecolor="0.2"))
            allm = where(kept, task=task, arch=arch, modification=mod)
            best = selection.best_lr_runs(allm, acc)
            vals = np.where(best.status.values == "ok", best[acc].values.astype(float), 0.0)
            axa.bar(m, vals.mean(), 0.7, color=shades[mod], hatch=hatch, edgecolor="0.15", lw=0.4)
            jitter = np.linspace(-0.18, 0.18, len(vals)) if len(vals) > 1 else np.zeros(1)
            axa.scatter(m + jitter, vals, s=16, color="black", zorder=3)
        chance = selection.task_chance(ds, task)
        if chance is not None:
            axa.axhline(chance, color="0.35", ls="--", lw=0.9)
        ax.set_xticks(np.arange(len(bins)), bins, rotation=30, fontsize=8)
        ax.set_xlim(-0.5, len(bins) - 0.5)
        ax.grid(False, axis="x")
        axa.grid(False, axis="x")
        ax.set_ylabel("share of eigenvalues (%)", fontsize=8)
        ax.set_title(f"{task} · {arch}: trained spectrum (all layers)", fontsize=9)
        runs = where(spec, task=task, arch=arch)
        view = selection.view_note(runs)
        style.corner_text(ax, style.n_text(runs) + (f"\n{view}" if view else ""), width=90,
                          color="firebrick" if selection.VIEW_ABSENT in runs.spectrum_view.values else "0.25")
        ax.set_ylim(0, 122 if view else 112)
        ax.set_yticks(np.arange(0, 101, 20))
        axa.set_xticks(range(len(mods)), mods, rotation=30, ha="right", fontsize=8)
        axa.set_ylim(0, 1.05)
        axa.set_ylabel(f"test accuracy ({acc.split('_')[0]})", fontsize=8)
        axa.set_title("accuracy (dots: runs; dashed: chance)", fontsize=8)
        if r == len(panels) - 1:
            ax.set_xlabel("|λ| bin", fontsize=8)
    title = f"modification (shade and hatching; colour: model); bars: {style.interval_name(interval)}"
    if one_seed and interval == "ci95":
        title += " (n/a with one seed: no error bar)"
    fig.legend(handles=[Patch(facecolor=style.lighten((0.3, 0.3, 0.3), a), hatch=style.HATCHES[m % len(style.HATCHES)],
                              edgecolor="0.15", lw=0.4, label=mod)
                        for m, (mod, a) in enumerate(zip(all_mods, np.linspace(0.0, 0.6, len(all_mods))))],
               loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(all_mods), fontsize=8, frameon=False,
               title=title, title_fontsize=8)
    fig.tight_layout()
    return fig
