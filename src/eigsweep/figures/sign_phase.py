"""Sign and phase of the eigenvalues, at initialisation and trained, per model (and modification):

- real spectra: the share of λ < 0 (the last phase bin (90°, 180°], or ``negative_fraction`` when stored);
  a model whose λ stay in [0, 1] cannot flip a state's sign, which running parity needs;
- complex spectra: the distribution of |arg λ| over the five phase bins.

Each entry is at its best learning rate, seeds pooled (mean; dots: seeds), labelled with its accuracy.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from eigsweep import registry, stats
from eigsweep.figures import selection, style
from eigsweep.figures.selection import where


def _is_complex(arch) -> bool:
    return bool(getattr(registry.MIXERS.get(arch), "complex", False))


def _entries(sub, complex_: bool):
    return [(a, m) for a in style.order_models(sub.arch.values) if _is_complex(a) == complex_
            for m in selection.unique(where(sub, arch=a).modification.values)]


def _label(sub, arch, mod, acc, multi_mod):
    runs = where(sub, arch=arch, modification=mod)
    a = np.nanmean(runs[acc].values.astype(float))
    return f"{arch}" + (f"\n{mod}" if multi_mod else "") + f"\nacc {a:.2f}"


def _real_panel(ax, sub, entries, acc, multi_mod):
    neg = stats.negative_share(sub)
    top = 0.0
    for x, (arch, mod) in enumerate(entries):
        st = style.model_style(arch)
        idx = np.flatnonzero((sub.arch.values == arch) & (sub.modification.values == mod))
        v = neg.isel(run=idx)
        for s, (stage, off) in enumerate((("init", -0.2), ("trained", 0.2))):
            vals = v.sel(stage=stage).values
            m = float(np.nanmean(vals))
            face = st["color"] if stage == "trained" else "white"
            ax.bar(x + off, m, 0.38, color=face, edgecolor=st["color"], hatch=st["hatch"] if stage == "trained" else "",
                   lw=1.0)
            ax.scatter(np.full(len(vals), x + off), vals, s=9, color="black", zorder=3)
            top = max(top, np.nanmax(vals) if np.isfinite(vals).any() else 0)
            if m > 0:
                ax.text(x + off, max(m, np.nanmax(vals)) * 1.03, f"{m:.3g}%", ha="center", va="bottom", fontsize=6.5,
                        color="0.2")
    if top == 0:
        ax.text(0.5, 0.5, "no λ < 0 in these runs,\nat initialisation or trained", transform=ax.transAxes,
                ha="center", va="center", fontsize=8, color=style.NA_COLOR)
    ax.set_xticks(range(len(entries)), [_label(sub, a, m, acc, multi_mod) for a, m in entries], fontsize=7)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.set_ylim(0, max(1.0, top * 1.35))
    ax.set_ylabel("share of λ < 0 (%)", fontsize=8)
    ax.grid(False, axis="x")


def _complex_panel(ax, sub, entries, acc, multi_mod):
    phase = sub.phase_fraction.mean([d for d in sub.phase_fraction.dims if d not in ("run", "stage", "phase_bin")])
    labels = [str(b) for b in sub.phase_bin.values.tolist()]
    colors = sns.color_palette("mako_r", len(labels))
    for x, (arch, mod) in enumerate(entries):
        idx = np.flatnonzero((sub.arch.values == arch) & (sub.modification.values == mod))
        for stage, off in (("init", -0.2), ("trained", 0.2)):
            shares = 100 * phase.isel(run=idx).sel(stage=stage).mean("run").values
            bottom = 0.0
            for k, share in enumerate(shares):
                ax.bar(x + off, share, 0.38, bottom=bottom, color=colors[k], edgecolor="white", lw=0.4,
                       alpha=0.45 if stage == "init" else 1.0)
                bottom += share
        ax.text(x - 0.2, 101, "i", ha="center", fontsize=6.5)
        ax.text(x + 0.2, 101, "t", ha="center", fontsize=6.5)
    ax.set_xticks(range(len(entries)), [_label(sub, a, m, acc, multi_mod) for a, m in entries], fontsize=7)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.set_ylim(0, 122)
    ax.set_yticks(np.arange(0, 101, 20))
    ax.set_ylabel("share of eigenvalues by |arg λ| (%)", fontsize=8)
    ax.grid(False, axis="x")
    return [Patch(color=c, label=f"|arg λ| ∈ {l}°") for c, l in zip(colors, labels)]


def sign_phase(ds, options=None, **_):
    options = options or {}
    acc = selection.accuracy_var(options)
    sub_all = selection.spectrum_runs(ds, acc)
    if sub_all.sizes["run"] == 0:
        return style.message_figure("no successful run in this sweep yet: no spectrum to draw")
    tasks = selection.unique(sub_all.task.values)
    multi_mod = len(selection.unique(sub_all.modification.values)) > 1
    kinds = [k for k in (False, True) if any(_is_complex(a) == k for a in sub_all.arch.values)]
    widths = [max(1, max(len(_entries(where(sub_all, task=t), k)) for t in tasks)) for k in kinds]
    # one row per task with a real and a complex panel; with one kind, the tasks' panels wrap into rows
    ncol = len(kinds) if len(kinds) > 1 else max(1, min(len(tasks), int(14 // (2.0 + 0.9 * widths[0]))))
    panels = [(t, k) for t in tasks for k in kinds]
    nrow = int(np.ceil(len(panels) / ncol))
    ratios = widths if len(kinds) > 1 else [1] * ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(sum(2.0 + 0.9 * w for w in widths) * (ncol if len(kinds) == 1 else 1),
                                                  0.8 + 3.4 * nrow), squeeze=False, gridspec_kw=dict(width_ratios=ratios))
    phase_handles = []
    for i, (task, complex_) in enumerate(panels):
        ax = axes[i // ncol, i % ncol]
        sub = where(sub_all, task=task)
        entries = _entries(sub, complex_)
        what = "phase distribution (complex λ; i: init, faded; t: trained)" if complex_ else "share of λ < 0 (real λ)"
        if not entries:
            style.na_panel(ax, f"no {'complex' if complex_ else 'real'}-spectrum model on this task", f"{task} · {what}")
            continue
        if complex_:
            phase_handles = _complex_panel(ax, sub, entries, acc, multi_mod)
        else:
            _real_panel(ax, sub, entries, acc, multi_mod)
        ax.set_title(f"{task}\n{what}", fontsize=9)
        shown = sub.isel(run=[k for k, a in enumerate(sub.arch.values) if _is_complex(a) == complex_])
        note = style.n_text(shown)
        if selection.view_note(shown):
            note += "\n" + selection.view_note(shown)
        style.corner_text(ax, note, loc="upper left", width=28 + 10 * len(entries),
                          color="firebrick" if selection.VIEW_ABSENT in shown.spectrum_view.values else "0.25")
    for j in range(len(panels), nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    handles = [Patch(facecolor="white", edgecolor="0.3", label="at initialisation"),
               Patch(facecolor="0.3", label="trained"),
               Line2D([], [], marker="o", ls="", color="black", markersize=3, label="one seed")]
    fig.legend(handles=handles + phase_handles, loc="lower center", bbox_to_anchor=(0.5, 1.0),
               ncol=min(8, len(handles) + len(phase_handles)), fontsize=8, frameon=False, title_fontsize=8,
               title="mean over layers, heads, samples and seeds at each model's best lr; 'acc': mean "
                     f"{acc.split('_')[0]} test accuracy")
    fig.tight_layout()
    if (sub_all.spectrum_view.values == selection.VIEW_ABSENT).any():
        fig.notes = ["DeltaNet-family models are drawn from their full spectrum, in which d_k − 1 of each token's "
                     "d_k eigenvalues equal α ≥ 0 by construction: only the informative one can be negative, so the "
                     "full-spectrum share of λ < 0 is at most 1/d_k."]
    return fig
