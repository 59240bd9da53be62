"""Packs in the workflow: the `pack` key, deterministic grouping, one Snakemake job per pack, partial re-runs,
packs in jobs files and `eigsweep sweep`."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eigsweep.config import ConfigError, pack_size, sweep_runs, validate_config
from eigsweep.packs import group_packs, pack_key

ROOT = Path(__file__).resolve().parents[1]


def base_config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_pack_key_top_level_and_per_sweep():
    c = base_config()
    assert pack_size(c, "demo") == 1                       # Config's default
    c["pack"] = 8
    assert pack_size(c, "demo") == 8
    c["sweeps"]["demo"]["pack"] = 2                        # the sweep's wins
    assert pack_size(c, "demo") == 2 and pack_size(c, "zoo") == 8   # zoo has no pack of its own
    validate_config(c)
    for where, bad in (("top", 0), ("top", "4"), ("sweep", 0), ("sweep", 2.0)):
        c = base_config()
        (c if where == "top" else c["sweeps"]["demo"])["pack"] = bad
        with pytest.raises(ConfigError, match="pack"):
            validate_config(c)


def test_grouping_is_by_pack_key_in_grid_order_and_deterministic():
    c = base_config()
    c["sweeps"]["demo"].update(seed=[0, 1, 2], lr_by_arch={}, lr=[1e-3, 1e-2])   # 3 archs x 3 seeds x 2 lr
    runs = sweep_runs(c, "demo")
    named = group_packs(runs, 4)
    assert list(named) == ["softmax-mqar_demo-pack0", "softmax-mqar_demo-pack1", "linear-mqar_demo-pack2",
                           "linear-mqar_demo-pack3", "mamba2-mqar_demo-pack4", "mamba2-mqar_demo-pack5"]
    packs = list(named.values())
    assert [len(p) for p in packs] == [4, 2] * 3
    for p in packs:
        assert len({pack_key(r) for r in p}) == 1
        assert [runs.index(r) for r in p] == sorted(runs.index(r) for r in p)   # grid order within a pack
    assert [r.run_id for p in packs for r in p] == [r.run_id for r in runs]      # arch-major grid: same order
    assert {k: [r.run_id for r in p] for k, p in group_packs(sweep_runs(c, "demo"), 4).items()} == \
        {k: [r.run_id for r in p] for k, p in named.items()}
    assert [len(p) for p in group_packs(runs, 1).values()] == [1] * len(runs)
    assert list(group_packs(runs, 1))[:2] == ["softmax-mqar_demo-pack00", "softmax-mqar_demo-pack01"]


def snakemake(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert proc.returncode == 0, f"snakemake {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def tiny_packed(c, pack=2):
    c["tasks"]["mqar_demo"].update(n_train=64, n_test=16, seq_len=16, vocab_size=40, num_kv_pairs=2)
    c["sweeps"]["demo"].update(arch=["softmax"], seed=[0, 1, 2], lr_by_arch={}, lr=[1e-2], pack=pack,
                               train=dict(steps=4, eval_every=2, warmup_steps=1, spectrum_steps=[2]),
                               model=dict(d_model=16, head_dim=8, pos_embedding="learned"))
    c["defaults"]["eval"]["n_samples"] = 4
    return c


def test_snakemake_trains_a_pack_as_one_job_and_a_partial_rerun_only_its_missing_member(tmp_path):
    import xarray as xr

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_packed(base_config())))
    summary = "results/demo/summary.nc"
    dry = snakemake("-n", summary, cwd=tmp_path)
    # the dry run shows the packs: one job per pack, its members as outputs, the pack id in its log
    assert "rule train_pack_demo_0:" in dry and "rule train_pack_demo_1:" in dry and "rule train:" not in dry
    assert "logs/softmax-mqar_demo-pack0.log" in dry and "s1-lr1.00e-02.nc (update)" in dry
    snakemake("-c1", summary, cwd=tmp_path)
    runs = tmp_path / "results/demo/runs"
    ids = [f"softmax-mqar_demo-none-s{s}-lr1.00e-02" for s in range(3)]
    ds = xr.open_dataset(runs / f"{ids[0]}.nc")
    assert ds.attrs["pack_members"] == f"{ids[0]} {ids[1]}" and str(ds.status.values) == "ok"
    assert "training 2 of 2 runs" in (tmp_path / "results/demo/logs/softmax-mqar_demo-pack0.log").read_text()
    assert "Nothing to be done" in snakemake("-n", summary, cwd=tmp_path)    # same config, same packs
    # delete one member: only its pack runs, and trains only it; the other member's file is left as it is
    # (same inode and bytes: not rewritten; Snakemake touches its mtime, as for any output of a job it ran)
    kept, before = runs / f"{ids[0]}.nc", (runs / f"{ids[0]}.nc").read_bytes()
    inode = kept.stat().st_ino
    (runs / f"{ids[1]}.nc").unlink()
    assert "train_pack" not in snakemake("-n", "figures_demo", cwd=tmp_path)   # figures-only: never trains
    out = snakemake("-c1", summary, cwd=tmp_path)
    assert "train_pack_demo_0" in out and "train_pack_demo_1" not in out
    assert f"training 1 of 2 runs (up to date: {ids[0]})" in \
        (tmp_path / "results/demo/logs/softmax-mqar_demo-pack0.log").read_text()
    assert kept.stat().st_ino == inode and kept.read_bytes() == before
    assert (runs / f"{ids[1]}.nc").exists() and xr.open_dataset(tmp_path / summary).sizes["run"] == 3
    # regrouping (pack 3): Snakemake runs the new pack's job (its parameters changed), which trains nothing
    before = {i: (runs / f"{i}.nc").read_bytes() for i in ids}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_packed(base_config(), pack=3)))
    assert "train_pack_demo_0" in snakemake("-c1", summary, cwd=tmp_path)
    log = (tmp_path / "results/demo/logs/softmax-mqar_demo-pack0.log").read_text()
    assert f"training 0 of 3 runs (up to date: {' '.join(ids)})" in log
    assert all((runs / f"{i}.nc").read_bytes() == before[i] for i in ids)
    # a setting outside the pack key (target accuracy) changes every member's spec: the params trigger
    c = tiny_packed(base_config())
    c["sweeps"]["demo"]["train"]["target_acc"] = 0.5
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(c))
    dry = snakemake("-n", summary, cwd=tmp_path)
    assert "train_pack_demo_0" in dry and "train_pack_demo_1" in dry and "params" in dry.lower()


def test_unpacked_sweeps_keep_the_train_rule(tmp_path):
    """pack 1 (the default): one `train` job per run, the command as before; a packed sweep beside it."""
    c = tiny_packed(base_config(), pack=1)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(c))
    dry = snakemake("-n", "-p", "results/demo/summary.nc", cwd=tmp_path)
    assert dry.count("rule train:") == 3 and "train_pack" not in dry
    assert "eigsweep.cli job --jobs-file" in dry and "--run softmax-mqar_demo-none-s0-lr1.00e-02" in dry
    c["sweeps"]["other"] = dict(c["sweeps"]["demo"], pack=3)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(c))
    dry = snakemake("-n", "results/demo/summary.nc", "results/other/summary.nc", cwd=tmp_path)
    assert dry.count("rule train:") == 3 and dry.count("rule train_pack_other_0:") == 1


def test_slurm_job_of_a_pack_checkpoints_the_whole_pack_and_resumes_it_exactly(tmp_path, monkeypatch,
                                                                                fake_submitit_handler):
    """The Slurm job of a pack (TrainJob of a list of specs) honours the preemption protocol: the signal sets
    the pack's stop_requested, the pack checkpoints at the next step boundary, submitit's handler requeues,
    and the requeued job resumes the whole pack: every member's file equals an uninterrupted pack's."""
    import signal

    import numpy as np
    import torch
    import xarray as xr

    import eigsweep.pack as pack_mod
    from eigsweep.jobs import stale_members
    from eigsweep.pack import train_pack
    from eigsweep.slurm import TrainJob
    from test_training import tiny_spec

    specs = [tiny_spec(steps=10, checkpoint_every=100).__class__.from_dict(
        {**json_dict(tiny_spec(steps=10, checkpoint_every=100)), "seed": s}) for s in (0, 1)]
    ref = train_pack(specs, [tmp_path / f"ref{i}.nc" for i in range(2)])
    handler, calls = fake_submitit_handler
    outs, ckpt = [str(tmp_path / f"{s.run_id}.nc") for s in specs], tmp_path / "pack.pt"
    job = handler.job = TrainJob([s.to_json() for s in specs], outs, str(ckpt), str(tmp_path / "pack.log"),
                                 name="softmax-mqar_tiny-pack0")
    real, n = pack_mod.head_loss, {"calls": 0}

    def loss(h, weight, bias, y):   # one vmapped call per step: the signal arrives during step 6
        n["calls"] += 1
        if n["calls"] == 6:
            os.kill(os.getpid(), signal.SIGUSR2)
        return real(h, weight, bias, y)
    monkeypatch.setattr(pack_mod, "head_loss", loss)
    with pytest.raises(SystemExit):
        job()
    assert len(calls) == 1 and calls[0]["frame"] is None   # called at the step boundary, not mid-step
    assert torch.load(ckpt, weights_only=False)["step"] == 6 and not any(Path(o).exists() for o in outs)
    monkeypatch.undo()
    delayed = calls[0]["delayed"]   # what submitit pickles for the requeued job: the same pack
    assert delayed.function.spec_json == job.spec_json and delayed.function.stopped_at == 6
    result = delayed.result()
    assert result["pack"] == "softmax-mqar_tiny-pack0" and [r["steps_done"] for r in result["runs"]] == [10, 10]
    for o, r in zip(outs, ref):
        res = xr.load_dataset(o)
        for v in ("train_loss", "bin_fraction", "test_acc", "fine_count"):
            np.testing.assert_array_equal(res[v].values, r[v].values)
    assert not ckpt.exists() and "resumed pack" in (tmp_path / "pack.log").read_text()
    # which members a re-run trains: missing, corrupt (moved aside) or of another configuration
    assert stale_members(specs, outs) == []
    Path(outs[0]).write_text("garbage")
    other = specs[1].__class__.from_dict({**json_dict(specs[1]), "lr": 0.5})
    assert stale_members([specs[0], other, specs[1]], [outs[0], outs[1], tmp_path / "none.nc"]) == [0, 1, 2]
    assert stale_members(specs[1:], outs[1:]) == []
    assert Path(outs[0] + ".corrupt").exists()


def test_a_signal_after_the_last_step_of_a_pack_is_ignored(tmp_path):
    """Pack.done (the protocol's other half): true once every member finished or the last step is reached."""
    from eigsweep.pack import Pack
    from test_training import tiny_spec

    specs = [tiny_spec(steps=4).__class__.from_dict({**json_dict(tiny_spec(steps=4)), "seed": s}) for s in (0, 1)]
    pack = Pack(specs, [tmp_path / "a.nc", tmp_path / "b.nc"])
    assert not pack.done
    pack.train()
    assert pack.done


def json_dict(spec):
    import json
    return json.loads(spec.to_json())


def test_eigsweep_sweep_trains_in_packs_from_the_config(tmp_path, monkeypatch):
    """`eigsweep sweep` groups the runs as the Snakefile does (pack size from the config, no code edit), trains
    only missing or stale members, and leaves the others' files alone."""
    import xarray as xr

    from eigsweep import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_packed(base_config())))
    assert cli.main(["sweep", "--config", "config.yaml", "demo"]) == 0
    runs = tmp_path / "results/demo/runs"
    ids = [f"softmax-mqar_demo-none-s{s}-lr1.00e-02" for s in range(3)]
    members = [xr.open_dataset(runs / f"{r}.nc").attrs.get("pack_members") for r in ids]
    assert members == [f"{ids[0]} {ids[1]}"] * 2 + [None]   # packs of 2, 1 (a pack of one trains solo)
    assert xr.open_dataset(tmp_path / "results/demo/summary.nc").sizes["run"] == 3
    stamps = {r: (runs / f"{r}.nc").stat().st_mtime_ns for r in ids}
    (runs / f"{ids[0]}.nc").unlink()
    assert cli.main(["sweep", "--config", "config.yaml", "demo"]) == 0
    assert (runs / f"{ids[0]}.nc").exists()
    assert [(runs / f"{r}.nc").stat().st_mtime_ns == stamps[r] for r in ids] == [False, True, True]
    assert cli.main(["sweep", "--config", "config.yaml", "--pack", "0", "demo"]) == 2


def test_job_of_a_pack_checks_its_jobs_file_and_outputs(tmp_path, capsys):
    from eigsweep import cli
    from eigsweep.jobs import write_jobs_file
    from test_training import tiny_spec

    specs = [tiny_spec().__class__.from_dict({**json_dict(tiny_spec()), "seed": s}) for s in (0, 1)]
    jobs = write_jobs_file({"t": {s.run_id: s.to_json() for s in specs}}, dict(sweeps=dict(t={})), tmp_path / "j",
                           packs={"t": {"p0": [s.run_id for s in specs]}})
    args = ["job", "--jobs-file", jobs, "--sweep", "t"]
    assert cli.main([*args, "--pack", "p9", "--out", "a.nc"]) == 1
    assert "has no pack 'p9'" in capsys.readouterr().err
    assert cli.main([*args, "--pack", "p0", "--out", str(tmp_path / f"{specs[1].run_id}.nc"),
                     str(tmp_path / f"{specs[0].run_id}.nc")]) == 1
    assert "--out must be its runs' files, in order" in capsys.readouterr().err
    assert cli.main([*args, "--run", specs[0].run_id, "--out", "a.nc", "b.nc"]) == 1
    assert not list(tmp_path.glob("*.nc"))
