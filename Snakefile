# eigsweep: train sequence models, extract their DSF eigenvalues, relate spectra to performance.
# Thin by design: all logic lives in the importable library src/eigsweep/.
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("8.20")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # run from a clone even before `pip install`
from eigsweep.config import validate_config  # noqa: E402

configfile: "config.yaml"

validate_config(config)  # names the bad key and the allowed values
validate(config, "workflow/schemas/config.schema.yaml")

include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"


rule all:
    """The default target: every sweep listed under `all:` in config.yaml (default: every sweep)."""
    input:
        [t for s in config.get("all", list(config["sweeps"])) for t in sweep_targets(s)],
