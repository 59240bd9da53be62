# Thin wrapper: stack a sweep's run files into summary.nc. A corrupt run file is moved aside (<run>.nc.corrupt)
# so the next invocation retrains it; the job then fails with one line naming it.
import sys

from eigsweep.aggregate import CorruptRunFiles, aggregate

try:
    aggregate(list(snakemake.input.runs), snakemake.output[0], move_corrupt=True)
except CorruptRunFiles as e:
    with open(snakemake.log[0], "a") as log:
        print(e, file=log)
    print(f"eigsweep: {e}", file=sys.stderr)
    sys.exit(1)
