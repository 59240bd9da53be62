"""eigsweep's command line. Sweeps normally run through Snakemake (`snakemake -c2 <sweep>`); these commands
list a sweep's runs, report what it has done and what remains, train one run, or train a whole sweep without
Snakemake. Aggregation and figures are Snakemake targets (`results/<sweep>/summary.nc`, `figures_<sweep>`)."""
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
    p = sub.add_parser("status", help="what a sweep has done and what remains, from its result files (read-only)")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--results", default=None, help="results directory (default: config results_dir)")
    p.add_argument("sweep")
    p = sub.add_parser("train", help="train one run of a sweep and write its result file")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--sweep", required=True)
    p.add_argument("--run", required=True, help="run id (see `eigsweep list`)")
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default=None)
    p = sub.add_parser("sweep", help="without Snakemake: train a sweep's missing or stale runs, pack by pack "
                                     "(config key `pack`), on the GPU if there is one, then write summary.nc")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--results", default=None, help="results directory (default: config results_dir)")
    p.add_argument("--pack", type=int, default=None, help="runs per pack (default: the sweep's or config's `pack`)")
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
    if args.command == "status":
        from eigsweep.config import pack_size
        from eigsweep.status import sweep_status

        results = Path(args.results or config.get("results_dir", "results"))
        print(sweep_status(args.sweep, runs, results, pack_size(config, args.sweep)))
        return 0
    if args.command == "sweep":
        from eigsweep.config import pack_size

        size = pack_size(config, args.sweep) if args.pack is None else args.pack
        if size < 1:
            print(f"eigsweep: --pack must be at least 1, not {size}", file=sys.stderr)
            return 2
        return run_sweep(args.sweep, runs, Path(args.results or config.get("results_dir", "results")), size)
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


def run_sweep(sweep: str, runs: dict, results: Path, pack: int = 1) -> int:
    """Train the runs without a valid, current result file (a corrupt one is moved aside and retrained, one
    of another configuration retrained), in packs of at most ``pack`` runs grouped as the Snakefile groups
    them (eigsweep.packs.group_packs), then write summary.nc; holding the runs directory's lock and a
    Snakemake lock on the files, so neither another `eigsweep sweep` nor Snakemake can work on them meanwhile.
    The device is each run's train.device (default auto: the GPU when there is one)."""
    from eigsweep.aggregate import aggregate
    from eigsweep.jobs import check_writable, runs_lock, snakemake_lock, stale_members
    from eigsweep.packs import group_packs

    log = logging.getLogger("eigsweep.sweep")
    paths = {run_id: results / sweep / "runs" / f"{run_id}.nc" for run_id in runs}
    summary = results / sweep / "summary.nc"
    checkpoints = results / sweep / "checkpoints"
    check_writable(summary, *paths.values(), checkpoints / "x.pt")
    with runs_lock(results / sweep / "runs", exclusive=True), snakemake_lock([*paths.values(), summary]):
        for pack_id, members in group_packs(list(runs.values()), pack).items():
            outs = [paths[r.run_id] for r in members]
            todo = stale_members(members, outs)
            if not todo:
                continue
            if len(members) == 1:   # unpacked: as a Snakemake train job, checkpoint named after the run
                from eigsweep.train import train_run

                train_run(members[0], outs[0], checkpoints / f"{members[0].run_id}.pt")
                continue
            from eigsweep.pack import train_pack

            log.info("pack %s: training %d of %d runs", pack_id, len(todo), len(members))
            train_pack([members[i] for i in todo], [outs[i] for i in todo], checkpoints / f"{pack_id}.pt")
        aggregate(list(paths.values()), summary)
    print(f"{sweep}: {len(paths)} runs -> {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
