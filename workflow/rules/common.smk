# Sweep expansion: every grid point of every sweep is one run with a stable, readable id.
import os
import time

from eigsweep.config import all_runs, pack_size
from eigsweep.tasks import check_task_data
from eigsweep.jobs import write_jobs_file
from eigsweep.packs import group_packs

RESULTS = config.get("results_dir", "results")
RUNS = all_runs(config)
# each spec serialised once: the train rule's rerun-trigger param and the jobs file share it
SPEC_JSON = {sweep: {r.run_id: r.to_json() for r in runs} for sweep, runs in RUNS.items()}
# Packs (config key `pack`, per sweep): {sweep: {pack id: [run ids]}} for each sweep of pack size > 1; each
# pack is one job (rules train_pack_*, train.smk). Same config, same packs (eigsweep.packs.group_packs).
PACKS = {sweep: {pid: [r.run_id for r in p] for pid, p in group_packs(runs, pack_size(config, sweep)).items()}
         for sweep, runs in RUNS.items() if pack_size(config, sweep) > 1}
# Specs and resources of every run (and the packs), resolved from this invocation's config, for the train jobs
# to read, in a content-addressed file that no other invocation can change (eigsweep/jobs.py).
JOBS_FILE = write_jobs_file(SPEC_JSON, config, packs=PACKS)


def run_file(sweep, run):
    return f"{RESULTS}/{sweep}/runs/{run}.nc"


def sweep_run_files(sweep):
    return [run_file(sweep, r.run_id) for r in RUNS[sweep]]


def spec_json_of(wildcards):
    try:
        return SPEC_JSON[wildcards.sweep][wildcards.run]
    except KeyError:
        raise ValueError(f"no run {wildcards.run!r} in sweep {wildcards.sweep!r} (see `eigsweep list {wildcards.sweep}`)")


def checked_run_files(wildcards):
    """A sweep's run files (the aggregate rule's input), after checking that its tasks' data exist: a
    missing data set fails while the DAG is built, not mid-sweep. Checked once per sweep and task preset,
    not per train job: an input function on each of 10k train jobs costs Snakemake more than all our
    DAG work (benchmarks/dag_scale.py). A train job targeted alone checks its data when it starts."""
    for preset in sorted({r.task for r in RUNS[wildcards.sweep]}):
        check_task_data(config["tasks"][preset], preset)
    return sweep_run_files(wildcards.sweep)


wildcard_constraints:
    sweep="[A-Za-z0-9_]+",
    run="[^/]+",
