rule train:
    """Train one run; write its eigenvalue spectra, curve and provenance to one netCDF file.

    A shell command rather than a script: Snakemake reruns a script rule whenever the script file is newer
    than the output, which after a fresh clone or a pull would retrain cached results. The run's spec is the
    rerun trigger (params); the job reads it, and where to run (executor, Slurm resources), from JOBS_FILE,
    so resources are not a rerun trigger. The jobs file is content-addressed (eigsweep/jobs.py): another
    invocation cannot change what a running one trains."""
    output:
        run_file("{sweep}", "{run}"),
    params:
        spec=spec_json_of,   # the rerun trigger: a run retrains when its spec changes
        checkpoint=f"{RESULTS}/{{sweep}}/checkpoints/{{run}}.pt",
    log:
        f"{RESULTS}/{{sweep}}/logs/{{run}}.log",
    threads: 1
    conda:
        "../../envs/eigsweep.yaml"
    shell:
        "python -m eigsweep.cli job --jobs-file {JOBS_FILE} --sweep {wildcards.sweep} --run {wildcards.run}"
        " --out {output} --checkpoint {params.checkpoint} --log {log}"
