rule aggregate:
    """Stack a sweep's runs into one summary.nc along a `run` dimension."""
    input:
        checked_run_files,
    output:
        f"{RESULTS}/{{sweep}}/summary.nc",
    log:
        f"{RESULTS}/{{sweep}}/logs/aggregate.log",
    conda:
        "../../envs/eigsweep.yaml"
    script:
        "../scripts/aggregate.py"
