"""config.yaml validation and sweep expansion; the exported JSON schema; Slurm resources; a torch-free DAG."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
import yaml

import eigsweep.config as config_module
from eigsweep import registry
from eigsweep.config import (DEFAULT_SLURM, ConfigError, ModelConfig, RunSpec, load_config, run_id, schema_text, slurm_resources,
                             sweep_runs, validate_config)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config():
    return load_config("config.yaml")


def test_shipped_config_is_valid_and_every_sweep_expands(config):
    for sweep in config["sweeps"]:
        runs = sweep_runs(config, sweep)
        assert runs and len({r.run_id for r in runs}) == len(runs)


def test_demo_grid(config):
    """The grid computed here from the raw YAML (lr_by_arch replaces lr per architecture) is the expansion."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())["sweeps"]["demo"]
    expected = {(arch, task, "none", seed, lr)
                for arch in raw["arch"] for task in raw["task"] for seed in raw.get("seed", [0])
                for lr in raw.get("lr_by_arch", {}).get(arch, raw.get("lr", [1e-3]))}
    runs = sweep_runs(config, "demo")
    assert len(runs) == len(expected) == 6      # 3 architectures x 2 seeds x their one lr each
    assert {(r.arch, r.task, r.modification, r.seed, r.lr) for r in runs} == expected
    assert {(r.arch, r.lr) for r in runs} == {("softmax", 5e-3), ("linear", 1e-2), ("mamba2", 1e-2)}


def test_modification_is_expanded_only_for_architectures_it_applies_to(config):
    runs = sweep_runs(config, "parity_probe")   # beta2 sets DeltaNet's beta_range option
    assert {r.arch for r in runs if r.modification == "beta2"} == {"deltanet", "gated_deltanet"}
    assert {r.arch for r in runs if r.modification == "none"} == {"mamba2", "deltanet", "gated_deltanet", "softmax"}
    config = copy.deepcopy(config)
    config["sweeps"]["x"] = dict(arch=["softmax", "linear", "mamba2"], task=["mqar_demo"],
                                 modification=["none", "gate", "conv_qk"])
    mods = {(r.arch, r.modification) for r in sweep_runs(config, "x")}
    assert ("mamba2", "conv_qk") not in mods and ("mamba2", "gate") in mods and ("linear", "conv_qk") in mods


def test_lr_by_arch_replaces_lr(config):
    config = copy.deepcopy(config)
    config["sweeps"]["x"] = dict(arch=["softmax", "linear", "mamba2"], task=["mqar_demo"], lr=[3e-3],
                                 lr_by_arch={"linear": [1e-2, 2e-2]})
    lrs = sorted((r.arch, r.lr) for r in sweep_runs(config, "x"))
    assert lrs == [("linear", 1e-2), ("linear", 2e-2), ("mamba2", 3e-3), ("softmax", 3e-3)]


def test_model_by_arch_overrides_model_for_that_architecture_and_modifications_still_win(config):
    config = copy.deepcopy(config)
    config["sweeps"]["x"] = dict(arch=["softmax", "mamba2"], task=["mqar_demo"], modification=["none", "depth1"],
                                 model={"d_model": 32, "n_layers": 3},
                                 model_by_arch={"softmax": {"pos_embedding": "learned", "n_layers": 4}})
    got = {(r.arch, r.modification): (r.model.pos_embedding, r.model.n_layers, r.model.d_model)
           for r in sweep_runs(config, "x")}
    assert got == {("softmax", "none"): ("learned", 4, 32), ("softmax", "depth1"): ("learned", 1, 32),
                   ("mamba2", "none"): ("none", 3, 32), ("mamba2", "depth1"): ("none", 1, 32)}
    # the paper's MQAR grid: positional embeddings for the attention mixers only
    paper = {r.arch: r.model.pos_embedding for r in sweep_runs(load_config(ROOT / "config.yaml"), "mqar_paper")}
    assert paper == {"softmax": "learned", "linear": "learned", "norm": "learned", "mamba2": "none", "s4": "none",
                     "lru": "none"}


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


