"""MQAR generator semantics (Zoology), the DSF grid presets."""
from pathlib import Path

import numpy as np
import pytest
import torch

from eigsweep.config import ConfigError, load_config
from eigsweep.tasks.mqar import MQAR, generate_mqar

# config.yaml's MQAR presets (the only place they are written), keyed without the mqar_ prefix
PRESETS = {k.removeprefix("mqar_"): {n: v for n, v in p.items() if n != "name"}
           for k, p in load_config(Path(__file__).parents[1] / "config.yaml")["tasks"].items() if p["name"] == "mqar"}

V, L, K = 256, 128, 8


@pytest.fixture(scope="module")
def plain():
    x, y = generate_mqar(300, V, L, K, random_non_queries=False, seed=3)
    return x.numpy(), y.numpy()


def test_context_keys_and_values_ranges(plain):
    x, _ = plain
    keys, values = x[:, 0:2 * K:2], x[:, 1:2 * K:2]
    assert keys.min() >= 1 and keys.max() <= V // 2 - 1
    assert values.min() >= V // 2 and values.max() <= V - 1
    assert all(len(set(r)) == K for r in keys), "keys must be distinct within an example"


def test_queries_at_even_offsets_with_their_values(plain):
    x, y = plain
    for xi, yi in zip(x, y):
        pos = np.flatnonzero(yi != -100)
        assert len(pos) == K
        assert (pos >= 2 * K).all() and ((pos - 2 * K) % 2 == 0).all()
        kv = dict(zip(xi[0:2 * K:2], xi[1:2 * K:2]))
        assert sorted(xi[pos]) == sorted(kv), "each context key is queried exactly once"
        for p in pos:
            assert yi[p] == kv[xi[p]], "label = the value of the key at the query position"
        rest = np.ones(L, bool)
        rest[:2 * K] = False
        rest[pos] = False
        assert (xi[rest] == 0).all()


def test_random_non_queries_fill_only_the_blanks():
    x0, y0 = generate_mqar(50, V, L, K, random_non_queries=False, seed=5)
    x1, y1 = generate_mqar(50, V, L, K, random_non_queries=True, seed=5)
    assert torch.equal(y0, y1)
    keep = x0 != 0
    assert torch.equal(x0[keep], x1[keep])
    assert (x1[~keep] != 0).float().mean() > 0.9
    assert x1.max() < V and x1.min() >= 0


def test_deterministic_from_seed():
    a = generate_mqar(20, V, L, K, seed=11)
    b = generate_mqar(20, V, L, K, seed=11)
    c = generate_mqar(20, V, L, K, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    t1, t2 = MQAR(vocab_size=V, seq_len=L, num_kv_pairs=K, n_train=10, n_test=5).load(), \
        MQAR(vocab_size=V, seq_len=L, num_kv_pairs=K, n_train=10, n_test=5).load()
    assert torch.equal(t1.train_x, t2.train_x) and not torch.equal(t1.train_x[:5], t1.test_x)


def _gap_slots(power_a):
    Ll, Kk = 512, 8
    _, y = generate_mqar(400, 8192, Ll, Kk, power_a=power_a, random_non_queries=False, seed=0)
    pos = torch.nonzero(y != -100)[:, 1].numpy()
    return (pos - 2 * Kk) // 2, (Ll - 2 * Kk) // 2


def test_gaps_skew_to_small():
    g, space = _gap_slots(0.01)
    assert g.min() >= 0 and g.max() < space
    small = (g < 10).mean()              # 10 of 248 slots: 4% under a uniform draw
    assert small > 0.25
    hist = np.bincount(g, minlength=space)
    assert hist[:62].sum() > 3 * hist[-62:].sum()
    gu, _ = _gap_slots(1.0)              # a = 1: uniform, for contrast
    assert (gu < 10).mean() < 0.1


def test_validation():
    with pytest.raises(ConfigError):
        generate_mqar(2, V, 127, K)
    with pytest.raises(ConfigError):
        generate_mqar(2, 64, 128, K)
    with pytest.raises(ConfigError):
        generate_mqar(2, V, L, 40)
    with pytest.raises(ConfigError, match="unknown parameter"):
        MQAR(seq_length=64)


def test_zoology_grid_presets():
    grid = {(p["seq_len"], p["num_kv_pairs"]) for k, p in PRESETS.items() if k.startswith("L")}
    assert grid == {(64, 4), (128, 8), (256, 16), (512, 64)}
    for k, p in PRESETS.items():
        MQAR(**p)          # valid parameters
        assert k != "paper" or (p["seq_len"], p["num_kv_pairs"], p["vocab_size"]) == (512, 64, 8192)


def test_task_data_shape():
    d = MQAR(**PRESETS["small"]).load()
    assert d.target == "token" and d.n_outputs == d.vocab_size == 128
    assert d.train_x.shape == d.train_y.shape == (2000, 64) and d.test_x.shape == (200, 64)
    assert d.train_x.dtype == torch.long
