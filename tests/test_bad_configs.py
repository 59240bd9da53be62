"""A corpus of bad configs: config.yaml with one defect each. Validation must stop each with ONE line that
names the key (`config key <path>: ...`); a few go through `snakemake -n` (exit != 0, the key on stderr,
no traceback, no job started)."""
import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eigsweep.config import ConfigError, TrainConfig, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())


def put(path: str, value):
    """A mutation setting the dotted `path` (created if missing) to `value`."""
    def mutate(c):
        *parents, last = path.split(".")
        for p in parents:
            c = c.setdefault(p, {})
        c[last] = value
    return mutate


def drop(path: str):
    def mutate(c):
        *parents, last = path.split(".")
        for p in parents:
            c = c[p]
        del c[last]
    return mutate


def rename_arch(c):   # mamba2 -> mamba3 everywhere in the demo sweep: only the architecture name is wrong
    d = c["sweeps"]["demo"]
    d["arch"] = ["softmax", "linear", "mamba3"]
    d["lr_by_arch"]["mamba3"] = d["lr_by_arch"].pop("mamba2")


D = "sweeps.demo"
# (id, mutation, the key the one-line message must name, text it must contain)
CASES = [
    ("unknown sweep key", put(f"{D}.bogus", 1), D, "unknown key 'bogus'"),
    ("unknown train key", put(f"{D}.train.stepz", 3), f"{D}.train", "unknown key 'stepz'"),
    ("steps a word", put(f"{D}.train.steps", "many"), f"{D}.train.steps", "integer"),
    ("steps zero", put(f"{D}.train.steps", 0), f"{D}.train.steps", "greater than or equal to 1"),
    ("steps a float", put(f"{D}.train.steps", 10.0), f"{D}.train.steps", "integer"),
    ("steps a bool", put(f"{D}.train.steps", True), f"{D}.train.steps", "integer"),
    ("spectrum step beyond steps", put(f"{D}.train.spectrum_steps", [50, 5000]), f"{D}.train.spectrum_steps[1]",
     "beyond steps"),
    ("spectrum step beyond default steps", put("defaults.train.spectrum_steps", [9000]),
     "defaults.train.spectrum_steps[0]", "beyond steps"),
    ("lr 1e-3 read as a string", put(f"{D}.lr", ["1e-3"]), f"{D}.lr[0]", "write 1.0e-3"),
    ("lr nan", put(f"{D}.lr", [math.nan]), f"{D}.lr[0]", "finite"),
    ("lr inf", put(f"{D}.lr_by_arch.linear", [math.inf]), f"{D}.lr_by_arch.linear[0]", "finite"),
    ("lr negative", put(f"{D}.lr", [-1.0e-3]), f"{D}.lr[0]", "greater than 0"),
    ("lr empty", put(f"{D}.lr", []), f"{D}.lr", "at least 1"),
    ("lr_by_arch of an arch not swept", put(f"{D}.lr_by_arch.gla", [1.0e-3]), f"{D}.lr_by_arch.gla", "arch list"),
    ("model_by_arch of an arch not swept", put(f"{D}.model_by_arch.gla", {"n_layers": 1}), f"{D}.model_by_arch.gla",
     "arch list"),
    ("model_by_arch unknown setting", put(f"{D}.model_by_arch.linear", {"n_layer": 1}),
     f"{D}.model_by_arch.linear", "unknown key 'n_layer'"),
    ("model_by_arch heads not dividing d_model", put(f"{D}.model_by_arch.softmax", {"n_heads": 3}),
     f"{D}.model_by_arch.softmax.n_heads", "not divisible"),
    ("unknown architecture", rename_arch, f"{D}.arch[2]", "'mamba3'"),
    ("no architecture", put(f"{D}.arch", []), f"{D}.arch", "at least 1"),
    ("architecture missing", drop(f"{D}.arch"), f"{D}.arch", "required"),
    ("unknown task preset", put(f"{D}.task", ["nope"]), f"{D}.task[0]", "'nope'"),
    ("unknown modification", put(f"{D}.modification", ["gated"]), f"{D}.modification[0]", "'gated'"),
    ("modification applying to no arch", put(f"{D}.modification", ["none", "beta2"]), f"{D}.modification[1]",
     "applies to none"),
    ("seed a bool", put(f"{D}.seed", [True]), f"{D}.seed[0]", "integer"),
    ("seed negative", put(f"{D}.seed", [-1]), f"{D}.seed[0]", "greater than or equal to 0"),
    ("d_model not divisible by heads", put(f"{D}.model.n_heads", 3), f"{D}.model.n_heads", "not divisible"),
    ("mamba2 head_dim", put(f"{D}.model.head_dim", 48), f"{D}.model.head_dim", "not a multiple"),
    ("mlp_ratio inf", put(f"{D}.model.mlp_ratio", math.inf), f"{D}.model.mlp_ratio", "finite"),
    ("mlp_ratio negative", put(f"{D}.model.mlp_ratio", -1), f"{D}.model.mlp_ratio", "greater than or equal to 0"),
    ("option no swept arch takes", put(f"{D}.model.options", {"lti": True}), f"{D}.model.options.lti",
     "not an option"),
    ("short_conv unknown", put(f"{D}.model.short_conv", "qv"), f"{D}.model.short_conv", "'qkv'"),
    ("output_gate a string", put(f"{D}.model.output_gate", "yes"), f"{D}.model.output_gate", "boolean"),
    ("pos_embedding unknown", put(f"{D}.model.pos_embedding", "rotary"), f"{D}.model.pos_embedding", "'learned'"),
    ("eval samples above the test set", put(f"{D}.eval.n_samples", 1000), f"{D}.eval.n_samples", "test set of 500"),
    ("eval samples a string", put(f"{D}.eval.n_samples", "32"), f"{D}.eval.n_samples", "without quotes"),
    ("one beta", put(f"{D}.train.betas", [0.9]), f"{D}.train.betas", "at least 2"),
    ("target_acc negative", put(f"{D}.train.target_acc", -0.5), f"{D}.train.target_acc", "greater than or equal to 0"),
    ("device unknown", put(f"{D}.train.device", "tpu"), f"{D}.train.device", "'cuda'"),
    ("warmup negative", put(f"{D}.train.warmup_steps", -1), f"{D}.train.warmup_steps", "greater than or equal"),
    ("sweep slurm cpus zero", put(f"{D}.slurm.cpus", 0), f"{D}.slurm.cpus", "greater than or equal to 1"),
    ("slurm memory a word", put("slurm.mem_gb", "lots"), "slurm.mem_gb", "number"),
    ("unknown slurm key", put("slurm.gpuz", 1), "slurm", "unknown key 'gpuz'"),
    ("task int as a string", put("tasks.mqar_demo.seq_len", "64"), "tasks.mqar_demo.seq_len", "integer"),
    ("mqar too many pairs", put("tasks.mqar_demo.num_kv_pairs", 40), "tasks.mqar_demo.num_kv_pairs", "4*num_kv_pairs"),
    ("mqar vocabulary too small", put("tasks.mqar_demo.vocab_size", 32), "tasks.mqar_demo.vocab_size", "exceed"),
    ("mqar odd length", put("tasks.mqar_demo.seq_len", 63), "tasks.mqar_demo.seq_len", "even"),
    ("mqar unknown parameter", put("tasks.mqar_demo.seq_length", 64), "tasks.mqar_demo", "unknown parameter"),
    ("unknown task", put("tasks.mqar_demo.name", "mqqar"), "tasks.mqar_demo.name", "'mqqar'"),
    ("mqar power inf", put("tasks.mqar_demo.power_a", math.inf), "tasks.mqar_demo.power_a", "finite"),
    ("parity mode", put("tasks.parity_small.mode", "sum"), "tasks.parity_small.mode", "'final'"),
    ("selective copy too many", put("tasks.selective_copy_small.n_memorize", 100), "tasks.selective_copy_small.n_memorize",
     "exceeds context_len"),
    ("listops empty length range", put("tasks.listops_small.max_length", 10), "tasks.listops_small.max_length",
     "no tree"),
    ("preset not a mapping", put("tasks.mqar_demo", [1, 2]), "tasks.mqar_demo", "valid dictionary"),
    ("misspelt option in a modification", put("modifications.pseudo_lti.options", {"ltl": True}),
     "modifications.pseudo_lti.options.ltl", "not an option of any architecture"),
    ("option out of range", put("modifications.beta2.options.beta_range", 3.0),
     "modifications.beta2.options.beta_range", "(0, 2]"),
    ("option of the wrong type", put("modifications.pseudo_lti.options.lti", "yes"),
     "modifications.pseudo_lti.options.lti", "type of its default"),
    ("modification value a string", put("modifications.gate.output_gate", "true"), "modifications.gate.output_gate",
     "boolean"),
    ("unknown sweep under all", put("all", ["demo", "ghost"]), "all[1]", "'ghost'"),
    ("reserved sweep name", lambda c: c["sweeps"].update(all=copy.deepcopy(c["sweeps"]["demo"])), "sweeps.all",
     "reserved"),
    ("sweep name with a dash", lambda c: c["sweeps"].update({"a-b": copy.deepcopy(c["sweeps"]["demo"])}),
     "sweeps.a-b", "pattern"),
    ("no sweeps", put("sweeps", {}), "sweeps", "at least 1"),
    ("executor unknown", put("executor", "kubernetes"), "executor", "'slurm'"),
    ("n_boot too small", put("figures.n_boot", 5), "figures.n_boot", "greater than or equal to 100"),
    ("unknown default section", put("defaults.optim", {}), "defaults", "unknown key 'optim'"),
    ("results_dir a number", put("results_dir", 3), "results_dir", "string"),
]


