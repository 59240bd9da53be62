def removed_runs_marker(wildcards):
    """``runs/.removed``, an input of the aggregate rule, rewritten while the DAG is built when a run file of a
    sweep that has a summary.nc is missing (deleted to retrain it, or moved aside as corrupt). Newer than
    summary.nc and of new content, it makes Snakemake redo the aggregation and so train the missing runs:
    Snakemake 9 does not rebuild a missing intermediate file when the files downstream of it are current.
    Created with mtime 0, so its creation alone never re-aggregates."""
    sweep = wildcards.sweep
    marker = f"{RESULTS}/{sweep}/runs/.removed"
    missing = [r.run_id for r in RUNS[sweep] if not os.path.exists(run_file(sweep, r.run_id))]
    try:
        if not os.path.exists(marker):
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            open(marker, "a").close()
            os.utime(marker, (0, 0))
        if missing and os.path.exists(f"{RESULTS}/{sweep}/summary.nc"):
            with open(marker, "w") as f:   # new content: Snakemake skips a newer input whose checksum it knows
                f.write(f"{time.time()} missing: {' '.join(missing)}\n")
    except OSError as e:
        if not missing:   # a read-only results directory with every run done: nothing to redo anyway
            return []
        raise ValueError(f"cannot write {marker} ({e.strerror}): make {RESULTS}/{sweep} writable") from None
    return marker


rule aggregate:
    """Stack a sweep's runs into one summary.nc along a `run` dimension. A corrupt run file is moved aside
    (<run>.nc.corrupt) and the job fails naming it; the next invocation retrains it."""
    input:
        runs=checked_run_files,
        removed=removed_runs_marker,
    output:
        f"{RESULTS}/{{sweep}}/summary.nc",
    log:
        f"{RESULTS}/{{sweep}}/logs/aggregate.log",
    conda:
        "../../envs/eigsweep.yaml"
    script:
        "../scripts/aggregate.py"
