import re as _re


def _unpacked_sweeps() -> str:
    """The sweeps whose runs the train rule makes, as a wildcard pattern: every sweep when none is packed,
    none ("(?!)" never matches) when all are."""
    if not PACKS:
        return "[A-Za-z0-9_]+"
    unpacked = [_re.escape(s) for s in config["sweeps"] if s not in PACKS]
    return "(?:" + "|".join(unpacked) + ")" if unpacked else "(?!)"


UNPACKED_SWEEPS = _unpacked_sweeps()


rule train:
    """Train one run; write its eigenvalue spectra, curve and provenance to one netCDF file.

    A shell command rather than a script: Snakemake reruns a script rule whenever the script file is newer
    than the output, which after a fresh clone or a pull would retrain cached results. The run's spec is the
    rerun trigger (params); the job reads it, and where to run (executor, Slurm resources), from JOBS_FILE,
    so resources are not a rerun trigger. The jobs file is content-addressed (eigsweep/jobs.py): another
    invocation cannot change what a running one trains."""
    output:
        run_file("{sweep}", "{run}"),
    params:
        spec=spec_json_of,   # the rerun trigger: a run retrains when its spec changes
        checkpoint=f"{RESULTS}/{{sweep}}/checkpoints/{{run}}.pt",
    log:
        f"{RESULTS}/{{sweep}}/logs/{{run}}.log",
    wildcard_constraints:
        sweep=UNPACKED_SWEEPS,   # the runs of a packed sweep are outputs of its train_pack_* rules
    threads: 1
    conda:
        "../../envs/eigsweep.yaml"
    shell:
        "python -m eigsweep.cli job --jobs-file {JOBS_FILE} --sweep {wildcards.sweep} --run {wildcards.run}"
        " --out {output} --checkpoint {params.checkpoint} --log {log}"


def _pack_rule(sweep, index, pack, runs):
    """One job per pack: its members' run files, flagged update() so that Snakemake never deletes a member's
    file before the job (a partial re-run trains only the missing or stale members, eigsweep.jobs.run_pack_job,
    and leaves the others' files as they are). The members' specs are the rerun trigger."""
    rule:
        name:
            f"train_pack_{sweep}_{index}"
        output:
            [update(run_file(sweep, r)) for r in runs],
        params:
            specs=[SPEC_JSON[sweep][r] for r in runs],   # the rerun trigger
            checkpoint=f"{RESULTS}/{sweep}/checkpoints/{pack}.pt",
        log:
            f"{RESULTS}/{sweep}/logs/{pack}.log",
        threads: 1
        conda:
            "../../envs/eigsweep.yaml"
        shell:
            f"python -m eigsweep.cli job --jobs-file {{JOBS_FILE}} --sweep {sweep} --pack {pack} --out {{output}}"
            " --checkpoint {params.checkpoint} --log {log}"


for _sweep, _packs in PACKS.items():
    for _i, (_pack, _runs) in enumerate(_packs.items()):
        _pack_rule(_sweep, _i, _pack, _runs)