@pytest.mark.parametrize("mutate,key,text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_stops_with_one_line_naming_the_key(mutate, key, text):
    bad = copy.deepcopy(CONFIG)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"config key {key}: ") and text in lines[0], lines[0]


def test_corpus_size():
    assert len(CASES) >= 40


DUPLICATES = [   # a YAML key given twice: YAML keeps the last silently; we refuse it, naming it and its lines
    ("sweep defined twice", "  mqar_paper:\n", "  demo:\n", "'demo'"),
    ("preset defined twice", "  mqar_small:     {", "  mqar_demo:      {", "'mqar_demo'"),
    ("setting given twice", "    seed: [0, 1]\n", "    seed: [0, 1]\n    seed: [0]\n", "'seed'"),
]


@pytest.mark.parametrize("old,new,key", [d[1:] for d in DUPLICATES], ids=[d[0] for d in DUPLICATES])
def test_duplicate_yaml_key(tmp_path, old, new, key):
    text = (ROOT / "config.yaml").read_text()
    assert old in text
    (tmp_path / "config.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "config.yaml")
    assert len(str(err.value).splitlines()) == 1 and f"duplicate key {key}" in str(err.value)


def snakemake_dry_run(cwd: Path, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"), "demo",
                           *args], cwd=cwd, capture_output=True, text=True, env=env)


