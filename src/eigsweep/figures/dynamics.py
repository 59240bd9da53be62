"""How the spectrum moves during training, one column per (task, model family) so no panel holds more than a
family's lines: rows are the shares of |λ| near 0, near 1 and above 1 (mean over layers and heads) at the
checkpoint steps (step 0: initialisation), and the test accuracy. Thick line: mean over seeds; thin: each seed.
Runs that reach the target accuracy stop early, so their thin lines end early; in the mean a stopped run keeps its
last value (its parameters no longer change), else the mean would jump when a seed stops."""
from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from eigsweep import registry, stats
from eigsweep.figures import selection, style
from eigsweep.figures.selection import where

MOD_STYLES = ("-", "--", ":", "-.", (0, (6, 1.5, 1, 1.5, 1, 1.5)), (0, (1, 3)), (0, (10, 3)),
              (0, (3, 1, 1, 1, 1, 1, 1, 1)))   # distinct dashes for up to 8 modifications, then they repeat
MAX_COLUMNS = 5


def _share(runs, name):
    """Share (%) of the |λ| bins of a statistic over checkpoint steps, mean over layers and heads."""
    v = runs.bin_fraction_during.sel(bin=list(stats.BIN_GROUPS[name])).sum("bin", min_count=1)
    return 100 * v.mean(("layer", "head"))


def carried_forward(v: np.ndarray) -> np.ndarray:
    """Each row (a run over steps) with the NaNs after its last finite value replaced by that value, up to the
    last step any row reached: a run that stopped early keeps its final model while another seed still trains.
    NaNs before or between values stay."""
    out = np.array(v, dtype=float)
    last = [ok[-1] if (ok := np.flatnonzero(np.isfinite(row))).size else -1 for row in out]
    for row, end in zip(out, last):
        if end >= 0:
            row[end + 1:max(last) + 1] = row[end]
    return out


def _view_note(sub) -> str:
    """Which spectrum the structural (DeltaNet-family) runs show during training: their informative eigenvalue
    where the result files keep it (informative_bin_fraction_during), else the full one, said on the panel."""
    notes = []
    for arch in selection.unique(sub.arch.values):
        if not (arch in registry.MIXERS and registry.MIXERS[arch].structural):
            continue
        runs = where(sub, arch=arch)
        v = runs.get("informative_bin_fraction_during")
        has = v is not None and bool(v.notnull().any([d for d in v.dims if d != "run"]).all())
        notes.append(f"{arch}: informative eigenvalue only" if has else f"{arch}: {selection.ABSENT_NOTE}")
    return "; ".join(notes)


def training_dynamics(ds, options=None, **_):
    options = options or {}
    acc = selection.accuracy_var(options)
    sub_all = selection.spectrum_runs(ds, acc) if "bin_fraction_during" in ds else ds.isel(run=[])
    if sub_all.sizes["run"] == 0:
        return style.message_figure("no successful run with spectra during training yet")
    cols = [(t, f) for t in selection.unique(sub_all.task.values)
            for f in dict.fromkeys(style.model_family(a) for a in style.order_models(where(sub_all, task=t).arch.values))]
    quantities = [*stats.BIN_GROUPS, "accuracy"]
    ncol = min(len(cols), MAX_COLUMNS)
    blocks = int(np.ceil(len(cols) / ncol))
    nrow = blocks * len(quantities)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 0.8 + 1.9 * nrow), squeeze=False)
    all_mods = selection.unique(sub_all.modification.values)
    steps = sub_all.spectrum_step.values
    for i, (task, fam) in enumerate(cols):
        sub = where(sub_all, task=task)
        sub = sub.isel(run=[k for k, a in enumerate(sub.arch.values) if style.model_family(a) == fam])
        b, c = divmod(i, ncol)
        for q, name in enumerate(quantities):
            ax = axes[b * len(quantities) + q, c]
            for arch in style.order_models(sub.arch.values):
                st = style.model_style(arch)
                for mod in selection.unique(where(sub, arch=arch).modification.values):
                    runs = where(sub, arch=arch, modification=mod)
                    ls = MOD_STYLES[all_mods.index(mod) % len(MOD_STYLES)]
                    if name == "accuracy":
                        x, v = runs.eval_step.values, runs.test_acc.values.astype(float)
                    else:
                        x, v = steps, _share(runs, name).transpose("run", ...).values
                    for k in range(v.shape[0]):
                        ok = np.isfinite(v[k])
                        if runs.sizes["run"] > 1:
                            ax.plot(x[ok], v[k][ok], color=st["color"], lw=0.6, ls=ls, alpha=0.45)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)   # steps no seed reached: NaN
                        mean = np.nanmean(carried_forward(v), axis=0)
                    ok = np.isfinite(mean)
                    ax.plot(x[ok], mean[ok], color=st["color"], lw=1.6, ls=ls, marker=st["marker"], ms=3.5)
            if name == "accuracy":
                ax.set_ylim(0, 1.03)
                chance = selection.task_chance(ds, task)
                if chance is not None:
                    ax.axhline(chance, color="0.35", ls="--", lw=0.8)
            else:
                ax.set_ylim(-3, 103)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel("test accuracy" if name == "accuracy" else f"% {stats.STAT_SHORT[name]}", fontsize=8)
            if q == 0:
                ax.set_title(f"{task}\n{fam}", fontsize=8.5)
                note = _view_note(sub)
                style.corner_text(ax, style.n_text(sub) + (f"\n{note}" if note else ""), loc="upper right",
                                  fontsize=6.5, color="firebrick" if note else "0.25")
            if q == len(quantities) - 1:
                ax.set_xlabel("training step", fontsize=8)
    for j in range(len(cols), blocks * ncol):
        b, c = divmod(j, ncol)
        for q in range(len(quantities)):
            axes[b * len(quantities) + q, c].axis("off")
    archs = style.order_models(sub_all.arch.values)
    handles = [Line2D([], [], color=style.color_of(a), marker=style.model_style(a)["marker"], lw=1.6, label=a)
               for a in archs]
    if len(all_mods) > 1:
        handles += [Line2D([], [], color="0.3", ls=MOD_STYLES[k % len(MOD_STYLES)], label=m) for k, m in enumerate(all_mods)]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 8), fontsize=8,
               frameon=False, title_fontsize=8,
               title="spectrum at checkpoint steps (step 0: init), mean over layers and heads; thick: mean over "
                     "seeds (a run stopped early counts with its last value), thin: each seed; dashed horizontal: "
                     "chance")
    fig.tight_layout()
    return fig
