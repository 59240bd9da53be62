"""Command line: `eigsweep train`, `eigsweep list`, `eigsweep aggregate`, `eigsweep figures`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="eigsweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one run of a sweep and write its result file")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--sweep", required=True)
    p.add_argument("--run", required=True, help="run id (see `eigsweep list`)")
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default=None)
    p = sub.add_parser("job", help="the Snakemake train rule's command: one run, here or on Slurm")
    p.add_argument("--spec", help="the run's RunSpec as JSON (or --jobs-file with --sweep and --run)")
    p.add_argument("--jobs-file", help="the JSON file of specs and resources the workflow writes")
    p.add_argument("--sweep")
    p.add_argument("--run")
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--log", default=None)
    p.add_argument("--executor", default="local", choices=["local", "slurm"])
    p.add_argument("--slurm", default="{}", help="Slurm resources as JSON (eigsweep.launch.slurm_resources)")
    p = sub.add_parser("list", help="list the run ids of a sweep")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("sweep")
    p = sub.add_parser("sweep", help="without Snakemake: train a sweep's missing runs one after another, "
                                     "then write summary.nc")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--results", default=None, help="results directory (default: config results_dir)")
    p.add_argument("sweep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    if args.command == "job":   # no config file: the workflow hands over the resolved spec and resources
        import json

        from eigsweep.launch import run_job, run_job_from_file

        if args.jobs_file:
            run_job_from_file(args.jobs_file, args.sweep, args.run, args.out, args.checkpoint, args.log)
        else:
            run_job(args.spec, args.out, args.checkpoint, args.log, args.executor, json.loads(args.slurm))
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
        print(f"eigsweep: sweep {args.sweep!r} has no run {args.run!r}", file=sys.stderr)
        return 2
    from eigsweep.train import train_run

    train_run(runs[args.run], args.out, args.checkpoint)
    return 0


def run_sweep(sweep: str, runs: dict, results: Path) -> int:
    from eigsweep.aggregate import aggregate
    from eigsweep.train import train_run

    paths = []
    for run_id, spec in runs.items():
        out = results / sweep / "runs" / f"{run_id}.nc"
        if not out.exists():
            train_run(spec, out, results / sweep / "checkpoints" / f"{run_id}.pt")
        paths.append(out)
    aggregate(paths, results / sweep / "summary.nc")
    print(f"{sweep}: {len(paths)} runs -> {results / sweep / 'summary.nc'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
