rule train:
    """Train one run; write its eigenvalue spectra, curve and provenance to one netCDF file."""
    input:
        data_available,
    output:
        run_file("{sweep}", "{run}"),
    params:
        spec=lambda w: spec_of(w).to_json(),
        checkpoint=lambda w: f"{RESULTS}/{w.sweep}/checkpoints/{w.run}.pt",
    log:
        f"{RESULTS}/{{sweep}}/logs/{{run}}.log",
    threads: 1
    conda:
        "../../envs/eigsweep.yaml"
    script:
        "../scripts/train.py"
