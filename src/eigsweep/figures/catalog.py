"""The catalog of figures: which figures and tables a sweep produces (pure Python: no torch, no matplotlib;
the Snakefile imports this to build the DAG).

Figures come in families; one Snakemake rule per family (workflow/rules/figures.smk). A family applies to a
sweep according to the sweep's config alone, so the DAG is known before any run exists. The statistics
(rule ``statistics``, eigsweep.stats) are a table, not a figure: the correlation family reads it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

# family (one Snakemake rule each, one module of this package each) -> the figures it draws, each saved as
# <name>.png and <name>.pdf in results/<sweep>/figures/
FAMILIES: dict[str, tuple[str, ...]] = {
    "spectrum_bars": ("spectrum_bars",),                      # the paper's 7-bin bars, init vs trained
    "spectrum_bars_per_head": ("spectrum_bars_per_head",),    # on request: config `figures: {per_head: true}`
    "accuracy": ("accuracy",),
    "lr_sensitivity": ("lr_sensitivity",),                    # sweeps with more than one learning rate
    "modifications": ("modifications",),                      # sweeps with more than one modification
    "correlation": ("correlation", "correlation_heatmap"),    # drawn from results/<sweep>/correlations.nc
    "sign_phase": ("sign_phase",),                            # share of λ < 0 / phase distribution
    "fine_histograms": ("fine_histograms",),                  # distributions: fine log-spaced |λ| histograms
    "complex_plane": ("complex_plane",),                      # distributions: LTI eigenvalues (sweeps with LTI models)
    "training_dynamics": ("training_dynamics",),
}
# every figure name, in family order
FIGURES: tuple[str, ...] = tuple(n for names in FAMILIES.values() for n in names)
# tables written by the statistics rule (results/<sweep>/…): pooled and within-architecture correlations
# (one row per task and statistic), the per-architecture correlations, all of it with the per-run values, each
# run's accuracies with the lr the figures chose (stats.accuracy_table), and the two correlation tables again
# over the runs that learned something (stats.learned_correlations)
STATISTICS_TABLES = ("correlations.csv", "correlations_by_arch.csv", "correlations.nc", "accuracy.csv",
                     "correlations_learned.csv", "correlations_by_arch_learned.csv", "outcome_split_by_arch.csv")
# the code a figure depends on: changed code redraws (a parameter of every figure and statistics rule)
_CODE = ("figures", "stats.py")


def eigen_kind(arch: str) -> dict:
    """{"lti": eigenvalues from parameters alone (no time dim), "complex": complex eigenvalues} (registry)."""
    from eigsweep import registry

    info = registry.mixer_info(arch)
    return {"lti": info.lti, "complex": info.complex}


def sweep_families(sweep_cfg: dict, figures_cfg: dict | None = None) -> list[str]:
    """The figure families that apply to a sweep (its config entry), in FAMILIES order."""
    from eigsweep import registry

    from eigsweep.config import sweep_lrs

    figures_cfg = figures_cfg or {}
    mods = sweep_cfg.get("modification", ["none"])
    lti = any(eigen_kind(a)["lti"] for a in sweep_cfg["arch"] if a in registry.MIXERS)
    several_lrs = any(len(sweep_lrs(sweep_cfg, a)) > 1 for a in sweep_cfg["arch"])
    skip = {"modifications": len(mods) < 2, "complex_plane": not lti, "lr_sensitivity": not several_lrs,
            "spectrum_bars_per_head": not figures_cfg.get("per_head", False)}
    return [f for f in FAMILIES if not skip.get(f, False)]


def sweep_figures(sweep_cfg: dict, figures_cfg: dict | None = None) -> list[str]:
    """The figures that apply to a sweep, in FIGURES order."""
    return [n for f in sweep_families(sweep_cfg, figures_cfg) for n in FAMILIES[f]]


def code_version() -> str:
    """A hash of the figure and statistics code (this package and stats.py)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for name in _CODE:
        p = root / name
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]
