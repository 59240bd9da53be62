from eigsweep.figures_index import FIGURES


rule figures_sweep:
    """Every figure of a sweep, from its summary.nc alone (no training)."""
    input:
        f"{RESULTS}/{{sweep}}/summary.nc",
    output:
        [
            report(
                f"{RESULTS}/{{sweep}}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="{sweep}",
                labels={"figure": name},
            )
            for name in FIGURES
        ],
        [f"{RESULTS}/{{sweep}}/figures/{name}.pdf" for name in FIGURES],
    log:
        f"{RESULTS}/{{sweep}}/logs/figures.log",
    conda:
        "../../envs/eigsweep.yaml"
    script:
        "../scripts/figures.py"


def sweep_targets(sweep):
    return [f"{RESULTS}/{sweep}/summary.nc"] + [f"{RESULTS}/{sweep}/figures/{n}.png" for n in FIGURES]


# One target per sweep: `snakemake -c2 demo` runs that sweep and nothing else.
for _sweep in config["sweeps"]:

    rule:
        name:
            _sweep
        input:
            sweep_targets(_sweep),

