"""Induction heads (Olsson et al. 2022; Mamba §4.1.2): after a trigger token recurs, recall the token that
followed its first occurrence.

Vocabulary: 0…n_values−1 ordinary tokens, n_values = the trigger. Each example: ``seq_len`` tokens drawn
uniformly from the ordinary tokens; the trigger is placed once at a uniform position p ∈ [0, seq_len−3],
the answer is the token at p+1, and the last position holds the trigger again. Label at the last position =
the answer; all other labels −100. Target "token" (n_outputs = vocabulary size).
Mamba's setting: vocabulary 16, training length 256.
"""
from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from eigsweep.config import ConfigError, Count, Int, PosInt
from eigsweep.tasks.base import IGNORE, Params, Task, TaskData


class InductionParams(Params):
    seq_len: Annotated[Int, Field(ge=3)] = 256
    n_values: PosInt = 16
    n_train: PosInt = 100_000
    n_test: PosInt = 3_000
    data_seed: Count = 0


def generate_induction(n: int, seq_len: int, n_values: int, seed: int):
    """Returns (inputs, labels), each (n, seq_len) int64."""
    if seq_len < 3:
        raise ConfigError(f"induction: seq_len must be >= 3, got {seq_len}")
    import torch

    rng = np.random.default_rng(seed)
    trigger = n_values
    x = rng.integers(0, n_values, size=(n, seq_len))
    p = rng.integers(0, seq_len - 2, size=n)
    rows = np.arange(n)
    x[rows, p] = trigger
    x[:, -1] = trigger
    y = np.full((n, seq_len), IGNORE, dtype=np.int64)
    y[:, -1] = x[rows, p + 1]
    return torch.from_numpy(x), torch.from_numpy(y)


class Induction(Task):
    Params = InductionParams
    name = "induction"

    def load(self) -> TaskData:
        p = self.params
        tx, ty = generate_induction(p.n_train, p.seq_len, p.n_values, p.data_seed)
        vx, vy = generate_induction(p.n_test, p.seq_len, p.n_values, p.data_seed + 1_000_003)
        V = p.n_values + 1
        return TaskData(tx, ty, vx, vy, vocab_size=V, n_outputs=V, target="token")
