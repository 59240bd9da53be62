# Thin wrapper: one figure family of a sweep from its summary (and, for the correlation family, the statistics
# tables); missing runs are named on the figures.
import logging
from pathlib import Path

from eigsweep.figures import make_family

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
made = make_family(snakemake.params.family, snakemake.input.summary, Path(snakemake.output[0]).parent,
                   expected=list(snakemake.params.expected), options=dict(snakemake.params.options),
                   tables=snakemake.input.get("tables"))
logging.info("drew %s", ", ".join(map(str, made)))