@pytest.mark.parametrize("case", ["steps a word", "lr 1e-3 read as a string", "mqar too many pairs",
                                  "misspelt option in a modification"])
def test_snakemake_stops_before_any_job(tmp_path, case):
    _, mutate, key, text = next(c for c in CASES if c[0] == case)
    bad = copy.deepcopy(CONFIG)
    mutate(bad)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    proc = snakemake_dry_run(tmp_path)
    assert proc.returncode != 0
    assert f"config key {key}: " in proc.stderr and text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "Job stats" not in proc.stdout
    assert not (tmp_path / "results").exists()


def test_snakemake_refuses_duplicate_keys_in_a_config_file_given_on_the_command_line(tmp_path):
    (tmp_path / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    (tmp_path / "more.yaml").write_text("sweeps:\n  demo: {arch: [softmax], task: [mqar_demo]}\n"
                                        "  demo: {arch: [linear], task: [mqar_demo]}\n")
    proc = snakemake_dry_run(tmp_path, "--configfile", "more.yaml")
    assert proc.returncode != 0 and "more.yaml: duplicate key 'demo' (line 3; first given on line 2)" in proc.stderr
    assert "Traceback" not in proc.stderr and "Job stats" not in proc.stdout


def test_a_bad_default_inherited_by_several_sweeps_is_named_once_with_the_first_sweep():
    bad = copy.deepcopy(CONFIG)
    default_steps = (bad.get("defaults", {}).get("train") or {}).get("steps", TrainConfig.steps)
    short = [name for name, s in bad["sweeps"].items() if "spectrum_steps" not in (s.get("train") or {})
             and (s.get("train") or {}).get("steps", default_steps) < 10**6]
    assert len(short) >= 2                          # the repository's config has several such sweeps
    put("defaults.train.spectrum_steps", [10**6])(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("config key defaults.train.spectrum_steps[0]: step 1000000 is beyond steps")
    assert f"in sweep {short[0]})" in lines[0], lines[0]
