# Thin wrapper: every figure of a sweep from its summary.nc.
from pathlib import Path

from eigsweep.figures import make_figures

make_figures(snakemake.input[0], Path(snakemake.output[0]).parent)
