# eigsweep: train sequence models, extract their DSF eigenvalues, relate spectra to performance.
# Thin by design: all logic lives in the importable library src/eigsweep/.
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("8.20")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # run from a clone even before `pip install`
from eigsweep.config import ConfigError, check_config_files, validate_config  # noqa: E402

configfile: "config.yaml"

# Validated once, before any job: one line per problem, naming the key (eigsweep.config, pydantic). The
# config files are re-read because Snakemake's YAML loader keeps the last of two equal keys without a word.
try:
    check_config_files(workflow.configfiles)
    validate_config(config)
except ConfigError as e:
    sys.exit(f"invalid config:\n{e}")

include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"


rule all:
    """The default target: every sweep listed under `all:` in config.yaml (default: every sweep)."""
    input:
        [t for s in config.get("all", list(config["sweeps"])) for t in sweep_targets(s)],
