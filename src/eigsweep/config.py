"""Typed run specifications and the expansion of config.yaml sweeps into runs.

Pure Python (no torch): the Snakefile imports this to build the DAG.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field, asdict
from pathlib import Path

import yaml

from eigsweep import registry

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(ValueError):
    """A config.yaml problem, with the offending key and the allowed values in the message."""


@dataclass
class ModelConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    d_state: int = 16          # state size of SSMs (N); attention uses d_model / n_heads per head
    expand: int = 2            # inner width multiplier of Mamba-style mixers
    head_dim: int = 32         # Mamba-2 head width P
    conv_kernel: int = 4       # short causal convolution kernel
    short_conv: str = "none"   # attention-like mixers: none | qk | qkv
    output_gate: bool = False  # block output * SiLU(W_z x_in)
    mlp_ratio: float = 0.0     # 0: no MLP in the block (the paper's MQAR setting)
    norm: str = "rmsnorm"
    pos_embedding: str = "none"  # none | learned (absolute, added to the token embedding)
    pooling: str = "mean"      # classification tasks: mean | last
    options: dict = field(default_factory=dict)  # mixer-specific settings


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    weight_decay: float = 0.1
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 100
    target_acc: float = 0.99   # early stop once test accuracy reaches this
    device: str = "auto"
    threads: int = 0           # torch CPU threads; 0: leave torch's default
    checkpoint_every: int = 0  # steps between resumable checkpoints; 0: never
    spectrum_steps: list = field(default_factory=list)  # extra spectra during training


@dataclass
class EvalConfig:
    n_samples: int = 32          # fixed evaluation batch for the spectra (first n of the test split)
    batch_size: int = 256        # accuracy evaluation batch
    max_test_examples: int = 100_000


@dataclass
class RunSpec:
    sweep: str
    arch: str
    task: str                  # task preset name (config `tasks:`)
    modification: str
    seed: int
    lr: float
    task_params: dict          # the preset, including `name` (the registry name)
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig

    @property
    def run_id(self) -> str:
        return run_id(self.arch, self.task, self.modification, self.seed, self.lr)

    @property
    def task_name(self) -> str:
        return self.task_params["name"]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def config_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        d = dict(d)
        d["model"] = ModelConfig(**d["model"])
        d["train"] = TrainConfig(**d["train"])
        d["eval"] = EvalConfig(**d["eval"])
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "RunSpec":
        return cls.from_dict(json.loads(s))


def run_id(arch: str, task: str, modification: str, seed: int, lr: float) -> str:
    """Readable and stable: depends on the run's axes only, never on unrelated settings."""
    return f"{arch}-{task}-{modification}-s{seed}-lr{lr:.2e}"


# ---------------------------------------------------------------------------------------------
# Loading and validation

def _friendly(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return (f"config key {where}: unknown key(s) {', '.join(map(repr, extra))}; "
                f"allowed: {', '.join(allowed) or '(none)'}")
    if v == "enum":
        return f"config key {where}: {error.instance!r} is not one of {error.validator_value}"
    if v == "type":
        return f"config key {where}: {error.instance!r} should be of type {error.validator_value}"
    if v == "required":
        return f"config key {where}: {error.message}"
    if v == "pattern" or (v == "propertyNames"):
        return f"config key {where}: {error.message} (names use letters, digits and _)"
    return f"config key {where}: {error.message}"


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate_config(config: dict) -> None:
    """Schema check plus name checks against the registries; raises ConfigError."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_friendly(e) for e in errors))
    problems = []
    tasks = config.get("tasks", {})
    mods = config.get("modifications", {"none": {}})
    for preset, params in tasks.items():
        if params["name"] not in registry.TASKS:
            problems.append(f"config key tasks.{preset}.name: unknown task {params['name']!r}; "
                            f"allowed: {', '.join(sorted(registry.TASKS))}")
    for sweep, s in config["sweeps"].items():
        for i, a in enumerate(s["arch"]):
            if a not in registry.MIXERS:
                problems.append(f"config key sweeps.{sweep}.arch[{i}]: unknown architecture {a!r}; "
                                f"allowed: {', '.join(sorted(registry.MIXERS))}")
        for a in s.get("lr_by_arch", {}):
            if a not in s["arch"]:
                problems.append(f"config key sweeps.{sweep}.lr_by_arch.{a}: not in this sweep's arch list "
                                f"{s['arch']}")
        for i, t in enumerate(s["task"]):
            if t not in tasks:
                problems.append(f"config key sweeps.{sweep}.task[{i}]: unknown task preset {t!r}; "
                                f"allowed: {', '.join(sorted(tasks)) or '(define some under tasks:)'}")
        for i, m in enumerate(s.get("modification", ["none"])):
            if m not in mods:
                problems.append(f"config key sweeps.{sweep}.modification[{i}]: unknown modification {m!r}; "
                                f"allowed: {', '.join(sorted(mods))}")
        if sweep in RESERVED_TARGETS:
            problems.append(f"config key sweeps.{sweep}: the name is reserved for a workflow target; "
                            f"reserved: {', '.join(sorted(RESERVED_TARGETS))}")
    for i, name in enumerate(config.get("all", [])):
        if name not in config["sweeps"]:
            problems.append(f"config key all[{i}]: unknown sweep {name!r}; allowed: {', '.join(config['sweeps'])}")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


RESERVED_TARGETS = {"all", "train", "aggregate", "figures", "paper", "report", "run"}


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    validate_config(config)
    return config


# ---------------------------------------------------------------------------------------------
# Sweep expansion

def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def sweep_runs(config: dict, sweep: str) -> list[RunSpec]:
    """Every grid point of a sweep as a RunSpec, in a stable order."""
    s = config["sweeps"][sweep]
    defaults = config.get("defaults", {})
    mods = config.get("modifications", {"none": {}})
    model_base = _merge(defaults.get("model", {}), s.get("model", {}))
    train = TrainConfig(**_merge(defaults.get("train", {}), s.get("train", {})))
    evalc = EvalConfig(**_merge(defaults.get("eval", {}), s.get("eval", {})))
    runs = []
    for arch, task, mod, seed in itertools.product(
            s["arch"], s["task"], s.get("modification", ["none"]), s.get("seed", [0])):
        for lr in s.get("lr_by_arch", {}).get(arch, s.get("lr", [1e-3])):
            model = ModelConfig(**_merge(model_base, mods[mod]))
            runs.append(RunSpec(sweep=sweep, arch=arch, task=task, modification=mod, seed=int(seed),
                                lr=float(lr), task_params=dict(config["tasks"][task]), model=model,
                                train=dataclasses.replace(train), eval=evalc))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"config key sweeps.{sweep}: duplicate grid points {dup[:5]}")
    return runs


def all_runs(config: dict) -> dict[str, list[RunSpec]]:
    return {name: sweep_runs(config, name) for name in config["sweeps"]}
