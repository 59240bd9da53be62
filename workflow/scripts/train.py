# Thin wrapper: the Snakemake job for one run.
from eigsweep.config import RunSpec
from eigsweep.launch import run_local

run_local(RunSpec.from_json(snakemake.params.spec), snakemake.output[0], snakemake.params.checkpoint,
          snakemake.log[0])
