"""Accuracy against learning rate, one panel per task (sweeps with more than one lr): for each model (and
modification), the final model's test accuracy of every run (points: seeds) and its mean over seeds (solid
line), the validation accuracy's mean where the runs have a validation split (dotted line: what chose the lr),
and the chosen lr ringed (selection.best_lr_runs). Dashed horizontal: the task's chance level. Each task has a
linear and a logarithmic accuracy axis: the second keeps near-chance accuracies (0.0003 vs 0.016) apart."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from eigsweep.figures import selection, style
from eigsweep.figures.selection import where


def lr_sensitivity(ds, options=None, **_):
    acc = selection.accuracy_var(options)
    kept = selection.collapse_duplicates(ds)
    tasks = selection.unique(kept.task.values)
    ncol = min(len(tasks), 2)                      # each task: a linear and a logarithmic accuracy axis
    nrow = int(np.ceil(len(tasks) / ncol))
    fig, axes = plt.subplots(nrow, 2 * ncol, figsize=(4.2 * 2 * ncol, 0.8 + 3.4 * nrow), squeeze=False)
    seen = set()
    for i, task in enumerate(tasks):
        sub = where(kept, task=task)
        chance = selection.task_chance(ds, task)
        chosen = selection.best_lr_runs(sub, acc)
        for k, log_y in enumerate((False, True)):
            ax = axes[i // ncol, 2 * (i % ncol) + k]
            seen |= _panel(ax, sub, chosen, acc, chance, log_y)
            ax.set_title(task + (" (log scale: near-chance accuracies apart)" if log_y else ""), fontsize=9)
            if k == 0:
                style.corner_text(ax, style.n_text(sub) + (f"\nchance {chance:.3g}" if chance is not None else ""),
                                  loc="upper left")
                ax.set_ylabel(f"test accuracy ({acc.split('_')[0]} model)", fontsize=8)
                ax.legend(fontsize=7, loc="center right", frameon=False)
    for j in range(2 * len(tasks), 2 * nrow * ncol):
        axes[j // (2 * ncol), j % (2 * ncol)].axis("off")
    handles = [Line2D([], [], color="0.3", lw=1.4, marker="o", markersize=4, markeredgecolor="black",
                      label="test: mean over seeds (line), each run (points)"),
               Line2D([], [], ls="", marker="o", markersize=10, markerfacecolor="none", markeredgecolor="0.3",
                      label="the lr the figures use (chosen on " + ("validation" if "val" in seen else "test") + ")"),
               Line2D([], [], color="0.35", ls="--", label="chance (uniform guess)")]
    if "val" in seen:
        handles.insert(1, Line2D([], [], color="0.3", lw=1.0, ls=":", label="validation: mean over seeds"))
    if "diverged" in seen:
        handles.append(Line2D([], [], marker="x", ls="", color="black", label="diverged or unstable (drawn at 0)"))
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 3), fontsize=8,
               frameon=False, title="colour and marker: model", title_fontsize=8)
    fig.tight_layout()
    return fig


def _panel(ax, sub, chosen, acc: str, chance: float | None, log_y: bool) -> set[str]:
    """One task's curves on ``ax`` (``chosen``: its runs at the lr the figures use); on a log axis accuracies
    below a floor (chance / 4, or 1e-5) sit on it. Returns what was drawn of {"val", "diverged"}."""
    val = acc.replace("_acc", "_val_acc")
    floor = (chance / 4 if chance else 1e-5) if log_y else -np.inf
    seen = set()
    for arch in style.order_models(sub.arch.values):
        for mod in selection.unique(where(sub, arch=arch).modification.values):
            runs = where(sub, arch=arch, modification=mod)
            st = style.model_style(arch)
            ok = runs.status.values == "ok"
            lr = runs.lr.values.astype(float)
            y = np.where(ok, runs[acc].values.astype(float), 0.0)             # diverged counts as 0, as chosen
            lrs = np.unique(lr)
            ax.plot(lrs, np.maximum([y[lr == v].mean() for v in lrs], floor), color=st["color"], lw=1.4, zorder=2,
                    label=arch if mod == selection.baseline_modification(sub) else f"{arch} / {mod}")
            ax.scatter(lr[ok], np.maximum(y[ok], floor), marker=st["marker"], s=18, color=st["color"],
                       edgecolor="black", lw=0.4, zorder=3)
            if (~ok).any():
                seen.add("diverged")
                ax.scatter(lr[~ok], np.maximum(y[~ok], floor), marker="x", s=26, color="black", zorder=4)
            if val in runs and np.isfinite(runs[val].values.astype(float)).all():
                seen.add("val")
                v = np.where(ok, runs[val].values.astype(float), 0.0)
                ax.plot(lrs, np.maximum([v[lr == x].mean() for x in lrs], floor), color=st["color"], lw=1.0, ls=":",
                        zorder=2)
            best = where(chosen, arch=arch, modification=mod)
            if best.sizes["run"]:
                b_lr = float(best.lr.values[0])
                ax.scatter([b_lr], [max(y[lr == b_lr].mean(), floor)], s=150, facecolor="none",
                           edgecolor=st["color"], lw=1.3, zorder=4)
    if chance is not None:
        ax.axhline(chance, color="0.35", ls="--", lw=0.9, zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate", fontsize=8)
    if log_y:
        ax.set_yscale("log")
        ax.set_ylim(floor / 1.5, 1.5)
    else:
        ax.set_ylim(-0.03, 1.12)
    return seen
