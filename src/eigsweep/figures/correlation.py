"""Spectra against accuracy, from the statistics tables (correlations.nc): per task and statistic, one point
per run (duplicates collapsed), runs of one architecture joined; each panel states the pooled ρ with its
bootstrap-over-architectures interval, the within-architecture ρ with its stratified permutation p-value, and
n runs / n architectures. Tasks with fewer than three runs have no panel (named in a note)."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D

from eigsweep import stats
from eigsweep.figures import style


def _fmt(v, spec="+.2f"):
    return format(float(v), spec) if np.isfinite(v) else "n/a"


def _ci(lo, hi):
    return f"[{_fmt(lo)}, {_fmt(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "[n/a]"


def panel_text(row) -> str:
    """The statistics of one (task, statistic) row, as printed on its panel."""
    lines = [f"pooled ρ = {_fmt(row['rho_pooled'])}, 95% CI {_ci(row['ci_pooled_low'], row['ci_pooled_high'])}"]
    if np.isfinite(row["rho_within"]):
        lines.append(f"within-arch ρ = {_fmt(row['rho_within'])}, CI {_ci(row['ci_within_low'], row['ci_within_high'])}, "
                     f"p = {_fmt(row['p_stratified'], '.3g')}")
    else:
        lines.append(f"within-arch ρ: n/a (no architecture with ≥ {stats.MIN_RUNS} runs varying in both)")
    lines.append(f"n = {int(row['n_runs'])} runs, {int(row['n_architectures'])} architectures"
                 + (f" ({int(row['n_arch_within'])} with a within ρ)" if int(row["n_arch_within"]) else ""))
    return "\n".join(lines)


def _row(tables, task, name) -> dict:
    t = tables.sel(task=task, statistic=name)
    return {k: t[k].values.item() for k in ("rho_pooled", "ci_pooled_low", "ci_pooled_high", "rho_within",
                                            "ci_within_low", "ci_within_high", "p_stratified", "n_runs",
                                            "n_architectures", "n_arch_within", "note")}


def _drawable(tables):
    """Tasks with a defined pooled ρ for some statistic, and the others with the reason."""
    ok, skipped = [], {}
    for task in tables.task.values.tolist():
        rho = tables.rho_pooled.sel(task=task).values
        if np.isfinite(rho).any():
            ok.append(task)
        else:
            skipped[task] = int(tables.n_runs.sel(task=task).max())
    return ok, skipped


def _skipped_note(skipped) -> str:
    if not skipped:
        return ""
    return (f"No correlation for {len(skipped)} task(s) with fewer than {stats.MIN_RUNS} runs or a constant "
            f"statistic: " + ", ".join(f"{t} (n = {n})" for t, n in skipped.items()) + ".")


def pooled_modifications_note(tables, tasks) -> list[str]:
    """Per task whose correlated runs of one architecture carry more than one modification: a note that the
    figure pools them (a gated or deeper model counts as its mixer's architecture), naming them."""
    if "run_modification" not in tables:
        return []
    task, arch, mod = (tables[f"run_{k}"].values.astype(str) for k in ("task", "arch", "modification"))
    notes = []
    for t in tasks:
        mods = {a: sorted(set(mod[(task == t) & (arch == a)])) for a in style.order_models(arch[task == t])}
        mixed = {a: m for a, m in mods.items() if len(m) > 1}
        if mixed:
            notes.append(f"{t}: modifications pooled within each architecture ("
                         + "; ".join(f"{a}: {', '.join(m)}" for a, m in mixed.items())
                         + "): 'within' and the permutation keep an architecture's modifications together.")
    return notes


def correlation(ds, options=None, tables=None, **_):
    tasks, skipped = _drawable(tables)
    if not tasks:
        fig = style.message_figure(f"no task has {stats.MIN_RUNS} runs with a varying statistic: no correlation "
                                   f"to show ({len(skipped)} task(s), at most {max(skipped.values(), default=0)} "
                                   "run(s) each)")
        fig.notes = [_skipped_note(skipped)]
        return fig
    run_task = tables.run_task.values
    names = list(stats.STATISTICS)
    fig, axes = plt.subplots(len(tasks), len(names), figsize=(3.6 * len(names), 0.6 + 3.9 * len(tasks)),
                             squeeze=False, sharey="row")
    for r, task in enumerate(tasks):
        sel = np.flatnonzero(run_task == task)
        arch = tables.run_arch.values[sel]
        y = tables.run_accuracy.values[sel].astype(float)
        for c, name in enumerate(names):
            ax = axes[r, c]
            row = _row(tables, task, name)
            title = f"{task} · {stats.STAT_SHORT[name]}"
            if not np.isfinite(row["rho_pooled"]):
                style.na_panel(ax, row["note"] or "ρ undefined", title)
                continue
            x = tables[f"run_{name}"].values[sel].astype(float)
            if name == "median_horizon":
                finite = x[np.isfinite(x)]
                cap = np.nanmax(finite) * 3 if len(finite) else 1e3
                if np.isinf(x).any():
                    ax.axvline(cap, color="0.6", ls=":", lw=0.8)
                    ax.text(cap, 0.02, " ∞ (|λ| ≥ 1)", fontsize=7, color="0.4", rotation=90, va="bottom", ha="right")
                x = np.where(np.isinf(x), cap, x)
                ax.set_xscale("log")
                style.log_axis(ax.xaxis)
            for a in style.order_models(arch):
                k = np.flatnonzero((arch == a) & np.isfinite(x) & np.isfinite(y))
                if not len(k):
                    continue
                st = style.model_style(a)
                order = k[np.argsort(x[k])]
                if len(k) > 1:
                    ax.plot(x[order], y[order], color=st["color"], lw=0.8, alpha=0.7, zorder=2)
                ax.scatter(x[k], y[k], color=st["color"], marker=st["marker"], s=32, edgecolor="black", lw=0.4,
                           zorder=3)
            ax.set_title(title + "\n" + panel_text(row), fontsize=7.2, loc="left")
            ax.set_xlabel(stats.STAT_LABELS[name], fontsize=8)
            ax.set_ylim(-0.03, 1.05)
            ax.margins(x=0.08)
            if c == 0:
                ax.set_ylabel(f"test accuracy ({str(tables.attrs.get('accuracy', 'final_acc')).split('_')[0]})",
                              fontsize=8)
    archs = style.order_models(tables.run_arch.values)
    handles = [Line2D([], [], marker=style.model_style(a)["marker"], ls="", color=style.color_of(a),
                      markeredgecolor="black", label=a) for a in archs]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(8, len(handles)), fontsize=8,
               frameon=False, title_fontsize=8,
               title="trained spectrum (all layers, heads) vs accuracy; one point per run, lines join an "
                     "architecture's runs. CI: 95% percentile bootstrap over architectures; p: stratified "
                     "permutation test (accuracy permuted within architecture)")
    fig.tight_layout()
    fig.notes = [_skipped_note(skipped)] + [f"{t}: {tables.note.sel(task=t, statistic=n).values.item()}."
                                            for t in tasks for n in names[:1] if tables.note.sel(task=t, statistic=n).values.item()] \
        + pooled_modifications_note(tables, tasks)
    return fig