def test_spec_json_is_the_json_of_to_dict(config):
    """to_json skips asdict for speed; it must give the same string (it is the train rule's rerun trigger),
    less the fields added after SPEC_FIELDS_V1 that hold their defaults (none yet)."""
    for sweep in config["sweeps"]:
        for r in sweep_runs(config, sweep):
            assert r.to_json() == json.dumps(r.to_dict(), sort_keys=True)


def test_a_setting_added_later_changes_no_spec_while_at_its_default(config, monkeypatch):
    """A setting added after the first cached results (here `pooling` plays one: left out of SPEC_FIELDS_V1)
    is not in a spec's JSON, the rerun trigger, while it holds its default, so the specs and config hashes of
    cached results stay those they were written with; set to another value it is in the spec; a spec written
    without it reads back with its default."""
    v1 = config_module.SPEC_FIELDS_V1["model"] - {"pooling"}
    monkeypatch.setitem(config_module.LATER_DEFAULTS, "model", config_module.later_defaults(ModelConfig, v1))
    assert config_module.LATER_DEFAULTS["model"] == {"pooling": "mean"}
    runs = sweep_runs(config, "mqar_paper")
    for r in runs:
        d = r.to_dict()
        assert d["model"].pop("pooling") == "mean"
        assert r.to_json() == json.dumps(d, sort_keys=True) and RunSpec.from_json(r.to_json()) == r
    edited = copy.deepcopy(config)
    edited["sweeps"]["mqar_paper"].setdefault("model", {})["pooling"] = "last"
    changed = sweep_runs(edited, "mqar_paper")
    assert all(json.loads(r.to_json())["model"]["pooling"] == "last" for r in changed)
    assert all(a.config_hash() != b.config_hash() for a, b in zip(runs, changed))


def test_committed_results_hold_the_config_hash_of_their_spec_in_config_yaml(config):
    """Every cached result file of a sweep in config.yaml was written for the spec config.yaml gives its run
    (else its job would read it as stale and retrain it): the paper-scale results cost GPU-hours."""
    predates = {"mqar_attention_baseline"}   # its one file predates the validation split (results/README.md)
    checked = 0
    for sweep in set(config["sweeps"]) - predates:
        specs = {r.run_id: r for r in sweep_runs(config, sweep)}
        for path in sorted((ROOT / "results" / sweep / "runs").glob("*.nc")):
            with xr.open_dataset(path) as ds:
                stored = ds.attrs["config_hash"]
            assert path.stem in specs and stored == specs[path.stem].config_hash(), path
            checked += 1
    assert checked >= 48 + 30 + 18   # mqar_paper, mqar_modifications, mqar_pseudo_lti at least


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


def test_bad_config_errors_are_one_line_each(config):
    bad = copy.deepcopy(config)
    bad["sweeps"]["demo"]["train"]["steps"] = "many"
    bad["tasks"]["mqar_demo"]["seq_len"] = 66.0
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    assert str(err.value).splitlines() == [
        "config key sweeps.demo.train.steps: Input should be a valid integer (got 'many')",
        "config key tasks.mqar_demo.seq_len: Input should be a valid integer (got 66.0)"]


def test_duplicate_yaml_keys_are_refused(tmp_path):
    text = (ROOT / "config.yaml").read_text().replace("  mqar_paper:\n", "  demo:\n", 1)
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"duplicate key 'demo' \(line \d+; first given on line \d+\)"):
        load_config(tmp_path / "c.yaml")


def test_exported_json_schema_is_committed_and_snakemake_validates_with_it(config):
    path = ROOT / "workflow/schemas/config.schema.json"
    assert path.read_text() == schema_text(), "run: python -m eigsweep.config --schema > " + str(path)
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    validate(copy.deepcopy(config), str(path), set_default=False)
    for mutate in (lambda c: c["sweeps"]["demo"]["train"].update(stepz=1),
                   lambda c: c["tasks"]["mqar_demo"].update(seq_len="64"),
                   lambda c: c["slurm"].update(cpus=0)):
        bad = copy.deepcopy(config)
        mutate(bad)
        with pytest.raises(WorkflowError):
            validate(bad, str(path), set_default=False)


