import json

from eigsweep.launch import slurm_resources

EXECUTOR = config.get("executor", "local")


rule train:
    """Train one run; write its eigenvalue spectra, curve and provenance to one netCDF file.

    A shell command rather than a script: Snakemake reruns a script rule whenever the script file is newer
    than the output, which after a fresh clone or a pull would retrain cached results. The run's spec is the
    rerun trigger (params); where it runs (executor, Slurm resources) is not, so it travels as resources."""
    output:
        run_file("{sweep}", "{run}"),
    params:
        spec=lambda w: spec_of(w).to_json(),   # the rerun trigger: a run retrains when its spec changes
        checkpoint=f"{RESULTS}/{{sweep}}/checkpoints/{{run}}.pt",
    log:
        f"{RESULTS}/{{sweep}}/logs/{{run}}.log",
    threads: 1
    resources:
        executor=EXECUTOR,
        slurm_json=lambda w: json.dumps(slurm_resources(config, w.sweep)) if EXECUTOR == "slurm" else "{}",
    conda:
        "../../envs/eigsweep.yaml"
    shell:
        "python -m eigsweep.cli job --spec {params.spec:q} --out {output:q} --checkpoint {params.checkpoint:q}"
        " --log {log:q} --executor {resources.executor} --slurm {resources.slurm_json:q}"
