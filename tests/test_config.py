"""config.yaml validation and sweep expansion."""
import copy

import pytest

from eigsweep.config import ConfigError, RunSpec, load_config, run_id, sweep_runs, validate_config


@pytest.fixture
def config():
    return load_config("config.yaml")


def test_shipped_config_is_valid_and_every_sweep_expands(config):
    for sweep in config["sweeps"]:
        runs = sweep_runs(config, sweep)
        assert runs and len({r.run_id for r in runs}) == len(runs)


def test_demo_grid(config):
    runs = sweep_runs(config, "demo")
    assert {r.arch for r in runs} == {"softmax", "linear", "mamba2"}
    assert len({r.seed for r in runs}) >= 2
    assert len(runs) == 3 * len({r.seed for r in runs}) * len(config["sweeps"]["demo"].get("lr", [1]))


def test_lr_by_arch_replaces_lr(config):
    runs = sweep_runs(config, "mqar_paper")
    lrs = {r.arch: r.lr for r in runs}
    assert lrs == {"softmax": 4.64e-4, "linear": 1e-2, "mamba2": 1e-2}


def test_run_ids_are_readable_and_stable_across_unrelated_edits(config):
    before = [r.run_id for r in sweep_runs(config, "demo")]
    edited = copy.deepcopy(config)
    edited["sweeps"]["demo"]["train"]["steps"] = 12345
    edited["defaults"]["eval"]["n_samples"] = 3
    assert [r.run_id for r in sweep_runs(edited, "demo")] == before
    assert run_id("softmax", "mqar_demo", "none", 0, 3e-3) == "softmax-mqar_demo-none-s0-lr3.00e-03"


def test_settings_change_changes_the_spec_hash_of_that_sweep_only(config):
    edited = copy.deepcopy(config)
    edited["sweeps"]["demo"]["train"]["steps"] = 12345
    assert [r.config_hash() for r in sweep_runs(edited, "demo")] != [r.config_hash() for r in sweep_runs(config, "demo")]
    assert [r.config_hash() for r in sweep_runs(edited, "mqar_paper")] == \
        [r.config_hash() for r in sweep_runs(config, "mqar_paper")]


def test_spec_json_roundtrip(config):
    r = sweep_runs(config, "demo")[0]
    assert RunSpec.from_json(r.to_json()) == r


def test_modification_overrides_model(config):
    cfg = copy.deepcopy(config)
    cfg["sweeps"]["demo"]["modification"] = ["none", "gate", "depth1"]
    runs = {r.modification: r for r in sweep_runs(cfg, "demo") if r.arch == "softmax" and r.seed == 0}
    assert runs["gate"].model.output_gate and not runs["none"].model.output_gate
    assert runs["depth1"].model.n_layers == 1 and runs["none"].model.n_layers == 2


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c["sweeps"]["demo"].update(bogus=1), ["sweeps.demo", "'bogus'", "allowed:", "arch"]),
    (lambda c: c["sweeps"]["demo"]["train"].update(stepz=3), ["sweeps.demo.train", "'stepz'", "steps"]),
    (lambda c: c["sweeps"]["demo"]["train"].update(steps="many"), ["sweeps.demo.train.steps", "integer"]),
    (lambda c: c["sweeps"]["demo"].update(arch=["softmax", "transformerXL"]),
     ["sweeps.demo.arch[1]", "'transformerXL'", "softmax", "mamba2"]),
    (lambda c: c["sweeps"]["demo"].update(task=["nope"]), ["sweeps.demo.task[0]", "'nope'", "mqar_demo"]),
    (lambda c: c["tasks"]["mqar_demo"].update(name="mqqar"), ["tasks.mqar_demo.name", "'mqqar'", "mqar"]),
    (lambda c: c["sweeps"]["demo"].update(modification=["gated"]), ["modification[0]", "'gated'", "gate"]),
    (lambda c: c["defaults"]["model"].update(short_conv="qv"), ["defaults.model.short_conv", "qkv"]),
    (lambda c: c.update(all=["demo", "ghost"]), ["all[1]", "'ghost'"]),
    (lambda c: c["sweeps"].update(all=c["sweeps"]["demo"]), ["sweeps.all", "reserved"]),
])
def test_bad_config_names_the_key_and_allowed_values(config, mutate, expected):
    bad = copy.deepcopy(config)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    for text in expected:
        assert text in str(err.value)


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("sweeps: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
