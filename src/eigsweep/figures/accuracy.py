"""Test accuracy per model (and modification), one panel per task: the final model's accuracy (bar: mean over
the seeds of the best learning rate; filled points: each run) beside the best during training (open points),
with the task's chance level."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from eigsweep.figures import selection, style
from eigsweep.figures.selection import where


def _entries(sub):
    """(model, modification) pairs of a task, models grouped by family, the baseline modification first."""
    return [(a, m) for a in style.order_models(sub.arch.values)
            for m in selection.unique(where(sub, arch=a).modification.values)]


def accuracy(ds, options=None, **_):
    options = options or {}
    acc = selection.accuracy_var(options)
    other = "best_acc" if acc == "final_acc" else "final_acc"
    kept = selection.collapse_duplicates(ds)
    tasks = selection.unique(kept.task.values)
    multi_mod = len(selection.unique(kept.modification.values)) > 1
    width = max(len(_entries(where(kept, task=t))) for t in tasks)
    ncol = max(1, min(len(tasks), int(12 // (1.2 + 0.45 * width)) or 1))
    nrow = int(np.ceil(len(tasks) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * (1.4 + 0.5 * width), 0.6 + 3.3 * nrow), squeeze=False)
    for i, task in enumerate(tasks):
        ax = axes[i // ncol, i % ncol]
        sub = where(kept, task=task)
        best = selection.best_lr_runs(sub, acc)
        entries = _entries(sub)
        for x, (arch, mod) in enumerate(entries):
            st = style.model_style(arch)
            b = where(best, arch=arch, modification=mod)
            ok = b.status.values == "ok"
            vals = np.where(ok, b[acc].values.astype(float), 0.0)
            ax.bar(x, vals.mean(), 0.7, color=style.lighten(st["color"], 0.45), hatch=st["hatch"], edgecolor="white",
                   zorder=1)
            jitter = np.linspace(-0.08, 0.08, len(vals)) if len(vals) > 1 else np.zeros(1)
            other_vals = np.where(ok, b[other].values.astype(float), np.nan)
            # the final model's accuracy left of centre (filled), the best during training right (open)
            ax.hlines(np.where(ok, vals, np.nan), x + jitter - 0.14, x + jitter + 0.14, color="0.3", lw=0.5, zorder=2)
            ax.scatter(x + jitter - 0.14, vals, marker=st["marker"], s=26, color=st["color"], edgecolor="black",
                       lw=0.5, zorder=3)
            ax.scatter(x + jitter + 0.14, other_vals, marker=st["marker"], s=26, facecolor="white",
                       edgecolor=st["color"], lw=0.9, zorder=3)
            if (~ok).any():
                ax.scatter(x + jitter[~ok], np.zeros((~ok).sum()), marker="x", color="black", s=30, zorder=4)
            rest = where(sub, arch=arch, modification=mod)
            rest = rest.isel(run=[k for k, r in enumerate(rest.run.values) if r not in set(b.run.values.tolist())])
            if rest.sizes["run"]:   # runs at the other learning rates: small grey points
                ax.scatter(np.full(rest.sizes["run"], x + 0.3), np.nan_to_num(rest[acc].values.astype(float)), s=8,
                           color="0.55", zorder=2)
        chance = selection.task_chance(ds, task)
        if chance is not None:
            ax.axhline(chance, color="0.35", ls="--", lw=0.9, zorder=0)
        labels = [a + (f"\n{m}" if multi_mod else "") for a, m in entries]
        ax.set_xticks(range(len(entries)), labels, rotation=45 if len(entries) > 4 else 0,
                      ha="right" if len(entries) > 4 else "center", fontsize=7.5)
        ax.set_xlim(-0.6, len(entries) - 0.4)
        ax.set_ylim(0, 1.12)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(False, axis="x")
        ax.set_title(task, fontsize=9)
        style.corner_text(ax, style.n_text(best) + (f"\nchance {chance:.3g}" if chance is not None else ""),
                          loc="upper left", width=30 + 8 * len(entries))
        if i % ncol == 0:
            ax.set_ylabel(f"test accuracy ({acc.split('_')[0]} model)", fontsize=8)
    for j in range(len(tasks), nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    name, oname = acc.split("_")[0], other.split("_")[0]
    handles = [Patch(facecolor="0.8", label=f"bar: mean {name} accuracy over seeds (best lr)"),
               Line2D([], [], marker="o", ls="", color="0.3", markeredgecolor="black", label=f"{name} model, one run (left)"),
               Line2D([], [], marker="o", ls="", markerfacecolor="white", color="0.3",
                      label=(f"{oname} during training" if oname == "best" else "final model") + " (right)"),
               Line2D([], [], color="0.35", ls="--", label="chance (uniform guess)")]
    if (ds.status.values != "ok").any():
        handles.append(Line2D([], [], marker="x", ls="", color="black", label="diverged or unstable (drawn at 0)"))
    if len(set(ds.lr.values.tolist())) > 1:
        handles.append(Line2D([], [], marker="o", ls="", color="0.55", markersize=3, label="other learning rates"))
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 3), fontsize=8,
               frameon=False, title="colour, marker and hatch: model", title_fontsize=8)
    fig.tight_layout()
    dropped = selection.duplicates(ds)
    if dropped:
        fig.notes = [f"Duplicate runs shown once ({sum(map(len, dropped.values()))} runs of a model under a "
                     "modification it does not read)."]
    return fig
