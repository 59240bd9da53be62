rule train:
    """Train one run; write its eigenvalue spectra, curve and provenance to one netCDF file."""
    output:
        run_file("{sweep}", "{run}"),
    params:
        spec=lambda w: spec_of(w).to_json(),   # the rerun trigger: a run retrains when its spec changes
        checkpoint=f"{RESULTS}/{{sweep}}/checkpoints/{{run}}.pt",
    log:
        f"{RESULTS}/{{sweep}}/logs/{{run}}.log",
    threads: 1
    conda:
        "../../envs/eigsweep.yaml"
    script:
        "../scripts/train.py"
