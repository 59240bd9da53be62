"""Draw one figure family of a sweep: load the summary (and the statistics tables), build each figure, name the
missing runs under it, save PNG and PDF."""
from __future__ import annotations

import logging
from pathlib import Path

import seaborn as sns
import xarray as xr

from eigsweep import stats
from eigsweep.figures import (accuracy, bars, catalog, complex_plane, correlation, dynamics, histograms,
                              learning_rate, modifications, selection, sign_phase, style)

BUILDERS = {
    "spectrum_bars": bars.spectrum_bars, "spectrum_bars_per_head": bars.spectrum_bars_per_head,
    "accuracy": accuracy.accuracy, "lr_sensitivity": learning_rate.lr_sensitivity,
    "modifications": modifications.modifications,
    "correlation": correlation.correlation, "correlation_heatmap": correlation.correlation_heatmap,
    "sign_phase": sign_phase.sign_phase, "fine_histograms": histograms.fine_histograms,
    "complex_plane": complex_plane.complex_plane, "training_dynamics": dynamics.training_dynamics,
}
assert set(BUILDERS) == set(catalog.FIGURES)
# the figures that show one learning rate per model (selection.best_lr_runs, through spectrum_runs or directly)
USES_BEST_LR = {"spectrum_bars", "spectrum_bars_per_head", "accuracy", "lr_sensitivity", "modifications",
                "sign_phase", "fine_histograms", "complex_plane", "training_dynamics"}


def load(path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def tables_of(ds: xr.Dataset, options: dict, tables=None) -> xr.Dataset:
    """correlations.nc (written by the statistics rule), or the same computed now."""
    if tables is not None:
        return load(tables)
    runstats, table, by_arch = stats.statistics_tables(ds, options)
    return stats.correlations_dataset(table, by_arch, runstats)


def build(name: str, ds: xr.Dataset, options: dict | None = None, tables: xr.Dataset | None = None):
    """The matplotlib figure ``name`` (its notes in ``fig.notes``), not saved."""
    sns.set_theme(style="whitegrid", context="paper")
    fig = BUILDERS[name](ds, options=dict(options or {}), tables=tables)
    fig.notes = getattr(fig, "notes", [])
    note = selection.lr_note(ds, selection.accuracy_var(options)) if name in USES_BEST_LR else ""
    fig.notes += [note] if note else []
    return fig


def make_family(family: str, summary, outdir, expected=None, options=None, tables=None) -> list[Path]:
    options = dict(options or {})
    ds = load(summary)
    outdir = Path(outdir)
    present = set(ds.run.values.tolist())
    missing = [r for r in (expected or []) if r not in present]
    if missing:
        logging.getLogger("eigsweep.figures").warning("missing runs (not shown): %s", ", ".join(missing))
    corr = tables_of(ds, options, tables) if family == "correlation" else None
    made = []
    for name in catalog.FAMILIES[family]:
        fig = build(name, ds, options, corr)
        style.missing_note(fig, missing, below_lines=style.footnote(fig, " ".join(fig.notes)))
        style.save(fig, outdir / name)
        made.append(outdir / f"{name}.png")
    return made
