"""The paper's figure: share of |λ| in its seven bins, trained (bars) against initialisation (black ticks).

One panel per (task, modification, model family, layer), the family's models side by side; each model at its
best learning rate, seeds pooled. Per head on request (``figures: {per_head: true}``).
"""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from eigsweep import stats
from eigsweep.figures import selection, style
from eigsweep.figures.selection import where


def _layers(ds) -> list:
    """Layers in which some run has data (the union over runs of different depths)."""
    has = ds.bin_fraction.sel(stage="init").notnull().any([d for d in ds.bin_fraction.dims if d not in ("layer", "stage")])
    return [l for l, h in zip(ds.layer.values.tolist(), has.values.tolist()) if h]


def _panels(sub_all, per_head: bool):
    """[(title, runs, layer, head)] in reading order: task, modification, family, (head), layer."""
    multi_mod = len(selection.unique(sub_all.modification.values)) > 1
    out = []
    for task in selection.unique(sub_all.task.values):
        for mod in selection.unique(where(sub_all, task=task).modification.values):
            sub = where(sub_all, task=task, modification=mod)
            families = list(dict.fromkeys(style.model_family(a) for a in style.order_models(sub.arch.values)))
            for fam in families:
                runs = sub.isel(run=[i for i, a in enumerate(sub.arch.values) if style.model_family(a) == fam])
                heads = [h for h in runs["head"].values.tolist() if bool(runs.bin_fraction.sel(head=h).notnull().any())] \
                    if per_head else [None]
                for head in heads:
                    for layer in _layers(sub_all):
                        title = f"{task}" + (f" · {mod}" if multi_mod else "") + f"\n{fam} · layer {layer}" + \
                            (f" · head {head}" if head is not None else "")
                        out.append((title, runs, layer, head))
    return out


def _draw_panel(ax, runs, layer, head, bins, interval):
    archs = style.order_models(runs.arch.values)
    lruns = runs.sel(layer=layer)
    if head is not None:
        lruns = lruns.sel(head=[head])
    width = 0.8 / len(archs)
    drawn, one_seed = False, False
    for a, arch in enumerate(archs):
        r = where(lruns, arch=arch)
        if not bool(r.bin_fraction.notnull().any()):
            continue
        mean, err = stats.pooled_share(r, kind=interval)
        x = np.arange(len(bins)) - 0.4 + width * (a + 0.5)
        st = style.model_style(arch)
        trained, init = 100 * mean.sel(stage="trained").values, 100 * mean.sel(stage="init").values
        e = 100 * err.sel(stage="trained").values
        one_seed |= bool(np.isnan(e).any())
        ax.bar(x, trained, width, yerr=np.where(np.isfinite(e), e, 0), color=st["color"], hatch=st["hatch"],
               edgecolor="white", lw=0.3, error_kw=dict(lw=0.6, capsize=1.0, ecolor="0.2"))
        ax.hlines(init, x - width / 2, x + width / 2, color="black", lw=1.3, zorder=4)
        drawn = True
    if not drawn:
        return style.na_panel(ax, f"no layer {layer} in these models")
    ax.set_xticks(np.arange(len(bins)), bins, rotation=35, fontsize=7)
    ax.set_xlim(-0.5, len(bins) - 0.5)
    ax.grid(False, axis="x")
    note = style.n_text(runs)
    if one_seed and interval == "ci95":
        note += "\n95% CI n/a: one seed"
    view = selection.view_note(runs)
    absent = selection.VIEW_ABSENT in runs.spectrum_view.values
    note += f"\n{view}" if view else ""
    style.corner_text(ax, note, color="firebrick" if absent else "0.25")
    lines = sum(len(textwrap.wrap(line, 44)) for line in note.split("\n"))
    ax.set_ylim(0, 104 + 9 * lines)       # room for the note above a bar at 100%
    ax.set_yticks(np.arange(0, 101, 20))


def spectrum_bars(ds, options=None, per_head=False, **_):
    options = options or {}
    interval = options.get("interval", "std")
    sub_all = selection.spectrum_runs(ds, selection.accuracy_var(options))
    if sub_all.sizes["run"] == 0:
        return style.message_figure("no successful run in this sweep yet: no spectrum to draw")
    bins = [str(b) for b in ds.bin.values.tolist()]
    panels = _panels(sub_all, per_head)
    n_layers = len(_layers(sub_all))
    ncol = n_layers * max(1, 4 // n_layers) if len(panels) > n_layers else n_layers
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.9 * ncol, 0.4 + 2.7 * nrow), squeeze=False)
    for i, (title, runs, layer, head) in enumerate(panels):
        ax = axes[i // ncol, i % ncol]
        _draw_panel(ax, runs, layer, head, bins, interval)
        ax.set_title(title, fontsize=8.5)
        if i % ncol == 0:
            ax.set_ylabel("share of eigenvalues (%)", fontsize=8)
        if i + ncol >= len(panels):
            ax.set_xlabel("|λ| bin", fontsize=8)
    for j in range(len(panels), nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    archs = style.order_models(sub_all.arch.values)
    handles = [Patch(facecolor=style.color_of(a), hatch=style.model_style(a)["hatch"], edgecolor="white", label=a)
               for a in archs]
    handles.append(Line2D([], [], color="black", lw=1.3, label="at initialisation (mean)"))
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 6), fontsize=8,
               frameon=False, title=f"bars: trained, {style.interval_name(interval)}; each model at its best lr",
               title_fontsize=8)
    fig.tight_layout()
    return fig


def spectrum_bars_per_head(ds, options=None, **_):
    return spectrum_bars(ds, options, per_head=True)