def correlation_heatmap(ds, options=None, tables=None, **_):
    """Pooled ρ and within-architecture ρ per (task, statistic), side by side, each cell with its interval
    and n; tasks without any defined ρ are left out (named in a note)."""
    tasks, skipped = _drawable(tables)
    if not tasks:
        fig = style.message_figure(f"no task has {stats.MIN_RUNS} runs with a varying statistic: no correlation "
                                   "to summarise")
        fig.notes = [_skipped_note(skipped)]
        return fig
    names = list(stats.STATISTICS)
    fig, axes = plt.subplots(1, 2, figsize=(2.0 + 3.6 * len(names), 1.6 + 0.85 * len(tasks)), squeeze=False)
    for ax, (kind, label) in zip(axes[0], (("pooled", "pooled over runs (CI: bootstrap over architectures)"),
                                             ("within", "within architecture (p: stratified permutation)"))):
        rho = np.array([[float(tables[f"rho_{kind}"].sel(task=t, statistic=n)) for n in names] for t in tasks])
        annot = []
        for t in tasks:
            line = []
            for n in names:
                row = _row(tables, t, n)
                if not np.isfinite(row[f"rho_{kind}"]):
                    line.append("n/a")
                    continue
                extra = (f"\np = {_fmt(row['p_stratified'], '.2g')}" if kind == "within" else "")
                nn = (f"{int(row['n_runs'])} runs/{int(row['n_architectures'])} arch" if kind == "pooled"
                      else f"{int(row['n_arch_within'])} arch")
                line.append(f"{row[f'rho_{kind}']:+.2f} {_ci(row[f'ci_{kind}_low'], row[f'ci_{kind}_high'])}{extra}\n{nn}")
            annot.append(line)
        sns.heatmap(rho, ax=ax, vmin=-1, vmax=1, cmap="vlag", annot=np.array(annot), fmt="", annot_kws=dict(fontsize=6.5),
                    linewidths=0.5, linecolor="white", cbar=kind == "within",
                    cbar_kws=dict(label="Spearman ρ with test accuracy"))
        ax.grid(False)
        for i, j in zip(*np.nonzero(~np.isfinite(rho))):      # seaborn leaves undefined cells blank: say why
            ax.add_patch(plt.Rectangle((j, i), 1, 1, color="0.93", zorder=0))
            ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", fontsize=7, color=style.NA_COLOR)
        ax.set_xticks(np.arange(len(names)) + 0.5, [stats.STAT_SHORT[s] for s in names], rotation=0, fontsize=8)
        ax.set_yticks(np.arange(len(tasks)) + 0.5, tasks, rotation=0, fontsize=8)
        ax.set_title("\n".join(textwrap.wrap(label, 60)), fontsize=9)
        ax.set_xlabel("spectral statistic (trained)", fontsize=8)
    fig.tight_layout()
    notes = dict.fromkeys(f"{t}: {tables.note.sel(task=t, statistic=n).values.item()}." for t in tasks for n in names
                          if tables.note.sel(task=t, statistic=n).values.item())
    fig.notes = [_skipped_note(skipped), *notes, *pooled_modifications_note(tables, tasks)]
    return fig
