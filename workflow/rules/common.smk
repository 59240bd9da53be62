# Sweep expansion: every grid point of every sweep is one run with a stable, readable id.
from eigsweep.config import all_runs
from eigsweep.launch import check_task_data

RESULTS = config.get("results_dir", "results")
RUNS = all_runs(config)
SPECS = {(sweep, r.run_id): r for sweep, runs in RUNS.items() for r in runs}


def run_file(sweep, run):
    return f"{RESULTS}/{sweep}/runs/{run}.nc"


def sweep_run_files(sweep):
    return [run_file(sweep, r.run_id) for r in RUNS[sweep]]


def spec_of(wildcards):
    try:
        return SPECS[(wildcards.sweep, wildcards.run)]
    except KeyError:
        raise ValueError(f"no run {wildcards.run!r} in sweep {wildcards.sweep!r} (see `eigsweep list {wildcards.sweep}`)")


def data_available(wildcards):
    """Fail while the DAG is built, not mid-sweep, when a task's data is missing."""
    check_task_data(spec_of(wildcards).task_params)
    return []


wildcard_constraints:
    sweep="[A-Za-z0-9_]+",
    run="[^/]+",
