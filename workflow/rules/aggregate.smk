rule aggregate:
    """Stack a sweep's runs into one summary.nc along a `run` dimension."""
    input:
        lambda w: sweep_run_files(w.sweep),
    output:
        f"{RESULTS}/{{sweep}}/summary.nc",
    log:
        f"{RESULTS}/{{sweep}}/logs/aggregate.log",
    conda:
        "../../envs/eigsweep.yaml"
    script:
        "../scripts/aggregate.py"
