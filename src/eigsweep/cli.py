"""eigsweep's command line. Sweeps normally run through Snakemake (`snakemake -c2 <sweep>`); these commands
list a sweep's runs, train one run, or train a whole sweep without Snakemake. Aggregation and figures are
Snakemake targets (`results/<sweep>/summary.nc`, `figures_<sweep>`)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="eigsweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list the run ids of a sweep")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("sweep")
    p = sub.add_parser("train", help="train one run of a sweep and write its result file")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--sweep", required=True)
    p.add_argument("--run", required=True, help="run id (see `eigsweep list`)")
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default=None)
    p = sub.add_parser("sweep", help="without Snakemake: train a sweep's missing runs one after another, "
                                     "then write summary.nc")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--results", default=None, help="results directory (default: config results_dir)")
    p.add_argument("sweep")
    p = sub.add_parser("job", help="the Snakemake train rules' command: one run or one pack of the workflow's "
                                   "jobs file, here or on Slurm")
    p.add_argument("--jobs-file", required=True, help="the JSON file of specs and resources the workflow writes")
    p.add_argument("--sweep", required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run")
    which.add_argument("--pack", help="a pack id: trains those of its runs whose result file is missing or stale")
    p.add_argument("--out", required=True, nargs="+", help="the result file (one per member of a pack, in order)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--log", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from eigsweep.jobs import JobError

    try:
        return _dispatch(args)
    except JobError as e:
        print(f"eigsweep: {e}", file=sys.stderr)
        return 1


def _dispatch(args) -> int:
    if args.command == "job":   # no config file: the workflow hands over the resolved spec and resources
        from eigsweep.jobs import JobError, run_job_from_file, run_pack_from_file

        if args.pack:
            run_pack_from_file(args.jobs_file, args.sweep, args.pack, args.out, args.checkpoint, args.log)
        elif len(args.out) != 1:
            raise JobError(f"--run {args.run}: one --out file, not {len(args.out)}")
        else:
            run_job_from_file(args.jobs_file, args.sweep, args.run, args.out[0], args.checkpoint, args.log)
        return 0

    from eigsweep.config import ConfigError, load_config, sweep_runs

    try:
        config = load_config(args.config)
        if args.sweep not in config["sweeps"]:
            raise ConfigError(f"unknown sweep {args.sweep!r}; known: {', '.join(config['sweeps'])}")
        runs = {r.run_id: r for r in sweep_runs(config, args.sweep)}
    except ConfigError as e:
        print(f"eigsweep: {e}", file=sys.stderr)
        return 2
    if args.command == "list":
        print("\n".join(runs))
        return 0
    if args.command == "sweep":
        return run_sweep(args.sweep, runs, Path(args.results or config.get("results_dir", "results")))
    if args.run not in runs:
        print(f"eigsweep: sweep {args.sweep!r} has no run {args.run!r} (see `eigsweep list {args.sweep}`)",
              file=sys.stderr)
        return 2
    from eigsweep.jobs import check_writable, runs_lock
    from eigsweep.train import train_run

    check_writable(args.out, args.checkpoint)
    with runs_lock(Path(args.out).parent, exclusive=False):
        train_run(runs[args.run], args.out, args.checkpoint)
    return 0


def run_sweep(sweep: str, runs: dict, results: Path) -> int:
    """Train the runs without a valid result file (a corrupt one is moved aside and retrained), then write
    summary.nc; holding the runs directory's lock and a Snakemake lock on the files, so neither another
    `eigsweep sweep` nor Snakemake can work on them meanwhile."""
    from eigsweep.aggregate import aggregate
    from eigsweep.jobs import check_writable, runs_lock, snakemake_lock
    from eigsweep.results import ResultFileError, move_aside, read_run_file
    from eigsweep.train import train_run

    log = logging.getLogger("eigsweep.sweep")
    paths = {run_id: results / sweep / "runs" / f"{run_id}.nc" for run_id in runs}
    summary = results / sweep / "summary.nc"
    check_writable(summary, *paths.values(), results / sweep / "checkpoints" / "x.pt")
    with runs_lock(results / sweep / "runs", exclusive=True), snakemake_lock([*paths.values(), summary]):
        for run_id, spec in runs.items():
            out = paths[run_id]
            if out.exists():
                try:
                    read_run_file(out)
                    continue
                except ResultFileError as e:
                    log.warning("%s; moved it to %s, retraining", e, move_aside(out))
            train_run(spec, out, results / sweep / "checkpoints" / f"{run_id}.pt")
        aggregate(list(paths.values()), summary)
    print(f"{sweep}: {len(paths)} runs -> {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
