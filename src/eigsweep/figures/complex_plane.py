"""LTI models: their eigenvalues in the complex plane with the unit circle, init vs trained (one seed at the
best learning rate, marker per layer). Eigenvalues with |λ| > 1 (unstable modes) are drawn where they are,
outside the circle, in red outline, and counted in the legend; the right panel plots 1 − |λ| on a symmetric
log axis, so they fall below the circle's line (1 − |λ| < 0) instead of being clipped onto it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from eigsweep.figures import selection, style
from eigsweep.figures.selection import where

LAYER_MARKERS = ("o", "s", "^", "D", "v", "P")
UNSTABLE = "crimson"


def complex_plane(ds, options=None, **_):
    options = options or {}
    if "lti_eigenvalue_real" not in ds:
        return style.message_figure("no stored LTI eigenvalues in these result files (no LTI model, or files "
                                    "written before eigsweep stored them)")
    sub_all = selection.spectrum_runs(ds, selection.accuracy_var(options))
    if sub_all.sizes["run"]:
        sub_all = where(sub_all, modification=selection.baseline_modification(sub_all))
        has = sub_all.lti_eigenvalue_real.notnull().any([d for d in sub_all.lti_eigenvalue_real.dims if d != "run"]).values
        sub_all = sub_all.isel(run=np.flatnonzero(has))
    if sub_all.sizes["run"] == 0:
        return style.message_figure("no successful LTI run in this sweep yet")
    rows = [(t, a) for t in selection.unique(sub_all.task.values) for a in style.order_models(where(sub_all, task=t).arch.values)]
    fig, axes = plt.subplots(len(rows), 3, figsize=(11, 0.5 + 3.5 * len(rows)), squeeze=False)
    theta = np.linspace(0, 2 * np.pi, 400)
    for r, (task, arch) in enumerate(rows):
        runs = where(sub_all, task=task, arch=arch)
        run = runs.isel(run=0)      # one seed: the eigenvalues of one model
        layers = [l for l in run.layer.values.tolist() if bool(run.lti_eigenvalue_real.sel(layer=l).notnull().any())]
        color = style.color_of(arch)
        axd = axes[r, 2]
        for c, stage in enumerate(("init", "trained")):
            ax = axes[r, c]
            lam = (run.lti_eigenvalue_real.sel(stage=stage) + 1j * run.lti_eigenvalue_imag.sel(stage=stage)).values
            mags = np.abs(lam[np.isfinite(lam)])
            lim = max(1.15, 1.05 * float(mags.max()) if len(mags) else 1.15)
            ax.plot(np.cos(theta), np.sin(theta), color="0.3", lw=0.8)
            ax.axhline(0, color="0.85", lw=0.5)
            ax.axvline(0, color="0.85", lw=0.5)
            size = 22 if len(mags) <= 200 else 8
            for k, l in enumerate(layers):
                z = lam[layers.index(l)] if lam.ndim > 1 else lam
                z = z[np.isfinite(z)]
                out = np.abs(z) > 1
                marker = LAYER_MARKERS[k % len(LAYER_MARKERS)]
                style_in = dict(facecolors="none", edgecolors=color, lw=0.8) if stage == "init" else \
                    dict(color=color, lw=0, alpha=0.7)
                ax.scatter(z.real[~out], z.imag[~out], s=size, marker=marker, **style_in)
                ax.scatter(z.real[out], z.imag[out], s=size * 1.6, marker=marker, facecolors="none",
                           edgecolors=UNSTABLE, lw=0.9, zorder=4)
                one_minus = 1 - np.abs(z)
                axd.scatter(np.degrees(np.abs(np.angle(z))), one_minus, s=size, marker=marker,
                            **(dict(facecolors="none", edgecolors=color, lw=0.7) if stage == "init"
                               else dict(color=color, lw=0, alpha=0.7)))
                if out.any() and stage == "trained":
                    axd.scatter(np.degrees(np.abs(np.angle(z[out]))), one_minus[out], s=size * 1.6, marker=marker,
                                facecolors="none", edgecolors=UNSTABLE, lw=0.9, zorder=4)
            n_out = int((mags > 1).sum())
            handles = [Line2D([], [], marker=LAYER_MARKERS[k % len(LAYER_MARKERS)], ls="", color=color,
                              markerfacecolor="none" if stage == "init" else color, label=f"layer {l}")
                       for k, l in enumerate(layers)]
            handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", color=UNSTABLE,
                                  label=f"|λ| > 1: {n_out} of {len(mags)}"
                                        + (f" (max {mags.max():.3f})" if n_out else "")))
            ax.legend(handles=handles, fontsize=6.5, loc="lower left", frameon=True, framealpha=0.85)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xlabel("Re λ", fontsize=8)
            ax.set_ylabel("Im λ", fontsize=8)
            ax.set_title(f"{task} · {arch} · {style.STAGE_NAMES[stage]}\n(seed {int(run.seed)}, one of "
                         f"{runs.sizes['run']} run{'s' if runs.sizes['run'] > 1 else ''})", fontsize=8.5)
        axd.axhline(0, color=UNSTABLE, lw=0.8, ls="--")
        axd.set_yscale("symlog", linthresh=1e-4)
        axd.set_xlim(-5, 185)
        axd.set_xlabel("|arg λ| (degrees)", fontsize=8)
        axd.set_ylabel("1 − |λ| (symmetric log)", fontsize=8)
        axd.set_title("distance inside the unit circle (dashed: |λ| = 1;\nbelow it: |λ| > 1, unstable)",
                      fontsize=8.5)
        axd.legend(handles=[Line2D([], [], marker="o", ls="", markerfacecolor="none", color=color, label="init"),
                            Line2D([], [], marker="o", ls="", color=color, label="trained")],
                   fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
