"""DAG scale: `snakemake -n` of a configured grid of N runs vs a bare Snakefile with as many trivial jobs.

    python benchmarks/dag_scale.py [--runs 10000] [--repeats 3] [--pack 1]

Both dry runs start from an empty results directory, so every job is listed. The eigsweep side is the
real Snakefile on a config with one sweep of N runs (arch x modification x seed x lr); the bare side has
the same shape: N wildcard jobs -> one aggregate job -> one figures job -> `all`. Prints the median and
min wall time of each and their ratio (target: eigsweep <= 1.5 x bare). ``--pack N`` sets the config key
`pack` (one Snakemake job per pack of N runs; the bare side keeps one job per run).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

BARE = '''
N = {n}
rule all:
    input: "out/figure.txt"
rule figures:
    input: "out/summary.txt"
    output: "out/figure.txt"
    shell: "touch {{output}}"
rule aggregate:
    input: expand("out/runs/{{i}}.txt", i=range(N))
    output: "out/summary.txt"
    shell: "touch {{output}}"
rule train:
    output: "out/runs/{{i}}.txt"
    shell: "touch {{output}}"
'''


def grid_config(n: int, pack: int = 1) -> dict:
    archs, mods = ["softmax", "linear"], ["none", "gate", "conv_qk", "conv_qkv", "depth1"]
    lrs = [1e-4 * (i + 1) for i in range(10)]
    seeds = n // (len(archs) * len(mods) * len(lrs))
    assert seeds * len(archs) * len(mods) * len(lrs) == n, "--runs must be a multiple of 100"
    c = yaml.safe_load((ROOT / "config.yaml").read_text())
    c["results_dir"] = "results"
    c["sweeps"] = {"big": dict(arch=archs, task=["mqar_demo"], modification=mods, seed=list(range(seeds)), lr=lrs)}
    c["all"] = ["big"]
    c["pack"] = pack
    return c


def timed(cmd, cwd) -> tuple[float, float]:
    """(wall, CPU) seconds of one command."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    dt = time.perf_counter() - t
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return dt, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pack", type=int, default=1, help="config key pack (runs per Snakemake job)")
    args = ap.parse_args()
    sm = [sys.executable, "-m", "snakemake", "-n", "all"]
    with tempfile.TemporaryDirectory() as tmp:
        bare, ours = Path(tmp, "bare"), Path(tmp, "eigsweep")
        bare.mkdir(), ours.mkdir()
        (bare / "Snakefile").write_text(BARE.format(n=args.runs))
        (ours / "config.yaml").write_text(yaml.safe_dump(grid_config(args.runs, args.pack)))
        times, cpu = {"bare": [], "eigsweep": []}, {"bare": [], "eigsweep": []}
        for _ in range(args.repeats):   # interleaved, so both see the same machine load
            for name, cmd, cwd in (("bare", sm, bare),
                                   ("eigsweep", [*sm[:3], "--snakefile", str(ROOT / "Snakefile"), *sm[3:]], ours)):
                wall, c = timed(cmd, cwd)
                times[name].append(wall)
                cpu[name].append(c)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {args.runs} runs, pack {args.pack}, {args.repeats} repeats, load average "
          f"{os.getloadavg()[0]:.1f}")
    for k, v in times.items():
        print(f"  {k:9s} wall median {med[k]:6.2f} s  min {min(v):6.2f} s  (all {' '.join(f'{x:.2f}' for x in v)})"
              f"   CPU median {statistics.median(cpu[k]):6.2f} s")
    ratio = med["eigsweep"] / med["bare"]
    print(f"  ratio eigsweep / bare, wall medians: {ratio:.2f} ({'OK' if ratio <= 1.5 else 'OVER'} the 1.5 limit);"
          f" wall minima: {min(times['eigsweep']) / min(times['bare']):.2f};"
          f" CPU medians: {statistics.median(cpu['eigsweep']) / statistics.median(cpu['bare']):.2f}")
    sys.exit(0 if ratio <= 1.5 else 1)


if __name__ == "__main__":
    main()
