# Thin wrapper (figures-only mode): stack the result files that exist into summary.nc; name the missing runs.
import logging

from eigsweep.aggregate import aggregate

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
ds = aggregate([f for f, _size, _mtime in snakemake.params.fingerprint], snakemake.output[0])
logging.info("aggregated %d existing runs into %s", ds.sizes["run"], snakemake.output[0])
if snakemake.params.missing:
    logging.warning("missing runs (no result file; not trained in figures-only mode): %s",
                    ", ".join(snakemake.params.missing))
