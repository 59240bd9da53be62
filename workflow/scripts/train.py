# Thin wrapper: the Snakemake job for one run, trained here or on Slurm (config `executor`, see launch.py).
from eigsweep.launch import run_job

run_job(snakemake.params.spec, snakemake.output[0], snakemake.params.checkpoint, snakemake.log[0], snakemake.config)
