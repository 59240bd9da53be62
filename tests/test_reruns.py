"""Partial re-runs: one sweep at a time, `all` retrains nothing done, editing one sweep retrains that sweep
only (Snakemake's params trigger), run ids and done runs survive unrelated config edits."""
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def snakemake(cwd, *args):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def planned_trains(out: str) -> list[str]:
    """Run ids of the train jobs a dry run lists (--quiet rules... is not enough: we need the ids)."""
    return sorted(re.findall(r"output: \S+/runs/(\S+)\.nc", out))


def config(**edits):
    c = dict(
        results_dir="results",
        defaults=dict(model=dict(d_model=16, n_layers=1, n_heads=1, d_state=4, head_dim=8, pos_embedding="learned"),
                      train=dict(steps=4, batch_size=8, warmup_steps=1, eval_every=2, device="cpu", threads=1),
                      eval=dict(n_samples=4, batch_size=16)),
        slurm=dict(partition="gpu", gpus=1),
        tasks=dict(tiny=dict(name="mqar", vocab_size=40, seq_len=16, num_kv_pairs=2, n_train=64, n_test=16)),
        all=["one", "two"],
        sweeps=dict(one=dict(arch=["softmax", "linear"], task=["tiny"], seed=[0], lr=[3e-3]),
                    two=dict(arch=["softmax"], task=["tiny"], seed=[0, 1], lr=[3e-3])))
    for edit in edits.values():
        edit(c)
    return c


def write(path: Path, c: dict):
    (path / "config.yaml").write_text(yaml.safe_dump(c))


def run_ids(path: Path, sweep: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "eigsweep.cli", "list", sweep], cwd=path, capture_output=True,
                         text=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src"))).stdout
    return out.split()


def test_partial_reruns(tmp_path):
    write(tmp_path, config())
    ids = {s: run_ids(tmp_path, s) for s in ("one", "two")}
    # `snakemake one` runs that sweep only
    snakemake(tmp_path, "-c2", "results/one/summary.nc")
    assert sorted(p.stem for p in (tmp_path / "results/one/runs").glob("*.nc")) == sorted(ids["one"])
    assert not (tmp_path / "results/two").exists()
    # `all` after it trains the other sweep only
    assert planned_trains(snakemake(tmp_path, "-n", "all")) == sorted(ids["two"])
    snakemake(tmp_path, "-c2", "results/two/summary.nc")

    # unrelated edits: resources, descriptions, another task preset, a new sweep outside `all`,
    # the executor, `all` itself - nothing to retrain, same run ids
    def unrelated(c):
        c["slurm"].update(time_min=999, mem_gb=64)
        c["sweeps"]["one"].update(description="edited", slurm=dict(qos="long"))
        c["tasks"]["other"] = dict(name="mqar", vocab_size=64, seq_len=32, num_kv_pairs=4)
        c["sweeps"]["three"] = dict(arch=["mamba2"], task=["other"])
        c["executor"] = "slurm"
    write(tmp_path, config(u=unrelated))
    assert planned_trains(snakemake(tmp_path, "-n", "results/one/summary.nc", "results/two/summary.nc")) == []
    assert {s: run_ids(tmp_path, s) for s in ("one", "two")} == ids

    # editing one sweep's settings retrains exactly that sweep's runs, for the changed parameters
    def edit_two(c):
        c["sweeps"]["two"]["train"] = dict(steps=5)
    write(tmp_path, config(u=unrelated, e=edit_two))
    out = snakemake(tmp_path, "-n", "all")
    assert planned_trains(out) == sorted(ids["two"])
    assert "Params have changed" in out or "params" in out.lower()
    assert {s: run_ids(tmp_path, s) for s in ("one", "two")} == ids
