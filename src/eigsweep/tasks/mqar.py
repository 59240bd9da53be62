"""Multi-query associative recall, generated as Zoology defines it.

Each example: K distinct key-value pairs [k1 v1 … kK vK] (keys from 1…V/2−1, values from V/2…V−1), then
the remaining L−2K positions hold queries: key k_j is placed at offset 2·g_j, with the gaps g drawn without
replacement with p(g) ∝ g^(a−1). The label at a query key's position is its value; all others −100.
Zeros left in the query region are optionally replaced by random tokens.
"""
from __future__ import annotations

import numpy as np
from pydantic import model_validator

from eigsweep.config import Bool, ConfigError, Count, PosInt, Real
from eigsweep.tasks.base import IGNORE, Params, Task, TaskData


def size_problem(vocab_size: int, seq_len: int, num_kv_pairs: int) -> tuple[str, str] | None:
    """(key, problem) when these sizes cannot make MQAR examples, else None."""
    V, L, K = vocab_size, seq_len, num_kv_pairs
    if L % 2:
        return "seq_len", f"must be even, got {L}"
    if V <= L:
        return "vocab_size", f"({V}) must exceed seq_len ({L})"
    if 4 * K > L:
        return "num_kv_pairs", f"need 4*num_kv_pairs <= seq_len, got num_kv_pairs={K}, seq_len={L}"
    if K > V // 2 - 1:
        return "num_kv_pairs", f"{K} exceeds the {V // 2 - 1} available keys (vocab_size {V})"
    return None


class MQARParams(Params):
    vocab_size: PosInt = 8192
    seq_len: PosInt = 512
    num_kv_pairs: PosInt = 64
    n_train: PosInt = 100_000
    n_test: PosInt = 3_000
    n_val: Count = 0            # a validation split (early stop, learning-rate choice); 0: none
    power_a: Real(gt=0) = 0.01
    random_non_queries: Bool = True
    data_seed: Count = 0        # data is fixed across the runs of a sweep; the run seed varies the model

    @model_validator(mode="after")
    def _sizes(self):
        problem = size_problem(self.vocab_size, self.seq_len, self.num_kv_pairs)
        if problem:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        return self


def _choose_rows(rng: np.random.Generator, n_rows: int, low: int, high: int, k: int) -> np.ndarray:
    """k distinct integers from [low, high) per row, uniformly (top-k of random keys)."""
    out = np.empty((n_rows, k), dtype=np.int64)
    for s in range(0, n_rows, 4096):
        r = rng.random((min(4096, n_rows - s), high - low))
        out[s : s + len(r)] = np.argpartition(r, k - 1, axis=1)[:, :k] + low
    return out


def _weighted_without_replacement(rng, n_rows: int, p: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices per row, drawn sequentially with probabilities p (Gumbel top-k is equivalent)."""
    out = np.empty((n_rows, k), dtype=np.int64)
    logp = np.log(p)
    for s in range(0, n_rows, 4096):
        g = logp - np.log(-np.log(rng.random((min(4096, n_rows - s), len(p)))))
        out[s : s + len(g)] = np.argsort(-g, axis=1)[:, :k]
    return out


def generate_mqar(n: int, vocab_size: int, seq_len: int, num_kv_pairs: int, power_a: float = 0.01,
                  random_non_queries: bool = True, seed: int = 0):
    """Returns (inputs, labels), each (n, seq_len) int64."""
    V, L, K = vocab_size, seq_len, num_kv_pairs
    problem = size_problem(V, L, K)
    if problem:
        raise ConfigError(f"mqar: {problem[0]} {problem[1]}")
    import torch

    rng = np.random.default_rng(seed)
    context = 2 * K
    keys = _choose_rows(rng, n, 1, V // 2, K)
    values = _choose_rows(rng, n, V // 2, V, K)
    space = (L - context) // 2
    g = np.arange(1, space + 1, dtype=np.float64)
    p = power_a * g ** (power_a - 1)
    gaps = _weighted_without_replacement(rng, n, p / p.sum(), K)
    inputs = np.zeros((n, L), dtype=np.int64)
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values
    rows = np.arange(n)[:, None]
    query_pos = context + 2 * gaps
    inputs[rows, query_pos] = keys
    labels = np.full((n, L), IGNORE, dtype=np.int64)
    labels[rows, query_pos] = values
    if random_non_queries:
        zero = inputs == 0
        inputs[zero] = rng.integers(0, V, size=int(zero.sum()))
    return torch.from_numpy(inputs), torch.from_numpy(labels)


class MQAR(Task):
    Params = MQARParams
    name = "mqar"

    def load(self) -> TaskData:
        p = self.params
        kw = dict(vocab_size=p.vocab_size, seq_len=p.seq_len, num_kv_pairs=p.num_kv_pairs,
                  power_a=p.power_a, random_non_queries=p.random_non_queries)
        train_x, train_y = generate_mqar(p.n_train, seed=p.data_seed, **kw)
        test_x, test_y = generate_mqar(p.n_test, seed=p.data_seed + 1_000_003, **kw)
        val_x, val_y = generate_mqar(p.n_val, seed=p.data_seed + 2_000_003, **kw) if p.n_val else (None, None)
        return TaskData(train_x, train_y, test_x, test_y, vocab_size=p.vocab_size, n_outputs=p.vocab_size,
                        target="token", val_x=val_x, val_y=val_y)
