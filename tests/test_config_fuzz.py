"""Mutated configs (hypothesis): validation either refuses one with a ConfigError (never another exception),
or accepts it, and then every run of the mutated sweep builds as a train job would build it: the task's
parameters construct and the model builds and runs a forward pass. No accepted config fails in a job."""
import copy
import math
from pathlib import Path

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eigsweep import registry
from eigsweep.config import ConfigError, ModelConfig, TrainConfig, sweep_runs, validate_config
from eigsweep.model import build_model

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())

SMALL = {"d_model": 16, "n_heads": 2, "d_state": 4, "head_dim": 8, "n_layers": 1}   # keeps each example fast


def base_config() -> dict:
    c = copy.deepcopy(CONFIG)
    c["sweeps"]["demo"]["model"].update(SMALL)
    del c["sweeps"]["demo"]["lr_by_arch"]     # so that a mutated arch list can be accepted
    c["sweeps"]["demo"]["lr"] = [5.0e-3]
    c["tasks"]["mqar_demo"].update(n_train=64, n_test=64)
    return c


def paths(c: dict) -> list[tuple]:
    """Every key path under the demo sweep, its task preset, the defaults and the modifications."""
    out = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                out.append(path + (k,))
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out.append(path + (i,))
                walk(v, path + (i,))
    for root in (("sweeps", "demo"), ("tasks", "mqar_demo"), ("defaults",), ("modifications",)):
        node = c
        for k in root:
            node = node[k]
        walk(node, root)
    return out


KEYS = sorted(set(ModelConfig.__dataclass_fields__) | set(TrainConfig.__dataclass_fields__)
              | {"arch", "task", "modification", "seed", "lr", "lr_by_arch", "n_samples", "vocab_size", "seq_len",
                 "num_kv_pairs", "options", "typo"} | {k for m in registry.MIXERS.values() for k in m.options})
scalars = st.one_of(
    st.integers(-3, 130), st.floats(-2.0, 300.0), st.sampled_from([math.inf, -math.inf, math.nan, 0.0, 1e-3, 0.5]),
    st.booleans(), st.none(), st.text(max_size=4),
    st.sampled_from(["1e-3", "64", "none", "qk", "qkv", "learned", "layernorm", "last", "cuda", "cpu", "softmax",
                     "mqar_demo", "gate", "depth1", "beta2", "conv_qk", "norm_exp", "exp", "elu", "lin", "inv",
                     "relu"]))
values = st.one_of(
    scalars, st.lists(scalars, max_size=3),
    st.lists(st.sampled_from(sorted(registry.MIXERS)), min_size=1, max_size=3, unique=True),
    st.lists(st.sampled_from(sorted(CONFIG["modifications"])), min_size=1, max_size=3, unique=True),
    st.lists(st.sampled_from(["mqar_demo", "mqar_small"]), min_size=1, max_size=2, unique=True),
    st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2))


def similar(current):
    """A value of the same kind as `current` (most configs a user writes are near-misses, not noise)."""
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int):
        return st.integers(0, min(2 * abs(current) + 4, 300))
    if isinstance(current, float) and math.isfinite(current):
        return st.floats(0.0, min(2 * abs(current) + 1.0, 300.0))
    if isinstance(current, list) and current:
        return st.lists(similar(current[0]), min_size=1, max_size=3)
    if isinstance(current, dict):
        return st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2)
    return scalars


def mutate(data, c: dict) -> None:
    """One mutation: set a key to a value of its kind or to any value, delete it, or add an unknown key."""
    ps = paths(c)
    path = data.draw(st.sampled_from(ps))
    parent = c
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    op = data.draw(st.sampled_from(["similar", "similar", "set", "delete", "add"]))
    if op == "similar":
        parent[last] = data.draw(similar(parent[last]))
    elif op == "set":
        parent[last] = data.draw(values)
    elif op == "delete":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][data.draw(st.sampled_from(KEYS))] = data.draw(values)
    else:
        parent[last] = {data.draw(st.sampled_from(KEYS)): data.draw(values)}


def build(run) -> None:
    """What a train job builds before its first step, without generating the data: MQAR's data shapes."""
    params = dict(run.task_params)
    task = registry.task_class(params.pop("name"))(**params)
    assert run.task_name == "mqar"
    p = task.params
    torch.manual_seed(0)
    model = build_model(run.arch, vocab_size=p.vocab_size, n_outputs=p.vocab_size, target="token",
                        max_len=p.seq_len, cfg=run.model)
    x = torch.randint(0, p.vocab_size, (1, min(p.seq_len, 16)))
    assert model(x).shape == (1, x.shape[1], p.vocab_size)


def check(c: dict) -> str:
    """'refused' or 'accepted' (and then every run of the demo sweep built)."""
    try:
        validate_config(c)
    except ConfigError as e:
        assert str(e).strip() and all(line.startswith("config key ") for line in str(e).splitlines()), str(e)
        return "refused"
    built = set()
    for run in sweep_runs(c, "demo"):
        key = (run.arch, run.task, run.modification)
        if key not in built and len(built) < 6:
            built.add(key)
            build(run)
    return "accepted"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_config_is_refused_cleanly_or_builds(data):
    c = base_config()
    for _ in range(data.draw(st.integers(1, 3))):
        mutate(data, c)
    check(c)


def test_fuzz_base_config_is_valid_and_builds():
    c = base_config()
    validate_config(c)
    for run in sweep_runs(c, "demo"):
        build(run)
