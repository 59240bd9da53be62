# Figures and statistics, from result files alone: no figure rule depends on training.
#
# Every figure family is one rule; the statistics (correlation tables) are the rule `statistics`, which the
# correlation figures read. Normally its input is results/<sweep>/summary.nc, the aggregate of every run
# of the sweep (rule `aggregate`, which trains what is missing). In figures-only mode it is
# results/<sweep>/summary_existing.nc, built by `aggregate_existing` from the result files on disk now; the
# missing runs are named (on stderr, in the log and on every figure), never trained. Figures-only mode is on
# for a sweep when the target `figures_<sweep>` (or `figures`: every sweep under `all:`) is requested, or with
# `--config figures_only=<sweep>[,<sweep>…]` (or `figures_only=all`). Figure rules are local rules.
import os
import sys as _sys

from eigsweep.figures.catalog import FAMILIES, STATISTICS_TABLES, code_version, sweep_figures

from eigsweep.config import Figures

FIGURES_CFG = Figures(**config.get("figures", {})).model_dump()   # every option, defaults from the one model


def figures_only(sweep):
    """Figures-only mode for this sweep? Evaluated while the DAG is built (the targets are known then)."""
    requested = config.get("figures_only", [])
    if isinstance(requested, str):
        requested = [s for s in requested.split(",") if s]
    unknown = set(requested) - set(config["sweeps"]) - {"all"}
    if unknown:
        raise ValueError(f"figures_only: unknown sweep(s) {sorted(unknown)}; known: all, {', '.join(config['sweeps'])}")
    settings = getattr(workflow, "dag_settings", None)
    targets = set(getattr(settings, "targets", None) or ())
    return (sweep in requested or "all" in requested or f"figures_{sweep}" in targets
            or ("figures" in targets and sweep in config.get("all", list(config["sweeps"]))))


def existing_run_files(sweep):
    """The result files of a sweep's runs that exist now, and the ids of the missing runs."""
    files = sweep_run_files(sweep)
    present = [f for f in files if os.path.exists(f)]
    missing = [r.run_id for r, f in zip(RUNS[sweep], files) if f not in present]
    return present, missing


_REPORTED = set()


def _existing_inputs(wildcards):
    present, missing = existing_run_files(wildcards.sweep)
    if not present:
        raise ValueError(f"figures from existing results: sweep {wildcards.sweep!r} has no result file under "
                         f"{RESULTS}/{wildcards.sweep}/runs/; missing runs: {', '.join(missing)}")
    if wildcards.sweep not in _REPORTED:
        _REPORTED.add(wildcards.sweep)
        print(f"figures from existing results, sweep {wildcards.sweep}: {len(present)} of "
              f"{len(present) + len(missing)} runs present"
              + (f"; MISSING (not trained, named on the figures): {', '.join(missing)}" if missing else ""),
              file=_sys.stderr)
    return present


def summary_for(wildcards):
    """The figures' input: summary.nc (every run; trains what is missing) or, in figures-only mode,
    summary_existing.nc (the result files on disk now)."""
    name = "summary_existing.nc" if figures_only(wildcards.sweep) else "summary.nc"
    return f"{RESULTS}/{wildcards.sweep}/{name}"


def _existing_fingerprint(wildcards):
    """Names, sizes and mtimes of the present result files: the rerun trigger of aggregate_existing."""
    return [(f, os.path.getsize(f), int(os.path.getmtime(f))) for f in _existing_inputs(wildcards)]


rule aggregate_existing:
    """Figures-only mode: stack the result files that exist now (missing runs are named, never trained).
    The run files are deliberately not Snakemake inputs: as inputs they would be outputs of `train`, which
    Snakemake may decide to rerun; the fingerprint param redoes this rule whenever they change."""
    output:
        f"{RESULTS}/{{sweep}}/summary_existing.nc",
    params:
        fingerprint=_existing_fingerprint,   # (file, size, mtime) of each present run file
        missing=lambda w: existing_run_files(w.sweep)[1],
    log:
        f"{RESULTS}/{{sweep}}/logs/aggregate_existing.log",
    localrule: True
    conda:
        "../../envs/eigsweep.yaml"
    script:
        "../scripts/figures_aggregate_existing.py"


def figure_files(sweep, ext="png"):
    return [f"{RESULTS}/{sweep}/figures/{n}.{ext}" for n in sweep_figures(config["sweeps"][sweep], FIGURES_CFG)]


rule statistics:
    """Correlations of the trained spectra with accuracy (pooled and within architecture, duplicates collapsed):
    results/<sweep>/correlations.csv, correlations_by_arch.csv and correlations.nc (eigsweep.stats)."""
    input:
        summary=summary_for,
    output:
        [f"{RESULTS}/{{sweep}}/{t}" for t in STATISTICS_TABLES],
    params:
        options=FIGURES_CFG,
        code=code_version(),
    log:
        f"{RESULTS}/{{sweep}}/logs/statistics.log",
    localrule: True
    conda:
        "../../envs/eigsweep.yaml"
    script:
        "../scripts/figures_statistics.py"


def _family_rule(family, names):
    rule:
        name:
            f"figure_{family}"
        input:
            summary=summary_for,
            **({"tables": f"{RESULTS}/{{sweep}}/correlations.nc"} if family == "correlation" else {}),
        output:
            [report(f"{RESULTS}/{{sweep}}/figures/{n}.png", caption=f"../report/{n}.rst", category="{sweep}",
                    subcategory=family, labels={"sweep": "{sweep}", "figure": n}) for n in names],
            [f"{RESULTS}/{{sweep}}/figures/{n}.pdf" for n in names],
        params:
            family=family,
            expected=lambda w: [r.run_id for r in RUNS[w.sweep]],
            options=FIGURES_CFG,
            code=code_version(),
        log:
            f"{RESULTS}/{{sweep}}/logs/figure_{family}.log",
        localrule: True
        conda:
            "../../envs/eigsweep.yaml"
        script:
            "../scripts/figures.py"


for _family, _names in FAMILIES.items():
    _family_rule(_family, _names)


def sweep_targets(sweep):
    return [f"{RESULTS}/{sweep}/summary.nc"] + figures_targets(sweep)


def figures_targets(sweep):
    return figure_files(sweep) + [f"{RESULTS}/{sweep}/{t}" for t in STATISTICS_TABLES]


# One target per sweep: `snakemake -c2 demo` runs that sweep and nothing else.
for _sweep in config["sweeps"]:

    rule:
        name:
            _sweep
        input:
            sweep_targets(_sweep),

    rule:
        name:
            f"figures_{_sweep}"
        input:
            figures_targets(_sweep),


rule figures:
    """Every figure of every sweep under `all:`, from existing result files only (never trains)."""
    input:
        [t for s in config.get("all", list(config["sweeps"])) for t in figures_targets(s)],
