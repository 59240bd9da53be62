"""Which figures a sweep produces (pure Python, no torch: the Snakefile imports this to build the DAG).

Figures come in families; one Snakemake rule per family (workflow/rules/figures.smk). A family applies to a
sweep according to the sweep's config alone, so the DAG is known before any run exists.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

# family (one Snakemake rule each) -> the figures it draws, each saved as <name>.png and <name>.pdf in
# results/<sweep>/figures/
FAMILIES: dict[str, tuple[str, ...]] = {
    "spectrum_bars": ("spectrum_bars",),                      # the paper's 7-bin bars, init vs trained
    "spectrum_bars_per_head": ("spectrum_bars_per_head",),    # on request: config `figures: {per_head: true}`
    "accuracy": ("accuracy",),
    "modifications": ("modifications",),                      # sweeps with more than one modification
    "correlation": ("correlation", "correlation_heatmap"),    # + results/<sweep>/correlations.{csv,nc}
    "fine_histograms": ("fine_histograms",),                  # distributions: fine log-spaced |λ| histograms
    "complex_plane": ("complex_plane",),                      # distributions: LTI eigenvalues (sweeps with LTI models)
    "training_dynamics": ("training_dynamics",),
}
# every figure name, in family order
FIGURES: tuple[str, ...] = tuple(n for names in FAMILIES.values() for n in names)
# tables written by the correlation family (results/<sweep>/…)
CORRELATION_TABLES = ("correlations.csv", "correlations.nc")

def eigen_kind(arch: str) -> dict:
    """{"lti": eigenvalues from parameters alone (no time dim), "complex": complex eigenvalues} (registry)."""
    from eigsweep import registry

    info = registry.mixer_info(arch)
    return {"lti": info.lti, "complex": info.complex}


def sweep_families(sweep_cfg: dict, figures_cfg: dict | None = None) -> list[str]:
    """The figure families that apply to a sweep (its config entry), in FAMILIES order."""
    figures_cfg = figures_cfg or {}
    mods = sweep_cfg.get("modification", ["none"])
    from eigsweep import registry

    lti = any(eigen_kind(a)["lti"] for a in sweep_cfg["arch"] if a in registry.MIXERS)
    skip = {"modifications": len(mods) < 2, "complex_plane": not lti,
            "spectrum_bars_per_head": not figures_cfg.get("per_head", False)}
    return [f for f in FAMILIES if not skip.get(f, False)]


def sweep_figures(sweep_cfg: dict, figures_cfg: dict | None = None) -> list[str]:
    """The figures that apply to a sweep, in FIGURES order."""
    return [n for f in sweep_families(sweep_cfg, figures_cfg) for n in FAMILIES[f]]


def code_version() -> str:
    """A hash of the plotting and statistics code: a parameter of every figure rule, so changed code redraws."""
    h = hashlib.sha256()
    for mod in ("figures.py", "stats.py", "figures_index.py"):
        h.update(Path(__file__).with_name(mod).read_bytes())
    return h.hexdigest()[:12]