def test_slurm_resources_defaults_config_and_sweep_overrides(config):
    assert DEFAULT_SLURM == dict(partition=None, gpus=0, cpus=2, mem_gb=8, time_min=60, account=None, qos=None,
                                 constraint=None, extra={}, max_requeues=3, retry_s=300)
    demo = slurm_resources(config, "demo")     # fits the 2-CPU, 8 GB test cluster
    assert (demo["cpus"], demo["mem_gb"], demo["gpus"], demo["time_min"]) == (2, 4, 0, 240)
    assert slurm_resources(config, "mqar_paper")["gpus"] == 1 and slurm_resources(config, "mqar_paper")["time_min"] == 720
    c = dict(slurm=dict(qos="long", extra=dict(exclude="n1")),
             sweeps=dict(a=dict(slurm=dict(cpus=4, extra=dict(nice=5))), b={}))
    assert slurm_resources(c, "a") == {**DEFAULT_SLURM, "qos": "long", "cpus": 4, "extra": {"exclude": "n1", "nice": 5}}
    assert slurm_resources(c, "b")["extra"] == {"exclude": "n1"} and slurm_resources(c, "b")["cpus"] == 2


def test_dag_building_imports_no_torch_or_sklearn():
    """What the Snakefile does before any job (validate, expand every sweep, check every task's data)."""
    code = (
        "import sys\n"
        "from eigsweep.config import all_runs, load_config\n"
        "from eigsweep.tasks import check_task_data\n"
        "c = load_config('config.yaml')\n"
        "runs = all_runs(c)\n"
        "for name, params in c['tasks'].items():\n"
        "    try:\n"
        "        check_task_data(params, name)\n"
        "    except FileNotFoundError:\n"
        "        pass\n"
        "print(sum(map(len, runs.values())), sorted(m for m in ('torch', 'sklearn', 'mnist1d') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    n, loaded = out.stdout.split(" ", 1)
    assert int(n) > 100 and loaded.strip() == "[]"


def test_task_data_check_names_the_preset_and_path(tmp_path, monkeypatch):
    from eigsweep.tasks import check_task_data

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config key tasks.imdb_small: task 'imdb': expected .*data/aclImdb"):
        check_task_data(dict(name="imdb", data_dir="data/aclImdb", seq_len=512), "imdb_small")
    with pytest.raises(ConfigError, match="seq_len"):
        check_task_data(dict(name="mqar", seq_len="64"), "m")
    check_task_data(dict(name="mqar", vocab_size=128, seq_len=64, num_kv_pairs=4), "m")   # generated: fine


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("sweeps: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_option_choices_are_the_mixers(config):
    """The registry's option choices (checked without torch) are exactly what the mixers accept."""
    import dataclasses

    from eigsweep.config import ModelConfig
    from eigsweep.mixers import norm
    from eigsweep.model import build_model

    OPTION_CHOICES = {k: v for a in registry.MIXERS.values() for k, v in a.choices.items()}
    assert set(OPTION_CHOICES["norm_fn"]) == set(norm.NORM_FNS)
    assert set(OPTION_CHOICES["feature_map"]) == set(norm.FEATURE_MAPS)
    cfg = ModelConfig(d_model=16, n_heads=2, d_state=4, n_layers=1)
    for arch, key in (("s4d", "s4d_init"), ("norm", "short_conv"), ("norm", "norm_fn")):
        for choice in OPTION_CHOICES[key]:
            build_model(arch, vocab_size=8, cfg=dataclasses.replace(cfg, options={key: choice}))
    with pytest.raises(ValueError):
        build_model("s4d", vocab_size=8, cfg=dataclasses.replace(cfg, options={"s4d_init": "log"}))
    bad = copy.deepcopy(config)
    bad["sweeps"]["demo"]["arch"] = ["norm"]
    bad["sweeps"]["demo"].pop("lr_by_arch")
    bad["sweeps"]["demo"]["model"]["options"] = {"norm_fn": "relu"}
    with pytest.raises(ConfigError, match=r"^config key sweeps.demo.model.options.norm_fn: 'relu' is not one of exp"):
        validate_config(bad)
