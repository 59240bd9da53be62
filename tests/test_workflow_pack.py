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
    assert pack_size(c, "demo") == 2 and pack_size(c, "mqar_paper") == 8
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
    packs = group_packs(runs, 4)
    assert [len(p) for p in packs] == [4, 2] * 3
    for p in packs:
        assert len({pack_key(r) for r in p}) == 1
        assert [runs.index(r) for r in p] == sorted(runs.index(r) for r in p)   # grid order within a pack
    assert [r.run_id for p in packs for r in p] == [r.run_id for r in runs]      # arch-major grid: same order
    assert [[r.run_id for r in p] for p in group_packs(sweep_runs(c, "demo"), 4)] == \
        [[r.run_id for r in p] for p in packs]
    assert [len(p) for p in group_packs(runs, 1)] == [1] * len(runs)
