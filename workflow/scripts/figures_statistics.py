# Thin wrapper: the statistics tables of a sweep (correlations.csv, correlations_by_arch.csv, correlations.nc)
# from its summary, through eigsweep.stats.
import logging
from pathlib import Path

import xarray as xr

from eigsweep.stats import write_tables

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
with xr.open_dataset(snakemake.input.summary) as ds:
    ds = ds.load()
paths = write_tables(ds, Path(snakemake.output[0]).parent, dict(snakemake.params.options))
logging.info("wrote %s", ", ".join(map(str, paths)))
