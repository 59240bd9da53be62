# Thin wrapper: stack a sweep's run files into summary.nc.
from eigsweep.aggregate import aggregate

aggregate(list(snakemake.input), snakemake.output[0])
